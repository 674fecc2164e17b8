"""Bad input for every format raises ``DeserializationError`` naming the format and quoting
the bytes: never another exception type, never a silent ``None``."""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamplug.api.serde import DeserializationError, DeserializationSchema
from streamplug.errors import ConfigError
from streamplug_serde import (
    AvroDeserializationSchema,
    AvroSerializationSchema,
    BatchDeserializationError,
    BytesSchema,
    ConfluentAvroDeserializationSchema,
    ConfluentAvroSerializationSchema,
    ConfluentProtobufDeserializationSchema,
    ConfluentProtobufSerializationSchema,
    CsvRowDeserializationSchema,
    CsvRowSerializationSchema,
    JsonDeserializationSchema,
    JsonSerializationSchema,
    ProtobufDeserializationSchema,
    ProtobufSerializationSchema,
    SerializationError,
    SimpleStringSchema,
)
from streamplug_serde.testing import HAS_MOCK_REGISTRY, Customer, Order

USER = {
    "type": "record",
    "name": "User",
    "namespace": "streamplug.test",
    "fields": [
        {"name": "name", "type": "string"},
        {"name": "age", "type": "int"},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
    ],
}


def _mock_url() -> str:
    return f"mock://{uuid.uuid4().hex}"


def _registry_avro() -> tuple[Any, Any]:
    url = _mock_url()
    ser = ConfluentAvroSerializationSchema(USER, schema_registry_url=url, topic="users")
    return ser, ConfluentAvroDeserializationSchema(schema_registry_url=url)


def _registry_protobuf() -> tuple[Any, Any]:
    url = _mock_url()
    ser = ConfluentProtobufSerializationSchema(Order, schema_registry_url=url, topic="orders")
    return ser, ConfluentProtobufDeserializationSchema(Order, schema_registry_url=url)


# For each format: a factory, and byte strings that are not a record of it, each with a
# word the error message must contain.
MALFORMED: dict[str, tuple[Callable[[], DeserializationSchema[Any]], list[tuple[bytes, str]]]] = {
    "string": (lambda: SimpleStringSchema(), [(b"ok \xff\xfe", "utf-8"), (b"\xc3", "utf-8")]),
    "string-ascii": (lambda: SimpleStringSchema("ascii"), [(b"caf\xc3\xa9", "ascii")]),
    "json": (
        lambda: JsonDeserializationSchema(),
        [
            (b"", "JSON"),
            (b"{", "JSON"),
            (b'{"a": 1} trailing', "JSON"),
            (b"\xff\xfe", "JSON"),
            (b"NaN", "JSON"),
            (b"[" * 100_000, "JSON"),
        ],
    ),
    "json-stdlib": (
        lambda: JsonDeserializationSchema(use_orjson=False),
        [(b"{'a': 1}", "JSON"), (b"\xff", "JSON"), (b"[" * 100_000, "JSON")],
    ),
    "json-schema": (
        lambda: JsonDeserializationSchema(
            {"type": "object", "properties": {"age": {"type": "integer", "minimum": 0}}}
        ),
        [(b'{"age": -1}', "/age"), (b"[]", "JSON Schema"), (b'{"age": "x"}', "/age")],
    ),
    "avro": (
        lambda: AvroDeserializationSchema(USER),
        [
            (b"", "Avro"),
            (b"\x06abc", "Avro"),  # truncated before age
            (b"\x02a\x02\x09\x00", "Avro"),  # enum index 4 of 2 symbols
            (b"\x04\xff\xfe\x02\x00\x00", "Avro"),  # invalid UTF-8 in a string
            (b"\x02a\x02\x00\x00\x00\x00", "left over"),  # trailing bytes
            (b"\x7f" + b"x" * 10, "Avro"),  # string length beyond the data
        ],
    ),
    "avro-confluent": (
        lambda: _registry_avro()[1],
        [
            (b"", "wire format"),
            (b"\x00\x00\x01", "wire format"),
            (b"\x01\x00\x00\x00\x01\x02a", "magic byte"),
            (b"\x00\x00\x00\x30\x39\x02a\x02\x00\x00", "12345"),  # id unknown to the registry
        ],
    ),
    "protobuf": (
        lambda: ProtobufDeserializationSchema(Order),
        [
            (b"\x0a\x05ab", "Order"),  # length-delimited field cut short
            (b"\x0f", "Order"),  # wire type 7 does not exist
            (b"\x0a\x02\xff\xfe", "Order"),  # invalid UTF-8 in a string field
            (b"\x10", "Order"),  # varint field with no value
        ],
    ),
    "protobuf-confluent": (
        lambda: ConfluentProtobufDeserializationSchema(Order),
        [
            (b"\x00\x00\x00", "wire format"),
            (b"\x05\x00\x00\x00\x01\x00", "magic byte"),
            (b"\x00\x00\x00\x00\x01\x00\x0a\x02", "Order"),  # index [0] is Customer, not Order
            (b"\x00\x00\x00\x00\x01\x02\x02\x0a\x05ab", "Order"),  # right index, truncated body
            (b"\x00\x00\x00\x00\x01\x02", "truncated"),  # index count without indexes
        ],
    ),
    "csv": (
        lambda: CsvRowDeserializationSchema(["a", "b"], field_types={"b": "int"}),
        [
            (b"x", "columns"),
            (b"x,1,2", "columns"),
            (b'x,"1', "CSV"),
            (b"x,one", "int"),
            (b"x,1\ny,2", "CSV"),
            (b"", "row"),
            (b"\xff,1", "utf-8"),
        ],
    ),
}


if not HAS_MOCK_REGISTRY:  # older confluent-kafka: no in-memory registry to read against
    del MALFORMED["avro-confluent"]


@pytest.mark.parametrize(
    ("fmt", "data", "word"),
    [(fmt, data, word) for fmt, (_, cases) in MALFORMED.items() for data, word in cases],
)
def test_malformed_input_raises_deserialization_error(fmt: str, data: bytes, word: str) -> None:
    schema = MALFORMED[fmt][0]()
    schema.open()
    with pytest.raises(DeserializationError) as info:
        schema.deserialize(data)
    error = info.value
    assert type(error) is DeserializationError
    assert error.format.startswith(fmt.split("-")[0])
    assert error.data == data
    assert word in str(error)
    assert repr(data[:32])[2:-1][:10] in error.excerpt or data == b""
    # The source places it at its record, and the error survives pickling (dead letters).
    located = pickle.loads(pickle.dumps(error.located("t", 3, 42)))
    assert (located.topic, located.partition, located.offset) == ("t", 3, 42)
    assert "at t[3]@42" in str(located)


# avro-confluent needs the registry its good records were written to: tested separately.
@pytest.mark.parametrize("fmt", sorted(set(MALFORMED) - {"avro-confluent"}))
def test_bulk_path_reports_the_first_bad_record_and_its_index(fmt: str) -> None:
    schema = MALFORMED[fmt][0]()
    bad = MALFORMED[fmt][1][0][0]
    good = _good_record(fmt)
    with pytest.raises(BatchDeserializationError) as info:
        schema.deserialize_batch([good, good, bad, good])
    assert info.value.index == 2
    assert info.value.data == bad
    assert isinstance(info.value, DeserializationError)


def _good_record(fmt: str) -> bytes:
    if fmt.startswith("string"):
        return b"fine"
    if fmt.startswith("json"):
        return b'{"age": 3}'
    if fmt == "avro":
        return AvroSerializationSchema(USER).serialize(
            {"name": "a", "age": 1, "kind": "A", "tags": []}
        )
    if fmt == "protobuf":
        return Order(id="x").SerializeToString()
    if fmt == "protobuf-confluent":
        return b"\x00\x00\x00\x00\x01\x02\x02" + Order(id="x").SerializeToString()
    return b"x,1"


@pytest.fixture
def avro_registry_pair() -> tuple[Any, Any]:
    return _registry_avro()


@pytest.mark.skipif(
    not HAS_MOCK_REGISTRY,
    reason="confluent-kafka too old for its in-memory registry client (mock://)",
)
def test_bulk_path_of_avro_confluent_reports_the_bad_record(avro_registry_pair: Any) -> None:
    ser, deser = avro_registry_pair
    good = ser.serialize({"name": "a", "age": 1, "kind": "B", "tags": ["t"]})
    with pytest.raises(BatchDeserializationError) as info:
        deser.deserialize_batch([good, good[:-2], good])
    assert info.value.index == 1
    assert deser.deserialize_batch([good, good]) == [deser.deserialize(good)] * 2


ALL_DESERIALIZERS: dict[str, Callable[[], DeserializationSchema[Any]]] = {
    "bytes": BytesSchema,
    **{fmt: factory for fmt, (factory, _) in MALFORMED.items()},
    "csv-untyped": CsvRowDeserializationSchema,
    "protobuf-dict": lambda: ProtobufDeserializationSchema(Customer, output="dict"),
}


@pytest.mark.parametrize("fmt", sorted(ALL_DESERIALIZERS))
def test_null_and_non_bytes_values_raise_deserialization_error(fmt: str) -> None:
    schema = ALL_DESERIALIZERS[fmt]()
    for value in (None, "text", 42):
        with pytest.raises(DeserializationError) as info:
            schema.deserialize(value)  # type: ignore[arg-type]
        assert "null" in str(info.value) or "expected bytes" in str(info.value)
        with pytest.raises(DeserializationError):
            schema.deserialize_batch([value])  # type: ignore[list-item]


@pytest.mark.parametrize("fmt", sorted(ALL_DESERIALIZERS))
@settings(deadline=None, max_examples=150)
@given(data=st.binary(max_size=64))
def test_arbitrary_bytes_never_raise_another_error_type(fmt: str, data: bytes) -> None:
    schema = ALL_DESERIALIZERS[fmt]()
    try:
        value = schema.deserialize(data)
    except DeserializationError:
        pass
    else:
        # Some bytes are valid records (any bytes for 'bytes', unknown fields for protobuf);
        # then the bulk path must agree with the single path.
        assert schema.deserialize_batch([data]) == [value]


@pytest.mark.parametrize(
    ("schema", "element", "word"),
    [
        (BytesSchema(), "text", "bytes"),
        (SimpleStringSchema(), b"bytes", "str"),
        (SimpleStringSchema("latin-1"), "\u20ac", "not representable"),
        (JsonSerializationSchema(), {1j}, "set"),
        # orjson writes NaN as null (documented); the standard library path refuses it.
        (JsonSerializationSchema(use_orjson=False), float("nan"), "JSON"),
        (JsonSerializationSchema({"type": "string"}), 3, "JSON Schema"),
        (AvroSerializationSchema(USER), {"name": "a"}, "Avro schema"),
        (AvroSerializationSchema(USER), {"name": "a", "age": "x", "kind": "A", "tags": []}, "Avro"),
        (ProtobufSerializationSchema(Order), Customer(id="x"), "streamplug.examples.Order"),
        (ProtobufSerializationSchema(Order), {"nope": 1}, "Order"),
        (CsvRowSerializationSchema(["a"]), {"b": 1}, "not in fields"),
        (CsvRowSerializationSchema(["a"]), {"a": None}, "null_literal"),
        (CsvRowSerializationSchema(["a"], field_types={"a": "int"}), {"a": "1"}, "int"),
        (CsvRowSerializationSchema(), "a,b", "list"),
    ],
)
def test_bad_elements_raise_serialization_error(schema: Any, element: Any, word: str) -> None:
    with pytest.raises(SerializationError) as info:
        schema.serialize(element)
    assert word in str(info.value)
    assert info.value.format
    with pytest.raises(SerializationError) as in_batch:
        schema.serialize_batch([element])
    assert word in str(in_batch.value)


@pytest.mark.parametrize(
    ("build", "option"),
    [
        (lambda: SimpleStringSchema("no-such-charset"), "charset"),
        (lambda: SimpleStringSchema("base64"), "charset"),
        (lambda: JsonDeserializationSchema({"type": 12}), "json_schema"),
        (lambda: JsonDeserializationSchema("/no/such/schema.json"), "json_schema"),
        (lambda: AvroDeserializationSchema({"type": "record", "fields": []}), "schema"),
        (lambda: AvroDeserializationSchema({"type": "no-such-type"}), "schema"),
        (lambda: AvroDeserializationSchema("{not json"), "schema"),
        (lambda: ProtobufDeserializationSchema("no_such_module_xyz:Msg"), "message_class"),
        (lambda: ProtobufDeserializationSchema(dict), "message_class"),
        (lambda: ProtobufDeserializationSchema(Order, output="yaml"), "output"),  # type: ignore[arg-type]
        (lambda: CsvRowDeserializationSchema(["a"], field_types={"b": "int"}), "field_types"),
        (lambda: CsvRowDeserializationSchema(["a"], field_types={"a": "date"}), "field_types"),
        (lambda: CsvRowDeserializationSchema(["a", "a"]), "fields"),
        (lambda: CsvRowDeserializationSchema(delimiter="::"), "delimiter"),
        (lambda: ConfluentAvroDeserializationSchema(), "schema_registry_url"),
        (lambda: ConfluentAvroSerializationSchema(USER, schema_registry_url="mock://x"), "topic"),
        (
            lambda: ConfluentAvroSerializationSchema(
                "string", schema_registry_url="mock://x", subject_name_strategy="record"
            ),
            "subject_name_strategy",
        ),
        (
            lambda: ConfluentAvroSerializationSchema(
                USER, schema_registry_url="mock://x", subject_name_strategy="by-moon"
            ),
            "subject_name_strategy",
        ),
    ],
)
def test_bad_configuration_raises_config_error_naming_the_option(
    build: Callable[[], Any], option: str
) -> None:
    with pytest.raises(ConfigError) as info:
        build()
    assert info.value.option == option
