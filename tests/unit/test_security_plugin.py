"""The plugin through the core's hook, librdkafka capability detection, fail-fast
callbacks, and secrets kept out of logs, reprs, metrics and exceptions."""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from streamplug.errors import ConfigError
from streamplug.plugins import build_plugin_host
from streamplug_kafka_security import (
    JaasLoginModule,
    KafkaAuthenticationError,
    install_fail_fast,
    librdkafka_capabilities,
    parse_jaas_config,
)
from streamplug_kafka_security import metrics as security_metrics
from streamplug_kafka_security.failfast import classify
from streamplug_kafka_security.stores import KeyMaterial

SECRET = "Sup3r-S3cret-Passphrase"
PLAIN_JAAS = (
    "org.apache.kafka.common.security.plain.PlainLoginModule required "
    f'username="alice" password="{SECRET}";'
)


def test_the_distribution_declares_its_entry_point() -> None:
    eps = [
        ep
        for ep in importlib.metadata.entry_points(group="streamplug")
        if ep.name == "kafka_security"
    ]
    assert [ep.value for ep in eps] == ["streamplug_kafka_security.plugin"]
    assert eps[0].dist is not None and eps[0].dist.name == "streamplug-kafka-security"


def test_the_hook_translates_kafka_client_properties() -> None:
    host = build_plugin_host(autoload=True)
    props: dict[str, Any] = {
        "bootstrap.servers": "b:9092",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "PLAIN",
        "sasl.jaas.config": PLAIN_JAAS,
    }
    host.configure_client(props, role="producer", connector="kafka")
    assert props["sasl.mechanisms"] == "PLAIN"
    assert (props["sasl.username"], props["sasl.password"]) == ("alice", SECRET)
    assert "sasl.jaas.config" not in props
    assert callable(props["error_cb"])  # fail fast on authentication errors


def test_the_hook_leaves_other_connectors_and_plain_clients_alone() -> None:
    host = build_plugin_host(autoload=True)
    other = {"sasl.jaas.config": PLAIN_JAAS}
    host.configure_client(other, role="producer", connector="pulsar")
    assert other == {"sasl.jaas.config": PLAIN_JAAS}
    plain = {"bootstrap.servers": "b:9092", "linger.ms": "5"}
    host.configure_client(plain, role="consumer", connector="kafka")
    assert plain == {"bootstrap.servers": "b:9092", "linger.ms": "5"}


def test_the_hook_raises_config_errors_at_build_time() -> None:
    host = build_plugin_host(autoload=True)
    with pytest.raises(ConfigError) as info:
        host.configure_client({"ssl.protocol": "SSLv3"}, role="admin", connector="kafka")
    assert info.value.option == "ssl.protocol"


# -- capabilities --------------------------------------------------------------------------


def test_capabilities_agree_with_what_librdkafka_accepts() -> None:
    import confluent_kafka

    caps = librdkafka_capabilities()
    assert caps.version == confluent_kafka.libversion()[0]
    assert {"ssl", "sasl_scram", "sasl_plain"} <= caps.features
    # Cross-check the probe against building a real GSSAPI client.
    try:
        Producer(
            {
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanisms": "GSSAPI",
                # no kinit: only the mechanism's presence decides
                "sasl.kerberos.min.time.before.relogin": "0",
                "log_level": 0,
            }
        )
        accepts_gssapi = True
    except KafkaException:
        accepts_gssapi = False
    assert caps.gssapi is accepts_gssapi


def test_gssapi_request_on_this_build(tmp_path: Path) -> None:
    keytab = tmp_path / "c.keytab"
    keytab.write_bytes(b"\x05\x02")
    props = {
        "security.protocol": "SASL_PLAINTEXT",
        "security.kerberos.login.keytab": str(keytab),
        "security.kerberos.login.principal": "c@R",
        "security.kerberos.login.contexts": "KafkaClient",
    }
    host = build_plugin_host(autoload=True)
    if librdkafka_capabilities().gssapi:
        host.configure_client(props, role="consumer", connector="kafka")
        assert props["sasl.kerberos.keytab"] == str(keytab)
    else:
        with pytest.raises(ConfigError) as info:
            host.configure_client(props, role="consumer", connector="kafka")
        assert "--no-binary confluent-kafka" in str(info.value)


# -- fail fast -------------------------------------------------------------------------


class FakeError:
    def __init__(self, code: int, text: str) -> None:
        self._code, self._text = code, text

    def code(self) -> int:
        return self._code

    def str(self) -> str:
        return self._text


@pytest.mark.parametrize(
    ("code", "text", "kind"),
    [
        (
            KafkaError._AUTHENTICATION,
            "SASL authentication error: Invalid username or password",
            "sasl",
        ),
        (
            KafkaError._SSL,
            "SSL handshake failed: certificate verify failed: broker certificate could not be verified",
            "tls",
        ),
        (
            KafkaError._TRANSPORT,
            "Receive failed: error:0A000412:SSL routines::ssl/tls alert bad certificate",
            "tls",
        ),
        (KafkaError._TRANSPORT, "Connection refused", None),
        (KafkaError._SSL, "SSL handshake failed: Disconnected", None),
        (KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down", None),
    ],
)
def test_classify(code: int, text: str, kind: str | None) -> None:
    assert classify(code, text) == kind


def test_fail_fast_chains_the_existing_callback_and_scrubs_secrets() -> None:
    seen: list[int] = []
    props: dict[str, Any] = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-256",
        "sasl.password": SECRET,
        "error_cb": lambda err: seen.append(err.code()),
    }
    install_fail_fast(props)
    install_fail_fast(props)  # installing twice wraps once
    props["error_cb"](FakeError(KafkaError._TRANSPORT, "Connection refused"))
    with pytest.raises(KafkaAuthenticationError) as info:
        props["error_cb"](
            FakeError(KafkaError._AUTHENTICATION, f"SASL authentication error for {SECRET}")
        )
    assert seen == [KafkaError._TRANSPORT, KafkaError._AUTHENTICATION]
    assert info.value.mechanism == "SCRAM-SHA-256"
    assert "SCRAM-SHA-256 authentication failed" in str(info.value)
    assert SECRET not in str(info.value)


# -- secrets never leak ---------------------------------------------------------------------


def test_secrets_stay_out_of_logs_reprs_metrics_and_errors(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    host = build_plugin_host(autoload=True)
    props: dict[str, Any] = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.jaas.config": PLAIN_JAAS.replace("plain.PlainLoginModule", "scram.ScramLoginModule"),
    }
    host.configure_client(props, role="producer", connector="kafka")

    failures: list[BaseException] = []
    bad_configs = [
        {"sasl.jaas.config": PLAIN_JAAS.rstrip(";")},
        {"sasl.jaas.config": PLAIN_JAAS.replace(f'password="{SECRET}"', f'password="{SECRET}')},
        {"sasl.jaas.config": PLAIN_JAAS, "sasl.mechanism": "SCRAM-SHA-256"},
        {"sasl.jaas.config": PLAIN_JAAS, "sasl.password": "another-one"},
        {"sasl.jaas.config": PLAIN_JAAS.replace("PlainLoginModule", "LdapLoginModule")},
        {
            "ssl.truststore.location": str(tmp_path / "missing.jks"),
            "ssl.truststore.password": SECRET,
        },
        {
            "ssl.keystore.key": "junk",
            "ssl.keystore.certificate.chain": "junk",
            "ssl.key.password": SECRET,
        },
    ]
    for bad in bad_configs:
        with pytest.raises(ConfigError) as info:
            host.configure_client(dict(bad), role="consumer", connector="kafka")
        failures.append(info.value)

    texts = [caplog.text]
    texts += [f"{e} {e!r} {e.args!r}" for e in failures]
    texts.append(repr(parse_jaas_config(PLAIN_JAAS)))
    texts.append(repr(KeyMaterial(key=SECRET, chain=())))
    for key, counter in security_metrics._COUNTERS.items():
        texts.append(repr(key) + repr(counter._attributes))
    assert any("SCRAM-SHA-512" in t for t in texts[-len(security_metrics._COUNTERS) :])
    for text in texts:
        assert SECRET not in text
    assert isinstance(parse_jaas_config(PLAIN_JAAS), JaasLoginModule)


def test_secrets_stay_out_of_exported_metrics() -> None:
    sdk_metrics = pytest.importorskip("opentelemetry.sdk.metrics")
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = sdk_metrics.MeterProvider(metric_readers=[reader])
    # Record through an instrument of this provider, with the attributes the plugin uses.
    props = {"security.protocol": "SASL_SSL", "sasl.mechanisms": "PLAIN", "sasl.password": SECRET}
    counter = provider.get_meter("streamplug").create_counter(
        "streamplug.KafkaSecurity.clients.configured"
    )
    security_metrics.record_configured(props, role="producer", connector="kafka")
    key = ("producer", "kafka", "SASL_SSL", "PLAIN")
    counter.add(1, security_metrics._COUNTERS[key]._attributes)
    exported = repr(reader.get_metrics_data())
    assert "SASL_SSL" in exported and SECRET not in exported
