"""``streamplug run`` as a user runs it: the quick start's pipeline file on a real broker,
stopped with Ctrl-C, resumed from its checkpoint; and errors in a file on stderr."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "docs" / "quickstart.md"
EXAMPLE = ROOT / "examples" / "pipelines" / "orders-enrichment.toml"


def _docs_pipeline() -> str:
    """The TOML block that follows the ``<!-- pipeline: orders-enrichment -->`` marker."""
    text = QUICKSTART.read_text(encoding="utf-8")
    m = re.search(r"<!-- pipeline: orders-enrichment -->\s*```toml\n(.*?)```", text, re.S)
    assert m, f"{QUICKSTART} lost its orders-enrichment pipeline block"
    return m.group(1)


def _cli(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "streamplug.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )


def test_the_docs_pipeline_is_the_example_file() -> None:
    assert _docs_pipeline() == EXAMPLE.read_text(encoding="utf-8")


def test_every_example_pipeline_builds() -> None:
    for path in sorted((ROOT / "examples" / "pipelines").glob("*.toml")):
        run = subprocess.run(
            [sys.executable, "-m", "streamplug.cli", "run", str(path), "--dry-run"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, f"{path.name}: {run.stderr}"
        plan = json.loads(run.stdout)
        assert plan["sinks"], path
        # Secrets from the environment never reach the printed plan.
        assert "change-me" not in run.stdout


def test_an_error_in_the_file_names_line_key_and_fix(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[job]\nname = "x"\n\n[source]\nconnector = "kafka"\nbootstrap_servers = "localhost:1"\n'
        'topics = ["t"]\nstarting_offsets = "earliset"\nformat = "json"\n\n[sink]\nconnector = "print"\n'
    )
    proc = _cli("run", str(bad))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, out + err
    assert f"{bad}:8: source.starting_offsets: no offsets initializer named 'earliset'" in err
    assert "did you mean 'earliest'?" in err


@pytest.mark.integration
def test_docs_pipeline_runs_on_real_kafka_stops_cleanly_and_resumes(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    from confluent_kafka import Producer

    from streamplug_demo.transforms import enrich, make_event
    from streamplug_kafka_common import admin

    orders = topic_factory(partitions=3, name="orders")
    enriched = topic_factory(partitions=3, name="orders-enriched")
    events = 20_000
    # Recent event times: the sink stamps output records with them, and the broker's
    # retention would delete records stamped years ago.
    base_ts = int(time.time() * 1000) - events * 5
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 20})
    for seq in range(events):
        producer.produce(
            orders, json.dumps(make_event(seq, base_ts)).encode(), key=str(seq).encode()
        )
        if seq % 5000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0

    pipeline = tmp_path / "orders-enrichment.toml"
    pipeline.write_text(_docs_pipeline())
    env = {**os.environ, "ORDERS_TOPIC": orders, "ENRICHED_TOPIC": enriched}

    def committed() -> list[dict[str, object]]:
        return [
            json.loads(m.value())
            for m in admin.read_all(kafka_bootstrap, enriched, "read_committed")
        ]

    proc = _cli("run", str(pipeline), "--bootstrap-servers", kafka_bootstrap, cwd=tmp_path, env=env)
    try:
        deadline = time.monotonic() + 120
        seen: list[dict[str, object]] = []
        while time.monotonic() < deadline and proc.poll() is None:
            seen = committed()
            if len(seen) >= events:
                break
            time.sleep(1)
        assert len(seen) >= events, (
            f"only {len(seen)} of {events} committed; stderr: {proc.stderr.read() if proc.stderr else ''}"
        )
        # Ctrl-C: a final checkpoint, then a clean exit.
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out + err
    assert "FINISHED" in out and "stopping: taking a final checkpoint" in err

    output = committed()
    by_id = {int(str(r["id"])): r for r in output}
    assert len(output) == events == len(by_id), "duplicates or losses in the committed output"
    assert all(by_id[seq] == enrich(make_event(seq, base_ts)) for seq in range(events))

    listing = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamplug.cli",
            "checkpoints",
            "list",
            str(tmp_path / "checkpoints"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listing.returncode == 0, listing.stderr
    assert "orders-enrichment" in listing.stdout and "COMPLETE (final)" in listing.stdout

    # Running it again resumes from the final checkpoint: nothing is read twice.
    again = _cli(
        "run",
        str(pipeline),
        "--bootstrap-servers",
        kafka_bootstrap,
        "--stop-after",
        "5",
        "--no-progress",
        cwd=tmp_path,
        env=env,
    )
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, out + err
    assert "0 records in" in out, out
    assert "resumed from checkpoint" in err, err
    assert len(committed()) == events
