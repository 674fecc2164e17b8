"""The keyed fast path of the Kafka sink (``set_key_value_serialization_schemas``): (key,
value) elements serialized column by column and produced without a record per element,
on librdkafka's in-process mock cluster; plus the general per-record path it shares with
partitioners and header providers, and the builder's checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from confluent_kafka.serialization import StringSerializer

from streamplug.api.serde import SerializationSchema
from streamplug.api.sink import DeliveryGuarantee
from streamplug.errors import ConfigError
from streamplug.testing import sink_context
from streamplug_kafka_common.admin import read_all
from streamplug_kafka_sink import KafkaRecordSerializationSchema, KafkaSink, KafkaSinkContext

TS = 1_600_000_000_000


class CountingUtf8(SerializationSchema[str]):
    def __init__(self) -> None:
        self.batches = 0
        self.singles = 0

    def serialize(self, element: str) -> bytes:
        self.singles += 1
        return element.encode()

    def serialize_batch(self, elements: Sequence[str]) -> list[bytes]:
        self.batches += 1
        assert None not in elements, "a null key or value reached the schema"
        return [e.encode() for e in elements]


def _writer(bootstrap: str, schema: Any, **props: Any) -> Any:
    sink = (
        KafkaSink.builder()
        .set_bootstrap_servers(bootstrap)
        .set_record_serializer(schema)
        .set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
        .set_properties(props)
        .build()
    )
    return sink.create_writer(sink_context(), [])


def _records(bootstrap: str, topic: str) -> list[tuple[Any, ...]]:
    return [
        (m.key(), m.value(), m.timestamp()[1])
        for m in read_all(bootstrap, topic, "read_uncommitted")
    ]


def test_pairs_are_serialized_in_bulk_with_nulls_kept(mock_cluster: Any) -> None:
    mock_cluster.create_topic("kv", partitions=1)
    keys, values = CountingUtf8(), CountingUtf8()
    schema = (
        KafkaRecordSerializationSchema.builder()
        .set_topic("kv")
        .set_key_value_serialization_schemas(keys, values)
        .build()
    )
    # A tiny queue: BufferError in the middle of a batch must keep each key with its value.
    writer = _writer(
        mock_cluster.bootstrap_servers, schema, **{"queue.buffering.max.messages": "7"}
    )
    elements = [(f"k{i}", f"v{i}") for i in range(100)]
    elements[3] = (None, "no key")
    elements[5] = ("deleted", None)
    writer.write(elements[:50], [TS + i for i in range(50)])
    writer.write(elements[50:], None)
    writer.write([(None, "a"), (None, "b")], [TS, TS])  # a batch with no key at all
    writer.flush(False)
    writer.close()
    got = _records(mock_cluster.bootstrap_servers, "kv")
    expected = [
        (None if k is None else k.encode(), None if v is None else v.encode())
        for k, v in [*elements, (None, "a"), (None, "b")]
    ]
    assert [(k, v) for k, v, _ in got] == expected
    assert [t for _, _, t in got[:50]] == [TS + i for i in range(50)]
    assert keys.singles == values.singles == 0
    assert keys.batches == 2  # the third batch had no key to serialize
    assert values.batches == 3
    metrics = writer.metrics.snapshot()
    assert metrics["numRecordsOut"] == 102
    assert metrics["numBytesOut"] == sum(len(k or b"") + len(v or b"") for k, v in expected)


def test_raw_bytes_and_confluent_serializers(mock_cluster: Any) -> None:
    mock_cluster.create_topic("kv2", partitions=1)
    schema = (
        KafkaRecordSerializationSchema.builder()
        .set_topic("kv2")
        .set_key_value_serialization_schemas(None, StringSerializer("utf_8"))
        .build()
    )
    writer = _writer(mock_cluster.bootstrap_servers, schema)
    writer.write([(b"k1", "é"), (None, "x")], [TS, TS])
    writer.flush(False)
    writer.close()
    assert _records(mock_cluster.bootstrap_servers, "kv2") == [
        (b"k1", "é".encode(), TS),
        (None, b"x", TS),
    ]


def test_headers_from_elements_and_partitioner_take_the_general_path(mock_cluster: Any) -> None:
    mock_cluster.create_topic("kv3", partitions=3)
    seen: list[tuple[Any, ...]] = []

    def partition(element: Any, key: Any, value: Any, topic: str, parts: Sequence[int]) -> int:
        seen.append((element, key, value))
        return 2

    schema = (
        KafkaRecordSerializationSchema.builder()
        .set_topic("kv3")
        .set_key_value_serialization_schemas(CountingUtf8(), None, include_headers=True)
        .set_partitioner(partition)
        .build()
    )
    writer = _writer(mock_cluster.bootstrap_servers, schema)
    writer.write([("k", b"v", [("h", b"1")]), (None, None, None)], [TS, TS])
    writer.flush(False)
    writer.close()
    records = read_all(mock_cluster.bootstrap_servers, "kv3", "read_uncommitted")
    assert [(m.partition(), m.key(), m.value(), m.headers()) for m in records] == [
        (2, b"k", b"v", [("h", b"1")]),
        (2, None, None, None),
    ]
    assert seen[0] == (("k", b"v", [("h", b"1")]), b"k", b"v")


def test_elements_that_are_not_pairs_are_named() -> None:
    schema = (
        KafkaRecordSerializationSchema.builder()
        .set_topic("t")
        .set_key_value_serialization_schemas(None, None)
        .build()
    )
    ctx = KafkaSinkContext(0, 1, lambda _t: [0])
    schema.open(ctx)
    with pytest.raises(TypeError, match=r"expects \(key, value\) tuples, got str 'ab'"):
        schema.key_value_columns(["ab"])  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match=r"got bytes"):
        schema.serialize(b"v", ctx, None)
    record = schema.serialize((b"k", b"v"), ctx, TS)
    assert record is not None and (record.key, record.value, record.timestamp) == (b"k", b"v", TS)


def test_builder_rejects_mixing_pairs_with_element_schemas() -> None:
    builder = (
        KafkaRecordSerializationSchema.builder()
        .set_topic("t")
        .set_key_value_serialization_schemas(None, None)
        .set_value_serialization_schema(CountingUtf8())
    )
    with pytest.raises(ConfigError, match="cannot be combined with set_value_serialization_schema"):
        builder.build()
    with_provider = (
        KafkaRecordSerializationSchema.builder()
        .set_topic("t")
        .set_key_value_serialization_schemas(None, None, include_headers=True)
        .set_header_provider(lambda e: None)
    )
    with pytest.raises(ConfigError, match="use one of them"):
        with_provider.build()
    with pytest.raises(ConfigError, match="is not a SerializationSchema"):
        KafkaRecordSerializationSchema.builder().set_key_value_serialization_schemas(3, None)  # type: ignore[arg-type]


class KeyOfElement(CountingUtf8):
    """Flink's key schema: serializes the key part of the whole element."""

    def serialize(self, element: str) -> bytes:
        self.singles += 1
        return element.split(":")[0].encode()

    def serialize_batch(self, elements: Sequence[str]) -> list[bytes]:
        self.batches += 1
        return [e.split(":")[0].encode() for e in elements]


def test_a_whole_element_key_schema_also_runs_in_bulk(mock_cluster: Any) -> None:
    mock_cluster.create_topic("whole", partitions=1)
    keys, values = KeyOfElement(), CountingUtf8()
    schema = (
        KafkaRecordSerializationSchema.builder()
        .set_topic("whole")
        .set_value_serialization_schema(values)
        .set_key_serialization_schema(keys)
        .build()
    )
    writer = _writer(
        mock_cluster.bootstrap_servers, schema, **{"queue.buffering.max.messages": "7"}
    )
    elements = [f"k{i}:v{i}" for i in range(60)]
    writer.write(elements, [TS + i for i in range(60)])
    writer.flush(False)
    writer.close()
    got = _records(mock_cluster.bootstrap_servers, "whole")
    assert got == [(f"k{i}".encode(), f"k{i}:v{i}".encode(), TS + i) for i in range(60)]
    assert (keys.batches, keys.singles, values.batches, values.singles) == (1, 0, 1, 0)
    assert writer.metrics.snapshot()["numBytesOut"] == sum(len(k) + len(v) for k, v, _ in got)
