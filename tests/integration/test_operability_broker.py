"""``streamplug broker start`` as a developer uses it: started again on its own data
directory it keeps its topics and its ports; the first start says it fetches the jars and
fails with a clear message when Maven cannot reach its registry; options are validated."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def test_a_restart_on_its_data_dir_keeps_topics_records_and_ports(
    broker_command: Callable[..., AbstractContextManager[Any]], tmp_path: Path
) -> None:
    from confluent_kafka import Producer

    from streamplug_kafka_common.admin import read_all

    data = tmp_path / "kafka"
    args = ("--data-dir", str(data), "--topic", "kept:2:1")
    with broker_command(*args, stop_within_s=60) as first:
        producer = Producer({"bootstrap.servers": first.bootstrap})
        for i in range(10):
            producer.produce("kept", str(i).encode())
        assert producer.flush(30) == 0
    assert first.returncode == 0, first.err
    with broker_command(*args, stop_within_s=60) as second:
        # The same address: clients of the first run reconnect as they are.
        assert second.bootstrap == first.bootstrap
        values = sorted(int(m.value()) for m in read_all(second.bootstrap, "kept"))
        assert values == list(range(10))
    assert second.returncode == 0, second.err
    assert "topic kept exists already: kept as it is" in second.err
    assert "Traceback" not in second.err


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "streamplug.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("broker", "start", "--nodes", "0"), "argument --nodes: expected 1 to 32 nodes, got 0"),
        (("broker", "start", "--nodes", "two"), "argument --nodes: expected a whole number"),
        (
            ("broker", "start", "--topic", "t:0"),
            "partitions and replication must be at least 1 in 't:0'",
        ),
        (
            ("broker", "start", "--topic", "t:1:3"),
            "error: --topic t: replication 3 needs at least 3 nodes, and --nodes is 1",
        ),
        (
            ("broker", "start", "--data-dir", "/etc/hostname"),
            "argument --data-dir: '/etc/hostname' exists and is not a directory",
        ),
        (
            ("run", "missing.toml", "--metrics-port", "99999"),
            "argument --metrics-port: a port is 1 to 65535 (0 picks a free one), got 99999",
        ),
    ],
)
def test_command_line_options_are_validated(args: tuple[str, ...], message: str) -> None:
    run = _cli(*args)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr
    assert "Traceback" not in run.stderr


def test_an_unreachable_maven_registry_fails_the_first_start_clearly(tmp_path: Path) -> None:
    if shutil.which("mvn") is None:
        pytest.skip("Maven is not installed")
    # Maven reads ~/.m2 under user.home: a private one, whose only mirror refuses
    # connections, and an empty local repository, so everything must be fetched.
    m2 = tmp_path / ".m2"
    m2.mkdir()
    (m2 / "settings.xml").write_text(
        "<settings><mirrors><mirror><id>nowhere</id><mirrorOf>*</mirrorOf>"
        "<url>https://127.0.0.1:1/maven2</url></mirror></mirrors></settings>"
    )
    started = time.monotonic()
    run = _cli(
        "broker",
        "start",
        env={
            "STREAMPLUG_KAFKA_LIBS": str(tmp_path / "libs"),
            "MAVEN_OPTS": f"-Duser.home={tmp_path}",
        },
        timeout=180,
    )
    took = time.monotonic() - started
    assert run.returncode == 1, run.stderr
    assert took < 120, f"took {took:.0f} s"
    assert "fetching the Apache Kafka 4.1.1 broker jars (about 100 MB, once)" in run.stderr
    assert "error: Maven cannot reach its repository to fetch the Kafka 4.1.1 jars (" in run.stderr
    assert "set STREAMPLUG_KAFKA_LIBS to the libs/ directory" in run.stderr
    assert "Traceback" not in run.stderr
    assert run.stdout == ""
