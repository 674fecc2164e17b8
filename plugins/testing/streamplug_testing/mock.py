"""librdkafka's in-process mock Kafka cluster, driven through ctypes.

The confluent-kafka wheel bundles librdkafka, which contains a mock cluster: real TCP
listeners on localhost speaking the Kafka protocol, with knobs for fault injection
(broker down, per-request errors, leader and coordinator moves). It needs no Java and
starts in milliseconds, so it backs ``streamplug broker start --embedded`` and the fast
unit tests.

Its transaction support is incomplete (no fencing, a crashed producer's open
transaction becomes visible, TxnOffsetCommit is dropped): never use it to prove
exactly-once; use :class:`streamplug_testing.broker.KafkaCluster` for that.
CreateTopics is not implemented either: create topics with :meth:`MockCluster.create_topic`.

Typical use::

    with MockCluster(brokers=3) as mock:
        mock.create_topic("orders", partitions=6, replication_factor=3)
        producer = Producer({"bootstrap.servers": mock.bootstrap_servers})
        mock.broker_down(1)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import enum
import os
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException

__all__ = ["ApiKey", "MockCluster", "MockClusterUnavailable", "find_librdkafka"]

LIBRDKAFKA_ENV = "STREAMPLUG_LIBRDKAFKA"
_RD_KAFKA_CONSUMER = 1  # rd_kafka_type_t: a consumer handle needs no bootstrap servers.


class ApiKey(enum.IntEnum):
    """Kafka protocol request types, for :meth:`MockCluster.push_request_errors`."""

    PRODUCE = 0
    FETCH = 1
    LIST_OFFSETS = 2
    METADATA = 3
    OFFSET_COMMIT = 8
    OFFSET_FETCH = 9
    FIND_COORDINATOR = 10
    JOIN_GROUP = 11
    HEARTBEAT = 12
    LEAVE_GROUP = 13
    SYNC_GROUP = 14
    DESCRIBE_GROUPS = 15
    LIST_GROUPS = 16
    API_VERSIONS = 18
    CREATE_TOPICS = 19
    INIT_PRODUCER_ID = 22
    ADD_PARTITIONS_TO_TXN = 24
    ADD_OFFSETS_TO_TXN = 25
    END_TXN = 26
    TXN_OFFSET_COMMIT = 28


class MockClusterUnavailable(RuntimeError):
    """librdkafka or its mock-cluster API could not be found."""


def find_librdkafka() -> Path:
    """Locate the librdkafka shared library confluent-kafka uses.

    Order: ``$STREAMPLUG_LIBRDKAFKA``; the copy bundled in the wheel
    (``confluent_kafka.libs/librdkafka-*.so*`` on Linux, ``confluent_kafka/.dylibs``
    on macOS); a system ``librdkafka`` (confluent-kafka built from source).
    """
    override = os.environ.get(LIBRDKAFKA_ENV)
    if override:
        path = Path(override)
        if not path.is_file():
            raise MockClusterUnavailable(f"{LIBRDKAFKA_ENV}={override!r} is not a file")
        return path
    import confluent_kafka

    package_dir = Path(confluent_kafka.__file__).resolve().parent
    patterns = [
        (package_dir.parent / "confluent_kafka.libs", "librdkafka*.so*"),
        (package_dir / ".dylibs", "librdkafka*.dylib"),
        (package_dir.parent / "confluent_kafka.libs", "librdkafka*.dll"),
    ]
    for directory, pattern in patterns:
        found = sorted(directory.glob(pattern))
        if found:
            return found[0]
    system = ctypes.util.find_library("rdkafka")
    if system:
        return Path(system)
    raise MockClusterUnavailable(
        "cannot find librdkafka: looked in "
        f"{package_dir.parent / 'confluent_kafka.libs'} and {package_dir / '.dylibs'} "
        "and for a system librdkafka. Install the binary wheel with "
        "'pip install --force-reinstall confluent-kafka' or set "
        f"{LIBRDKAFKA_ENV} to the path of librdkafka."
    )


_lib_lock = threading.Lock()
_lib: ctypes.CDLL | None = None

# name -> (restype, argtypes); None restype = void.
_VOIDP = ctypes.c_void_p
_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "rd_kafka_conf_new": (_VOIDP, []),
    "rd_kafka_conf_destroy": (None, [_VOIDP]),
    "rd_kafka_conf_set": (
        ctypes.c_int,
        [_VOIDP, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t],
    ),
    "rd_kafka_new": (_VOIDP, [ctypes.c_int, _VOIDP, ctypes.c_char_p, ctypes.c_size_t]),
    "rd_kafka_destroy": (None, [_VOIDP]),
    "rd_kafka_mock_cluster_new": (_VOIDP, [_VOIDP, ctypes.c_int]),
    "rd_kafka_mock_cluster_destroy": (None, [_VOIDP]),
    "rd_kafka_mock_cluster_bootstraps": (ctypes.c_char_p, [_VOIDP]),
    "rd_kafka_mock_topic_create": (
        ctypes.c_int,
        [_VOIDP, ctypes.c_char_p, ctypes.c_int, ctypes.c_int],
    ),
    "rd_kafka_mock_topic_set_error": (None, [_VOIDP, ctypes.c_char_p, ctypes.c_int]),
    "rd_kafka_mock_broker_set_down": (ctypes.c_int, [_VOIDP, ctypes.c_int32]),
    "rd_kafka_mock_broker_set_up": (ctypes.c_int, [_VOIDP, ctypes.c_int32]),
    "rd_kafka_mock_broker_set_rtt": (ctypes.c_int, [_VOIDP, ctypes.c_int32, ctypes.c_int]),
    "rd_kafka_mock_push_request_errors_array": (
        None,
        [_VOIDP, ctypes.c_int16, ctypes.c_size_t, ctypes.POINTER(ctypes.c_int)],
    ),
    "rd_kafka_mock_clear_request_errors": (None, [_VOIDP, ctypes.c_int16]),
    "rd_kafka_mock_partition_set_leader": (
        ctypes.c_int,
        [_VOIDP, ctypes.c_char_p, ctypes.c_int32, ctypes.c_int32],
    ),
    "rd_kafka_mock_partition_set_follower": (
        ctypes.c_int,
        [_VOIDP, ctypes.c_char_p, ctypes.c_int32, ctypes.c_int32],
    ),
    "rd_kafka_mock_coordinator_set": (
        ctypes.c_int,
        [_VOIDP, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int32],
    ),
    "rd_kafka_mock_set_apiversion": (
        ctypes.c_int,
        [_VOIDP, ctypes.c_int16, ctypes.c_int16, ctypes.c_int16],
    ),
    # Newer than the rest (librdkafka 2.5+ / 1.x): optional, see _OPTIONAL.
    "rd_kafka_mock_set_controller_id": (None, [_VOIDP, ctypes.c_int32]),
    "rd_kafka_mock_group_initial_rebalance_delay_ms": (None, [_VOIDP, ctypes.c_int32]),
}
_OPTIONAL = {"rd_kafka_mock_set_controller_id", "rd_kafka_mock_group_initial_rebalance_delay_ms"}


def _library() -> ctypes.CDLL:
    global _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        path = find_librdkafka()
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as exc:
            raise MockClusterUnavailable(f"cannot load librdkafka from {path}: {exc}") from exc
        missing = []
        for name, (restype, argtypes) in _SIGNATURES.items():
            try:
                func = getattr(lib, name)
            except AttributeError:
                if name not in _OPTIONAL:
                    missing.append(name)
                continue
            func.restype = restype
            func.argtypes = argtypes
        if missing:
            raise MockClusterUnavailable(
                f"{path} does not export the mock-cluster API ({', '.join(missing)}); "
                "it needs librdkafka >= 2.3 built with the mock cluster, as bundled in the "
                "confluent-kafka binary wheels: 'pip install \"confluent-kafka>=2.3\"'"
            )
        _lib = lib
        return lib


def _check(err: int, what: str) -> None:
    if err != 0:
        raise KafkaException(KafkaError(err, f"mock cluster: {what} failed"))


class MockCluster:
    """A librdkafka mock cluster with ``brokers`` brokers (ids ``1..brokers``).

    Created and listening when the constructor returns; ``close()`` stops it (clients
    still connected see disconnects). Methods may be called from any thread. The
    cluster lives inside this Python process: it disappears when the process exits.
    """

    def __init__(self, brokers: int = 1) -> None:
        if brokers < 1:
            raise ValueError(f"brokers must be >= 1, got {brokers}")
        self._lib = _library()
        self.broker_count = brokers
        errstr = ctypes.create_string_buffer(512)
        conf = self._lib.rd_kafka_conf_new()
        # The owning handle logs nothing useful and never connects anywhere.
        self._lib.rd_kafka_conf_set(conf, b"log_level", b"3", errstr, len(errstr))
        rk = self._lib.rd_kafka_new(_RD_KAFKA_CONSUMER, conf, errstr, len(errstr))
        if not rk:
            self._lib.rd_kafka_conf_destroy(conf)  # ownership passes only on success
            raise MockClusterUnavailable(
                f"rd_kafka_new failed: {errstr.value.decode(errors='replace')}"
            )
        # The rd_kafka_t owns the mock cluster's thread: keep it alive until close().
        self._rk: int | None = rk
        mc = self._lib.rd_kafka_mock_cluster_new(rk, brokers)
        if not mc:
            self._lib.rd_kafka_destroy(rk)
            self._rk = None
            raise MockClusterUnavailable("rd_kafka_mock_cluster_new returned NULL")
        self._mc: int | None = mc
        self.bootstrap_servers: str = self._lib.rd_kafka_mock_cluster_bootstraps(mc).decode()
        # The mock reports controller id 0 while brokers are numbered from 1, so admin
        # calls wait for a controller until they time out; with a real id they fail
        # fast where unsupported. And no 3 s initial-rebalance delay for groups.
        # librdkafka < 2.5 (confluent-kafka 2.3/2.4) lacks the call; admin requests
        # there wait for their timeout instead of failing fast.
        self.controller_pinned = hasattr(self._lib, "rd_kafka_mock_set_controller_id")
        if self.controller_pinned:
            self._lib.rd_kafka_mock_set_controller_id(mc, 1)
        self.rebalance_delay_removed = hasattr(
            self._lib, "rd_kafka_mock_group_initial_rebalance_delay_ms"
        )
        if self.rebalance_delay_removed:
            self._lib.rd_kafka_mock_group_initial_rebalance_delay_ms(mc, 0)

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> MockCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._mc is None

    def close(self) -> None:
        """Destroy the cluster and its owning handle. Idempotent."""
        mc, rk = self._mc, self._rk
        self._mc = self._rk = None
        if mc is not None:
            self._lib.rd_kafka_mock_cluster_destroy(mc)
        if rk is not None:
            self._lib.rd_kafka_destroy(rk)

    def __repr__(self) -> str:
        state = "closed" if self.closed else self.bootstrap_servers
        return f"<MockCluster brokers={self.broker_count} {state}>"

    @property
    def broker_ids(self) -> list[int]:
        return list(range(1, self.broker_count + 1))

    def _handle(self) -> int:
        if self._mc is None:
            raise RuntimeError("mock cluster is closed")
        return self._mc

    # ------------------------------------------------------------------ topology

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int = 1) -> None:
        """Create a topic (the mock does not implement the CreateTopics admin API)."""
        if replication_factor > self.broker_count:
            raise ValueError(
                f"replication_factor {replication_factor} exceeds the mock's "
                f"{self.broker_count} brokers"
            )
        _check(
            self._lib.rd_kafka_mock_topic_create(
                self._handle(), name.encode(), partitions, replication_factor
            ),
            f"create_topic({name!r}, {partitions}, {replication_factor})",
        )

    def set_partition_leader(self, topic: str, partition: int, broker_id: int) -> None:
        """Move a partition's leadership (``broker_id`` -1: leaderless)."""
        _check(
            self._lib.rd_kafka_mock_partition_set_leader(
                self._handle(), topic.encode(), partition, broker_id
            ),
            f"set_partition_leader({topic!r}, {partition}, {broker_id})",
        )

    def set_partition_follower(self, topic: str, partition: int, broker_id: int) -> None:
        """Set the preferred replica consumers are told to fetch from (KIP-392)."""
        _check(
            self._lib.rd_kafka_mock_partition_set_follower(
                self._handle(), topic.encode(), partition, broker_id
            ),
            f"set_partition_follower({topic!r}, {partition}, {broker_id})",
        )

    def set_coordinator(
        self, key_type: Literal["group", "transaction"], key: str, broker_id: int
    ) -> None:
        """Pin the coordinator of a group id or transactional id to a broker."""
        if key_type not in ("group", "transaction"):
            raise ValueError(f"key_type must be 'group' or 'transaction', got {key_type!r}")
        _check(
            self._lib.rd_kafka_mock_coordinator_set(
                self._handle(), key_type.encode(), key.encode(), broker_id
            ),
            f"set_coordinator({key_type!r}, {key!r}, {broker_id})",
        )

    # ------------------------------------------------------------------ faults

    def broker_down(self, broker_id: int) -> None:
        """Disconnect a broker and refuse connections (-1: all). Leaders do not move."""
        _check(
            self._lib.rd_kafka_mock_broker_set_down(self._handle(), broker_id),
            f"broker_down({broker_id})",
        )

    def broker_up(self, broker_id: int) -> None:
        """Accept connections on a broker again (-1: all)."""
        _check(
            self._lib.rd_kafka_mock_broker_set_up(self._handle(), broker_id),
            f"broker_up({broker_id})",
        )

    def set_broker_rtt(self, broker_id: int, rtt_ms: int) -> None:
        """Delay every response of a broker by ``rtt_ms`` (-1: all brokers)."""
        _check(
            self._lib.rd_kafka_mock_broker_set_rtt(self._handle(), broker_id, rtt_ms),
            f"set_broker_rtt({broker_id}, {rtt_ms})",
        )

    def push_request_errors(self, api_key: int, *errors: int) -> None:
        """Fail the next ``len(errors)`` requests of ``api_key`` (any broker) with
        these error codes, in order, e.g.
        ``push_request_errors(ApiKey.PRODUCE, KafkaError.NOT_LEADER_FOR_PARTITION)``.
        ``KafkaError._TRANSPORT`` makes the broker drop the connection instead."""
        if not errors:
            return
        array = (ctypes.c_int * len(errors))(*[int(e) for e in errors])
        self._lib.rd_kafka_mock_push_request_errors_array(
            self._handle(), int(api_key), len(errors), array
        )

    def clear_request_errors(self, api_key: int) -> None:
        """Drop errors still queued for ``api_key``."""
        self._lib.rd_kafka_mock_clear_request_errors(self._handle(), int(api_key))

    def set_topic_error(self, topic: str, error: int) -> None:
        """Report ``error`` for the topic in Metadata responses (0 clears it)."""
        self._lib.rd_kafka_mock_topic_set_error(self._handle(), topic.encode(), int(error))

    def set_apiversion(self, api_key: int, min_version: int, max_version: int) -> None:
        """Restrict the versions the mock advertises for an API (-1, -1 disables it)."""
        _check(
            self._lib.rd_kafka_mock_set_apiversion(
                self._handle(), int(api_key), min_version, max_version
            ),
            f"set_apiversion({api_key}, {min_version}, {max_version})",
        )
