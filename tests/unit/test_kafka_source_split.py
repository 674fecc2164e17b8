"""Kafka splits: validated values, mutable progress, versioned readable state."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamplug_kafka_source.enumerator.state import (
    KafkaSourceEnumState,
    KafkaSourceEnumStateSerializer,
)
from streamplug_kafka_source.split import (
    COMMITTED_OFFSET,
    EARLIEST_OFFSET,
    LATEST_OFFSET,
    KafkaPartitionSplit,
    KafkaPartitionSplitSerializer,
    KafkaPartitionSplitState,
    KafkaTopicPartition,
)

topics = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-._0123456789", min_size=1, max_size=40)
starting = st.one_of(
    st.integers(min_value=0, max_value=2**62),
    st.sampled_from([LATEST_OFFSET, EARLIEST_OFFSET, COMMITTED_OFFSET]),
)
splits = st.builds(
    KafkaPartitionSplit,
    topics,
    st.integers(min_value=0, max_value=10_000),
    starting,
    st.one_of(st.none(), st.integers(min_value=0, max_value=2**62)),
)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", 0, 0), "topic must be a non-empty string"),
        (("t", -1, 0), "partition must be an int >= 0"),
        (("t", 0, -7), "starting_offset -7 is invalid"),
        (("t", 0, 0, -1), "stopping_offset must be an offset >= 0"),
        (("t", True, 0), "partition must be an int"),
    ],
)
def test_split_rejects_invalid_values_naming_them(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KafkaPartitionSplit(*args)


def test_split_is_frozen_and_identified_by_topic_and_partition() -> None:
    split = KafkaPartitionSplit("orders", 3, 10, 20)
    assert split.split_id == "orders-3"
    assert split.topic_partition == KafkaTopicPartition("orders", 3)
    with pytest.raises(AttributeError):
        split.starting_offset = 11  # type: ignore[misc]
    assert (
        str(KafkaPartitionSplit("orders", 0, EARLIEST_OFFSET)) == "[orders-0 EARLIEST..unbounded)"
    )


@pytest.mark.parametrize(
    ("start", "stop", "empty"),
    [(5, 5, True), (6, 5, True), (4, 5, False), (0, None, False), (EARLIEST_OFFSET, 0, False)],
)
def test_split_is_empty_only_for_a_concrete_start_at_or_past_stop(
    start: int, stop: int | None, empty: bool
) -> None:
    assert KafkaPartitionSplit("t", 0, start, stop).is_empty is empty


def test_split_state_tracks_progress_and_resumes_where_it_stands() -> None:
    split = KafkaPartitionSplit("t", 1, 100, 200)
    state = KafkaPartitionSplitState.of(split)
    assert state.to_split() is split
    state.current_offset = 150
    assert state.to_split() == KafkaPartitionSplit("t", 1, 150, 200)
    assert not state.finished
    state.current_offset = 200
    assert state.finished


@given(splits)
def test_split_serializer_round_trips_through_json(split: KafkaPartitionSplit) -> None:
    serializer = KafkaPartitionSplitSerializer()
    data = json.loads(json.dumps(serializer.serialize(split)))
    assert serializer.deserialize(serializer.version, data) == split


def test_split_state_is_readable_and_versioned() -> None:
    serializer = KafkaPartitionSplitSerializer()
    data = serializer.serialize(KafkaPartitionSplit("orders", 2, 42, None))
    assert data == {
        "topic": "orders",
        "partition": 2,
        "starting_offset": 42,
        "stopping_offset": None,
    }
    with pytest.raises(ValueError, match="version 9 is unknown"):
        serializer.deserialize(9, data)
    with pytest.raises(ValueError, match="malformed"):
        serializer.deserialize(1, {"topic": "orders"})


@given(
    st.frozensets(st.builds(KafkaTopicPartition, topics, st.integers(0, 100)), max_size=20),
    st.lists(splits, max_size=10),
    st.booleans(),
)
def test_enumerator_state_round_trips_through_json(
    assigned: frozenset[KafkaTopicPartition], unassigned: list[KafkaPartitionSplit], done: bool
) -> None:
    serializer = KafkaSourceEnumStateSerializer()
    state = KafkaSourceEnumState(assigned, tuple(unassigned), done)
    data = json.loads(json.dumps(serializer.serialize(state)))
    assert serializer.deserialize(serializer.version, data) == state
    with pytest.raises(ValueError, match="version 2 is unknown"):
        serializer.deserialize(2, data)
