"""One parallel subtask: a reader, the chained operators and the sink writers, on one thread.

The thread alternates between ``reader.poll_next`` and its control queue (split
assignments, checkpoint barriers, completion notices, stop and close). Barriers are
served between two polls, so a snapshot covers exactly the records emitted before it.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from streamplug.api.source import InputStatus, SourceReader
from streamplug.api.watermarks import (
    MAX_WATERMARK,
    MIN_WATERMARK,
    TimestampAssigner,
    WatermarkGenerator,
    WatermarkStrategy,
)
from streamplug.plugin.records import ReaderSplits, SubtaskInfo

if TYPE_CHECKING:
    from streamplug.api.sink import SinkWriter
    from streamplug.metrics import MetricGroup
    from streamplug.runtime.environment import _Node

log = logging.getLogger(__name__)

Emit = Callable[[list[Any], Sequence[int] | None], None]
_DEFAULT_SPLIT = "__reader__"


@attrs.frozen
class TaskSnapshot:
    """What one subtask contributes to a checkpoint."""

    splits: list[Any]
    committables: list[list[Any]]
    writer_states: list[list[Any]]
    duration_ms: int = 0


class Barrier:
    """A checkpoint in flight: subtasks ack with their snapshot, then wait for release."""

    def __init__(self, checkpoint_id: int, expected: int) -> None:
        self.checkpoint_id = checkpoint_id
        self.expected = expected
        self.started = time.monotonic()
        self.snapshots: dict[tuple[str, int], TaskSnapshot] = {}
        self._cond = threading.Condition()
        self._released = threading.Event()
        self.aborted = False

    def ack(self, key: tuple[str, int], snapshot: TaskSnapshot) -> None:
        with self._cond:
            self.snapshots[key] = snapshot
            self._cond.notify_all()

    def wait_for_acks(self, timeout_s: float, should_stop: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self.snapshots) < self.expected:
                if should_stop():
                    return False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
            return True

    def release(self) -> None:
        self._released.set()

    def abort(self) -> None:
        self.aborted = True
        self._released.set()

    def wait_released(self, cancelled: threading.Event) -> None:
        while not self._released.wait(0.05):
            if cancelled.is_set():
                return


def _assign(
    assigner: TimestampAssigner, values: list[Any], timestamps: Sequence[int] | None
) -> list[int]:
    """Event times from ``assigner``, each given the record's previous one (or None)."""
    extract = assigner.extract_timestamp
    if timestamps is None:
        return [extract(v, None) for v in values]
    return [extract(v, t) for v, t in zip(values, timestamps, strict=True)]


class _SplitClock:
    __slots__ = ("generator", "idle", "last_active", "watermark")

    def __init__(self, generator: WatermarkGenerator, now: float) -> None:
        self.generator = generator
        self.last_active = now
        self.idle = False
        self.watermark = MIN_WATERMARK


class SubtaskOutput:
    """The ``ReaderOutput`` a reader emits into: timestamps, per-split watermarks, operators."""

    def __init__(
        self, strategy: WatermarkStrategy, emit: Emit, on_watermark: Callable[[int], None]
    ) -> None:
        self._strategy = strategy
        self._assigner = strategy.timestamp_assigner
        self._idle_timeout = (strategy.idle_timeout_ms or 0) / 1000
        self._emit = emit
        self._on_watermark = on_watermark
        self._splits: dict[str, _SplitClock] = {}
        # Set by the worker when a plugin implements streamplug_reader_splits_finished.
        self.on_released: Callable[[str], None] | None = None
        self.records = 0
        self.watermark = MIN_WATERMARK
        self.idle = True
        self._marked_idle = False
        # Until the enumerator's first assignment round reached this subtask, having no
        # split means "not yet", not "idle": otherwise the first reader to get a partition
        # would drag the job's watermark past partitions still on their way to others.
        self.awaiting_assignment = True

    # -- ReaderOutput ----------------------------------------------------------------------

    def collect_batch(
        self,
        values: Sequence[Any],
        timestamps: Sequence[int] | None = None,
        split_id: str | None = None,
    ) -> None:
        if not values:
            return
        batch = values if isinstance(values, list) else list(values)
        stamps: Sequence[int] | None = None
        if self._assigner is not None:
            stamps = _assign(self._assigner, batch, timestamps)
        elif timestamps is not None:
            # As they come: a reader may hand over a lazy view (the Kafka source's record
            # timestamps) that costs nothing unless something downstream reads it.
            stamps = timestamps
        clock = self._clock(split_id or _DEFAULT_SPLIT)
        clock.last_active = time.monotonic()
        clock.idle = False
        self._marked_idle = False
        # Not ``if stamps``: a lazy view would answer with a Python-level __len__ per batch,
        # and stamps are never empty beside values that are not.
        if stamps is not None:
            proposed = clock.generator.on_batch(stamps)
            if proposed is not None and proposed > clock.watermark:
                clock.watermark = proposed
                self._advance()
        self.records += len(batch)
        self._emit(batch, stamps)

    def collect(
        self, value: Any, timestamp: int | None = None, split_id: str | None = None
    ) -> None:
        self.collect_batch([value], None if timestamp is None else [timestamp], split_id)

    def release_split(self, split_id: str) -> None:
        if self._splits.pop(split_id, None) is not None:
            if self.on_released is not None:
                self.on_released(split_id)
            self._advance()

    def mark_idle(self) -> None:
        self._marked_idle = True
        self._advance()

    def mark_active(self) -> None:
        self._marked_idle = False

    # -- runtime side ----------------------------------------------------------------------

    def register_split(self, split_id: str) -> None:
        self.awaiting_assignment = False
        self._clock(split_id)

    def assignment_round(self) -> None:
        """The enumerator finished an assignment round: no split now means idle."""
        if self.awaiting_assignment:
            self.awaiting_assignment = False
            self._advance()

    def _clock(self, split_id: str) -> _SplitClock:
        clock = self._splits.get(split_id)
        if clock is None:
            clock = _SplitClock(self._strategy.create_watermark_generator(), time.monotonic())
            self._splits[split_id] = clock
        return clock

    def periodic(self) -> None:
        """Ask every split's generator for its watermark and apply idleness timeouts."""
        now = time.monotonic()
        for clock in self._splits.values():
            proposed = clock.generator.on_periodic_emit()
            if proposed is not None and proposed > clock.watermark:
                clock.watermark = proposed
            if self._idle_timeout and now - clock.last_active >= self._idle_timeout:
                clock.idle = True
        self._advance()

    def end_of_input(self) -> None:
        self._splits.clear()
        self.idle = False
        if self.watermark < MAX_WATERMARK:
            self.watermark = MAX_WATERMARK
            self._on_watermark(MAX_WATERMARK)

    def _advance(self) -> None:
        active = [c.watermark for c in self._splits.values() if not c.idle]
        # A reader with no splits, or only idle ones, must not hold anyone back.
        self.idle = not self.awaiting_assignment and (self._marked_idle or not active)
        if active:
            candidate = min(active)
            if candidate > self.watermark:
                self.watermark = candidate
                self._on_watermark(candidate)


@attrs.frozen
class Chain:
    """A pipeline's operator tree, compiled for one subtask."""

    emit: Emit
    """Push a batch (values, event times) from the source through the tree."""
    watermark: Callable[[int], None]
    """The source's watermark advanced: pass it down to the sinks."""
    periodic: Callable[[], None]
    """The auto-watermark interval passed: operators with a generator of their own ask it."""


class _TimestampsAndWatermarks:
    """``DataStream.assign_timestamps_and_watermarks`` in one subtask.

    Records get new event times from the strategy's assigner (or keep theirs), and the
    strategy's generator makes the watermarks of everything downstream. Watermarks from
    upstream are dropped, except the end of input's, as in Flink's
    ``TimestampsAndWatermarksOperator``. A watermark goes out after the batch it covers, so
    no sink sees a record older than a watermark it already got from this operator.
    """

    def __init__(
        self,
        strategy: WatermarkStrategy,
        forward: Emit,
        forward_watermark: Callable[[int], None],
        periodic_below: Callable[[], None],
    ) -> None:
        self._assigner = strategy.timestamp_assigner
        self._generator = strategy.create_watermark_generator()
        self._forward = forward
        self._forward_watermark = forward_watermark
        self._periodic_below = periodic_below
        self.watermark = MIN_WATERMARK

    def emit(self, values: list[Any], stamps: Sequence[int] | None) -> None:
        if self._assigner is not None:
            stamps = _assign(self._assigner, values, stamps)
        proposed = self._generator.on_batch(stamps) if stamps else None
        self._forward(values, stamps)
        self._advance(proposed)

    def upstream_watermark(self, watermark: int) -> None:
        if watermark >= MAX_WATERMARK:
            self._advance(MAX_WATERMARK)

    def periodic(self) -> None:
        self._advance(self._generator.on_periodic_emit())
        self._periodic_below()

    def _advance(self, proposed: int | None) -> None:
        if proposed is not None and proposed > self.watermark:
            self.watermark = proposed
            self._forward_watermark(proposed)


def compile_tree(
    node: _Node, writers: dict[int, SinkWriter[Any, Any]], counter: list[int]
) -> Chain:
    """Turn an operator tree into the functions a subtask calls per batch, per source
    watermark and per watermark interval."""
    children = [compile_tree(c, writers, counter) for c in node.children]
    sink_writers = [writers[id(sink)] for sink, _ in node.sinks]

    def forward(values: list[Any], stamps: Sequence[int] | None) -> None:
        if not values:
            return
        for writer in sink_writers:
            writer.write(values, stamps)
        if sink_writers:
            counter[0] += len(values) * len(sink_writers)
        for child in children:
            child.emit(values, stamps)

    def forward_watermark(watermark: int) -> None:
        for writer in sink_writers:
            writer.write_watermark(watermark)
        for child in children:
            child.watermark(watermark)

    def periodic_below() -> None:
        for child in children:
            child.periodic()

    fn = node.fn
    if node.kind == "source":
        return Chain(forward, forward_watermark, periodic_below)
    if node.kind == "timestamps":
        assert node.strategy is not None
        operator = _TimestampsAndWatermarks(
            node.strategy, forward, forward_watermark, periodic_below
        )
        return Chain(operator.emit, operator.upstream_watermark, operator.periodic)
    if node.kind == "map":

        def apply_map(values: list[Any], stamps: Sequence[int] | None) -> None:
            # map() calls the function from C: ~15% less per element than a comprehension.
            forward(list(map(fn, values)), stamps)  # type: ignore[arg-type]

        return Chain(apply_map, forward_watermark, periodic_below)
    if node.kind == "filter":

        def apply_filter(values: list[Any], stamps: Sequence[int] | None) -> None:
            if stamps is None:
                forward([v for v in values if fn(v)], None)  # type: ignore[misc]
                return
            kept = [(v, t) for v, t in zip(values, stamps, strict=True) if fn(v)]  # type: ignore[misc]
            forward([v for v, _ in kept], [t for _, t in kept])

        return Chain(apply_filter, forward_watermark, periodic_below)
    if node.kind == "flat_map":

        def apply_flat_map(values: list[Any], stamps: Sequence[int] | None) -> None:
            if stamps is None:
                forward([out for v in values for out in fn(v)], None)  # type: ignore[misc]
                return
            pairs = [(out, t) for v, t in zip(values, stamps, strict=True) for out in fn(v)]  # type: ignore[misc]
            forward([v for v, _ in pairs], [t for _, t in pairs])

        return Chain(apply_flat_map, forward_watermark, periodic_below)
    raise ValueError(f"unknown operator kind {node.kind!r}")


class Subtask:
    """Runs one (pipeline, subtask index) until closed, cancelled or failed."""

    def __init__(
        self,
        pipeline_name: str,
        index: int,
        reader: SourceReader[Any],
        writers: list[SinkWriter[Any, Any]],
        output: SubtaskOutput,
        periodic: Callable[[], None],
        watermark_interval_s: float,
        post: Callable[[tuple[Any, ...]], None],
        metric_group: MetricGroup,
    ) -> None:
        self.key = (pipeline_name, index)
        self.index = index
        self.reader = reader
        self.writers = writers
        self.output = output
        self._periodic = periodic
        self._watermark_interval = watermark_interval_s
        self._post = post
        self.control: collections.deque[tuple[Any, ...]] = collections.deque()
        self.wakeup = threading.Event()
        self.cancelled = threading.Event()
        self.finished = False
        self.stopping = False
        self.closed = False
        self.records_out = [0]
        self.metric_group = metric_group
        # streamplug_reader_splits_added, when a plugin implements it (see observe_splits).
        self._on_splits_added: Callable[[list[Any], bool], None] | None = None
        self.thread = threading.Thread(
            target=self._main, name=f"{pipeline_name}-{index}", daemon=True
        )

    def send(self, *message: Any) -> None:
        self.control.append(message)
        self.wakeup.set()

    def observe_splits(
        self,
        added: Callable[..., Any] | None,
        finished: Callable[..., Any] | None,
        info: SubtaskInfo,
    ) -> None:
        """Report splits added to and finished by this subtask's reader to the plugins'
        hooks (each None when no plugin implements it: then nothing is called)."""
        pipeline = self.key[0]
        if added is not None:

            def on_added(splits: list[Any], restored: bool) -> None:
                ids = tuple(s.split_id for s in splits)
                added(splits=ReaderSplits(info, pipeline, ids, tuple(splits), restored))

            self._on_splits_added = on_added
        if finished is not None:

            def on_finished(split_id: str) -> None:
                finished(splits=ReaderSplits(info, pipeline, (split_id,)))

            self.output.on_released = on_finished

    def add_restored_splits(self, splits: list[Any]) -> None:
        for split in splits:
            self.output.register_split(split.split_id)
        if splits:
            if self._on_splits_added is not None:
                self._on_splits_added(splits, True)
            self.reader.add_splits(splits)

    def start(self) -> None:
        self.thread.start()

    # -- the thread ------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            self.reader.start()
            graceful = self._loop()
        except BaseException as exc:
            if not self.cancelled.is_set():
                self._post(("failed", self.key, exc))
            self._close(graceful=False)
        else:
            failure = self._close(graceful=graceful)
            if failure is not None:
                # The attempt ended well (input done, or stopped), but a reader or writer
                # could not hand over its last records (a dead-letter write or a delivery
                # refused): that is the job's outcome, not a log line.
                self._post(("failed", self.key, failure))

    def _loop(self) -> bool:
        """Run until told to close (True: a graceful end) or cancelled (False)."""
        next_watermark = time.monotonic() + self._watermark_interval
        while True:
            while self.control:
                if self._handle(self.control.popleft()):
                    return not self.cancelled.is_set()
            if self.cancelled.is_set():
                return False
            if self.finished or self.stopping:
                self.wakeup.wait(0.1)
                self.wakeup.clear()
                continue
            status = self.reader.poll_next(self.output)
            now = time.monotonic()
            if now >= next_watermark:
                self.output.periodic()
                self._periodic()
                next_watermark = now + self._watermark_interval
            if status is InputStatus.END_OF_INPUT:
                for writer in self.writers:
                    writer.flush(True)
                self.output.end_of_input()
                self.finished = True
                self._post(("finished", self.key))
            elif status is InputStatus.NOTHING_AVAILABLE:
                self.wakeup.wait(0.01)
                self.wakeup.clear()

    def _handle(self, message: tuple[Any, ...]) -> bool:
        """Serve one control message; True means leave the loop."""
        kind = message[0]
        if kind == "splits":
            splits = message[1]
            for split in splits:
                self.output.register_split(split.split_id)
            if self._on_splits_added is not None:
                self._on_splits_added(splits, False)
            self.reader.add_splits(splits)
        elif kind == "no_more_splits":
            self.output.assignment_round()
            self.reader.notify_no_more_splits()
        elif kind == "assigned":
            self.output.assignment_round()
        elif kind == "barrier":
            self._snapshot(message[1])
        elif kind == "complete":
            self.reader.notify_checkpoint_complete(message[1])
        elif kind == "aborted":
            self.reader.notify_checkpoint_aborted(message[1])
        elif kind == "stop":
            self.stopping = True
        elif kind == "call":
            # SinkContext.run_in_task: what it raises fails this subtask.
            message[1]()
        elif kind == "close":
            return True
        return False

    def _snapshot(self, barrier: Barrier) -> None:
        if barrier.aborted:
            return
        cid = barrier.checkpoint_id
        splits = list(self.reader.snapshot_state(cid))
        committables: list[list[Any]] = []
        states: list[list[Any]] = []
        for writer in self.writers:
            writer.flush(False)
            committables.append(list(writer.prepare_commit()))
            states.append(list(writer.snapshot_state(cid)))
        duration_ms = int((time.monotonic() - barrier.started) * 1000)
        barrier.ack(self.key, TaskSnapshot(splits, committables, states, duration_ms))
        # Stay put until the checkpoint is committed: output after the barrier must not
        # reach a transaction that the checkpoint's commit is about to close.
        barrier.wait_released(self.cancelled)

    def _close(self, graceful: bool) -> BaseException | None:
        """Close the reader and the writers, each even if another failed. On a graceful end
        the first failure is returned for the job's outcome (the SPI's ``close`` contract);
        after a failure or a cancel, whatever was in flight is replayed or discarded
        anyway, so a failing close is only logged."""
        if self.closed:
            return None
        self.closed = True
        first: BaseException | None = None
        closeables: list[Any] = [self.reader, *self.writers]
        for closeable in closeables:
            try:
                closeable.close()
            except Exception as exc:
                what = type(closeable).__name__
                if graceful and first is None:
                    first = exc
                elif graceful:
                    log.error("closing %s of subtask %s failed too: %s", what, self.key, exc)
                else:
                    log.warning(
                        "closing %s of subtask %s after the attempt ended: %s",
                        what,
                        self.key,
                        exc,
                        exc_info=log.isEnabledFor(logging.DEBUG),
                    )
        self.metric_group.close()
        return first
