"""NONE and AT_LEAST_ONCE writers against librdkafka's in-process mock cluster: batching,
a full producer queue, retriable and fatal delivery errors, metrics, client configuration.
(Exactly-once is proven on real Kafka in tests/integration, never here.)"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import MutableMapping
from typing import Any

import pytest
from confluent_kafka import KafkaError

from streamplug.api.sink import DeliveryGuarantee
from streamplug.plugins import hookimpl
from streamplug.testing import sink_context
from streamplug_kafka_common.admin import read_all
from streamplug_kafka_sink import KafkaDeliveryError, KafkaRecordSerializationSchema, KafkaSink
from streamplug_kafka_sink.metrics import ProducerStatistics, WriterMetrics
from streamplug_kafka_sink.writer import KafkaWriter
from streamplug_testing.mock import ApiKey


def _sink(bootstrap: str, topic: str, guarantee: DeliveryGuarantee, **props: Any) -> KafkaSink:
    schema = (
        KafkaRecordSerializationSchema.builder()
        .set_topic(topic)
        .set_value_serialization_schema(lambda s: s.encode())
        .build()
    )
    return (
        KafkaSink.builder()
        .set_bootstrap_servers(bootstrap)
        .set_record_serializer(schema)
        .set_delivery_guarantee(guarantee)
        .set_properties(props)
        .build()
    )


class Recorder:
    """A configure_client hook that records every client the sink configures."""

    def __init__(self) -> None:
        self.configured: list[tuple[str, dict[str, Any]]] = []

    @hookimpl
    def streamplug_configure_client(
        self, properties: MutableMapping[str, Any], role: str, connector: str
    ) -> None:
        self.configured.append((role, dict(properties)))


def _metrics(writer: Any) -> WriterMetrics:
    assert isinstance(writer, KafkaWriter)
    return writer.metrics


def _values(topic_records: list[Any]) -> list[str]:
    return [m.value().decode() for m in topic_records]


def test_at_least_once_delivers_every_record_through_a_full_queue(mock_cluster: Any) -> None:
    mock_cluster.create_topic("out", partitions=1)
    sink = _sink(
        mock_cluster.bootstrap_servers,
        "out",
        DeliveryGuarantee.AT_LEAST_ONCE,
        # A tiny queue forces BufferError on almost every produce call.
        **{"queue.buffering.max.messages": "50"},
    )
    recorder = Recorder()
    writer = sink.create_writer(sink_context(plugins=[recorder]), [])
    values = [f"v{i}" for i in range(3000)]
    for i in range(0, len(values), 500):
        writer.write(values[i : i + 500], None)
    writer.flush(False)
    writer.close()
    assert _values(read_all(mock_cluster.bootstrap_servers, "out", "read_uncommitted")) == values
    metrics = _metrics(writer).snapshot()
    assert metrics["numRecordsOut"] == 3000
    assert metrics["numBytesOut"] == sum(len(v) for v in values)
    # Every client went through the configure_client hook, as a producer of the kafka connector.
    role, props = recorder.configured[0]
    assert role == "producer" and props["acks"] == "all" and props["enable.idempotence"] == "true"


def test_retriable_errors_keep_order_without_duplicates(mock_cluster: Any) -> None:
    mock_cluster.create_topic("out", partitions=1)
    sink = _sink(
        mock_cluster.bootstrap_servers, "out", DeliveryGuarantee.AT_LEAST_ONCE, **{"linger.ms": "2"}
    )
    writer = sink.create_writer(sink_context(), [])
    values = [f"v{i}" for i in range(2000)]
    writer.write(values[:700], None)
    mock_cluster.push_request_errors(
        ApiKey.PRODUCE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NOT_ENOUGH_REPLICAS,
    )
    writer.write(values[700:1400], None)
    mock_cluster.set_partition_leader("out", 0, 2)  # leader change mid-stream
    writer.write(values[1400:], None)
    writer.flush(False)
    writer.close()
    assert _values(read_all(mock_cluster.bootstrap_servers, "out", "read_uncommitted")) == values


def test_at_least_once_flush_raises_on_delivery_failure(mock_cluster: Any) -> None:
    mock_cluster.create_topic("out", partitions=1)
    sink = _sink(mock_cluster.bootstrap_servers, "out", DeliveryGuarantee.AT_LEAST_ONCE)
    writer = sink.create_writer(sink_context(), [])
    writer.write(["ok"], None)
    writer.flush(False)
    # Non-retriable: the broker refuses the batch, so the records can never be delivered.
    mock_cluster.push_request_errors(ApiKey.PRODUCE, *[KafkaError.MSG_SIZE_TOO_LARGE] * 5)
    writer.write(["lost-1", "lost-2"], None)
    with pytest.raises(KafkaDeliveryError, match=r"could not be delivered.*out\[0\]"):
        writer.flush(False)
    writer.close()


def test_none_never_waits_and_logs_failures(
    mock_cluster: Any, caplog: pytest.LogCaptureFixture
) -> None:
    mock_cluster.create_topic("out", partitions=1)
    sink = _sink(mock_cluster.bootstrap_servers, "out", DeliveryGuarantee.NONE)
    writer = sink.create_writer(sink_context(), [])
    mock_cluster.push_request_errors(ApiKey.PRODUCE, *[KafkaError.MSG_SIZE_TOO_LARGE] * 5)
    writer.write(["a", "b"], None)
    writer.flush(True)  # end of input: delivers what it can, never raises for NONE
    with caplog.at_level(logging.WARNING):
        writer.write(["c"], None)
    writer.close()
    assert "DeliveryGuarantee.NONE drops them" in caplog.text
    assert _metrics(writer).snapshot()["numRecordsOutErrors"] >= 1


def test_fixed_partitioner_and_timestamps_reach_kafka(mock_cluster: Any) -> None:
    mock_cluster.create_topic("out", partitions=3)
    schema = (
        KafkaRecordSerializationSchema.builder()
        .set_topic("out")
        .set_value_serialization_schema(lambda s: s.encode())
        .set_header_provider(lambda s: {"src": b"unit"})
        .set_partitioner("fixed")
        .build()
    )
    sink = (
        KafkaSink.builder()
        .set_bootstrap_servers(mock_cluster.bootstrap_servers)
        .set_record_serializer(schema)
        .set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
        .build()
    )
    writers = [
        sink.create_writer(sink_context(subtask_index=i, parallelism=2), []) for i in range(2)
    ]
    for i, w in enumerate(writers):
        w.write([f"s{i}-{n}" for n in range(10)], [1_700_000_000_000 + n for n in range(10)])
        w.flush(False)
        w.close()
    records = read_all(mock_cluster.bootstrap_servers, "out", "read_uncommitted")
    by_partition: dict[int, list[str]] = {}
    for m in records:
        by_partition.setdefault(m.partition() or 0, []).append((m.value() or b"").decode())
    assert sorted(by_partition) == [0, 1]
    assert all(v.startswith("s0-") for v in by_partition[0])
    assert all(v.startswith("s1-") for v in by_partition[1])
    assert {m.timestamp()[1] for m in records} == {1_700_000_000_000 + n for n in range(10)}
    assert all(dict(m.headers() or [])["src"] == b"unit" for m in records)


def test_producer_statistics_feed_current_send_time(mock_cluster: Any) -> None:
    mock_cluster.create_topic("out", partitions=1)
    sink = _sink(
        mock_cluster.bootstrap_servers,
        "out",
        DeliveryGuarantee.AT_LEAST_ONCE,
        **{"statistics.interval.ms": "100"},
    )
    writer = sink.create_writer(sink_context(), [])
    deadline = time.monotonic() + 10
    stats: ProducerStatistics = _metrics(writer).statistics
    while stats.current_send_time_ms is None and time.monotonic() < deadline:
        writer.write(["x"] * 100, None)
        writer.flush(False)
        time.sleep(0.05)
    assert stats.current_send_time_ms is not None and stats.current_send_time_ms >= 0
    assert stats.get("txmsgs") is not None
    gauges = _metrics(writer).group.gauges
    assert gauges["currentSendTime"].value == stats.current_send_time_ms
    writer.close()


def test_statistics_parsing() -> None:
    stats = ProducerStatistics()
    stats.on_stats(
        json.dumps(
            {
                "msg_cnt": 3,
                "txmsgs": 10,
                "brokers": {
                    "b1": {"nodeid": 1, "rtt": {"avg": 2000}, "outbuf_latency": {"avg": 500}},
                    "b2": {"nodeid": 2, "rtt": {"avg": 4000}},
                    "bootstrap": {"nodeid": -1, "rtt": {"avg": 99999}},
                },
            }
        )
    )
    assert stats.current_send_time_ms == 3.0
    assert stats.get("msg_cnt") == 3 and stats.get("outbuf_latency_avg_ms") == 0.5
    stats.on_stats("not json")
    assert stats.get("txmsgs") == 10


def test_event_time_becomes_record_timestamp_on_the_fast_path(mock_cluster: Any) -> None:
    mock_cluster.create_topic("out", partitions=1)
    sink = _sink(mock_cluster.bootstrap_servers, "out", DeliveryGuarantee.AT_LEAST_ONCE)
    writer = sink.create_writer(sink_context(), [])
    writer.write(["a", "b", "c"], [1_600_000_000_001, 1_600_000_000_002, 1_600_000_000_003])
    writer.write(["d"], [-1])  # unknown event time: the producer stamps the current time
    writer.flush(False)
    writer.close()
    records = read_all(mock_cluster.bootstrap_servers, "out", "read_uncommitted")
    stamps = [m.timestamp()[1] for m in records]
    assert stamps[:3] == [1_600_000_000_001, 1_600_000_000_002, 1_600_000_000_003]
    assert stamps[3] > 1_700_000_000_000


def test_full_queue_keeps_order_and_event_time_on_the_fast_path(mock_cluster: Any) -> None:
    # The fast path hands a batch to produce() from C and resumes after each record the
    # full queue refused: every record must arrive once, in order, with its own event time.
    mock_cluster.create_topic("out", partitions=1)
    sink = _sink(
        mock_cluster.bootstrap_servers,
        "out",
        DeliveryGuarantee.AT_LEAST_ONCE,
        **{"queue.buffering.max.messages": "50"},
    )
    writer = sink.create_writer(sink_context(), [])
    values = [f"v{i}" for i in range(3000)]
    stamps = [1_600_000_000_000 + i for i in range(3000)]
    stamps[7] = -1  # unknown event time: stamped "now" by the producer, order unchanged
    for i in range(0, len(values), 500):
        writer.write(values[i : i + 500], stamps[i : i + 500])
    writer.flush(False)
    writer.close()
    records = read_all(mock_cluster.bootstrap_servers, "out", "read_uncommitted")
    assert _values(records) == values
    got = [m.timestamp()[1] for m in records]
    assert got[:7] == stamps[:7] and got[8:] == stamps[8:]
    assert got[7] > 1_700_000_000_000
    metrics = _metrics(writer).snapshot()
    assert metrics["numRecordsOut"] == 3000
    assert metrics["numBytesOut"] == sum(len(v) for v in values)


def test_a_record_produce_rejects_fails_the_write_on_the_fast_path(mock_cluster: Any) -> None:
    mock_cluster.create_topic("out", partitions=1)
    schema = (
        KafkaRecordSerializationSchema.builder()
        .set_topic("out")
        .set_value_serialization_schema(lambda v: v)  # produce() refuses an int value
        .build()
    )
    sink = (
        KafkaSink.builder()
        .set_bootstrap_servers(mock_cluster.bootstrap_servers)
        .set_record_serializer(schema)
        .set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
        .build()
    )
    writer = sink.create_writer(sink_context(), [])
    with pytest.raises(TypeError):
        writer.write([b"ok", 42, b"never"], [1_600_000_000_000] * 3)
    writer.close()
