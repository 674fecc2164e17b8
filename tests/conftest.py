"""Fixtures shared by the unit, integration and e2e tests."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

import pytest


@dataclass
class BrokerCommand:
    """A `streamplug broker start` process: the bootstrap servers it printed on line 1;
    once it stopped, its exit code and the rest of its output."""

    bootstrap: str
    returncode: int | None = None
    out: str = ""
    err: str = ""


@pytest.fixture
def broker_command() -> Callable[..., AbstractContextManager[BrokerCommand]]:
    """``with broker_command(*args, stop_within_s=...) as broker:`` runs `streamplug broker
    start ARGS` for the block, then stops it with SIGTERM, as a user's Ctrl-C or a service
    manager would, and waits for it to exit. Skips the test where the command is not
    installed."""
    exe = shutil.which("streamplug")
    if exe is None:
        pytest.skip("the streamplug command is not installed")

    @contextlib.contextmanager
    def run(*args: str, stop_within_s: float) -> Iterator[BrokerCommand]:
        proc = subprocess.Popen(
            [exe, "broker", "start", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None and proc.stderr is not None
            broker = BrokerCommand(proc.stdout.readline().strip())
            try:
                yield broker
            except BaseException as exc:
                proc.kill()
                proc.wait()
                exc.add_note(f"streamplug broker start wrote to stderr:\n{proc.stderr.read()}")
                raise
            proc.send_signal(signal.SIGTERM)
            proc.wait(stop_within_s)
            # Read through the same buffered file: readline() above may hold the rest.
            broker.out = proc.stdout.read()
            broker.err = proc.stderr.read()
            broker.returncode = proc.returncode
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    return run
