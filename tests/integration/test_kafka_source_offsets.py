"""Where a KafkaSource starts and stops, on a real broker: every offsets initializer and
bounded reads between explicit start and stop offsets."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from streamplug.api import DeserializationSchema, WatermarkStrategy
from streamplug.connectors import CollectSink
from streamplug.errors import JobFailedError
from streamplug.runtime import RestartStrategies, StreamExecutionEnvironment
from streamplug_kafka_source import (
    KafkaOffsetResetStrategy,
    KafkaOffsetsInitializer,
    KafkaSource,
    KafkaTopicPartition,
    PartitionOffsetsRetriever,
)

pytestmark = pytest.mark.integration

PER_PARTITION = 10
# Record timestamps an hour ago. Kafka deletes records older than retention.ms (7 days by
# default) by their timestamps, at its next retention check (every 5 minutes): with a base
# in 2023 a partition's records sometimes vanished mid-test.
BASE_TS = int(time.time() * 1000) - 3_600_000


class Utf8(DeserializationSchema[str]):
    def deserialize(self, message: bytes) -> str:
        return message.decode()


def produce(
    bootstrap: str, topic: str, partitions: int, start: int = 0, count: int = PER_PARTITION
) -> None:
    """Values "p:i" with record timestamps BASE_TS + i seconds."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for p in range(partitions):
        for i in range(start, start + count):
            producer.produce(topic, f"{p}:{i}".encode(), partition=p, timestamp=BASE_TS + i * 1000)
    assert producer.flush(10) == 0


def expected(**ranges: range | list[int]) -> list[str]:
    """expected(p0=range(3, 10), p1=...) -> the "p:i" values, sorted."""
    return sorted(f"{name[1:]}:{i}" for name, r in ranges.items() for i in r)


def run(source: KafkaSource, parallelism: int = 2) -> list[str]:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(parallelism).set_restart_strategy(RestartStrategies.no_restart())
    sink = CollectSink()
    env.from_source(source, WatermarkStrategy.no_watermarks(), "kafka").sink_to(sink)
    env.execute("offsets-test")
    return sorted(sink.results)


def source_for(
    bootstrap: str,
    topic: str,
    starting: KafkaOffsetsInitializer,
    stopping: KafkaOffsetsInitializer | None = None,
    group: str | None = None,
) -> KafkaSource:
    builder = (
        KafkaSource.builder()
        .set_bootstrap_servers(bootstrap)
        .set_topics(topic)
        .set_starting_offsets(starting)
        .set_bounded(stopping or KafkaOffsetsInitializer.latest())
        .set_value_only_deserializer(Utf8())
    )
    if group:
        builder.set_group_id(group)
    return builder.build()


def commit(bootstrap: str, group: str, offsets: dict[tuple[str, int], int]) -> None:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    try:
        consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False
        )
    finally:
        consumer.close()


@pytest.fixture
def topic(kafka_bootstrap: str, topic_factory: Callable[..., str]) -> str:
    name = topic_factory(partitions=2)
    produce(kafka_bootstrap, name, 2)
    return name


def test_earliest_reads_everything_and_is_the_default(kafka_bootstrap: str, topic: str) -> None:
    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(kafka_bootstrap)
        .set_topics(topic)
        .set_bounded(KafkaOffsetsInitializer.latest())
        .set_value_only_deserializer(Utf8())
        .build()
    )
    assert run(source) == expected(p0=range(10), p1=range(10))


def test_committed_offsets_start_at_the_groups_commits(kafka_bootstrap: str, topic: str) -> None:
    commit(kafka_bootstrap, "g-committed", {(topic, 0): 3, (topic, 1): 7})
    source = source_for(
        kafka_bootstrap, topic, KafkaOffsetsInitializer.committed_offsets(), group="g-committed"
    )
    assert run(source) == expected(p0=range(3, 10), p1=range(7, 10))


@pytest.mark.parametrize(
    ("strategy", "partition_1"),
    [(KafkaOffsetResetStrategy.EARLIEST, range(10)), (KafkaOffsetResetStrategy.LATEST, range(0))],
)
def test_committed_offsets_fall_back_to_the_reset_strategy(
    kafka_bootstrap: str, topic: str, strategy: KafkaOffsetResetStrategy, partition_1: range
) -> None:
    group = f"g-reset-{strategy.value}"
    commit(kafka_bootstrap, group, {(topic, 0): 4})
    source = source_for(
        kafka_bootstrap, topic, KafkaOffsetsInitializer.committed_offsets(strategy), group=group
    )
    assert run(source) == expected(p0=range(4, 10), p1=partition_1)


def test_committed_offsets_without_reset_fail_naming_the_partition(
    kafka_bootstrap: str, topic: str
) -> None:
    commit(kafka_bootstrap, "g-none", {(topic, 0): 4})
    source = source_for(
        kafka_bootstrap, topic, KafkaOffsetsInitializer.committed_offsets(), group="g-none"
    )
    with pytest.raises(JobFailedError) as info:
        run(source)
    chain = []
    error: BaseException | None = info.value
    while error is not None:
        chain.append(str(error))
        error = error.__cause__
    assert any(f"{topic}-1" in text and "NONE" in text for text in chain), chain


def test_timestamp_starts_at_the_first_record_at_or_after_it(
    kafka_bootstrap: str, topic: str
) -> None:
    source = source_for(kafka_bootstrap, topic, KafkaOffsetsInitializer.timestamp(BASE_TS + 4500))
    assert run(source) == expected(p0=range(5, 10), p1=range(5, 10))
    after_all = source_for(
        kafka_bootstrap, topic, KafkaOffsetsInitializer.timestamp(BASE_TS + 10**9)
    )
    assert run(after_all) == []


def test_specific_offsets_with_the_rest_from_the_reset_strategy(
    kafka_bootstrap: str, topic: str
) -> None:
    source = source_for(
        kafka_bootstrap, topic, KafkaOffsetsInitializer.offsets({KafkaTopicPartition(topic, 1): 8})
    )
    assert run(source) == expected(p0=range(10), p1=range(8, 10))


class _Signalling(KafkaOffsetsInitializer):
    """latest(), telling the test once the enumerator has resolved it."""

    def __init__(self) -> None:
        self.resolved = threading.Event()
        self.offsets: dict[KafkaTopicPartition, int] = {}

    def get_partition_offsets(
        self, partitions: Collection[KafkaTopicPartition], retriever: PartitionOffsetsRetriever
    ) -> dict[KafkaTopicPartition, int]:
        self.offsets = KafkaOffsetsInitializer.latest().get_partition_offsets(partitions, retriever)
        self.resolved.set()
        return self.offsets

    def get_auto_offset_reset_strategy(self) -> KafkaOffsetResetStrategy:
        return KafkaOffsetResetStrategy.LATEST


def test_latest_reads_only_records_written_after_discovery(
    kafka_bootstrap: str, topic: str
) -> None:
    latest = _Signalling()
    stop = {KafkaTopicPartition(topic, p): 15 for p in range(2)}
    source = source_for(kafka_bootstrap, topic, latest, KafkaOffsetsInitializer.offsets(stop))
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2).set_restart_strategy(RestartStrategies.no_restart())
    sink = CollectSink()
    env.from_source(source, WatermarkStrategy.no_watermarks(), "kafka").sink_to(sink)
    client = env.execute_async("latest-test")
    try:
        assert latest.resolved.wait(30)
        assert set(latest.offsets.values()) == {10}
        produce(kafka_bootstrap, topic, 2, start=10, count=5)
        client.wait(60)
    finally:
        if not client.status.is_terminal:
            client.cancel()
    assert sorted(sink.results) == expected(p0=range(10, 15), p1=range(10, 15))


def test_bounded_read_returns_exactly_the_records_between_start_and_stop(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=3)
    produce(kafka_bootstrap, topic, 2)  # partition 2 stays empty
    tp = [KafkaTopicPartition(topic, p) for p in range(3)]
    source = source_for(
        kafka_bootstrap,
        topic,
        KafkaOffsetsInitializer.offsets({tp[0]: 2, tp[1]: 9, tp[2]: 0}),
        KafkaOffsetsInitializer.offsets({tp[0]: 6, tp[1]: 9, tp[2]: 0}),
    )
    # partition 0: [2, 6); partition 1: start == stop, finished at once; partition 2: empty.
    assert run(source, parallelism=3) == expected(p0=range(2, 6))
    whole: Any = source_for(kafka_bootstrap, topic, KafkaOffsetsInitializer.earliest())
    assert run(whole, parallelism=1) == expected(p0=range(10), p1=range(10))


def test_bounded_read_of_transactional_data_ends_past_markers_and_aborted_records(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"t-{topic}"})
    producer.init_transactions()
    for batch in range(3):
        producer.begin_transaction()
        for i in range(5):
            producer.produce(topic, f"0:{batch * 5 + i}".encode())
        if batch == 1:
            # Aborting with records still in flight fails now and then with librdkafka
            # 2.3.0 on Kafka 4 (INVALID_TXN_STATE, fatal); the records must be written for
            # the test anyway.
            assert producer.flush(10) == 0
            producer.abort_transaction()
        else:
            producer.commit_transaction()
    # The last offset is a commit marker no consumer receives: the split ends by position.
    source = source_for(kafka_bootstrap, topic, KafkaOffsetsInitializer.earliest())
    assert run(source, parallelism=1) == expected(p0=[*range(5), *range(10, 15)])


def test_unbounded_source_with_stopping_offsets_stops_the_same_way(
    kafka_bootstrap: str, topic: str
) -> None:
    stop = {KafkaTopicPartition(topic, 0): 4, KafkaTopicPartition(topic, 1): 6}
    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(kafka_bootstrap)
        .set_topics(topic)
        .set_unbounded(KafkaOffsetsInitializer.offsets(stop))
        .set_value_only_deserializer(Utf8())
        .build()
    )
    assert source.get_boundedness().name == "CONTINUOUS_UNBOUNDED"
    assert run(source) == expected(p0=range(4), p1=range(6))
