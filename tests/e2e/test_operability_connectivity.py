"""Connectivity failures read well: ``streamplug run`` against an unreachable address, a
source topic that does not exist yet, and a sink topic that does not exist (real broker,
auto-creation off)."""

from __future__ import annotations

import signal
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka_job_support import produce_values
from operability_support import Process

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.kill()


def _run(processes: list[Process], tmp_path: Path, pipeline: str) -> Process:
    path = tmp_path / "pipeline.toml"
    path.write_text(textwrap.dedent(pipeline))
    process = Process(
        [sys.executable, "-m", "streamplug.cli", "run", str(path), "--no-progress"], tmp_path
    )
    processes.append(process)
    return process


def test_an_unreachable_bootstrap_fails_within_its_bound_in_a_few_lines(
    tmp_path: Path, processes: list[Process]
) -> None:
    process = _run(
        processes,
        tmp_path,
        """\
        [job]
        name = "unreachable"

        [source]
        connector = "kafka"
        bootstrap_servers = "127.0.0.1:1"
        topics = ["orders"]
        starting_offsets = "earliest"
        format = "string"

        [source.properties]
        "default.api.timeout.ms" = "3000"

        [sink]
        connector = "discard"
        """,
    )
    took = process.wait(60)
    assert process.proc.returncode == 1, process.stderr
    assert took < 3 + 7, f"took {took:.1f} s (bound 3 s):\n{process.stderr}"
    assert (
        "Kafka source could not list topics for partition discovery: no broker at "
        "127.0.0.1:1 answered within 3 s ("
    ) in process.stderr
    assert "default.api.timeout.ms (now 3000) bounds the wait" in process.stderr
    lines = process.stderr.strip().splitlines()
    assert len(lines) <= 6, f"{len(lines)} lines of output:\n{process.stderr}"
    assert "%3|" not in process.stderr, "librdkafka wrote to stderr directly"


def test_a_missing_source_topic_is_named_and_read_once_it_exists(
    kafka_bootstrap: str, kafka_cluster: object, tmp_path: Path, processes: list[Process]
) -> None:
    topic = f"ops-late-{uuid.uuid4().hex[:8]}"
    (tmp_path / "ops_show.py").write_text(
        "def show(value):\n    print(f'record {value}', flush=True)\n    return value\n"
    )
    process = _run(
        processes,
        tmp_path,
        f"""\
        [job]
        name = "late-topic"

        [source]
        connector = "kafka"
        bootstrap_servers = "{kafka_bootstrap}"
        topics = ["{topic}"]
        starting_offsets = "earliest"
        format = "string"

        [source.properties]
        "partition.discovery.interval.ms" = "300"

        [[transform]]
        map = "ops_show:show"

        [sink]
        connector = "discard"
        """,
    )
    process.wait_for(
        f"Kafka source: topic '{topic}' does not exist; it is read once it exists "
        "(partition discovery runs every 300 ms)",
        timeout=60,
    )
    kafka_cluster.create_topic(topic, partitions=1)  # type: ignore[attr-defined]
    produce_values(kafka_bootstrap, topic, [b"a", b"b"])
    process.wait_for("record b", timeout=60)
    process.proc.send_signal(signal.SIGTERM)
    process.wait(30)
    assert process.proc.returncode == 0, process.stderr
    assert process.stderr.count("does not exist") == 1, process.stderr


def test_a_missing_sink_topic_fails_a_checkpointed_run_fast(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    tmp_path: Path,
    processes: list[Process],
) -> None:
    source_topic = topic_factory()
    produce_values(kafka_bootstrap, source_topic, [b"a", b"b"])
    missing = f"ops-missing-{uuid.uuid4().hex[:8]}"
    process = _run(
        processes,
        tmp_path,
        f"""\
        [job]
        name = "missing-sink-topic"

        [checkpointing]
        interval = "500 ms"
        storage = "{tmp_path / "chk"}"

        [restart_strategy]
        type = "fixed-delay"
        attempts = 100
        delay = "1 s"

        [source]
        connector = "kafka"
        bootstrap_servers = "{kafka_bootstrap}"
        topics = ["{source_topic}"]
        starting_offsets = "earliest"
        format = "string"

        [sink]
        connector = "kafka"
        bootstrap_servers = "{kafka_bootstrap}"
        topic = "{missing}"
        format = "string"
        delivery_guarantee = "at-least-once"
        """,
    )
    took = process.wait(60)
    assert took < 15, f"took {took:.1f} s:\n{process.stderr}"
    assert process.proc.returncode == 1, process.stderr
    assert (
        f"failed after 1 attempt(s): MissingResourceError: Kafka sink writing to topic "
        f"'{missing}': the topic does not exist ("
    ) in process.stderr
    assert "create it (kafka-topics.sh --create) or enable auto.create.topics.enable" in (
        process.stderr
    )


def test_sigterm_while_the_brokers_do_not_answer_ends_the_process_at_once(
    tmp_path: Path, processes: list[Process]
) -> None:
    # Partition discovery waits up to default.api.timeout.ms (30 s) for an answer; a stop
    # must not wait it out (the process used to end 27 s after the job had finished).
    process = _run(
        processes,
        tmp_path,
        """\
        [job]
        name = "unreachable-stop"

        [source]
        connector = "kafka"
        bootstrap_servers = "127.0.0.1:1"
        topics = ["orders"]
        starting_offsets = "earliest"
        format = "string"

        [sink]
        connector = "discard"
        """,
    )
    process.wait_for("started", timeout=30)
    time.sleep(2)
    process.proc.send_signal(signal.SIGTERM)
    took = process.wait(60)
    assert took < 5, f"took {took:.1f} s:\n{process.stderr}"
    assert process.proc.returncode == 0, process.stderr
    assert "Traceback" not in process.stderr


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once", "none"])
def test_an_unreachable_sink_bootstrap_fails_within_its_bound_in_a_few_lines(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    tmp_path: Path,
    processes: list[Process],
    guarantee: str,
) -> None:
    # The source reads a real broker and keeps sending records; only the sink's address is
    # wrong. Before, the at-least-once sink said nothing for message.timeout.ms + 30 s (5.5
    # minutes by default) and the exactly-once sink waited a fixed 30 s whatever was set.
    source_topic = topic_factory()
    produce_values(kafka_bootstrap, source_topic, [b"a", b"b", b"c"])
    exactly_once = guarantee == "exactly-once"
    checkpointing = (
        f'[checkpointing]\n        interval = "500 ms"\n        storage = "{tmp_path / "chk"}"'
        if exactly_once
        else ""
    )
    prefix = 'transactional_id_prefix = "unreachable"' if exactly_once else ""
    process = _run(
        processes,
        tmp_path,
        f"""\
        [job]
        name = "unreachable-sink"

        {checkpointing}
        [restart_strategy]
        type = "none"

        [source]
        connector = "kafka"
        bootstrap_servers = "{kafka_bootstrap}"
        topics = ["{source_topic}"]
        starting_offsets = "earliest"
        format = "string"

        [sink]
        connector = "kafka"
        bootstrap_servers = "127.0.0.1:1"
        topic = "out"
        format = "string"
        delivery_guarantee = "{guarantee}"
        {prefix}

        [sink.properties]
        "default.api.timeout.ms" = "3000"
        """,
    )
    took = process.wait(120)
    assert process.proc.returncode == 1, process.stderr
    assert took < 3 + 7, f"took {took:.1f} s (bound 3 s):\n{process.stderr}"
    what = (
        "look up its exactly-once commit-log topic 'unreachable.streamplug-commits'"
        if exactly_once
        else "look up topic 'out'"
    )
    assert (
        f"Kafka sink could not {what}: no broker at 127.0.0.1:1 answered within 3 s ("
    ) in process.stderr
    assert (
        "check the address and port, that the brokers run and that this host may connect to "
        "them (firewall, advertised.listeners); the sink property default.api.timeout.ms "
        "(now 3000) bounds the wait"
    ) in process.stderr
    lines = process.stderr.strip().splitlines()
    assert len(lines) <= 6, f"{len(lines)} lines of output:\n{process.stderr}"
    assert "%3|" not in process.stderr, "librdkafka wrote to stderr directly"
