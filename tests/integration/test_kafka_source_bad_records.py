"""Records that fail to deserialize go where the policy says — fail the job, skip and
count, or a dead-letter topic with the original bytes and the error in headers — and no
good record is lost, on a real broker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Producer

from streamplug.api import DeserializationError, DeserializationSchema, WatermarkStrategy
from streamplug.connectors import CollectSink
from streamplug.errors import JobFailedError
from streamplug.runtime import RestartStrategies, StreamExecutionEnvironment
from streamplug_kafka_common import admin
from streamplug_kafka_source import (
    BadRecordPolicy,
    KafkaOffsetsInitializer,
    KafkaRecord,
    KafkaRecordDeserializationSchema,
    KafkaSource,
)
from streamplug_kafka_source.reader import KafkaSourceReader

pytestmark = pytest.mark.integration

GOOD = 300
BAD_AT = {7: b"seven", 150: b"\xff\xfe", 299: b"1.5"}  # offsets of partition 0 holding junk


class Ints(DeserializationSchema[int]):
    """Decimal integers; anything else is bad input."""

    def deserialize(self, message: bytes) -> int:
        try:
            return int(message.decode("ascii"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise DeserializationError(str(exc), format="int", data=message) from exc

    def deserialize_batch(self, messages: Any) -> list[int]:
        return [int(m) for m in messages]  # raises on the first bad one: the source narrows it


@pytest.fixture
def topic(kafka_bootstrap: str, topic_factory: Callable[..., str]) -> str:
    """Partition 0: ints with junk at BAD_AT and one tombstone; partition 1: ints only."""
    name = topic_factory(partitions=2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for offset in range(GOOD + len(BAD_AT) + 1):
        if offset in BAD_AT:
            value: bytes | None = BAD_AT[offset]
        elif offset == 200:
            value = None  # a tombstone: nothing to deserialize, not an error
        else:
            value = str(offset).encode()
        producer.produce(
            name, value, key=f"k{offset}".encode(), partition=0, headers=[("origin", b"test")]
        )
    for i in range(100):
        producer.produce(name, str(10_000 + i).encode(), partition=1)
    assert producer.flush(10) == 0
    return name


def good_values() -> list[int]:
    size = GOOD + len(BAD_AT) + 1
    return sorted(
        [o for o in range(size) if o not in BAD_AT and o != 200] + [10_000 + i for i in range(100)]
    )


def run(
    source: KafkaSource, readers: list[KafkaSourceReader] | None = None
) -> tuple[list[Any], Any]:
    if readers is not None:
        create = source.create_reader

        def keep(context: Any) -> KafkaSourceReader:
            reader = create(context)
            readers.append(reader)
            return reader

        source.create_reader = keep  # type: ignore[method-assign]
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2).set_restart_strategy(RestartStrategies.no_restart())
    sink = CollectSink()
    env.from_source(source, WatermarkStrategy.no_watermarks(), "kafka").sink_to(sink)
    result = env.execute("bad-records-test")
    return sorted(sink.results), result


def builder(bootstrap: str, topic: str) -> Any:
    return (
        KafkaSource.builder()
        .set_bootstrap_servers(bootstrap)
        .set_topics(topic)
        .set_bounded(KafkaOffsetsInitializer.latest())
        .set_value_only_deserializer(Ints())
    )


def test_fail_policy_fails_the_job_naming_topic_partition_and_offset(
    kafka_bootstrap: str, topic: str
) -> None:
    with pytest.raises(JobFailedError) as info:
        run(builder(kafka_bootstrap, topic).build())
    chain = []
    error: BaseException | None = info.value
    while error is not None:
        chain.append(error)
        error = error.__cause__
    located = [e for e in chain if isinstance(e, DeserializationError)]
    assert located, [str(e) for e in chain]
    assert (located[0].topic, located[0].partition, located[0].offset) == (topic, 0, 7)
    assert f"{topic}[0]@7" in str(located[0]) and "b'seven'" in str(located[0])


def test_skip_policy_drops_and_counts_bad_records_and_keeps_every_good_one(
    kafka_bootstrap: str, topic: str
) -> None:
    readers: list[KafkaSourceReader] = []
    source = builder(kafka_bootstrap, topic).set_bad_record_policy(BadRecordPolicy.skip()).build()
    results, _ = run(source, readers)
    assert results == good_values()
    assert sum(r.metrics.records_skipped.value for r in readers) == len(BAD_AT)
    assert sum(r.metrics.num_records_in_errors.value for r in readers) == len(BAD_AT)


def test_dead_letter_policy_keeps_the_original_record_and_the_error(
    kafka_bootstrap: str, topic: str, topic_factory: Callable[..., str]
) -> None:
    dlq = topic_factory(partitions=1, name="dlq")
    readers: list[KafkaSourceReader] = []
    source = (
        builder(kafka_bootstrap, topic)
        .set_properties({"bad.record.policy": "dead-letter", "bad.record.dead.letter.topic": dlq})
        .build()
    )
    results, _ = run(source, readers)
    assert results == good_values()
    assert sum(r.metrics.records_dead_lettered.value for r in readers) == len(BAD_AT)
    dead = admin.read_all(kafka_bootstrap, dlq)
    assert [m.value() for m in dead] == list(BAD_AT.values())
    for message, offset in zip(dead, BAD_AT, strict=True):
        assert message.key() == f"k{offset}".encode()
        headers = dict(message.headers() or [])
        assert headers["origin"] == b"test"  # the record's own headers survive
        assert headers["streamplug.source.topic"] == topic.encode()
        assert headers["streamplug.source.partition"] == b"0"
        assert headers["streamplug.source.offset"] == str(offset).encode()
        assert headers["streamplug.error"]  # the reason, as the schema gave it
        cause = b"UnicodeDecodeError" if offset == 150 else b"ValueError"
        assert headers["streamplug.error.class"] == cause


def test_whole_record_schemas_follow_the_policy_too(kafka_bootstrap: str, topic: str) -> None:
    def keyed(record: KafkaRecord) -> tuple[str, int]:
        assert record.value is not None or record.offset == 200
        if record.value is None:
            return ("tombstone", record.offset)
        return (record.topic, int(record.value))

    source = (
        builder(kafka_bootstrap, topic)
        .set_deserializer(KafkaRecordDeserializationSchema.of(keyed))
        .set_bad_record_policy(BadRecordPolicy.skip())
        .build()
    )
    results, _ = run(source)
    assert ("tombstone", 200) in results  # whole-record schemas see tombstones
    assert sorted(v for t, v in results if t == topic) == good_values()
