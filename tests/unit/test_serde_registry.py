"""The Confluent wire format against confluent_kafka's own registry serializers, on its
in-memory registry client: bytes written by one side are read by the other. The same
exchange runs against a real registry server in tests/integration/test_serde_registry_server.py.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from hypothesis import given, settings
from hypothesis import strategies as st

from streamplug.api.serde import DeserializationError
from streamplug.errors import ConfigError
from streamplug_serde import (
    ConfluentAvroDeserializationSchema,
    ConfluentAvroSerializationSchema,
    ConfluentProtobufDeserializationSchema,
    ConfluentProtobufSerializationSchema,
    RegistrySettings,
    subject_name,
)
from streamplug_serde.registry import (
    decode_message_indexes,
    encode_message_indexes,
    mock_client_class,
)
from streamplug_serde.testing import HAS_MOCK_REGISTRY, Customer, Money, Order

pytestmark = pytest.mark.skipif(
    not HAS_MOCK_REGISTRY,
    reason="confluent-kafka too old for its in-memory registry client (mock://)",
)

USER = {
    "type": "record",
    "name": "User",
    "namespace": "com.example",
    "fields": [
        {"name": "name", "type": "string"},
        {"name": "age", "type": "int"},
        {"name": "email", "type": ["null", "string"], "default": None},
    ],
}
USERS = [
    {"name": "ada", "age": 36, "email": None},
    {"name": "grace", "age": 85, "email": "grace@example.com"},
]


@pytest.fixture
def client() -> Any:
    return mock_client_class()({"url": f"mock://{uuid.uuid4().hex}"})


def ctx(topic: str, field: MessageField = MessageField.VALUE) -> SerializationContext:
    return SerializationContext(topic, field)


def test_avro_written_by_confluent_is_read_by_streamplug(client: Any) -> None:
    confluent = AvroSerializer(client, json.dumps(USER))
    data = [confluent(u, ctx("users")) for u in USERS]
    assert all(d[0] == 0 for d in data)
    ours = ConfluentAvroDeserializationSchema(schema_registry_client=client)
    assert [ours.deserialize(d) for d in data] == USERS
    assert ours.deserialize_batch(data) == USERS


def test_avro_written_by_streamplug_is_read_by_confluent(client: Any) -> None:
    ours = ConfluentAvroSerializationSchema(USER, schema_registry_client=client, topic="users")
    data = [ours.serialize(u) for u in USERS]
    confluent = AvroDeserializer(client)
    assert [confluent(d, ctx("users")) for d in data] == USERS
    # Registered under the topic strategy's subject, with the id the bytes carry.
    registered = client.get_latest_version("users-value")
    assert registered.schema_id == ours.schema_id == int.from_bytes(data[0][1:5], "big")


def test_avro_bytes_are_identical_to_confluents(client: Any) -> None:
    confluent = AvroSerializer(client, json.dumps(USER))
    ours = ConfluentAvroSerializationSchema(USER, schema_registry_client=client, topic="users")
    for user in USERS:
        assert ours.serialize(user) == confluent(user, ctx("users"))


def test_avro_reader_schema_resolves_evolved_records(client: Any) -> None:
    v1 = ConfluentAvroSerializationSchema(USER, schema_registry_client=client, topic="users")
    v2_schema = {
        **USER,
        "fields": [*USER["fields"], {"name": "plan", "type": "string", "default": "free"}],
    }
    v2 = ConfluentAvroSerializationSchema(v2_schema, schema_registry_client=client, topic="users")
    old, new = v1.serialize(USERS[0]), v2.serialize({**USERS[1], "plan": "pro"})
    assert v1.schema_id != v2.schema_id
    reader = ConfluentAvroDeserializationSchema(v2_schema, schema_registry_client=client)
    assert reader.deserialize_batch([old, new]) == [
        {**USERS[0], "plan": "free"},
        {**USERS[1], "plan": "pro"},
    ]
    # Without a reader schema each record comes back as written.
    plain = ConfluentAvroDeserializationSchema(schema_registry_client=client)
    assert plain.deserialize(old) == USERS[0]


def test_avro_use_latest_version_and_no_auto_register(client: Any) -> None:
    client.register_schema("users-value", Schema(json.dumps(USER), "AVRO"))
    latest = ConfluentAvroSerializationSchema(
        schema_registry_client=client, topic="users", use_latest_version=True
    )
    reader = ConfluentAvroDeserializationSchema(schema_registry_client=client)
    assert reader.deserialize(latest.serialize(USERS[1])) == USERS[1]
    strict = ConfluentAvroSerializationSchema(
        USER, schema_registry_client=client, topic="users", auto_register_schemas=False
    )
    assert strict.schema_id == latest.schema_id
    unknown = ConfluentAvroSerializationSchema(
        USER, schema_registry_client=client, topic="other", auto_register_schemas=False
    )
    with pytest.raises(SchemaRegistryError):
        unknown.serialize(USERS[0])


def test_avro_references_resolve(client: Any) -> None:
    from confluent_kafka.schema_registry import SchemaReference

    address = {
        "type": "record",
        "name": "Address",
        "namespace": "com.example",
        "fields": [{"name": "city", "type": "string"}],
    }
    client.register_schema("address", Schema(json.dumps(address), "AVRO"))
    person = {
        "type": "record",
        "name": "Person",
        "namespace": "com.example",
        "fields": [{"name": "home", "type": "com.example.Address"}],
    }
    schema_id = client.register_schema(
        "people-value",
        Schema(json.dumps(person), "AVRO", [SchemaReference("com.example.Address", "address", 1)]),
    )
    data = bytes([0]) + schema_id.to_bytes(4, "big") + b"\x08Oslo"
    reader = ConfluentAvroDeserializationSchema(schema_registry_client=client)
    assert reader.deserialize(data) == {"home": {"city": "Oslo"}}


def test_avro_record_of_a_protobuf_schema_is_a_deserialization_error(client: Any) -> None:
    proto = ConfluentProtobufSerializationSchema(Customer, schema_registry_client=client, topic="c")
    data = proto.serialize(Customer(id="1"))
    with pytest.raises(DeserializationError, match="PROTOBUF"):
        ConfluentAvroDeserializationSchema(schema_registry_client=client).deserialize(data)


PROTO_CONF = {"use.deprecated.format": False}


@pytest.mark.parametrize("cls", [Order, Customer, Order.Line, Money])
def test_protobuf_written_by_confluent_is_read_by_streamplug(client: Any, cls: Any) -> None:
    confluent = ProtobufSerializer(cls, client, PROTO_CONF)
    messages = [_example(cls, i) for i in range(3)]
    data = [confluent(m, ctx("orders")) for m in messages]
    ours = ConfluentProtobufDeserializationSchema(cls, schema_registry_client=client)
    assert [ours.deserialize(d) for d in data] == messages
    assert ours.deserialize_batch(data) == messages


@pytest.mark.parametrize("cls", [Order, Customer, Order.Line])
def test_protobuf_written_by_streamplug_is_read_by_confluent(client: Any, cls: Any) -> None:
    ours = ConfluentProtobufSerializationSchema(cls, schema_registry_client=client, topic="orders")
    messages = [_example(cls, i) for i in range(3)]
    data = [ours.serialize(m) for m in messages]
    confluent = ProtobufDeserializer(cls, PROTO_CONF)
    assert [confluent(d, ctx("orders")) for d in data] == messages
    # Same bytes as confluent's serializer, and the imported file is a registered reference.
    theirs = ProtobufSerializer(cls, client, PROTO_CONF)
    assert data == [theirs(m, ctx("orders")) for m in messages]
    if cls is Order:
        refs = client.get_latest_version("orders-value").schema.references
        assert [(r.name, r.subject) for r in refs] == [("streamplug/examples/money.proto",) * 2]


def test_protobuf_dict_output(client: Any) -> None:
    ours = ConfluentProtobufSerializationSchema(Order, schema_registry_client=client, topic="o")
    reader = ConfluentProtobufDeserializationSchema(Order, output="dict")
    data = ours.serialize({"id": "o-1", "quantity": 2, "price": {"currency": "EUR", "units": 5}})
    value = reader.deserialize(data)
    assert value["id"] == "o-1" and value["price"] == {"currency": "EUR", "units": "5"}
    assert reader.deserialize_batch([data]) == [value]


def _example(cls: Any, i: int) -> Any:
    if cls is Order:
        return Order(
            id=f"o{i}",
            quantity=i,
            price=Money(currency="EUR", units=100 * i),
            lines=[Order.Line(sku="a", count=i)],
            tags=["x"] * i,
        )
    if cls is Customer:
        return Customer(id=str(i), name="n" * i)
    if cls is Money:
        return Money(currency="USD", units=i)
    return Order.Line(sku=f"s{i}", count=i)


@pytest.mark.parametrize(
    ("strategy", "is_key", "expected"),
    [
        ("topic", False, "orders-value"),
        ("topic", True, "orders-key"),
        ("record", False, "streamplug.examples.Order"),
        ("topic-record", False, "orders-streamplug.examples.Order"),
        ("topic_record", True, "orders-streamplug.examples.Order"),
    ],
)
def test_subject_name_strategies_match_confluents(
    client: Any, strategy: str, is_key: bool, expected: str
) -> None:
    assert (
        subject_name(
            strategy, topic="orders", is_key=is_key, record_name="streamplug.examples.Order"
        )
        == expected
    )
    ours = ConfluentProtobufSerializationSchema(
        Order,
        schema_registry_client=client,
        topic="orders",
        is_key=is_key,
        subject_name_strategy=strategy,
    )
    ours.open()
    assert expected in client.get_subjects()


def test_avro_record_strategy_uses_the_full_record_name(client: Any) -> None:
    ours = ConfluentAvroSerializationSchema(
        USER, schema_registry_client=client, subject_name_strategy="record"
    )
    assert ours.subject == "com.example.User"
    ours.serialize(USERS[0])
    assert client.get_subjects() == ["com.example.User"]


def test_custom_strategy_callable(client: Any) -> None:
    ours = ConfluentAvroSerializationSchema(
        USER,
        schema_registry_client=client,
        topic="t",
        subject_name_strategy=lambda topic, is_key, record: f"{record}@{topic}",
    )
    assert ours.subject == "com.example.User@t"


@settings(deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**31 - 1), min_size=1, max_size=6))
def test_message_indexes_roundtrip(indexes: list[int]) -> None:
    encoded = encode_message_indexes(indexes)
    assert decode_message_indexes("protobuf-confluent", encoded + b"rest", 0) == (
        indexes,
        len(encoded),
    )


def test_registry_settings_repr_hides_secrets() -> None:
    settings_ = RegistrySettings(
        url="https://user:hunter22@registry.example:8081",
        properties={"basic.auth.user.info": "user:hunter22", "ssl.ca.location": "/ca.pem"},
    )
    ours = ConfluentAvroDeserializationSchema(
        schema_registry_url="https://user:hunter22@registry.example:8081",
        schema_registry_conf={"basic.auth.user.info": "user:hunter22"},
    )
    for text in (repr(settings_), repr(ours)):
        assert "hunter22" not in text
        assert "***" in text
    assert "/ca.pem" in repr(settings_)


def test_registry_url_is_required() -> None:
    with pytest.raises(ConfigError, match="schema_registry_url"):
        RegistrySettings()


def test_mock_urls_share_one_registry_across_schemas() -> None:
    url = f"mock://{uuid.uuid4().hex}"
    writer = ConfluentAvroSerializationSchema(USER, schema_registry_url=url, topic="t")
    reader = ConfluentAvroDeserializationSchema(schema_registry_conf={"url": url})
    assert reader.deserialize(writer.serialize(USERS[1])) == USERS[1]
