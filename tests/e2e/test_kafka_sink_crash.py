"""Crash tests of the Kafka sink on a real broker: Kafka -> map -> Kafka, parallelism 2,
checkpoints every 500 ms, 200,000 records; the job process is SIGKILLed over and over —
at random moments and at named fault points around the transaction commit and inside the
checkpoint write — and restarted each time. EXACTLY_ONCE must deliver every mapped record
exactly once to a read_committed reader; AT_LEAST_ONCE must lose nothing (its duplicates
are counted and reported). A third test stops the leader of an output partition of a
three-node cluster mid-run.

The job script is tests/e2e/jobs/sink_crash_job.py; a restart simply runs it again with
the same checkpoint directory.
"""

from __future__ import annotations

import collections
import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import attrs
import pytest
from kafka_job_support import (
    CHECKPOINT_FAULTS,
    SINK_FAULTS,
    check_exact,
    create_topics,
    expected,
    read_output,
)

from streamplug_kafka_common.admin import describe_partitions, read_all

# ~100 s of throttled processing plus 24 restarts come close to the suite-wide 300 s limit.
pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

JOB = Path(__file__).parent / "jobs" / "sink_crash_job.py"
RECORDS = 200_000
# Records/s per subtask. Unthrottled the job moves 200k records in ~2 s; slowed down it
# lives long enough (~100 s of processing) to be killed 20+ times before it finishes. The
# job also takes 100-record polls, so a checkpoint barrier waits at most ~0.1 s for the
# batch in flight, from the first batch of each run on.
RATE = 1_000


@attrs.frozen
class Kill:
    """One run of the job: killed by a fault point on its Nth hit, or after ``delay`` s."""

    fault: str | None = None
    nth: int = 1
    delay: float | None = None

    def describe(self) -> str:
        return f"{self.fault}:{self.nth}" if self.fault else f"timer {self.delay:.2f}s"


def kill_plan(
    rng: random.Random, faults: tuple[str, ...], fault_runs: int, timer_runs: int
) -> list[Kill]:
    plan = [Kill(fault=faults[i % len(faults)], nth=rng.randint(1, 2)) for i in range(fault_runs)]
    # Kills land from inside job start-up (a crash there is a crash too, ~0.6 s) to a few
    # checkpoints in; each run moves at most ~5k of the 200k records.
    plan += [Kill(delay=rng.uniform(0.5, 3.0)) for _ in range(timer_runs)]
    rng.shuffle(plan)
    return plan


@attrs.define
class CrashRun:
    kills: int = 0
    fault_hits: collections.Counter[str] = attrs.field(factory=collections.Counter)
    runs: int = 0
    log: list[str] = attrs.field(factory=list)


def run_until_done(
    args: list[str], plan: list[Kill], logs: Path, extra: Any = None, final_timeout: float = 240
) -> CrashRun:
    """Run the job once per plan entry (killing it as planned), then until it finishes."""
    result = CrashRun()
    env_base = {k: v for k, v in os.environ.items() if k != "STREAMPLUG_FAULT_POINTS"}
    for step in [*plan, None, None]:
        env = dict(env_base)
        if step is not None and step.fault:
            env["STREAMPLUG_FAULT_POINTS"] = f"{step.fault}:{step.nth}"
        log_path = logs / f"run-{result.runs:02d}.log"
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                [sys.executable, str(JOB), *args], stdout=log, stderr=subprocess.STDOUT, env=env
            )
            if extra is not None:
                extra(result.runs, proc)
            timeout = final_timeout if step is None or step.fault else step.delay
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                if step is None:
                    proc.kill()
                    proc.wait()
                    raise AssertionError(
                        f"the job did not finish within {final_timeout} s; see {log_path}"
                    ) from None
                proc.send_signal(signal.SIGKILL)
                rc = proc.wait()
        result.runs += 1
        text = log_path.read_text()
        what = step.describe() if step is not None else "to the end"
        if rc == -signal.SIGKILL:
            result.kills += 1
            if step is not None and step.fault and f"fault point {step.fault} reached" in text:
                result.fault_hits[step.fault] += 1
            result.log.append(f"run {result.runs}: {what}: killed")
            continue
        if rc == 0:
            assert "JOB FINISHED" in text
            result.log.append(f"run {result.runs}: {what}: finished")
            return result
        raise AssertionError(f"run {result.runs} ({what}) exited with {rc}:\n{text[-4000:]}")
    raise AssertionError("the job never finished:\n" + "\n".join(result.log))


def _setup(
    bootstrap: str, tmp_path: Path, guarantee: str, replication: int = 1, cluster: Any = None
) -> tuple[list[str], str]:
    config = {"min.insync.replicas": "2"} if replication > 1 else None
    source, sink = create_topics(bootstrap, RECORDS, 2, "crash", replication, config)
    checkpoints = tmp_path / "checkpoints"
    prefix = f"crash-{source.rsplit('-', 1)[1]}"
    args = [bootstrap, source, sink, guarantee, prefix, str(checkpoints), str(RATE)]
    return args, sink


def test_exactly_once_survives_twenty_plus_sigkills(kafka_bootstrap: str, tmp_path: Path) -> None:
    seed = int(os.environ.get("STREAMPLUG_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    args, sink = _setup(kafka_bootstrap, tmp_path, "exactly-once")
    plan = kill_plan(rng, SINK_FAULTS + CHECKPOINT_FAULTS, fault_runs=12, timer_runs=12)
    run = run_until_done(args, plan, tmp_path)
    print(f"seed {seed}: {run.kills} kills in {run.runs} runs; fault hits {dict(run.fault_hits)}")
    print("\n".join(run.log))
    assert run.kills >= 20, run.log
    assert set(run.fault_hits) == set(SINK_FAULTS + CHECKPOINT_FAULTS), run.fault_hits
    check_exact(kafka_bootstrap, sink, RECORDS, f"seed {seed}")
    # Per partition, the output keeps each subtask's order of the input.
    per_partition: dict[int, list[int]] = collections.defaultdict(list)
    for m in read_all(kafka_bootstrap, sink, "read_committed", timeout=120):
        per_partition[m.partition() or 0].append(int(m.value().decode().split(":")[0]))
    assert sum(len(v) for v in per_partition.values()) == RECORDS


def test_at_least_once_loses_nothing_and_counts_duplicates(
    kafka_bootstrap: str, tmp_path: Path, record_property: Any
) -> None:
    seed = int(os.environ.get("STREAMPLUG_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    args, sink = _setup(kafka_bootstrap, tmp_path, "at-least-once")
    # The sink's own fault points sit in the transactional commit, which ALO does not have.
    plan = kill_plan(rng, CHECKPOINT_FAULTS, fault_runs=12, timer_runs=12)
    run = run_until_done(args, plan, tmp_path)
    assert run.kills >= 20, run.log
    got = read_output(kafka_bootstrap, sink, "read_uncommitted")
    counts = collections.Counter(got)
    missing = set(expected(RECORDS)) - counts.keys()
    duplicates = len(got) - len(counts)
    record_property("alo_duplicates", duplicates)
    record_property("alo_kills", run.kills)
    print(
        f"seed {seed}: AT_LEAST_ONCE after {run.kills} kills: {len(got)} records, {duplicates} duplicates"
    )
    assert not missing, f"{len(missing)} records lost, e.g. {sorted(missing)[:5]}"
    assert set(counts) == set(expected(RECORDS))


def test_exactly_once_keeps_guarantee_when_output_leader_stops(
    kafka_cluster_3: Any, tmp_path: Path
) -> None:
    bootstrap = kafka_cluster_3.bootstrap_servers
    args, sink = _setup(bootstrap, tmp_path, "exactly-once", replication=3)
    stopped: list[int] = []

    def stop_leader_later(run_index: int, proc: subprocess.Popen[bytes]) -> None:
        def stop() -> None:
            time.sleep(4.0)
            if proc.poll() is None:
                leader = describe_partitions(bootstrap, sink)[0].leader
                stopped.append(leader)
                kafka_cluster_3.stop_node(leader)

        threading.Thread(target=stop, daemon=True).start()

    run = run_until_done(args, [], tmp_path, extra=stop_leader_later)
    assert stopped, "the leader was never stopped: the job ended too soon"
    assert describe_partitions(bootstrap, sink)[0].leader not in stopped
    for node in stopped:
        kafka_cluster_3.start_node(node)
    assert sorted(read_output(bootstrap, sink)) == sorted(expected(RECORDS)), run.log


# -- the processes runtime: worker processes die too -----------------------------------------

WORKER_FAULTS = tuple(f"{f}@{w}" for f in SINK_FAULTS for w in (0, 1))


@attrs.frozen
class ProcessKill:
    """One run of the job on the processes runtime. ``target`` "driver": killed by a
    checkpoint fault point or after ``delay`` s. ``target`` "worker": a worker process
    dies (at a sink fault point of its slot, or SIGKILLed after ``delay`` s), the driver
    restarts the attempt by itself, and ``grace`` s later the driver is killed too."""

    target: str
    fault: str | None = None
    nth: int = 1
    delay: float = 0.0
    grace: float = 0.0

    def describe(self) -> str:
        how = f"{self.fault}:{self.nth}" if self.fault else f"timer {self.delay:.2f}s"
        return f"{self.target} {how}"


def process_kill_plan(rng: random.Random) -> list[ProcessKill]:
    plan = [
        ProcessKill("driver", fault=CHECKPOINT_FAULTS[i % 4], nth=rng.randint(1, 2))
        for i in range(6)
    ]
    plan += [
        ProcessKill(
            "worker", fault=WORKER_FAULTS[i % 4], nth=rng.randint(1, 2), grace=rng.uniform(1, 3)
        )
        for i in range(6)
    ]
    plan += [ProcessKill("driver", delay=rng.uniform(1.0, 4.0)) for _ in range(6)]
    plan += [
        ProcessKill("worker", delay=rng.uniform(1.0, 4.0), grace=rng.uniform(1, 3))
        for _ in range(6)
    ]
    rng.shuffle(plan)
    return plan


def _latest_workers(text: str) -> list[int]:
    lines = [line for line in text.splitlines() if line.startswith("WORKERS ")]
    return [int(p) for p in lines[-1].split()[1:]] if lines else []


def run_processes_until_done(
    args: list[str], plan: list[ProcessKill], logs: Path, rng: random.Random
) -> CrashRun:
    result = CrashRun()
    worker_kills = 0
    env_base = {k: v for k, v in os.environ.items() if k != "STREAMPLUG_FAULT_POINTS"}
    env_base["STREAMPLUG_TEST_RUNTIME"] = "processes"
    for step in [*plan, None, None]:
        env = dict(env_base)
        if step is not None and step.fault:
            env["STREAMPLUG_FAULT_POINTS"] = f"{step.fault}:{step.nth}"
        log_path = logs / f"proc-run-{result.runs:02d}.log"
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                [sys.executable, str(JOB), *args], stdout=log, stderr=subprocess.STDOUT, env=env
            )
            started = time.monotonic()
            if step is not None and step.target == "worker":
                killed_worker = False
                deadline = started + 60
                while proc.poll() is None and time.monotonic() < deadline:
                    text = log_path.read_text()
                    if step.fault and f"fault point {step.fault.split('@')[0]} reached" in text:
                        killed_worker = True
                        break
                    pids = _latest_workers(text)
                    if not step.fault and pids and time.monotonic() - started >= step.delay:
                        victim = rng.choice(pids)
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(victim, signal.SIGKILL)
                        killed_worker = True
                        break
                    time.sleep(0.05)
                if killed_worker:
                    worker_kills += 1
                    result.kills += 1
                    result.fault_hits[f"worker {step.fault or 'timer'}"] += 1
                # The driver restarts the attempt on its own; let it, then kill it too.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=step.grace)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                rc = proc.wait()
            else:
                timeout = 240 if step is None or step.fault else step.delay
                try:
                    rc = proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    if step is None:
                        proc.kill()
                        proc.wait()
                        raise AssertionError(f"the job did not finish; see {log_path}") from None
                    proc.send_signal(signal.SIGKILL)
                    rc = proc.wait()
        result.runs += 1
        text = log_path.read_text()
        what = step.describe() if step is not None else "to the end"
        if rc == -signal.SIGKILL:
            result.kills += 1
            driver_fault = step is not None and step.target == "driver" and step.fault
            if driver_fault and f"fault point {step.fault} reached" in text:
                result.fault_hits[str(step.fault)] += 1
            result.log.append(f"run {result.runs}: {what}: killed")
            continue
        if rc == 0:
            assert "JOB FINISHED" in text
            result.log.append(f"run {result.runs}: {what}: finished")
            result.log.append(f"worker processes killed: {worker_kills}")
            return result
        raise AssertionError(f"run {result.runs} ({what}) exited with {rc}:\n{text[-4000:]}")
    raise AssertionError("the job never finished:\n" + "\n".join(result.log))


def test_exactly_once_survives_killed_workers_and_drivers_on_processes_runtime(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("STREAMPLUG_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    args, sink = _setup(kafka_bootstrap, tmp_path, "exactly-once")
    plan = process_kill_plan(rng)
    run = run_processes_until_done(args, plan, tmp_path, rng)
    print(f"seed {seed}: {run.kills} kills in {run.runs} runs; hits {dict(run.fault_hits)}")
    print("\n".join(run.log))
    assert run.kills >= 20, run.log
    worker_hits = sum(n for k, n in run.fault_hits.items() if k.startswith("worker"))
    assert worker_hits >= 8, run.fault_hits
    assert set(CHECKPOINT_FAULTS) <= set(run.fault_hits), run.fault_hits
    check_exact(kafka_bootstrap, sink, RECORDS, f"seed {seed}")
