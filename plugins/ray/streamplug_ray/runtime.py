"""The ``ray`` runtime: each worker slot a Ray actor, all of them in one placement group.

Ray is the distributed engine here: it finds the nodes, places the actors (spread over
the nodes by default), restarts an actor whose process or node died, and ends every actor
when the driver that owns them goes away. This module only carries the worker protocol:

* control messages go to an actor one at a time, in order, from a sender thread per
  slot (``send`` never waits for the slot);
* a poller thread per slot long-polls the actor's events and posts them to the
  coordinator; progress reports are kept as the slot's latest instead;
* a failed call means the actor is gone: the coordinator hears ``WorkerFailed`` with a
  ``WorkerLost`` error naming the slot's node, fails the attempt, and the restart
  strategy starts the next one. By then Ray has restarted the actor (elsewhere, if its
  node died) as a fresh slot, which the next ``StartAttempt`` sets up again;
* a call that does not complete within ``call_timeout_s`` counts as a failed one: the
  slot is reported lost the same way, and the actor is ended through Ray
  (``ray.kill`` without ``no_restart``), so that Ray starts it afresh.

The job graph reaches the actors only as one pickled object in Ray's object store, so
secrets in the job (SASL passwords, keys) are never part of an actor's name, options or
any log line.
"""

from __future__ import annotations

import difflib
import functools
import importlib.metadata
import logging
import math
import os
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from streamplug.errors import ConfigError
from streamplug.plugin import spec
from streamplug.plugin.manager import CORE_DISTRIBUTION
from streamplug.runtime.messages import ControlMessage, Progress, WorkerError, WorkerFailed
from streamplug.runtime.processes import _configured_log_levels
from streamplug.runtime.runtimes import Post, Runtime, WorkerHandle
from streamplug.runtime.worker import JobGraph
from streamplug_ray.actor import PluginNeed, Requirements, SlotActor, SlotFacts

if TYPE_CHECKING:
    from streamplug.plugins import PluginHost

log = logging.getLogger(__name__)

PLACEMENTS = ("SPREAD", "PACK", "STRICT_SPREAD", "STRICT_PACK")
_OPTIONS = (
    "address",
    "workers",
    "placement",
    "cpus_per_worker",
    "max_restarts",
    "start_timeout_s",
    "call_timeout_s",
    "namespace",
    "runtime_env",
    "init_options",
)
_POLL_S = 1.0
# How long a control call (delivering a message, beyond the poll's own wait) may take
# before the slot counts as lost. A call only queues a message in the actor, so anything
# near this means the actor or its node is not there to answer.
_CALL_TIMEOUT_S = 30.0
_STOP_WAIT_S = 35.0
# Several calls at once on one actor: a control call, the event long-poll, a readiness or
# memory query.
_MAX_CONCURRENCY = 4

_RemoteSlot = ray.remote(SlotActor)


def _short(error: BaseException) -> str:
    """Ray's error text (which names the actor's node and process) on one line."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 500 else text[:497] + "..."


class _ActorWorker(WorkerHandle):
    """The driver's end of one slot actor."""

    def __init__(
        self,
        actor: Any,
        worker: int,
        indices: list[int],
        post: Post,
        call_timeout_s: float = _CALL_TIMEOUT_S,
    ) -> None:
        self.actor = actor
        self.call_timeout_s = call_timeout_s
        self.worker = worker
        self.subtask_indices = indices
        self.post = post
        self.facts: SlotFacts | None = None
        self._latest: Progress | None = None
        self._attempt = -1
        self._lock = threading.Lock()
        self._incarnation = 0
        self._lost = threading.Event()
        self._lost.set()  # until ``attach`` saw the actor ready
        # Why this incarnation is lost (None: not lost since ``attach``) and the newest
        # attempt the coordinator was told so for.
        self._lost_text: str | None = None
        self._lost_reported = -1
        self._closing = threading.Event()
        self._outbox: queue.Queue[ControlMessage | None] = queue.Queue()
        self._sender = threading.Thread(
            target=self._send_loop, name=f"ray-worker-{worker}-control", daemon=True
        )
        self._sender.start()
        self._poller: threading.Thread | None = None

    # -- WorkerHandle ------------------------------------------------------------------------

    def describe(self) -> str:
        facts = self.facts
        if facts is None:
            return f"worker slot {self.worker} (Ray actor, not started)"
        return (
            f"worker slot {self.worker} (Ray actor pid {facts.pid} on node {facts.node_ip}, "
            f"node id {facts.node_id[:12]})"
        )

    @property
    def pid(self) -> int | None:
        return self.facts.pid if self.facts is not None else None

    @property
    def alive(self) -> bool:
        return not self._lost.is_set() and not self._closing.is_set()

    def send(self, message: ControlMessage) -> None:
        self._attempt = message.attempt
        self._outbox.put(message)

    def progress(self) -> Progress | None:
        return self._latest

    # -- threads -----------------------------------------------------------------------------

    def attach(self, facts: SlotFacts, post: Post) -> None:
        """The actor (new, or restarted by Ray) is ready: start polling it."""
        if self.facts is not None and facts.node_id != self.facts.node_id:
            log.info(
                "worker slot %d restarted on node %s (was on %s)",
                self.worker,
                facts.node_ip,
                self.facts.node_ip,
            )
        with self._lock:
            self.facts = facts
            self.post = post
            self._latest = None
            self._incarnation += 1
            incarnation = self._incarnation
            self._lost_text = None
            self._lost_reported = -1
            self._lost.clear()
        self._poller = threading.Thread(
            target=self._poll_loop,
            args=(incarnation,),
            name=f"ray-worker-{self.worker}-events",
            daemon=True,
        )
        self._poller.start()

    def _send_loop(self) -> None:
        while True:
            message = self._outbox.get()
            if message is None:
                return
            incarnation = self._incarnation
            if self._lost.is_set():
                # Not sent: the next attempt starts the slot anew. A message of a later
                # attempt than the one told of the loss (the actor died between two
                # attempts) must fail that attempt too, or it would wait for the slot
                # until a checkpoint timed out.
                self._report_lost(message.attempt)
                continue
            try:
                ray.get(self.actor.deliver.remote(message), timeout=self.call_timeout_s)
            except GetTimeoutError:
                self._unresponsive(f"delivering {type(message).__name__}", incarnation)
            except RayActorError as exc:
                self._mark_lost(exc, incarnation)
            except Exception as exc:
                # Not the actor's fault (the message did not serialize, say): the attempt
                # cannot go on without it.
                self.post(
                    WorkerFailed(
                        message.attempt,
                        self.worker,
                        WorkerError(type(exc).__name__, f"sending {type(message).__name__}: {exc}"),
                    )
                )

    def _poll_loop(self, incarnation: int) -> None:
        while not self._closing.is_set() and incarnation == self._incarnation:
            try:
                events = ray.get(
                    self.actor.poll_events.remote(_POLL_S), timeout=_POLL_S + self.call_timeout_s
                )
            except GetTimeoutError:
                self._unresponsive("polling its events", incarnation)
                return
            except RayActorError as exc:
                self._mark_lost(exc, incarnation)
                return
            except Exception as exc:
                if self._closing.is_set():
                    return
                self._mark_lost(exc, incarnation)
                return
            for event in events:
                if isinstance(event, Progress):
                    self._latest = event
                else:
                    self.post(event)

    def _unresponsive(self, call: str, incarnation: int) -> None:
        """A call that Ray neither completed nor failed within the bound: the actor may be
        stuck, or Ray may not have noticed that its process or node is gone. Either way
        the slot cannot be counted on; it is lost, and Ray is asked to start it afresh."""
        text = (
            f"no answer {call} within {self.call_timeout_s:g} s; the actor is ended so "
            "that Ray restarts it"
        )
        if self._mark_lost(None, incarnation, text) and not self._closing.is_set():
            try:
                ray.kill(self.actor, no_restart=False)
            except Exception:
                log.warning("ending %s failed", self.describe(), exc_info=True)

    def _mark_lost(
        self, error: BaseException | None, incarnation: int, text: str | None = None
    ) -> bool:
        """Record this incarnation as lost and tell the coordinator; True the first time."""
        with self._lock:
            if incarnation != self._incarnation:
                return False
            first = not self._lost.is_set()
            if first:
                why = text if text is not None else _short(error or RuntimeError())
                self._lost_text = f"{self.describe()} is lost: {why}"
                self._lost.set()
        if self._closing.is_set():
            return first
        if first:
            log.warning("%s", self._lost_text)
        # The poller and the sender may both see the loss: the second one counts only
        # when the coordinator has moved on to another attempt meanwhile.
        self._report_lost(self._attempt)
        return first

    def _report_lost(self, attempt: int) -> None:
        """Tell the coordinator, once per attempt, that this slot is lost."""
        with self._lock:
            text = self._lost_text
            if text is None or attempt <= self._lost_reported or self._closing.is_set():
                return
            self._lost_reported = attempt
        self.post(WorkerFailed(attempt, self.worker, WorkerError("WorkerLost", text)))

    def begin_close(self) -> None:
        self._closing.set()
        self._outbox.put(None)

    def join_threads(self) -> None:
        self._sender.join(5.0)
        if self._poller is not None:
            self._poller.join(_POLL_S + 5.0)


class RayRuntime(Runtime):
    """Worker slots as Ray actors.

    ``address``: the Ray cluster to join (else ``RAY_ADDRESS``, else a local Ray is
    started); ``workers``: cap on the slot count (default: the job's parallelism);
    ``placement``: the placement group strategy, ``SPREAD`` (default: over as many nodes
    as possible), ``PACK``, ``STRICT_SPREAD`` or ``STRICT_PACK``; ``cpus_per_worker``:
    CPUs each slot reserves (default 1); ``max_restarts``: how often Ray restarts a dead
    slot actor (default -1, without limit: the job's restart strategy decides when to
    give up); ``start_timeout_s``: how long the slots may take to be placed and started
    (default 120); ``call_timeout_s``: how long a control call to a slot may take before
    the slot counts as lost (default 30); ``runtime_env``: Ray's runtime environment for the slot actors
    (``pip``, ``py_modules``, ``env_vars``...; not for secrets, which Ray shows with the
    actor's options); ``namespace`` and ``init_options`` (any other ``ray.init``
    argument) go to ``ray.init`` when this runtime connects.
    """

    name = "ray"

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            close = difflib.get_close_matches(unknown[0], _OPTIONS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise ConfigError(
                f"unknown option {unknown[0]!r} of the ray runtime{hint} Its options: "
                f"{', '.join(_OPTIONS)}",
                option=f"runtime.{unknown[0]}",
            )
        self.address: str | None = options.get("address")
        workers = options.get("workers")
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise ConfigError(
                f"workers must be a positive integer, got {workers!r}", option="runtime.workers"
            )
        self._max_workers: int | None = workers
        placement = str(options.get("placement", "SPREAD")).upper()
        if placement not in PLACEMENTS:
            raise ConfigError(
                f"placement must be one of {', '.join(PLACEMENTS)}, got "
                f"{options.get('placement')!r}",
                option="runtime.placement",
            )
        self.placement = placement
        cpus = options.get("cpus_per_worker", 1.0)
        if not isinstance(cpus, int | float) or cpus <= 0:
            raise ConfigError(
                f"cpus_per_worker must be a positive number, got {cpus!r}",
                option="runtime.cpus_per_worker",
            )
        self.cpus_per_worker = float(cpus)
        self.max_restarts = int(options.get("max_restarts", -1))
        self.start_timeout_s = float(options.get("start_timeout_s", 120.0))
        call_timeout = options.get("call_timeout_s", _CALL_TIMEOUT_S)
        if not isinstance(call_timeout, int | float) or call_timeout <= 0:
            raise ConfigError(
                f"call_timeout_s must be a positive number of seconds, got {call_timeout!r}",
                option="runtime.call_timeout_s",
            )
        self.call_timeout_s = float(call_timeout)
        init_options = dict(options.get("init_options") or {})
        if options.get("namespace") is not None:
            init_options["namespace"] = options["namespace"]
        self._init_options = init_options
        # Given to the actors themselves, so it applies on a Ray the caller connected to
        # as well: pip packages, py_modules, env_vars for the slots.
        self._runtime_env: dict[str, Any] | None = options.get("runtime_env")
        self.handles: list[_ActorWorker] = []
        self._pg: PlacementGroup | None = None
        self._payload_ref: Any = None
        self._owns_ray = False
        self.timings: dict[str, float] = {}
        """Seconds spent connecting to Ray, placing the slots and starting the actors
        (the last start of each), for measurements."""

    def __repr__(self) -> str:
        # Options may carry a runtime_env with credentials: never shown.
        return f"RayRuntime(address={self.address!r}, placement={self.placement!r})"

    def worker_count(self, parallelism: int) -> int:
        return min(parallelism, self._max_workers or parallelism)

    # -- starting ----------------------------------------------------------------------------

    def _connect(self, slots: int) -> None:
        if ray.is_initialized():
            return
        options = dict(self._init_options)
        address = self.address or os.environ.get("RAY_ADDRESS")
        if address:
            options["address"] = address
        else:
            # A local Ray for this run only: the dashboard costs memory and seconds, and
            # the slots must fit even when they outnumber the cores (as processes may).
            options.setdefault("include_dashboard", False)
            options.setdefault(
                "num_cpus", max(os.cpu_count() or 1, math.ceil(slots * self.cpus_per_worker))
            )
        started = time.monotonic()
        try:
            ray.init(**options)
        except ConnectionError as exc:
            raise ConfigError(
                f"cannot connect to the Ray cluster at {address!r}: {exc}. Check the address "
                "(ray status on the head node prints it) or unset RAY_ADDRESS to start a local Ray",
                option="runtime.address",
            ) from exc
        self._owns_ray = True
        self.timings["ray_init_s"] = time.monotonic() - started
        log.info(
            "ray runtime: %s Ray in %.1f s",
            f"connected to {address}" if address else "started a local",
            self.timings["ray_init_s"],
        )

    def _payload(self, graph: JobGraph) -> Any:
        if self._payload_ref is None:
            import cloudpickle

            try:
                payload = cloudpickle.dumps(graph)
            except Exception as exc:
                raise ConfigError(
                    f"the job cannot be shipped to Ray actors: {type(exc).__name__}: {exc}. "
                    "Every source, sink and function of the job must pickle (cloudpickle); "
                    "or use env.set_runtime('threads')",
                    option="runtime",
                ) from exc
            # Passed inline to each actor's constructor: Ray keeps it with the actor's
            # creation task for restarts, where an object-store copy could be lost.
            self._payload_ref = payload
        return self._payload_ref

    def _placement_group(self, count: int) -> PlacementGroup:
        if self._pg is not None:
            return self._pg
        started = time.monotonic()
        bundles = [{"CPU": self.cpus_per_worker} for _ in range(count)]
        pg = placement_group(bundles, strategy=self.placement)
        try:
            ray.get(pg.ready(), timeout=self.start_timeout_s)
        except GetTimeoutError:
            remove_placement_group(pg)
            raise WorkerError(
                "PlacementTimeout",
                f"Ray could not place {count} worker slots of {self.cpus_per_worker:g} CPU "
                f"each ({self.placement}) within {self.start_timeout_s:g} s; the cluster has "
                f"{ray.available_resources().get('CPU', 0):g} of "
                f"{ray.cluster_resources().get('CPU', 0):g} CPUs free. Add nodes, lower the "
                "parallelism or cpus_per_worker, or cap the slots with workers=N",
            ) from None
        self._pg = pg
        self.timings["placement_s"] = time.monotonic() - started
        return pg

    def start_workers(self, graph: JobGraph, host: PluginHost, post: Post) -> list[WorkerHandle]:
        count = self.worker_count(graph.parallelism)
        self._connect(count)
        payload = self._payload(graph)
        pg = self._placement_group(count)
        requirements = _requirements(host)
        levels = _configured_log_levels()
        started = time.monotonic()
        waiting: dict[int, Any] = {}
        for worker in range(count):
            if worker >= len(self.handles):
                indices = self.subtask_indices(worker, graph.parallelism)
                actor = _RemoteSlot.options(
                    num_cpus=self.cpus_per_worker,
                    max_restarts=self.max_restarts,
                    # A call in flight when the actor died fails at once, so the
                    # coordinator learns of the loss; none is replayed on the new one.
                    max_task_retries=0,
                    max_concurrency=_MAX_CONCURRENCY,
                    scheduling_strategy=PlacementGroupSchedulingStrategy(
                        pg, placement_group_bundle_index=worker
                    ),
                    **({"runtime_env": self._runtime_env} if self._runtime_env else {}),
                ).remote(payload, worker, indices, levels, requirements)
                self.handles.append(_ActorWorker(actor, worker, indices, post, self.call_timeout_s))
            handle = self.handles[worker]
            if handle.alive:
                handle.post = post
            else:
                # New, or lost in the last attempt: Ray has restarted it (or will).
                waiting[worker] = handle.actor.ready.remote()
        self._await_ready(waiting, post)
        if waiting:
            self.timings["actors_ready_s"] = time.monotonic() - started
        return list(self.handles)

    def _await_ready(self, waiting: dict[int, Any], post: Post) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        for worker, ref in waiting.items():
            handle = self.handles[worker]
            try:
                facts = self._ready(handle, ref, deadline)
            except GetTimeoutError:
                raise WorkerError(
                    "WorkerLost",
                    f"{handle.describe()} did not start within {self.start_timeout_s:g} s "
                    "(Ray may still be restarting it, or the cluster lacks room for its "
                    "placement group bundle)",
                ) from None
            except RayActorError as exc:
                if exc.actor_init_failed:
                    # The actor class itself did not load there: streamplug-ray or the
                    # core is missing on that node.
                    raise ConfigError(
                        f"worker slot {worker} could not start as a Ray actor: {_short(exc)}. "
                        "Install streamplug-ray (and the job's plugins) on every node of the "
                        "cluster, or list them in runtime_env={'pip': [...]}",
                        option="runtime",
                    ) from None
                raise WorkerError(
                    "WorkerLost", f"{handle.describe()} is gone: {_short(exc)}"
                ) from None
            if facts.error is not None:
                raise facts.error
            handle.attach(facts, post)

    @staticmethod
    def _ready(handle: _ActorWorker, ref: Any, deadline: float) -> SlotFacts:
        """The slot's facts once its actor is up; while Ray is still restarting it (its
        node died and the placement group bundle moves), ask again until ``deadline``."""
        while True:
            try:
                facts: SlotFacts = ray.get(ref, timeout=max(0.1, deadline - time.monotonic()))
                return facts
            except ActorUnavailableError:
                if time.monotonic() >= deadline:
                    raise GetTimeoutError() from None
                time.sleep(0.2)
                ref = handle.actor.ready.remote()

    # -- the run's end -----------------------------------------------------------------------

    def worker_pids(self) -> list[int]:
        return [h.pid for h in self.handles if h.pid is not None and h.alive]

    def memory_kb(self) -> dict[int, dict[str, int]]:
        """Peak (VmHWM) and current (VmRSS) resident memory of each live slot actor, in kB."""
        refs = {h.worker: h.actor.memory.remote() for h in self.handles if h.alive}
        return {w: ray.get(ref, timeout=30) for w, ref in refs.items()}

    def close(self) -> None:
        if not self.handles and self._pg is None:
            if self._owns_ray:
                ray.shutdown()
            return
        live = [h for h in self.handles if h.alive]
        for handle in self.handles:
            handle.begin_close()
        stops = [h.actor.stop.remote() for h in live]
        if stops:
            ray.wait(stops, num_returns=len(stops), timeout=_STOP_WAIT_S)
        for handle in self.handles:
            try:
                ray.kill(handle.actor, no_restart=True)
            except Exception:
                log.debug("killing %s failed", handle.describe(), exc_info=True)
        # After the kill a poll in flight fails at once: no thread waits out its poll.
        for handle in self.handles:
            handle.join_threads()
        self.handles = []
        if self._pg is not None:
            try:
                remove_placement_group(self._pg)
            except Exception:
                log.debug("removing the placement group failed", exc_info=True)
            self._pg = None
        self._payload_ref = None
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False


# Hooks only the driver calls: a plugin that implements nothing else (a CLI command, a
# runtime, job lifecycle listeners) is not needed where the slots run.
_DRIVER_ONLY_HOOKS = frozenset(
    {"streamplug_register_commands", "streamplug_register_runtimes", *spec.LIFECYCLE_HOOKS}
)


def _requirements(host: PluginHost) -> Requirements:
    """The plugins the driver loaded from entry points that a slot uses too (connectors,
    formats, partitioners, offsets initializers, client configuration), and where each
    top-level module of the driver comes from, for the slots' check on their nodes."""
    needs = []
    for info in host.plugin_infos():
        if info.distribution in (CORE_DISTRIBUTION, "<local>"):
            continue
        plugin = host.pm.get_plugin(info.name)
        hooks = {caller.name for caller in host.pm.get_hookcallers(plugin) or []}
        module = getattr(plugin, "__name__", None)
        if hooks - _DRIVER_ONLY_HOOKS and isinstance(module, str):
            needs.append(PluginNeed(info.name, module, info.distribution, info.version))
    return Requirements(needs, _distributions())


@functools.cache
def _distributions() -> dict[str, tuple[str, str]]:
    found: dict[str, tuple[str, str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        if dists:
            try:
                version = importlib.metadata.version(dists[0])
            except importlib.metadata.PackageNotFoundError:
                version = ""
            found[module] = (dists[0], version)
    return found
