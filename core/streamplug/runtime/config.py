"""Checkpointing settings (Flink's ``CheckpointConfig`` names)."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from streamplug.errors import ConfigError
from streamplug.runtime.storage import parse_storage_location, redact_storage_options

DEFAULT_TIMEOUT_MS = 10 * 60 * 1000
CHECKPOINT_DIR_ENV = "STREAMPLUG_CHECKPOINT_DIR"


class CheckpointConfig:
    """How often and where the job checkpoints, and what a (re)start restores from."""

    def __init__(self) -> None:
        self.interval_ms: int | None = None
        self.timeout_ms = DEFAULT_TIMEOUT_MS
        self.min_pause_ms = 0
        self.max_retained = 3
        # A Path for a directory, the URL for an object store (s3://bucket/prefix).
        self.storage_dir: Path | str | None = (
            parse_storage_location(os.environ[CHECKPOINT_DIR_ENV])
            if os.environ.get(CHECKPOINT_DIR_ENV)
            else None
        )
        self._storage_options: dict[str, Any] = {}
        self.restore: str | None = "latest"
        self.tolerable_failures = 0

    def __repr__(self) -> str:
        return (
            f"CheckpointConfig(interval_ms={self.interval_ms}, timeout_ms={self.timeout_ms}, "
            f"min_pause_ms={self.min_pause_ms}, storage_dir={self.storage_dir}, "
            f"storage_options={redact_storage_options(self._storage_options)}, restore={self.restore!r})"
        )

    def __getstate__(self) -> dict[str, Any]:
        # A pickled config travels to worker processes and Ray actors, which never open the
        # storage (the driver alone writes it): its credentials stay behind in the driver.
        return dict(self.__dict__, _storage_options={})

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __copy__(self) -> CheckpointConfig:
        # A copy stays in this process: unlike a pickle, it keeps the options.
        clone = CheckpointConfig.__new__(CheckpointConfig)
        clone.__dict__.update(self.__dict__)
        return clone

    def __deepcopy__(self, memo: dict[int, Any]) -> CheckpointConfig:
        clone = CheckpointConfig.__new__(CheckpointConfig)
        memo[id(self)] = clone
        clone.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return clone

    @property
    def storage_options(self) -> dict[str, Any]:
        """The fsspec options of an object store (credentials included): for code that opens
        the storage, never for printing (``repr`` of this config masks them)."""
        return dict(self._storage_options)

    @property
    def enabled(self) -> bool:
        return self.interval_ms is not None

    def set_checkpoint_interval(self, interval_ms: int) -> CheckpointConfig:
        if interval_ms < 10:
            raise ConfigError(
                f"checkpoint interval must be at least 10 ms, got {interval_ms}",
                option="checkpoint interval",
            )
        self.interval_ms = int(interval_ms)
        return self

    def set_checkpoint_timeout(self, timeout_ms: int) -> CheckpointConfig:
        if timeout_ms <= 0:
            raise ConfigError(
                f"checkpoint timeout must be positive, got {timeout_ms}",
                option="checkpoint timeout",
            )
        self.timeout_ms = int(timeout_ms)
        return self

    def set_min_pause_between_checkpoints(self, min_pause_ms: int) -> CheckpointConfig:
        if min_pause_ms < 0:
            raise ConfigError(f"min pause must be >= 0, got {min_pause_ms}", option="min pause")
        self.min_pause_ms = int(min_pause_ms)
        return self

    def set_max_concurrent_checkpoints(self, n: int) -> CheckpointConfig:
        # Every subtask stops at the barrier until the checkpoint is committed, so two
        # checkpoints can never overlap; accepting more would promise what does not happen.
        if n != 1:
            raise ConfigError(
                f"max concurrent checkpoints must be 1 in the embedded runtime, got {n}",
                option="max concurrent checkpoints",
            )
        return self

    def set_max_retained_checkpoints(self, n: int) -> CheckpointConfig:
        if n < 1:
            raise ConfigError(
                f"retained checkpoints must be >= 1, got {n}", option="retained checkpoints"
            )
        self.max_retained = int(n)
        return self

    def set_tolerable_checkpoint_failure_number(self, n: int) -> CheckpointConfig:
        self.tolerable_failures = max(0, int(n))
        return self

    def set_checkpoint_storage_dir(
        self,
        path: str | os.PathLike[str],
        storage_options: Mapping[str, Any] | None = None,
    ) -> CheckpointConfig:
        """Where checkpoints go (Flink: ``set_checkpoint_storage_dir``): a directory (a
        ``file://`` URI is accepted; on a file system every node mounts when the job's
        driver may move), or an object store URL, ``s3://bucket/prefix`` (needs
        ``pip install "streamplug[s3]"``). ``storage_options`` go to the object store's
        fsspec file system, e.g. ``{"endpoint_url": "http://minio:9000", "key": ...,
        "secret": ...}``; without them s3fs finds credentials the way boto does
        (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ~/.aws, instance roles). Without a
        storage dir, checkpoints go to a temporary directory and a crashed process cannot
        resume."""
        location = parse_storage_location(path)
        if isinstance(location, Path) and storage_options:
            raise ConfigError(
                f"storage options ({', '.join(sorted(storage_options))}) were given for the "
                f"directory {str(location)!r}; they apply to object stores (s3://...) only: "
                "drop them or pass an s3:// URL",
                option="checkpoint storage options",
            )
        self.storage_dir = location
        self._storage_options = dict(storage_options or {})
        return self

    def set_restore(self, restore: str | os.PathLike[str] | None) -> CheckpointConfig:
        """What ``execute`` resumes from: ``"latest"`` (the default: the newest usable
        checkpoint of this job in the storage dir, if any), a checkpoint file path, or None
        to always start fresh."""
        self.restore = None if restore is None else os.fspath(restore)
        return self
