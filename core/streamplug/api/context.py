"""What the runtime hands to enumerators, readers, writers and committers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from streamplug.metrics import MetricGroup

SplitT = TypeVar("SplitT")
R = TypeVar("R")


class RuntimeContext(ABC):
    """Facts about the running subtask, plus access to plugin hooks."""

    @property
    @abstractmethod
    def job_name(self) -> str: ...

    @property
    @abstractmethod
    def subtask_index(self) -> int: ...

    @property
    @abstractmethod
    def parallelism(self) -> int: ...

    @property
    @abstractmethod
    def attempt_number(self) -> int:
        """0 for the first run of the job, then one more for each restart."""

    @property
    @abstractmethod
    def metric_group(self) -> MetricGroup: ...

    @property
    @abstractmethod
    def checkpointing_enabled(self) -> bool: ...

    @abstractmethod
    def configure_client(
        self, properties: MutableMapping[str, str], *, role: str, connector: str
    ) -> MutableMapping[str, str]:
        """Run the ``streamplug_configure_client`` hooks over ``properties`` (in place) and
        return them. ``role`` is ``"consumer"``, ``"producer"`` or ``"admin"``."""

    def plugin_hook(self, name: str) -> Callable[..., list[Any]] | None:
        """The caller of hook ``name`` (one of ``streamplug.plugin.spec.ROLE_HOOKS``) when a
        plugin implements it, else None. Connectors ask once, when their reader or writer is
        built, keep the answer, and call it per batch with keyword arguments only when it is
        not None: a job whose plugins implement none of these hooks pays nothing per batch.
        Contexts outside the runtime (tests) have no plugins: None."""
        return None


class ReaderContext(RuntimeContext):
    """Given to ``Source.create_reader``."""

    @abstractmethod
    def send_split_request(self) -> None:
        """Ask the enumerator for a split (for pull-based sources)."""


class SinkContext(RuntimeContext):
    """Given to ``Sink.create_writer`` and ``Sink.create_committer``."""

    @property
    @abstractmethod
    def restored_checkpoint_id(self) -> int | None:
        """The checkpoint the job resumed from, or None on a fresh start."""

    @property
    @abstractmethod
    def checkpoint_interval_ms(self) -> int | None:
        """The configured checkpoint interval, or None when checkpointing is off."""

    @property
    @abstractmethod
    def checkpoint_timeout_ms(self) -> int: ...

    @property
    def worker_index(self) -> int | None:
        """The worker slot that hosts this writer or committer: every writer and committer
        of one slot runs in one process and may share a client there (a transactional
        sink's producer, whose transactional id follows the slot). 0 for every subtask of
        the ``threads`` runtime; None for the committer the coordinator builds to resolve
        and fence after a crash, which writes nothing itself."""
        return 0

    @property
    def keeps_positions(self) -> bool:
        """True when the element at position i of every batch this writer gets was made from
        the record at position i of the batch the source's reader delivered just before, in
        the same thread: only maps (and timestamp assignment) lie between source and sink.
        False when a filter or flat_map does, and outside the runtime."""
        return False

    def run_in_task(self, fn: Callable[[], None]) -> bool:
        """Have the writer's subtask thread call ``fn`` soon, between two calls of the
        writer, even when no record arrives (Flink's ``MailboxExecutor``). Safe from any
        thread. What ``fn`` raises fails the subtask as if a writer method had raised it:
        this is how a failure a client finds on a thread of its own (a delivery callback, a
        background check) reaches the job without waiting for the next write.

        Returns True when ``fn`` was queued. Contexts with no subtask thread (a
        committer's, one built outside a job) return False and never call it; a writer
        then reports the failure at its next call. Calls queued after the subtask ended
        are dropped. For example::

            def _on_broker_gone(self) -> None:  # on the client's thread
                self._context.run_in_task(self._raise_pending_failure)
        """
        return False


class SplitEnumeratorContext(ABC, Generic[SplitT]):
    """The enumerator's window on the runtime. Every method is safe to call from the
    coordinator thread only; ``call_async`` is how an enumerator does blocking work."""

    @property
    @abstractmethod
    def parallelism(self) -> int: ...

    @property
    @abstractmethod
    def metric_group(self) -> MetricGroup: ...

    @abstractmethod
    def registered_readers(self) -> Sequence[int]:
        """Subtask indexes whose readers are running."""

    @abstractmethod
    def assign_splits(self, assignment: Mapping[int, Sequence[SplitT]]) -> None:
        """Hand splits to readers; each reader receives them before its next ``poll_next``."""

    @abstractmethod
    def signal_no_more_splits(self, subtask_id: int) -> None:
        """Tell one reader that nothing more will come (bounded sources)."""

    @abstractmethod
    def call_async(
        self,
        fn: Callable[[], R],
        handler: Callable[[R | None, BaseException | None], None],
        initial_delay_ms: int = 0,
        period_ms: int = 0,
    ) -> None:
        """Run ``fn`` on a worker thread (once, or every ``period_ms`` when > 0) and then
        ``handler(result, error)`` on the coordinator thread. An exception raised by the
        handler fails the job."""

    @abstractmethod
    def configure_client(
        self, properties: MutableMapping[str, str], *, role: str, connector: str
    ) -> MutableMapping[str, str]:
        """Same as ``RuntimeContext.configure_client``."""

    @property
    @abstractmethod
    def checkpointing_enabled(self) -> bool: ...

    def splits_discovered(self, splits: Sequence[SplitT]) -> None:
        """Tell the plugins (``streamplug_enumerator_splits_discovered``) that the enumerator
        found ``splits``, which it did not know before. Coordinator thread only. Contexts
        outside the runtime ignore it."""
        return None

    def describe(self) -> Mapping[str, Any]:
        return {"parallelism": self.parallelism}
