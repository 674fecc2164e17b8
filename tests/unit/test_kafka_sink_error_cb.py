"""The sink keeps a configure_client hook's ``error_cb`` (it chains it, it never replaces
it), an exception that callback raises ends the sink's blocking calls, and no blocking
loop of the sink waits forever."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from streamplug.api.sink import DeliveryGuarantee
from streamplug.errors import CheckpointError
from streamplug.metrics import MetricGroup
from streamplug.plugins import hookimpl
from streamplug.testing import sink_context
from streamplug_kafka_common.callbacks import ChainedErrorCallback
from streamplug_kafka_sink import (
    KafkaDeliveryError,
    KafkaRecordSerializationSchema,
    KafkaSink,
    _config,
)
from streamplug_kafka_sink.metrics import ProducerStatistics, WriterMetrics
from streamplug_kafka_sink.transaction import ExactlyOnceWriter, TransactionManager
from streamplug_kafka_sink.writer import flush_producer


class CredentialsRejected(Exception):
    """Stands in for the security plugin's KafkaAuthenticationError."""


class RaisingHook:
    """A configure_client hook that installs an error_cb, as the security plugin does: it
    records every error it sees and raises on the first one."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    @hookimpl
    def streamplug_configure_client(
        self, properties: MutableMapping[str, Any], role: str, connector: str
    ) -> None:
        def error_cb(err: KafkaError) -> None:
            self.seen.append((role, err.code()))
            raise CredentialsRejected(f"{role}: {err.str()}")

        properties["error_cb"] = error_cb


def _schema() -> KafkaRecordSerializationSchema[Any]:
    return (
        KafkaRecordSerializationSchema.builder()
        .set_topic("out")
        .set_value_serialization_schema(lambda s: s.encode())
        .build()
    )


# -- the shared callback ---------------------------------------------------------------------


def test_chained_callback_calls_both_and_keeps_the_first_exception() -> None:
    calls: list[str] = []

    def previous(err: Any) -> None:
        calls.append(f"previous {err}")
        raise CredentialsRejected(str(err))

    config: dict[str, Any] = {"error_cb": previous}
    chained = ChainedErrorCallback.install(config, lambda err: calls.append(f"own {err}"))
    assert config["error_cb"] is chained and chained.previous is previous
    assert chained.failure is None
    chained.raise_pending()  # nothing pending: no-op

    chained("first")  # never raises: librdkafka must not see the exception
    chained("second")
    assert calls == ["own first", "previous first", "own second", "previous second"]
    assert isinstance(chained.failure, CredentialsRejected) and str(chained.failure) == "first"
    with pytest.raises(CredentialsRejected, match="first"):
        chained.raise_pending()


def test_chained_callback_without_a_previous_one() -> None:
    seen: list[Any] = []
    config: dict[str, Any] = {}
    chained = ChainedErrorCallback.install(config, seen.append)
    chained("e")
    assert seen == ["e"] and chained.failure is None and chained.previous is None


# -- flush has an end ------------------------------------------------------------------------


class StuckProducer:
    """A producer whose brokers never answer: flush never gets its queue empty."""

    def __init__(self, on_flush: Callable[[], None] = lambda: None) -> None:
        self.on_flush = on_flush
        self.flushes = 0

    def flush(self, timeout: float = -1) -> int:
        self.flushes += 1
        self.on_flush()
        time.sleep(min(timeout, 0.01))
        return 3


def test_flush_gives_up_at_its_deadline_naming_what_timed_out() -> None:
    started = time.monotonic()
    with pytest.raises(KafkaDeliveryError, match=r"flush timed out: 3 record\(s\) of subtask 0"):
        flush_producer(StuckProducer(), "of subtask 0 to be acknowledged", timeout_s=0.2)  # type: ignore[arg-type]
    assert time.monotonic() - started < 5


def test_flush_ends_at_once_on_the_chained_callbacks_exception() -> None:
    chained = ChainedErrorCallback(None, lambda err: (_ for _ in ()).throw(CredentialsRejected()))
    producer = StuckProducer(on_flush=lambda: chained("auth failed"))
    with pytest.raises(CredentialsRejected):
        flush_producer(
            producer,  # type: ignore[arg-type]
            "of subtask 0 to be acknowledged",
            timeout_s=300,
            failure=lambda: chained.failure,
        )
    assert producer.flushes == 1


def test_delivery_wait_follows_the_message_and_transaction_timeouts() -> None:
    assert _config.delivery_wait_s({}) == 300 + 30
    assert _config.delivery_wait_s({"message.timeout.ms": "5000"}) == 5 + 30
    assert _config.delivery_wait_s({"delivery.timeout.ms": "7000"}) == 7 + 30
    # A transactional producer's records time out with the transaction.
    assert (
        _config.delivery_wait_s({"message.timeout.ms": "0", "transaction.timeout.ms": "90000"})
        == 90 + 30
    )
    assert _config.delivery_wait_s({"transaction.timeout.ms": "60000"}) == 60 + 30


# -- the writers chain the hook's error_cb -------------------------------------------------


@pytest.mark.parametrize("guarantee", [DeliveryGuarantee.NONE, DeliveryGuarantee.AT_LEAST_ONCE])
def test_writer_chains_the_hooks_error_cb_and_fails_with_its_exception(
    guarantee: DeliveryGuarantee,
) -> None:
    # Nothing listens on port 1: librdkafka reports the refused connection to error_cb.
    # Without chaining the hook's callback is lost and the flush ends only when the records
    # time out (a KafkaDeliveryError after message.timeout.ms), not with the hook's error.
    hook = RaisingHook()
    sink = (
        KafkaSink.builder()
        .set_bootstrap_servers("127.0.0.1:1")
        .set_record_serializer(_schema())
        .set_delivery_guarantee(guarantee)
        .set_property("message.timeout.ms", "20000")
        .build()
    )
    writer = sink.create_writer(sink_context(plugins=[hook]), [])
    started = time.monotonic()
    try:
        writer.write(["a", "b"], None)
        with pytest.raises(CredentialsRejected, match="producer"):
            writer.flush(True)
        # Sticky: the next call fails the same way instead of writing into a dead client.
        with pytest.raises(CredentialsRejected):
            writer.write(["c"], None)
    finally:
        writer.close()
    assert time.monotonic() - started < 15
    assert hook.seen and all(role == "producer" for role, _code in hook.seen)


class FakeTransactionalProducer:
    """Just enough of a transactional producer; ``fail_init`` makes init_transactions
    report an error event (as librdkafka does for a rejected login) and time out."""

    def __init__(self, conf: dict[str, Any], fail_init: bool) -> None:
        self.conf = conf
        self.fail_init = fail_init
        self.produced = 0
        self.stuck = False
        self.fenced = False

    def init_transactions(self, timeout: float) -> None:
        if self.fail_init:
            self.conf["error_cb"](KafkaError(KafkaError._AUTHENTICATION, "bad password"))
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "init timed out"))

    def begin_transaction(self) -> None:
        if self.fenced:
            raise KafkaException(
                KafkaError(KafkaError._FENCED, "producer fenced by newer instance", fatal=True)
            )

    def produce(self, *args: Any, **kwargs: Any) -> None:
        self.produced += 1

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = -1) -> int:
        if self.fenced:
            # What confluent-kafka 2.16.1 does after fencing: the queued record is purged,
            # and flush ends in a bare SystemError; the fatal error itself is lost (it
            # never reaches error_cb).
            self.conf["on_delivery"](KafkaError(KafkaError._PURGE_QUEUE), None)
            raise SystemError("<method 'flush'> returned NULL without setting an exception")
        if self.stuck:
            self.conf["error_cb"](KafkaError(KafkaError._SSL, "certificate verify failed"))
            return self.produced
        return 0

    def purge(self) -> None:
        pass


def _manager(
    monkeypatch: pytest.MonkeyPatch, hook: RaisingHook, *, fail_init: bool
) -> tuple[TransactionManager, list[FakeTransactionalProducer]]:
    def no_commit_log(self: TransactionManager, present: threading.Event) -> int:
        present.set()
        return 0

    monkeypatch.setattr(TransactionManager, "_prepare_commit_log", no_commit_log)
    producers: list[FakeTransactionalProducer] = []

    def factory(conf: dict[str, Any]) -> Any:
        producers.append(FakeTransactionalProducer(conf, fail_init))
        return producers[-1]

    ctx = sink_context(plugins=[hook])
    producer_config: dict[str, Any] = {
        "bootstrap.servers": "127.0.0.1:1",
        "transactional.id": "t-0",
        "transaction.timeout.ms": "60000",
    }
    ctx.configure_client(producer_config, role="producer", connector="kafka")
    manager = TransactionManager(
        transactional_id="t-0",
        producer_config=producer_config,
        admin_config={},
        consumer_config={},
        commit_log_topic="t.commits",
        commit_log_replication=1,
        job_name="test-job",
        statistics=ProducerStatistics(),
        producer_factory=factory,
    )
    return manager, producers


def test_exactly_once_init_fails_with_the_hooks_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = RaisingHook()
    manager, _producers = _manager(monkeypatch, hook, fail_init=True)
    with pytest.raises(CredentialsRejected, match="bad password"):
        manager.ensure_ready()
    # The failed producer stays failed, with the same explanation.
    with pytest.raises(CredentialsRejected):
        manager.ensure_ready()
    assert hook.seen == [("producer", KafkaError._AUTHENTICATION)]


def test_exactly_once_flush_ends_with_the_hooks_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = RaisingHook()
    manager, producers = _manager(monkeypatch, hook, fail_init=False)
    writer = ExactlyOnceWriter(
        manager,
        _schema(),
        sink_context(),
        _metrics_for(manager),
    )
    try:
        writer.write(["a"], None)
        producers[0].stuck = True
        with pytest.raises(CredentialsRejected, match="certificate verify failed"):
            writer.flush(False)
        with pytest.raises(CredentialsRejected):
            manager.commit(1, [])
    finally:
        writer.close()


def test_a_fencing_that_error_cb_never_saw_is_reported_as_fencing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manager, producers = _manager(monkeypatch, RaisingHook(), fail_init=False)
    writer = ExactlyOnceWriter(manager, _schema(), sink_context(), _metrics_for(manager))
    try:
        writer.write(["late"], None)
        producers[0].fenced = True
        # Not "Purged in queue": the user learns that another producer took over.
        with pytest.raises(KafkaDeliveryError, match=r"was fenced.*newer producer initialised"):
            writer.flush(False)
        assert manager.state == "FAILED"
        with pytest.raises(CheckpointError, match="was fenced"):
            manager.commit(1, [])
    finally:
        writer.close()


def test_an_exactly_once_writer_starts_its_producer_while_the_job_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manager, producers = _manager(monkeypatch, RaisingHook(), fail_init=False)
    release = threading.Event()
    began = threading.Event()
    real_init = FakeTransactionalProducer.init_transactions

    def slow_init(self: FakeTransactionalProducer, timeout: float) -> None:
        began.set()
        assert release.wait(10)
        real_init(self, timeout)

    monkeypatch.setattr(FakeTransactionalProducer, "init_transactions", slow_init)
    # The constructor returns while init_transactions still waits: the source starts
    # reading meanwhile.
    writer = ExactlyOnceWriter(manager, _schema(), sink_context(), _metrics_for(manager))
    try:
        assert began.wait(10)
        assert manager.state == "NEW"
        written = threading.Thread(target=writer.write, args=(["a", "b"], None))
        written.start()
        written.join(0.2)
        assert written.is_alive(), "a write went ahead of the transaction"
        assert producers[0].produced == 0
        release.set()
        written.join(10)
        assert not written.is_alive()
        assert producers[0].produced == 2
        assert manager.state == "IN_TRANSACTION"
    finally:
        release.set()
        writer.close()


def test_a_failed_producer_start_fails_the_first_write_and_checkpoint_with_its_own_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hook = RaisingHook()
    manager, _producers = _manager(monkeypatch, hook, fail_init=True)
    writer = ExactlyOnceWriter(manager, _schema(), sink_context(), _metrics_for(manager))
    try:
        # Not "failed earlier in this attempt": the rejected login, as a start in the
        # constructor raised it.
        with pytest.raises(CredentialsRejected, match="bad password"):
            writer.write(["a"], None)
        with pytest.raises(CredentialsRejected, match="bad password"):
            writer.prepare_commit()
        with pytest.raises(CredentialsRejected, match="bad password"):
            writer.flush(True)
        assert hook.seen == [("producer", KafkaError._AUTHENTICATION)]
    finally:
        writer.close()


def _metrics_for(manager: TransactionManager) -> WriterMetrics:
    return WriterMetrics(MetricGroup(("test",)), manager.statistics, False)


# -- the commit-log clients get the connection settings --------------------------------------


def test_commit_log_clients_get_kerberos_and_unsecured_oauthbearer_settings() -> None:
    props = {
        "bootstrap.servers": "k:9092",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "GSSAPI",
        "security.kerberos.login.keytab": "/etc/kafka.keytab",
        "security.kerberos.login.principal": "app@EXAMPLE.COM",
        "enable.sasl.oauthbearer.unsecure.jwt": "true",
        "linger.ms": "5",  # producer-only: stays off the admin and consumer clients
    }
    conn = _config.connection_properties(props)
    assert conn["security.kerberos.login.keytab"] == "/etc/kafka.keytab"
    assert conn["security.kerberos.login.principal"] == "app@EXAMPLE.COM"
    assert conn["enable.sasl.oauthbearer.unsecure.jwt"] == "true"
    assert "linger.ms" not in conn
