"""The ``processes`` runtime without a broker: worker slots in spawned processes, driven
through the worker protocol. Kafka exactly-once across worker processes is proved on the
real broker (tests/e2e/test_kafka_sink_crash.py, tests/integration/test_runtime_*)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from streamplug.connectors import CollectionSource, CollectSink
from streamplug.connectors.files import TransactionalFileSink
from streamplug.errors import ConfigError, JobFailedError
from streamplug.runtime import JobStatus, RestartStrategies, StreamExecutionEnvironment
from streamplug.runtime.messages import AssignmentRound, EndAttempt, StartAttempt, WorkerError
from streamplug.runtime.worker import JobGraph, WorkerSlot, portable_error

pytestmark = pytest.mark.timeout(120)


def square_plus_one(x: int) -> int:
    return x * x + 1


def _env(tmp_path: Path, parallelism: int = 2) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(parallelism).enable_checkpointing(100).set_runtime("processes")
    env.get_checkpoint_config().set_checkpoint_storage_dir(tmp_path / "checkpoints")
    return env


def test_a_job_runs_in_worker_processes_and_delivers_every_record(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    env = _env(tmp_path, parallelism=3)
    offset = 7
    source = CollectionSource(list(range(9000)), batch_size=100, records_per_second=9000)
    # A lambda closing over a local travels with cloudpickle.
    env.from_source(source, None, "n").map(square_plus_one).map(lambda v: v + offset).sink_to(
        CollectSink(path=out)
    )
    client = env.execute_async("in-processes")
    pids: list[int] = []
    deadline = time.monotonic() + 30
    while not pids and time.monotonic() < deadline:
        pids = client.worker_pids()
        time.sleep(0.05)
    result = client.wait(60)
    assert client.runtime == "processes"
    assert len(set(pids)) == 3 and os.getpid() not in pids
    values = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(values) == sorted(x * x + 1 + offset for x in range(9000))
    assert result.records_in == 9000 and result.records_out == 9000
    assert result.checkpoints_completed >= 1
    # The worker processes end with the job run.
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_killed_worker_process_restarts_the_attempt_and_output_stays_exact(
    tmp_path: Path,
) -> None:
    out = tmp_path / "published"
    env = _env(tmp_path)
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(3, 100))
    source = CollectionSource(list(range(4000)), batch_size=50, records_per_second=2000)
    env.from_source(source, None, "n").map(square_plus_one).sink_to(TransactionalFileSink(out))
    client = env.execute_async("kill-a-worker")
    killed: list[int] = []

    def kill_one_worker() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            metrics = client.metrics()
            pids = client.worker_pids()
            if pids and metrics.checkpoints_completed >= 2:
                os.kill(pids[-1], signal.SIGKILL)
                killed.append(pids[-1])
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    result = client.wait(90)
    killer.join()
    assert killed, "no worker was killed: the job ended too soon"
    assert result.attempts >= 2
    assert killed[0] not in client.worker_pids()
    published = TransactionalFileSink.read_committed(out)
    assert sorted(published) == sorted(x * x + 1 for x in range(4000))


def test_an_in_memory_collect_sink_is_refused_with_the_fix(tmp_path: Path) -> None:
    env = _env(tmp_path)
    env.from_source(CollectionSource([1, 2, 3]), None, "n").sink_to(CollectSink())
    started = time.monotonic()
    with pytest.raises(JobFailedError) as info:
        env.execute("in-memory")
    # A ConfigError from a worker keeps its class across the pipe: not retried.
    assert isinstance(info.value.__cause__, ConfigError)
    assert "CollectSink(path=...)" in str(info.value)
    # The error names where it happened: on a cluster the node is often the cause.
    assert f"on host {socket.gethostname()}" in str(info.value)
    assert time.monotonic() - started < 30


def test_a_module_a_worker_cannot_import_fails_at_once_naming_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a node without the job's plugin sees: the job graph names a module the worker
    cannot import. Not retried (a restart on the same node fails the same way)."""
    (tmp_path / "only_on_the_driver.py").write_text("def double(x):\n    return 2 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import only_on_the_driver  # type: ignore[import-not-found]

    # Still imported here (so cloudpickle ships a reference to it), gone for new processes.
    (tmp_path / "only_on_the_driver.py").unlink()
    shutil.rmtree(tmp_path / "__pycache__", ignore_errors=True)
    env = _env(tmp_path)
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(5, 100))
    env.from_source(CollectionSource([1, 2, 3]), None, "n").map(only_on_the_driver.double).sink_to(
        CollectSink(path=tmp_path / "o")
    )
    with pytest.raises(JobFailedError) as info:
        env.execute("missing-module")
    text = str(info.value)
    assert "could not load the job: ModuleNotFoundError" in text
    assert f"on host {socket.gethostname()}" in text and "after 1 attempt(s)" in text


def test_an_unknown_runtime_names_the_known_ones() -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    with pytest.raises(
        ConfigError, match=r"unknown runtime 'proceses'; did you mean 'processes'\?"
    ):
        env.set_runtime("proceses")
    if "ray" in env.plugin_host.names("runtime"):
        # streamplug-ray is installed here (tox's ray environment, a developer's venv).
        env.set_runtime("ray")
        assert env.get_runtime() == "ray"
    else:
        with pytest.raises(ConfigError, match="Install streamplug-ray"):
            env.set_runtime("ray")


def test_a_job_that_does_not_pickle_fails_with_a_clear_error(tmp_path: Path) -> None:
    env = _env(tmp_path)
    lock = threading.Lock()
    env.from_source(CollectionSource([1, 2, 3]), None, "n").map(lambda x: (lock, x)).sink_to(
        CollectSink(path=tmp_path / "o")
    )
    with pytest.raises(JobFailedError, match="cannot be shipped to worker processes"):
        env.execute("unpicklable")


def test_errors_cross_the_process_boundary_as_themselves_or_as_text() -> None:
    error = portable_error(ConfigError("bad", option="x"))
    assert isinstance(error, ConfigError) and error.option == "x"

    class Local(Exception):
        def __init__(self, a: int, b: int) -> None:
            super().__init__(f"{a}/{b}")

    wrapped = portable_error(Local(1, 2))
    assert isinstance(wrapped, WorkerError) and str(wrapped) == "Local: 1/2"


def test_a_slot_ignores_calls_of_another_attempt() -> None:
    """A call from an old attempt (a zombie coordinator, a late message) is refused."""
    env = StreamExecutionEnvironment.get_execution_environment()
    env.from_source(CollectionSource([1]), None, "n").sink_to(CollectSink())
    events: list[Any] = []
    graph = JobGraph("j", "id", 1, env.pipelines, env.checkpoint_config, 200)
    slot = WorkerSlot(graph, 0, [0], env.plugin_host, events.append)
    slot.handle(StartAttempt(3, None, {}, {}))
    try:
        subtask = slot.subtasks[("n", 0)]
        slot.handle(AssignmentRound(2, "n"))
        assert not subtask.control or all(m[0] != "assigned" for m in subtask.control)
        assert subtask.output.awaiting_assignment
    finally:
        slot.handle(EndAttempt(3, graceful=False))


def test_the_threads_runtime_stays_the_default() -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    assert env.get_runtime() == "threads"
    env.from_source(CollectionSource([1, 2]), None, "n").sink_to(sink := CollectSink())
    client = env.execute_async("default")
    client.wait(30)
    assert client.runtime == "threads" and client.worker_pids() == []
    assert sorted(sink.results) == [1, 2]
    assert client.status is JobStatus.FINISHED


def test_recovery_from_a_killed_worker_is_quick_and_ends_cleanly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A killed worker is replaced within seconds, and the run's end finds every process
    gone at once. (Before: the driver joined a worker from two threads; the loser of the
    waitpid race saw a reaped worker as running and waited 30 s for it, then killed a pid
    that was no longer its child.)"""
    caplog.set_level("WARNING", logger="streamplug.runtime.processes")
    for trial in range(3):
        env = _env(tmp_path / str(trial))
        env.set_restart_strategy(RestartStrategies.fixed_delay_restart(3, 0))
        source = CollectionSource(list(range(200_000)), batch_size=50, records_per_second=4000)
        env.from_source(source, None, "n").map(square_plus_one).sink_to(
            TransactionalFileSink(tmp_path / str(trial) / "out")
        )
        client = env.execute_async("failover")
        deadline = time.monotonic() + 30
        while client.metrics().checkpoints_completed < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(client.worker_pids()[-1], signal.SIGKILL)
        killed = time.monotonic()
        while client.metrics().attempt < 1 and time.monotonic() - killed < 30:
            time.sleep(0.005)
        base = client.metrics().records_in
        while client.metrics().records_in <= base and time.monotonic() - killed < 30:
            time.sleep(0.005)
        recovered = time.monotonic() - killed
        ending = time.monotonic()
        client.cancel()
        assert client.wait_quietly(20)
        assert recovered < 10, f"records flowed again {recovered:.1f} s after the kill"
        assert time.monotonic() - ending < 10
    assert not [r for r in caplog.records if "did not stop" in r.getMessage()]


def test_fewer_worker_processes_than_subtasks_host_several_subtasks_each(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    env = _env(tmp_path, parallelism=4)
    env.set_runtime("processes", workers=2)
    source = CollectionSource(list(range(4000)), batch_size=100, records_per_second=8000)
    env.from_source(source, None, "n").map(square_plus_one).sink_to(CollectSink(path=out))
    client = env.execute_async("two-slots-four-subtasks")
    pids: set[int] = set()
    while not client.wait_quietly(0.05):
        pids.update(client.worker_pids())
    client.wait(0)
    assert len(pids) == 2
    values = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(values) == sorted(x * x + 1 for x in range(4000))
    newest = client.checkpoint_storage.list()[0].document
    assert newest["subtask_workers"] == [0, 1, 0, 1]


def test_a_bad_workers_option_names_the_option() -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    with pytest.raises(ConfigError, match="workers must be a positive integer, got 0"):
        env.set_runtime("processes", workers=0)
