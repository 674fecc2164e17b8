"""Partition discovery on a real broker: a topic-pattern source picks up a topic created
while the job runs, and partitions added to a topic it already reads."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewPartitions

from streamplug.api import DeserializationSchema, WatermarkStrategy
from streamplug.connectors import CollectSink
from streamplug.runtime import RestartStrategies, StreamExecutionEnvironment
from streamplug_kafka_common import admin
from streamplug_kafka_source import KafkaOffsetsInitializer, KafkaSource

pytestmark = pytest.mark.integration

DISCOVERY_MS = 500


class Utf8(DeserializationSchema[str]):
    def deserialize(self, message: bytes) -> str:
        return message.decode()


def produce(bootstrap: str, topic: str, partition: int, count: int) -> set[str]:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    values = {f"{topic}/{partition}/{i}" for i in range(count)}
    for value in sorted(values):
        producer.produce(topic, value.encode(), partition=partition)
    assert producer.flush(10) == 0
    return values


def wait_for(sink: CollectSink, wanted: set[str], timeout_s: float) -> float:
    """Seconds until every wanted value arrived; fails after ``timeout_s``."""
    start = time.monotonic()
    while not wanted <= set(sink.results):
        if time.monotonic() - start > timeout_s:
            missing = sorted(wanted - set(sink.results))
            pytest.fail(f"not read within {timeout_s} s: {missing[:5]} ({len(missing)} missing)")
        time.sleep(0.05)
    return time.monotonic() - start


def test_pattern_picks_up_new_topics_and_added_partitions_within_the_interval(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    prefix = f"disc{uuid.uuid4().hex[:6]}"
    first = topic_factory(partitions=1, name=f"{prefix}-first")
    unrelated = topic_factory(partitions=1, name=f"other{prefix}")
    expected = produce(kafka_bootstrap, first, 0, 3)
    produce(kafka_bootstrap, unrelated, 0, 3)

    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(kafka_bootstrap)
        .set_topic_pattern(rf"{prefix}-.*")
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_property("partition.discovery.interval.ms", str(DISCOVERY_MS))
        .set_value_only_deserializer(Utf8())
        .build()
    )
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2).set_restart_strategy(RestartStrategies.no_restart())
    sink = CollectSink()
    env.from_source(source, WatermarkStrategy.for_monotonous_timestamps(), "kafka").sink_to(sink)
    client = env.execute_async("discovery-test")
    try:
        wait_for(sink, expected, 30)

        # A topic created while the job runs; its records are written before discovery
        # finds it, and still read: new partitions start at the earliest offset.
        second = topic_factory(partitions=2, name=f"{prefix}-second")
        new_topic = produce(kafka_bootstrap, second, 0, 4) | produce(kafka_bootstrap, second, 1, 4)
        took = wait_for(sink, new_topic, 30)
        assert took < DISCOVERY_MS / 1000 + 5, f"new topic found after {took:.1f} s"

        # Partitions added to a topic the job already reads.
        admin_client = AdminClient({"bootstrap.servers": kafka_bootstrap})
        admin_client.create_partitions([NewPartitions(first, 3)])[first].result(30)
        admin.wait_for_topic(kafka_bootstrap, first, partitions=3)
        added = produce(kafka_bootstrap, first, 1, 2) | produce(kafka_bootstrap, first, 2, 2)
        took = wait_for(sink, added, 30)
        assert took < DISCOVERY_MS / 1000 + 5, f"added partitions found after {took:.1f} s"
        assert client.status.name == "RUNNING"
    finally:
        client.cancel()
        client.wait_quietly(30)
    results = list(sink.results)
    assert sorted(results) == sorted(expected | new_topic | added)  # once each, nothing else
