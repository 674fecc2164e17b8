"""Fixtures shared by the unit, integration and e2e tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

import pytest

# `tox -e plugin-<name>` installs one plugin alone with the core (and the test support) and
# sets STREAMPLUG_TEST_ONLY_PLUGIN: only that plugin's unit tests are collected, so a test
# that needs another distribution fails the env instead of being skipped.
_PLUGIN_TESTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # plugin: (test file prefixes, files left out: they exercise other distributions too)
    "serde": (("test_serde_",), ("test_serde_msgpack_example.py",)),
    "kafka-source": (("test_kafka_source_",), ()),
    "kafka-sink": (("test_kafka_sink_",), ()),
    "kafka-security": (("test_security_",), ()),
    "testing": (("test_mock_cluster",), ()),
    "otel": (("test_otel_",), ()),
}


def pytest_ignore_collect(collection_path: object, config: pytest.Config) -> bool | None:
    only = os.environ.get("STREAMPLUG_TEST_ONLY_PLUGIN")
    name = getattr(collection_path, "name", "")
    if not only or not name.startswith("test_") or not name.endswith(".py"):
        return None
    if only not in _PLUGIN_TESTS:
        raise pytest.UsageError(
            f"STREAMPLUG_TEST_ONLY_PLUGIN={only!r}: use one of {', '.join(_PLUGIN_TESTS)}"
        )
    prefixes, left_out = _PLUGIN_TESTS[only]
    return not name.startswith(prefixes) or name in left_out


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


@dataclass
class S3Server:
    """An S3-compatible server (moto's, over HTTP on a loopback port) and the options that
    reach it. The secret is random per session, so a test can search logs and stored
    documents for it."""

    endpoint_url: str
    key: str
    secret: str
    log_path: str = ""

    def requests(self, bucket: str) -> list[tuple[str, str]]:
        """(method, path) of every request the server answered for ``bucket`` so far, in
        order, read from its request log."""
        import re

        with open(self.log_path, errors="replace") as log:
            found = re.findall(r'"([A-Z]+) (/[^ ?"]*)[^ "]* HTTP/', log.read())
        return [(m, p) for m, p in found if p == f"/{bucket}" or p.startswith(f"/{bucket}/")]

    @property
    def options(self) -> dict[str, str]:
        return {"endpoint_url": self.endpoint_url, "key": self.key, "secret": self.secret}

    @property
    def env(self) -> dict[str, str]:
        """The same, as the environment variables boto and s3fs read."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def new_bucket(self) -> str:
        import uuid

        import s3fs

        name = f"chk-{uuid.uuid4().hex[:12]}"
        s3fs.S3FileSystem(skip_instance_cache=True, **self.options).mkdir(name)
        return name


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server as a subprocess on a free loopback port, for the session. Skips the
    test where the S3 extras are missing, naming what to install."""
    import os
    import secrets
    import socket
    import sys
    import tempfile
    import time
    import urllib.request

    for module, install in (("moto", '"moto[server]"'), ("s3fs", '"streamplug[s3]"')):
        pytest.importorskip(module, reason=f"the S3 checkpoint tests need pip install {install}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The server logs every request: into a file, which (unlike a pipe) never fills up.
    with tempfile.NamedTemporaryFile(prefix="moto-s3-", suffix=".log") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            # moto checks no signature; the region only has to be one it knows.
            env=dict(os.environ, AWS_DEFAULT_REGION="us-east-1"),
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        raise RuntimeError(
                            f"moto's S3 server did not start on {url}: {log.read().decode()[-2000:]}"
                        ) from None
                    time.sleep(0.1)
            yield S3Server(url, "streamplug-test", f"s3cr3t-{secrets.token_hex(8)}", log.name)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
