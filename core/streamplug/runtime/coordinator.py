"""One attempt at running a job, seen from the coordinator (the driver's side).

The coordinator restores the newest usable checkpoint, starts the runtime's worker slots,
runs the split enumerators and the checkpoint coordinator on its own thread, and talks to
the slots only through the worker protocol (``runtime.messages``). Records never pass
through it.

A checkpoint, step by step (the exactly-once protocol of DESIGN.md):
1. enumerators snapshot; every slot stops its subtasks at a barrier, snapshots readers,
   flushes and prepares writers, and acknowledges with its serialized snapshot;
2. the checkpoint is written PENDING (atomically), with every slot's committables and
   where each split stood at the previous COMPLETE checkpoint;
3. every slot commits its own transaction (its committables and decision record);
4. the checkpoint is rewritten COMPLETE; slots resume and readers, enumerators and
   plugins hear that it completed.
A crash between 2 and 4 leaves a PENDING checkpoint, which the next attempt resolves slot
by slot (``runtime.recovery``) before any worker starts.
"""

from __future__ import annotations

import json
import logging
import pickle
import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from streamplug.api.sink import CommitOutcome, Committer, Sink
from streamplug.api.state import StateSerializer
from streamplug.api.watermarks import MIN_WATERMARK
from streamplug.errors import CheckpointError
from streamplug.metrics import MetricGroup
from streamplug.plugin.records import CheckpointAck, EnumeratorSplits, SourceInfo
from streamplug.plugins import JobInfo
from streamplug.runtime import checkpoint_document
from streamplug.runtime.checkpoint_document import BaseSplits
from streamplug.runtime.contexts import RuntimeEnumeratorContext, RuntimeSinkContext, Scheduler
from streamplug.runtime.faults import fault_point
from streamplug.runtime.messages import (
    AssignmentRound,
    AssignSplits,
    AttemptEnded,
    BarrierAck,
    CommitAck,
    CommitCheckpoint,
    EndAttempt,
    NoMoreSplits,
    Progress,
    ReleaseBarrier,
    SplitRequest,
    StartAttempt,
    StopSources,
    SubtaskFinished,
    SubtaskKey,
    TriggerBarrier,
    WorkerFailed,
)
from streamplug.runtime.recovery import merge_partially_committed, resolve_workers
from streamplug.runtime.runtimes import WorkerHandle
from streamplug.runtime.storage import (
    COMPLETE,
    PENDING,
    CheckpointFile,
    CheckpointStorage,
    read_checkpoint,
)

if TYPE_CHECKING:
    from streamplug.runtime.environment import Pipeline
    from streamplug.runtime.job import _JobRun

log = logging.getLogger(__name__)

WORKERS_RECORD = "workers.json"


class Stop(Exception):
    """Internal: leave the coordinator loop for a cancel request."""


@attrs.define
class _SinkSlot:
    sink: Sink[Any, Any]
    name: str
    committer: Committer[Any] | None
    committable_serializer: StateSerializer[Any]


class _ReaderProxy:
    """The enumerator context's view of one reader: assignments become protocol messages
    to the slot that hosts it, and are remembered as the split's base position."""

    def __init__(
        self, attempt: Attempt, pipeline: Pipeline, index: int, handle: WorkerHandle
    ) -> None:
        self._attempt = attempt
        self._pipeline = pipeline
        self.index = index
        self.key: SubtaskKey = (pipeline.name, index)
        self._handle = handle

    def send(self, kind: str, *args: Any) -> None:
        number = self._attempt.number
        if kind == "splits":
            splits = list(args[0])
            self._attempt.record_assignment(self._pipeline, self.index, splits)
            self._handle.send(AssignSplits(number, self.key, splits))
        elif kind == "no_more_splits":
            self._handle.send(NoMoreSplits(number, self.key))
        elif kind == "assigned":
            # One round message per slot and pipeline is enough; the context sends one per
            # reader, so only the slot's first reader passes it on.
            if self.index == self._handle.subtask_indices[0]:
                self._handle.send(AssignmentRound(number, self._pipeline.name))
        else:
            raise ValueError(f"unknown reader message {kind!r}")


class Attempt:
    """One try at running the job, from restore to end or failure."""

    def __init__(self, run: _JobRun, number: int) -> None:
        self.run = run
        self.env = run.env
        self.number = number
        self.host = run.env.plugin_host
        self.parallelism = run.env.parallelism
        self.runtime = run.runtime
        self.events: queue.Queue[Any] = queue.Queue()
        self.scheduler = Scheduler(self.events)
        self.handles: list[WorkerHandle] = []
        self.worker_of: list[int] = []
        self.enumerators: dict[str, Any] = {}
        self.enumerator_contexts: list[RuntimeEnumeratorContext] = []
        self.sinks: dict[str, list[_SinkSlot]] = {}
        self.subtask_keys: list[SubtaskKey] = []
        self.finished: set[SubtaskKey] = set()
        self.info = JobInfo(run.job_name, run.job_id, self.parallelism, number)
        self.checkpoint_cfg = run.env.checkpoint_config
        self.restored: CheckpointFile | None = None
        self.last_checkpoint_end = time.monotonic()
        self.failed_checkpoints = 0
        self.deferred: list[Any] = []
        self.base = BaseSplits()
        # Splits of a checkpoint taken at another parallelism, per pipeline: the
        # enumerator hands them out again.
        self._orphans: dict[str, list[tuple[int, Any]]] = {}
        self.latest_progress: dict[int, Progress] = {}
        self.metric_groups: list[MetricGroup] = []
        self._closed = False
        self._on_subtask_ack: Callable[..., Any] | None = None

    # -- building and restoring --------------------------------------------------------------

    def _coordinator_sink_context(self, group: MetricGroup) -> RuntimeSinkContext:
        cfg = self.checkpoint_cfg
        return RuntimeSinkContext(
            self.host,
            self.run.job_name,
            0,
            self.parallelism,
            self.number,
            group,
            cfg.enabled,
            restored_checkpoint_id=None,
            interval_ms=cfg.interval_ms,
            timeout_ms=cfg.timeout_ms,
            worker_index=None,
        )

    def build(self) -> None:
        storage = self.run.storage
        job_group = MetricGroup(("job",), {"job": self.run.job_name})
        # The coordinator's committers come first: a PENDING checkpoint must be resolved,
        # and slots of earlier attempts fenced, before any writer starts.
        for pipeline in self.env.pipelines:
            slots = []
            for sink, name in pipeline.sinks():
                ctx = self._coordinator_sink_context(
                    job_group.add_group("committer", pipeline=pipeline.name)
                )
                slots.append(
                    _SinkSlot(
                        sink, name, sink.create_committer(ctx), sink.get_committable_serializer()
                    )
                )
            self.sinks[pipeline.name] = slots
        self.restored = self._choose_restore(storage)
        if self.restored is not None:
            self.run.metrics.last_checkpoint_id = self.restored.checkpoint_id
            self.run.metrics.restored_checkpoint_id = self.restored.checkpoint_id
            self.run.next_checkpoint_id = max(
                self.run.next_checkpoint_id, self.restored.checkpoint_id + 1
            )
            self.base.reset_from(self.restored.document, self._split_serializers())
            log.info("job %s restores checkpoint %s", self.run.job_name, self.restored.path)
        workers = self.runtime.worker_count(self.parallelism)
        self._fence_earlier_workers(storage, workers)
        self.handles = self.runtime.start_workers(self.run.graph, self.host, self.events.put)
        self.worker_of = [0] * self.parallelism
        for handle in self.handles:
            for index in handle.subtask_indices:
                self.worker_of[index] = handle.worker
        restored_splits: dict[SubtaskKey, list[Any]] = {}
        writer_states: dict[SubtaskKey, list[list[Any]]] = {}
        for pipeline in self.env.pipelines:
            self._restore_pipeline(pipeline, restored_splits, writer_states)
        restored_id = self.restored.checkpoint_id if self.restored else None
        for handle in self.handles:
            mine = set(handle.subtask_indices)
            handle.send(
                StartAttempt(
                    self.number,
                    restored_id,
                    {k: v for k, v in restored_splits.items() if k[1] in mine},
                    {k: v for k, v in writer_states.items() if k[1] in mine},
                )
            )
        for pipeline in self.env.pipelines:
            self._build_enumerator(pipeline)

    def _split_serializers(self) -> dict[str, StateSerializer[Any]]:
        return {p.name: p.source.get_split_serializer() for p in self.env.pipelines}

    def _committers(self) -> dict[str, list[tuple[Committer[Any] | None, StateSerializer[Any]]]]:
        return {
            name: [(slot.committer, slot.committable_serializer) for slot in slots]
            for name, slots in self.sinks.items()
        }

    def _fence_earlier_workers(self, storage: CheckpointStorage, workers: int) -> None:
        """Fence the slots an earlier attempt recorded and this one will not start, then
        record this attempt's slots before any of them can open a transaction."""
        committers = [s.committer for slots in self.sinks.values() for s in slots if s.committer]
        if not committers:
            return
        try:
            recorded = int(json.loads(storage.read_bytes(WORKERS_RECORD)).get("workers", 0))
        except FileNotFoundError:
            recorded = 0
        if recorded > workers:
            stale = list(range(workers, recorded))
            log.info("fencing worker slots %s of an earlier attempt", stale)
            for committer in committers:
                committer.fence_workers(stale)
        if recorded != workers:
            storage.write_bytes(WORKERS_RECORD, json.dumps({"workers": workers}).encode())

    def _choose_restore(self, storage: CheckpointStorage) -> CheckpointFile | None:
        restore = self.checkpoint_cfg.restore
        if restore is None and self.number == 0:
            return None
        storage.remove_temporaries()
        if restore not in (None, "latest") and self.number == 0:
            chosen = read_checkpoint(str(restore), self.checkpoint_cfg.storage_options)
            if chosen.status != COMPLETE:
                raise CheckpointError(
                    f"checkpoint {chosen.path} is {chosen.status}, not COMPLETE; restore from "
                    "'latest' to let recovery resolve it"
                )
            return chosen
        for checkpoint in storage.list():
            if restore is None and checkpoint.document.get("job_id") != self.run.job_id:
                # Started fresh on purpose: a failover may only go back to this run's own state.
                continue
            if checkpoint.status == COMPLETE:
                return checkpoint
            resolved = self._resolve(storage, checkpoint)
            if resolved is not None:
                return resolved
        return None

    def _resolve(
        self, storage: CheckpointStorage, checkpoint: CheckpointFile
    ) -> CheckpointFile | None:
        """A PENDING checkpoint as Kafka holds it: promoted, merged, or dropped (None)."""
        cid = checkpoint.checkpoint_id
        outcomes = resolve_workers(cid, checkpoint.document, self._committers())
        committed = {w for w, o in outcomes.items() if o is CommitOutcome.COMMITTED}
        if len(committed) == len(outcomes):
            log.info("promoted PENDING checkpoint %d: its commit took effect", cid)
            return storage.mark(checkpoint, COMPLETE)
        if not committed:
            log.info("dropping PENDING checkpoint %d: its commit never happened", cid)
            storage.discard(cid)
            return None
        merged = merge_partially_committed(
            cid, checkpoint.document, committed, self._split_serializers()
        )
        log.warning(
            "checkpoint %d committed in worker slots %s and not in %s: restoring a merged "
            "checkpoint (each split from its owner's outcome)",
            cid,
            sorted(committed),
            sorted(set(outcomes) - committed),
        )
        storage.write(cid, COMPLETE, merged)
        return storage.read_checkpoint(cid)

    def _restore_pipeline(
        self,
        pipeline: Pipeline,
        restored_splits: dict[SubtaskKey, list[Any]],
        writer_states: dict[SubtaskKey, list[list[Any]]],
    ) -> None:
        stored = (
            self.restored.document.get("pipelines", {}).get(pipeline.name)
            if self.restored
            else None
        ) or {}
        if self.restored is not None and not stored:
            log.warning(
                "checkpoint %s has no state for pipeline %r; it starts fresh",
                self.restored.path,
                pipeline.name,
            )
        split_serializer = pipeline.source.get_split_serializer()
        orphans = self._orphans.setdefault(pipeline.name, [])
        for index in range(self.parallelism):
            restored_splits[(pipeline.name, index)] = []
        for reader_doc in stored.get("readers", []):
            version = int(reader_doc["version"])
            splits = [split_serializer.deserialize(version, s) for s in reader_doc["splits"]]
            index = int(reader_doc["subtask"])
            if stored.get("parallelism") == self.parallelism:
                restored_splits[(pipeline.name, index)].extend(splits)
            else:
                # Parallelism changed: the enumerator redistributes the splits.
                orphans.extend((index, s) for s in splits)
        per_subtask: list[list[list[Any]]] = [[] for _ in range(self.parallelism)]
        sink_docs = stored.get("sinks", [])
        for i, (sink, _) in enumerate(pipeline.sinks()):
            doc = sink_docs[i] if i < len(sink_docs) else None
            serializer = sink.get_writer_state_serializer()
            states: list[list[Any]] = [[] for _ in range(self.parallelism)]
            if doc:
                version = int(doc.get("writer_states_version", serializer.version))
                for j, items in enumerate(doc.get("writer_states", [])):
                    for state in items:
                        states[j % self.parallelism].append(serializer.deserialize(version, state))
            for index in range(self.parallelism):
                per_subtask[index].append(states[index])
        for index in range(self.parallelism):
            writer_states[(pipeline.name, index)] = per_subtask[index]
        self.subtask_keys.extend((pipeline.name, i) for i in range(self.parallelism))

    def _build_enumerator(self, pipeline: Pipeline) -> None:
        source = pipeline.source
        stored = (
            self.restored.document.get("pipelines", {}).get(pipeline.name)
            if self.restored
            else None
        ) or {}
        base_group = MetricGroup(("task",), {"job": self.run.job_name, "pipeline": pipeline.name})
        by_worker = {h.worker: h for h in self.handles}
        proxies = [
            _ReaderProxy(self, pipeline, index, by_worker[self.worker_of[index]])
            for index in range(self.parallelism)
        ]
        enum_ctx = RuntimeEnumeratorContext(
            self.host,
            proxies,
            self.scheduler,
            base_group.add_group("enumerator"),
            self.checkpoint_cfg.enabled,
            self.info,
            pipeline.name,
        )
        enum_doc = stored.get("enumerator")
        if enum_doc is not None:
            serializer = source.get_enumerator_checkpoint_serializer()
            state = serializer.deserialize(int(enum_doc["version"]), enum_doc["data"])
            enumerator = source.restore_enumerator(enum_ctx, state)
        else:
            enumerator = source.create_enumerator(enum_ctx)
        self.enumerators[pipeline.name] = enumerator
        self.enumerator_contexts.append(enum_ctx)
        for index in range(self.parallelism):
            self.run.metrics.subtask_watermarks[f"{pipeline.name}[{index}]"] = None
        if not self.runtime.in_process:
            self._register_remote_task_metrics(pipeline.name, base_group)
        if enum_doc is not None:
            # Restored: the assignment rounds before the checkpoint already happened.
            for handle in self.handles:
                handle.send(AssignmentRound(self.number, pipeline.name))
        added_back = self.host.caller("streamplug_enumerator_splits_added_back")
        for index, split in self._orphans.get(pipeline.name, []):
            if added_back is not None:
                added_back(
                    splits=EnumeratorSplits(
                        self.info, pipeline.name, (split,), index % self.parallelism
                    )
                )
            enumerator.add_splits_back([split], index % self.parallelism)

    def _register_remote_task_metrics(self, pipeline: str, group: MetricGroup) -> None:
        """Flink's task I/O metrics of subtasks in other processes, from their slots'
        progress reports (a report is at most ~0.1 s old)."""

        def reading(index: int, field: str) -> Callable[[], int | None]:
            def read() -> int | None:
                for progress in self.latest_progress.values():
                    for sub in progress.subtasks:
                        if sub.subtask == (pipeline, index):
                            value: int | None = getattr(sub, field)
                            if field == "watermark" and (sub.idle or value == MIN_WATERMARK):
                                return None
                            return value
                return None

            return read

        for index in range(self.parallelism):
            sub = group.add_group("subtask", subtask=index)
            sub.gauge("numRecordsIn", reading(index, "records_in"))
            sub.gauge("numRecordsOut", reading(index, "records_out"))
            sub.gauge("currentOutputWatermark", reading(index, "watermark"))
        self.metric_groups.append(group)

    def record_assignment(self, pipeline: Pipeline, index: int, splits: list[Any]) -> None:
        serializer = pipeline.source.get_split_serializer()
        for split in splits:
            self.base.assigned(
                pipeline.name,
                index,
                split.split_id,
                serializer.version,
                serializer.serialize(split),
            )

    # -- running -----------------------------------------------------------------------------

    def execute(self) -> str:
        """Run until every input ended (FINISHED) or a stop request (FINISHED with a final
        checkpoint); raises on failure and ``Stop`` on cancel."""
        self.build()
        starting = self.host.caller("streamplug_source_starting")
        if starting is not None:
            for pipeline in self.env.pipelines:
                source = pipeline.source
                starting(
                    source=SourceInfo(
                        self.info,
                        pipeline.name,
                        dict(source.describe()),
                        source.get_boundedness().name,
                    )
                )
        self._on_subtask_ack = self.host.caller("streamplug_checkpoint_subtask_acknowledged")
        for enumerator in self.enumerators.values():
            enumerator.start()
            for index in range(self.parallelism):
                enumerator.add_reader(index)
        self._finish_rounds()
        self.host.notify("streamplug_job_started", job=self.info)
        self.run.mark_running()
        interval = (self.checkpoint_cfg.interval_ms or 0) / 1000
        next_checkpoint = time.monotonic() + interval if interval else None
        while True:
            self._raise_if_requested()
            if len(self.finished) == len(self.subtask_keys):
                # The live view's last word: every input read, nothing pending.
                self._update_watermarks()
                self._final_checkpoint()
                return "FINISHED"
            if self.run.stop_requested.is_set():
                for handle in self.handles:
                    handle.send(StopSources(self.number))
                self._final_checkpoint()
                return "FINISHED"
            now = time.monotonic()
            if next_checkpoint is not None and now >= next_checkpoint:
                self._periodic_checkpoint()
                after = time.monotonic()
                next_checkpoint = max(
                    next_checkpoint + interval,
                    self.last_checkpoint_end + self.checkpoint_cfg.min_pause_ms / 1000,
                    after,
                )
            self.scheduler.run_due()
            self._finish_rounds()
            wait_until = [t for t in (next_checkpoint, self.scheduler.next_due()) if t is not None]
            timeout = max(0.0, min([*wait_until, now + 0.1]) - time.monotonic())
            try:
                event = self.events.get(timeout=timeout)
            except queue.Empty:
                event = None
            if event is not None:
                self._handle(event)
                self._finish_rounds()
            self._update_watermarks()

    def _finish_rounds(self) -> None:
        for ctx in self.enumerator_contexts:
            ctx.finish_round()

    def _raise_if_requested(self) -> None:
        if self.run.cancel_requested.is_set():
            raise Stop("cancel")

    def _current(self, event: Any) -> bool:
        attempt = getattr(event, "attempt", self.number)
        if attempt != self.number:
            log.debug("dropping %r from attempt %d", type(event).__name__, attempt)
            return False
        return True

    def _handle(self, event: Any) -> None:
        if isinstance(event, tuple):
            _, handler, result, error = event
            handler(result, error)
            return
        if not self._current(event):
            return
        if isinstance(event, WorkerFailed):
            raise event.error
        if isinstance(event, Progress):
            self.latest_progress[event.worker] = event
        elif isinstance(event, SubtaskFinished):
            self.finished.add(event.subtask)
        elif isinstance(event, SplitRequest):
            self.enumerators[event.subtask[0]].handle_split_request(event.subtask[1])

    def _update_watermarks(self) -> None:
        metrics = self.run.metrics
        active = []
        records_in = records_out = 0
        pending: int | None = None
        for handle in self.handles:
            live = handle.progress()
            if live is not None and live.attempt == self.number:
                self.latest_progress[handle.worker] = live
        for progress in self.latest_progress.values():
            for sub in progress.subtasks:
                key = f"{sub.subtask[0]}[{sub.subtask[1]}]"
                metrics.subtask_watermarks[key] = (
                    sub.watermark if sub.watermark != MIN_WATERMARK else None
                )
                if not sub.idle:
                    active.append(sub.watermark)
                records_in += sub.records_in
                records_out += sub.records_out
                if sub.pending_records is not None:
                    pending = (pending or 0) + sub.pending_records
        combined = min(active) if active else None
        if (
            combined is not None
            and combined != MIN_WATERMARK
            and (metrics.watermark is None or combined > metrics.watermark)
        ):
            metrics.watermark = combined
        metrics.records_in = self.run.records_in_base + records_in
        metrics.records_out = self.run.records_out_base + records_out
        metrics.pending_records = pending

    # -- checkpoints -------------------------------------------------------------------------

    def _periodic_checkpoint(self) -> None:
        try:
            self._checkpoint(final=False)
        except CheckpointError as exc:
            self.failed_checkpoints += 1
            self.run.metrics.checkpoints_failed += 1
            if self.failed_checkpoints > self.checkpoint_cfg.tolerable_failures:
                raise
            log.warning("checkpoint failed (%d tolerated so far): %s", self.failed_checkpoints, exc)

    def _final_checkpoint(self) -> None:
        has_committer = any(slot.committer for slots in self.sinks.values() for slot in slots)
        if self.checkpoint_cfg.enabled or has_committer:
            self._checkpoint(final=True)

    def _await(
        self, kind: type[BarrierAck] | type[CommitAck], cid: int, deadline: float
    ) -> dict[int, Any] | None:
        """Wait for one ``kind`` event of checkpoint ``cid`` from every slot; other events
        wait in ``deferred`` (a failure is raised at once). None on timeout."""
        got: dict[int, Any] = {}
        while len(got) < len(self.handles):
            self._raise_if_requested()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                event = self.events.get(timeout=min(remaining, 0.05))
            except queue.Empty:
                continue
            if isinstance(event, tuple) or not self._current(event):
                if isinstance(event, tuple):
                    self.deferred.append(event)
                continue
            if isinstance(event, WorkerFailed):
                raise event.error
            if isinstance(event, kind) and event.checkpoint_id == cid:
                got[event.worker] = event
            else:
                self.deferred.append(event)
        return got

    def _checkpoint(self, final: bool) -> None:
        cid = self.run.next_checkpoint_id
        self.run.next_checkpoint_id += 1
        started = time.monotonic()
        persist = self.checkpoint_cfg.enabled
        # Without checkpointing the final round only commits the sinks: no state is kept, so
        # it is no checkpoint to a plugin (a started one would never complete).
        if persist:
            self.host.notify("streamplug_checkpoint_started", job=self.info, checkpoint_id=cid)
        enum_states = {name: e.snapshot_state(cid) for name, e in self.enumerators.items()}
        deadline = started + self.checkpoint_cfg.timeout_ms / 1000
        for handle in self.handles:
            handle.send(TriggerBarrier(self.number, cid))
        try:
            acks = self._await(BarrierAck, cid, deadline)
        except BaseException as exc:
            self._abort(cid, f"{type(exc).__name__}: {exc}")
            raise
        if acks is not None and persist and self._on_subtask_ack is not None:
            self._report_acks(cid, acks)
        if acks is None:
            self._abort(cid, "timeout")
            raise CheckpointError(
                f"checkpoint {cid} timed out after {self.checkpoint_cfg.timeout_ms} ms waiting "
                f"for the barrier; raise set_checkpoint_timeout or look for a blocked sink"
            )
        try:
            document = checkpoint_document.build(
                job_name=self.run.job_name,
                job_id=self.run.job_id,
                attempt=self.number,
                final=final,
                parallelism=self.parallelism,
                workers=len(self.handles),
                assignment=self.worker_of,
                pipelines=self.env.pipelines,
                sink_names={n: [s.name for s in slots] for n, slots in self.sinks.items()},
                enum_states=enum_states,
                acks=[acks[w] for w in sorted(acks)],
                base=self.base.document(),
            )
            path: Path | str | None = None
            if persist:
                path = self.run.storage.write(cid, PENDING, document)
                fault_point("checkpoint.after_pending")
            for handle in self.handles:
                handle.send(CommitCheckpoint(self.number, cid))
            commit_deadline = max(
                deadline, time.monotonic() + self.checkpoint_cfg.timeout_ms / 1000
            )
            if self._await(CommitAck, cid, commit_deadline) is None:
                raise CheckpointError(
                    f"checkpoint {cid}: the worker slots did not confirm their commits within "
                    f"{self.checkpoint_cfg.timeout_ms} ms"
                )
            fault_point("checkpoint.before_complete")
        except BaseException as exc:
            self._abort(cid, f"{type(exc).__name__}: {exc}")
            raise
        storage_error: CheckpointError | None = None
        if persist and path is not None:
            try:
                self.run.storage.write(cid, COMPLETE, document)
                self.run.storage.prune(self.checkpoint_cfg.max_retained)
            except CheckpointError as exc:
                # The commits took effect, so the subtasks must go on from here: holding them
                # would stall the job until the next barrier times out. The PENDING document
                # stays, and recovery promotes it should the job restart before a later one.
                storage_error = exc
        self.base.reset_from(document, self._split_serializers())
        for handle in self.handles:
            handle.send(ReleaseBarrier(self.number, cid, True))
        self._requeue_deferred()
        if storage_error is not None:
            self.last_checkpoint_end = time.monotonic()
            raise storage_error
        self.last_checkpoint_end = time.monotonic()
        metrics = self.run.metrics
        metrics.checkpoints_completed += 1
        metrics.last_checkpoint_id = cid
        metrics.last_checkpoint_duration_ms = int((self.last_checkpoint_end - started) * 1000)
        metrics.last_checkpoint_path = str(path) if path else None
        self.run.last_checkpoint_path = str(path) if path else None
        for enumerator in self.enumerators.values():
            enumerator.notify_checkpoint_complete(cid)
        if persist:
            self.host.notify(
                "streamplug_checkpoint_completed",
                job=self.info,
                checkpoint_id=cid,
                location=str(path),
            )

    def _report_acks(self, cid: int, acks: dict[int, Any]) -> None:
        assert self._on_subtask_ack is not None
        for worker in sorted(acks):
            for snap in acks[worker].snapshots:
                # The size it takes in the checkpoint: the serialized values, pickled as one.
                size = len(
                    pickle.dumps(
                        (snap.splits, snap.committables, snap.writer_states),
                        protocol=pickle.HIGHEST_PROTOCOL,
                    )
                )
                self._on_subtask_ack(
                    ack=CheckpointAck(
                        self.info, cid, snap.subtask[0], snap.subtask[1], size, snap.duration_ms
                    )
                )

    def _abort(self, cid: int, reason: str) -> None:
        for handle in self.handles:
            handle.send(ReleaseBarrier(self.number, cid, False))
        self._requeue_deferred()
        if self.checkpoint_cfg.enabled:
            self.host.notify(
                "streamplug_checkpoint_aborted", job=self.info, checkpoint_id=cid, reason=reason
            )

    def _requeue_deferred(self) -> None:
        for event in self.deferred:
            self.events.put(event)
        self.deferred.clear()

    def _await_ended(self) -> BaseException | None:
        """Wait until every live slot closed its subtasks (and reported its last counters),
        so nothing of this attempt still writes when the next one starts. Returns the first
        failure a slot reported meanwhile: after a graceful end, a reader or writer that
        could not hand over its last records (``Subtask._close``)."""
        waiting = {h.worker for h in self.handles if h.alive}
        deadline = time.monotonic() + 35.0
        failure: BaseException | None = None
        while waiting and time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=0.1)
            except queue.Empty:
                waiting &= {h.worker for h in self.handles if h.alive}
                continue
            if isinstance(event, Progress) and event.attempt == self.number:
                self.latest_progress[event.worker] = event
            elif isinstance(event, WorkerFailed) and event.attempt == self.number:
                failure = failure or event.error
            elif isinstance(event, AttemptEnded) and event.attempt == self.number:
                waiting.discard(event.worker)
        if waiting:
            log.warning(
                "worker slots %s did not end attempt %d within 35 s", sorted(waiting), self.number
            )
        return failure

    # -- teardown ----------------------------------------------------------------------------

    def close(self, graceful: bool) -> None:
        """End the slots' subtasks and release every coordinator resource. ``graceful``
        after a normal end: subtasks are told to close, and if one of them could not
        deliver its last records, that failure is raised once everything is released (the
        job fails instead of ending FINISHED without them); otherwise they are cancelled.
        A second call does nothing."""
        if self._closed:
            return
        self._closed = True
        self.scheduler.close()
        for handle in self.handles:
            try:
                handle.send(EndAttempt(self.number, graceful))
            except Exception:
                log.exception("ending the attempt on %s failed", handle.describe())
        failure = self._await_ended()
        for enumerator in self.enumerators.values():
            try:
                enumerator.close()
            except Exception:
                log.exception("closing enumerator failed")
        for slots in self.sinks.values():
            for slot in slots:
                if slot.committer is not None:
                    try:
                        slot.committer.close()
                    except Exception:
                        log.exception("closing committer failed")
        self._update_watermarks()
        for group in self.metric_groups:
            group.close()
        self.run.records_in_base = self.run.metrics.records_in
        self.run.records_out_base = self.run.metrics.records_out
        if graceful and failure is not None:
            raise failure
