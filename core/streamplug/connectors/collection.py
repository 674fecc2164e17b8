"""An in-memory source with real splits, and a sink that collects what reaches it.

``CollectionSource`` cuts its elements into a fixed number of contiguous splits (fixed, so a
restored checkpoint names the same ranges whatever the parallelism), assigns split *k* to
reader ``k % parallelism`` and tracks each split's position, so it checkpoints and resumes
exactly like a real connector.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from streamplug.api.context import ReaderContext, SinkContext, SplitEnumeratorContext
from streamplug.api.sink import DeliveryGuarantee, Sink, SinkWriter
from streamplug.api.source import (
    Boundedness,
    InputStatus,
    ReaderOutput,
    Source,
    SourceReader,
    SplitEnumerator,
)
from streamplug.api.state import StateSerializer
from streamplug.errors import ConfigError

DEFAULT_NUM_SPLITS = 8


def _validate_range(instance: CollectionSplit, attribute: Any, value: int) -> None:
    if value < instance.start:
        raise ValueError(f"split {instance.split_id}: end {value} is before start {instance.start}")


@attrs.frozen
class CollectionSplit:
    """Elements ``[start, end)`` of the source's collection; ``start`` moves as it is read."""

    split_id: str
    start: int = attrs.field(validator=attrs.validators.ge(0))
    end: int = attrs.field(validator=_validate_range)


class _SplitSerializer(StateSerializer[CollectionSplit]):
    @property
    def version(self) -> int:
        return 1

    def serialize(self, value: CollectionSplit) -> Any:
        return {"id": value.split_id, "start": value.start, "end": value.end}

    def deserialize(self, version: int, data: Any) -> CollectionSplit:
        if version != 1:
            raise ValueError(f"collection split version {version} is unknown; this release reads 1")
        return CollectionSplit(data["id"], data["start"], data["end"])


class _EnumeratorSerializer(StateSerializer[list[CollectionSplit]]):
    @property
    def version(self) -> int:
        return 1

    def serialize(self, value: list[CollectionSplit]) -> Any:
        return {"unassigned": [_SplitSerializer().serialize(s) for s in value]}

    def deserialize(self, version: int, data: Any) -> list[CollectionSplit]:
        if version != 1:
            raise ValueError(
                f"collection enumerator version {version} is unknown; this release reads 1"
            )
        return [_SplitSerializer().deserialize(1, s) for s in data["unassigned"]]


class _Enumerator(SplitEnumerator[CollectionSplit, list[CollectionSplit]]):
    def __init__(
        self, context: SplitEnumeratorContext[CollectionSplit], unassigned: list[CollectionSplit]
    ) -> None:
        self._context = context
        self._unassigned = list(unassigned)
        self._readers: set[int] = set()

    def start(self) -> None:
        pass

    def _owner(self, split: CollectionSplit) -> int:
        return int(split.split_id) % self._context.parallelism

    def _assign(self, subtask_id: int) -> None:
        mine = [s for s in self._unassigned if self._owner(s) == subtask_id]
        self._unassigned = [s for s in self._unassigned if self._owner(s) != subtask_id]
        self._context.assign_splits({subtask_id: mine})
        self._context.signal_no_more_splits(subtask_id)

    def add_reader(self, subtask_id: int) -> None:
        self._readers.add(subtask_id)
        self._assign(subtask_id)

    def add_splits_back(self, splits: Sequence[CollectionSplit], subtask_id: int) -> None:
        self._unassigned.extend(splits)
        for reader in sorted(self._readers):
            self._assign(reader)

    def snapshot_state(self, checkpoint_id: int) -> list[CollectionSplit]:
        return list(self._unassigned)


class _Reader(SourceReader[CollectionSplit]):
    def __init__(self, elements: Sequence[Any], batch_size: int, rate: float | None) -> None:
        self._elements = elements
        self._batch_size = batch_size
        self._rate = rate
        self._positions: dict[str, list[int]] = {}
        self._no_more = False
        self._emitted = 0
        self._started = time.monotonic()

    def add_splits(self, splits: Sequence[CollectionSplit]) -> None:
        for split in splits:
            self._positions[split.split_id] = [split.start, split.end]

    def notify_no_more_splits(self) -> None:
        self._no_more = True

    def poll_next(self, output: ReaderOutput[Any]) -> InputStatus:
        if not self._positions:
            return InputStatus.END_OF_INPUT if self._no_more else InputStatus.NOTHING_AVAILABLE
        budget = self._batch_size
        if self._rate is not None:
            allowed = int((time.monotonic() - self._started) * self._rate) - self._emitted
            budget = min(budget, allowed)
            if budget <= 0:
                time.sleep(min(0.01, 1 / self._rate))
                return InputStatus.NOTHING_AVAILABLE
        split_id = next(iter(self._positions))
        position = self._positions[split_id]
        start, end = position
        stop = min(end, start + budget)
        output.collect_batch(self._elements[start:stop], None, split_id)
        self._emitted += stop - start
        position[0] = stop
        if stop >= end:
            del self._positions[split_id]
            output.release_split(split_id)
        return InputStatus.MORE_AVAILABLE

    def snapshot_state(self, checkpoint_id: int) -> list[CollectionSplit]:
        return [CollectionSplit(sid, p[0], p[1]) for sid, p in self._positions.items()]

    def pending_records(self) -> int | None:
        # list() copies the values in one C call, so the reader thread deleting a finished
        # split cannot break the iteration; a position read mid-update is off by one batch.
        return sum(end - start for start, end in list(self._positions.values()))


class CollectionSource(Source[CollectionSplit, list[CollectionSplit]]):
    """Elements held in memory, read in ``num_splits`` splits.

    ``records_per_second`` throttles each reader (crash tests use it to make a job last).
    The elements must be the same after a restart for a restored job to be correct.
    """

    def __init__(
        self,
        elements: Sequence[Any],
        *,
        num_splits: int | None = None,
        batch_size: int = 1000,
        records_per_second: float | None = None,
    ) -> None:
        self.elements = elements if isinstance(elements, list) else list(elements)
        self.num_splits = max(1, min(num_splits or DEFAULT_NUM_SPLITS, len(self.elements) or 1))
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.records_per_second = records_per_second

    @classmethod
    def from_options(cls, *, elements: Sequence[Any] = (), **options: Any) -> CollectionSource:
        return cls(list(elements), **options)

    def get_boundedness(self) -> Boundedness:
        return Boundedness.BOUNDED

    def splits(self) -> list[CollectionSplit]:
        n, k = len(self.elements), self.num_splits
        bounds = [n * i // k for i in range(k + 1)]
        return [CollectionSplit(str(i), bounds[i], bounds[i + 1]) for i in range(k)]

    def create_enumerator(self, context: SplitEnumeratorContext[CollectionSplit]) -> _Enumerator:
        return _Enumerator(context, self.splits())

    def restore_enumerator(
        self, context: SplitEnumeratorContext[CollectionSplit], checkpoint: list[CollectionSplit]
    ) -> _Enumerator:
        return _Enumerator(context, checkpoint)

    def create_reader(self, context: ReaderContext) -> _Reader:
        return _Reader(self.elements, self.batch_size, self.records_per_second)

    def get_split_serializer(self) -> StateSerializer[CollectionSplit]:
        return _SplitSerializer()

    def get_enumerator_checkpoint_serializer(self) -> StateSerializer[list[CollectionSplit]]:
        return _EnumeratorSerializer()

    def describe(self) -> dict[str, Any]:
        return {"type": "collection", "elements": len(self.elements), "splits": self.num_splits}


class _CollectWriter(SinkWriter[Any, Any]):
    def __init__(self, sink: CollectSink) -> None:
        self._sink = sink
        self._file = open(sink.path, "a", encoding="utf-8") if sink.path else None  # noqa: SIM115

    def write(self, values: Sequence[Any], timestamps: Sequence[int] | None) -> None:
        if self._file is not None:
            self._file.write("".join(json.dumps(v) + "\n" for v in values))
        else:
            with self._sink._lock:
                self._sink.results.extend(values)

    def write_watermark(self, watermark: int) -> None:
        with self._sink._lock:
            self._sink.watermarks.append(watermark)

    def flush(self, end_of_input: bool) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class CollectSink(Sink[Any, Any]):
    """Collects records in ``results`` (a list shared by all subtasks) or, with ``path``,
    appends them as JSON lines to a file, fsynced at every checkpoint (at-least-once)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.results: list[Any] = []
        self.watermarks: list[int] = []
        self._lock = threading.Lock()

    # A copy shipped to a worker process (the processes runtime) cannot hand records back
    # to the list the caller holds; with a path it appends to the same file.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_lock"] = None
        state["_shipped"] = True
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def create_writer(self, context: SinkContext, restored_state: Sequence[Any]) -> _CollectWriter:
        if self.path is None and self.__dict__.get("_shipped"):
            raise ConfigError(
                "CollectSink() keeps records in this process's memory, and this job runs its "
                "subtasks in other processes: give it a file, CollectSink(path=...), or run "
                "with env.set_runtime('threads')",
                option="runtime",
            )
        return _CollectWriter(self)

    @property
    def delivery_guarantee(self) -> DeliveryGuarantee:
        return DeliveryGuarantee.AT_LEAST_ONCE

    def describe(self) -> dict[str, Any]:
        return {"type": "collect", "path": str(self.path) if self.path else None}
