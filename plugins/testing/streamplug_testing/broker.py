"""Start real Apache Kafka brokers (KRaft mode) as local ``java`` subprocesses.

Real Kafka is the only broker on which transactions, fencing and replication behave
as in production, so every behaviour the connector promises is proven here. Each node
runs ``process.roles=broker,controller``; the controller quorum is every node (static
``controller.quorum.voters``), so a 3-node cluster survives the loss of one node.

Typical use::

    with KafkaCluster(nodes=1) as cluster:
        cluster.create_topic("orders", partitions=3)
        producer = Producer({"bootstrap.servers": cluster.bootstrap_servers})

Secured listeners (for the security plugin's tests)::

    cluster = KafkaCluster(
        listeners=[ListenerSpec("SASL_PLAINTEXT", "SASL_PLAINTEXT",
                                sasl_mechanisms=("SCRAM-SHA-256",))],
        scram_users=[ScramUser("alice", "alice-secret")],
    )
    cluster.bootstrap_servers_for("SASL_PLAINTEXT")

A plain ``INTERNAL`` listener is always added when no PLAINTEXT listener is
requested: brokers replicate over it and this module's readiness checks and admin
helpers use it, so securing a client listener never requires securing the plumbing.
With an ``authorizer.class.name`` in ``server_properties``, ``User:ANONYMOUS`` (the
principal of that plaintext plumbing) is added to ``super.users`` for the same reason.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import attrs

from streamplug_kafka_common import admin
from streamplug_testing.jars import find_java, kafka_classpath

__all__ = [
    "KAFKA_SCRIPT_JVM_OPTIONS",
    "BrokerStartError",
    "KafkaCluster",
    "KafkaNode",
    "ListenerSpec",
    "ScramUser",
]

_KAFKA_MAIN = "kafka.Kafka"
_STORAGE_TOOL = "kafka.tools.StorageTool"
_CONTROLLER_LISTENER = "CONTROLLER"
_INTERNAL_LISTENER = "INTERNAL"
_STARTED_MARKER = b"Kafka Server started"
_IDENTITY_FILE = "streamplug-cluster.properties"
_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")

# What every JVM this launcher starts needs, whatever its heap and collector: a node that
# ran out of memory exits (and its test fails) instead of hanging half-alive.
_LAUNCHER_JVM_OPTIONS: tuple[str, ...] = (
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
    "-Djava.net.preferIPv4Stack=true",
)

# Small and single-threaded where it does not hurt: CI machines have 2 cores, and
# several test processes may share them. C1-only JIT (TieredStopAtLevel=1) spares the
# CPU the C2 compiler would burn at startup; test brokers never live long enough to
# profit from C2-compiled code.
DEFAULT_JVM_OPTIONS: tuple[str, ...] = (
    "-Xms64m",
    "-Xmx384m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    *_LAUNCHER_JVM_OPTIONS,
)

# What Apache Kafka's own start scripts give a broker (kafka-server-start.sh's heap,
# kafka-run-class.sh's collector, and the full JIT), for measurements: the defaults above
# spare a test machine's CPU, and a benchmark should time clients against a broker as
# deployed. On this project's 2-core machine, the same jobs against both in one run: the
# hand-written ALO loop 4.5% and streamplug's ALO job 6.7% faster with these settings.
KAFKA_SCRIPT_JVM_OPTIONS: tuple[str, ...] = (
    "-Xms1g",
    "-Xmx1g",
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    *_LAUNCHER_JVM_OPTIONS,
)

_LOG4J = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.request.logger=WARN
log4j.logger.org.apache.kafka.clients=WARN
"""

# Kafka 4 also calls log4j2 directly (log4j-core is on the classpath); without a
# configuration it prints "No configuration found" errors into every log.
_LOG4J2 = """\
status = error
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.stdout.ref = STDOUT
"""


def _new_cluster_id() -> str:
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class BrokerStartError(RuntimeError):
    """A Kafka node failed to format or start; the message carries its log tail."""


def _listener_name(_: Any, __: Any, value: str) -> None:
    if not value or not value.replace("_", "").isalnum() or value.upper() != value:
        raise ValueError(f"listener name must be UPPER_CASE letters/digits/_, got {value!r}")
    if value == _CONTROLLER_LISTENER:
        raise ValueError(f"listener name {value!r} is reserved for the KRaft controller")


def _protocol(_: Any, __: Any, value: str) -> None:
    if value not in _PROTOCOLS:
        raise ValueError(f"unknown security protocol {value!r}; valid: {', '.join(_PROTOCOLS)}")


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _frozen_str_map(value: Mapping[str, Any] | None) -> Mapping[str, str]:
    return {str(k): str(v) for k, v in (value or {}).items()}


@attrs.frozen
class ListenerSpec:
    """One client-facing listener on every node.

    ``name`` is the Kafka listener name (it appears in ``listeners=NAME://host:port``);
    ``protocol`` is its security protocol. ``sasl_mechanisms`` become
    ``listener.name.<name>.sasl.enabled.mechanisms``; each ``properties`` entry is
    written as ``listener.name.<name>.<key>=<value>`` (e.g. ``ssl.keystore.location``,
    ``plain.sasl.jaas.config``). Values are never shown in reprs: they may hold secrets.
    """

    name: str = attrs.field(validator=_listener_name)
    protocol: str = attrs.field(default="PLAINTEXT", validator=_protocol)
    sasl_mechanisms: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    properties: Mapping[str, str] = attrs.field(
        factory=dict, converter=_frozen_str_map, repr=lambda v: "{***}" if v else "{}"
    )

    def server_properties(self) -> dict[str, str]:
        prefix = f"listener.name.{self.name.lower()}."
        props = {prefix + k: v for k, v in self.properties.items()}
        if self.sasl_mechanisms:
            props[prefix + "sasl.enabled.mechanisms"] = ",".join(self.sasl_mechanisms)
        return props


@attrs.frozen
class ScramUser:
    """SCRAM credentials written into the metadata log when the storage is formatted,
    so SASL/SCRAM listeners accept them from the first second."""

    name: str
    password: str = attrs.field(repr=lambda _: "***")
    mechanism: str = attrs.field(default="SCRAM-SHA-256")

    def __attrs_post_init__(self) -> None:
        if self.mechanism not in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
            raise ValueError(
                f"SCRAM mechanism must be SCRAM-SHA-256 or SCRAM-SHA-512, got {self.mechanism!r}"
            )
        for ch in ",=[]":
            if ch in self.name or ch in self.password:
                # The storage tool parses name=...,password=... without quoting rules.
                raise ValueError(f"SCRAM user name/password must not contain {ch!r}")

    def format_argument(self) -> str:
        return f"{self.mechanism}=[name={self.name},password={self.password}]"


@attrs.define
class KafkaNode:
    """One KRaft node (broker + controller): its ports, files and process."""

    node_id: int
    directory: Path
    controller_port: int
    ports: dict[str, int]  # listener name -> port
    process: subprocess.Popen[bytes] | None = None
    # Size of the log file when the current process was launched: readiness looks
    # for the "started" line only in what this process wrote.
    log_offset: int = 0

    @property
    def log_dir(self) -> Path:
        return self.directory / "data"

    @property
    def config_file(self) -> Path:
        return self.directory / "server.properties"

    @property
    def log_file(self) -> Path:
        """The broker's stdout/stderr (log4j console output): read it when debugging."""
        return self.directory / "kafka.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux default


def _free_port(host: str) -> int:
    """A currently free TCP port, preferably below the ephemeral range.

    Ports from ``bind(0)`` come from the ephemeral range that every outgoing client
    connection also draws from, so on a busy machine one of them can take the port in
    the second before the JVM binds it. Picking below that range avoids the race with
    clients; the bind check avoids other listeners; ``start()`` retries the rest.
    """
    low, _high = _ephemeral_range()
    candidates: list[int] = []
    if low - 10000 >= 10000:
        candidates = random.sample(range(low - 10000, low), 20)
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _escape(value: str) -> str:
    # java.util.Properties treats backslash as an escape and a newline as the end.
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _write_properties(path: Path, props: Mapping[str, str]) -> None:
    lines = [f"{key}={_escape(value)}" for key, value in props.items()]
    path.write_text("\n".join(lines) + "\n")


def tail(path: Path, lines: int = 60) -> str:
    """Return the last ``lines`` lines of a text file ('' when it does not exist)."""
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def _load_prctl() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None


# Resolved before any fork: looking a library up inside preexec_fn could deadlock.
_PRCTL = _load_prctl()
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask Linux to SIGKILL the JVM when the
    # process that started it dies (even by SIGKILL), so a crashed test run never
    # leaves brokers behind on a shared machine.
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _parent_death_hook() -> Callable[[], None] | None:
    # Linux ties the death signal to the *thread* that forked: a node started from a
    # worker thread would be killed when that thread ends. Only the main thread lives
    # as long as the process; elsewhere rely on the atexit hook alone.
    return _die_with_parent if threading.current_thread() is threading.main_thread() else None


# Strong references on purpose: a running cluster nobody references any more still
# owns JVMs, and must still be stopped at exit.
_LIVE_CLUSTERS: set[KafkaCluster] = set()


@atexit.register
def _stop_all_clusters() -> None:
    for cluster in list(_LIVE_CLUSTERS):
        with contextlib.suppress(Exception):
            cluster.stop(timeout=5.0)


class KafkaCluster:
    """A local Apache Kafka cluster of ``nodes`` combined broker/controller nodes.

    Lifecycle: ``start()`` (or ``with``) formats the storage, launches every node and
    returns once AdminClient metadata lists all of them; ``stop()`` ends every process
    and deletes the temporary directory (unless ``keep_data``). Node ids are
    ``1..nodes``; ``stop_node``/``kill_node``/``start_node`` take a node id and keep
    the node's ports and data, so a restarted node rejoins as itself. Every cluster
    still running at interpreter exit is stopped by an ``atexit`` hook.

    Parameters: ``listeners`` (client listeners, default one PLAINTEXT);
    ``server_properties`` (extra/overriding ``server.properties`` entries, applied last);
    ``jvm_options`` (appended after ``jvm_defaults``, e.g.
    ``-Djava.security.krb5.conf=...``); ``jvm_defaults`` (the small-heap test settings
    unless replaced, e.g. by ``KAFKA_SCRIPT_JVM_OPTIONS`` for a benchmark); ``env`` (extra
    environment for the JVMs, e.g. ``KRB5_CONFIG``); ``jaas_file`` (passed as
    ``java.security.auth.login.config``); ``scram_users`` (written at format time);
    ``auto_create_topics`` (default off, so a typo in a test fails instead of creating a
    topic); ``host`` (bind and advertise address; use ``"localhost"`` for certificates
    issued to that name); ``data_dir`` / ``keep_data`` (keep configs, logs and data after
    ``stop()``); ``java`` / ``classpath`` (skip discovery).

    Not thread-safe: drive one cluster from one thread (``stop_node`` from a helper
    thread while the main thread produces is fine).
    """

    def __init__(
        self,
        nodes: int = 1,
        *,
        listeners: Sequence[ListenerSpec] | None = None,
        server_properties: Mapping[str, Any] | None = None,
        jvm_options: Sequence[str] = (),
        jvm_defaults: Sequence[str] = DEFAULT_JVM_OPTIONS,
        env: Mapping[str, str] | None = None,
        jaas_file: str | os.PathLike[str] | None = None,
        scram_users: Iterable[ScramUser] = (),
        auto_create_topics: bool = False,
        host: str = "127.0.0.1",
        data_dir: str | os.PathLike[str] | None = None,
        keep_data: bool = False,
        startup_timeout: float = 90.0,
        java: str | None = None,
        classpath: str | None = None,
    ) -> None:
        if nodes < 1:
            raise ValueError(f"nodes must be >= 1, got {nodes}")
        self.nodes = nodes
        specs = list(listeners) if listeners else [ListenerSpec("PLAINTEXT")]
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate listener names in {names}")
        plain = [s for s in specs if s.protocol == "PLAINTEXT"]
        if plain:
            self._internal = plain[0].name
        else:
            if _INTERNAL_LISTENER in names:
                raise ValueError(
                    f"listener {_INTERNAL_LISTENER!r} must be PLAINTEXT: the launcher uses "
                    "it for replication and readiness checks"
                )
            specs.append(ListenerSpec(_INTERNAL_LISTENER))
            self._internal = _INTERNAL_LISTENER
        self.listeners: tuple[ListenerSpec, ...] = tuple(specs)
        self._extra_properties = _frozen_str_map(server_properties)
        self._jvm_options = [*jvm_defaults, *jvm_options]
        self._env = dict(env or {})
        self._jaas_file = Path(jaas_file) if jaas_file is not None else None
        self._scram_users = list(scram_users)
        self._auto_create = auto_create_topics
        self.host = host
        self._keep_data = keep_data or data_dir is not None
        self._data_dir_arg = Path(data_dir) if data_dir is not None else None
        self.startup_timeout = startup_timeout
        self._java = java
        self._classpath = classpath
        # Kafka's format: 16 random bytes, URL-safe base64. One starting with "-" would be
        # read by the storage tool as an option, so draw again in that case.
        self.cluster_id = _new_cluster_id()
        self._nodes: dict[int, KafkaNode] = {}
        # Ports of an earlier run on the same kept data directory (see _save_identity).
        self._saved_ports: dict[str, int] = {}
        self._root: Path | None = None
        self._started = False

    # ----------------------------------------------------------------- public state

    @property
    def node_ids(self) -> list[int]:
        return list(range(1, self.nodes + 1))

    @property
    def directory(self) -> Path:
        """The cluster's working directory (configs, logs and data of every node)."""
        if self._root is None:
            raise RuntimeError("cluster not started: call start() first")
        return self._root

    def node(self, node_id: int) -> KafkaNode:
        try:
            return self._nodes[node_id]
        except KeyError:
            raise KeyError(
                f"unknown node id {node_id!r}; node ids are {self.node_ids}"
                + ("" if self._nodes else " (cluster not started)")
            ) from None

    @property
    def log_files(self) -> dict[int, Path]:
        """node id -> the node's log file, for debugging a failing test."""
        return {nid: n.log_file for nid, n in self._nodes.items()}

    @property
    def bootstrap_servers(self) -> str:
        """Bootstrap servers of the first listener (PLAINTEXT unless you chose otherwise)."""
        return self.bootstrap_servers_for(self.listeners[0].name)

    def bootstrap_servers_for(self, listener_name: str, *, running_only: bool = False) -> str:
        """Comma-separated ``host:port`` of every node's ``listener_name`` listener."""
        if not self._nodes:
            raise RuntimeError("cluster not started: call start() first")
        valid = [s.name for s in self.listeners]
        if listener_name not in valid:
            raise KeyError(f"unknown listener {listener_name!r}; listeners are {valid}")
        return ",".join(
            f"{self.host}:{n.ports[listener_name]}"
            for n in self._nodes.values()
            if n.running or not running_only
        )

    @property
    def internal_bootstrap_servers(self) -> str:
        """Bootstrap servers of the PLAINTEXT listener the launcher itself uses."""
        return self.bootstrap_servers_for(self._internal)

    def admin_config(self) -> dict[str, Any]:
        """librdkafka settings for an AdminClient on the plain listener."""
        return {
            "bootstrap.servers": self.bootstrap_servers_for(self._internal, running_only=True),
            # Readiness polling hits closed ports on purpose; keep stderr quiet.
            "log_level": 0,
        }

    def __repr__(self) -> str:
        state = "running" if self._started else "stopped"
        where = f" {self.bootstrap_servers}" if self._nodes else ""
        return f"<KafkaCluster nodes={self.nodes} {state}{where}>"

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> KafkaCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> KafkaCluster:
        """Format storage, launch all nodes and wait until metadata lists them all."""
        if self._started:
            return self
        java = self._java or find_java()
        self._java = java
        if self._classpath is None:
            self._classpath = kafka_classpath()
        if self._data_dir_arg is not None:
            self._data_dir_arg.mkdir(parents=True, exist_ok=True)
            self._root = self._data_dir_arg
        else:
            self._root = Path(tempfile.mkdtemp(prefix="streamplug-kafka-"))
        _LIVE_CLUSTERS.add(self)
        try:
            self._load_or_save_identity()
            attempts = 3
            for attempt in range(1, attempts + 1):
                # Ports are not part of the formatted storage (static quorum), so a
                # port taken by someone else is fixed by picking new ones.
                # A kept data directory keeps its ports too, so clients of the earlier
                # run reconnect; new ones only if those are taken now.
                self._plan_nodes(reuse_ports=attempt == 1)
                self._write_configs()
                if attempt == 1:
                    self._format_all()
                try:
                    for node in self._nodes.values():
                        self._launch(node)
                    self._wait_ready(self.node_ids, time.monotonic() + self.startup_timeout)
                    break
                except BrokerStartError:
                    if attempt == attempts or not self._port_conflict():
                        raise
                    self._kill_all()
            self._save_identity()
        except BaseException:
            self.stop(timeout=5.0)
            raise
        self._started = True
        return self

    def _load_or_save_identity(self) -> None:
        # A kept data directory can be started again by a new KafkaCluster (e.g.
        # `streamplug broker start --data-dir` twice): the storage is formatted with
        # a cluster id, so the id and node count are remembered next to the data.
        assert self._root is not None
        state = self._root / _IDENTITY_FILE
        if state.is_file():
            saved = dict(
                line.split("=", 1) for line in state.read_text().splitlines() if "=" in line
            )
            if int(saved.get("nodes", "0")) != self.nodes:
                raise ValueError(
                    f"{self._root} holds a {saved.get('nodes')}-node cluster, not "
                    f"{self.nodes} nodes: use nodes={saved.get('nodes')} or another directory"
                )
            self.cluster_id = saved["cluster.id"]
            self._saved_ports = {
                key: int(value) for key, value in saved.items() if key.endswith(".port")
            }
        elif self._keep_data:
            state.write_text(f"cluster.id={self.cluster_id}\nnodes={self.nodes}\n")

    def _save_identity(self) -> None:
        if not self._keep_data or self._root is None:
            return
        lines = [f"cluster.id={self.cluster_id}", f"nodes={self.nodes}"]
        for node in self._nodes.values():
            lines.append(f"node.{node.node_id}.controller.port={node.controller_port}")
            lines.extend(
                f"node.{node.node_id}.listener.{name}.port={port}"
                for name, port in sorted(node.ports.items())
            )
        (self._root / _IDENTITY_FILE).write_text("\n".join(lines) + "\n")

    def _port_conflict(self) -> bool:
        for node in self._nodes.values():
            try:
                with open(node.log_file, "rb") as fh:
                    fh.seek(node.log_offset)
                    if b"Address already in use" in fh.read():
                        return True
            except OSError:
                continue
        return False

    def _kill_all(self) -> None:
        for node in self._nodes.values():
            if node.process is not None and node.running:
                node.process.kill()
                node.process.wait()
            node.process = None

    def stop(self, timeout: float = 15.0, *, graceful: bool | None = None) -> None:
        """Stop every node and delete the temporary directory.

        ``graceful`` (default: only when the data is kept) sends SIGTERM and waits up
        to ``timeout`` before SIGKILL. Data about to be deleted needs no clean
        shutdown, and a whole KRaft cluster shutting down at once can spend many
        seconds in controlled shutdown, so throwaway clusters are SIGKILLed.
        """
        if graceful is None:
            graceful = self._keep_data
        procs = [n.process for n in self._nodes.values() if n.running]
        for proc in procs:
            assert proc is not None
            with contextlib.suppress(ProcessLookupError):
                if graceful:
                    proc.terminate()
                else:
                    proc.kill()
        deadline = time.monotonic() + timeout
        for proc in procs:
            assert proc is not None
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for node in self._nodes.values():
            node.process = None
        self._started = False
        _LIVE_CLUSTERS.discard(self)
        if self._root is not None and not self._keep_data:
            shutil.rmtree(self._root, ignore_errors=True)

    def stop_node(self, node_id: int, timeout: float = 30.0) -> None:
        """Gracefully stop one node (SIGTERM: controlled shutdown), keeping its data.

        Controlled shutdown needs a controller quorum: stopping the last node of a
        majority waits for ``timeout`` and then SIGKILLs; use ``kill_node`` there.
        """
        node = self.node(node_id)
        if node.process is None or not node.running:
            return
        node.process.terminate()
        try:
            node.process.wait(timeout)
        except subprocess.TimeoutExpired:
            node.process.kill()
            node.process.wait()

    def kill_node(self, node_id: int) -> None:
        """SIGKILL one node, like a machine crash; its data stays for start_node()."""
        node = self.node(node_id)
        if node.process is None or not node.running:
            return
        node.process.kill()
        node.process.wait()

    def start_node(self, node_id: int, timeout: float | None = None) -> None:
        """Restart a stopped or killed node with its old ports and data; return once
        cluster metadata lists it again."""
        node = self.node(node_id)
        if node.running:
            return
        self._launch(node)
        self._wait_ready([node_id], time.monotonic() + (timeout or self.startup_timeout))

    def running_node_ids(self) -> list[int]:
        return [nid for nid, n in self._nodes.items() if n.running]

    # ----------------------------------------------------------------- helpers

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        replication_factor: int = 1,
        config: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        """Create a topic and wait until every partition has a leader."""
        admin.create_topic(
            self.admin_config(),
            name,
            partitions=partitions,
            replication_factor=replication_factor,
            config=config,
            timeout=timeout,
        )

    def scram_user(
        self,
        name: str,
        password: str,
        mechanism: str = "SCRAM-SHA-256",
        iterations: int = 4096,
        timeout: float = 30.0,
    ) -> None:
        """Create or update SCRAM credentials on the running cluster.

        For users that must exist before the first client connects, prefer
        ``KafkaCluster(scram_users=[ScramUser(...)])``, written at format time.
        """
        from confluent_kafka.admin import (
            AdminClient,
            ScramCredentialInfo,
            ScramMechanism,
            UserScramCredentialUpsertion,
        )

        mechanisms = {
            "SCRAM-SHA-256": ScramMechanism.SCRAM_SHA_256,
            "SCRAM-SHA-512": ScramMechanism.SCRAM_SHA_512,
        }
        if mechanism not in mechanisms:
            raise ValueError(f"unknown SCRAM mechanism {mechanism!r}; valid: {sorted(mechanisms)}")
        client = AdminClient(self.admin_config())
        upsert = UserScramCredentialUpsertion(
            name, ScramCredentialInfo(mechanisms[mechanism], iterations), password.encode()
        )
        futures = client.alter_user_scram_credentials([upsert], request_timeout=timeout)
        for future in futures.values():
            future.result(timeout)

    # ----------------------------------------------------------------- internals

    def _plan_nodes(self, reuse_ports: bool = False) -> None:
        assert self._root is not None
        saved = self._saved_ports if reuse_ports else {}

        def port(key: str) -> int:
            return saved.get(key) or _free_port(self.host)

        self._nodes = {}
        for nid in self.node_ids:
            directory = self._root / f"node-{nid}"
            (directory / "data").mkdir(parents=True, exist_ok=True)
            self._nodes[nid] = KafkaNode(
                node_id=nid,
                directory=directory,
                controller_port=port(f"node.{nid}.controller.port"),
                ports={s.name: port(f"node.{nid}.listener.{s.name}.port") for s in self.listeners},
            )

    def _base_properties(self, node: KafkaNode) -> dict[str, str]:
        n = self.nodes
        voters = ",".join(
            f"{other.node_id}@{self.host}:{other.controller_port}" for other in self._nodes.values()
        )
        listeners = [f"{s.name}://{self.host}:{node.ports[s.name]}" for s in self.listeners]
        protocol_map = [f"{s.name}:{s.protocol}" for s in self.listeners]
        props: dict[str, str] = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "controller.listener.names": _CONTROLLER_LISTENER,
            "listeners": ",".join(
                [*listeners, f"{_CONTROLLER_LISTENER}://{self.host}:{node.controller_port}"]
            ),
            "advertised.listeners": ",".join(listeners),
            "listener.security.protocol.map": ",".join(
                [*protocol_map, f"{_CONTROLLER_LISTENER}:PLAINTEXT"]
            ),
            "inter.broker.listener.name": self._internal,
            "log.dirs": str(node.log_dir),
            "auto.create.topics.enable": str(self._auto_create).lower(),
            "num.partitions": "1",
            "default.replication.factor": "1",
            # Internal topics sized for tests: replicated across the cluster so a
            # node can die, few partitions so they are created in milliseconds.
            "offsets.topic.replication.factor": str(min(n, 3)),
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": str(min(n, 3)),
            "transaction.state.log.min.isr": str(min(n, 2)),
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": str(min(n, 3)),
            "share.coordinator.state.topic.min.isr": str(min(n, 2)),
            "share.coordinator.state.topic.num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Fewer threads and a small cleaner buffer: the default 128 MiB dedupe
            # buffer alone would take a third of the heap.
            "num.network.threads": "2",
            "num.io.threads": "2",
            "background.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
            "log.cleaner.threads": "1",
            "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
            # Notice a killed node within 4 s instead of 9 s, so failover tests stay
            # short; still loose enough for a loaded 2-core machine.
            # This also bounds how long a SIGKILLed node waits to re-register when
            # restarted (the controller refuses a duplicate id until then).
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "4000",
        }
        for spec in self.listeners:
            props.update(spec.server_properties())
        return props

    def _write_configs(self) -> None:
        assert self._root is not None
        (self._root / "log4j.properties").write_text(_LOG4J)
        (self._root / "log4j2.properties").write_text(_LOG4J2)
        for node in self._nodes.values():
            props = self._base_properties(node)
            props.update(self._extra_properties)
            if props.get("authorizer.class.name"):
                # The controller and INTERNAL listeners are plaintext, so brokers talk
                # to each other (and this module's admin client talks to them) as
                # User:ANONYMOUS; without super-user rights an authorizer would cut
                # the cluster's own plumbing. Clients on secured listeners are
                # authorized normally.
                supers = [u for u in props.get("super.users", "").split(";") if u]
                if "User:ANONYMOUS" not in supers:
                    props["super.users"] = ";".join([*supers, "User:ANONYMOUS"])
            _write_properties(node.config_file, props)

    def _java_command(self, main: str, *args: str) -> list[str]:
        assert self._root is not None and self._java is not None and self._classpath is not None
        cmd = [self._java, *self._jvm_options]
        cmd.append(f"-Dlog4j.configuration=file:{self._root / 'log4j.properties'}")
        cmd.append(f"-Dlog4j2.configurationFile={self._root / 'log4j2.properties'}")
        if self._jaas_file is not None:
            cmd.append(f"-Djava.security.auth.login.config={self._jaas_file}")
        cmd += ["-cp", self._classpath, main, *args]
        return cmd

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        # A user's KAFKA_OPTS/KAFKA_HEAP_OPTS are for their own tools, not for us.
        for key in ("KAFKA_OPTS", "KAFKA_HEAP_OPTS", "JAVA_TOOL_OPTIONS"):
            env.pop(key, None)
        env.update(self._env)
        return env

    def _format_all(self) -> None:
        # Formatting is a JVM start per node (~1 s); run them side by side.
        scram_args: list[str] = []
        for user in self._scram_users:
            scram_args += ["--add-scram", user.format_argument()]
        running: list[tuple[KafkaNode, subprocess.Popen[bytes], Path]] = []
        for node in self._nodes.values():
            out = node.directory / "format.log"
            with open(out, "wb") as fh:
                proc = subprocess.Popen(
                    self._java_command(
                        _STORAGE_TOOL,
                        "format",
                        "--cluster-id",
                        self.cluster_id,
                        "--config",
                        str(node.config_file),
                        "--ignore-formatted",
                        *scram_args,
                    ),
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    env=self._child_env(),
                    preexec_fn=_parent_death_hook(),
                )
            running.append((node, proc, out))
        for node, proc, out in running:
            try:
                code = proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise BrokerStartError(
                    f"formatting the storage of Kafka node {node.node_id} took over 120 s; "
                    f"output:\n{tail(out)}"
                ) from None
            if code != 0:
                output = tail(out)
                for user in self._scram_users:
                    # The storage tool may echo a bad --add-scram argument verbatim.
                    output = output.replace(user.password, "***")
                raise BrokerStartError(
                    f"formatting the storage of Kafka node {node.node_id} failed "
                    f"(exit {code}); config {node.config_file}; output:\n{output}"
                )

    def _launch(self, node: KafkaNode) -> None:
        with open(node.log_file, "ab") as fh:
            node.log_offset = fh.tell()
            node.process = subprocess.Popen(
                self._java_command(_KAFKA_MAIN, str(node.config_file)),
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._child_env(),
                cwd=node.directory,
                # Own session: a Ctrl-C in the terminal reaches only Python, which
                # then stops the brokers in order instead of racing them.
                start_new_session=True,
                preexec_fn=_parent_death_hook(),
            )

    @staticmethod
    def _logged_started(node: KafkaNode) -> bool:
        try:
            with open(node.log_file, "rb") as fh:
                fh.seek(node.log_offset)
                return _STARTED_MARKER in fh.read()
        except OSError:
            return False

    def _wait_ready(self, node_ids: Sequence[int], deadline: float) -> None:
        from confluent_kafka.admin import AdminClient

        wanted = set(node_ids)
        last_error = "no metadata yet"
        client: AdminClient | None = None
        while True:
            for nid in node_ids:
                node = self._nodes[nid]
                if not node.running:
                    code = node.process.returncode if node.process is not None else None
                    raise BrokerStartError(
                        f"Kafka node {nid} exited with code {code} during startup; "
                        f"log {node.log_file}:\n{tail(node.log_file)}"
                    )
            # A node killed moments ago may still be listed by the controller (until
            # its session times out), so metadata alone cannot tell that the *new*
            # process is up: it must also have logged that it started (Kafka opens
            # its client listeners only once the controller has unfenced it).
            starting = [nid for nid in node_ids if not self._logged_started(self._nodes[nid])]
            if starting:
                last_error = f"nodes {starting} have not finished starting"
            else:
                if client is None:
                    client = AdminClient(self.admin_config())
                try:
                    metadata = client.list_topics(timeout=1.0)
                    seen = set(metadata.brokers)
                    if wanted <= seen:
                        return
                    last_error = (
                        f"metadata lists brokers {sorted(seen)}, waiting for {sorted(wanted)}"
                    )
                except Exception as exc:  # KafkaException while nothing listens yet
                    last_error = str(exc)
            if time.monotonic() > deadline:
                logs = "\n".join(
                    f"--- node {nid} ({self._nodes[nid].log_file}) ---\n"
                    f"{tail(self._nodes[nid].log_file, 30)}"
                    for nid in node_ids
                )
                raise BrokerStartError(
                    f"Kafka nodes {list(node_ids)} not ready after "
                    f"{self.startup_timeout:.0f} s ({last_error}); last log lines:\n{logs}"
                )
            time.sleep(0.2)
