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
    """A named source or sink.

    ``options`` is the frozen attrs class of its options (see ``streamplug.plugin.options``):
    the core converts the pipeline table into it, reporting a wrong key on its line, and
    calls ``factory(options, host)`` with the instance and the run's ``PluginHost`` (to
    build the formats, partitioners and offsets initializers the options name). A spec
    without ``options`` gets ``factory(**table)``, unchecked.
    """

    name: str
    kind: Literal["source", "sink"]
    factory: Callable[..., Any]
    description: str = ""
    options: type | None = None


@attrs.frozen
class PartitionerSpec:
    """A named sink partitioner. ``factory(**options)`` builds it; ``options`` declares the
    keyword arguments it takes (a frozen attrs class), checked before it is called."""

    name: str
    factory: Callable[..., Any]
    description: str = ""
    options: type | None = None


@attrs.frozen
class OffsetsInitializerSpec:
    """A named offsets initializer. ``factory(**options)`` builds it; ``options`` declares
    the keyword arguments it takes (a frozen attrs class), checked before it is called."""

    name: str
    factory: Callable[..., Any]
    description: str = ""
    options: type | None = None


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
