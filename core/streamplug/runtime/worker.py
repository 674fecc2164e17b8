"""A worker slot: the subtasks of one slot and the calls that steer them.

Every runtime runs the same ``WorkerSlot``; they differ only in how control messages reach
it and how its reports travel back. ``threads`` hosts one slot with every subtask in the
driver's process and calls it directly; ``processes`` runs one slot per spawned process;
a Ray actor hosts one slot the same way.

Lifecycle guarantees a slot gives the coordinator:
* ``handle`` is never called concurrently with itself (one caller: the coordinator thread,
  or the process's control loop);
* a message of an attempt other than the one started last is dropped;
* the snapshot of a barrier is reported once every subtask of the slot has stopped at it,
  and the subtasks stay stopped until ``ReleaseBarrier`` (or the attempt ends);
* ``CommitCheckpoint`` commits only what this slot's writers prepared at that barrier.
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from streamplug.api.sink import Committer
from streamplug.api.watermarks import MAX_WATERMARK, MIN_WATERMARK
from streamplug.metrics import MetricGroup
from streamplug.plugin.records import SubtaskInfo
from streamplug.runtime.contexts import Mailbox, RuntimeReaderContext, RuntimeSinkContext
from streamplug.runtime.messages import (
    AssignmentRound,
    AssignSplits,
    AttemptEnded,
    BarrierAck,
    CommitAck,
    CommitCheckpoint,
    ControlMessage,
    EndAttempt,
    NoMoreSplits,
    Progress,
    ReleaseBarrier,
    SplitRequest,
    StartAttempt,
    StopSources,
    SubtaskFinished,
    SubtaskKey,
    SubtaskProgress,
    SubtaskSnapshot,
    TriggerBarrier,
    WorkerError,
    WorkerEvent,
    WorkerFailed,
)
from streamplug.runtime.storage import now_ms
from streamplug.runtime.task import Barrier, Subtask, SubtaskOutput, compile_tree

if TYPE_CHECKING:
    from streamplug.plugins import PluginHost
    from streamplug.runtime.config import CheckpointConfig
    from streamplug.runtime.environment import Pipeline

log = logging.getLogger(__name__)

_CLOSE_WAIT_S = 30.0


@attrs.frozen
class JobGraph:
    """What a worker needs to build its subtasks: shipped once to every worker (pickled
    with cloudpickle where it leaves the process)."""

    job_name: str
    job_id: str
    parallelism: int
    pipelines: list[Pipeline]
    checkpoint: CheckpointConfig
    auto_watermark_interval_ms: int


def portable_error(error: BaseException) -> BaseException:
    """``error`` itself where it survives pickling (its class tells the restart strategy
    whether retrying can help), else a ``WorkerError`` with its type and text."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return WorkerError(type(error).__name__, str(error))
    return error


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


class _Checkpoint:
    """A barrier in this slot: the local acks, and what the writers prepared."""

    def __init__(self, barrier: Barrier) -> None:
        self.barrier = barrier
        self.acked = False


class WorkerSlot:
    """Hosts subtask ``i`` of every pipeline for each ``i`` in ``subtask_indices``."""

    def __init__(
        self,
        graph: JobGraph,
        worker: int,
        subtask_indices: Sequence[int],
        host: PluginHost,
        post: Callable[[WorkerEvent], None],
    ) -> None:
        self.graph = graph
        self.worker = worker
        self.indices = list(subtask_indices)
        self.host = host
        self._post = post
        self.attempt = -1
        self.subtasks: dict[SubtaskKey, Subtask] = {}
        self.committers: dict[str, list[Committer[Any] | None]] = {}
        self.finished: set[SubtaskKey] = set()
        self.failed = False
        self._checkpoint: _Checkpoint | None = None
        self._pending_unknown: set[SubtaskKey] = set()
        self._pending_known: set[SubtaskKey] = set()

    # -- control ---------------------------------------------------------------------------

    def handle(self, message: ControlMessage) -> None:
        if isinstance(message, StartAttempt):
            self._start(message)
            return
        if message.attempt != self.attempt:
            log.debug(
                "worker %d drops %r: attempt %d is current", self.worker, message, self.attempt
            )
            return
        if isinstance(message, (AssignSplits, NoMoreSplits)):
            subtask = self.subtasks.get(message.subtask)
            if subtask is None:
                # Its build failed and that failure is on its way to the coordinator; a
                # KeyError here would replace it (and its class, which decides restarts).
                return
            if isinstance(message, AssignSplits):
                subtask.send("splits", message.splits)
            else:
                subtask.send("no_more_splits")
        elif isinstance(message, AssignmentRound):
            for key, subtask in self.subtasks.items():
                if key[0] == message.pipeline:
                    subtask.send("assigned")
        elif isinstance(message, TriggerBarrier):
            self._trigger(message.checkpoint_id)
        elif isinstance(message, CommitCheckpoint):
            self._commit(message.checkpoint_id)
        elif isinstance(message, ReleaseBarrier):
            self._release(message.checkpoint_id, message.completed)
        elif isinstance(message, StopSources):
            for subtask in self.subtasks.values():
                subtask.send("stop")
        elif isinstance(message, EndAttempt):
            self._end(message.graceful)
            self.post(AttemptEnded(message.attempt, self.worker))

    def post(self, event: WorkerEvent) -> None:
        self._post(event)

    # -- building --------------------------------------------------------------------------

    def _sink_context(
        self,
        index: int,
        group: MetricGroup,
        start: StartAttempt,
        keeps_positions: bool = False,
        mailbox: Mailbox | None = None,
    ) -> RuntimeSinkContext:
        cfg = self.graph.checkpoint
        return RuntimeSinkContext(
            *self._facts(index, group),
            restored_checkpoint_id=start.restored_checkpoint_id,
            interval_ms=cfg.interval_ms,
            timeout_ms=cfg.timeout_ms,
            worker_index=self.worker,
            keeps_positions=keeps_positions,
            mailbox=mailbox,
        )

    def _facts(self, index: int, group: MetricGroup) -> tuple[Any, ...]:
        return (
            self.host,
            self.graph.job_name,
            index,
            self.graph.parallelism,
            self.attempt,
            group,
            self.graph.checkpoint.enabled,
        )

    def _start(self, start: StartAttempt) -> None:
        if self.subtasks:
            self._end(graceful=False)
        self.attempt = start.attempt
        self.finished = set()
        self.failed = False
        self._checkpoint = None
        self._pending_unknown = set()
        self._pending_known = set()
        try:
            self._build(start)
        except BaseException as exc:
            self.failed = True
            # On a cluster the cause is often the node: a missing keytab, certificate or
            # plugin there. Say which one.
            exc.add_note(
                f"while starting worker slot {self.worker} on host {socket.gethostname()} "
                f"(process {os.getpid()})"
            )
            log.error("worker slot %d could not start: %s", self.worker, exc)
            self.post(WorkerFailed(self.attempt, self.worker, portable_error(exc)))
            return
        for subtask in self.subtasks.values():
            subtask.start()

    def _build(self, start: StartAttempt) -> None:
        job_group = MetricGroup(("job",), {"job": self.graph.job_name})
        # Committers first, as Flink creates them: a transactional sink's committer and
        # writers of one process share the producer the committer brings up.
        for pipeline in self.graph.pipelines:
            group = job_group.add_group("committer", pipeline=pipeline.name, worker=self.worker)
            self.committers[pipeline.name] = [
                sink.create_committer(self._sink_context(self.indices[0], group, start))
                for sink, _ in pipeline.sinks()
            ]
        for pipeline in self.graph.pipelines:
            base_group = MetricGroup(
                ("task",), {"job": self.graph.job_name, "pipeline": pipeline.name}
            )
            for index in self.indices:
                key = (pipeline.name, index)
                self.subtasks[key] = self._build_subtask(pipeline, index, base_group, start)

    def _build_subtask(
        self, pipeline: Pipeline, index: int, base_group: MetricGroup, start: StartAttempt
    ) -> Subtask:
        key = (pipeline.name, index)
        group = base_group.add_group("subtask", subtask=index)
        reader_ctx = RuntimeReaderContext(
            *self._facts(index, group),
            request_split=functools.partial(self.post, SplitRequest(self.attempt, key)),
        )
        reader = pipeline.source.create_reader(reader_ctx)
        states = start.writer_states.get(key) or [[] for _ in pipeline.sinks()]
        writers = {}
        ordered_writers = []
        keeping = pipeline.sinks_keeping_positions()
        mailbox = Mailbox()
        for (sink, _), restored in zip(pipeline.sinks(), states, strict=True):
            ctx = self._sink_context(index, group, start, id(sink) in keeping, mailbox)
            writer = sink.create_writer(ctx, restored)
            writers[id(sink)] = writer
            ordered_writers.append(writer)
        records_out = [0]
        chain = compile_tree(pipeline.root, writers, records_out)
        subtask = Subtask(
            pipeline.name,
            index,
            reader,
            ordered_writers,
            SubtaskOutput(pipeline.strategy, chain.emit, chain.watermark),
            chain.periodic,
            self.graph.auto_watermark_interval_ms / 1000,
            self._subtask_event,
            group,
        )
        subtask.records_out = records_out
        mailbox.bind(subtask.send)
        added = self.host.caller("streamplug_reader_splits_added")
        finished = self.host.caller("streamplug_reader_splits_finished")
        if added is not None or finished is not None:
            connector = str(pipeline.source.describe().get("type", type(pipeline.source).__name__))
            subtask.observe_splits(added, finished, SubtaskInfo.from_context(reader_ctx, connector))
        _register_task_metrics(group, subtask)
        subtask.add_restored_splits(start.restored_splits.get(key, []))
        return subtask

    def _subtask_event(self, event: tuple[Any, ...]) -> None:
        """What a subtask thread posts, as the protocol's typed events."""
        kind, key = event[0], event[1]
        if kind == "finished":
            self.finished.add(key)
            self.post(SubtaskFinished(self.attempt, key))
        elif kind == "failed":
            self.failed = True
            self.post(WorkerFailed(self.attempt, self.worker, portable_error(event[2]), key))

    # -- checkpoints -----------------------------------------------------------------------

    def _trigger(self, checkpoint_id: int) -> None:
        barrier = Barrier(checkpoint_id, len(self.subtasks))
        checkpoint = _Checkpoint(barrier)
        self._checkpoint = checkpoint
        for subtask in self.subtasks.values():
            subtask.send("barrier", barrier)
        attempt = self.attempt
        timeout_s = self.graph.checkpoint.timeout_ms / 1000
        # The acks come from the subtask threads; waiting for them here would hold up the
        # control calls (a failure, the end of the attempt) that must still get through.
        threading.Thread(
            target=self._await_acks,
            args=(checkpoint, attempt, timeout_s),
            name=f"barrier-{checkpoint_id}-w{self.worker}",
            daemon=True,
        ).start()

    def _await_acks(self, checkpoint: _Checkpoint, attempt: int, timeout_s: float) -> None:
        barrier = checkpoint.barrier

        def should_stop() -> bool:
            return self.failed or self.attempt != attempt or barrier.aborted

        if not barrier.wait_for_acks(timeout_s, should_stop):
            return
        try:
            snapshots = [
                self._serialize(key, snap) for key, snap in sorted(barrier.snapshots.items())
            ]
        except BaseException as exc:
            self.failed = True
            self.post(WorkerFailed(attempt, self.worker, portable_error(exc)))
            return
        checkpoint.acked = True
        self.post(BarrierAck(attempt, self.worker, barrier.checkpoint_id, snapshots))

    def _serialize(self, key: SubtaskKey, snapshot: Any) -> SubtaskSnapshot:
        pipeline = self._pipeline(key[0])
        split_ser = pipeline.source.get_split_serializer()
        committables = []
        states = []
        for (sink, _), comms, wstates in zip(
            pipeline.sinks(), snapshot.committables, snapshot.writer_states, strict=True
        ):
            cser, wser = sink.get_committable_serializer(), sink.get_writer_state_serializer()
            committables.append([cser.serialize(c) for c in comms])
            states.append([wser.serialize(w) for w in wstates])
        return SubtaskSnapshot(
            key,
            split_ser.version,
            [split_ser.serialize(s) for s in snapshot.splits],
            committables,
            states,
            snapshot.duration_ms,
        )

    def _pipeline(self, name: str) -> Pipeline:
        for pipeline in self.graph.pipelines:
            if pipeline.name == name:
                return pipeline
        raise KeyError(name)

    def _commit(self, checkpoint_id: int) -> None:
        checkpoint = self._checkpoint
        try:
            if checkpoint is None or checkpoint.barrier.checkpoint_id != checkpoint_id:
                raise WorkerError(
                    "CheckpointError",
                    f"worker {self.worker} has no barrier of checkpoint {checkpoint_id} to commit",
                )
            snapshots = checkpoint.barrier.snapshots
            for name, committers in self.committers.items():
                for i, committer in enumerate(committers):
                    if committer is None:
                        continue
                    committables = [
                        c
                        for key, snap in sorted(snapshots.items())
                        if key[0] == name
                        for c in snap.committables[i]
                    ]
                    committer.commit(checkpoint_id, committables)
        except BaseException as exc:
            self.failed = True
            self.post(WorkerFailed(self.attempt, self.worker, portable_error(exc)))
            return
        self.post(CommitAck(self.attempt, self.worker, checkpoint_id))

    def _release(self, checkpoint_id: int, completed: bool) -> None:
        checkpoint = self._checkpoint
        if checkpoint is not None and checkpoint.barrier.checkpoint_id == checkpoint_id:
            self._checkpoint = None
            if completed:
                checkpoint.barrier.release()
            else:
                checkpoint.barrier.abort()
        for subtask in self.subtasks.values():
            subtask.send("complete" if completed else "aborted", checkpoint_id)

    # -- live view -------------------------------------------------------------------------

    def progress(self) -> Progress:
        return Progress(
            self.attempt,
            self.worker,
            [self._subtask_progress(key, s) for key, s in self.subtasks.items()],
        )

    def _subtask_progress(self, key: SubtaskKey, subtask: Subtask) -> SubtaskProgress:
        output = subtask.output
        return SubtaskProgress(
            key,
            output.records,
            subtask.records_out[0],
            output.watermark,
            output.idle,
            self._pending(key, subtask),
            subtask.closed,
        )

    def _pending(self, key: SubtaskKey, subtask: Subtask) -> int | None:
        if key in self.finished and key in self._pending_known:
            # Its reader reached the end of its input: nothing is pending there, even if
            # the reader's last figure (from librdkafka statistics) was stale.
            return 0
        if subtask.closed or key in self._pending_unknown:
            return None
        try:
            pending = subtask.reader.pending_records()
        except Exception:
            # A live view is no reason to fail the job; ask this reader no more.
            self._pending_unknown.add(key)
            log.warning(
                "pending_records of %s (subtask %s[%d]) failed; its lag is left out",
                type(subtask.reader).__name__,
                *key,
                exc_info=True,
            )
            return None
        if pending is not None:
            self._pending_known.add(key)
        return pending

    # -- teardown --------------------------------------------------------------------------

    def _end(self, graceful: bool) -> None:
        """Stop every subtask thread and release the committers."""
        checkpoint, self._checkpoint = self._checkpoint, None
        if checkpoint is not None:
            checkpoint.barrier.abort()
        for subtask in self.subtasks.values():
            if graceful:
                subtask.send("close")
            else:
                subtask.cancelled.set()
                subtask.wakeup.set()
        deadline = time.monotonic() + _CLOSE_WAIT_S
        for subtask in self.subtasks.values():
            if subtask.thread.ident is not None:
                subtask.thread.join(max(0.0, deadline - time.monotonic()))
            if subtask.thread.is_alive():
                log.warning(
                    "subtask %s did not stop within %.0f s; leaving it behind",
                    subtask.key,
                    _CLOSE_WAIT_S,
                )
                if graceful:
                    # Its reader or writers are still handing over their last records (a
                    # close waiting on brokers): what they may yet report would arrive after
                    # the attempt ended. Fail the job rather than end it without them.
                    self.post(
                        WorkerFailed(
                            self.attempt,
                            self.worker,
                            TimeoutError(
                                f"subtask {subtask.key[0]}[{subtask.key[1]}] did not close "
                                f"within {_CLOSE_WAIT_S:g} s of the end of the job: its reader "
                                "or writers were still waiting to deliver their last records "
                                "(see the log for what they waited on), so they may be lost",
                            ),
                            subtask.key,
                        )
                    )
        for committers in self.committers.values():
            for committer in committers:
                if committer is not None:
                    try:
                        committer.close()
                    except Exception:
                        log.exception("closing committer failed")
        if self.subtasks:
            # The coordinator's last look at this attempt's counters.
            self.post(self.progress())
        self.subtasks = {}
        self.committers = {}
