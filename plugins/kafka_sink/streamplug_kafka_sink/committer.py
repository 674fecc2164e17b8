"""The EXACTLY_ONCE committer: commits the shared transaction of a checkpoint, and tells
recovery whether a crash-interrupted commit took effect (see ``transaction``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from streamplug.api.sink import CommitOutcome, Committer
from streamplug.errors import CheckpointError
from streamplug_kafka_sink.transaction import KafkaCommittable, TransactionManager

__all__ = ["KafkaCommitter", "KafkaRecoveryCommitter"]


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


class KafkaRecoveryCommitter(Committer[KafkaCommittable]):
    """The coordinator's committer: it never writes, it fences and it looks decisions up.

    Each worker slot commits its own transaction (``transactional.id = <prefix>-<slot>``).
    After a crash the coordinator fences every slot's id before anything reads the commit
    log -- an open transaction of any slot would hide the decision records behind it from
    a read_committed reader -- and then asks, slot by slot, whether the slot's decision
    record of the checkpoint is there.
    """

    def __init__(self, manager: TransactionManager, id_for: Callable[[int], str]) -> None:
        self._manager = manager
        self._id_for = id_for
        self._fenced: set[str] = set()

    def _fence(self, transactional_id: str) -> None:
        if transactional_id not in self._fenced:
            self._manager.fence(transactional_id)
            self._fenced.add(transactional_id)

    def fence_workers(self, worker_indices: Sequence[int]) -> None:
        for worker in worker_indices:
            self._fence(self._id_for(worker))

    def commit(self, checkpoint_id: int, committables: Sequence[KafkaCommittable]) -> None:
        raise CheckpointError(
            "the coordinator's Kafka committer does not commit: each worker slot commits its "
            "own transaction"
        )

    def resolve(
        self, checkpoint_id: int, committables: Sequence[KafkaCommittable]
    ) -> CommitOutcome:
        for transactional_id in sorted({c.transactional_id for c in committables}):
            self._fence(transactional_id)
        return self._manager.decide(checkpoint_id, committables)

    def close(self) -> None:
        self._manager.close()
