"""SIGKILL the job process at random moments and inside checkpoint writes; each restart
resumes from the last completed checkpoint and the output matches the input."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamplug.connectors import TransactionalFileSink
from streamplug.runtime import FileCheckpointStorage

JOB = Path(__file__).parent / "jobs" / "core_collection_job.py"
RECORDS = 20_000
EXPECTED = [x * 10 for x in range(RECORDS)]

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _start(tmp: Path, sink: str, faults: str = "") -> subprocess.Popen[str]:
    env = dict(os.environ, STREAMPLUG_FAULT_POINTS=faults, STREAMPLUG_DISABLE_PLUGIN_AUTOLOAD="1")
    cmd = [
        sys.executable,
        str(JOB),
        "--storage",
        str(tmp / "chk"),
        "--out",
        str(tmp / "out"),
        "--sink",
        sink,
        "--records",
        str(RECORDS),
        "--rate",
        "1500",
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _completed_ids(tmp: Path) -> list[int]:
    return [
        c.checkpoint_id
        for c in FileCheckpointStorage(tmp / "chk", "crash-test").list()
        if c.status == "COMPLETE"
    ]


def _run_with_kills(
    tmp: Path, sink: str, kills: int, fault_runs: list[str]
) -> list[dict[str, object]]:
    rng = random.Random(20261121)
    killed = 0
    restores: list[int | None] = []
    for faults in fault_runs:
        proc = _start(tmp, sink, faults)
        proc.wait(60)
        assert proc.returncode == -signal.SIGKILL, (
            f"fault {faults} never fired: {proc.stderr.read() if proc.stderr else ''}"
        )
        killed += 1
    while killed < kills:
        before = _completed_ids(tmp)
        proc = _start(tmp, sink)
        time.sleep(rng.uniform(0.4, 1.2))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed += 1
        restores.append(max(before) if before else None)
    assert killed >= kills, f"the job finished after only {killed} kills: make it last longer"
    proc = _start(tmp, sink)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    return [{"kills": killed, **summary}]


def test_at_least_once_output_survives_sigkills(tmp_path: Path) -> None:
    faults = [
        "checkpoint.during_write:3",
        "checkpoint.after_pending:4",
        "checkpoint.before_complete:2",
    ]
    report = _run_with_kills(tmp_path, "at-least-once", kills=8, fault_runs=faults)[0]
    lines = [
        json.loads(line) for line in (tmp_path / "out").read_text().splitlines() if line.strip()
    ]
    assert set(lines) == set(EXPECTED), f"lost {len(set(EXPECTED) - set(lines))} records"
    # The last run resumed from a checkpoint instead of starting over.
    assert report["restored_from"] is not None
    assert int(report["records_in"]) < RECORDS
    print(f"at-least-once: {report['kills']} kills, {len(lines) - RECORDS} duplicates")


def test_exactly_once_file_output_survives_sigkills(tmp_path: Path) -> None:
    faults = [
        "checkpoint.during_write:2",
        "checkpoint.after_pending:3",
        "checkpoint.before_complete:3",
    ]
    _run_with_kills(tmp_path, "exactly-once", kills=8, fault_runs=faults)
    out = TransactionalFileSink.read_committed(tmp_path / "out")
    assert sorted(out) == EXPECTED


@pytest.mark.parametrize(
    ("hit", "survivor", "status_before"),
    # Writes go PENDING 1, COMPLETE 1, PENDING 2, COMPLETE 2, PENDING 3...: hit 5 tears the
    # PENDING write of checkpoint 3, hit 4 tears the COMPLETE rewrite of checkpoint 2.
    [(5, 2, "COMPLETE"), (4, 2, "PENDING")],
)
def test_a_crash_while_writing_a_checkpoint_leaves_the_previous_one_usable(
    tmp_path: Path, hit: int, survivor: int, status_before: str
) -> None:
    proc = _start(tmp_path, "exactly-once", f"checkpoint.during_write:{hit}")
    proc.wait(60)
    assert proc.returncode == -signal.SIGKILL
    storage = FileCheckpointStorage(tmp_path / "chk", "crash-test")
    assert list(storage.directory.glob(".chk-*.tmp")), (
        "the kill did not happen inside a checkpoint write"
    )
    newest = storage.list()[0]
    assert (newest.checkpoint_id, newest.status) == (survivor, status_before)
    proc = _start(tmp_path, "exactly-once")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["restored_from"] == survivor
    assert sorted(TransactionalFileSink.read_committed(tmp_path / "out")) == EXPECTED
