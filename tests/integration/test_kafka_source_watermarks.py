"""Event time from Kafka record timestamps, and readers without partitions that never hold
the job's watermark back (parallelism 4 on a 2-partition topic), on a real broker."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka import Producer

from streamplug.api import DeserializationSchema, WatermarkStrategy
from streamplug.connectors import CollectSink
from streamplug.runtime import RestartStrategies, StreamExecutionEnvironment
from streamplug_kafka_common.admin import end_offsets
from streamplug_kafka_source import KafkaSource

pytestmark = pytest.mark.integration

# Record timestamps an hour ago. Kafka deletes records older than retention.ms (7 days by
# default) by their timestamps, at its next retention check (every 5 minutes): with a base
# in 2023 a partition's records sometimes vanished mid-test.
BASE_TS = int(time.time() * 1000) - 3_600_000


class Utf8(DeserializationSchema[str]):
    def deserialize(self, message: bytes) -> str:
        return message.decode()


@pytest.mark.parametrize("discovery", [False, True], ids=["static", "discovering"])
def test_idle_readers_do_not_stall_the_watermark(
    kafka_bootstrap: str, topic_factory: Callable[..., str], discovery: bool
) -> None:
    topic = topic_factory(partitions=2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for i in range(20):
        producer.produce(topic, str(i).encode(), partition=i % 2, timestamp=BASE_TS + i * 1000)
    # flush() returns what is still undelivered instead of raising: a partition that never
    # got its records would otherwise look like a reader that never reads.
    assert producer.flush(30) == 0, "records still undelivered after 30 s"
    builder = (
        KafkaSource.builder()
        .set_bootstrap_servers(kafka_bootstrap)
        .set_topics(topic)
        .set_value_only_deserializer(Utf8())
    )
    if discovery:
        # Readers without partitions then stay up, waiting for new ones: idle, not finished.
        builder.set_property("partition.discovery.interval.ms", "1000")
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(4).set_auto_watermark_interval(50)
    env.set_restart_strategy(RestartStrategies.no_restart())
    sink = CollectSink()
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(0)  # event time = Kafka timestamp
    env.from_source(builder.build(), strategy, "kafka").sink_to(sink)
    client = env.execute_async("watermark-test")
    # The highest timestamp is BASE_TS + 19 s on partition 1 and + 18 s on partition 0:
    # the job watermark is the slower partition's, minus 1 ms.
    target = BASE_TS + 18_000 - 1
    try:
        deadline = time.monotonic() + 30
        while True:
            metrics = client.metrics()
            reading = sorted(
                w for w in metrics.subtask_watermarks.values() if w is not None and w < 2**62
            )
            if reading == [BASE_TS + 18_000 - 1, BASE_TS + 19_000 - 1] and metrics.watermark:
                break
            if time.monotonic() > deadline:
                ends = end_offsets({"bootstrap.servers": kafka_bootstrap}, topic)
                pytest.fail(f"watermarks not reached in 30 s; partition ends {ends}; {metrics}")
            time.sleep(0.05)
        # Two readers read a partition each; the other two have none and are idle: the
        # job's watermark is the slower partition's, not held back by the idle readers.
        assert len(metrics.subtask_watermarks) == 4
        assert metrics.watermark == target
        assert client.status.name == "RUNNING"
        assert max(sink.watermarks) >= target
    finally:
        client.cancel()
        client.wait_quietly(30)
    assert sorted(int(v) for v in sink.results) == list(range(20))
