"""The security plugin against one real Kafka 4.1.1 broker with four secured listeners
(SASL_SSL/SCRAM-SHA-256+512, SASL_PLAINTEXT/PLAIN, SSL with required client
certificates, SASL_PLAINTEXT/GSSAPI backed by an MIT KDC), all configured the
Flink/Java way and translated by the plugin's hook.

Kerberos needs a librdkafka with GSSAPI: `tox -e gssapi` builds one; elsewhere those
tests skip and the build-time refusal is tested instead.
"""

from __future__ import annotations

import importlib.util
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from streamplug.api import DeserializationSchema, WatermarkStrategy
from streamplug.api.sink import DeliveryGuarantee
from streamplug.errors import ConfigError, JobFailedError
from streamplug.plugins import PluginHost, build_plugin_host
from streamplug.runtime import RestartStrategies, StreamExecutionEnvironment
from streamplug_kafka_common.admin import read_all
from streamplug_kafka_security import KafkaAuthenticationError, librdkafka_capabilities
from streamplug_kafka_security.testing import STORE_PASSWORD, SecuredKafka, kdc_available

pytestmark = pytest.mark.integration

RECORDS = 50
# Authentication failures must surface well before any librdkafka timeout (message
# timeout 300 s, socket timeout 60 s).
FAIL_FAST_S = 15.0

GSSAPI = librdkafka_capabilities().gssapi
needs_gssapi = pytest.mark.skipif(
    not GSSAPI, reason="this librdkafka has no GSSAPI: run `tox -e gssapi` for the Kerberos tests"
)
needs_kdc = pytest.mark.skipif(
    not kdc_available(), reason="MIT krb5 KDC not installed (.ci/install-security.sh installs it)"
)


needs_pyjks = pytest.mark.skipif(
    importlib.util.find_spec("jks") is None,
    reason="pyjks is not installed: pip install 'streamplug-kafka-security[jks]'",
)
# librdkafka < 2.6.1 sends a SCRAM nonce Kafka 4 rejects (the plugin warns about it).
needs_scram_fix = pytest.mark.skipif(
    librdkafka_capabilities().version_tuple < (2, 6, 1),
    reason=f"librdkafka {librdkafka_capabilities().version} has the SCRAM nonce bug Kafka 4 rejects",
)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredKafka]:
    directory = tmp_path_factory.mktemp("secured-kafka")
    with SecuredKafka.start(directory) as kafka:
        if kafka.kdc is None:
            yield kafka
            return
        # Kerberos clients read the realm's krb5.conf and keep tickets in a private cache.
        with pytest.MonkeyPatch.context() as mp:
            for key, value in kafka.kerberos_env(directory / "krb5cc").items():
                mp.setenv(key, value)
            yield kafka


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return build_plugin_host(autoload=True)


def _topic(secured: SecuredKafka, partitions: int = 2) -> str:
    name = f"sec-{uuid.uuid4().hex[:10]}"
    secured.cluster.create_topic(name, partitions=partitions)
    return name


def _internal(secured: SecuredKafka) -> dict[str, Any]:
    return {"bootstrap.servers": secured.cluster.internal_bootstrap_servers}


def _produce_plain(secured: SecuredKafka, topic: str) -> list[str]:
    values = [f"record-{i}" for i in range(RECORDS)]
    producer = Producer(_internal(secured))
    for v in values:
        producer.produce(topic, v.encode())
    assert producer.flush(10) == 0
    return values


def _read_plain(secured: SecuredKafka, topic: str) -> list[str]:
    """Every value of ``topic`` up to its end, over the plain listener, as a read_committed
    consumer sees it (``read_all`` also waits for the commit markers of an exactly-once
    job's last transaction)."""
    return sorted((m.value() or b"").decode() for m in read_all(_internal(secured), topic))


def _properties(secured: SecuredKafka, kind: str) -> dict[str, str]:
    if kind.startswith("SCRAM"):
        mechanism, _, trust = kind.partition("/")
        return secured.scram_properties(mechanism, truststore=trust or "JKS")
    if kind == "PLAIN":
        return secured.plain_properties()
    if kind == "OAUTHBEARER":
        return secured.oauthbearer_properties()
    if kind.startswith("MTLS"):
        return secured.mtls_properties(kind.partition("/")[2] or "JKS")
    if kind.startswith("KERBEROS"):
        return secured.kerberos_properties(kind.partition("/")[2] or "flink")
    raise AssertionError(kind)


KINDS = [
    pytest.param("SCRAM-SHA-256/JKS", marks=[needs_scram_fix, needs_pyjks]),
    pytest.param("SCRAM-SHA-512/PKCS12", marks=needs_scram_fix),
    pytest.param("SCRAM-SHA-256/PEM", marks=needs_scram_fix),
    "PLAIN",
    "OAUTHBEARER",
    pytest.param("MTLS/JKS", marks=needs_pyjks),
    "MTLS/PKCS12",
    "MTLS/PEM",
    pytest.param("KERBEROS/flink", marks=[needs_gssapi, needs_kdc]),
    pytest.param("KERBEROS/jaas", marks=[needs_gssapi, needs_kdc]),
]


# -- clients configured by the hook ------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_clients_configured_by_the_hook_round_trip(
    secured: SecuredKafka, host: PluginHost, kind: str
) -> None:
    topic = _topic(secured)
    producer_props: dict[str, Any] = dict(_properties(secured, kind))
    host.configure_client(producer_props, role="producer", connector="kafka")
    assert "sasl.jaas.config" not in producer_props
    assert not any(k.startswith(("ssl.truststore", "security.kerberos")) for k in producer_props)
    producer = Producer(producer_props)
    for i in range(RECORDS):
        producer.produce(topic, f"v{i}".encode(), key=str(i).encode())
    assert producer.flush(30) == 0

    consumer_props: dict[str, Any] = dict(_properties(secured, kind))
    consumer_props.update(
        {"group.id": f"g-{uuid.uuid4().hex[:6]}", "auto.offset.reset": "earliest"}
    )
    host.configure_client(consumer_props, role="consumer", connector="kafka")
    consumer = Consumer(consumer_props)
    consumer.subscribe([topic])
    got: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while len(got) < RECORDS and time.monotonic() < deadline:
            for message in consumer.consume(100, 1.0):
                assert message.error() is None, message.error()
                got.append((message.value() or b"").decode())
    finally:
        consumer.close()
    assert sorted(got) == sorted(f"v{i}" for i in range(RECORDS))


# -- KafkaSource -> KafkaSink jobs --------------------------------------------------------


class Utf8(DeserializationSchema[str]):
    def deserialize(self, message: bytes) -> str:
        return message.decode()


def _job(
    props: dict[str, str],
    in_topic: str,
    out_topic: str,
    guarantee: DeliveryGuarantee = DeliveryGuarantee.AT_LEAST_ONCE,
    checkpoint_dir: Path | None = None,
) -> None:
    from streamplug_kafka_sink import KafkaRecordSerializationSchema, KafkaSink
    from streamplug_kafka_source import KafkaOffsetsInitializer, KafkaSource

    source = (
        KafkaSource.builder()
        .set_topics(in_topic)
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_bounded(KafkaOffsetsInitializer.latest())
        .set_value_only_deserializer(Utf8())
        .set_properties(props)
        .build()
    )
    serializer = (
        KafkaRecordSerializationSchema.builder()
        .set_topic(out_topic)
        .set_value_serialization_schema(lambda s: s.encode())
        .build()
    )
    sink_builder = (
        KafkaSink.builder()
        .set_record_serializer(serializer)
        .set_delivery_guarantee(guarantee)
        .set_properties(props)
    )
    if guarantee is DeliveryGuarantee.EXACTLY_ONCE:
        sink_builder.set_transactional_id_prefix(f"sec-{uuid.uuid4().hex[:8]}")
    sink = sink_builder.build()
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2).set_restart_strategy(RestartStrategies.no_restart())
    if checkpoint_dir is not None:
        env.enable_checkpointing(500)
        env.get_checkpoint_config().set_checkpoint_storage_dir(str(checkpoint_dir))
    env.from_source(source, WatermarkStrategy.no_watermarks(), "secured-kafka").map(
        lambda s: s.upper()
    ).sink_to(sink)
    env.execute(f"security-{uuid.uuid4().hex[:6]}")


@pytest.mark.parametrize("kind", [k for k in KINDS if "KERBEROS" not in str(k)])
def test_source_and_sink_jobs_over_secured_listeners(secured: SecuredKafka, kind: str) -> None:
    in_topic, out_topic = _topic(secured), _topic(secured)
    values = _produce_plain(secured, in_topic)
    _job(_properties(secured, kind), in_topic, out_topic)
    assert _read_plain(secured, out_topic) == sorted(v.upper() for v in values)


@needs_scram_fix
def test_exactly_once_sink_over_sasl_ssl(secured: SecuredKafka, tmp_path: Path) -> None:
    in_topic, out_topic = _topic(secured), _topic(secured)
    values = _produce_plain(secured, in_topic)
    _job(
        secured.scram_properties("SCRAM-SHA-512"),
        in_topic,
        out_topic,
        DeliveryGuarantee.EXACTLY_ONCE,
        checkpoint_dir=tmp_path / "checkpoints",
    )
    assert _read_plain(secured, out_topic) == sorted(v.upper() for v in values)


# -- failures are fast and clear ---------------------------------------------------------


def _wrong_password(secured: SecuredKafka, kind: str) -> dict[str, str]:
    if kind == "PLAIN":
        return secured.plain_properties(password="not-the-password")
    return secured.scram_properties(kind, password="not-the-password", truststore="PKCS12")


def _untrusted_broker(secured: SecuredKafka) -> dict[str, str]:
    props = secured.scram_properties("SCRAM-SHA-256", truststore="PEM")
    props["ssl.truststore.location"] = str(secured.pki.rogue_ca_pem)
    return props


def _rejected_client(secured: SecuredKafka) -> dict[str, str]:
    return secured.mtls_properties("ROGUE")


FAILURES = [
    pytest.param(lambda s: _wrong_password(s, "PLAIN"), "SASL PLAIN", id="plain-wrong-password"),
    pytest.param(
        lambda s: _wrong_password(s, "SCRAM-SHA-512"),
        "SASL SCRAM-SHA-512",
        id="scram-wrong-password",
    ),
    pytest.param(
        _untrusted_broker, "TLS (SASL_SSL) verification failed", id="untrusted-broker-cert"
    ),
    pytest.param(_rejected_client, "TLS (SSL) verification failed", id="untrusted-client-cert"),
]


@pytest.mark.parametrize(("props_for", "expected"), FAILURES)
def test_bad_credentials_fail_fast_when_the_client_is_configured(
    secured: SecuredKafka, host: PluginHost, props_for: Any, expected: str
) -> None:
    props = dict(props_for(secured))
    started = time.monotonic()
    with pytest.raises(KafkaAuthenticationError) as info:
        host.configure_client(props, role="consumer", connector="kafka")
    elapsed = time.monotonic() - started
    assert elapsed < FAIL_FAST_S, f"took {elapsed:.1f} s"
    assert expected in str(info.value)
    assert "not-the-password" not in str(info.value) and STORE_PASSWORD not in str(info.value)


@pytest.mark.parametrize(("props_for", "expected"), FAILURES)
def test_bad_credentials_fail_a_job_fast(
    secured: SecuredKafka, props_for: Any, expected: str
) -> None:
    in_topic, out_topic = _topic(secured), _topic(secured)
    started = time.monotonic()
    with pytest.raises(JobFailedError) as info:
        _job(props_for(secured), in_topic, out_topic)
    elapsed = time.monotonic() - started
    assert elapsed < FAIL_FAST_S * 2, f"took {elapsed:.1f} s"
    chain: list[BaseException] = []
    error: BaseException | None = info.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    auth = [e for e in chain if isinstance(e, KafkaAuthenticationError)]
    assert auth, f"no KafkaAuthenticationError in {chain!r}"
    assert expected in str(auth[0])


@pytest.mark.parametrize(("props_for", "expected"), FAILURES)
def test_bad_credentials_fail_a_sink_job_fast(
    secured: SecuredKafka, props_for: Any, expected: str
) -> None:
    from streamplug_kafka_sink import KafkaRecordSerializationSchema, KafkaSink

    sink = (
        KafkaSink.builder()
        .set_record_serializer(
            KafkaRecordSerializationSchema.builder()
            .set_topic(_topic(secured))
            .set_value_serialization_schema(lambda s: s.encode())
            .build()
        )
        .set_properties(props_for(secured))
        .build()
    )
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1).set_restart_strategy(RestartStrategies.no_restart())
    env.from_collection(["a", "b"]).sink_to(sink)
    started = time.monotonic()
    with pytest.raises(JobFailedError) as info:
        env.execute("bad-credentials-sink")
    assert time.monotonic() - started < FAIL_FAST_S
    assert isinstance(info.value.__cause__, KafkaAuthenticationError), info.value.__cause__
    assert expected in str(info.value.__cause__)


def test_fail_fast_on_a_client_the_hook_did_not_verify(
    secured: SecuredKafka, host: PluginHost
) -> None:
    # With the one-time check turned off, the installed error_cb still ends the wait.
    props: dict[str, Any] = dict(_wrong_password(secured, "PLAIN"))
    props["streamplug.security.verify-credentials"] = "false"
    host.configure_client(props, role="producer", connector="kafka")
    producer = Producer(props)
    producer.produce("anything", b"x")
    started = time.monotonic()
    try:
        with pytest.raises(KafkaAuthenticationError):
            while time.monotonic() - started < FAIL_FAST_S:
                producer.poll(0.2)
        assert time.monotonic() - started < FAIL_FAST_S
    finally:
        producer.purge()
        del producer


# -- Kerberos without a GSSAPI-capable librdkafka ----------------------------------------


@needs_kdc
@pytest.mark.skipif(GSSAPI, reason="this librdkafka has GSSAPI; the refusal cannot happen")
def test_kerberos_job_is_refused_with_the_way_to_a_gssapi_build(secured: SecuredKafka) -> None:
    # KafkaSourceBuilder.build() runs the client-configuration hooks: the refusal comes
    # before any job starts.
    in_topic, out_topic = _topic(secured), _topic(secured)
    with pytest.raises(ConfigError) as info:
        _job(secured.kerberos_properties("flink"), in_topic, out_topic)
    assert "tox -e gssapi" in str(info.value) and "--no-binary confluent-kafka" in str(info.value)


@needs_gssapi
@needs_kdc
def test_kerberos_ticket_is_obtained_through_the_keytab(
    secured: SecuredKafka, host: PluginHost
) -> None:
    # librdkafka ran kinit with the keytab: the private cache now holds the client's TGT.
    props: dict[str, Any] = dict(secured.kerberos_properties("flink"))
    host.configure_client(props, role="admin", connector="kafka")
    assert props["sasl.kerberos.keytab"] == str(secured.client_keytab)
    cache = os.environ["KRB5CCNAME"].removeprefix("FILE:")
    assert Path(cache).exists()


# -- Kerberos jobs (GSSAPI-capable environment) --------------------------------------------


@needs_gssapi
@needs_kdc
@pytest.mark.parametrize("style", ["flink", "jaas"])
def test_kerberos_sink_job_authenticates_with_a_keytab(secured: SecuredKafka, style: str) -> None:
    from streamplug_kafka_sink import KafkaRecordSerializationSchema, KafkaSink

    out_topic = _topic(secured)
    values = [f"krb-{i}" for i in range(RECORDS)]
    sink = (
        KafkaSink.builder()
        .set_record_serializer(
            KafkaRecordSerializationSchema.builder()
            .set_topic(out_topic)
            .set_value_serialization_schema(lambda s: s.encode())
            .build()
        )
        .set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
        .set_properties(secured.kerberos_properties(style))
        .build()
    )
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2).set_restart_strategy(RestartStrategies.no_restart())
    env.from_collection(values).sink_to(sink)
    env.execute(f"kerberos-sink-{style}")
    assert _read_plain(secured, out_topic) == sorted(values)


@needs_gssapi
@needs_kdc
@pytest.mark.parametrize("style", ["flink", "jaas"])
def test_kerberos_source_and_sink_job(secured: SecuredKafka, style: str) -> None:
    in_topic, out_topic = _topic(secured), _topic(secured)
    values = _produce_plain(secured, in_topic)
    _job(secured.kerberos_properties(style), in_topic, out_topic)
    assert _read_plain(secured, out_topic) == sorted(v.upper() for v in values)
