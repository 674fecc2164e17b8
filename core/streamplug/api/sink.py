"""The sink SPI: Flink's Sink V2 (SinkWriter and Committer), in Python.

Lifecycle, as the embedded runtime guarantees it:

* ``Sink.create_writer`` runs once per parallel subtask and attempt; every ``SinkWriter``
  method runs on that subtask's thread, never concurrently with another of its methods.
* At a checkpoint, every writer is called in this order, between two ``write`` calls:
  ``flush(end_of_input=False)``, ``prepare_commit()``, ``snapshot_state(checkpoint_id)``.
  All subtasks stop at the checkpoint barrier until the checkpoint is committed, so a
  writer's output after the barrier never mixes with output before it.
* ``Sink.create_committer`` runs once per job attempt in every worker slot
  (``SinkContext.worker_index``), and once on the coordinator (``worker_index`` None).
  For every checkpoint the runtime writes it as PENDING, then every slot's committer
  commits that slot's committables (``Committer.commit``), and the checkpoint is marked
  COMPLETE only when every slot's ``commit`` returned. After a crash the coordinator's
  committer resolves a PENDING checkpoint slot by slot (``Committer.resolve`` with one
  slot's committables at a time) and fences the slots an earlier attempt used and this
  one will not (``Committer.fence_workers``), before any writer starts.
* At the end of a bounded input: ``flush(end_of_input=True)``, then a final checkpoint.
* On a stop: a final checkpoint when checkpointing is on (or the sink has a committer);
  then ``close``, whose failure fails the job (see ``SinkWriter.close``).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from streamplug.api.state import PickleStateSerializer, StateSerializer

if TYPE_CHECKING:
    from streamplug.api.context import SinkContext

CommT = TypeVar("CommT")
WriterStateT = TypeVar("WriterStateT")


class DeliveryGuarantee(enum.Enum):
    """What a sink promises about records written before a completed checkpoint."""

    NONE = "none"
    """Fire and forget: records may be lost on failure."""
    AT_LEAST_ONCE = "at-least-once"
    """Every record before a completed checkpoint was acknowledged; replays may duplicate."""
    EXACTLY_ONCE = "exactly-once"
    """Output is visible to read_committed consumers only with the checkpoint that covers it."""

    @classmethod
    def parse(cls, value: str | DeliveryGuarantee) -> DeliveryGuarantee:
        if isinstance(value, DeliveryGuarantee):
            return value
        key = value.strip().lower().replace("_", "-")
        for member in cls:
            if member.value == key:
                return member
        valid = ", ".join(m.name for m in cls)
        raise ValueError(f"unknown delivery guarantee {value!r}; use one of {valid}")


class CommitOutcome(enum.Enum):
    """What ``Committer.resolve`` found out about a checkpoint left PENDING by a crash."""

    COMMITTED = "committed"
    """Its output is durable: the checkpoint is promoted to COMPLETE."""
    ABORTED = "aborted"
    """Its output was (or will be) discarded: the checkpoint is dropped."""


class SinkWriter(ABC, Generic[CommT, WriterStateT]):
    """Writes one subtask's records."""

    @abstractmethod
    def write(self, values: Sequence[Any], timestamps: Sequence[int] | None) -> None:
        """Write a batch. ``timestamps`` are the records' event times (epoch ms) when known."""

    def write_watermark(self, watermark: int) -> None:
        """The subtask's watermark advanced to ``watermark``."""

    @abstractmethod
    def flush(self, end_of_input: bool) -> None:
        """Make everything written so far durable as far as the delivery guarantee needs
        (AT_LEAST_ONCE: wait for every acknowledgement). Raise if any write failed."""

    def prepare_commit(self) -> list[CommT]:
        """Committables for the records since the last checkpoint (two-phase sinks)."""
        return []

    def snapshot_state(self, checkpoint_id: int) -> list[WriterStateT]:
        """State to restore the writer with after a failure."""
        return []

    def close(self) -> None:
        """Release resources. Called once; nothing is called afterwards. May be called
        without a prior flush when the job fails, or when it is stopped without
        checkpointing.

        On a graceful end (the input ended, or the job was stopped) what it raises fails
        the job: a writer that cannot deliver what it wrote since its last flush says so
        here rather than lose it. After a failure or a cancel, what it raises is only
        logged."""


class Committer(ABC, Generic[CommT]):
    """Makes prepared output visible once a checkpoint is durable as PENDING."""

    @abstractmethod
    def commit(self, checkpoint_id: int, committables: Sequence[CommT]) -> None:
        """Commit every committable of ``checkpoint_id``. Raising fails the checkpoint and
        the job attempt (the restart strategy decides what follows)."""

    def resolve(self, checkpoint_id: int, committables: Sequence[CommT]) -> CommitOutcome:
        """Called on restore for a checkpoint a crash left PENDING. The default re-commits,
        which is right when ``commit`` is idempotent."""
        self.commit(checkpoint_id, committables)
        return CommitOutcome.COMMITTED

    def fence_workers(self, worker_indices: Sequence[int]) -> None:
        """Make sure nothing the writers of these worker slots left open can still become
        visible, or hide anything from readers. Called on the coordinator's committer
        before any worker starts: with every slot of a PENDING checkpoint before it is
        resolved, and with the slots an earlier attempt used and this one will not (the
        parallelism went down, or an attempt died before its first checkpoint). The default
        does nothing, which is right for sinks without transactions."""

    def close(self) -> None:
        """Release resources."""


class Sink(ABC, Generic[CommT, WriterStateT]):
    """A factory for a sink's writers and (for two-phase sinks) its committer."""

    @abstractmethod
    def create_writer(
        self, context: SinkContext, restored_state: Sequence[WriterStateT]
    ) -> SinkWriter[CommT, WriterStateT]:
        """A writer for subtask ``context.subtask_index``; ``restored_state`` holds what the
        writers of the restored checkpoint snapshotted (redistributed when parallelism changed)."""

    def create_committer(self, context: SinkContext) -> Committer[CommT] | None:
        """The committer, or None for sinks without a commit phase."""
        return None

    def get_committable_serializer(self) -> StateSerializer[CommT]:
        return PickleStateSerializer()

    def get_writer_state_serializer(self) -> StateSerializer[WriterStateT]:
        return PickleStateSerializer()

    @property
    def delivery_guarantee(self) -> DeliveryGuarantee:
        return DeliveryGuarantee.AT_LEAST_ONCE

    def describe(self) -> Mapping[str, Any]:
        """A few facts for logs and ``streamplug checkpoints`` (never secrets)."""
        return {"type": type(self).__name__}
