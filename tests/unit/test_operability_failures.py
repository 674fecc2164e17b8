"""Kafka client failures a restart cannot fix are classified as such, with a message that
names the setting and the fix (no broker needed: creating a client does not connect)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from streamplug.errors import ConfigError, JobFailedError, UnrecoverableError
from streamplug.plugins import build_plugin_host
from streamplug.runtime import RestartStrategies, StreamExecutionEnvironment
from streamplug_kafka_common.failures import CONFIGURATION_DOC, client_creation_error
from streamplug_kafka_security import KafkaAuthenticationError
from streamplug_kafka_sink import KafkaRecordSerializationSchema, KafkaSink
from streamplug_kafka_sink.legacy import FlinkKafkaProducer, Semantic
from streamplug_kafka_source import KafkaOffsetsInitializer, KafkaSource

UNREACHABLE = "127.0.0.1:9"


def test_authentication_errors_are_unrecoverable() -> None:
    assert issubclass(KafkaAuthenticationError, UnrecoverableError)


def test_client_creation_error_names_the_property_and_hides_secrets() -> None:
    from confluent_kafka import KafkaException, Producer

    props = {"bootstrap.servers": UNREACHABLE, "sasl.password": "hunter2-secret", "lingr.ms": "5"}
    with pytest.raises(KafkaException) as info:
        Producer(props)
    error = client_creation_error("Kafka sink", info.value, props)
    assert str(error) == (
        "Kafka sink: librdkafka has no configuration property 'lingr.ms'; correct or remove it "
        f"(the properties it knows: {CONFIGURATION_DOC})"
    )
    assert error.option == "lingr.ms"
    assert "hunter2-secret" not in str(error)
    bad_value = {"bootstrap.servers": UNREACHABLE, "enable.idempotence": "maybe"}
    with pytest.raises(KafkaException) as info:
        Producer(bad_value)
    error = client_creation_error("Kafka sink", info.value, bad_value)
    assert "enable.idempotence" in str(error) and error.option == "enable.idempotence"


def _source(**props: str) -> KafkaSource[Any]:
    builder = (
        KafkaSource.builder()
        .set_bootstrap_servers(UNREACHABLE)
        .set_topics("orders")
        .set_value_only_deserializer(lambda b: b)
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
    )
    for key, value in props.items():
        builder.set_property(key, value)
    return builder.build()


def _sink(**props: str) -> KafkaSink:
    builder = (
        KafkaSink.builder()
        .set_bootstrap_servers(UNREACHABLE)
        .set_record_serializer(
            KafkaRecordSerializationSchema.builder()
            .set_topic("out")
            .set_value_serialization_schema(lambda s: str(s).encode())
            .build()
        )
    )
    for key, value in props.items():
        builder.set_property(key, value)
    return builder.build()


@pytest.mark.parametrize(
    ("where", "prop"),
    [("source", "fetch.mx.bytes"), ("sink", "lingr.ms")],
)
def test_a_misspelled_property_fails_a_checkpointed_job_at_once(where: str, prop: str) -> None:
    env = StreamExecutionEnvironment.get_execution_environment(build_plugin_host(autoload=False))
    env.enable_checkpointing(200)
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(50, 500))
    if where == "source":
        env.from_source(_source(**{prop: "5"}), None, "in").sink_to(_sink())
    else:
        env.from_collection([1, 2]).sink_to(_sink(**{prop: "5"}))
    started = time.monotonic()
    with pytest.raises(JobFailedError) as info:
        env.execute("misspelled")
    assert time.monotonic() - started < 5
    cause = info.value.__cause__
    assert isinstance(cause, ConfigError)
    assert str(cause).startswith(
        f"Kafka {where}: librdkafka has no configuration property {prop!r}; correct or remove it"
    )
    assert "after 1 attempt(s)" in str(info.value)


@pytest.mark.filterwarnings("ignore:FlinkKafkaProducer is deprecated")
def test_legacy_exactly_once_producer_asks_for_transactional_id_in_its_config() -> None:
    with pytest.raises(ConfigError) as info:
        FlinkKafkaProducer(
            "out",
            lambda s: s.encode(),
            {"bootstrap.servers": UNREACHABLE},
            None,
            Semantic.EXACTLY_ONCE,
        )
    assert "set 'transactional.id' in its producer_config" in str(info.value)
    assert "set_transactional_id_prefix" not in str(info.value)
    assert info.value.option == "transactional.id"


def test_unrecoverable_errors_survive_the_trip_from_a_worker_process() -> None:
    import pickle

    from streamplug.errors import AuthorizationError, MissingResourceError

    for error in (
        KafkaAuthenticationError("SASL PLAIN failed", protocol="SASL_PLAINTEXT", mechanism="PLAIN"),
        AuthorizationError("denied"),
        MissingResourceError("no topic"),
        ConfigError("bad", option="x"),
    ):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
        assert isinstance(copy, UnrecoverableError)
    auth = pickle.loads(pickle.dumps(KafkaAuthenticationError("m", protocol="SSL", mechanism=None)))
    assert (auth.protocol, auth.mechanism) == ("SSL", None)
