"""The enumerator: Flink's assignment rule, discovery rounds, no-more-splits, failover."""

from __future__ import annotations

import weakref
from collections.abc import Collection, Mapping
from typing import Any

import pytest

from streamplug.errors import ConfigError
from streamplug.testing import RecordingEnumeratorContext, enumerator_context
from streamplug_kafka_source.enumerator import (
    KafkaOffsetsInitializer,
    KafkaSourceEnumerator,
    TopicListSubscriber,
    TopicPatternSubscriber,
    split_owner,
)
from streamplug_kafka_source.enumerator.enumerator import java_string_hash
from streamplug_kafka_source.enumerator.subscriber import (
    PartitionSetSubscriber,
    compile_pattern,
)
from streamplug_kafka_source.split import KafkaPartitionSplit, KafkaTopicPartition

# Computed with Java 17: String.hashCode(), and KafkaSourceEnumerator.getSplitOwner's
# formula for partition 0 at parallelism 4 and partition 5 at parallelism 7.
JAVA = [
    ("hello", 99162322, 2, 3),
    ("orders", -1008770331, 3, 1),
    ("", 0, 0, 5),
    ("topic-with-a-long-name-0123456789", 2135309419, 1, 2),
    ("\u00e9v\u00e9nements", -1479837150, 2, 4),
    ("\U0001f600emoji", -1233692477, 1, 4),
    ("test-topic", 639758388, 0, 3),
]


def test_a_lone_surrogate_hashes_as_in_java() -> None:
    # Java strings may hold unpaired surrogates (a UTF-16 encoder refuses them);
    # jshell (Java 17): "\ud800x".hashCode() and "a\udc00".hashCode().
    assert java_string_hash("\ud800x") == 1714296
    assert java_string_hash("a\udc00") == 59327


@pytest.mark.parametrize(("topic", "hash_code", "owner_p0_of_4", "owner_p5_of_7"), JAVA)
def test_assignment_matches_flinks_rule_computed_by_java(
    topic: str, hash_code: int, owner_p0_of_4: int, owner_p5_of_7: int
) -> None:
    assert java_string_hash(topic) == hash_code
    if topic:  # a topic name cannot be empty; its hash is still checked above
        assert split_owner(KafkaTopicPartition(topic, 0), 4) == owner_p0_of_4
        assert split_owner(KafkaTopicPartition(topic, 5), 7) == owner_p5_of_7


def test_partitions_of_a_topic_spread_evenly_round_robin() -> None:
    owners = [split_owner(KafkaTopicPartition("orders", p), 4) for p in range(12)]
    assert sorted(owners.count(i) for i in range(4)) == [3, 3, 3, 3]
    assert owners[:4] == [3, 0, 1, 2]  # consecutive partitions go to consecutive readers


class FakeClient:
    """Topic metadata and offsets held in dicts, as an admin client would report them."""

    def __init__(self, topics: dict[str, int], end: int = 10) -> None:
        self.topics = topics
        self.end = end
        self.committed: dict[KafkaTopicPartition, int] = {}
        self.calls: list[str] = []

    def list_topics(self) -> dict[str, int]:
        self.calls.append("list_topics")
        return dict(self.topics)

    def beginning_offsets(
        self, partitions: Collection[KafkaTopicPartition]
    ) -> dict[KafkaTopicPartition, int]:
        return dict.fromkeys(partitions, 0)

    def end_offsets(
        self, partitions: Collection[KafkaTopicPartition]
    ) -> dict[KafkaTopicPartition, int]:
        return dict.fromkeys(partitions, self.end)

    def committed_offsets(
        self, partitions: Collection[KafkaTopicPartition]
    ) -> dict[KafkaTopicPartition, int]:
        return {tp: o for tp, o in self.committed.items() if tp in partitions}

    def offsets_for_times(
        self, timestamps: Mapping[KafkaTopicPartition, int]
    ) -> dict[KafkaTopicPartition, int | None]:
        return {tp: (3 if ts <= 1000 else None) for tp, ts in timestamps.items()}


def make(
    ctx: RecordingEnumeratorContext,
    client: FakeClient,
    *,
    subscriber: Any = None,
    starting: KafkaOffsetsInitializer | None = None,
    stopping: KafkaOffsetsInitializer | None = None,
    discovery_ms: int = -1,
    state: Any = None,
) -> KafkaSourceEnumerator:
    return KafkaSourceEnumerator(
        ctx,
        subscriber or TopicListSubscriber(("orders",)),
        starting or KafkaOffsetsInitializer.earliest(),
        stopping,
        lambda: client,
        discovery_ms,
        state,
    )


def all_assigned(ctx: RecordingEnumeratorContext) -> dict[str, tuple[int, int, int | None]]:
    return {
        s.split_id: (reader, s.starting_offset, s.stopping_offset)
        for reader, splits in ctx.assigned.items()
        for s in splits
    }


def test_bounded_discovery_assigns_each_partition_to_its_owner_and_signals_the_end() -> None:
    ctx, client = enumerator_context(parallelism=3), FakeClient({"orders": 5, "other": 2})
    enumerator = make(ctx, client, stopping=KafkaOffsetsInitializer.latest())
    enumerator.start()
    assert len(ctx.async_calls) == 1 and ctx.async_calls[0].period_ms == 0  # one round
    ctx.run_async_calls()
    got = all_assigned(ctx)
    assert set(got) == {f"orders-{p}" for p in range(5)}
    for p in range(5):
        assert got[f"orders-{p}"] == (split_owner(KafkaTopicPartition("orders", p), 3), 0, 10)
    assert sorted(ctx.no_more_splits) == [0, 1, 2]


def test_a_single_discovery_round_lets_its_admin_client_go_on_the_worker_thread() -> None:
    made: list[weakref.ref[FakeClient]] = []

    def factory() -> FakeClient:
        client = FakeClient({"orders": 2})
        made.append(weakref.ref(client))
        return client

    ctx = enumerator_context(parallelism=1)
    enumerator = KafkaSourceEnumerator(
        ctx, TopicListSubscriber(("orders",)), KafkaOffsetsInitializer.earliest(), None, factory, -1
    )
    enumerator.start()
    ctx.run_async_calls()
    assert len(ctx.assigned[0]) == 2 and ctx.no_more_splits == [0]
    # The release is one more call on the worker, after the splits went out.
    assert len(made) == 1 and made[0]() is not None
    assert [call.period_ms for call in ctx.async_calls] == [0]
    ctx.run_async_calls()
    assert made[0]() is None
    enumerator.close()  # nothing left to close


def test_periodic_discovery_keeps_one_admin_client_for_every_round() -> None:
    made: list[FakeClient] = []

    def factory() -> FakeClient:
        made.append(FakeClient({"orders": 1}))
        return made[-1]

    ctx = enumerator_context(parallelism=1)
    enumerator = KafkaSourceEnumerator(
        ctx,
        TopicListSubscriber(("orders",)),
        KafkaOffsetsInitializer.earliest(),
        None,
        factory,
        500,
    )
    enumerator.start()
    for _ in range(3):
        ctx.run_async_calls()
    assert len(made) == 1 and made[0].calls == ["list_topics"] * 3
    assert [call.period_ms for call in ctx.async_calls] == [500]


def test_reader_registering_late_gets_its_splits_then_the_end_signal() -> None:
    ctx = enumerator_context(parallelism=2, registered_readers=[])
    client = FakeClient({"orders": 2})
    enumerator = make(ctx, client)
    enumerator.start()
    ctx.run_async_calls()
    assert ctx.assigned == {} and ctx.no_more_splits == []
    ctx.readers = [0, 1]
    enumerator.add_reader(1)
    owner_of = {split_owner(KafkaTopicPartition("orders", p), 2): p for p in range(2)}
    assert [s.partition for s in ctx.assigned[1]] == [owner_of[1]]
    assert ctx.no_more_splits == [1]


def test_periodic_discovery_starts_new_partitions_at_earliest_and_never_signals_the_end() -> None:
    ctx, client = enumerator_context(parallelism=2), FakeClient({"orders": 1})
    enumerator = make(
        ctx,
        client,
        subscriber=TopicPatternSubscriber(compile_pattern("ord.*")),
        starting=KafkaOffsetsInitializer.latest(),
        discovery_ms=500,
    )
    enumerator.start()
    assert ctx.async_calls[0].period_ms == 500
    ctx.run_async_calls()
    assert all_assigned(ctx)["orders-0"][1] == 10  # first round: the starting initializer
    client.topics = {"orders": 3, "ordinals": 1, "unrelated": 4, "__consumer_offsets": 50}
    ctx.run_async_calls()
    got = all_assigned(ctx)
    assert set(got) == {"orders-0", "orders-1", "orders-2", "ordinals-0"}
    assert {got[s][1] for s in ("orders-1", "orders-2", "ordinals-0")} == {0}  # earliest
    ctx.run_async_calls()  # nothing new: nothing assigned twice
    assert sum(len(v) for v in ctx.assigned.values()) == 4
    assert ctx.no_more_splits == []


def test_splits_of_a_failed_reader_come_back_with_their_progress() -> None:
    ctx, client = enumerator_context(parallelism=2), FakeClient({"orders": 4})
    enumerator = make(ctx, client, discovery_ms=1000)
    enumerator.start()
    ctx.run_async_calls()
    reader = next(iter(ctx.assigned))
    returned = [KafkaPartitionSplit(s.topic, s.partition, 7) for s in ctx.assigned[reader]]
    ctx.assigned.clear()
    ctx.readers = [r for r in ctx.readers if r != reader]
    enumerator.add_splits_back(returned, reader)
    assert ctx.assigned == {}  # the reader is gone: kept pending
    state = enumerator.snapshot_state(1)
    assert set(state.unassigned) == set(returned)
    assert {s.topic_partition for s in returned}.isdisjoint(state.assigned)
    ctx.readers.append(reader)
    enumerator.add_reader(reader)
    assert ctx.assigned[reader] == returned
    client.topics = {"orders": 4}
    ctx.run_async_calls()  # re-discovery does not hand them out again
    assert ctx.assigned[reader] == returned


def test_restored_enumerator_keeps_assigned_partitions_and_pending_offsets() -> None:
    ctx, client = enumerator_context(parallelism=2), FakeClient({"orders": 3})
    first = make(ctx, client, starting=KafkaOffsetsInitializer.latest(), discovery_ms=100)
    first.start()
    ctx.run_async_calls()
    state = first.snapshot_state(5)
    assert state.initial_discovery_finished
    assert state.assigned == {KafkaTopicPartition("orders", p) for p in range(3)}

    ctx2 = enumerator_context(parallelism=2)
    client.topics = {"orders": 4}
    restored = make(
        ctx2, client, starting=KafkaOffsetsInitializer.latest(), state=state, discovery_ms=100
    )
    restored.start()
    ctx2.run_async_calls()
    # Only the new partition is assigned, and from the earliest offset (discovered later).
    assert all_assigned(ctx2) == {
        "orders-3": (split_owner(KafkaTopicPartition("orders", 3), 2), 0, None)
    }


def test_missing_topics_are_not_an_error_and_fixed_partitions_filter_unknown_ones() -> None:
    ctx, client = enumerator_context(parallelism=1), FakeClient({})
    enumerator = make(ctx, client, subscriber=TopicListSubscriber(("not-yet",)))
    enumerator.start()
    ctx.run_async_calls()
    assert ctx.assigned == {} and ctx.no_more_splits == [0]
    subscriber = PartitionSetSubscriber(
        frozenset({KafkaTopicPartition("orders", 1), KafkaTopicPartition("orders", 9)})
    )
    assert subscriber.subscribed_partitions({"orders": 3}) == {KafkaTopicPartition("orders", 1)}


def test_first_discovery_failure_fails_the_job_with_the_cause() -> None:
    ctx, client = enumerator_context(parallelism=1), FakeClient({"orders": 1})

    def broken() -> dict[str, int]:
        raise RuntimeError("broker unreachable")

    client.list_topics = broken  # type: ignore[method-assign]
    enumerator = make(ctx, client, discovery_ms=100)
    enumerator.start()
    with pytest.raises(RuntimeError, match="Kafka partition discovery failed: broker unreachable"):
        ctx.run_async_calls()


def test_committed_offsets_without_a_commit_and_reset_none_fail_naming_the_partitions() -> None:
    ctx, client = enumerator_context(parallelism=1), FakeClient({"orders": 2})
    client.committed = {KafkaTopicPartition("orders", 0): 4}
    enumerator = make(ctx, client, starting=KafkaOffsetsInitializer.committed_offsets())
    enumerator.start()
    with pytest.raises(RuntimeError, match=r"orders-1.*reset strategy is NONE") as info:
        ctx.run_async_calls()
    assert isinstance(info.value.__cause__, ConfigError)
