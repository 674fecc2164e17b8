"""The keyed fast path of the Kafka source (``KafkaRecordDeserializationSchema.key_value``)
and the whole-record ``KafkaRecord``, on librdkafka's in-process mock cluster: keys and
values are read column by column through the schemas' batch methods, null keys and
tombstones stay None, extras only when asked for, and bad keys or values meet the
bad-record policy one record at a time."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.serialization import StringDeserializer

from streamplug.api import DeserializationSchema
from streamplug.api.serde import DeserializationError
from streamplug.api.source import InputStatus
from streamplug.testing import RecordingOutput, reader_context
from streamplug_kafka_common.admin import read_all
from streamplug_kafka_source import (
    BadRecordPolicy,
    KafkaPartitionSplit,
    KafkaRecord,
    KafkaRecordDeserializationSchema,
    KafkaSource,
    TimestampType,
)
from streamplug_testing.mock import MockCluster

BASE_TS = 1_600_000_000_000


class CountingUtf8(DeserializationSchema[str]):
    """UTF-8 text that counts how it was called: the fast path must use the batch method."""

    def __init__(self) -> None:
        self.batches = 0
        self.singles = 0

    def deserialize(self, message: bytes) -> str:
        self.singles += 1
        try:
            return message.decode()
        except UnicodeDecodeError as exc:
            raise DeserializationError("not utf-8", format="utf8", data=message) from exc

    def deserialize_batch(self, messages: Sequence[bytes]) -> list[str]:
        self.batches += 1
        assert None not in messages, "a null key or value reached the schema"
        return [m.decode() for m in messages]


def produce(cluster: MockCluster, topic: str, records: list[tuple[Any, ...]]) -> None:
    cluster.create_topic(topic, partitions=1)
    producer = Producer({"bootstrap.servers": cluster.bootstrap_servers})
    for i, (key, value, *headers) in enumerate(records):
        producer.produce(
            topic, value, key, timestamp=BASE_TS + i, headers=headers[0] if headers else None
        )
    assert producer.flush(10) == 0
    del producer


def read(
    cluster: MockCluster,
    topic: str,
    count: int,
    schema: Any,
    policy: BadRecordPolicy | None = None,
) -> tuple[RecordingOutput, Any]:
    builder = (
        KafkaSource.builder()
        .set_bootstrap_servers(cluster.bootstrap_servers)
        .set_topics(topic)
        .set_deserializer(schema)
    )
    if policy is not None:
        builder.set_bad_record_policy(policy)
    reader = builder.build().create_reader(reader_context())
    output = RecordingOutput()
    try:
        reader.start()
        reader.add_splits([KafkaPartitionSplit(topic, 0, 0, count)])
        reader.notify_no_more_splits()
        deadline = time.monotonic() + 20
        while reader.poll_next(output) is not InputStatus.END_OF_INPUT:
            assert time.monotonic() < deadline, "reader did not finish"
    finally:
        reader.close()
    assert not output.collected, "the keyed path emits batches only"
    return output, reader


def _client_threads() -> int:
    """librdkafka's threads in this process (named ``rdk:...``); 0 where /proc is missing."""
    tasks = "/proc/self/task"
    if not os.path.isdir(tasks):
        return 0
    names = []
    for task in os.listdir(tasks):
        try:
            with open(f"{tasks}/{task}/comm") as comm:
                names.append(comm.read())
        except OSError:
            continue  # the thread ended meanwhile
    return sum(name.startswith("rdk:") for name in names)


@pytest.fixture
def cluster() -> Any:
    with MockCluster(1) as mock:
        yield mock


def test_keys_and_values_come_as_tuples_through_the_batch_methods(cluster: MockCluster) -> None:
    produce(cluster, "kv", [(f"k{i}".encode(), f"v{i}".encode()) for i in range(300)])
    keys, values = CountingUtf8(), CountingUtf8()
    output, _ = read(cluster, "kv", 300, KafkaRecordDeserializationSchema.key_value(keys, values))
    assert output.values == [(f"k{i}", f"v{i}") for i in range(300)]
    assert [t for b in output.batches for t in b.timestamps or []] == [
        BASE_TS + i for i in range(300)
    ]
    # One schema call per batch and column, none per record.
    assert keys.singles == values.singles == 0
    assert keys.batches == values.batches == len(output.batches)


def test_null_keys_and_tombstones_stay_none(cluster: MockCluster) -> None:
    records = [(b"a", b"1"), (None, b"2"), (b"c", None), (None, None), (b"", b"5")]
    produce(cluster, "nulls", records)
    keys, values = CountingUtf8(), CountingUtf8()
    output, _ = read(cluster, "nulls", 5, KafkaRecordDeserializationSchema.key_value(keys, values))
    assert output.values == [("a", "1"), (None, "2"), ("c", None), (None, None), ("", "5")]
    assert keys.singles == values.singles == 0


def test_a_topic_without_keys_never_calls_the_key_schema(cluster: MockCluster) -> None:
    produce(cluster, "nokeys", [(None, f"v{i}".encode()) for i in range(50)])
    keys = CountingUtf8()
    output, _ = read(
        cluster, "nokeys", 50, KafkaRecordDeserializationSchema.key_value(keys, CountingUtf8())
    )
    assert output.values == [(None, f"v{i}") for i in range(50)]
    assert keys.batches == keys.singles == 0


def test_raw_bytes_and_confluent_deserializers(cluster: MockCluster) -> None:
    produce(cluster, "mixed", [(b"k1", "é".encode()), (b"k2", b"x")])
    schema = KafkaRecordDeserializationSchema.key_value(None, StringDeserializer("utf_8"))
    output, _ = read(cluster, "mixed", 2, schema)
    assert output.values == [(b"k1", "é"), (b"k2", "x")]


def test_timestamp_and_headers_only_when_asked_for(cluster: MockCluster) -> None:
    produce(
        cluster,
        "extras",
        [(b"a", b"1", [("h", b"x"), ("n", None)]), (b"b", b"2"), (None, b"3", [("h", b"y")])],
    )
    both = KafkaRecordDeserializationSchema.key_value(
        None, None, include_timestamp=True, include_headers=True
    )
    output, _ = read(cluster, "extras", 3, both)
    assert output.values == [
        (b"a", b"1", BASE_TS, (("h", b"x"), ("n", None))),
        (b"b", b"2", BASE_TS + 1, ()),
        (None, b"3", BASE_TS + 2, (("h", b"y"),)),
    ]
    headers_only = KafkaRecordDeserializationSchema.key_value(None, None, include_headers=True)
    output, _ = read(cluster, "extras", 3, headers_only)
    assert [len(e) for e in output.values] == [3, 3, 3]
    assert output.values[0] == (b"a", b"1", (("h", b"x"), ("n", None)))
    stamp_only = KafkaRecordDeserializationSchema.key_value(None, None, include_timestamp=True)
    output, _ = read(cluster, "extras", 3, stamp_only)
    assert output.values == [
        (b"a", b"1", BASE_TS),
        (b"b", b"2", BASE_TS + 1),
        (None, b"3", BASE_TS + 2),
    ]


def test_bad_keys_and_values_are_skipped_one_by_one_in_order(cluster: MockCluster) -> None:
    records = [(b"a", b"1"), (b"\xff", b"2"), (b"c", b"\xfe"), (None, b"4"), (b"e", None)]
    produce(cluster, "bad", records)
    keys, values = CountingUtf8(), CountingUtf8()
    schema = KafkaRecordDeserializationSchema.key_value(keys, values)
    output, reader = read(cluster, "bad", 5, schema, BadRecordPolicy.skip())
    assert output.values == [("a", "1"), (None, "4"), ("e", None)]
    assert [t for b in output.batches for t in b.timestamps or []] == [
        BASE_TS,
        BASE_TS + 3,
        BASE_TS + 4,
    ]
    assert reader.metrics.records_skipped.value == 2
    assert reader.metrics.deserialization_errors.value == 2


def test_a_bad_key_fails_the_job_naming_the_key_and_its_offset(cluster: MockCluster) -> None:
    produce(cluster, "badkey", [(b"a", b"1"), (b"\xff\x00", b"2")])
    schema = KafkaRecordDeserializationSchema.key_value(CountingUtf8(), CountingUtf8())
    with pytest.raises(DeserializationError) as info:
        read(cluster, "badkey", 2, schema)
    message = str(info.value)
    assert "badkey[0]@1" in message
    assert "key: not utf-8" in message
    assert "\\xff\\x00" in message  # the key's bytes, not the value's


def test_whole_record_schema_gets_every_field(cluster: MockCluster) -> None:
    produce(cluster, "whole", [(b"k", b"v", [("h", b"1")]), (None, None)])
    seen: list[KafkaRecord] = []

    def keep(record: KafkaRecord) -> Any:
        seen.append(record)
        return None if record.value is None else (record.key, record.value, record.header("h"))

    output, _ = read(cluster, "whole", 2, KafkaRecordDeserializationSchema.of(keep))
    assert output.values == [(b"k", b"v", b"1")]
    first = seen[0]
    assert (first.topic, first.partition, first.offset, first.timestamp) == (
        "whole",
        0,
        0,
        BASE_TS,
    )
    assert first.timestamp_type is TimestampType.CREATE_TIME
    assert first.headers == (("h", b"1"),)
    assert seen[1].key is None and seen[1].headers == ()
    with pytest.raises(AttributeError):
        first.value = b"changed"  # type: ignore[misc]


def test_key_value_rejects_what_is_not_a_schema() -> None:
    with pytest.raises(TypeError, match="key schema, got int"):
        KafkaRecordDeserializationSchema.key_value(3, None)  # type: ignore[arg-type]


def test_a_bad_key_is_dead_lettered_with_its_original_bytes(cluster: MockCluster) -> None:
    produce(cluster, "dlq-in", [(b"a", b"1"), (b"\xff", b"2", [("h", b"x")]), (b"c", b"3")])
    cluster.create_topic("dlq", partitions=1)
    schema = KafkaRecordDeserializationSchema.key_value(CountingUtf8(), CountingUtf8())
    threads = _client_threads()
    output, reader = read(cluster, "dlq-in", 3, schema, BadRecordPolicy.dead_letter("dlq"))
    # The closed reader's dead-letter producer ended its client threads (it kept
    # reconnecting to the cluster until a garbage collection before), with the reader
    # object still referenced here.
    deadline = time.monotonic() + 10
    while _client_threads() > threads:
        assert time.monotonic() < deadline, f"{_client_threads() - threads} client threads left"
        time.sleep(0.05)
    assert output.values == [("a", "1"), ("c", "3")]
    assert reader.metrics.records_dead_lettered.value == 1
    (dead,) = read_all(cluster.bootstrap_servers, "dlq", "read_uncommitted")
    assert (dead.key(), dead.value(), dead.timestamp()[1]) == (b"\xff", b"2", BASE_TS + 1)
    headers = dict(dead.headers() or [])
    assert headers["h"] == b"x"
    assert headers["streamplug.error"].startswith(b"key: not utf-8")
    assert headers["streamplug.source.offset"] == b"1"
