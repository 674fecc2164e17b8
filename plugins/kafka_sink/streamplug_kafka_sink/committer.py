"""The EXACTLY_ONCE committer: commits the shared transaction of a checkpoint, and tells
recovery whether a crash-interrupted commit took effect (see ``transaction``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from streamplug.api.sink import CommitOutcome, Committer
from streamplug_kafka_sink.transaction import KafkaCommittable, TransactionManager

__all__ = ["KafkaCommitter"]


class KafkaCommitter(Committer[KafkaCommittable]):
    """Runs on the runtime's coordinator thread while every subtask is stopped at the
    checkpoint barrier, so nothing is produced while the transaction commits.

    ``commit`` puts the checkpoint's decision record into the open transaction and commits
    it, then opens the next one. ``resolve`` (after a crash, before any writer starts)
    fences the previous process's producer and looks the decision record up.
    """

    def __init__(
        self, manager: TransactionManager, on_close: Callable[[], None] | None = None
    ) -> None:
        self._manager = manager
        self._on_close = on_close
        self._closed = False
        manager.acquire()

    @property
    def manager(self) -> TransactionManager:
        return self._manager

    def commit(self, checkpoint_id: int, committables: Sequence[KafkaCommittable]) -> None:
        self._manager.commit(checkpoint_id, committables)

    def resolve(
        self, checkpoint_id: int, committables: Sequence[KafkaCommittable]
    ) -> CommitOutcome:
        return self._manager.resolve(checkpoint_id, committables)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._manager.release()
        if self._on_close is not None:
            self._on_close()
