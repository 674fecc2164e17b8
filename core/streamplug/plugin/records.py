"""The records plugins hand to the registration hooks, and what lifecycle hooks receive.

A leaf module: it imports nothing from streamplug, so the hookspecs, the plugin manager,
the runtime and every plugin can depend on it without depending on one another.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import attrs

__all__ = [
    "CommandSpec",
    "ConnectorSpec",
    "JobInfo",
    "OffsetsInitializerSpec",
    "PartitionerSpec",
    "RuntimeSpec",
]


@attrs.frozen
class ConnectorSpec:
    """A named source or sink. ``factory(**options)`` builds it from pipeline options."""

    name: str
    kind: Literal["source", "sink"]
    factory: Callable[..., Any]
    description: str = ""


@attrs.frozen
class PartitionerSpec:
    """A named sink partitioner. ``factory(**options)`` builds it."""

    name: str
    factory: Callable[..., Any]
    description: str = ""


@attrs.frozen
class OffsetsInitializerSpec:
    """A named offsets initializer. ``factory(**options)`` builds it."""

    name: str
    factory: Callable[..., Any]
    description: str = ""


@attrs.frozen
class CommandSpec:
    """A ``streamplug`` subcommand."""

    name: str
    help: str
    configure: Callable[[Any], None]
    run: Callable[[Any], int]


@attrs.frozen
class RuntimeSpec:
    """A named runtime (where a job's worker slots run): ``factory(**options)`` builds one
    ``streamplug.runtime.runtimes.Runtime`` per job run."""

    name: str
    factory: Callable[..., Any]
    description: str = ""


@attrs.frozen
class JobInfo:
    """What lifecycle hooks learn about a job attempt."""

    name: str
    job_id: str
    parallelism: int
    attempt: int
