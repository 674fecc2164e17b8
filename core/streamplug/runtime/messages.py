"""The worker protocol: what the coordinator tells a worker slot, and what a slot reports.

A worker slot hosts subtasks (reader -> chained operators -> writers) and answers control
calls from the coordinator; the coordinator keeps the enumerators, the checkpoint
coordinator, checkpoint storage and the restart strategy. Every message carries the
attempt it belongs to: a slot drops a call from another attempt, and the coordinator drops
a report from one, so a zombie of a failed attempt can neither be steered nor be believed.

Records never travel this way; only splits, snapshots (already serialized by the plugins'
state serializers) and small reports do. Every value here pickles, so the same messages
serve direct calls (threads), pipes between processes and Ray actor calls.
"""

from __future__ import annotations

from typing import Any

import attrs

SubtaskKey = tuple[str, int]
"""(pipeline name, subtask index)."""


# -- coordinator -> worker ---------------------------------------------------------------------


@attrs.frozen
class StartAttempt:
    """Build and start this slot's subtasks for ``attempt``.

    ``restored_splits`` and ``writer_states`` are keyed by subtask; writer states are per
    sink of the pipeline, in the pipeline's sink order.
    """

    attempt: int
    restored_checkpoint_id: int | None
    restored_splits: dict[SubtaskKey, list[Any]]
    writer_states: dict[SubtaskKey, list[list[Any]]]


@attrs.frozen
class AssignSplits:
    attempt: int
    subtask: SubtaskKey
    splits: list[Any]


@attrs.frozen
class NoMoreSplits:
    attempt: int
    subtask: SubtaskKey


@attrs.frozen
class AssignmentRound:
    """The enumerator of ``pipeline`` finished a round: a reader with no split is idle."""

    attempt: int
    pipeline: str


@attrs.frozen
class TriggerBarrier:
    """Every subtask of the slot stops between two batches, snapshots, flushes and
    prepares its writers, and waits there until ``ReleaseBarrier``."""

    attempt: int
    checkpoint_id: int


@attrs.frozen
class CommitCheckpoint:
    """The checkpoint is durable as PENDING: commit this slot's transactions now."""

    attempt: int
    checkpoint_id: int


@attrs.frozen
class ReleaseBarrier:
    """Resume after the barrier; ``completed`` False means the checkpoint was aborted."""

    attempt: int
    checkpoint_id: int
    completed: bool


@attrs.frozen
class StopSources:
    """Stop reading (a stop with a final checkpoint follows)."""

    attempt: int


@attrs.frozen
class EndAttempt:
    """Close every subtask: ``graceful`` after a normal end, otherwise cancel them."""

    attempt: int
    graceful: bool


ControlMessage = (
    StartAttempt
    | AssignSplits
    | NoMoreSplits
    | AssignmentRound
    | TriggerBarrier
    | CommitCheckpoint
    | ReleaseBarrier
    | StopSources
    | EndAttempt
)


# -- worker -> coordinator ---------------------------------------------------------------------


@attrs.frozen
class SplitRequest:
    attempt: int
    subtask: SubtaskKey


@attrs.frozen
class SubtaskFinished:
    """The subtask's input ended and its writers flushed."""

    attempt: int
    subtask: SubtaskKey


@attrs.frozen
class WorkerFailed:
    """A subtask, a commit or the worker itself failed; ``error`` is the original exception
    where it pickles, else a ``WorkerError`` carrying its type and text."""

    attempt: int
    worker: int
    error: BaseException
    subtask: SubtaskKey | None = None


@attrs.frozen
class SubtaskSnapshot:
    """One subtask's part of a checkpoint, serialized with the plugins' serializers."""

    subtask: SubtaskKey
    split_version: int
    splits: list[Any]
    committables: list[list[Any]]
    """Per sink of the pipeline, in sink order."""
    writer_states: list[list[Any]]
    """Per sink of the pipeline, in sink order."""
    duration_ms: int = 0
    """From the barrier reaching the slot to the subtask's snapshot."""


@attrs.frozen
class BarrierAck:
    attempt: int
    worker: int
    checkpoint_id: int
    snapshots: list[SubtaskSnapshot]


@attrs.frozen
class CommitAck:
    attempt: int
    worker: int
    checkpoint_id: int


@attrs.frozen
class AttemptEnded:
    """Every subtask of the slot stopped and its committers closed (after ``EndAttempt``);
    the slot's last ``Progress`` came before this."""

    attempt: int
    worker: int


@attrs.frozen
class SubtaskProgress:
    """Live counters of one subtask, for the job's metrics and progress display."""

    subtask: SubtaskKey
    records_in: int
    records_out: int
    watermark: int
    idle: bool
    pending_records: int | None
    closed: bool


@attrs.frozen
class Progress:
    attempt: int
    worker: int
    subtasks: list[SubtaskProgress]


WorkerEvent = (
    SplitRequest | SubtaskFinished | WorkerFailed | BarrierAck | CommitAck | Progress | AttemptEnded
)


class WorkerError(Exception):
    """An exception from a worker process that could not travel as itself."""

    def __init__(self, type_name: str, text: str) -> None:
        super().__init__(f"{type_name}: {text}")
        self.type_name = type_name
        self.text = text

    def __reduce__(self) -> tuple[Any, ...]:
        return (WorkerError, (self.type_name, self.text))
