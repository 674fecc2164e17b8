"""Event time: timestamp assigners, watermark generators and Flink's ``WatermarkStrategy``.

A watermark ``w`` says "no record with an event time at or below ``w`` is expected any
more". The runtime keeps one generator per split, combines them into the reader's
watermark (the minimum over splits that are not idle), and a subtask without splits is
idle, so it never holds back the job's watermark.
"""

from __future__ import annotations

import datetime
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import attrs

MIN_WATERMARK = -(2**63)
"""The watermark before any record was seen (Flink's ``Long.MIN_VALUE``)."""
MAX_WATERMARK = 2**63 - 1
"""The watermark of an input that ended."""

DurationLike = int | float | datetime.timedelta
"""Milliseconds, or a ``datetime.timedelta``."""


def to_millis(value: DurationLike, what: str = "duration") -> int:
    """Milliseconds of a duration; rejects negative values with the offending value named."""
    millis = value.total_seconds() * 1000 if isinstance(value, datetime.timedelta) else value
    if millis < 0:
        raise ValueError(f"{what} must not be negative, got {value!r}")
    return int(millis)


class TimestampAssigner(ABC):
    """Takes a record's event time from the record itself."""

    @abstractmethod
    def extract_timestamp(self, value: Any, record_timestamp: int | None) -> int:
        """Event time in epoch ms. ``record_timestamp`` is the source's own (for Kafka, the
        record timestamp), or None when the source has none."""


class _FunctionTimestampAssigner(TimestampAssigner):
    def __init__(self, fn: Callable[[Any, int | None], int]) -> None:
        self._fn = fn

    def extract_timestamp(self, value: Any, record_timestamp: int | None) -> int:
        return self._fn(value, record_timestamp)


class WatermarkGenerator(ABC):
    """Tracks event times and proposes watermarks. Used on one subtask thread only."""

    @abstractmethod
    def on_event(self, timestamp: int) -> int | None:
        """A record with event time ``timestamp`` arrived; return a watermark to emit now
        (punctuated generators) or None."""

    def on_batch(self, timestamps: Sequence[int]) -> int | None:
        """Many records at once. Override when the batch can be summarised (e.g. ``max``)."""
        result = None
        for ts in timestamps:
            candidate = self.on_event(ts)
            if candidate is not None:
                result = candidate
        return result

    @abstractmethod
    def on_periodic_emit(self) -> int | None:
        """Called every auto-watermark interval; return the current watermark or None."""


class BoundedOutOfOrdernessWatermarks(WatermarkGenerator):
    """Watermark = highest timestamp seen - max out-of-orderness - 1 ms."""

    def __init__(self, max_out_of_orderness_ms: int) -> None:
        self._delay = max_out_of_orderness_ms
        self._max_ts = MIN_WATERMARK + max_out_of_orderness_ms + 1

    def on_event(self, timestamp: int) -> int | None:
        if timestamp > self._max_ts:
            self._max_ts = timestamp
        return None

    def on_batch(self, timestamps: Sequence[int]) -> int | None:
        if timestamps:
            highest = max(timestamps)
            if highest > self._max_ts:
                self._max_ts = highest
        return None

    def on_periodic_emit(self) -> int | None:
        return self._max_ts - self._delay - 1


class NoWatermarks(WatermarkGenerator):
    def on_event(self, timestamp: int) -> int | None:
        return None

    def on_batch(self, timestamps: Sequence[int]) -> int | None:
        return None

    def on_periodic_emit(self) -> int | None:
        return None


GeneratorFactory = Callable[[], WatermarkGenerator]


@attrs.frozen
class WatermarkStrategy:
    """How a source assigns event times and generates watermarks (Flink's names).

    >>> strategy = (WatermarkStrategy.for_bounded_out_of_orderness(5_000)
    ...             .with_idleness(datetime.timedelta(seconds=30)))
    """

    generator_factory: GeneratorFactory
    timestamp_assigner: TimestampAssigner | None = None
    idle_timeout_ms: int | None = None

    @staticmethod
    def for_bounded_out_of_orderness(max_out_of_orderness: DurationLike) -> WatermarkStrategy:
        delay = to_millis(max_out_of_orderness, "max out-of-orderness")
        return WatermarkStrategy(lambda: BoundedOutOfOrdernessWatermarks(delay))

    @staticmethod
    def for_monotonous_timestamps() -> WatermarkStrategy:
        """For inputs whose timestamps never decrease: the watermark trails by 1 ms."""
        return WatermarkStrategy(lambda: BoundedOutOfOrdernessWatermarks(0))

    @staticmethod
    def no_watermarks() -> WatermarkStrategy:
        return WatermarkStrategy(NoWatermarks)

    @staticmethod
    def for_generator(factory: GeneratorFactory) -> WatermarkStrategy:
        """A custom generator, built once per split."""
        return WatermarkStrategy(factory)

    def with_timestamp_assigner(
        self, assigner: TimestampAssigner | Callable[[Any, int | None], int]
    ) -> WatermarkStrategy:
        if not isinstance(assigner, TimestampAssigner):
            assigner = _FunctionTimestampAssigner(assigner)
        return attrs.evolve(self, timestamp_assigner=assigner)

    def with_idleness(self, idle_timeout: DurationLike) -> WatermarkStrategy:
        """A split that produced nothing for ``idle_timeout`` stops holding back the watermark."""
        timeout = to_millis(idle_timeout, "idle timeout")
        if timeout == 0:
            raise ValueError("idle timeout must be positive; omit with_idleness to disable it")
        return attrs.evolve(self, idle_timeout_ms=timeout)

    def create_watermark_generator(self) -> WatermarkGenerator:
        return self.generator_factory()
