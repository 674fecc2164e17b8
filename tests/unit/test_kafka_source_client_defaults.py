"""The client settings the source applies for a fast job start, and that users keep theirs."""

from __future__ import annotations

from streamplug.api import DeserializationSchema
from streamplug.testing import reader_context
from streamplug_kafka_source import KafkaSource


class Utf8(DeserializationSchema[str]):
    def deserialize(self, message: bytes) -> str:
        return message.decode()


def source(**props: str) -> KafkaSource:
    return (
        KafkaSource.builder()
        .set_bootstrap_servers("localhost:9092")
        .set_topics("orders")
        .set_value_only_deserializer(Utf8())
        .set_properties(props)
        .build()
    )


def test_reader_and_enumerator_clients_reconnect_quickly_by_default() -> None:
    built = source()
    assert built.consumer_properties(reader_context())["reconnect.backoff.ms"] == "10"
    assert built.admin_properties()["reconnect.backoff.ms"] == "10"
    # The dead-letter producer is not on the start-up path: librdkafka's default stays.
    assert "reconnect.backoff.ms" not in built.dead_letter_properties(0)


def test_a_users_reconnect_backoff_wins() -> None:
    built = source(**{"reconnect.backoff.ms": "250"})
    assert built.consumer_properties(reader_context())["reconnect.backoff.ms"] == "250"
    assert built.admin_properties()["reconnect.backoff.ms"] == "250"


def test_the_enumerators_admin_client_connects_to_every_broker_at_once() -> None:
    built = source()
    assert built.admin_properties()["enable.sparse.connections"] == "false"
    # The readers' consumers keep librdkafka's sparse connections: one consumer per reader
    # would otherwise hold a connection to every broker of the cluster.
    assert "enable.sparse.connections" not in built.consumer_properties(reader_context())


def test_a_users_sparse_connections_setting_wins() -> None:
    built = source(**{"enable.sparse.connections": "true"})
    assert built.admin_properties()["enable.sparse.connections"] == "true"
