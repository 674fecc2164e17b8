"""The job's consumer lag on a real broker: ``JobMetrics.pending_records``, summed from the
Kafka readers' ``pending_records``, counts what an unbounded job has left to read and comes
down to 0 once it caught up."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka import Producer

from streamplug.api import DeserializationSchema
from streamplug.connectors import CollectSink
from streamplug.runtime import RestartStrategies, StreamExecutionEnvironment
from streamplug_kafka_source import KafkaSource

pytestmark = pytest.mark.integration

RECORDS = 2000


class Utf8(DeserializationSchema[str]):
    def deserialize(self, message: bytes) -> str:
        return message.decode()


def slow(value: str) -> str:
    # Runs on the reader's thread: the read takes ~1 s per partition, long enough for
    # several statistics reports while records are left.
    time.sleep(0.001)
    return value


def test_pending_records_count_down_to_zero_in_an_unbounded_job(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for i in range(RECORDS):
        producer.produce(topic, str(i).encode(), partition=i % 2)
    assert producer.flush(10) == 0
    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(kafka_bootstrap)
        .set_topics(topic)
        .set_group_id(f"{topic}-group")
        .set_value_only_deserializer(Utf8())
        .set_properties({"statistics.interval.ms": "100", "poll.max.records": "50"})
        .build()
    )
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    env.set_restart_strategy(RestartStrategies.no_restart())
    sink = CollectSink()
    env.from_source(source).map(slow).sink_to(sink)
    client = env.execute_async("pending-records-test")
    behind: list[tuple[int, int]] = []  # (records read, pending) while records were left
    try:
        deadline = time.monotonic() + 60
        while True:
            assert client.status.name in ("CREATED", "RUNNING"), client.status
            assert time.monotonic() < deadline, client.metrics()
            metrics = client.metrics()
            if metrics.records_in == RECORDS and metrics.pending_records == 0:
                break
            if metrics.records_in < RECORDS and metrics.pending_records:
                behind.append((metrics.records_in, metrics.pending_records))
            time.sleep(0.02)
        assert behind, "pending_records never said that records were left"
        assert all(0 < pending <= RECORDS for _, pending in behind), behind
        # The lag comes down as the job reads (each report is up to an interval old).
        assert behind[-1][1] < behind[0][1], behind
        assert client.status.name == "RUNNING"  # unbounded: it waits for more records
    finally:
        client.cancel()
        client.wait_quietly(30)
    assert sorted(int(v) for v in sink.results) == list(range(RECORDS))
