"""Where a job's worker slots run: the ``Runtime`` interface, and the ``threads`` runtime.

The coordinator (enumerators, checkpoints, recovery, restarts) always runs in the driver,
the process that called ``execute``. A runtime only decides where worker slots live and
carries the worker protocol (``runtime.messages``) to them:

* ``threads`` (default): one slot in the driver's process hosting every subtask, called
  directly. Python work shares one core; start-up is instant.
* ``processes`` (``runtime.processes``): one spawned process per slot on this machine.
* ``ray`` (the ``streamplug-ray`` distribution): one Ray actor per slot, anywhere in a
  Ray cluster.

A third party adds a runtime through the ``streamplug_register_runtimes`` hook.
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from streamplug.errors import ConfigError
from streamplug.plugin.records import RuntimeSpec
from streamplug.runtime.messages import ControlMessage, Progress, WorkerEvent
from streamplug.runtime.worker import JobGraph, WorkerSlot

if TYPE_CHECKING:
    from streamplug.plugins import PluginHost

Post = Callable[[WorkerEvent], None]


class WorkerHandle(ABC):
    """The coordinator's end of one worker slot.

    ``send`` may be called from the coordinator thread only, and returns without waiting
    for the slot to act; what the slot has to say comes back as events through the
    ``post`` function the runtime was given.
    """

    worker: int
    subtask_indices: list[int]

    @abstractmethod
    def send(self, message: ControlMessage) -> None: ...

    @abstractmethod
    def progress(self) -> Progress | None:
        """The slot's newest live counters, or None before it reported any."""

    def describe(self) -> str:
        """Where the slot runs, for logs and errors (process id, node)."""
        return f"worker {self.worker}"

    @property
    def alive(self) -> bool:
        """False once the slot's process (or actor) is gone for good."""
        return True

    @property
    def pid(self) -> int | None:
        """The operating-system process hosting the slot, where there is one of its own."""
        return None


class Runtime(ABC):
    """Hosts a job run's worker slots, from the first attempt to the end of the run.

    Lifecycle: ``start_workers`` once per attempt (a runtime may keep the slots of an
    earlier attempt alive and reuse them: a ``StartAttempt`` message resets a slot);
    ``close`` once when the run ends. Never called concurrently.
    """

    name: str = "runtime"
    in_process: bool = False
    """True when the slots run in the driver's process, so their subtasks' metrics are
    registered where the driver's exporter sees them; otherwise the driver serves them
    from the slots' progress reports."""

    def worker_count(self, parallelism: int) -> int:
        """How many slots a job of ``parallelism`` gets; slot ``w`` hosts subtask ``i``
        of every pipeline for each ``i`` in ``subtask_indices(w)``."""
        return parallelism

    def subtask_indices(self, worker: int, parallelism: int) -> list[int]:
        count = self.worker_count(parallelism)
        return [i for i in range(parallelism) if i % count == worker]

    @abstractmethod
    def start_workers(self, graph: JobGraph, host: PluginHost, post: Post) -> list[WorkerHandle]:
        """The attempt's worker slots, ready for ``StartAttempt``."""

    @abstractmethod
    def close(self) -> None:
        """End every slot; called once, after the last attempt ended."""

    def worker_pids(self) -> list[int]:
        """Process ids of the slots that run in processes of their own (none here)."""
        return []


class _LocalWorker(WorkerHandle):
    def __init__(self, slot: WorkerSlot) -> None:
        self.slot = slot
        self.worker = slot.worker
        self.subtask_indices = slot.indices

    def send(self, message: ControlMessage) -> None:
        self.slot.handle(message)

    def progress(self) -> Progress | None:
        return self.slot.progress() if self.slot.subtasks else None

    def describe(self) -> str:
        return "worker 0 (threads, in the driver)"


class ThreadsRuntime(Runtime):
    """Every subtask a thread of the driver's process, in one worker slot."""

    name = "threads"
    in_process = True

    def __init__(self) -> None:
        self._slot: WorkerSlot | None = None

    def worker_count(self, parallelism: int) -> int:
        return 1

    def start_workers(self, graph: JobGraph, host: PluginHost, post: Post) -> list[WorkerHandle]:
        if self._slot is None:
            self._slot = WorkerSlot(graph, 0, range(graph.parallelism), host, post)
        else:
            self._slot._post = post
        return [_LocalWorker(self._slot)]

    def close(self) -> None:
        self._slot = None


def _processes(**options: Any) -> Runtime:
    from streamplug.runtime.processes import ProcessesRuntime

    return ProcessesRuntime(**options)


BUILTIN_RUNTIMES: Sequence[RuntimeSpec] = (
    RuntimeSpec(
        "threads",
        lambda **options: ThreadsRuntime(**options),
        "every subtask a thread of this process (default)",
    ),
    RuntimeSpec("processes", _processes, "one spawned process per worker slot on this machine"),
)


def runtime_names(host: PluginHost | None) -> list[str]:
    """Every runtime a job can name: the built-in ones and those plugins register."""
    names = {spec.name for spec in BUILTIN_RUNTIMES}
    if host is not None:
        names.update(host.names("runtime"))
    return sorted(names)


def create_runtime(
    name: str, host: PluginHost | None, options: dict[str, Any] | None = None
) -> Runtime:
    """A new runtime named ``name``, built with ``options``."""
    builtin = {spec.name: spec for spec in BUILTIN_RUNTIMES}
    if name in builtin:
        return builtin[name].factory(**(options or {}))
    known = runtime_names(host)
    if host is None or name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        install = " Install streamplug-ray for 'ray'." if name == "ray" else ""
        raise ConfigError(
            f"unknown runtime {name!r}{hint} Known runtimes: {', '.join(known)}.{install}",
            option="runtime",
        )
    spec: RuntimeSpec = host.lookup("runtime", name)
    return spec.factory(**(options or {}))
