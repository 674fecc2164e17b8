"""The ``processes`` runtime: one spawned worker process per slot on this machine.

Threads of one process share one core for Python work; processes do not. Each slot is a
process started with ``spawn`` (never ``fork``: librdkafka's threads do not survive a
fork), given the job graph once (pickled with cloudpickle, so lambdas and classes defined
in the job script travel), and then driven over a pipe with the worker protocol. A slot
process lives as long as the job run: a later attempt reuses it, and a dead one (killed,
crashed) is replaced by a new process at the next attempt.

The slot process ends itself when the pipe to the driver closes, so a killed driver never
leaves workers behind that could go on writing. It ignores SIGINT and SIGTERM: Ctrl-C in a
terminal reaches the whole process group, and the driver decides what a stop means
(a final checkpoint first). Like any ``spawn`` user, a job script must keep its job behind
``if __name__ == "__main__":``.
"""

from __future__ import annotations

import faulthandler
import logging
import multiprocessing
import os
import pickle
import signal
import socket
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

from streamplug.errors import ConfigError
from streamplug.runtime import faults
from streamplug.runtime.messages import (
    AttemptEnded,
    ControlMessage,
    EndAttempt,
    Progress,
    StartAttempt,
    WorkerError,
    WorkerEvent,
    WorkerFailed,
)
from streamplug.runtime.runtimes import Post, Runtime, WorkerHandle
from streamplug.runtime.worker import JobGraph, WorkerSlot, portable_error

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from streamplug.plugins import PluginHost

log = logging.getLogger(__name__)

_PROGRESS_INTERVAL_S = 0.1
_STOP_WAIT_S = 30.0


def _configured_log_levels() -> dict[str, int]:
    """The driver's logger levels, so a worker logs what the driver would have."""
    levels = {"": logging.getLogger().getEffectiveLevel()}
    for name, logger in logging.root.manager.loggerDict.items():
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            levels[name] = logger.level
    return levels


def _worker_main(
    conn: Connection,
    payload: bytes,
    worker: int,
    indices: list[int],
    levels: dict[str, int],
    generation: int,
) -> None:
    """A slot process: serve control messages until the driver says goodbye or goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # `kill -USR1 <worker pid>` prints every thread's stack: how to see where a slot hangs.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    os.environ[faults.SLOT_ENV] = str(worker)
    if generation > 0:
        os.environ.pop(faults.ENV, None)
    faults.reset()
    logging.basicConfig(
        level=levels.get("", logging.WARNING),
        format=f"%(asctime)s worker-{worker} %(name)s %(levelname)s %(message)s",
    )
    for name, level in levels.items():
        if name:
            logging.getLogger(name).setLevel(level)
    send_lock = threading.Lock()

    def post(event: WorkerEvent) -> None:
        try:
            data = pickle.dumps(event)
        except Exception as exc:
            if not isinstance(event, WorkerFailed):
                raise
            data = pickle.dumps(
                WorkerFailed(event.attempt, event.worker, portable_error(exc), event.subtask)
            )
        try:
            with send_lock:
                conn.send_bytes(data)
        except OSError:
            # The driver is gone: nothing this process does can matter any more.
            os._exit(1)

    import cloudpickle

    from streamplug.plugins import build_plugin_host

    try:
        graph: JobGraph = cloudpickle.loads(payload)
        slot = WorkerSlot(graph, worker, indices, build_plugin_host(), post)
    except Exception as exc:
        # Most often a module of the job (a plugin, the job script's own) that this node
        # does not have: answer every attempt with that, naming the node.
        _refuse_attempts(conn, post, worker, exc)
        return
    done = threading.Event()

    def report_progress() -> None:
        while not done.wait(_PROGRESS_INTERVAL_S):
            try:
                if slot.subtasks:
                    post(slot.progress())
            except Exception:
                log.debug("progress report failed", exc_info=True)

    threading.Thread(target=report_progress, name="progress", daemon=True).start()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            # The driver died (or closed the pipe without a goodbye): end at once, without
            # closing producers gracefully, exactly as a crash would.
            os._exit(1)
        if message is None:
            break
        try:
            slot.handle(message)
        except BaseException as exc:
            post(WorkerFailed(slot.attempt, worker, portable_error(exc)))
    done.set()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # Past every subtask thread already joined: skip interpreter teardown, which could wait
    # on a stuck client thread.
    os._exit(0)


def _refuse_attempts(
    conn: Connection, post: Callable[[WorkerEvent], None], worker: int, exc: Exception
) -> None:
    # Not worth a restart: the same node would fail the same way.
    error = ConfigError(
        f"worker slot {worker} on host {socket.gethostname()} could not load the job: "
        f"{type(exc).__name__}: {exc}; install the same distributions (plugins, the job's "
        "modules) on every node",
        option="runtime",
    )
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            os._exit(1)
        if message is None:
            os._exit(0)
        if isinstance(message, StartAttempt):
            post(WorkerFailed(message.attempt, worker, error))
        elif isinstance(message, EndAttempt):
            post(AttemptEnded(message.attempt, worker))


class _ProcessWorker(WorkerHandle):
    """The driver's end of one slot process."""

    def __init__(
        self, worker: int, indices: list[int], payload: bytes, post: Post, generation: int
    ) -> None:
        self.worker = worker
        self.subtask_indices = indices
        self.post = post
        self._latest: Progress | None = None
        self._attempt = -1
        self._send_lock = threading.Lock()
        # multiprocessing's join is not safe from two threads at once: the one whose
        # waitpid loses the race sees the child as running forever.
        self._join_lock = threading.Lock()
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self._conn: Connection = parent
        self.process: BaseProcess = context.Process(
            target=_worker_main,
            args=(child, payload, worker, indices, _configured_log_levels(), generation),
            name=f"streamplug-worker-{worker}",
            daemon=True,
        )
        self.process.start()
        child.close()
        self._reader = threading.Thread(
            target=self._read, name=f"worker-{worker}-events", daemon=True
        )
        self._reader.start()

    def describe(self) -> str:
        return f"worker {self.worker} (process {self.process.pid})"

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def alive(self) -> bool:
        with self._join_lock:
            return self.process.is_alive() and not self._conn.closed

    def send(self, message: ControlMessage) -> None:
        self._attempt = getattr(message, "attempt", self._attempt)
        try:
            with self._send_lock:
                self._conn.send(message)
        except (OSError, ValueError) as exc:
            self.post(
                WorkerFailed(
                    self._attempt,
                    self.worker,
                    WorkerError("WorkerLost", f"{self.describe()} is gone: {exc}"),
                )
            )

    def progress(self) -> Progress | None:
        return self._latest

    def _read(self) -> None:
        while True:
            try:
                data = self._conn.recv_bytes()
            except (EOFError, OSError):
                break
            event = pickle.loads(data)
            if isinstance(event, Progress):
                self._latest = event
            else:
                self.post(event)
        self._join(1.0)
        code = self.process.exitcode
        if code not in (0, None) or self._attempt >= 0:
            text = (
                f"{self.describe()} exited with code {code}"
                if code is not None
                else f"{self.describe()} closed its pipe"
            )
            self.post(WorkerFailed(self._attempt, self.worker, WorkerError("WorkerLost", text)))

    def _join(self, timeout: float) -> None:
        with self._join_lock:
            self.process.join(timeout)

    def shutdown(self) -> None:
        """Say goodbye, wait for the process to end, and kill it if it does not."""
        try:
            with self._send_lock:
                self._conn.send(None)
        except (OSError, ValueError):
            pass
        self._join(_STOP_WAIT_S)
        if self.process.exitcode is None:
            log.warning("%s did not stop within %.0f s; killing it", self.describe(), _STOP_WAIT_S)
            self.process.kill()
            self._join(5.0)
        self._attempt = -1
        self._conn.close()


class ProcessesRuntime(Runtime):
    """One spawned process per worker slot; ``workers`` caps the slot count (default:
    one slot per subtask index, i.e. the job's parallelism)."""

    name = "processes"

    def __init__(self, workers: int | None = None) -> None:
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise ConfigError(
                f"workers must be a positive integer, got {workers!r}", option="runtime.workers"
            )
        self._max_workers = workers
        self.handles: list[_ProcessWorker] = []
        self._payload: bytes | None = None
        # How many processes each slot had so far in this run.
        self._generations: dict[int, int] = {}

    def worker_count(self, parallelism: int) -> int:
        return min(parallelism, self._max_workers or parallelism)

    def _graph_payload(self, graph: JobGraph) -> bytes:
        if self._payload is None:
            try:
                import cloudpickle
            except ImportError as exc:  # pragma: no cover - a core dependency
                raise ImportError(
                    "the processes runtime needs cloudpickle: pip install cloudpickle"
                ) from exc
            try:
                self._payload = cloudpickle.dumps(graph)
            except Exception as exc:
                raise ConfigError(
                    f"the job cannot be shipped to worker processes: {type(exc).__name__}: "
                    f"{exc}. Every source, sink and function of the job must pickle (cloudpickle); "
                    "or use env.set_runtime('threads')",
                    option="runtime",
                ) from exc
        return self._payload

    def start_workers(self, graph: JobGraph, host: PluginHost, post: Post) -> list[WorkerHandle]:
        payload = self._graph_payload(graph)
        count = self.worker_count(graph.parallelism)
        fresh: list[_ProcessWorker] = []
        for worker in range(count):
            old = self.handles[worker] if worker < len(self.handles) else None
            if old is not None and old.alive:
                old.post = post
                fresh.append(old)
                continue
            if old is not None:
                old.shutdown()
            indices = self.subtask_indices(worker, graph.parallelism)
            generation = self._generations.get(worker, 0)
            self._generations[worker] = generation + 1
            fresh.append(_ProcessWorker(worker, indices, payload, post, generation))
        self.handles = fresh
        return list(fresh)

    def worker_pids(self) -> list[int]:
        return [h.pid for h in self.handles if h.pid is not None and h.alive]

    def close(self) -> None:
        for handle in self.handles:
            handle.shutdown()
        self.handles = []
