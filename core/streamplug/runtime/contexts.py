"""The runtime's implementations of the contexts handed to connectors."""

from __future__ import annotations

import heapq
import itertools
import queue
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence

# concurrent.futures loads its thread pool module on first use; imported here, that happens
# with the runtime's import instead of inside the first execute().
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

from streamplug.api.context import ReaderContext, SinkContext, SplitEnumeratorContext
from streamplug.plugin.records import EnumeratorSplits

if TYPE_CHECKING:
    from streamplug.metrics import MetricGroup
    from streamplug.plugin.records import JobInfo
    from streamplug.plugins import PluginHost


class _HostFacts:
    """What every context knows, the enumerator's included: the plugin host (for client
    configuration), its metric group and whether checkpointing is on."""

    def __init__(self, host: PluginHost, metric_group: MetricGroup, checkpointing: bool) -> None:
        self._host = host
        self._metric_group = metric_group
        self._checkpointing = checkpointing

    @property
    def metric_group(self) -> MetricGroup:
        return self._metric_group

    @property
    def checkpointing_enabled(self) -> bool:
        return self._checkpointing

    def configure_client(
        self, properties: MutableMapping[str, str], *, role: str, connector: str
    ) -> MutableMapping[str, str]:
        return self._host.configure_client(properties, role=role, connector=connector)

    def plugin_hook(self, name: str) -> Callable[..., list[Any]] | None:
        return self._host.caller(name)


class _Facts(_HostFacts):
    """The facts every subtask context shares; the concrete contexts add their own."""

    def __init__(
        self,
        host: PluginHost,
        job_name: str,
        index: int,
        parallelism: int,
        attempt: int,
        metric_group: MetricGroup,
        checkpointing: bool,
    ) -> None:
        super().__init__(host, metric_group, checkpointing)
        self._job_name = job_name
        self._index = index
        self._parallelism = parallelism
        self._attempt = attempt

    @property
    def job_name(self) -> str:
        return self._job_name

    @property
    def subtask_index(self) -> int:
        return self._index

    @property
    def parallelism(self) -> int:
        return self._parallelism

    @property
    def attempt_number(self) -> int:
        return self._attempt


class RuntimeReaderContext(_Facts, ReaderContext):
    def __init__(self, *args: Any, request_split: Callable[[], None]) -> None:
        super().__init__(*args)
        self._request_split = request_split

    def send_split_request(self) -> None:
        self._request_split()


class Mailbox:
    """Calls other threads hand to one subtask's thread (``SinkContext.run_in_task``).

    The writers are created before their subtask, so calls made meanwhile wait here until
    ``bind`` gives the subtask's control queue."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._send: Callable[..., None] | None = None
        self._early: list[Callable[[], None]] = []

    def bind(self, send: Callable[..., None]) -> None:
        with self._lock:
            self._send = send
            early, self._early = self._early, []
        for fn in early:
            send("call", fn)

    def put(self, fn: Callable[[], None]) -> None:
        with self._lock:
            send = self._send
            if send is None:
                self._early.append(fn)
                return
        send("call", fn)


class RuntimeSinkContext(_Facts, SinkContext):
    def __init__(
        self,
        *args: Any,
        restored_checkpoint_id: int | None,
        interval_ms: int | None,
        timeout_ms: int,
        worker_index: int | None = 0,
        mailbox: Mailbox | None = None,
        keeps_positions: bool = False,
    ) -> None:
        super().__init__(*args)
        self._restored = restored_checkpoint_id
        self._interval = interval_ms
        self._timeout = timeout_ms
        self._worker = worker_index
        self._mailbox = mailbox
        self._keeps_positions = keeps_positions

    def run_in_task(self, fn: Callable[[], None]) -> bool:
        if self._mailbox is None:
            return False
        self._mailbox.put(fn)
        return True

    @property
    def keeps_positions(self) -> bool:
        return self._keeps_positions

    @property
    def worker_index(self) -> int | None:
        return self._worker

    @property
    def restored_checkpoint_id(self) -> int | None:
        return self._restored

    @property
    def checkpoint_interval_ms(self) -> int | None:
        return self._interval

    @property
    def checkpoint_timeout_ms(self) -> int:
        return self._timeout


class Scheduler:
    """Timers and async results for the coordinator thread's event loop."""

    def __init__(self, events: queue.Queue[tuple[Any, ...]]) -> None:
        self._events = events
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="enumerator-async")
        self.closed = False

    def at(self, delay_s: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay_s, next(self._seq), fn))

    def next_due(self) -> float | None:
        return self._timers[0][0] if self._timers else None

    def run_due(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, fn = heapq.heappop(self._timers)
            fn()

    def submit(
        self, fn: Callable[[], Any], handler: Callable[[Any, BaseException | None], None]
    ) -> None:
        if self.closed:
            return
        future = self._pool.submit(fn)

        def done(f: Future[Any]) -> None:
            exc = f.exception()
            self._events.put(("call", handler, None if exc else f.result(), exc))

        future.add_done_callback(done)

    def close(self) -> None:
        self.closed = True
        self._timers.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)


class ReaderEndpoint(Protocol):
    """Where the enumerator's calls for one reader go: the coordinator's handle on it,
    which turns them into worker-protocol messages."""

    index: int

    def send(self, kind: str, *args: Any) -> None:
        """``splits`` (with a list), ``no_more_splits`` or ``assigned``."""


class RuntimeEnumeratorContext(_HostFacts, SplitEnumeratorContext[Any]):
    def __init__(
        self,
        host: PluginHost,
        subtasks: Sequence[ReaderEndpoint],
        scheduler: Scheduler,
        metric_group: MetricGroup,
        checkpointing: bool,
        job: JobInfo | None = None,
        pipeline: str = "",
    ) -> None:
        super().__init__(host, metric_group, checkpointing)
        self._subtasks = subtasks
        self._scheduler = scheduler
        self.round_pending = False
        self._job = job
        self._pipeline = pipeline
        # Looked up once: an enumerator assigns on every discovery round.
        self._on_assigned = host.caller("streamplug_enumerator_splits_assigned")
        self._on_discovered = host.caller("streamplug_enumerator_splits_discovered")

    @property
    def parallelism(self) -> int:
        return len(self._subtasks)

    def registered_readers(self) -> Sequence[int]:
        return [s.index for s in self._subtasks]

    def assign_splits(self, assignment: Mapping[int, Sequence[Any]]) -> None:
        for subtask_id, splits in assignment.items():
            if not 0 <= subtask_id < len(self._subtasks):
                raise ValueError(
                    f"cannot assign splits to subtask {subtask_id}: parallelism is {len(self._subtasks)}"
                )
            if splits:
                if self._on_assigned is not None and self._job is not None:
                    self._on_assigned(
                        splits=EnumeratorSplits(
                            self._job, self._pipeline, tuple(splits), subtask_id
                        )
                    )
                self._subtasks[subtask_id].send("splits", list(splits))
        self.round_pending = True

    def splits_discovered(self, splits: Sequence[Any]) -> None:
        if self._on_discovered is not None and self._job is not None and splits:
            self._on_discovered(splits=EnumeratorSplits(self._job, self._pipeline, tuple(splits)))

    def signal_no_more_splits(self, subtask_id: int) -> None:
        self._subtasks[subtask_id].send("no_more_splits")

    def finish_round(self) -> None:
        """Called by the coordinator after each event it handled: if the enumerator assigned
        anything, every reader of the source learns that the round is over."""
        if self.round_pending:
            self.round_pending = False
            for subtask in self._subtasks:
                subtask.send("assigned")

    def call_async(
        self,
        fn: Callable[[], Any],
        handler: Callable[[Any, BaseException | None], None],
        initial_delay_ms: int = 0,
        period_ms: int = 0,
    ) -> None:
        def run() -> None:
            self._scheduler.submit(fn, chained)

        def chained(result: Any, error: BaseException | None) -> None:
            try:
                handler(result, error)
            finally:
                if period_ms > 0 and not self._scheduler.closed:
                    self._scheduler.at(period_ms / 1000, run)

        if initial_delay_ms > 0:
            self._scheduler.at(initial_delay_ms / 1000, run)
        else:
            run()
