"""Where splits start and stop: Flink's ``OffsetsInitializer`` family.

An initializer maps partitions to concrete offsets, asking a ``PartitionOffsetsRetriever``
(the enumerator's admin client) for what it needs. The enumerator runs it when partitions
are discovered, so every split a reader receives already carries a real offset, and a
restarted job never re-runs it for a partition it has seen.
"""

from __future__ import annotations

import datetime
import enum
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping
from typing import Any, Protocol

import attrs

from streamplug.errors import ConfigError
from streamplug_kafka_source.split.split import KafkaTopicPartition

__all__ = [
    "KafkaOffsetResetStrategy",
    "KafkaOffsetsInitializer",
    "PartitionOffsetsRetriever",
]


class KafkaOffsetResetStrategy(enum.Enum):
    """What to do for a partition without a committed offset (Flink's ``OffsetResetStrategy``)."""

    EARLIEST = "earliest"
    LATEST = "latest"
    NONE = "none"

    @property
    def auto_offset_reset(self) -> str:
        """The librdkafka ``auto.offset.reset`` value with the same meaning."""
        return "error" if self is KafkaOffsetResetStrategy.NONE else self.value

    @classmethod
    def parse(cls, value: str | KafkaOffsetResetStrategy) -> KafkaOffsetResetStrategy:
        if isinstance(value, KafkaOffsetResetStrategy):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            raise ConfigError(
                f"unknown offset reset strategy {value!r}; use earliest, latest or none",
                option="reset_strategy",
            ) from None


class PartitionOffsetsRetriever(Protocol):
    """The offsets an initializer may ask about. Every method takes and returns whole
    collections so an implementation can answer with one request."""

    def committed_offsets(
        self, partitions: Collection[KafkaTopicPartition]
    ) -> dict[KafkaTopicPartition, int]:
        """The group's committed offsets; partitions without one are absent."""
        ...

    def beginning_offsets(
        self, partitions: Collection[KafkaTopicPartition]
    ) -> dict[KafkaTopicPartition, int]: ...

    def end_offsets(
        self, partitions: Collection[KafkaTopicPartition]
    ) -> dict[KafkaTopicPartition, int]:
        """High watermarks, or last stable offsets when the source reads committed only."""
        ...

    def offsets_for_times(
        self, timestamps: Mapping[KafkaTopicPartition, int]
    ) -> dict[KafkaTopicPartition, int | None]:
        """The first offset whose record timestamp is >= the given epoch ms; None when no
        such record exists yet."""
        ...


class KafkaOffsetsInitializer(ABC):
    """Computes starting or stopping offsets for newly discovered partitions.

    Subclass it for a custom rule and register a factory for it through the
    ``streamplug_register_offsets_initializers`` hook to make it usable by name.
    Implementations must be immutable: one instance serves every discovery round.
    """

    @abstractmethod
    def get_partition_offsets(
        self,
        partitions: Collection[KafkaTopicPartition],
        retriever: PartitionOffsetsRetriever,
    ) -> dict[KafkaTopicPartition, int]:
        """An offset for every partition in ``partitions``. Runs on a worker thread of
        the enumerator; may block on the retriever."""

    def get_auto_offset_reset_strategy(self) -> KafkaOffsetResetStrategy:
        """What the reader's consumer does when its offset is out of range (for example
        deleted by retention before the reader got there): the ``auto.offset.reset``
        the source enforces."""
        return KafkaOffsetResetStrategy.EARLIEST

    # -- Flink's factories --------------------------------------------------------------

    @staticmethod
    def earliest() -> KafkaOffsetsInitializer:
        """The first record still in each partition (the default starting point)."""
        return EarliestOffsets()

    @staticmethod
    def latest() -> KafkaOffsetsInitializer:
        """The end of each partition when it is discovered: only newer records are read."""
        return LatestOffsets()

    @staticmethod
    def committed_offsets(
        offset_reset_strategy: KafkaOffsetResetStrategy | str = KafkaOffsetResetStrategy.NONE,
    ) -> KafkaOffsetsInitializer:
        """The consumer group's committed offsets; where none exists, follow
        ``offset_reset_strategy`` (NONE: fail, naming the partition). Needs a group id."""
        return CommittedOffsets(KafkaOffsetResetStrategy.parse(offset_reset_strategy))

    @staticmethod
    def timestamp(timestamp: int | datetime.datetime) -> KafkaOffsetsInitializer:
        """The first record whose timestamp is >= ``timestamp`` (epoch ms or an aware
        datetime); the partition's end when every record is older."""
        return TimestampOffsets(_to_epoch_ms(timestamp))

    @staticmethod
    def offsets(
        offsets: Mapping[KafkaTopicPartition, int],
        offset_reset_strategy: KafkaOffsetResetStrategy | str = KafkaOffsetResetStrategy.EARLIEST,
    ) -> KafkaOffsetsInitializer:
        """Explicit offsets per partition; partitions not named follow
        ``offset_reset_strategy`` (EARLIEST, LATEST, or NONE to fail)."""
        return SpecifiedOffsets(
            {_as_tp(tp): int(o) for tp, o in offsets.items()},
            KafkaOffsetResetStrategy.parse(offset_reset_strategy),
        )


def _as_tp(value: Any) -> KafkaTopicPartition:
    if isinstance(value, KafkaTopicPartition):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        return KafkaTopicPartition(value[0], int(value[1]))
    if isinstance(value, str) and ":" in value:
        topic, _, partition = value.rpartition(":")
        return KafkaTopicPartition(topic, int(partition))
    raise ConfigError(
        f"cannot read {value!r} as a topic partition: use KafkaTopicPartition(topic, partition), "
        "a (topic, partition) tuple or 'topic:partition'",
        option="offsets",
    )


def _to_epoch_ms(value: int | datetime.datetime | str) -> int:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            raise ConfigError(
                f"timestamp {value.isoformat()} has no time zone: pass an aware datetime "
                "(e.g. with tzinfo=datetime.UTC) or epoch milliseconds",
                option="timestamp",
            )
        return int(value.timestamp() * 1000)
    if isinstance(value, str) and not value.lstrip("-").isdigit():
        try:
            return _to_epoch_ms(datetime.datetime.fromisoformat(value))
        except ValueError:
            raise ConfigError(
                f"timestamp {value!r} is neither epoch milliseconds nor an ISO-8601 date-time",
                option="timestamp",
            ) from None
    millis = int(value)
    if millis < 0:
        raise ConfigError(f"timestamp must be >= 0 epoch ms, got {millis}", option="timestamp")
    return millis


def _apply_reset(
    partitions: Collection[KafkaTopicPartition],
    strategy: KafkaOffsetResetStrategy,
    retriever: PartitionOffsetsRetriever,
    why: str,
) -> dict[KafkaTopicPartition, int]:
    if not partitions:
        return {}
    if strategy is KafkaOffsetResetStrategy.EARLIEST:
        return retriever.beginning_offsets(partitions)
    if strategy is KafkaOffsetResetStrategy.LATEST:
        return retriever.end_offsets(partitions)
    names = ", ".join(sorted(str(tp) for tp in partitions))
    raise ConfigError(
        f"{why} for partitions {names} and the offset reset strategy is NONE: pass "
        "KafkaOffsetResetStrategy.EARLIEST or LATEST to say where to start instead",
        option="reset_strategy",
    )


@attrs.frozen
class EarliestOffsets(KafkaOffsetsInitializer):
    def get_partition_offsets(
        self, partitions: Collection[KafkaTopicPartition], retriever: PartitionOffsetsRetriever
    ) -> dict[KafkaTopicPartition, int]:
        return retriever.beginning_offsets(partitions) if partitions else {}

    def __str__(self) -> str:
        return "earliest"


@attrs.frozen
class LatestOffsets(KafkaOffsetsInitializer):
    def get_partition_offsets(
        self, partitions: Collection[KafkaTopicPartition], retriever: PartitionOffsetsRetriever
    ) -> dict[KafkaTopicPartition, int]:
        return retriever.end_offsets(partitions) if partitions else {}

    def get_auto_offset_reset_strategy(self) -> KafkaOffsetResetStrategy:
        return KafkaOffsetResetStrategy.LATEST

    def __str__(self) -> str:
        return "latest"


@attrs.frozen
class CommittedOffsets(KafkaOffsetsInitializer):
    reset_strategy: KafkaOffsetResetStrategy = KafkaOffsetResetStrategy.NONE

    def get_partition_offsets(
        self, partitions: Collection[KafkaTopicPartition], retriever: PartitionOffsetsRetriever
    ) -> dict[KafkaTopicPartition, int]:
        if not partitions:
            return {}
        result = retriever.committed_offsets(partitions)
        missing = [tp for tp in partitions if tp not in result]
        result.update(
            _apply_reset(
                missing, self.reset_strategy, retriever, "the group has no committed offset"
            )
        )
        return result

    def get_auto_offset_reset_strategy(self) -> KafkaOffsetResetStrategy:
        return self.reset_strategy

    def __str__(self) -> str:
        return f"committed (reset {self.reset_strategy.value})"


@attrs.frozen
class TimestampOffsets(KafkaOffsetsInitializer):
    timestamp_ms: int

    def get_partition_offsets(
        self, partitions: Collection[KafkaTopicPartition], retriever: PartitionOffsetsRetriever
    ) -> dict[KafkaTopicPartition, int]:
        if not partitions:
            return {}
        found = retriever.offsets_for_times(dict.fromkeys(partitions, self.timestamp_ms))
        result = {tp: o for tp, o in found.items() if o is not None and o >= 0}
        # No record that new yet: start at the end, where the next (newer) record lands.
        result.update(retriever.end_offsets([tp for tp in partitions if tp not in result]) or {})
        return result

    def get_auto_offset_reset_strategy(self) -> KafkaOffsetResetStrategy:
        return KafkaOffsetResetStrategy.LATEST

    def __str__(self) -> str:
        return f"timestamp {self.timestamp_ms}"


@attrs.frozen
class SpecifiedOffsets(KafkaOffsetsInitializer):
    partition_offsets: Mapping[KafkaTopicPartition, int]
    reset_strategy: KafkaOffsetResetStrategy = KafkaOffsetResetStrategy.EARLIEST

    def __attrs_post_init__(self) -> None:
        bad = {str(tp): o for tp, o in self.partition_offsets.items() if o < 0}
        if bad:
            raise ConfigError(
                f"specified offsets must be >= 0, got {bad}; use earliest()/latest() for the ends",
                option="offsets",
            )

    def get_partition_offsets(
        self, partitions: Collection[KafkaTopicPartition], retriever: PartitionOffsetsRetriever
    ) -> dict[KafkaTopicPartition, int]:
        offsets = self.partition_offsets
        result = {tp: offsets[tp] for tp in partitions if tp in offsets}
        missing = [tp for tp in partitions if tp not in result]
        result.update(
            _apply_reset(missing, self.reset_strategy, retriever, "no offset was specified")
        )
        return result

    def get_auto_offset_reset_strategy(self) -> KafkaOffsetResetStrategy:
        return self.reset_strategy

    def __str__(self) -> str:
        return f"offsets {dict(sorted((str(k), v) for k, v in self.partition_offsets.items()))}"


def initializer_from_options(name: str, **options: Any) -> KafkaOffsetsInitializer:
    """The built-in initializers by name, as the plugin registers them."""
    if name == "earliest":
        return KafkaOffsetsInitializer.earliest()
    if name == "latest":
        return KafkaOffsetsInitializer.latest()
    if name == "committed":
        return KafkaOffsetsInitializer.committed_offsets(options.get("reset_strategy", "none"))
    if name == "timestamp":
        if "timestamp" not in options:
            raise ConfigError(
                "the timestamp offsets initializer needs a 'timestamp' option "
                "(epoch ms or ISO-8601 date-time)",
                option="timestamp",
            )
        return TimestampOffsets(_to_epoch_ms(options["timestamp"]))
    if name == "offsets":
        raw = options.get("offsets")
        if not isinstance(raw, Mapping):
            raise ConfigError(
                "the offsets initializer needs an 'offsets' mapping like {'orders:0': 42}",
                option="offsets",
            )
        return KafkaOffsetsInitializer.offsets(raw, options.get("reset_strategy", "earliest"))
    raise ConfigError(f"no built-in offsets initializer named {name!r}", option="offsets")
