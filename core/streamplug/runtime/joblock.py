"""One job, one run: a lock document in the job's checkpoint storage.

Two runs of one job on one checkpoint storage would restore the same checkpoints, fence
each other's transactional producers back and forth and overwrite each other's
checkpoints. The first run to start creates ``job.lock`` (atomically: a file created with
O_EXCL, a conditional PUT on an object store) naming itself; a second run is refused with
a message naming the holder. A lock left behind by a killed process does not block: on
the holder's own host, a holder whose process is gone (or is another process that reused
its pid) is stale and replaced, saying so. A holder on another host cannot be checked from
here; the message says which file to delete once that run is known to be gone.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import attrs

from streamplug.errors import UnrecoverableError
from streamplug.runtime.storage import CheckpointStorage

__all__ = ["LOCK_NAME", "JobLock", "JobLockedError", "LockHolder"]

log = logging.getLogger(__name__)

LOCK_NAME = "job.lock"


class JobLockedError(UnrecoverableError):
    """Another run of the job holds its checkpoint storage. ``holder`` says which."""

    def __init__(self, message: str, holder: LockHolder | None = None) -> None:
        self.holder = holder
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.holder))


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), to tell a
    holder from a later process that reused its pid; None where /proc cannot say."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            # The command name (field 2) may hold spaces; fields after it are plain.
            rest = stat.read().rsplit(")", 1)[1].split()
        return rest[19]
    except (OSError, IndexError):
        return None


@attrs.frozen
class LockHolder:
    pid: int
    host: str
    since_ms: int
    token: str
    process_start: str | None = None

    def describe(self) -> str:
        since = datetime.fromtimestamp(self.since_ms / 1000, tz=UTC)
        return f"pid {self.pid} on host {self.host} since {since:%Y-%m-%d %H:%M:%S} UTC"

    def is_gone(self) -> bool:
        """Whether the holder certainly no longer runs (only checkable on its own host)."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # alive, someone else's
        return self.process_start is not None and _process_start(self.pid) != self.process_start

    def to_bytes(self) -> bytes:
        return json.dumps(attrs.asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LockHolder:
        doc = json.loads(data)
        return cls(
            int(doc["pid"]),
            str(doc["host"]),
            int(doc["since_ms"]),
            str(doc["token"]),
            doc.get("process_start"),
        )


class JobLock:
    """``acquire()`` before a run touches the storage, ``release()`` when it ended."""

    def __init__(self, storage: CheckpointStorage, job_name: str) -> None:
        self._storage = storage
        self._job_name = job_name
        self._held: LockHolder | None = None

    @property
    def held(self) -> bool:
        return self._held is not None

    @property
    def location(self) -> str:
        return str(self._storage.location_of(LOCK_NAME))

    def acquire(self) -> None:
        pid = os.getpid()
        me = LockHolder(
            pid,
            socket.gethostname(),
            int(time.time() * 1000),
            uuid.uuid4().hex,
            _process_start(pid),
        )
        for _ in range(5):
            if self._storage.create_bytes(LOCK_NAME, me.to_bytes()):
                self._held = me
                return
            holder = self._read()
            if holder is None:
                continue  # released (or unreadable and removed) meanwhile: try again
            if holder.is_gone():
                log.warning(
                    "job %r: removing the lock of a run that no longer runs (%s) at %s",
                    self._job_name,
                    holder.describe(),
                    self.location,
                )
                self._storage.delete(LOCK_NAME)
                continue
            raise JobLockedError(
                f"job {self._job_name!r} is already running on this checkpoint storage: "
                f"{self.location} is held by {holder.describe()}. Stop that run first (a "
                "second one would restore the same checkpoints and fence its producers), give "
                "this run another job name or checkpoint storage, or, if that run is gone and "
                f"its host cannot be checked from here, delete {self.location}",
                holder,
            )
        raise JobLockedError(
            f"job {self._job_name!r}: could not take the lock {self.location} (it kept "
            "changing hands); is another run starting at the same time?"
        )

    def _read(self) -> LockHolder | None:
        try:
            data = self._storage.read_bytes(LOCK_NAME)
        except FileNotFoundError:
            return None
        try:
            return LockHolder.from_bytes(data)
        except (ValueError, KeyError, TypeError):
            # A torn or foreign file: no run can be named as its holder.
            log.warning("job %r: removing an unreadable lock at %s", self._job_name, self.location)
            self._storage.delete(LOCK_NAME)
            return None

    def release(self) -> None:
        held, self._held = self._held, None
        if held is None:
            return
        try:
            current = self._read()
            # Only our own: a stale-lock takeover by another run must not be undone.
            if current is not None and current.token == held.token:
                self._storage.delete(LOCK_NAME)
        except OSError as exc:
            log.warning(
                "job %r: could not release the lock %s: %s", self._job_name, self.location, exc
            )
