"""The other ways in, on a real broker: the ``kafka`` connector of config pipelines (by
name, with a registered format and initializer) and the deprecated FlinkKafkaConsumer."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from streamplug.api import DeserializationSchema, WatermarkStrategy
from streamplug.connectors import CollectSink
from streamplug.plugins import build_plugin_host
from streamplug.runtime import RestartStrategies, StreamExecutionEnvironment
from streamplug_kafka_common.admin import committed_offsets
from streamplug_kafka_source import FlinkKafkaConsumer

pytestmark = pytest.mark.integration


class Utf8(DeserializationSchema[str]):
    def deserialize(self, message: bytes) -> str:
        return message.decode()


def produce(bootstrap: str, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i in range(count):
        producer.produce(topic, f'{{"n": {i}}}'.encode(), partition=i % 2)
    assert producer.flush(10) == 0


def test_connector_by_name_with_a_registered_format(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    pytest.importorskip("streamplug_serde", reason="the json format comes from streamplug-serde")
    topic = topic_factory(partitions=2)
    produce(kafka_bootstrap, topic, 40)
    host = build_plugin_host()
    from streamplug_kafka_source.plugin import kafka_source_from_options

    source = kafka_source_from_options(
        bootstrap_servers=kafka_bootstrap,
        topics=[topic],
        starting_offsets={"name": "offsets", "offsets": {f"{topic}:0": 10}},
        stopping_offsets="latest",
        format="json",
        properties={"client.id.prefix": "pipeline"},
        plugin_host=host,
    )
    env = StreamExecutionEnvironment.get_execution_environment(host)
    env.set_parallelism(2).set_restart_strategy(RestartStrategies.no_restart())
    sink = CollectSink()
    env.from_source(source, WatermarkStrategy.no_watermarks(), "kafka").sink_to(sink)
    env.execute("connector-test")
    # Partition 0 holds the even numbers at offsets 0..19: offset 10 is n=20.
    expected = [n for n in range(40) if n % 2 == 1 or n >= 20]
    assert sorted(r["n"] for r in sink.results) == expected


def test_legacy_consumer_runs_on_kafka_source_and_commits_on_checkpoints(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=2)
    produce(kafka_bootstrap, topic, 20)
    group = f"legacy-{topic}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        consumer = FlinkKafkaConsumer(
            [topic], Utf8(), {"bootstrap.servers": kafka_bootstrap, "group.id": group}
        )
    consumer.set_start_from_earliest().set_commit_offsets_on_checkpoints(True)
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2).enable_checkpointing(100)
    env.set_restart_strategy(RestartStrategies.no_restart())
    sink = CollectSink()
    env.from_source(consumer, WatermarkStrategy.no_watermarks(), "legacy").sink_to(sink)
    client = env.execute_async("legacy-test")
    watcher = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    try:
        deadline = time.monotonic() + 30
        tps = [TopicPartition(topic, p) for p in range(2)]
        while [tp.offset for tp in committed_offsets(watcher, tps, 5)] != [10, 10]:
            assert time.monotonic() < deadline, "offsets never committed"
            time.sleep(0.1)
    finally:
        watcher.close()
        client.cancel()
        client.wait_quietly(30)
    assert len(sink.results) == 20


def test_legacy_consumer_assigns_timestamps_and_watermarks_for_add_source(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    base = int(time.time() * 1000) - 3_600_000  # within retention: see test_kafka_source_offsets
    for i in range(20):
        producer.produce(topic, str(i).encode(), partition=i % 2, timestamp=base + i)
    assert producer.flush(10) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        consumer = FlinkKafkaConsumer([topic], Utf8(), {"bootstrap.servers": kafka_bootstrap})
    consumer.set_start_from_earliest()
    # The older style: the strategy set on the consumer, the consumer added as it is.
    strategy = WatermarkStrategy.for_monotonous_timestamps()
    assert consumer.assign_timestamps_and_watermarks(strategy) is consumer
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1).set_auto_watermark_interval(50)
    sink = CollectSink()
    env.add_source(consumer, "legacy").sink_to(sink)
    client = env.execute_async("legacy-watermarks")
    try:
        deadline = time.monotonic() + 30
        # Monotonous: the watermark trails the smallest of the two partitions' newest
        # timestamps (base+18 and base+19) by 1 ms.
        while (client.metrics().watermark or 0) < base + 17:
            assert time.monotonic() < deadline, client.metrics()
            time.sleep(0.05)
    finally:
        client.cancel()
        client.wait_quietly(30)
    assert client.metrics().watermark == base + 17
    assert sorted(int(v) for v in sink.results) == list(range(20))
