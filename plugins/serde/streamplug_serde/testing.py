"""A real Schema-Registry-compatible server for tests: Apicurio Registry.

Apicurio Registry serves the Confluent Schema Registry REST API under
``/apis/ccompat/v7``, so ``confluent_kafka.schema_registry.SchemaRegistryClient`` talks to
it unchanged. Its runnable distribution (a Quarkus application) is published on Maven
Central as ``io.apicurio:apicurio-registry-app:<version>:tar.gz:all``; Maven fetches it
once into ``~/.m2`` and it is unpacked under the XDG cache. It keeps schemas in an
in-memory database, so every started server is empty.

Set ``STREAMPLUG_SCHEMA_REGISTRY_URL`` to test against a registry of your own instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = [
    "APICURIO_VERSION",
    "HAS_MOCK_REGISTRY",
    "ApicurioRegistry",
    "Customer",
    "Money",
    "Order",
    "RegistryUnavailableError",
    "ensure_apicurio",
    "schema_registry",
]

APICURIO_VERSION = "2.6.13.Final"
_ARTIFACT = f"io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:tar.gz:all"
_RUNNER = f"apicurio-registry-app-{APICURIO_VERSION}-runner.jar"
URL_ENV = "STREAMPLUG_SCHEMA_REGISTRY_URL"
HOME_ENV = "STREAMPLUG_APICURIO_HOME"
CCOMPAT_PATH = "/apis/ccompat/v7"


def _has_mock_registry() -> bool:
    try:
        from streamplug_serde.registry import mock_client_class

        return mock_client_class() is not None
    except ImportError:  # pragma: no cover - confluent-kafka not installed
        return False


HAS_MOCK_REGISTRY = _has_mock_registry()
"""Whether the installed confluent-kafka has its in-memory registry client (``mock://``
URLs); tests that use it skip on older releases."""


class RegistryUnavailableError(RuntimeError):
    """The registry server could not be fetched or started."""


def _cache_dir() -> Path:
    override = os.environ.get(HOME_ENV)
    if override:
        return Path(override).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "streamplug" / f"apicurio-registry-{APICURIO_VERSION}"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # Several pytest processes may unpack at once; one does it, the others reuse it.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _m2_archive() -> Path:
    repo = Path(os.environ.get("MAVEN_REPO_LOCAL") or Path.home() / ".m2" / "repository")
    return (
        repo
        / "io"
        / "apicurio"
        / "apicurio-registry-app"
        / APICURIO_VERSION
        / f"apicurio-registry-app-{APICURIO_VERSION}-all.tar.gz"
    )


def ensure_apicurio() -> Path:
    """Fetch (through Maven, from Maven Central) and unpack Apicurio Registry once; return
    the directory holding the runner jar."""
    home = _cache_dir()
    if (home / _RUNNER).is_file():
        return home
    with _locked(home.parent / f".{home.name}.lock"):
        if (home / _RUNNER).is_file():
            return home
        archive = _m2_archive()
        if not archive.is_file():
            mvn = shutil.which("mvn")
            if mvn is None:
                raise RegistryUnavailableError(
                    "Maven ('mvn') is not on PATH, so Apicurio Registry cannot be fetched from "
                    "Maven Central; install Maven and a Java 17+ JDK (Debian: 'apt-get install "
                    f"maven openjdk-17-jdk-headless'), or set {URL_ENV} to a running registry"
                )
            cmd = [
                mvn,
                "-q",
                "-B",
                "dependency:get",
                f"-Dartifact={_ARTIFACT}",
                "-Dtransitive=false",
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0 or not archive.is_file():
                output = (proc.stdout + proc.stderr).strip()[-3000:]
                raise RegistryUnavailableError(
                    f"Maven could not fetch {_ARTIFACT} (exit {proc.returncode}): {' '.join(cmd)}"
                    f"\n{output}"
                )
        staging = Path(tempfile.mkdtemp(prefix=f".{home.name}-", dir=home.parent))
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(staging, filter="data")
            if not (staging / _RUNNER).is_file():
                raise RegistryUnavailableError(f"{archive} holds no {_RUNNER}")
            if home.exists():
                shutil.rmtree(home)
            staging.rename(home)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return home


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ApicurioRegistry:
    """One Apicurio Registry process on a free loopback port.

    ``url`` is the Confluent-compatible base URL to give ``SchemaRegistryClient``.
    """

    def __init__(self, log_dir: Path | None = None, heap: str = "384m") -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}{CCOMPAT_PATH}"
        self._heap = heap
        self._log_dir = log_dir
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    def start(self, timeout: float = 120.0) -> ApicurioRegistry:
        home = ensure_apicurio()
        java = shutil.which("java")
        if java is None:
            raise RegistryUnavailableError(
                "Java is not on PATH; Apicurio Registry needs Java 17+ "
                "(Debian: 'apt-get install openjdk-17-jre-headless')"
            )
        log_dir = self._log_dir or Path(tempfile.mkdtemp(prefix="streamplug-apicurio-"))
        self.log_path = log_dir / "apicurio.log"
        cmd = [
            java,
            f"-Xmx{self._heap}",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",  # C1 only: starts faster on a 2-core machine
            f"-Dquarkus.http.port={self.port}",
            "-Dquarkus.http.host=127.0.0.1",
            "-Dquarkus.log.level=WARN",
            "-jar",
            str(home / _RUNNER),
        ]
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                cmd, cwd=home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RegistryUnavailableError(
                    f"Apicurio Registry exited with {self._proc.returncode}; log: "
                    f"{self.log_path.read_text(errors='replace')[-3000:]}"
                )
            if self.is_ready():
                return self
            time.sleep(0.5)
        self.stop()
        raise RegistryUnavailableError(
            f"Apicurio Registry did not answer on {self.url} within {timeout:.0f}s; "
            f"see {self.log_path}"
        )

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/subjects", timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> ApicurioRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def schema_registry() -> Iterator[str]:
    """The URL of a Confluent-compatible registry: ``$STREAMPLUG_SCHEMA_REGISTRY_URL`` when
    set, else a fresh Apicurio Registry started for the duration of the block."""
    external = os.environ.get(URL_ENV)
    if external:
        yield external
        return
    with ApicurioRegistry() as registry:
        yield registry.url


# -- example Protobuf messages ----------------------------------------------------------------
#
# Tests and benchmarks need generated message classes, and protoc is not a dependency; these
# are built from descriptors in code, in a pool of their own. order.proto imports money.proto,
# so registry references are exercised, and Order (the second message, with a nested Line)
# has a non-trivial message index path.

_F = descriptor_pb2.FieldDescriptorProto
_PACKAGE = "streamplug.examples"


def _field(
    msg: Any, name: str, number: int, ftype: int, *, repeated: bool = False, type_name: str = ""
) -> None:
    field = msg.field.add(name=name, number=number, type=ftype)
    field.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    if type_name:
        field.type_name = type_name


def _build_examples() -> tuple[Any, Any, Any]:
    money_file = descriptor_pb2.FileDescriptorProto(
        name="streamplug/examples/money.proto", package=_PACKAGE, syntax="proto3"
    )
    money = money_file.message_type.add(name="Money")
    _field(money, "currency", 1, _F.TYPE_STRING)
    _field(money, "units", 2, _F.TYPE_INT64)

    order_file = descriptor_pb2.FileDescriptorProto(
        name="streamplug/examples/order.proto",
        package=_PACKAGE,
        syntax="proto3",
        dependency=[money_file.name],
    )
    customer = order_file.message_type.add(name="Customer")
    _field(customer, "id", 1, _F.TYPE_STRING)
    _field(customer, "name", 2, _F.TYPE_STRING)
    order = order_file.message_type.add(name="Order")
    line = order.nested_type.add(name="Line")
    _field(line, "sku", 1, _F.TYPE_STRING)
    _field(line, "count", 2, _F.TYPE_INT32)
    _field(order, "id", 1, _F.TYPE_STRING)
    _field(order, "quantity", 2, _F.TYPE_INT32)
    _field(order, "price", 3, _F.TYPE_MESSAGE, type_name=f".{_PACKAGE}.Money")
    _field(order, "tags", 4, _F.TYPE_STRING, repeated=True)
    _field(order, "lines", 5, _F.TYPE_MESSAGE, repeated=True, type_name=f".{_PACKAGE}.Order.Line")
    _field(order, "paid", 6, _F.TYPE_BOOL)
    _field(order, "score", 7, _F.TYPE_DOUBLE)
    _field(order, "payload", 8, _F.TYPE_BYTES)

    pool = descriptor_pool.DescriptorPool()
    pool.Add(money_file)
    pool.Add(order_file)
    return tuple(
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
        for name in ("Money", "Customer", "Order")
    )


Money, Customer, Order = _build_examples()
