"""Checkpoint storage that every node of a job can reach, written so that a crash never
leaves a half-written checkpoint.

Layout: ``<storage>/<job name>/chk-00000042.json``, where ``<storage>`` is either

- a directory (local, or on a file system every node mounts: NFS, CephFS, ...): every
  write goes to a temporary file in the same directory, is fsynced, renamed over the final
  name and the directory is fsynced, so a reader sees the old file or the new one, never a
  mix (``FileCheckpointStorage``);
- an object store URL such as ``s3://bucket/prefix``, through fsspec: every write is one
  PUT of the whole document, which the store makes visible all at once or not at all, so
  there is no temporary object to clean up (``ObjectStoreCheckpointStorage``; needs
  ``pip install "streamplug[s3]"``).

A checkpoint is first written PENDING (state is durable, sink commits not yet done) and
rewritten COMPLETE once its commits happened; recovery resolves a PENDING one through the
sinks' committers. Only the coordinator (the driver process) writes a job's storage.

Besides checkpoints, a storage holds small documents of the job's own (a job lock, the
transactional ids an attempt will use): ``read_bytes``, ``write_bytes``, ``create_bytes``,
``exists`` and ``delete`` give them the same atomicity, on every backend.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import importlib.util
import json
import logging
import os
import posixpath
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from streamplug.errors import (
    AuthorizationError,
    CheckpointError,
    ConfigError,
    MissingResourceError,
)
from streamplug.runtime.faults import fault_point
from streamplug.secrets import MASK, is_secret_key, redact_text

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
PENDING = "PENDING"
COMPLETE = "COMPLETE"
_NAME = re.compile(r"^chk-(\d{8,})\.json$")
# Names a job may give its own documents: one path segment, no hidden or temporary names.
_DOCUMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")

S3_INSTALL = 'pip install "streamplug[s3]"'
# Object stores whose single-object PUT is atomic, with the fsspec implementation each
# needs. ``memory`` lives in the process only: for tests, never for a job that must resume.
OBJECT_STORE_SCHEMES: dict[str, tuple[str, str]] = {
    "s3": ("s3fs", S3_INSTALL),
    "s3a": ("s3fs", S3_INSTALL),
    "memory": ("fsspec", S3_INSTALL),
}
# Option names of fsspec back ends that carry credentials, besides every name
# ``streamplug.secrets`` already treats as secret: s3fs calls the access key id ``key``.
_CREDENTIAL_OPTIONS = frozenset(
    {"key", "secret", "token", "access_key", "secret_key", "session_token", "account_key"}
)
# A local temporary file older than this was left by a crash, not by a write in progress.
_STALE_TEMPORARY_S = 3600.0


class CheckpointStorageDeniedError(CheckpointError, AuthorizationError):
    """The object store refused the credentials or the operation (S3 AccessDenied,
    InvalidAccessKeyId, SignatureDoesNotMatch, ...): a restart would be refused the same way,
    so the job fails at once."""


class CheckpointStorageMissingError(CheckpointError, MissingResourceError):
    """The bucket the storage URL names does not exist: create it or fix the URL."""


def job_directory_name(job_name: str) -> str:
    """A filesystem-safe directory name for a job (stable, so restarts find it)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", job_name).strip("._") or "job"
    return safe[:100]


def redact_storage_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of fsspec storage options fit to print: credentials (at any depth, e.g.
    ``client_kwargs``) replaced by ``***``, and any ``user:password@`` in a URL too."""
    shown: dict[str, Any] = {}
    for name, value in options.items():
        if str(name).lower() in _CREDENTIAL_OPTIONS or is_secret_key(str(name)):
            shown[name] = MASK
        elif isinstance(value, Mapping):
            shown[name] = redact_storage_options(value)
        elif isinstance(value, str):
            shown[name] = re.sub(r"//[^/@\s]+@", f"//{MASK}@", value)
        else:
            shown[name] = value
    return shown


def _secret_values(options: Mapping[str, Any]) -> dict[str, str]:
    """Every credential value of ``options`` (nested too), keyed so ``redact_text`` masks it."""
    found: dict[str, str] = {}
    for name, value in options.items():
        if isinstance(value, Mapping):
            for inner, secret in _secret_values(value).items():
                found[f"{name}.{inner}"] = secret
        elif isinstance(value, str) and (
            str(name).lower() in _CREDENTIAL_OPTIONS or is_secret_key(str(name))
        ):
            found[f"{name}.password"] = value
    return found


def storage_scheme(location: str | os.PathLike[str]) -> str | None:
    """The URL scheme of a storage location (``"s3"``), or None for a local directory
    (a plain path or a ``file://`` URI)."""
    m = _SCHEME.match(os.fspath(location))
    if m is None or m.group(1).lower() == "file":
        return None
    return m.group(1).lower()


def parse_storage_location(location: str | os.PathLike[str]) -> Path | str:
    """What ``set_checkpoint_storage_dir`` and the pipeline file accept: a local directory
    (returned as a ``Path``; ``file://`` and ``~`` resolved) or an object store URL of a
    supported scheme (returned as the URL, without a trailing slash). Raises ``ConfigError``
    for another scheme and ``ImportError`` with the install command when the scheme's
    extra is missing."""
    text = os.fspath(location)
    scheme = storage_scheme(text)
    if scheme is None:
        if _SCHEME.match(text):
            text = text[len("file://") :]
        return Path(text).expanduser()
    if scheme not in OBJECT_STORE_SCHEMES or "::" in text:
        supported = ", ".join(f"{s}://" for s in OBJECT_STORE_SCHEMES)
        raise ConfigError(
            f"checkpoint storage {text!r}: streamplug stores checkpoints in a directory or in an "
            f"object store whose single PUT is atomic ({supported}); use s3:// for any "
            "S3-compatible store (MinIO, Ceph, R2, ...) or a directory every node mounts",
            option="checkpoint storage dir",
        )
    _require_extra(scheme)
    if not text.split("://", 1)[1].strip("/"):
        raise ConfigError(
            f"checkpoint storage {text!r} names no bucket: write {scheme}://BUCKET/PREFIX",
            option="checkpoint storage dir",
        )
    return text.rstrip("/")


def _require_extra(scheme: str) -> None:
    module, install = OBJECT_STORE_SCHEMES[scheme]
    for needed in dict.fromkeys(("fsspec", module)):
        if importlib.util.find_spec(needed) is None:
            raise ImportError(
                f"checkpoint storage {scheme}:// needs the Python package {needed}, which is not "
                f"installed: {install}"
            )


def open_checkpoint_storage(
    location: str | os.PathLike[str],
    job_name: str,
    storage_options: Mapping[str, Any] | None = None,
) -> CheckpointStorage:
    """The storage of job ``job_name`` under ``location`` (a directory or an object store
    URL); ``storage_options`` go to the fsspec file system of an object store (for s3:
    ``endpoint_url``, ``key``, ``secret``, ``client_kwargs``, ...)."""
    parsed = parse_storage_location(location)
    if isinstance(parsed, Path):
        if storage_options:
            raise ConfigError(
                f"storage options ({', '.join(sorted(storage_options))}) were given for the local "
                f"directory {str(parsed)!r}; they apply to object stores (s3://...) only: drop them",
                option="checkpoint storage options",
            )
        return FileCheckpointStorage(parsed, job_name)
    return ObjectStoreCheckpointStorage(parsed, job_name, storage_options)


def read_checkpoint(
    location: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> CheckpointFile:
    """Read one checkpoint document from a file path or an object store URL."""
    parsed = parse_storage_location(location)
    if isinstance(parsed, Path):
        return FileCheckpointStorage.read(parsed)
    directory, _, name = parsed.rpartition("/")
    storage = ObjectStoreCheckpointStorage.at(directory, storage_options)
    try:
        data = storage.read_bytes(name)
    except FileNotFoundError as exc:
        raise CheckpointError(f"cannot read checkpoint {parsed}: no such object") from exc
    return _parse(data, parsed)


def job_storages(
    location: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> list[CheckpointStorage]:
    """The storage of every job with checkpoints under ``location``, by name; when
    ``location`` is one job's directory, just that one. What ``streamplug checkpoints
    list`` shows."""
    parsed = parse_storage_location(location)
    here: CheckpointStorage
    if isinstance(parsed, Path):
        if not parsed.is_dir():
            raise CheckpointError(f"{parsed} is not a directory")
        here = FileCheckpointStorage.at(parsed)
        below: list[CheckpointStorage] = [
            FileCheckpointStorage.at(entry) for entry in sorted(parsed.iterdir()) if entry.is_dir()
        ]
    else:
        remote = ObjectStoreCheckpointStorage.at(parsed, storage_options)
        here = remote
        below = [
            ObjectStoreCheckpointStorage.at(f"{parsed}/{sub}", storage_options)
            for sub in remote.subdirectories()
        ]
    if here.ids():
        return [here]
    return [s for s in below if s.ids()]


@attrs.frozen
class CheckpointFile:
    """A checkpoint as stored: its id, status, where it is (a ``Path`` in a directory, a URL
    in an object store), and the whole JSON document."""

    checkpoint_id: int
    status: str
    path: Path | str
    document: dict[str, Any]

    @property
    def is_final(self) -> bool:
        return bool(self.document.get("final"))

    @property
    def name(self) -> str:
        """The file or object name, ``chk-00000042.json``."""
        return str(self.path).rstrip("/").rsplit("/", 1)[-1]


def _parse(data: bytes, location: Path | str) -> CheckpointFile:
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise CheckpointError(f"cannot read checkpoint {location}: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT_VERSION:
        found = document.get("format") if isinstance(document, dict) else None
        raise CheckpointError(
            f"checkpoint {location} has format {found!r} "
            f"but this release reads format {FORMAT_VERSION}"
        )
    return CheckpointFile(
        int(document["checkpoint_id"]), str(document["status"]), location, document
    )


class CheckpointStorage(abc.ABC):
    """One job's checkpoints, and the small documents of the job kept beside them.

    Lifecycle: created by the coordinator for a job; every method may be called from the
    coordinator's threads, never from a worker. Writes are atomic per document: a reader
    (this process after a restart, another node, ``streamplug checkpoints``) sees a
    document whole or not at all. Nothing orders writes to different documents except the
    caller waiting for each to return.
    """

    job_name: str

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the job's documents live (a directory or a URL); never holds a secret."""

    # -- primitives: one document by name -------------------------------------------------

    @abc.abstractmethod
    def read_bytes(self, name: str) -> bytes:
        """The document's bytes; ``FileNotFoundError`` if there is none."""

    @abc.abstractmethod
    def write_bytes(self, name: str, data: bytes) -> Path | str:
        """Create or replace the document atomically; returns where it is."""

    @abc.abstractmethod
    def create_bytes(self, name: str, data: bytes) -> bool:
        """Create the document atomically unless it exists: True if this call created it,
        False if it was already there (its content untouched). For locks. On an object
        store this is a conditional PUT (``If-None-Match: *``); a store that ignores the
        condition overwrites instead."""

    @abc.abstractmethod
    def exists(self, name: str) -> bool:
        """Whether the document exists now."""

    @abc.abstractmethod
    def delete(self, name: str) -> bool:
        """Delete the document; False if there was none."""

    @abc.abstractmethod
    def names(self) -> list[str]:
        """Every document's name (checkpoints included, temporaries excluded), unsorted."""

    @abc.abstractmethod
    def location_of(self, name: str) -> Path | str:
        """Where the document ``name`` is or would be."""

    def remove_temporaries(self) -> None:
        """Delete the torn temporary files a crash left behind (a no-op where writes need
        none)."""

    # -- checkpoints -----------------------------------------------------------------------

    def path_for(self, checkpoint_id: int) -> Path | str:
        return self.location_of(_checkpoint_name(checkpoint_id))

    def write(self, checkpoint_id: int, status: str, document: dict[str, Any]) -> Path | str:
        """Atomically write the checkpoint with ``status``; returns where it is."""
        doc = dict(document, format=FORMAT_VERSION, checkpoint_id=checkpoint_id, status=status)
        data = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode("utf-8")
        fault_point("checkpoint.before_write")
        return self._write_checkpoint(_checkpoint_name(checkpoint_id), data)

    def _write_checkpoint(self, name: str, data: bytes) -> Path | str:
        # One request: there is no moment at which part of it is stored, so the torn-write
        # fault point of the directory back end has no counterpart here.
        return self.write_bytes(name, data)

    def mark(self, checkpoint: CheckpointFile, status: str) -> CheckpointFile:
        path = self.write(checkpoint.checkpoint_id, status, checkpoint.document)
        return attrs.evolve(checkpoint, status=status, path=path)

    def discard(self, checkpoint_id: int) -> None:
        self.delete(_checkpoint_name(checkpoint_id))

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

    def ids(self) -> list[int]:
        """Every checkpoint id present, newest first."""
        found = []
        for name in self.names():
            m = _NAME.match(name)
            if m:
                found.append(int(m.group(1)))
        return sorted(found, reverse=True)

    def read_checkpoint(self, checkpoint_id: int) -> CheckpointFile:
        name = _checkpoint_name(checkpoint_id)
        location = self.location_of(name)
        try:
            data = self.read_bytes(name)
        except FileNotFoundError as exc:
            raise CheckpointError(f"cannot read checkpoint {location}: it does not exist") from exc
        return _parse(data, location)

    def list(self) -> list[CheckpointFile]:
        """Every readable checkpoint, newest first. Unreadable ones are logged and skipped."""
        result = []
        for cid in self.ids():
            try:
                result.append(self.read_checkpoint(cid))
            except CheckpointError as exc:
                log.warning("skipping unreadable checkpoint: %s", exc)
        return result

    def __iter__(self) -> Iterator[CheckpointFile]:
        return iter(self.list())

    def latest_id(self) -> int:
        ids = self.ids()
        return ids[0] if ids else 0


def _directory_write_error(directory: Path, exc: OSError) -> CheckpointError:
    """A write into the storage directory failed: say where, why, and what to do. A full
    disk may be freed while the job waits to restart; a read-only or forbidden directory
    stays that way, so the job fails at once."""
    reason = exc.strerror or str(exc)
    where = f"cannot write checkpoint storage {directory}: {reason}"
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        return CheckpointError(
            f"{where}: the file system is full; free space there (old checkpoints beyond "
            "max_retained are pruned) or set another checkpoint storage directory"
        )
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return CheckpointStorageDeniedError(
            f"{where}: set a checkpoint storage directory this process may write to (a "
            "read-only mount or missing permission will not change on a restart)"
        )
    return CheckpointError(where)


def _checkpoint_name(checkpoint_id: int) -> str:
    return f"chk-{checkpoint_id:08d}.json"


def _check_name(name: str) -> None:
    if not _DOCUMENT_NAME.match(name):
        raise ValueError(
            f"document name {name!r} is not a plain file name: use letters, digits, '.', '_' "
            "and '-', not starting with '.'"
        )


class FileCheckpointStorage(CheckpointStorage):
    """A job's checkpoints in a directory: local, or on a file system every node mounts."""

    def __init__(self, base_dir: str | os.PathLike[str], job_name: str) -> None:
        self.job_name = job_name
        self.base_dir = Path(base_dir)
        self.directory = self.base_dir / job_directory_name(job_name)

    @classmethod
    def at(cls, directory: str | os.PathLike[str]) -> FileCheckpointStorage:
        """The storage whose job directory is exactly ``directory``."""
        directory = Path(directory)
        storage = cls(directory.parent, directory.name)
        storage.directory = directory
        return storage

    def __repr__(self) -> str:
        return f"FileCheckpointStorage({str(self.directory)!r})"

    @property
    def location(self) -> str:
        return str(self.directory)

    def location_of(self, name: str) -> Path:
        return self.directory / name

    def path_for(self, checkpoint_id: int) -> Path:
        return self.directory / _checkpoint_name(checkpoint_id)

    def write(self, checkpoint_id: int, status: str, document: dict[str, Any]) -> Path:
        path = super().write(checkpoint_id, status, document)
        assert isinstance(path, Path)
        return path

    def _write_checkpoint(self, name: str, data: bytes) -> Path:
        return self._replace(name, data, torn_point="checkpoint.during_write")

    def read_bytes(self, name: str) -> bytes:
        _check_name(name)
        return (self.directory / name).read_bytes()

    def write_bytes(self, name: str, data: bytes) -> Path:
        _check_name(name)
        return self._replace(name, data)

    def _replace(self, name: str, data: bytes, torn_point: str | None = None) -> Path:
        final = self.directory / name
        tmp = self._temporary(name, data, torn_point)
        try:
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_directory(self.directory)
        return final

    def _temporary(self, name: str, data: bytes, torn_point: str | None = None) -> str:
        """A fsynced temporary copy of ``data`` beside ``name``, which a crash may leave."""
        try:
            return self._write_temporary(name, data, torn_point)
        except OSError as exc:
            raise _directory_write_error(self.directory, exc) from exc

    def _write_temporary(self, name: str, data: bytes, torn_point: str | None) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as f:
                half = len(data) // 2
                f.write(data[:half])
                f.flush()
                if torn_point is not None:
                    # A crash here leaves a torn temporary file, which recovery must ignore.
                    fault_point(torn_point)
                f.write(data[half:])
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return tmp

    def create_bytes(self, name: str, data: bytes) -> bool:
        _check_name(name)
        final = self.directory / name
        tmp = self._temporary(name, data)
        try:
            # link() publishes the complete file under the final name, or fails if the name
            # is taken: create-if-absent and all-or-nothing in one step.
            os.link(tmp, final)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            # File systems without hard links: exclusive create, then fill it in place (a
            # reader may briefly see it short; the lock's owner is the one that created it).
            try:
                fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        _fsync_directory(self.directory)
        return True

    def exists(self, name: str) -> bool:
        _check_name(name)
        return (self.directory / name).is_file()

    def delete(self, name: str) -> bool:
        _check_name(name)
        try:
            (self.directory / name).unlink()
        except FileNotFoundError:
            return False
        _fsync_directory(self.directory)
        return True

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return [
            entry.name
            for entry in self.directory.iterdir()
            if not entry.name.startswith(".") and entry.is_file()
        ]

    def remove_temporaries(self) -> None:
        """Delete torn temporary files a crash left behind: every torn checkpoint (only the
        coordinator writes those, and it calls this before it writes), and other documents'
        temporaries once they are an hour old (their writer may be at work right now)."""
        if not self.directory.is_dir():
            return
        now = time.time()
        for entry in self.directory.iterdir():
            if not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
                continue
            if not entry.name.startswith(".chk-"):
                with contextlib.suppress(FileNotFoundError):
                    if now - entry.stat().st_mtime < _STALE_TEMPORARY_S:
                        continue
            entry.unlink(missing_ok=True)

    @staticmethod
    def read(path: str | os.PathLike[str]) -> CheckpointFile:
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
        return _parse(data, path)


class ObjectStoreCheckpointStorage(CheckpointStorage):
    """A job's checkpoints in an object store (``s3://bucket/prefix``) through fsspec.

    Every document is written with one PUT of its whole content (s3fs uses a single
    PutObject below 100 MiB and a multipart upload above, which S3 also publishes only
    when complete), so readers never see part of one and no temporary objects exist.
    Listings are re-read from the store on every call: a cached listing could hide a
    checkpoint another driver wrote.
    """

    def __init__(
        self,
        base_url: str,
        job_name: str,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        scheme = storage_scheme(base_url)
        if scheme is None:
            raise ValueError(f"{base_url!r} is not an object store URL")
        _require_extra(scheme)
        self.job_name = job_name
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/{job_directory_name(job_name)}"
        self._options = dict(storage_options or {})
        self._secrets = _secret_values(self._options)
        self._fs: Any = None
        self._root = ""

    @classmethod
    def at(
        cls, url: str, storage_options: Mapping[str, Any] | None = None
    ) -> ObjectStoreCheckpointStorage:
        """The storage whose job directory is exactly ``url``."""
        url = url.rstrip("/")
        parent, _, name = url.rpartition("/")
        storage = cls(parent if "://" in parent else url, name, storage_options)
        storage.url = url
        return storage

    def __repr__(self) -> str:
        options = redact_storage_options(self._options)
        return f"ObjectStoreCheckpointStorage({self.url!r}, storage_options={options!r})"

    def __getstate__(self) -> dict[str, Any]:
        # An fsspec file system holds sockets and an event loop; a copy connects anew.
        return dict(self.__dict__, _fs=None)

    @property
    def location(self) -> str:
        return self.url

    @property
    def storage_options(self) -> dict[str, Any]:
        """The options as given (credentials included): for code, never for printing."""
        return dict(self._options)

    def location_of(self, name: str) -> str:
        return f"{self.url}/{name}"

    def _filesystem(self) -> tuple[Any, str]:
        if self._fs is None:
            import fsspec

            try:
                fs, root = fsspec.core.url_to_fs(self.url, **self._options)
            except Exception as exc:
                raise self._error("cannot open", self.url, exc) from None
            self._fs, self._root = fs, root.rstrip("/")
            if storage_scheme(self.url) == "memory":
                log.warning(
                    "checkpoint storage %s lives in this process only: a crashed process "
                    "cannot resume from it; use a directory or s3:// for a job that must",
                    self.url,
                )
        return self._fs, self._root

    def _error(self, what: str, where: str, exc: BaseException) -> CheckpointError:
        # Client libraries may quote what they were given; no credential leaves this class.
        detail = redact_text(f"{type(exc).__name__}: {exc}", self._secrets)
        message = (
            f"{what} {where}: {detail} (storage options {redact_storage_options(self._options)})"
        )
        if _missing_bucket(exc):
            return CheckpointStorageMissingError(
                f"{message}; create the bucket, or correct the storage URL"
            )
        if isinstance(exc, PermissionError):
            return CheckpointStorageDeniedError(
                f"{message}; the store refused these credentials or this operation: check the "
                "key and secret (or the role) and that its policy allows reading, writing, "
                f"listing and deleting under {self.url}/"
            )
        return CheckpointError(message)

    def _path(self, name: str) -> str:
        _check_name(name)
        return f"{self._filesystem()[1]}/{name}"

    def read_bytes(self, name: str) -> bytes:
        fs, _ = self._filesystem()
        path = self._path(name)
        try:
            return bytes(fs.cat_file(path))
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise self._error("cannot read", self.location_of(name), exc) from None

    def write_bytes(self, name: str, data: bytes) -> str:
        fs, _ = self._filesystem()
        path = self._path(name)
        try:
            fs.pipe_file(path, data)
        except Exception as exc:
            raise self._error("cannot write", self.location_of(name), exc) from None
        return self.location_of(name)

    def create_bytes(self, name: str, data: bytes) -> bool:
        fs, _ = self._filesystem()
        path = self._path(name)
        try:
            # S3: PutObject with If-None-Match: *, refused (412) when the key exists.
            fs.pipe_file(path, data, mode="create")
        except FileExistsError:
            return False
        except Exception as exc:
            raise self._error("cannot create", self.location_of(name), exc) from None
        return True

    def exists(self, name: str) -> bool:
        fs, _ = self._filesystem()
        path = self._path(name)
        try:
            fs.invalidate_cache(path)
            return bool(fs.isfile(path))
        except Exception as exc:
            raise self._error("cannot look up", self.location_of(name), exc) from None

    def delete(self, name: str) -> bool:
        if not self.exists(name):
            return False
        fs, _ = self._filesystem()
        path = self._path(name)
        try:
            fs.rm_file(path)
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise self._error("cannot delete", self.location_of(name), exc) from None
        return True

    def _entries(self) -> list[dict[str, Any]]:
        fs, root = self._filesystem()
        try:
            fs.invalidate_cache(root)
            return list(fs.ls(root, detail=True))
        except FileNotFoundError as exc:
            if _missing_bucket(exc):
                raise self._error("cannot list", self.url, exc) from None
            return []
        except Exception as exc:
            raise self._error("cannot list", self.url, exc) from None

    def names(self) -> list[str]:
        return [
            posixpath.basename(e["name"].rstrip("/"))
            for e in self._entries()
            if e.get("type") == "file"
        ]

    def subdirectories(self) -> list[str]:
        """The names of the 'directories' (common prefixes) under this storage's URL,
        sorted."""
        return sorted(
            posixpath.basename(e["name"].rstrip("/"))
            for e in self._entries()
            if e.get("type") == "directory"
        )


def _missing_bucket(exc: BaseException) -> bool:
    """Whether an object store error says the bucket itself is missing (not just a key)."""
    if not isinstance(exc, FileNotFoundError):
        return False
    # s3fs keeps botocore's error as the cause; its message is the fallback.
    response = getattr(exc.__cause__, "response", None)
    if isinstance(response, dict) and response.get("Error", {}).get("Code") == "NoSuchBucket":
        return True
    return "bucket does not exist" in str(exc).lower()


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
