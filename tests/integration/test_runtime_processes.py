"""The ``processes`` runtime on the real broker: Kafka -> map -> Kafka EXACTLY_ONCE with one
transactional producer per worker process, a checkpoint committed by one worker slot and
not the other (the merge rule), and rescaling 2 -> 3 -> 1 across restarts."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kafka_job_support import SOURCE_NAME, Throttle, add_kafka_job, check_exact, create_topics

from streamplug.runtime import RestartStrategies, StreamExecutionEnvironment, faults

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _job(
    bootstrap: str,
    source_topic: str,
    sink_topic: str,
    prefix: str,
    checkpoints: Path,
    parallelism: int,
    runtime: str,
    rate: int,
) -> StreamExecutionEnvironment:
    """The tests' Kafka -> map -> Kafka EXACTLY_ONCE job (kafka_job_support), its map at
    most ``rate`` records a second per subtask, so a test can stop or break it while it runs."""
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(parallelism).enable_checkpointing(300).set_runtime(runtime)
    env.get_checkpoint_config().set_checkpoint_storage_dir(checkpoints)
    env.get_checkpoint_config().set_restore("latest")
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(3, 100))
    add_kafka_job(env, bootstrap, source_topic, sink_topic, prefix, map_function=Throttle(rate))
    return env


def test_each_worker_process_commits_its_own_transaction(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    records = 6_000
    source, sink = create_topics(kafka_bootstrap, records, 6, "proc")
    prefix = f"proc-{uuid.uuid4().hex[:8]}"
    env = _job(kafka_bootstrap, source, sink, prefix, tmp_path / "chk", 3, "processes", 1500)
    client = env.execute_async("per-worker-transactions")
    result = client.wait(180)
    assert result.attempts == 1 and result.checkpoints_completed >= 2
    check_exact(kafka_bootstrap, sink, records)
    newest = client.checkpoint_storage.list()[0].document
    assert newest["subtask_workers"] == [0, 1, 2]
    committables = newest["pipelines"][SOURCE_NAME]["sinks"][0]["committables_by_worker"]
    assert {w: [c["transactional_id"] for c in items] for w, items in committables.items()} == {
        "0": [f"{prefix}-0"],
        "1": [f"{prefix}-1"],
        "2": [f"{prefix}-2"],
    }


def test_a_checkpoint_committed_by_one_worker_only_is_merged_and_output_stays_exact(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """Worker slot 1 dies right before its third commit while slot 0 commits: recovery must
    keep slot 0's progress and rewind only slot 1's splits."""
    records = 8_000
    source, sink = create_topics(kafka_bootstrap, records, 6, "proc")
    prefix = f"merge-{uuid.uuid4().hex[:8]}"
    # Worker processes inherit the plan; the driver has no slot, so "@1" never fires here.
    monkeypatch.setenv(faults.ENV, "kafka_sink.before_commit@1:3")
    faults.reset()
    env = _job(kafka_bootstrap, source, sink, prefix, tmp_path / "chk", 2, "processes", 1500)
    caplog.set_level("INFO", logger="streamplug.runtime")
    result = env.execute("merge")
    assert result.attempts == 2, "worker 1 was never killed at its commit"
    merged = [r.getMessage() for r in caplog.records if "merged checkpoint" in r.getMessage()]
    assert merged and "committed in worker slots [0] and not in [1]" in merged[0], merged
    check_exact(kafka_bootstrap, sink, records)


def test_rescale_2_to_3_to_1_keeps_exactly_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    records = 12_000
    source, sink = create_topics(kafka_bootstrap, records, 6, "proc")
    prefix = f"rescale-{uuid.uuid4().hex[:8]}"
    checkpoints = tmp_path / "chk"
    progress = []
    for parallelism, runtime in ((2, "processes"), (3, "processes")):
        env = _job(kafka_bootstrap, source, sink, prefix, checkpoints, parallelism, runtime, 500)
        client = env.execute_async("rescale")
        deadline = time.monotonic() + 60
        while client.metrics().records_out < 1000 and time.monotonic() < deadline:
            time.sleep(0.1)
        final = client.stop(timeout=120)
        assert final is not None and client.status.value == "FINISHED"
        document = json.loads(Path(final).read_text())
        assert document["final"] and document["parallelism"] == parallelism
        progress.append(client.metrics().records_in)
    # The last leg at parallelism 1 on the threads runtime reads to the end.
    env = _job(kafka_bootstrap, source, sink, prefix, checkpoints, 1, "threads", 100_000)
    result = env.execute("rescale")
    assert result.attempts == 1
    assert all(p > 0 for p in progress), progress
    check_exact(kafka_bootstrap, sink, records)


def test_killing_the_driver_ends_its_workers(kafka_bootstrap: str, tmp_path: Path) -> None:
    """A worker process never outlives its driver: with the driver gone it exits at once,
    so it can never commit on its own."""
    import os
    import signal
    import subprocess
    import sys

    script = tmp_path / "job.py"
    script.write_text(
        "import time\n"
        "from streamplug.connectors import CollectionSource, CollectSink\n"
        "from streamplug.runtime import StreamExecutionEnvironment\n"
        "if __name__ == '__main__':\n"
        "    env = StreamExecutionEnvironment.get_execution_environment()\n"
        "    env.set_parallelism(2).set_runtime('processes')\n"
        f"    sink = CollectSink(path={str(tmp_path / 'out')!r})\n"
        "    env.from_source(CollectionSource(list(range(10**6)), records_per_second=100), None, 'n').sink_to(sink)\n"
        "    client = env.execute_async('forever')\n"
        "    while not client.worker_pids():\n"
        "        time.sleep(0.05)\n"
        "    print(' '.join(map(str, client.worker_pids())), flush=True)\n"
        "    client.wait()\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    gone = threading.Event()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not gone.is_set():
        alive = []
        for pid in pids:
            try:
                os.kill(pid, 0)
                alive.append(pid)
            except ProcessLookupError:
                pass
        if not alive:
            gone.set()
        time.sleep(0.1)
    assert gone.is_set(), f"worker processes {pids} outlived their killed driver"


def test_secrets_reach_worker_processes_without_being_printed_or_checkpointed(
    kafka_bootstrap: str, tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: Any
) -> None:
    """The job graph (with its client secrets) travels to the workers pickled over a pipe:
    nothing of it may show in the driver's or the workers' output, in errors or in the
    checkpoints. (SASL settings on a plaintext broker: librdkafka accepts and ignores them.)"""
    secret = f"pw-{uuid.uuid4().hex}"
    records = 2_000
    source, sink = create_topics(kafka_bootstrap, records, 6, "proc")
    prefix = f"secret-{uuid.uuid4().hex[:8]}"
    env = _job(kafka_bootstrap, source, sink, prefix, tmp_path / "chk", 2, "processes", 100_000)
    for pipeline in env.pipelines:
        pipeline.source.properties.update({"sasl.username": "u", "sasl.password": secret})
        for kafka_sink, _ in pipeline.sinks():
            kafka_sink.properties.update({"sasl.username": "u", "sasl.password": secret})
    caplog.set_level("DEBUG")
    client = env.execute_async("secrets")
    client.wait(120)
    check_exact(kafka_bootstrap, sink, records)
    out, err = capfd.readouterr()
    shown = [repr(client), repr(env.pipelines[0].source), *(r.getMessage() for r in caplog.records)]
    assert secret not in out + err
    assert not [text for text in shown if secret in text]
    for path in (tmp_path / "chk").rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path
