"""The reader on librdkafka's in-process mock cluster, with a recording output: batches are
cut per partition, stopping offsets are exact, progress is snapshotted, commits happen
only when a checkpoint completes. (Behaviour against real Kafka is proven in
tests/integration/test_kafka_source_*.)"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from streamplug.api import DeserializationSchema
from streamplug.api.source import InputStatus
from streamplug.testing import RecordingOutput, reader_context
from streamplug_kafka_source import (
    BadRecordPolicy,
    KafkaOffsetsInitializer,
    KafkaPartitionSplit,
    KafkaSource,
)
from streamplug_kafka_source import metrics as source_metrics
from streamplug_kafka_source.split.split import EARLIEST_OFFSET
from streamplug_testing.mock import MockCluster

BASE_TS = 1_600_000_000_000


class Utf8(DeserializationSchema[str]):
    def deserialize(self, message: bytes) -> str:
        return message.decode()


class KafkaReaderOutput(RecordingOutput):
    """Fails at once unless the reader emits batches only, each record with its timestamp."""

    def collect_batch(
        self,
        values: Sequence[Any],
        timestamps: Sequence[int] | None = None,
        split_id: str | None = None,
    ) -> None:
        assert timestamps is not None
        super().collect_batch(values, timestamps, split_id)

    def collect(
        self, value: Any, timestamp: int | None = None, split_id: str | None = None
    ) -> None:
        raise AssertionError("the Kafka reader emits batches only")


@pytest.fixture
def cluster() -> Any:
    with MockCluster(1) as mock:
        for topic in ("a", "b"):
            mock.create_topic(topic, partitions=2)
        producer = Producer({"bootstrap.servers": mock.bootstrap_servers})
        for topic in ("a", "b"):
            for p in range(2):
                for i in range(500):
                    producer.produce(
                        topic, f"{topic}{p}:{i}".encode(), partition=p, timestamp=BASE_TS + i
                    )
        assert producer.flush(10) == 0
        del producer  # gone before the mock cluster, so it does not log reconnect failures
        yield mock


def reader_for(bootstrap: str, **props: str) -> Any:
    builder = (
        KafkaSource.builder()
        .set_bootstrap_servers(bootstrap)
        .set_topics("a", "b")
        .set_group_id("g")
        .set_value_only_deserializer(Utf8())
        .set_properties({"poll.max.records": "300", **props})
    )
    return builder.build().create_reader(reader_context())


def drain(reader: Any, output: KafkaReaderOutput, limit_s: float = 20) -> InputStatus:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        status = reader.poll_next(output)
        if status is InputStatus.END_OF_INPUT:
            return status
        if status is InputStatus.NOTHING_AVAILABLE and not reader.split_states:
            return status
    raise AssertionError("reader did not finish")


def test_batches_are_per_partition_and_stop_exactly(cluster: MockCluster) -> None:
    reader = reader_for(cluster.bootstrap_servers)
    output = KafkaReaderOutput()
    try:
        reader.start()
        reader.add_splits(
            [
                KafkaPartitionSplit("a", 0, 0, 500),
                KafkaPartitionSplit("a", 1, 100, 137),
                KafkaPartitionSplit("b", 0, 480, 500),
                KafkaPartitionSplit("b", 1, 7, 7),  # empty range: finished at once
            ]
        )
        reader.notify_no_more_splits()
        assert drain(reader, output) is InputStatus.END_OF_INPUT
    finally:
        reader.close()
    by_split: dict[str, list[str]] = {}
    for split_id, values, stamps in output.batches:
        assert split_id is not None
        topic, partition = split_id.rsplit("-", 1)
        # Every batch holds one partition's records, in offset order, with their timestamps.
        assert all(v.startswith(f"{topic}{partition}:") for v in values)
        assert stamps == [BASE_TS + int(v.split(":")[1]) for v in values]
        by_split.setdefault(split_id, []).extend(values)
    assert by_split["a-0"] == [f"a0:{i}" for i in range(500)]
    assert by_split["a-1"] == [f"a1:{i}" for i in range(100, 137)]
    assert by_split["b-0"] == [f"b0:{i}" for i in range(480, 500)]
    assert "b-1" not in by_split
    assert sorted(output.released) == ["a-0", "a-1", "b-0", "b-1"]


def test_snapshot_holds_progress_and_commits_wait_for_completion(cluster: MockCluster) -> None:
    reader = reader_for(cluster.bootstrap_servers)
    output = KafkaReaderOutput()
    watcher = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": "g"})
    try:
        reader.add_splits([KafkaPartitionSplit("a", 0, 10), KafkaPartitionSplit("b", 1, 0)])
        deadline = time.monotonic() + 20
        while sum(len(v) for _, v, _ in output.batches) < 990 and time.monotonic() < deadline:
            reader.poll_next(output)
        snapshot = {s.split_id: s for s in reader.snapshot_state(1)}
        assert snapshot == {
            "a-0": KafkaPartitionSplit("a", 0, 500),
            "b-1": KafkaPartitionSplit("b", 1, 500),
        }
        tps = [TopicPartition("a", 0), TopicPartition("b", 1)]
        assert [tp.offset for tp in watcher.committed(tps, timeout=5)] == [-1001, -1001]
        reader.notify_checkpoint_complete(1)
        deadline = time.monotonic() + 10
        while reader.metrics.commits_succeeded.value == 0 and time.monotonic() < deadline:
            reader.poll_next(output)  # commit callbacks are served by the consumer's polls
        assert reader.metrics.commits_succeeded.value == 1
        assert [tp.offset for tp in watcher.committed(tps, timeout=5)] == [500, 500]
        assert reader.metrics.committed_offset(snapshot["a-0"].topic_partition) == 500
        # An unbounded reader with partitions never reports the end of its input.
        assert reader.poll_next(output) is not InputStatus.END_OF_INPUT
    finally:
        watcher.close()
        reader.close()


def test_tombstones_are_dropped_and_bad_values_skipped_in_order(cluster: MockCluster) -> None:
    cluster.create_topic("c", partitions=1)
    producer = Producer({"bootstrap.servers": cluster.bootstrap_servers})
    for value in [b"1", None, b"\xff", b"", b"4"]:
        producer.produce("c", value, timestamp=BASE_TS)
    producer.flush(10)
    del producer
    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(cluster.bootstrap_servers)
        .set_topics("c")
        .set_value_only_deserializer(Utf8())
        .set_bad_record_policy(BadRecordPolicy.skip())
        .build()
    )
    reader = source.create_reader(reader_context())
    output = KafkaReaderOutput()
    try:
        reader.add_splits([KafkaPartitionSplit("c", 0, 0, 5)])
        reader.notify_no_more_splits()
        assert drain(reader, output) is InputStatus.END_OF_INPUT
    finally:
        reader.close()
    assert [v for _, values, _ in output.batches for v in values] == ["1", "", "4"]
    assert reader.metrics.records_skipped.value == 1


def test_a_reader_without_splits_is_idle_and_ends_only_when_splits_can_finish(
    cluster: MockCluster,
) -> None:
    unbounded = reader_for(cluster.bootstrap_servers)
    output = KafkaReaderOutput()
    try:
        unbounded.notify_no_more_splits()
        assert unbounded.poll_next(output) is InputStatus.NOTHING_AVAILABLE
        assert output.idle_marks == 1
    finally:
        unbounded.close()
    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(cluster.bootstrap_servers)
        .set_topics("a")
        .set_value_only_deserializer(Utf8())
        .set_bounded(KafkaOffsetsInitializer.latest())
        .build()
    )
    bounded = source.create_reader(reader_context())
    try:
        bounded.notify_no_more_splits()
        assert bounded.poll_next(output) is InputStatus.END_OF_INPUT
    finally:
        bounded.close()


# -- pending records (the job's consumer lag) -----------------------------------------------


def _statistics(partitions: dict[str, dict[str, Any]]) -> str:
    """librdkafka's statistics JSON, cut to what the reader reads, for partitions named
    like splits (``"a-0"``)."""
    topics: dict[str, Any] = {}
    for name, stats in partitions.items():
        topic, partition = name.rsplit("-", 1)
        entry = topics.setdefault(topic, {"partitions": {"-1": {"hi_offset": -1}}})
        entry["partitions"][partition] = {"app_offset": -1001, **stats}
    return json.dumps({"topics": topics})


def read_at_least(reader: Any, output: KafkaReaderOutput, count: int) -> None:
    deadline = time.monotonic() + 20
    while len(output.values) < count:
        assert time.monotonic() < deadline, f"read {len(output.values)} of {count} records"
        reader.poll_next(output)


def test_pending_records_come_from_one_statistics_report(cluster: MockCluster) -> None:
    # No statistics from librdkafka itself: the test hands the reader its own.
    reader = reader_for(cluster.bootstrap_servers, **{"register.consumer.metrics": "false"})
    output = KafkaReaderOutput()
    try:
        reader.add_splits(
            [
                KafkaPartitionSplit("a", 0, 0),
                KafkaPartitionSplit("a", 1, 100, 400),
                KafkaPartitionSplit("b", 0, 0),
                KafkaPartitionSplit("b", 1, EARLIEST_OFFSET),
            ]
        )
        assert reader.pending_records() is None  # no end offset known yet
        reader.metrics.on_stats(
            _statistics(
                {
                    "a-0": {"hi_offset": 500, "app_offset": 120},  # end - handed out
                    "a-1": {"hi_offset": 500},  # stop - start: nothing handed out yet
                    "b-1": {"hi_offset": 500},  # start not resolved yet: left out
                    "c-0": {"hi_offset": 500},  # not this reader's: left out
                }
            )
        )  # b-0: no end known, left out
        assert reader.pending_records() == 380 + 300
        assert reader.metrics.group.gauges["pendingRecords"].value == 680
        read_at_least(reader, output, 1)
        reader.metrics.on_stats(
            _statistics({name: {"hi_offset": 500, "app_offset": 500} for name in ("a-0", "b-0")})
        )
        assert reader.pending_records() == 0
    finally:
        reader.close()
    assert reader.pending_records() is None  # a closed reader cannot say


def test_pending_records_reach_zero_from_librdkafkas_statistics_once_caught_up(
    cluster: MockCluster,
) -> None:
    reader = reader_for(cluster.bootstrap_servers, **{"statistics.interval.ms": "100"})
    output = KafkaReaderOutput()
    try:
        reader.add_splits([KafkaPartitionSplit("a", 0, 0)])
        read_at_least(reader, output, 500)
        # The next statistics report (served by the consumer's polls) says so.
        deadline = time.monotonic() + 10
        while reader.pending_records() != 0:
            assert time.monotonic() < deadline, f"pending {reader.pending_records()}, not 0"
            reader.poll_next(output)
    finally:
        reader.close()


class SlowOutput(KafkaReaderOutput):
    """Downstream work that takes ``per_record_s`` per record, like a slow map."""

    def __init__(self, per_record_s: float) -> None:
        super().__init__()
        self.per_record_s = per_record_s
        self.sizes: list[int] = []

    def collect_batch(
        self,
        values: Sequence[Any],
        timestamps: Sequence[int] | None = None,
        split_id: str | None = None,
    ) -> None:
        super().collect_batch(values, timestamps, split_id)
        self.sizes.append(len(values))
        time.sleep(self.per_record_s * len(values))


def test_slow_downstream_work_gets_small_batches(cluster: MockCluster) -> None:
    # A checkpoint barrier waits for the batch in flight: at 0.5 ms per record a batch of
    # poll.max.records (here 10,000) would hold it for 5 s. The reader sizes batches so one
    # takes about 50 ms downstream: ~100 records here.
    reader = reader_for(cluster.bootstrap_servers, **{"poll.max.records": "10000"})
    output = SlowOutput(per_record_s=0.0005)
    try:
        reader.start()
        reader.add_splits([KafkaPartitionSplit(t, p, 0, 500) for t in "ab" for p in (0, 1)])
        reader.notify_no_more_splits()
        assert drain(reader, output) is InputStatus.END_OF_INPUT
    finally:
        reader.close()
    assert len(output.values) == 2000
    # The first batch is at most Kafka's default max.poll.records (500), later ones ~100.
    assert max(output.sizes) <= 500, output.sizes
    assert 50 <= reader._batch_limit <= 200, output.sizes
    assert len(output.sizes) >= 12, output.sizes


def test_fast_downstream_work_keeps_full_batches(cluster: MockCluster) -> None:
    reader = reader_for(cluster.bootstrap_servers, **{"poll.max.records": "300"})
    output = KafkaReaderOutput()
    try:
        reader.start()
        reader.add_splits(
            [KafkaPartitionSplit("a", 0, 0, 500), KafkaPartitionSplit("a", 1, 0, 500)]
        )
        reader.notify_no_more_splits()
        assert drain(reader, output) is InputStatus.END_OF_INPUT
    finally:
        reader.close()
    assert len(output.values) == 1000
    assert reader._batch_limit == 300  # poll.max.records, reached and kept


# -- partitions librdkafka does not fetch -------------------------------------------------


def test_a_partition_not_fetched_for_long_is_reported_once_and_its_recovery_too(
    cluster: MockCluster, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(source_metrics, "_monotonic", lambda: clock[0])
    reader = reader_for(cluster.bootstrap_servers, **{"register.consumer.metrics": "false"})
    caplog.set_level(logging.WARNING, logger=source_metrics.__name__)

    def report(a0: str, a1: str) -> list[str]:
        caplog.clear()
        reader.metrics.on_stats(
            _statistics(
                {
                    "a-0": {"fetch_state": a0, "leader": -1},
                    "a-1": {"fetch_state": a1, "leader": 2},
                }
            )
        )
        return [r.getMessage() for r in caplog.records]

    try:
        reader.add_splits([KafkaPartitionSplit("a", 0, 0), KafkaPartitionSplit("a", 1, 0)])
        assert report("offset-query", "active") == []  # just assigned
        clock[0] += source_metrics.STALL_WARNING_S
        (warning,) = report("offset-query", "active")
        assert "a-0 has not been fetched for 15 s" in warning
        assert "'offset-query', leader unknown" in warning
        clock[0] += 60
        assert report("offset-query", "active") == []  # said once
        assert report("active", "validate-epoch-wait") == ["Kafka source: a-0 is fetching again"]
        clock[0] += source_metrics.STALL_WARNING_S - 1
        assert report("active", "validate-epoch-wait") == []  # a-1's wait is not long yet
        clock[0] += 1
        (warning,) = report("active", "validate-epoch-wait")
        assert "a-1 has not been fetched" in warning and "leader 2" in warning
    finally:
        reader.close()


def test_record_timestamps_are_read_only_when_asked_for(cluster: MockCluster) -> None:
    from streamplug_kafka_source.reader.reader import RecordTimestamps

    # Real messages from a consumer: confluent-kafka before 2.4 cannot construct them.
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": "ts"})
    consumer.assign([TopicPartition("a", 0, 0)])
    messages: list[Any] = []
    deadline = time.monotonic() + 10
    while len(messages) < 5 and time.monotonic() < deadline:
        messages += consumer.consume(5 - len(messages), 0.5)
    consumer.close()
    assert len(messages) == 5
    stamps = RecordTimestamps(messages)
    assert len(stamps) == 5 and bool(stamps)
    assert stamps._values is None  # nothing read for len() or truth
    assert stamps[-1] == BASE_TS + 4 and stamps._values is None  # one record, read alone
    tail = stamps[2:]
    assert isinstance(tail, RecordTimestamps) and tail._values is None
    assert list(tail) == [BASE_TS + 2, BASE_TS + 3, BASE_TS + 4]
    assert max(stamps) == BASE_TS + 4 and stamps._values == [BASE_TS + i for i in range(5)]
    assert stamps[0] == BASE_TS
    assert list(zip(stamps, "ab", strict=False)) == [(BASE_TS, "a"), (BASE_TS + 1, "b")]
    assert not RecordTimestamps([])


def test_named_topics_are_asked_for_at_start_and_a_missing_one_again_when_assigned(
    cluster: MockCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader asks for its source's named topics when it starts, while the enumerator
    is still discovering; a topic the cluster did not have then is asked for again when
    its partition is assigned, not taken as known."""
    from streamplug_kafka_source.reader.reader import KafkaSourceReader

    asked: list[list[str]] = []
    learn = KafkaSourceReader._learn_topics

    def recorded(self: KafkaSourceReader, topics: Any) -> None:
        asked.append(sorted(set(topics) - self._known_topics))
        learn(self, topics)

    monkeypatch.setattr(KafkaSourceReader, "_learn_topics", recorded)
    reader = (
        KafkaSource.builder()
        .set_bootstrap_servers(cluster.bootstrap_servers)
        .set_topics("a", "later")
        .set_value_only_deserializer(Utf8())
        .build()
        .create_reader(reader_context())
    )
    try:
        reader.start()
        assert asked == [["a", "later"]]
        cluster.create_topic("later", partitions=1)
        reader.add_splits(
            [KafkaPartitionSplit("a", 0, 0, 500), KafkaPartitionSplit("later", 0, 0, None)]
        )
        assert asked[1:] == [["later"]]
    finally:
        reader.close()


def test_a_pattern_names_no_topic_to_ask_for_at_start() -> None:
    from streamplug_kafka_source.enumerator.subscriber import (
        PartitionSetSubscriber,
        TopicListSubscriber,
        TopicPatternSubscriber,
        compile_pattern,
    )
    from streamplug_kafka_source.split.split import KafkaTopicPartition

    assert TopicListSubscriber(("b", "a")).named_topics() == ("b", "a")
    assert TopicPatternSubscriber(compile_pattern("a.*")).named_topics() == ()
    partitions = frozenset({KafkaTopicPartition("b", 1), KafkaTopicPartition("a", 0)})
    assert PartitionSetSubscriber(partitions).named_topics() == ("a", "b")
