"""One job, one run: a second run on the same checkpoint storage is refused naming the
holder; a lock left by a killed process does not block the next run."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from streamplug.connectors import CollectionSource, CollectSink
from streamplug.errors import JobFailedError
from streamplug.plugins import build_plugin_host
from streamplug.runtime import JobStatus, StreamExecutionEnvironment
from streamplug.runtime.joblock import LOCK_NAME, JobLockedError


def _env(storage: Path, records: int = 50, rate: int | None = None) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment.get_execution_environment(build_plugin_host(autoload=False))
    env.enable_checkpointing(100)
    env.get_checkpoint_config().set_checkpoint_storage_dir(storage)
    source = CollectionSource(list(range(records)), batch_size=5, records_per_second=rate)
    env.from_source(source, None, "n").sink_to(CollectSink())
    return env


def _lock_file(storage: Path, job: str) -> Path:
    return storage / job / LOCK_NAME


def test_a_second_run_of_a_job_is_refused_naming_the_holder(tmp_path: Path) -> None:
    first = _env(tmp_path, records=100_000, rate=1000).execute_async("orders")
    deadline = time.monotonic() + 10
    while not _lock_file(tmp_path, "orders").exists():
        assert time.monotonic() < deadline, "the first run never took its lock"
        time.sleep(0.01)
    try:
        with pytest.raises(JobFailedError) as info:
            _env(tmp_path).execute("orders")
        cause = info.value.__cause__
        assert isinstance(cause, JobLockedError)
        assert cause.holder is not None and cause.holder.pid == os.getpid()
        text = str(cause)
        assert text.startswith("job 'orders' is already running on this checkpoint storage: ")
        assert f"is held by pid {os.getpid()} on host {socket.gethostname()} since 20" in text
        assert "Stop that run first" in text
        # Another job name on the same storage is another job: not refused.
        _env(tmp_path).execute("payments")
    finally:
        first.stop(timeout=30)
    assert first.status is JobStatus.FINISHED
    assert not _lock_file(tmp_path, "orders").exists(), "the lock outlived its run"
    # The storage is free again.
    _env(tmp_path).execute("orders")


_HOLDER = """\
import sys
from streamplug.connectors import CollectionSource, CollectSink
from streamplug.plugins import build_plugin_host
from streamplug.runtime import StreamExecutionEnvironment

env = StreamExecutionEnvironment.get_execution_environment(build_plugin_host(autoload=False))
env.enable_checkpointing(100)
env.get_checkpoint_config().set_checkpoint_storage_dir(sys.argv[1])
env.from_source(
    CollectionSource(list(range(10_000_000)), batch_size=5, records_per_second=100), None, "n"
).sink_to(CollectSink())
env.execute("orders")
"""


def _holder(tmp_path: Path) -> subprocess.Popen[bytes]:
    script = tmp_path / "holder.py"
    script.write_text(textwrap.dedent(_HOLDER))
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "chk")])
    deadline = time.monotonic() + 30
    while not _lock_file(tmp_path / "chk", "orders").exists():
        assert proc.poll() is None, "the holder process ended"
        assert time.monotonic() < deadline, "the holder never took its lock"
        time.sleep(0.05)
    return proc


def test_a_live_holder_in_another_process_refuses_and_a_killed_one_does_not_block(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    proc = _holder(tmp_path)
    try:
        with pytest.raises(JobFailedError) as info:
            _env(tmp_path / "chk").execute("orders")
        assert isinstance(info.value.__cause__, JobLockedError)
        assert f"is held by pid {proc.pid} on host" in str(info.value.__cause__)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The killed process left its lock behind; the next run replaces it, saying so.
    assert _lock_file(tmp_path / "chk", "orders").exists()
    with caplog.at_level(logging.WARNING, logger="streamplug.runtime.joblock"):
        result = _env(tmp_path / "chk").execute("orders")
    assert result.records_in == 50
    assert f"removing the lock of a run that no longer runs (pid {proc.pid} on host" in (
        caplog.text
    )


def test_a_holder_on_another_host_is_refused_with_the_file_to_delete(tmp_path: Path) -> None:
    lock = _lock_file(tmp_path, "orders")
    lock.parent.mkdir(parents=True)
    lock.write_text(
        json.dumps({"pid": 4242, "host": "other-host", "since_ms": 1_700_000_000_000, "token": "t"})
    )
    with pytest.raises(JobFailedError) as info:
        _env(tmp_path).execute("orders")
    text = str(info.value.__cause__)
    assert "is held by pid 4242 on host other-host since 2023-11-14 22:13:20 UTC" in text
    assert text.endswith(f"delete {lock}")
    assert lock.exists(), "a lock that cannot be checked must not be taken over"
