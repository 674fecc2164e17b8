"""Running a job: attempts, restarts and the ``JobClient``.

One job run is a thread that executes attempts (``coordinator.Attempt``) until one finishes
or the restart strategy gives up. The run owns what outlives an attempt: the runtime that
hosts the worker slots, the checkpoint storage, the live metrics and the checkpoint ids.
"""

from __future__ import annotations

import enum
import logging
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from streamplug.errors import ConfigError, JobCancelledError, JobFailedError, unrecoverable_cause
from streamplug.metrics import MetricGroup
from streamplug.plugins import JobInfo
from streamplug.runtime.coordinator import Attempt as _Attempt
from streamplug.runtime.coordinator import Stop as _Stop
from streamplug.runtime.joblock import JobLock
from streamplug.runtime.restart import fresh
from streamplug.runtime.runtimes import Runtime
from streamplug.runtime.storage import CheckpointStorage, open_checkpoint_storage
from streamplug.runtime.worker import JobGraph

if TYPE_CHECKING:
    from streamplug.runtime.environment import StreamExecutionEnvironment

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
        self.graph = JobGraph(
            job_name,
            self.job_id,
            env.parallelism,
            list(env.pipelines),
            env.checkpoint_config,
            env.auto_watermark_interval_ms,
        )
        self.runtime: Runtime = env.create_runtime()
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

    def mark_running(self) -> None:
        self.set_status(JobStatus.RUNNING)

    def worker_pids(self) -> list[int]:
        return self.runtime.worker_pids()

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

        # Only storage the user named can be shared with another run; a temporary one not.
        lock = JobLock(self.storage, self.job_name) if self._tmpdir is None else None
        try:
            while True:
                attempt: _Attempt | None = None
                self.attempts = number + 1
                self.metrics.attempt = number
                try:
                    if lock is not None and not lock.held:
                        # Part of the attempt: storage trouble restarts like any failure,
                        # another run holding the lock (JobLockedError) fails at once.
                        lock.acquire()
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
            try:
                self.runtime.close()
            except Exception:
                log.exception("closing the %s runtime failed", self.runtime.name)
            if lock is not None:
                lock.release()
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
    def runtime(self) -> str:
        """The name of the runtime hosting the job's worker slots."""
        return self._run.runtime.name

    def worker_pids(self) -> list[int]:
        """Process ids of the worker slots that run in processes of their own (empty for
        the ``threads`` runtime), e.g. to watch or kill one in a test."""
        return self._run.worker_pids()

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
            notes = "".join(f" ({note})" for note in getattr(run.error, "__notes__", ()))
            raise JobFailedError(
                f"job {run.job_name!r} failed after {run.attempts} attempt(s): "
                f"{type(run.error).__name__}: {run.error}{notes}"
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

    def wait_quietly(self, timeout: float | None = None) -> bool:
        """Wait for the end without raising for its outcome; True if the job ended."""
        return self._run.done.wait(timeout)
