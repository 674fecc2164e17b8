"""Checkpoints on the local filesystem, written so a crash never leaves a half-written one.

Layout: ``<storage dir>/<job name>/chk-00000042.json``. Every write goes to a temporary
file in the same directory, is fsynced, renamed over the final name and the directory is
fsynced: a reader sees the old file or the new one, never a mix. A checkpoint is first
written PENDING (state is durable, sink commits not yet done) and rewritten COMPLETE once
its commits happened; recovery resolves a PENDING one through the sinks' committers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from streamplug.errors import CheckpointError
from streamplug.runtime.faults import fault_point

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
PENDING = "PENDING"
COMPLETE = "COMPLETE"
_NAME = re.compile(r"^chk-(\d{8,})\.json$")


def job_directory_name(job_name: str) -> str:
    """A filesystem-safe directory name for a job (stable, so restarts find it)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", job_name).strip("._") or "job"
    return safe[:100]


@attrs.frozen
class CheckpointFile:
    """A checkpoint as stored: its id, status, path, and the whole JSON document."""

    checkpoint_id: int
    status: str
    path: Path
    document: dict[str, Any]

    @property
    def is_final(self) -> bool:
        return bool(self.document.get("final"))


class FileCheckpointStorage:
    """Reads and writes one job's checkpoints in a directory."""

    def __init__(self, base_dir: str | os.PathLike[str], job_name: str) -> None:
        self.base_dir = Path(base_dir)
        self.directory = self.base_dir / job_directory_name(job_name)

    def __repr__(self) -> str:
        return f"FileCheckpointStorage({str(self.directory)!r})"

    # -- writing ---------------------------------------------------------------------------

    def path_for(self, checkpoint_id: int) -> Path:
        return self.directory / f"chk-{checkpoint_id:08d}.json"

    def write(self, checkpoint_id: int, status: str, document: dict[str, Any]) -> Path:
        """Atomically write the checkpoint with ``status``; returns its path."""
        doc = dict(document, format=FORMAT_VERSION, checkpoint_id=checkpoint_id, status=status)
        data = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode("utf-8")
        fault_point("checkpoint.before_write")
        return self._replace(self.path_for(checkpoint_id), data, torn_write_fault=True)

    def _replace(self, final: Path, data: bytes, torn_write_fault: bool = False) -> Path:
        """Write ``data`` to a temporary file, fsync it, rename it over ``final`` and fsync
        the directory: readers see the old file or the new one, never a mix."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as f:
                half = len(data) // 2
                f.write(data[:half])
                f.flush()
                if torn_write_fault:
                    # A crash here leaves a torn temporary file, which recovery must ignore.
                    fault_point("checkpoint.during_write")
                f.write(data[half:])
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_directory(self.directory)
        return final

    def write_record(self, name: str, value: dict[str, Any]) -> None:
        """A small JSON record of the job beside its checkpoints, written atomically (the
        worker slots its attempts used, for fencing after a crash)."""
        data = json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")
        self._replace(self.directory / f"{name}.json", data)

    def read_record(self, name: str) -> dict[str, Any] | None:
        """A record written by ``write_record``, or None if there is none."""
        try:
            value = json.loads((self.directory / f"{name}.json").read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read {name}.json in {self.directory}: {exc}") from exc
        return value if isinstance(value, dict) else None

    def mark(self, checkpoint: CheckpointFile, status: str) -> CheckpointFile:
        path = self.write(checkpoint.checkpoint_id, status, checkpoint.document)
        return attrs.evolve(checkpoint, status=status, path=path)

    def discard(self, checkpoint_id: int) -> None:
        try:
            self.path_for(checkpoint_id).unlink()
        except FileNotFoundError:
            return
        _fsync_directory(self.directory)

    def prune(self, keep: int) -> list[int]:
        """Delete all but the newest ``keep`` COMPLETE checkpoints (and anything older than
        them); returns the deleted ids."""
        completes = [c for c in self.list() if c.status == COMPLETE]
        if len(completes) <= keep:
            return []
        oldest_kept = completes[keep - 1].checkpoint_id
        deleted = []
        for cid in self.ids():
            if cid < oldest_kept:
                self.discard(cid)
                deleted.append(cid)
        return deleted

    def remove_temporaries(self) -> None:
        """Delete torn temporary files a crash left behind."""
        if not self.directory.is_dir():
            return
        for entry in self.directory.iterdir():
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                entry.unlink(missing_ok=True)

    # -- reading ---------------------------------------------------------------------------

    def ids(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        found = []
        for entry in self.directory.iterdir():
            m = _NAME.match(entry.name)
            if m:
                found.append(int(m.group(1)))
        return sorted(found, reverse=True)

    def list(self) -> list[CheckpointFile]:
        """Every readable checkpoint, newest first. Unreadable files are logged and skipped."""
        result = []
        for cid in self.ids():
            try:
                result.append(self.read(self.path_for(cid)))
            except CheckpointError as exc:
                log.warning("skipping unreadable checkpoint: %s", exc)
        return result

    def __iter__(self) -> Iterator[CheckpointFile]:
        return iter(self.list())

    @staticmethod
    def read(path: str | os.PathLike[str]) -> CheckpointFile:
        path = Path(path)
        try:
            document = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
        if not isinstance(document, dict) or document.get("format") != FORMAT_VERSION:
            raise CheckpointError(
                f"checkpoint {path} has format {document.get('format')!r} "
                f"but this release reads format {FORMAT_VERSION}"
            )
        return CheckpointFile(
            int(document["checkpoint_id"]), str(document["status"]), path, document
        )

    def latest_id(self) -> int:
        ids = self.ids()
        return ids[0] if ids else 0


def _fsync_directory(directory: Path) -> None:
    # The rename is only durable once the directory entry is; without this a power cut
    # can bring back the old file or none.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def now_ms() -> int:
    return int(time.time() * 1000)
