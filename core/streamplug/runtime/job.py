"""Running a job: attempts, the checkpoint coordinator, recovery, and the ``JobClient``.

One job run is a thread that executes attempts until one finishes or the restart strategy
gives up. Each attempt restores the newest usable checkpoint, starts one thread per
subtask, and runs the coordinator loop on its own thread: enumerator calls, periodic
checkpoints, and the final checkpoint when every bounded input ended.

A checkpoint, step by step (the exactly-once protocol of DESIGN.md):
1. enumerators snapshot; every subtask stops at a barrier, snapshots its reader, flushes
   and prepares its writers, and waits;
2. the checkpoint is written PENDING (atomically);
3. every sink's committer commits the checkpoint's committables;
4. subtasks resume; the checkpoint is rewritten COMPLETE; readers, enumerators and
   plugins hear that it completed.
A crash between 2 and 4 leaves a PENDING checkpoint, which the next attempt resolves
through ``Committer.resolve`` before anything else runs.
"""

from __future__ import annotations

import enum
import functools
import logging
import queue
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from streamplug.api.sink import CommitOutcome, Committer, Sink
from streamplug.api.state import StateSerializer
from streamplug.api.watermarks import MAX_WATERMARK, MIN_WATERMARK
from streamplug.errors import (
    CheckpointError,
    ConfigError,
    JobCancelledError,
    JobFailedError,
    unrecoverable_cause,
)
from streamplug.metrics import MetricGroup
from streamplug.plugins import JobInfo
from streamplug.runtime.contexts import (
    RuntimeEnumeratorContext,
    RuntimeReaderContext,
    RuntimeSinkContext,
    Scheduler,
)
from streamplug.runtime.faults import fault_point
from streamplug.runtime.restart import fresh
from streamplug.runtime.storage import (
    COMPLETE,
    PENDING,
    CheckpointFile,
    CheckpointStorage,
    now_ms,
    open_checkpoint_storage,
    read_checkpoint,
)
from streamplug.runtime.task import Barrier, Subtask, SubtaskOutput, compile_tree

if TYPE_CHECKING:
    from streamplug.runtime.environment import Pipeline, StreamExecutionEnvironment

log = logging.getLogger(__name__)


class JobStatus(enum.Enum):
    CREATED = "CREATED"
    RUNNING = "RUNNING"
    RESTARTING = "RESTARTING"
    FINISHED = "FINISHED"
    CANCELED = "CANCELED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.FINISHED, JobStatus.CANCELED, JobStatus.FAILED)


@attrs.frozen
class JobExecutionResult:
    """What ``execute`` returns once the job ended."""

    job_id: str
    job_name: str
    net_runtime_ms: int
    attempts: int
    checkpoints_completed: int
    records_in: int
    records_out: int
    last_checkpoint: str | None

    def get_job_id(self) -> str:
        return self.job_id

    def get_net_runtime(self) -> int:
        return self.net_runtime_ms


@attrs.define
class JobMetrics:
    """A live view of a running job, for progress displays and tests."""

    status: str = "CREATED"
    attempt: int = 0
    records_in: int = 0
    records_out: int = 0
    checkpoints_completed: int = 0
    checkpoints_failed: int = 0
    last_checkpoint_id: int | None = None
    last_checkpoint_duration_ms: int | None = None
    last_checkpoint_path: str | None = None
    restored_checkpoint_id: int | None = None
    watermark: int | None = None
    subtask_watermarks: dict[str, int | None] = attrs.field(factory=dict)
    pending_records: int | None = None
    """Records the sources hold beyond what they emitted (consumer lag): the sum of
    ``SourceReader.pending_records`` over the readers that can say; None if none can."""


def _register_task_metrics(group: MetricGroup, subtask: Subtask) -> None:
    """Flink's task I/O metrics, read on demand from the subtask's own counters."""
    output = subtask.output
    group.gauge("numRecordsIn", lambda: output.records)
    group.gauge("numRecordsOut", lambda: subtask.records_out[0])

    def output_watermark() -> int | None:
        return None if output.idle or output.watermark == MIN_WATERMARK else output.watermark

    group.gauge("currentOutputWatermark", output_watermark)

    def watermark_lag() -> int | None:
        watermark = output_watermark()
        if watermark is None or watermark >= MAX_WATERMARK:
            return None
        return now_ms() - watermark

    # Flink's source operator owns this one too: only the runtime knows the watermark.
    group.gauge("watermarkLag", watermark_lag, "ms between now and the subtask's watermark")


class _Stop(Exception):
    """Internal: leave the coordinator loop for a stop or cancel request."""


@attrs.define
class _SinkSlot:
    sink: Sink[Any, Any]
    name: str
    committer: Committer[Any] | None
    committable_serializer: StateSerializer[Any]
    writer_serializer: StateSerializer[Any]


class _Attempt:
    """One try at running the job, from restore to end or failure."""

    def __init__(self, run: _JobRun, number: int) -> None:
        self.run = run
        self.env = run.env
        self.number = number
        self.host = run.env.plugin_host
        self.parallelism = run.env.parallelism
        self.events: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.scheduler = Scheduler(self.events)
        self.subtasks: list[Subtask] = []
        self.enumerators: dict[str, Any] = {}
        self.enumerator_contexts: list[RuntimeEnumeratorContext] = []
        self.sinks: dict[str, list[_SinkSlot]] = {}
        self.finished: set[tuple[str, int]] = set()
        self.info = JobInfo(run.job_name, run.job_id, self.parallelism, number)
        self.checkpoint_cfg = run.env.checkpoint_config
        self.restored: CheckpointFile | None = None
        self.last_checkpoint_end = time.monotonic()
        self.failed_checkpoints = 0
        # Subtasks whose reader's pending_records raised: the live view stops asking them.
        self.pending_unknown: set[tuple[str, int]] = set()
        # Subtasks whose reader has said how many records it holds: 0 once they finish.
        self.pending_known: set[tuple[str, int]] = set()

    # -- building and restoring --------------------------------------------------------------

    def _subtask_facts(self, index: int, group: MetricGroup) -> tuple[Any, ...]:
        """What every context of subtask ``index`` is built from, in the order the runtime
        contexts take it."""
        return (
            self.host,
            self.run.job_name,
            index,
            self.parallelism,
            self.number,
            group,
            self.checkpoint_cfg.enabled,
        )

    def _sink_context(self, index: int, group: MetricGroup) -> RuntimeSinkContext:
        return RuntimeSinkContext(
            *self._subtask_facts(index, group),
            restored_checkpoint_id=self.restored.checkpoint_id if self.restored else None,
            interval_ms=self.checkpoint_cfg.interval_ms,
            timeout_ms=self.checkpoint_cfg.timeout_ms,
        )

    def build(self) -> None:
        storage = self.run.storage
        job_group = MetricGroup(("job",), {"job": self.run.job_name})
        # Committers come first: a PENDING checkpoint must be resolved before any writer
        # starts (a transactional writer's start fences the very transaction in question).
        for pipeline in self.env.pipelines:
            slots = []
            for sink, name in pipeline.sinks():
                ctx = self._sink_context(
                    0, job_group.add_group("committer", pipeline=pipeline.name)
                )
                slots.append(
                    _SinkSlot(
                        sink,
                        name,
                        sink.create_committer(ctx),
                        sink.get_committable_serializer(),
                        sink.get_writer_state_serializer(),
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
            log.info("job %s restores checkpoint %s", self.run.job_name, self.restored.path)
        for pipeline in self.env.pipelines:
            self._build_pipeline(pipeline)

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
        latest_complete: CheckpointFile | None = None
        for checkpoint in storage.list():
            if restore is None and checkpoint.document.get("job_id") != self.run.job_id:
                # Started fresh on purpose: a failover may only go back to this run's own state.
                continue
            if checkpoint.status == COMPLETE:
                latest_complete = checkpoint
                break
            if latest_complete is None and self._resolve(checkpoint):
                latest_complete = storage.mark(checkpoint, COMPLETE)
                log.info(
                    "promoted PENDING checkpoint %d: its commit took effect",
                    checkpoint.checkpoint_id,
                )
                break
            log.info(
                "dropping PENDING checkpoint %d: its commit never happened",
                checkpoint.checkpoint_id,
            )
            storage.discard(checkpoint.checkpoint_id)
        return latest_complete

    def _resolve(self, checkpoint: CheckpointFile) -> bool:
        """Whether every committer of a PENDING checkpoint reports its commit durable."""
        outcomes = []
        for pipeline in self.env.pipelines:
            stored = checkpoint.document.get("pipelines", {}).get(pipeline.name, {})
            for i, slot in enumerate(self.sinks[pipeline.name]):
                if slot.committer is None:
                    continue
                sink_doc = stored.get("sinks", [])[i] if i < len(stored.get("sinks", [])) else None
                committables = self._decode_list(
                    slot.committable_serializer, sink_doc, "committables"
                )
                outcomes.append(slot.committer.resolve(checkpoint.checkpoint_id, committables))
        if CommitOutcome.COMMITTED in outcomes and CommitOutcome.ABORTED in outcomes:
            raise CheckpointError(
                f"checkpoint {checkpoint.checkpoint_id} committed in some sinks and aborted in others; "
                "a job can keep exactly-once across one transactional sink only"
            )
        return CommitOutcome.ABORTED not in outcomes

    @staticmethod
    def _decode_list(
        serializer: StateSerializer[Any], doc: dict[str, Any] | None, key: str
    ) -> list[Any]:
        if not doc:
            return []
        version = int(doc.get(f"{key}_version", serializer.version))
        return [serializer.deserialize(version, item) for item in doc.get(key, [])]

    def _build_pipeline(self, pipeline: Pipeline) -> None:
        source = pipeline.source
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
        split_serializer = source.get_split_serializer()
        restored_splits: list[list[Any]] = [[] for _ in range(self.parallelism)]
        orphan_splits: list[tuple[int, Any]] = []
        for reader_doc in stored.get("readers", []):
            version = int(reader_doc["version"])
            splits = [split_serializer.deserialize(version, s) for s in reader_doc["splits"]]
            index = int(reader_doc["subtask"])
            if stored.get("parallelism") == self.parallelism:
                restored_splits[index].extend(splits)
            else:
                # Parallelism changed: the enumerator redistributes the splits.
                orphan_splits.extend((index, s) for s in splits)

        slots = self.sinks[pipeline.name]
        writer_states: list[list[list[Any]]] = []
        for i, slot in enumerate(slots):
            sink_docs = stored.get("sinks", [])
            doc = sink_docs[i] if i < len(sink_docs) else None
            per_subtask: list[list[Any]] = [[] for _ in range(self.parallelism)]
            if doc:
                version = int(doc.get("writer_states_version", slot.writer_serializer.version))
                for j, states in enumerate(doc.get("writer_states", [])):
                    for state in states:
                        per_subtask[j % self.parallelism].append(
                            slot.writer_serializer.deserialize(version, state)
                        )
            writer_states.append(per_subtask)

        base_group = MetricGroup(("task",), {"job": self.run.job_name, "pipeline": pipeline.name})
        pipeline_subtasks: list[Subtask] = []
        for index in range(self.parallelism):
            group = base_group.add_group("subtask", subtask=index)
            reader_ctx = RuntimeReaderContext(
                *self._subtask_facts(index, group),
                request_split=functools.partial(
                    self.events.put, ("split_request", pipeline.name, index)
                ),
            )
            reader = source.create_reader(reader_ctx)
            writers = {}
            ordered_writers = []
            for slot, states in zip(slots, writer_states, strict=True):
                writer = slot.sink.create_writer(self._sink_context(index, group), states[index])
                writers[id(slot.sink)] = writer
                ordered_writers.append(writer)
            records_out = [0]
            chain = compile_tree(pipeline.root, writers, records_out)
            key = f"{pipeline.name}[{index}]"
            subtask = Subtask(
                pipeline.name,
                index,
                reader,
                ordered_writers,
                SubtaskOutput(pipeline.strategy, chain.emit, chain.watermark),
                chain.periodic,
                self.env.auto_watermark_interval_ms / 1000,
                self.events.put,
                group,
            )
            subtask.records_out = records_out
            _register_task_metrics(group, subtask)
            self.run.metrics.subtask_watermarks[key] = None
            subtask.add_restored_splits(restored_splits[index])
            pipeline_subtasks.append(subtask)
        self.subtasks.extend(pipeline_subtasks)

        enum_ctx = RuntimeEnumeratorContext(
            self.host,
            pipeline_subtasks,
            self.scheduler,
            base_group.add_group("enumerator"),
            self.checkpoint_cfg.enabled,
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
        if enum_doc is not None:
            # Restored: the assignment rounds before the checkpoint already happened.
            for subtask in pipeline_subtasks:
                subtask.output.assignment_round()
        for index, split in orphan_splits:
            enumerator.add_splits_back([split], index % self.parallelism)

    # -- running -----------------------------------------------------------------------------

    def execute(self) -> str:
        """Run until every input ended (FINISHED) or a stop request (FINISHED with a final
        checkpoint); raises on failure and ``_Stop`` on cancel."""
        self.build()
        for subtask in self.subtasks:
            subtask.start()
        for name, enumerator in self.enumerators.items():
            enumerator.start()
            for subtask in self.subtasks:
                if subtask.key[0] == name:
                    enumerator.add_reader(subtask.index)
        self._finish_rounds()
        self.host.notify("streamplug_job_started", job=self.info)
        self.run.set_status(JobStatus.RUNNING)
        interval = (self.checkpoint_cfg.interval_ms or 0) / 1000
        next_checkpoint = time.monotonic() + interval if interval else None
        while True:
            self._raise_if_requested()
            if len(self.finished) == len(self.subtasks):
                # The live view's last word: every input read, nothing pending.
                self._update_watermarks()
                self._final_checkpoint()
                return "FINISHED"
            if self.run.stop_requested.is_set():
                for subtask in self.subtasks:
                    subtask.send("stop")
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
            raise _Stop("cancel")

    def _handle(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "failed":
            raise event[2]
        if kind == "finished":
            self.finished.add(event[1])
        elif kind == "call":
            _, handler, result, error = event
            handler(result, error)
        elif kind == "split_request":
            _, name, index = event
            self.enumerators[name].handle_split_request(index)

    def _drain_events(self) -> None:
        """Handle events that arrived while a checkpoint blocked the loop (failures first)."""
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return
            self._handle(event)

    def _update_watermarks(self) -> None:
        metrics = self.run.metrics
        active = []
        for subtask in self.subtasks:
            output = subtask.output
            key = f"{subtask.key[0]}[{subtask.index}]"
            wm = output.watermark if output.watermark != MIN_WATERMARK else None
            metrics.subtask_watermarks[key] = wm
            if not output.idle:
                active.append(output.watermark)
        combined = min(active) if active else None
        if (
            combined is not None
            and combined != MIN_WATERMARK
            and (metrics.watermark is None or combined > metrics.watermark)
        ):
            metrics.watermark = combined
        metrics.records_in = self.run.records_in_base + sum(s.output.records for s in self.subtasks)
        metrics.records_out = self.run.records_out_base + sum(
            s.records_out[0] for s in self.subtasks
        )
        metrics.pending_records = self._pending_records()

    def _pending_records(self) -> int | None:
        total: int | None = None
        for subtask in self.subtasks:
            if subtask.key in self.finished and subtask.key in self.pending_known:
                # Its reader reached the end of its input: nothing is pending there, even
                # if the reader's last figure (from librdkafka statistics) was stale.
                total = total or 0
                continue
            if subtask.closed or subtask.key in self.pending_unknown:
                continue
            try:
                pending = subtask.reader.pending_records()
            except Exception:
                # A live view is no reason to fail the job; ask this reader no more.
                self.pending_unknown.add(subtask.key)
                log.warning(
                    "pending_records of %s (subtask %s[%d]) failed; its lag is left out",
                    type(subtask.reader).__name__,
                    *subtask.key,
                    exc_info=True,
                )
                continue
            if pending is not None:
                self.pending_known.add(subtask.key)
                total = (total or 0) + pending
        return total

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

    def _checkpoint(self, final: bool) -> None:
        cid = self.run.next_checkpoint_id
        self.run.next_checkpoint_id += 1
        started = time.monotonic()
        persist = self.checkpoint_cfg.enabled
        self.host.notify("streamplug_checkpoint_started", job=self.info, checkpoint_id=cid)
        enum_states = {name: e.snapshot_state(cid) for name, e in self.enumerators.items()}
        barrier = Barrier(cid, len(self.subtasks))
        for subtask in self.subtasks:
            subtask.send("barrier", barrier)
        failure: list[BaseException] = []

        def should_stop() -> bool:
            if self.run.cancel_requested.is_set():
                return True
            try:
                while True:
                    event = self.events.get_nowait()
                    if event[0] == "failed":
                        failure.append(event[2])
                        return True
                    self.run.deferred.append(event)
            except queue.Empty:
                return False

        ok = barrier.wait_for_acks(self.checkpoint_cfg.timeout_ms / 1000, should_stop)
        if not ok:
            barrier.abort()
            self._requeue_deferred()
            self._notify_aborted(cid, "failure" if failure else "timeout")
            if failure:
                raise failure[0]
            self._raise_if_requested()
            raise CheckpointError(
                f"checkpoint {cid} timed out after {self.checkpoint_cfg.timeout_ms} ms: "
                f"{len(barrier.snapshots)} of {barrier.expected} subtasks acknowledged; "
                "raise set_checkpoint_timeout or look for a blocked sink"
            )
        try:
            document = self._document(cid, final, enum_states, barrier)
            path: Path | str | None = None
            if persist:
                path = self.run.storage.write(cid, PENDING, document)
                fault_point("checkpoint.after_pending")
            for name, slots in self.sinks.items():
                for i, slot in enumerate(slots):
                    if slot.committer is None:
                        continue
                    committables = [
                        c
                        for key, snap in sorted(barrier.snapshots.items())
                        if key[0] == name
                        for c in snap.committables[i]
                    ]
                    slot.committer.commit(cid, committables)
            fault_point("checkpoint.before_complete")
        except BaseException as exc:
            barrier.abort()
            self._notify_aborted(cid, f"{type(exc).__name__}: {exc}")
            raise
        barrier.release()
        self._requeue_deferred()
        if persist and path is not None:
            self.run.storage.write(cid, COMPLETE, document)
            self.run.storage.prune(self.checkpoint_cfg.max_retained)
        self.last_checkpoint_end = time.monotonic()
        metrics = self.run.metrics
        metrics.checkpoints_completed += 1
        metrics.last_checkpoint_id = cid
        metrics.last_checkpoint_duration_ms = int((self.last_checkpoint_end - started) * 1000)
        metrics.last_checkpoint_path = str(path) if path else None
        self.run.last_checkpoint_path = str(path) if path else None
        # Readers hear of the final checkpoint too, so a bounded job commits its last offsets.
        for subtask in self.subtasks:
            subtask.send("complete", cid)
        for enumerator in self.enumerators.values():
            enumerator.notify_checkpoint_complete(cid)
        if persist:
            self.host.notify(
                "streamplug_checkpoint_completed",
                job=self.info,
                checkpoint_id=cid,
                location=str(path),
            )

    def _requeue_deferred(self) -> None:
        for event in self.run.deferred:
            self.events.put(event)
        self.run.deferred.clear()

    def _notify_aborted(self, cid: int, reason: str) -> None:
        for subtask in self.subtasks:
            subtask.send("aborted", cid)
        self.host.notify(
            "streamplug_checkpoint_aborted", job=self.info, checkpoint_id=cid, reason=reason
        )

    def _document(
        self, cid: int, final: bool, enum_states: dict[str, Any], barrier: Barrier
    ) -> dict[str, Any]:
        pipelines: dict[str, Any] = {}
        for pipeline in self.env.pipelines:
            split_ser = pipeline.source.get_split_serializer()
            enum_ser = pipeline.source.get_enumerator_checkpoint_serializer()
            snaps = [
                (key[1], snap)
                for key, snap in sorted(barrier.snapshots.items())
                if key[0] == pipeline.name
            ]
            sinks_doc = []
            for i, slot in enumerate(self.sinks[pipeline.name]):
                cser, wser = slot.committable_serializer, slot.writer_serializer
                sinks_doc.append(
                    {
                        "name": slot.name,
                        "describe": dict(slot.sink.describe()),
                        "delivery_guarantee": slot.sink.delivery_guarantee.name,
                        "committables_version": cser.version,
                        "committables": [
                            cser.serialize(c) for _, s in snaps for c in s.committables[i]
                        ],
                        "writer_states_version": wser.version,
                        "writer_states": [
                            [wser.serialize(w) for w in s.writer_states[i]] for _, s in snaps
                        ],
                    }
                )
            pipelines[pipeline.name] = {
                "source": dict(pipeline.source.describe()),
                "parallelism": self.parallelism,
                "enumerator": {
                    "version": enum_ser.version,
                    "data": enum_ser.serialize(enum_states[pipeline.name]),
                },
                "readers": [
                    {
                        "subtask": index,
                        "version": split_ser.version,
                        "splits": [split_ser.serialize(s) for s in snap.splits],
                    }
                    for index, snap in snaps
                ],
                "sinks": sinks_doc,
            }
        return {
            "job": self.run.job_name,
            "job_id": self.run.job_id,
            "attempt": self.number,
            "timestamp": now_ms(),
            "final": final,
            "parallelism": self.parallelism,
            "pipelines": pipelines,
        }

    # -- teardown ----------------------------------------------------------------------------

    def close(self, graceful: bool) -> None:
        """Stop every thread and release every resource. ``graceful`` after a normal end:
        subtasks are told to close; otherwise they are cancelled."""
        self.scheduler.close()
        for subtask in self.subtasks:
            if graceful:
                subtask.send("close")
            else:
                subtask.cancelled.set()
                subtask.wakeup.set()
        deadline = time.monotonic() + 30
        for subtask in self.subtasks:
            if subtask.thread.ident is not None:
                subtask.thread.join(max(0.0, deadline - time.monotonic()))
            if subtask.thread.is_alive():
                log.warning("subtask %s did not stop within 30 s; leaving it behind", subtask.key)
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
        self.run.records_in_base = self.run.metrics.records_in
        self.run.records_out_base = self.run.metrics.records_out


class _JobRun:
    """A job from submission to its terminal status, across restarts."""

    def __init__(self, env: StreamExecutionEnvironment, job_name: str) -> None:
        if not env.pipelines:
            raise ConfigError(
                "the job has no source: call env.from_source(...) first", option="source"
            )
        for pipeline in env.pipelines:
            if not pipeline.sinks():
                raise ConfigError(
                    f"pipeline {pipeline.name!r} has no sink: call .sink_to(...) or .print() on it",
                    option="sink",
                )
        self.env = env
        self.job_name = job_name
        self.job_id = uuid.uuid4().hex
        self.metrics = JobMetrics()
        self.stop_requested = threading.Event()
        self.cancel_requested = threading.Event()
        self.done = threading.Event()
        self.status = JobStatus.CREATED
        self.error: BaseException | None = None
        self.deferred: list[tuple[Any, ...]] = []
        self.next_checkpoint_id = 1
        self.records_in_base = 0
        self.records_out_base = 0
        self.last_checkpoint_path: str | None = None
        self.attempts = 0
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        storage_dir: Path | str | None = env.checkpoint_config.storage_dir
        if storage_dir is None:
            # Like Flink's in-memory default: checkpoints work, but die with the process.
            self._tmpdir = tempfile.TemporaryDirectory(prefix="streamplug-checkpoints-")
            storage_dir = Path(self._tmpdir.name)
            if env.checkpoint_config.enabled:
                log.warning(
                    "no checkpoint storage dir set: checkpoints go to %s and are lost with the process; "
                    "call get_checkpoint_config().set_checkpoint_storage_dir(...) to resume after a crash",
                    storage_dir,
                )
        self.storage = open_checkpoint_storage(
            storage_dir, job_name, env.checkpoint_config.storage_options
        )
        self.next_checkpoint_id = self.storage.latest_id() + 1
        self.started = time.monotonic()
        self._register_job_metrics()
        self.thread = threading.Thread(target=self._main, name=f"job-{job_name}", daemon=True)

    def _register_job_metrics(self) -> None:
        group = MetricGroup(("job",), {"job": self.job_name})
        m = self.metrics
        group.gauge("numberOfCompletedCheckpoints", lambda: m.checkpoints_completed)
        group.gauge("numberOfFailedCheckpoints", lambda: m.checkpoints_failed)
        group.gauge("lastCheckpointDuration", lambda: m.last_checkpoint_duration_ms)
        group.gauge("numRestarts", lambda: max(0, self.attempts - 1))
        group.gauge("currentWatermark", lambda: m.watermark)
        self.metric_group = group

    def set_status(self, status: JobStatus) -> None:
        self.status = status
        self.metrics.status = status.value

    def _main(self) -> None:
        strategy = fresh(self.env.effective_restart_strategy())
        info = JobInfo(self.job_name, self.job_id, self.env.parallelism, 0)
        number = 0

        def end(status: JobStatus, error: BaseException | None = None) -> None:
            # Every way out goes through here: the hookspec promises job_finished on each.
            if error is not None:
                self.error = error
            self.set_status(status)
            self.env.plugin_host.notify(
                "streamplug_job_finished", job=info, status=status.value, error=error
            )

        def interrupted_during(seconds: float) -> bool:
            # True as soon as a stop or cancel is requested. Two events cannot be waited
            # on at once; a short slice keeps either prompt.
            deadline = time.monotonic() + seconds
            while not (self.cancel_requested.is_set() or self.stop_requested.is_set()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cancel_requested.wait(min(left, 0.05))
            return True

        try:
            while True:
                attempt: _Attempt | None = None
                self.attempts = number + 1
                self.metrics.attempt = number
                try:
                    attempt = _Attempt(self, number)
                    info = attempt.info
                    attempt.execute()
                    attempt.close(graceful=True)
                except _Stop:
                    if attempt is not None:
                        attempt.close(graceful=False)
                    end(JobStatus.CANCELED)
                    return
                except BaseException as exc:
                    if attempt is not None:
                        try:
                            attempt.close(graceful=False)
                        except Exception:
                            log.warning("closing failed attempt %d", number, exc_info=True)
                    if self.cancel_requested.is_set():
                        end(JobStatus.CANCELED)
                        return
                    fatal = unrecoverable_cause(exc)
                    if fatal is not None:
                        log.error(
                            "job %s failed and is not restarted (a restart cannot fix this): %s",
                            self.job_name,
                            fatal,
                        )
                        end(JobStatus.FAILED, exc)
                        return
                    if self.stop_requested.is_set():
                        # Asked to stop, and the attempt failed before its final
                        # checkpoint: restarting would only be stopped again.
                        log.error("job %s failed while stopping: %s", self.job_name, exc)
                        end(JobStatus.FAILED, exc)
                        return
                    delay = strategy.next_delay_ms(exc)
                    if delay is None:
                        log.error(
                            "job %s failed (restart strategy %s gave up): %s",
                            self.job_name,
                            strategy.describe(),
                            exc,
                        )
                        end(JobStatus.FAILED, exc)
                        return
                    log.warning(
                        "job %s attempt %d failed (%s); restarting in %d ms",
                        self.job_name,
                        number,
                        exc,
                        delay,
                    )
                    self.set_status(JobStatus.RESTARTING)
                    self.env.plugin_host.notify(
                        "streamplug_job_restarting", job=info, error=exc, delay_ms=delay
                    )
                    if interrupted_during(delay / 1000):
                        if self.stop_requested.is_set() and not self.cancel_requested.is_set():
                            # No attempt runs, so no final checkpoint can be taken; the
                            # newest completed one stays the restore point.
                            log.warning(
                                "job %s stopped during its restart delay, without a final "
                                "checkpoint; its last attempt failed with: %s",
                                self.job_name,
                                exc,
                            )
                        end(JobStatus.CANCELED)
                        return
                    number += 1
                else:
                    end(JobStatus.FINISHED)
                    return
        except BaseException as exc:
            # A failure of the restart loop itself: still end the job visibly.
            log.exception("job %s: the runtime failed", self.job_name)
            if not self.status.is_terminal:
                end(JobStatus.FAILED, exc)
        finally:
            self.metric_group.close()
            self.done.set()


class JobClient:
    """A handle on a job started with ``execute_async``."""

    def __init__(self, run: _JobRun) -> None:
        self._run = run

    @classmethod
    def start(cls, env: StreamExecutionEnvironment, job_name: str) -> JobClient:
        run = _JobRun(env, job_name)
        run.thread.start()
        return cls(run)

    def __repr__(self) -> str:
        return f"JobClient({self._run.job_name!r}, {self.status.value})"

    @property
    def job_id(self) -> str:
        return self._run.job_id

    def get_job_id(self) -> str:
        return self._run.job_id

    @property
    def status(self) -> JobStatus:
        return self._run.status

    def get_job_status(self) -> JobStatus:
        return self._run.status

    @property
    def checkpoint_storage(self) -> CheckpointStorage:
        return self._run.storage

    def metrics(self) -> JobMetrics:
        """A copy of the job's live counters."""
        return attrs.evolve(
            self._run.metrics, subtask_watermarks=dict(self._run.metrics.subtask_watermarks)
        )

    def cancel(self) -> None:
        """Stop at once, without a final checkpoint: uncommitted output is discarded."""
        self._run.cancel_requested.set()

    def stop(self, timeout: float | None = None) -> str | None:
        """Stop the sources, take a final checkpoint, commit it, and end the job as
        FINISHED. Returns the final checkpoint's path (None without checkpointing)."""
        self._run.stop_requested.set()
        self.wait(timeout)
        return self._run.last_checkpoint_path

    def wait(self, timeout: float | None = None) -> JobExecutionResult:
        """Block until the job ends; raise ``JobFailedError`` if it failed,
        ``JobCancelledError`` if it was cancelled, ``TimeoutError`` on timeout."""
        if not self._run.done.wait(timeout):
            raise TimeoutError(
                f"job {self._run.job_name!r} still {self.status.value} after {timeout} s"
            )
        run = self._run
        if run.status is JobStatus.FAILED:
            assert run.error is not None
            raise JobFailedError(
                f"job {run.job_name!r} failed after {run.attempts} attempt(s): {type(run.error).__name__}: {run.error}"
            ) from run.error
        if run.status is JobStatus.CANCELED:
            raise JobCancelledError(f"job {run.job_name!r} was cancelled")
        return JobExecutionResult(
            run.job_id,
            run.job_name,
            int((time.monotonic() - run.started) * 1000),
            run.attempts,
            run.metrics.checkpoints_completed,
            run.metrics.records_in,
            run.metrics.records_out,
            run.last_checkpoint_path,
        )

    def wait_quietly(self, timeout: float | None = None) -> None:
        """Wait for the end without raising for its outcome."""
        self._run.done.wait(timeout)
