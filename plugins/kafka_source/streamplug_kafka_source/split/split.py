"""A Kafka partition as a source split: an immutable fact, validated when it is made."""

from __future__ import annotations

from typing import Any

import attrs

# Offsets a split may carry before a reader resolves them (Flink's KafkaPartitionSplit
# constants). Built-in initializers resolve offsets in the enumerator, so these only
# appear in splits made by custom initializers or by hand.
LATEST_OFFSET = -1
"""Start at the partition's end as the reader first sees it."""
EARLIEST_OFFSET = -2
"""Start at the partition's first available record."""
COMMITTED_OFFSET = -3
"""Start at the consumer group's committed offset (``auto.offset.reset`` when none)."""

_SPECIAL_OFFSETS = {
    LATEST_OFFSET: "LATEST",
    EARLIEST_OFFSET: "EARLIEST",
    COMMITTED_OFFSET: "COMMITTED",
}


def _check_topic(_: Any, __: Any, value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"topic must be a non-empty string, got {value!r}")


def _check_partition(_: Any, __: Any, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"partition must be an int >= 0, got {value!r}")


@attrs.frozen(order=True)
class KafkaTopicPartition:
    """A topic and a partition number (PyFlink's ``KafkaTopicPartition``)."""

    topic: str = attrs.field(validator=_check_topic)
    partition: int = attrs.field(validator=_check_partition)

    def __str__(self) -> str:
        return f"{self.topic}-{self.partition}"


def _check_starting(_: Any, __: Any, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"starting_offset must be an int, got {value!r}")
    if value < 0 and value not in _SPECIAL_OFFSETS:
        raise ValueError(
            f"starting_offset {value} is invalid: use an offset >= 0 or one of "
            "LATEST_OFFSET (-1), EARLIEST_OFFSET (-2), COMMITTED_OFFSET (-3)"
        )


def _check_stopping(_: Any, __: Any, value: int | None) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(
            f"stopping_offset must be an offset >= 0 or None (never stop), got {value!r}"
        )


@attrs.frozen
class KafkaPartitionSplit:
    """One Kafka partition to read from ``starting_offset`` (inclusive) to
    ``stopping_offset`` (exclusive; None = unbounded).

    A split whose starting offset already reached its stopping offset is finished as
    soon as a reader takes it (an empty range, e.g. an empty partition in bounded mode).
    """

    topic: str = attrs.field(validator=_check_topic)
    partition: int = attrs.field(validator=_check_partition)
    starting_offset: int = attrs.field(validator=_check_starting)
    stopping_offset: int | None = attrs.field(default=None, validator=_check_stopping)

    @property
    def split_id(self) -> str:
        return f"{self.topic}-{self.partition}"

    @property
    def topic_partition(self) -> KafkaTopicPartition:
        return KafkaTopicPartition(self.topic, self.partition)

    @property
    def is_empty(self) -> bool:
        """Whether there is nothing to read: a concrete start at or past the stop."""
        return (
            self.stopping_offset is not None
            and self.starting_offset >= 0
            and self.starting_offset >= self.stopping_offset
        )

    def __str__(self) -> str:
        start = _SPECIAL_OFFSETS.get(self.starting_offset, str(self.starting_offset))
        stop = "unbounded" if self.stopping_offset is None else str(self.stopping_offset)
        return f"[{self.topic}-{self.partition} {start}..{stop})"
