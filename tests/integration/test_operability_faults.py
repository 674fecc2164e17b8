"""Faults injected around a Kafka -> Kafka job on the real broker, each with its expected
outcome: a full checkpoint file system fails with a clear error (and is retried, space may
come back); a read-only one fails at once; a truncated newest checkpoint is skipped,
saying so, and the previous one restored with nothing lost."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka_job_support import produce_values, string_sink, string_source

from streamplug.api.sink import DeliveryGuarantee
from streamplug.errors import JobFailedError
from streamplug.runtime import JobStatus, RestartStrategies, StreamExecutionEnvironment
from streamplug.runtime.storage import CheckpointStorageDeniedError
from streamplug_kafka_common.admin import read_all

pytestmark = pytest.mark.integration

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="mounting a small tmpfs needs root (the CI container is root)"
)


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _produce(bootstrap: str, topic: str, values: range) -> None:
    produce_values(bootstrap, topic, (str(value).encode() for value in values))


def _env(bootstrap: str, topic: str, out: str, storage: Path) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(200)
    env.get_checkpoint_config().set_checkpoint_storage_dir(storage)
    source = string_source(bootstrap, topic, "faults", bounded=False)
    sink = string_sink(bootstrap, out, DeliveryGuarantee.NONE)
    env.from_source(source, None, "in").sink_to(sink)
    return env


def _values(bootstrap: str, topic: str) -> list[int]:
    return [int(m.value()) for m in read_all(bootstrap, topic, "read_uncommitted")]


def _wait(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@needs_root
def test_a_full_checkpoint_file_system_fails_with_a_clear_error(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic, out = topic_factory(), topic_factory()
    _produce(kafka_bootstrap, topic, range(50))
    with _tmpfs(tmp_path / "full", "64k") as mount:
        # Fill it, then free one page: enough for the job's lock, not for a checkpoint.
        fillers = []
        with contextlib.suppress(OSError):
            for i in range(1000):
                filler = mount / f"filler-{i}"
                fillers.append(filler)
                filler.write_bytes(b"x" * 4096)
        fillers[-1].unlink(missing_ok=True)
        fillers[-2].unlink()
        env = _env(kafka_bootstrap, topic, out, mount / "chk")
        env.set_restart_strategy(RestartStrategies.fixed_delay_restart(2, 100))
        started = time.monotonic()
        with pytest.raises(JobFailedError) as info:
            env.execute("full")
        assert time.monotonic() - started < 30
    text = str(info.value)
    assert "after 3 attempt(s)" in text, "a full disk may be freed: it is retried"
    assert (
        f"cannot write checkpoint storage {mount / 'chk' / 'full'}: No space left on device: "
        in text
    )
    assert "the file system is full; free space there" in text


@needs_root
def test_a_read_only_checkpoint_directory_fails_the_job_at_once(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic, out = topic_factory(), topic_factory()
    _produce(kafka_bootstrap, topic, range(10))
    with _tmpfs(tmp_path / "ro", "1m") as mount:
        (mount / "chk" / "read-only").mkdir(parents=True)
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        env = _env(kafka_bootstrap, topic, out, mount / "chk")
        env.set_restart_strategy(RestartStrategies.fixed_delay_restart(100, 1000))
        started = time.monotonic()
        with pytest.raises(JobFailedError) as info:
            env.execute("read-only")
        assert time.monotonic() - started < 15
    cause = info.value.__cause__
    assert isinstance(cause, CheckpointStorageDeniedError), repr(cause)
    assert "after 1 attempt(s)" in str(info.value)
    assert str(cause).startswith(
        f"cannot write checkpoint storage {mount / 'chk' / 'read-only'}: Read-only file system: "
    )


def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic, out = topic_factory(), topic_factory()
    storage = tmp_path / "chk"
    _produce(kafka_bootstrap, topic, range(100))
    client = _env(kafka_bootstrap, topic, out, storage).execute_async("fallback")
    _wait(lambda: client.metrics().records_out >= 100, "the first 100 records")
    _wait(lambda: client.metrics().checkpoints_completed >= 2, "two checkpoints")
    client.stop(timeout=30)
    assert client.status is JobStatus.FINISHED
    files = sorted((storage / "fallback").glob("chk-*.json"))
    assert len(files) >= 2, files
    newest, previous = files[-1], files[-2]
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # a torn write, a bad disk block...

    _produce(kafka_bootstrap, topic, range(100, 200))
    with caplog.at_level(logging.WARNING):
        client = _env(kafka_bootstrap, topic, out, storage).execute_async("fallback")
        _wait(lambda: set(range(200)) <= set(_values(kafka_bootstrap, out)), "all 200 records")
        client.stop(timeout=30)
    restored: Any = client.metrics().restored_checkpoint_id
    assert restored == int(previous.stem.split("-")[1]), (restored, previous)
    assert "skipping unreadable checkpoint: " in caplog.text and newest.name in caplog.text
    # At least once: the records after the previous checkpoint came again, none was lost.
    assert set(_values(kafka_bootstrap, out)) == set(range(200))


def test_the_broker_stopped_and_started_mid_run_loses_nothing(
    kafka_cluster: Any, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    bootstrap = kafka_cluster.bootstrap_servers
    if not hasattr(kafka_cluster, "stop_node"):
        pytest.skip("an external cluster cannot be stopped by the suite")
    topic, out = topic_factory(), topic_factory()
    _produce(bootstrap, topic, range(100))
    env = _env(bootstrap, topic, out, tmp_path / "chk")
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(20, 1000))
    client = env.execute_async("broker-restart")
    try:
        _wait(lambda: client.metrics().records_out >= 100, "the first 100 records")
        (node,) = kafka_cluster.node_ids
        kafka_cluster.stop_node(node)
        time.sleep(3)
        kafka_cluster.start_node(node)
        _produce(bootstrap, topic, range(100, 200))
        _wait(lambda: set(range(200)) <= set(_values(bootstrap, out)), "all 200 records", 120)
        assert not client.status.is_terminal, client.status
    finally:
        with contextlib.suppress(Exception):
            client.stop(timeout=60)
    assert client.status is JobStatus.FINISHED, client.status
    assert set(_values(bootstrap, out)) == set(range(200))


def test_a_node_of_three_killed_mid_run_loses_nothing(kafka_cluster_3: Any, tmp_path: Path) -> None:
    cluster = kafka_cluster_3
    bootstrap = cluster.bootstrap_servers
    topic, out = f"faults-in-{uuid.uuid4().hex[:8]}", f"faults-out-{uuid.uuid4().hex[:8]}"
    for name in (topic, out):
        cluster.create_topic(name, partitions=3, replication_factor=3)
    _produce(bootstrap, topic, range(100))
    env = _env(bootstrap, topic, out, tmp_path / "chk")
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(20, 1000))
    client = env.execute_async("node-killed")
    try:
        _wait(lambda: client.metrics().records_out >= 100, "the first 100 records", 90)
        cluster.kill_node(cluster.node_ids[0])  # SIGKILL: leaders move to the other two
        _produce(bootstrap, topic, range(100, 200))
        _wait(lambda: set(range(200)) <= set(_values(bootstrap, out)), "all 200 records", 120)
    finally:
        with contextlib.suppress(Exception):
            client.stop(timeout=60)
    assert client.status is JobStatus.FINISHED, client.status
    assert set(_values(bootstrap, out)) == set(range(200))
