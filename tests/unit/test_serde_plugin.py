"""The formats as a plugin: registered by name through the entry point, built from pipeline
options, and interchangeable with confluent_kafka's serializers."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from confluent_kafka.serialization import (
    IntegerDeserializer,
    IntegerSerializer,
    StringDeserializer,
    StringSerializer,
)

import streamplug_serde.plugin
from streamplug.api.serde import DeserializationError, DeserializationSchema, SerializationSchema
from streamplug.errors import ConfigError, UnknownNameError
from streamplug.plugins import build_plugin_host
from streamplug_serde import (
    ConfluentDeserializerSchema,
    ConfluentSerializerSchema,
    JsonDeserializationSchema,
    JsonSerializationSchema,
    SerializationError,
    SimpleStringSchema,
    to_confluent_deserializer,
    to_confluent_serializer,
)
from streamplug_serde.testing import HAS_MOCK_REGISTRY, Order

BUILT_IN = [
    "avro",
    "avro-confluent",
    "bytes",
    "csv",
    "json",
    "protobuf",
    "protobuf-confluent",
    "string",
]


def test_entry_point_registers_every_built_in_format() -> None:
    host = build_plugin_host(autoload=True)
    assert set(BUILT_IN) <= set(host.names("format"))
    info = next(i for i in host.plugin_infos() if i.distribution == "streamplug-serde")
    assert info.names["format"] == BUILT_IN
    assert not [f for f in host.failures if f.distribution == "streamplug-serde"]


def test_formats_register_through_the_hook_alone() -> None:
    host = build_plugin_host(autoload=False, plugins=[streamplug_serde.plugin])
    assert host.names("format") == BUILT_IN
    for name in BUILT_IN:
        spec = host.format(name)
        assert spec.serializer is not None and spec.deserializer is not None
        assert spec.description


def test_unknown_format_lists_the_valid_names() -> None:
    host = build_plugin_host(autoload=False, plugins=[streamplug_serde.plugin])
    with pytest.raises(UnknownNameError, match="avro-confluent, bytes, csv"):
        host.format("yaml")


AVRO = json.dumps(
    {"type": "record", "name": "Reading", "fields": [{"name": "celsius", "type": "double"}]}
)

# Options as a pipeline file spells them: dots and dashes are accepted for underscores.
BY_NAME: list[tuple[str, dict[str, Any], dict[str, Any], Any]] = [
    ("bytes", {}, {}, b"\x00\x01"),
    ("string", {"charset": "utf-16"}, {"charset": "utf-16"}, "h\u00e9llo"),
    ("json", {}, {"json-schema": '{"type": "object"}'}, {"a": [1, 2.5, None]}),
    ("avro", {"schema": AVRO}, {"schema": AVRO}, {"celsius": 21.5}),
    (
        "protobuf",
        {"message.class": "streamplug_serde.testing:Order"},
        {"message-class": "streamplug_serde.testing:Order", "output": "dict"},
        {"id": "o-1", "quantity": 3},
    ),
    (
        "csv",
        {"fields": "city,temp", "field-types": {"temp": "float"}},
        {"fields": "city,temp", "field_types": {"temp": "float"}},
        {"city": "Oslo, Norway", "temp": -3.5},
    ),
]


@pytest.mark.parametrize(("name", "ser_opts", "deser_opts", "element"), BY_NAME)
def test_format_by_name_with_pipeline_options(
    name: str, ser_opts: dict[str, Any], deser_opts: dict[str, Any], element: Any
) -> None:
    host = build_plugin_host(autoload=False, plugins=[streamplug_serde.plugin])
    spec = host.format(name)
    assert spec.serializer is not None and spec.deserializer is not None
    ser = spec.serializer(**ser_opts)
    deser = spec.deserializer(**deser_opts)
    assert isinstance(ser, SerializationSchema) and isinstance(deser, DeserializationSchema)
    value = deser.deserialize(ser.serialize(element))
    if name == "protobuf":
        value = {k: v for k, v in value.items() if k in element}
    assert value == element


@pytest.mark.skipif(
    not HAS_MOCK_REGISTRY,
    reason="confluent-kafka too old for its in-memory registry client (mock://)",
)
def test_registry_formats_by_name() -> None:
    host = build_plugin_host(autoload=False, plugins=[streamplug_serde.plugin])
    url = f"mock://{uuid.uuid4().hex}"
    avro_ser = host.format("avro-confluent").serializer(  # type: ignore[misc]
        **{"schema": AVRO, "schema.registry.url": url, "topic": "readings"}
    )
    avro_deser = host.format("avro-confluent").deserializer(  # type: ignore[misc]
        **{"schema.registry.url": url}
    )
    assert avro_deser.deserialize(avro_ser.serialize({"celsius": 1.0})) == {"celsius": 1.0}
    proto_ser = host.format("protobuf-confluent").serializer(  # type: ignore[misc]
        message_class="streamplug_serde.testing:Order",
        schema_registry_url=url,
        subject_name_strategy="record",
    )
    proto_deser = host.format("protobuf-confluent").deserializer(  # type: ignore[misc]
        message_class="streamplug_serde.testing:Order", schema_registry_url=url
    )
    assert proto_deser.deserialize(proto_ser.serialize(Order(id="x"))) == Order(id="x")


def test_unknown_option_names_the_option_and_the_valid_ones() -> None:
    host = build_plugin_host(autoload=False, plugins=[streamplug_serde.plugin])
    with pytest.raises(ConfigError) as info:
        host.format("string").deserializer(**{"char.set": "utf-8"})  # type: ignore[misc]
    assert info.value.option == "char_set"
    assert "valid options: charset" in str(info.value)


# -- confluent_kafka serializers beside streamplug schemas ------------------------------------


def test_confluent_serializers_as_streamplug_schemas() -> None:
    ser = ConfluentSerializerSchema(StringSerializer("utf_8"), "greetings")
    deser = ConfluentDeserializerSchema(StringDeserializer("utf_8"), "greetings")
    assert deser.deserialize_batch([ser.serialize("hi"), ser.serialize("\u00e9")]) == [
        "hi",
        "\u00e9",
    ]
    # Byte-compatible with streamplug's own string format.
    assert SimpleStringSchema().deserialize(ser.serialize("same")) == "same"
    ints = ConfluentDeserializerSchema(IntegerDeserializer(), "n", field="key")
    assert ints.deserialize(IntegerSerializer()(7, None)) == 7


def test_confluent_deserializer_failures_become_deserialization_errors() -> None:
    deser = ConfluentDeserializerSchema(IntegerDeserializer(), "numbers")
    with pytest.raises(DeserializationError) as info:
        deser.deserialize(b"\x01\x02")
    assert info.value.format == "confluent:IntegerDeserializer"
    assert info.value.data == b"\x01\x02"
    with pytest.raises(SerializationError):
        ConfluentSerializerSchema(IntegerSerializer(), "numbers").serialize("x")
    with pytest.raises(ConfigError):
        ConfluentSerializerSchema(IntegerSerializer(), "numbers", field="header")  # type: ignore[arg-type]


def test_streamplug_schemas_as_confluent_serializers() -> None:
    ser = to_confluent_serializer(JsonSerializationSchema())
    deser = to_confluent_deserializer(JsonDeserializationSchema())
    data = ser({"k": [1, "2"]}, None)
    assert deser(data, None) == {"k": [1, "2"]}
    # Tombstones pass through as None, the way confluent_kafka's serializers treat them.
    assert ser(None, None) is None and deser(None, None) is None
    with pytest.raises(DeserializationError):
        deser(b"{broken", None)
    from confluent_kafka.serialization import Deserializer, Serializer

    assert isinstance(ser, Serializer) and isinstance(deser, Deserializer)
