"""``streamplug demo`` as the README runs it: embedded broker, default size, under a minute,
closing check passed; and with ``--bootstrap-servers`` against a real Kafka."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def _demo(*args: str, timeout: float = 180) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "streamplug.cli", "demo", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return run, time.monotonic() - started


def _check_line(stdout: str) -> re.Match[str]:
    m = re.search(
        r"check (PASSED|FAILED): ([\d,]+) committed output records for ([\d,]+) input events "
        r"\(([\d,]+) missing, ([\d,]+) duplicated, ([\d,]+) wrong\)",
        stdout,
    )
    assert m, stdout
    return m


def test_demo_on_the_embedded_broker_passes_its_check_in_under_a_minute(tmp_path: Path) -> None:
    run, elapsed = _demo("--checkpoint-dir", str(tmp_path / "chk"))
    assert run.returncode == 0, run.stdout + run.stderr
    m = _check_line(run.stdout)
    assert m.group(1) == "PASSED"
    assert m.group(2) == m.group(3) == "200,000"
    assert m.group(4) == m.group(5) == m.group(6) == "0"
    # The whole command, interpreter start-up included.
    assert elapsed < 60, f"demo took {elapsed:.1f} s"
    assert "embedded Kafka (librdkafka mock cluster" in run.stdout
    # Progress went to stderr (a line every 2 s when not on a terminal), with every field.
    progress = [ln for ln in run.stderr.splitlines() if re.match(r"\[\s*\d+\.\d+s\]", ln)]
    assert progress, run.stderr
    last = progress[-1]
    for field in ("FINISHED", "in 200.0k", "out 200.0k", "lag 0", "checkpoints", "watermark"):
        assert field in last, last
    assert re.search(r"\(\d[\d.]*k?/s\)", " ".join(progress)), progress
    # Its checkpoints are there to inspect, the last one final and COMPLETE.
    listing = subprocess.run(
        [sys.executable, "-m", "streamplug.cli", "checkpoints", "list", str(tmp_path / "chk")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listing.returncode == 0, listing.stderr
    assert "COMPLETE (final)" in listing.stdout


@pytest.mark.integration
def test_demo_against_a_real_kafka_with_bootstrap_servers(kafka_bootstrap: str) -> None:
    run, _ = _demo("--bootstrap-servers", kafka_bootstrap, "--events", "30000", "--no-progress")
    assert run.returncode == 0, run.stdout + run.stderr
    m = _check_line(run.stdout)
    assert m.group(1) == "PASSED" and m.group(2) == "30,000"
    assert f"your Kafka at {kafka_bootstrap}" in run.stdout
