"""The Ray actor that hosts one worker slot.

A threaded actor (several calls run at once on a thread pool): ``deliver`` hands a control
message to the slot's own dispatcher thread and returns, ``poll_events`` long-polls the
slot's reports, and neither waits for the other. The driver sends control messages one
at a time, in order, so the dispatcher sees them in the coordinator's order; Ray does not
promise call order on a threaded actor by itself.

When Ray restarts the actor (its process or its node died), ``__init__`` runs again with
the same arguments: the new incarnation is a fresh slot with no attempt, which the
coordinator's next ``StartAttempt`` builds up again.
"""

from __future__ import annotations

import importlib
import logging
import os
import queue
import socket
import threading
import warnings
from typing import TYPE_CHECKING

import attrs

from streamplug.errors import ConfigError
from streamplug.runtime.faults import fault_point
from streamplug.runtime.messages import (
    ControlMessage,
    EndAttempt,
    Progress,
    WorkerEvent,
    WorkerFailed,
)
from streamplug.runtime.worker import WorkerSlot, portable_error

if TYPE_CHECKING:
    from streamplug.plugins import PluginHost

log = logging.getLogger(__name__)

_PROGRESS_INTERVAL_S = 0.1


@attrs.frozen
class PluginNeed:
    """A streamplug plugin the driver's plugin host loaded and a slot uses too: it may
    hook into the job's clients or formats even where the job graph never names it."""

    entry_point: str
    module: str
    distribution: str
    version: str


@attrs.frozen
class Requirements:
    """What a slot checks on its node before it unpickles the job graph."""

    plugins: list[PluginNeed]
    distributions: dict[str, tuple[str, str]]
    """Top-level module -> (distribution, version) on the driver: names the distribution
    to install when the job graph refers to a module the node lacks."""


@attrs.frozen
class SlotFacts:
    """Where a slot runs, and whether it could start there (``error``)."""

    node_id: str
    node_ip: str
    hostname: str
    pid: int
    error: BaseException | None


def _node() -> tuple[str, str]:
    import ray

    try:
        node_id = ray.get_runtime_context().get_node_id()
    except Exception:
        node_id = "?"
    try:
        node_ip = ray.util.get_node_ip_address()
    except Exception:
        node_ip = "?"
    return node_id, node_ip


def _missing(
    error: ImportError,
    requirements: Requirements,
    where: str,
    what: str,
    need: PluginNeed | None = None,
) -> ConfigError:
    module = (getattr(error, "name", None) or "").split(".")[0]
    if need is not None:
        dist, version = need.distribution, need.version
    else:
        dist, version = requirements.distributions.get(module, ("", ""))
    if dist:
        pin = f"{dist}=={version}" if version else dist
        fix = (
            f"install {pin} on that node, or let Ray install it for the job: "
            f"env.set_runtime('ray', runtime_env={{'pip': ['{pin}']}})"
        )
        piece = f"module {module!r} (distribution {dist} {version})".replace(" )", ")")
    else:
        fix = (
            "install it on that node, or ship it with the job: "
            "env.set_runtime('ray', runtime_env={'py_modules': [...]} or {'working_dir': ...})"
        )
        piece = f"module {module or error.name!r}"
    return ConfigError(
        f"{where} cannot import {piece}, which {what}: {type(error).__name__}: {error}. Fix: {fix}",
        option="runtime",
    )


def check_requirements(requirements: Requirements, where: str) -> PluginHost:
    """This node's plugin host, once every plugin the driver loaded loads here too; else
    a ``ConfigError`` naming the missing plugin and ``where`` (slot and node)."""
    from streamplug.plugins import build_plugin_host

    for need in requirements.plugins:
        try:
            importlib.import_module(need.module)
        except ImportError as exc:
            raise _missing(
                exc, requirements, where, f"the streamplug plugin {need.entry_point!r} needs", need
            ) from None
    host = build_plugin_host()
    registered = {name for name, _ in host.pm.list_name_plugin()}
    for need in requirements.plugins:
        if need.entry_point in registered:
            continue
        failure = next(
            (f for f in host.failures if f.entry_point.startswith(need.entry_point)), None
        )
        reason = f": {failure}" if failure else " (not installed, or disabled there)"
        raise ConfigError(
            f"{where} does not load the streamplug plugin {need.entry_point!r} of "
            f"{need.distribution} {need.version}, which the driver loaded{reason}. Fix: install "
            f"{need.distribution}=={need.version} on that node (or add it to the runtime_env's "
            "'pip' list), and check STREAMPLUG_DISABLED_PLUGINS there",
            option="runtime",
        )
    return host


def _configure_logging(worker: int, levels: dict[str, int]) -> None:
    root = logging.getLogger()
    root.setLevel(levels.get("", logging.WARNING))
    if not any(getattr(h, "_streamplug", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s worker-{worker} %(name)s %(levelname)s %(message)s")
        )
        handler._streamplug = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    for name, level in levels.items():
        if name:
            logging.getLogger(name).setLevel(level)


def _arm_fault_points(worker: int) -> None:
    """Fault points (crash tests) as in a ``processes`` slot: ``name@W`` matches slot
    ``W``, and only in the slot's first incarnation, or a restarted actor would die at the
    same point forever."""
    import ray

    from streamplug.runtime import faults

    os.environ[faults.SLOT_ENV] = str(worker)
    try:
        with warnings.catch_warnings():
            # Ray's property reads a deprecated attribute of its own.
            warnings.simplefilter("ignore")
            restarted = ray.get_runtime_context().was_current_actor_reconstructed
    except Exception:
        restarted = False
    if restarted:
        os.environ.pop(faults.ENV, None)
    faults.reset()


class SlotActor:
    """One worker slot as a Ray actor (wrapped with ``ray.remote`` by the runtime)."""

    def __init__(
        self,
        payload: bytes,
        worker: int,
        indices: list[int],
        levels: dict[str, int],
        requirements: Requirements,
    ) -> None:
        _configure_logging(worker, levels)
        _arm_fault_points(worker)
        self.worker = worker
        self._events: list[WorkerEvent] = []
        self._cond = threading.Condition()
        self._control: queue.Queue[ControlMessage | None] = queue.Queue()
        self._done = threading.Event()
        node_id, node_ip = _node()
        self._facts = (node_id, node_ip, socket.gethostname(), os.getpid())
        where = (
            f"worker slot {worker} on Ray node {node_ip} (node id {node_id}, host {self._facts[2]})"
        )
        self._error: BaseException | None = None
        self._slot: WorkerSlot | None = None
        try:
            host = check_requirements(requirements, where)
            import cloudpickle

            try:
                graph = cloudpickle.loads(payload)
            except ImportError as exc:
                raise _missing(exc, requirements, where, "the job graph refers to") from None
            self._slot = WorkerSlot(graph, worker, indices, host, self._post)
        except BaseException as exc:
            # Reported through ``ready``: the driver fails the job with it, naming the node.
            self._error = portable_error(exc)
            return
        threading.Thread(target=self._dispatch, name="control", daemon=True).start()
        threading.Thread(target=self._report_progress, name="progress", daemon=True).start()

    # -- driver calls ------------------------------------------------------------------------

    def ready(self) -> SlotFacts:
        node_id, node_ip, hostname, pid = self._facts
        return SlotFacts(node_id, node_ip, hostname, pid, self._error)

    def deliver(self, message: ControlMessage) -> None:
        # Tests make a call hang here (``ray.deliver@W:N:hang``): the driver must give up
        # on the slot within its bound.
        fault_point("ray.deliver")
        self._control.put(message)

    def poll_events(self, timeout: float) -> list[WorkerEvent]:
        """The events since the last poll, waiting up to ``timeout`` s for one; of the
        progress reports only the newest, which is all the driver keeps."""
        with self._cond:
            if not self._events:
                self._cond.wait(timeout)
            events, self._events = self._events, []
        last = max((i for i, e in enumerate(events) if isinstance(e, Progress)), default=-1)
        return [e for i, e in enumerate(events) if i == last or not isinstance(e, Progress)]

    def memory(self) -> dict[str, int]:
        """This process's peak and current resident memory (kB), from /proc."""
        figures = {}
        with open("/proc/self/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    figures[key] = int(value.split()[0])
        return figures

    def stop(self) -> None:
        """End whatever still runs; the driver kills the actor right after."""
        self._control.put(None)
        self._done.wait(35.0)
        with self._cond:
            self._cond.notify_all()

    # -- inside the actor --------------------------------------------------------------------

    def _post(self, event: WorkerEvent) -> None:
        if isinstance(event, WorkerFailed):
            # Ray pickles the poll's result: an error that does not pickle would lose
            # every event of that poll.
            event = WorkerFailed(
                event.attempt, event.worker, portable_error(event.error), event.subtask
            )
        with self._cond:
            self._events.append(event)
            if not isinstance(event, Progress):
                self._cond.notify_all()

    def _dispatch(self) -> None:
        slot = self._slot
        assert slot is not None
        while True:
            message = self._control.get()
            if message is None:
                break
            try:
                slot.handle(message)
            except BaseException as exc:
                self._post(WorkerFailed(slot.attempt, self.worker, portable_error(exc)))
        if slot.subtasks:
            try:
                slot.handle(EndAttempt(slot.attempt, graceful=False))
            except Exception:
                log.exception("ending worker slot %d failed", self.worker)
        self._done.set()

    def _report_progress(self) -> None:
        slot = self._slot
        assert slot is not None
        while not self._done.wait(_PROGRESS_INTERVAL_S):
            try:
                if slot.subtasks:
                    self._post(slot.progress())
            except Exception:
                log.debug("progress report failed", exc_info=True)
