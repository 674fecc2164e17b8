"""Offsets committed to Kafka when checkpoints complete, and the reader's metrics, on a real
broker."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Producer

from streamplug.api import DeserializationSchema, WatermarkStrategy
from streamplug.connectors import CollectSink
from streamplug.runtime import RestartStrategies, StreamExecutionEnvironment
from streamplug_kafka_common.admin import group_offsets
from streamplug_kafka_source import KafkaSource, KafkaTopicPartition
from streamplug_kafka_source.reader import KafkaSourceReader

pytestmark = pytest.mark.integration


class Utf8(DeserializationSchema[str]):
    def deserialize(self, message: bytes) -> str:
        return message.decode()


def produce_numbers(bootstrap: str, topic: str, count: int, partitions: int = 1) -> None:
    """Records "0", "1", ... spread round-robin over the topic's partitions."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i in range(count):
        producer.produce(topic, str(i).encode(), partition=i % partitions)
    assert producer.flush(30) == 0, "records still undelivered after 30 s"


def group_source(bootstrap: str, topic: str, group: str, properties: dict[str, str]) -> KafkaSource:
    return (
        KafkaSource.builder()
        .set_bootstrap_servers(bootstrap)
        .set_topics(topic)
        .set_group_id(group)
        .set_properties(properties)
        .set_value_only_deserializer(Utf8())
        .build()
    )


def capture_readers(source: KafkaSource) -> list[KafkaSourceReader]:
    readers: list[KafkaSourceReader] = []
    create = source.create_reader

    def create_and_keep(context: Any) -> KafkaSourceReader:
        reader = create(context)
        readers.append(reader)
        return reader

    source.create_reader = create_and_keep  # type: ignore[method-assign]
    return readers


def start_job(source: KafkaSource, checkpoint_ms: int = 200) -> tuple[Any, CollectSink]:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2).enable_checkpointing(checkpoint_ms)
    env.set_restart_strategy(RestartStrategies.no_restart())
    sink = CollectSink()
    env.from_source(source, WatermarkStrategy.for_monotonous_timestamps(), "kafka").sink_to(sink)
    return env.execute_async("commit-test"), sink


def eventually(check: Callable[[], bool], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s} s: {check.__doc__ or check}")
        time.sleep(0.1)


def test_offsets_are_committed_when_checkpoints_complete(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=2)
    produce_numbers(kafka_bootstrap, topic, 30, partitions=2)
    group = f"g-{topic}"
    source = group_source(kafka_bootstrap, topic, group, {"statistics.interval.ms": "100"})
    readers = capture_readers(source)
    client, sink = start_job(source)
    try:
        eventually(lambda: len(sink.results) == 30)
        # Visible to any admin client once a checkpoint after the last record completed.
        eventually(lambda: group_offsets(kafka_bootstrap, group, topic, 2) == {0: 15, 1: 15})
        succeeded = sum(r.metrics.commits_succeeded.value for r in readers)
        assert succeeded > 0
        assert sum(r.metrics.commits_failed.value for r in readers) == 0
        gauges = {}
        for reader in readers:
            for p in range(2):
                found = reader.metrics.partition_gauges(KafkaTopicPartition(topic, p))
                if found:
                    gauges[p] = found
        assert {p: g["currentOffset"].value for p, g in gauges.items()} == {0: 15, 1: 15}
        eventually(lambda: all(g["committedOffset"].value == 15 for g in gauges.values()))
        # librdkafka's own statistics, exported under KafkaSourceReader.KafkaConsumer.
        consumer_stats = [r.metrics.consumer_group for r in readers if r.metrics.consumer_group]
        eventually(lambda: sum(g.gauges["rxmsgs"].value or 0 for g in consumer_stats) >= 30)
        assert all(
            isinstance(g.gauges["consumer_lag_max"].value, int | None) for g in consumer_stats
        )
        # Flink's standard source metrics, on each reader's operator group.
        busy = [r for r in readers if r.split_states]
        assert len(busy) == 2
        for reader in busy:
            gauges = reader.metrics.group.gauges
            eventually(lambda g=gauges: g["pendingRecords"].value == 0)
            assert gauges["currentEmitEventTimeLag"].value >= 0
            # The runtime's, from the subtask's watermark (the first comes with the next
            # periodic emit).
            eventually(lambda g=gauges: (g["watermarkLag"].value or -1) >= 0)
            assert gauges["sourceIdleTime"].value >= 0
    finally:
        client.cancel()
        client.wait_quietly(30)


def test_no_commits_when_disabled_and_recovery_ignores_them(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=1)
    produce_numbers(kafka_bootstrap, topic, 5)
    group = f"g-{topic}"
    source = group_source(kafka_bootstrap, topic, group, {"commit.offsets.on.checkpoint": "false"})
    client, sink = start_job(source, checkpoint_ms=100)
    try:
        eventually(lambda: len(sink.results) == 5)
        eventually(lambda: client.metrics().checkpoints_completed >= 3)
    finally:
        client.cancel()
        client.wait_quietly(30)
    assert group_offsets(kafka_bootstrap, group, topic, 1)[0] < 0  # nothing committed


def test_without_checkpoints_kafkas_auto_commit_applies(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=1)
    produce_numbers(kafka_bootstrap, topic, 7)
    group = f"g-{topic}"
    source = group_source(
        kafka_bootstrap,
        topic,
        group,
        {"enable.auto.commit": "true", "auto.commit.interval.ms": "100"},
    )
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1).set_restart_strategy(RestartStrategies.no_restart())
    sink = CollectSink()
    env.from_source(source, WatermarkStrategy.no_watermarks(), "kafka").sink_to(sink)
    client = env.execute_async("auto-commit-test")
    try:
        eventually(lambda: len(sink.results) == 7)
        eventually(lambda: group_offsets(kafka_bootstrap, group, topic, 1) == {0: 7})
    finally:
        client.cancel()
        client.wait_quietly(30)
