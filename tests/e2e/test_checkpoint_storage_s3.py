"""Checkpoints in S3 under crashes: the Kafka -> map -> Kafka crash job of the sink tests,
EXACTLY_ONCE on the real broker, checkpointing to ``s3://`` on an S3 server the suite
starts (moto's, over HTTP), SIGKILLed again and again -- at the sink's commit, around the
checkpoint PUTs and at random moments -- and restarted each time. A read_committed reader
must see every mapped record exactly once, and neither the checkpoints nor the job's logs
may hold the storage secret. Credentials reach the job the way an operator would give
them: AWS_* environment variables, nothing in the job's code."""

from __future__ import annotations

import json
import os
import random
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from kafka_job_support import check_exact, produce_input
from test_kafka_sink_crash import (
    CrashRun,
    Kill,
    ProcessKill,
    run_processes_until_done,
    run_until_done,
)

from streamplug.runtime.storage import COMPLETE, open_checkpoint_storage
from streamplug_kafka_common.admin import create_topic

if TYPE_CHECKING:
    from tests.conftest import S3Server

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

# 30,000 per subtask at 1,000 records/s: ~30 s of processing, well beyond what the ~9
# killed runs move together (10-20 s), so every planned kill happens before the input ends.
RECORDS = 60_000
RATE = 1_000
FAULTS = (
    "kafka_sink.before_commit",
    "kafka_sink.after_commit",
    "checkpoint.before_write",
    "checkpoint.after_pending",
    "checkpoint.before_complete",
)


def _start(
    kafka_bootstrap: str, s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], str, str, str]:
    """Topics with the input, a bucket, AWS_* in the environment the job runs inherit;
    returns the job's arguments, the output topic, the storage URL and the job name."""
    tag = uuid.uuid4().hex[:8]
    source, sink = f"s3-in-{tag}", f"s3-out-{tag}"
    create_topic(kafka_bootstrap, source, 2, 1)
    create_topic(kafka_bootstrap, sink, 2, 1)
    produce_input(kafka_bootstrap, source, RECORDS)
    storage_url = f"s3://{s3_server.new_bucket()}/checkpoints"
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    # Each job run starts in tmp_path: a storage URL mistaken for a path would land there.
    monkeypatch.chdir(tmp_path)
    args = [kafka_bootstrap, source, sink, "exactly-once", f"s3-{tag}", storage_url, str(RATE)]
    return args, sink, storage_url, f"sink-crash-s3-{tag}"


def _check(
    kafka_bootstrap: str,
    s3_server: S3Server,
    tmp_path: Path,
    run: CrashRun,
    sink: str,
    storage_url: str,
    job: str,
    seed: int,
) -> None:
    check_exact(kafka_bootstrap, sink, RECORDS, f"seed {seed}")

    storage = open_checkpoint_storage(storage_url, job, s3_server.options)
    checkpoints = storage.list()
    assert checkpoints and checkpoints[0].status == COMPLETE and checkpoints[0].is_final
    for checkpoint in checkpoints:
        assert s3_server.secret not in json.dumps(checkpoint.document)
    logs = "".join(log.read_text() for log in sorted(tmp_path.glob("*run-*.log")))
    assert s3_server.secret not in logs
    # The runs really resumed from S3, and recovery resolved PENDING checkpoints found there.
    # (A kill before a run's first checkpoint leaves nothing new, so not every run restores.)
    restores = logs.count(f"restores checkpoint {storage_url}/{job}/chk-")
    assert restores >= 2, logs[-4000:]
    # The kill after a sink commit left a PENDING checkpoint whose commit took effect.
    assert "promoted PENDING checkpoint" in logs, logs[-4000:]
    assert not (tmp_path / "s3:").exists(), "the storage URL was taken for a local path"
    # Every object the job wrote is a checkpoint or the worker-slot record: an object store
    # write needs no temporaries.
    assert all(n.startswith("chk-") or n == "workers.json" for n in storage.names()), (
        storage.names()
    )


def test_exactly_once_with_checkpoints_in_s3_survives_sigkills(
    kafka_bootstrap: str,
    s3_server: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed = int(os.environ.get("STREAMPLUG_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    args, sink, storage_url, job = _start(kafka_bootstrap, s3_server, tmp_path, monkeypatch)
    plan = [Kill(fault=f, nth=rng.randint(1, 2)) for f in FAULTS]
    plan += [Kill(delay=rng.uniform(0.8, 3.0)) for _ in range(4)]
    rng.shuffle(plan)

    run = run_until_done(args, plan, tmp_path)

    print(f"seed {seed}: {run.kills} kills in {run.runs} runs; fault hits {dict(run.fault_hits)}")
    print("\n".join(run.log))
    assert run.kills >= 8, run.log
    assert set(run.fault_hits) == set(FAULTS), run.fault_hits
    _check(kafka_bootstrap, s3_server, tmp_path, run, sink, storage_url, job, seed)


def test_processes_runtime_with_checkpoints_in_s3_survives_killed_workers_and_drivers(
    kafka_bootstrap: str,
    s3_server: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Worker processes hold the records and the transactions; the driver alone reads and
    writes S3. Kill either, at fault points and at random."""
    seed = int(os.environ.get("STREAMPLUG_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    args, sink, storage_url, job = _start(kafka_bootstrap, s3_server, tmp_path, monkeypatch)
    driver_faults = (
        "checkpoint.before_write",
        "checkpoint.after_pending",
        "checkpoint.before_complete",
    )
    plan = [ProcessKill("driver", fault=f, nth=rng.randint(1, 2)) for f in driver_faults]
    plan += [
        ProcessKill("worker", fault=f, nth=rng.randint(1, 2), grace=rng.uniform(1, 3))
        for f in ("kafka_sink.before_commit@0", "kafka_sink.after_commit@1")
    ]
    plan += [ProcessKill("driver", delay=rng.uniform(1.0, 4.0)) for _ in range(2)]
    plan += [ProcessKill("worker", delay=rng.uniform(1.0, 4.0), grace=rng.uniform(1, 3))]
    rng.shuffle(plan)

    run = run_processes_until_done(args, plan, tmp_path, rng)

    print(f"seed {seed}: {run.kills} kills in {run.runs} runs; hits {dict(run.fault_hits)}")
    print("\n".join(run.log))
    assert run.kills >= 8, run.log
    assert sum(n for k, n in run.fault_hits.items() if k.startswith("worker")) >= 2, run.fault_hits
    assert set(driver_faults) <= set(run.fault_hits), run.fault_hits
    logs = "".join(log.read_text() for log in sorted(tmp_path.glob("proc-run-*.log")))
    assert "WORKERS " in logs, "the job ran on the processes runtime"
    _check(kafka_bootstrap, s3_server, tmp_path, run, sink, storage_url, job, seed)
