"""End-to-end latency at a fixed input rate.

Per run: a fresh input topic holding a few warm-up records, the job started on it,
bounded at the offsets the input will end at, and a reader on the output (its own
process; read_committed for exactly-once). Once the first warm-up record has come out
the other side (the job is running), the input producer sends ``rate`` records a
second for ``seconds``, each stamped with the time the schedule says it is due. The
reader's latency is its receive time minus that stamp; the first 3 seconds of the schedule
are left out (the job's first batches after start-up, a JVM's compilation)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import _kafka

from compare.configs import Config
from compare.run import (
    CHECKPOINT_MS,
    PARTITIONS,
    RUNNERS,
    RunnerFailed,
    create_topic,
    delete_topic,
    finish_runner,
    settle,
    start_runner,
)

WARMUP_RECORDS = 60 * PARTITIONS
SKIP_SECONDS = 3.0


@dataclasses.dataclass
class LatencyOutcome:
    config: str
    round: int
    rate: int
    p50_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    max_ms: float | None = None
    input_lag_p50_ms: float | None = None
    input_lag_p99_ms: float | None = None
    job_p50_ms: float | None = None
    job_p99_ms: float | None = None
    achieved_rate: float | None = None
    load1: float = float("nan")
    wrong: str | None = None


def _paced_produce(bootstrap: str, topic: str, start: int, count: int, rate: int) -> float:
    """Send ``count`` records at ``rate``/s, each stamped with its due time; returns the
    rate achieved."""
    p = _kafka.producer(bootstrap, **{"linger.ms": 1})
    produce, poll = p.produce, p.poll
    t0 = time.time() + 0.01
    sent = 0
    while sent < count:
        now = time.time()
        due = min(count, int((now - t0) * rate) + 1)
        while sent < due:
            seq = start + sent
            stamp = int((t0 + sent / rate) * 1_000_000)
            try:
                produce(topic, _kafka.value_of(seq, stamp), partition=seq % PARTITIONS)
            except BufferError:
                poll(0.001)
                continue
            sent += 1
        poll(0)
        time.sleep(0.0005)
    elapsed = time.time() - t0
    p.flush(30)
    return count / elapsed


def latency_run(
    config: Config, round_no: int, bootstrap: str, rate: int, seconds: float
) -> LatencyOutcome:
    outcome = LatencyOutcome(config.name, round_no, rate, load1=os.getloadavg()[0])
    count = int(rate * seconds)
    total = WARMUP_RECORDS + count
    topic_in = f"bench-lat-in-{uuid.uuid4().hex[:10]}"
    topic_out = f"bench-lat-out-{uuid.uuid4().hex[:10]}"
    # The broker's append time on the input: the reader splits each record's latency into
    # the input's lag and the job's from it (runners/latency_reader.py).
    create_topic(bootstrap, topic_in, log_append_time=True)
    create_topic(bootstrap, topic_out)
    warm = _kafka.producer(bootstrap)
    _kafka.produce_range(warm, topic_in, 0, WARMUP_RECORDS, PARTITIONS, keyed=False)
    warm.flush(30)
    workdir = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    committed = config.guarantee == "EXACTLY_ONCE"
    reader_spec = {
        "bootstrap": bootstrap,
        "out": topic_out,
        "in": topic_in,
        "total": total,
        "partitions": PARTITIONS,
        "keyed": False,
        "committed": committed,
        "measure_from_seq": WARMUP_RECORDS + int(rate * SKIP_SECONDS),
        "timeout": 120 + seconds,
    }
    settle()
    reader = subprocess.Popen(
        [sys.executable, str(RUNNERS / "latency_reader.py"), json.dumps(reader_spec)],
        stdout=subprocess.PIPE,
        stderr=(workdir / "reader.log").open("w"),
        text=True,
    )
    spec: dict[str, Any] = {
        "bootstrap": bootstrap,
        "in": topic_in,
        "out": topic_out,
        "mode": config.guarantee,
        "keyed": False,
        "records": total,
        "partitions": PARTITIONS,
        "parallelism": config.parallelism,
        "checkpoint_ms": CHECKPOINT_MS,
        "stop": _kafka.stop_offsets(total, PARTITIONS),
        "workdir": str(workdir),
        "timestamps": config.copies_timestamps,
    }
    log = workdir / "runner.log"
    try:
        job = start_runner(config, spec, log)
        assert reader.stdout is not None
        line = reader.stdout.readline()  # FIRST: the job is running end to end
        if not line.startswith("FIRST"):
            raise RunnerFailed(f"no output from the job (log {log})")
        outcome.achieved_rate = _paced_produce(bootstrap, topic_in, WARMUP_RECORDS, count, rate)
        finish_runner(job, timeout=120 + seconds, log=log)
        out, _ = reader.communicate(timeout=180 + seconds)
    except (RunnerFailed, subprocess.TimeoutExpired) as e:
        reader.kill()
        outcome.wrong = f"run failed: {e}"
        return outcome
    finally:
        delete_topic(bootstrap, topic_in)
        delete_topic(bootstrap, topic_out)
    result = json.loads(out[out.rindex("RESULT ") + len("RESULT ") :])
    for key in (
        "p50_ms",
        "p99_ms",
        "p999_ms",
        "max_ms",
        "input_lag_p50_ms",
        "input_lag_p99_ms",
        "job_p50_ms",
        "job_p99_ms",
    ):
        setattr(outcome, key, result[key])
    problems = []
    if result["distinct"] < total or result["gaps"] or result["invalid"]:
        problems.append(f"{total - result['distinct']} of {total} records missing")
    if committed and (result["duplicates"] or result["markers"] <= 0):
        problems.append(f"{result['duplicates']} duplicates, {result['markers']} markers")
    outcome.wrong = "; ".join(problems) or None
    return outcome
