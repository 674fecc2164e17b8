"""The source SPI: FLIP-27's Source, SplitEnumerator and SourceReader, in Python.

Lifecycle, as the embedded runtime guarantees it:

* ``Source.create_enumerator`` (or ``restore_enumerator`` after a failure) runs once per
  job attempt on the coordinator thread. Every ``SplitEnumerator`` method runs on that
  one thread, so an enumerator needs no locking; blocking work belongs in
  ``SplitEnumeratorContext.call_async``.
* ``Source.create_reader`` runs once per parallel subtask and attempt. Every
  ``SourceReader`` method runs on that subtask's own thread, never concurrently with
  another method of the same reader. ``close`` is called exactly once, and nothing is
  called after it. The one exception is ``pending_records``, which the coordinator thread
  reads for the job's live view whenever it likes.
* A split is an immutable value. A reader keeps its progress in mutable state of its own
  and hands it back as new split values from ``snapshot_state``.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from streamplug.api.context import ReaderContext, SplitEnumeratorContext
    from streamplug.api.state import StateSerializer
    from streamplug.api.watermarks import WatermarkStrategy

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
SplitT = TypeVar("SplitT", bound="SourceSplit")
EnumStateT = TypeVar("EnumStateT")


class Boundedness(enum.Enum):
    """Whether a source ends by itself (Flink's ``Boundedness``)."""

    BOUNDED = "bounded"
    CONTINUOUS_UNBOUNDED = "continuous_unbounded"


class InputStatus(enum.Enum):
    """What ``SourceReader.poll_next`` reports after emitting (possibly nothing)."""

    MORE_AVAILABLE = "more_available"
    """Call again right away: records are waiting."""
    NOTHING_AVAILABLE = "nothing_available"
    """Nothing now; the runtime calls again after it has served checkpoints and events."""
    END_OF_INPUT = "end_of_input"
    """Every split this reader will ever get has finished. Never called again for records."""


class SourceSplit(Protocol):
    """A piece of a source's input. Implementations are frozen attrs values."""

    @property
    def split_id(self) -> str:
        """A stable id, unique within one source."""
        ...


class ReaderOutput(Protocol[T_co]):
    """Where a reader emits records. Used only on the reader's own thread, during ``poll_next``.

    ``collect_batch`` is the fast path: the runtime applies timestamps, watermarks and the
    chained operators to the whole batch at once. ``split_id`` routes the batch through the
    split's own watermark generator, so one slow partition holds back the watermark the
    way it does in Flink's Kafka source.
    """

    def collect_batch(
        self,
        values: Sequence[Any],
        timestamps: Sequence[int] | None = None,
        split_id: str | None = None,
    ) -> None:
        """Emit ``values``; ``timestamps`` (epoch ms) are their event times, when known."""
        ...

    def collect(
        self, value: Any, timestamp: int | None = None, split_id: str | None = None
    ) -> None:
        """Emit one record. Slower than ``collect_batch``; fine for low-volume sources."""
        ...

    def release_split(self, split_id: str) -> None:
        """The split finished: its watermark no longer holds back the reader's."""
        ...

    def mark_idle(self) -> None:
        """No records for a while: do not hold back downstream watermarks."""
        ...

    def mark_active(self) -> None:
        """Records flow again after ``mark_idle``."""
        ...


class SourceReader(ABC, Generic[SplitT]):
    """Reads the splits assigned to one parallel subtask."""

    def start(self) -> None:
        """Called once, before any other method but ``add_splits`` of restored splits."""

    @abstractmethod
    def poll_next(self, output: ReaderOutput[Any]) -> InputStatus:
        """Emit what is available now (ideally as one or a few batches) and say what follows.

        Should not block for long (at most ~100 ms): checkpoints and split assignments are
        served between calls.
        """

    @abstractmethod
    def add_splits(self, splits: Sequence[SplitT]) -> None:
        """Take on new splits: restored from a checkpoint, or assigned by the enumerator."""

    def notify_no_more_splits(self) -> None:
        """The enumerator will assign no further splits to this reader."""

    @abstractmethod
    def snapshot_state(self, checkpoint_id: int) -> list[SplitT]:
        """Return the reader's splits with their current progress, for checkpoint ``checkpoint_id``.

        Called between ``poll_next`` calls, so every record emitted before it is covered.
        """

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` is durable. May not be called for every checkpoint."""

    def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` failed; its snapshot will never be used."""

    def close(self) -> None:
        """Release resources. Called once; nothing but ``pending_records`` is called
        afterwards.

        On a graceful end (the input ended, or the job was stopped) it is the reader's last
        word: what it raises fails the job (e.g. records it sent somewhere that were not
        acknowledged), after the writers were closed too. After a failure or a cancel, what
        it raises is only logged."""

    def pending_records(self) -> int | None:
        """How many records the reader's splits still hold beyond what it has emitted
        (Flink's ``pendingRecords``: consumer lag), or None when it cannot say.

        The runtime sums this over the subtasks into ``JobMetrics.pending_records``, the
        ``lag`` of ``streamplug run``'s progress line. Unlike every other method it is called
        from the coordinator thread, while the reader's own thread runs any other method,
        ``close`` included, and possibly just after ``close``. So it must be cheap (it is
        read several times a second), never block (no broker round trip: answer from
        what the reader already knows, possibly a little stale) and tolerate concurrent
        changes to the reader's state. If it raises, the runtime logs it and asks that
        reader no more in this job attempt.

        The default says None. For example, a reader of an in-memory list::

            def pending_records(self) -> int | None:
                return self._end - self._position  # two int reads: safe from any thread
        """
        return None


class SplitEnumerator(ABC, Generic[SplitT, EnumStateT]):
    """Discovers splits and assigns them to readers. Runs on the coordinator thread."""

    @abstractmethod
    def start(self) -> None:
        """Begin discovery; typically schedules work through ``context.call_async``."""

    def handle_split_request(self, subtask_id: int) -> None:
        """A reader asked for a split (pull-based sources). Push-based enumerators ignore it."""

    @abstractmethod
    def add_splits_back(self, splits: Sequence[SplitT], subtask_id: int) -> None:
        """Splits assigned to a failed reader since the last checkpoint come back here."""

    @abstractmethod
    def add_reader(self, subtask_id: int) -> None:
        """A reader registered (at start, or again after a restart)."""

    @abstractmethod
    def snapshot_state(self, checkpoint_id: int) -> EnumStateT:
        """Return what the enumerator must remember to resume after a failure."""

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` is durable."""

    def close(self) -> None:
        """Release resources. Called once; nothing is called afterwards."""


class Source(ABC, Generic[SplitT, EnumStateT]):
    """A factory for a source's enumerator and readers. Must be picklable-free: it is only
    ever used inside the process that built it."""

    @abstractmethod
    def get_boundedness(self) -> Boundedness:
        """Whether the job can finish because this source ends."""

    @abstractmethod
    def create_enumerator(
        self, context: SplitEnumeratorContext[SplitT]
    ) -> SplitEnumerator[SplitT, EnumStateT]:
        """A fresh enumerator, for a job that starts without a checkpoint."""

    @abstractmethod
    def restore_enumerator(
        self, context: SplitEnumeratorContext[SplitT], checkpoint: EnumStateT
    ) -> SplitEnumerator[SplitT, EnumStateT]:
        """An enumerator resumed from a checkpoint's enumerator state."""

    @abstractmethod
    def create_reader(self, context: ReaderContext) -> SourceReader[SplitT]:
        """A reader for subtask ``context.subtask_index``."""

    @abstractmethod
    def get_split_serializer(self) -> StateSerializer[SplitT]:
        """How splits are written into checkpoints (versioned)."""

    @abstractmethod
    def get_enumerator_checkpoint_serializer(self) -> StateSerializer[EnumStateT]:
        """How the enumerator state is written into checkpoints (versioned)."""

    def describe(self) -> Mapping[str, Any]:
        """A few facts for logs and ``streamplug checkpoints`` (never secrets)."""
        return {"type": type(self).__name__}

    def get_watermark_strategy(self) -> WatermarkStrategy | None:
        """The watermark strategy the source carries itself, used when ``from_source`` or
        ``add_source`` is given none; None (the default) means no watermarks there.

        For sources in the older style, where the strategy was set on the source (the
        legacy ``FlinkKafkaConsumer.assign_timestamps_and_watermarks``). A strategy given
        to ``from_source`` always wins."""
        return None
