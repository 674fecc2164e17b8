"""Property-based round trips for every built-in format: serialize then deserialize gives
the element back, one at a time and through the bulk ``serialize_batch`` and
``deserialize_batch`` paths."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamplug_serde import (
    AvroDeserializationSchema,
    AvroSerializationSchema,
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
    SimpleStringSchema,
)
from streamplug_serde.testing import HAS_MOCK_REGISTRY, Customer, Money, Order

EVENT_SCHEMA = {
    "type": "record",
    "name": "Event",
    "namespace": "streamplug.test",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "name", "type": "string"},
        {"name": "score", "type": "double"},
        {"name": "ratio", "type": "float"},
        {"name": "ok", "type": "boolean"},
        {"name": "payload", "type": "bytes"},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "counts", "type": {"type": "map", "values": "int"}},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B", "C"]}},
        {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}},
    ],
}

int32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)

events = st.fixed_dictionaries(
    {
        "id": int64,
        "name": st.text(),
        "score": st.floats(allow_nan=False),
        "ratio": st.floats(allow_nan=False, width=32),
        "ok": st.booleans(),
        "payload": st.binary(),
        "tags": st.lists(st.text(), max_size=5),
        "counts": st.dictionaries(st.text(), int32, max_size=5),
        "note": st.none() | st.text(),
        "kind": st.sampled_from(["A", "B", "C"]),
        "digest": st.binary(min_size=4, max_size=4),
    }
)

json_scalars = (
    st.none() | st.booleans() | int64 | st.floats(allow_nan=False, allow_infinity=False) | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=20,
)

orders = st.builds(
    Order,
    id=st.text(),
    quantity=int32,
    price=st.builds(Money, currency=st.text(max_size=3), units=int64),
    tags=st.lists(st.text(), max_size=4),
    lines=st.lists(st.builds(Order.Line, sku=st.text(), count=int32), max_size=3),
    paid=st.booleans(),
    score=st.floats(allow_nan=False),
    payload=st.binary(),
)


def roundtrip(ser: Any, deser: Any, elements: list[Any]) -> tuple[list[Any], list[Any]]:
    ser.open()
    deser.open()
    encoded = [ser.serialize(e) for e in elements]
    assert all(type(b) is bytes for b in encoded)
    assert ser.serialize_batch(elements) == encoded
    return [deser.deserialize(b) for b in encoded], deser.deserialize_batch(encoded)


@settings(deadline=None)  # a shared 2-core CI machine makes timings noisy
@given(st.lists(st.binary(), max_size=8))
def test_bytes_roundtrip(values: list[bytes]) -> None:
    schema = BytesSchema()
    one, batch = roundtrip(schema, schema, values)
    assert one == batch == values


@pytest.mark.parametrize("charset", ["utf-8", "utf-16", "latin-1"])
@settings(deadline=None)  # a shared 2-core CI machine makes timings noisy
@given(data=st.data())
def test_string_roundtrip(charset: str, data: st.DataObject) -> None:
    # Lone surrogates are not text in any of these charsets (the serializer refuses them).
    alphabet = st.characters(codec="latin-1" if charset == "latin-1" else "utf-8")
    texts = data.draw(st.lists(st.text(alphabet=alphabet), max_size=8))
    schema = SimpleStringSchema(charset)
    one, batch = roundtrip(schema, schema, texts)
    assert one == batch == texts


@pytest.mark.parametrize("use_orjson", [True, False])
@settings(deadline=None)  # a shared 2-core CI machine makes timings noisy
@given(values=st.lists(json_values, max_size=8))
def test_json_roundtrip(use_orjson: bool, values: list[Any]) -> None:
    one, batch = roundtrip(
        JsonSerializationSchema(use_orjson=use_orjson),
        JsonDeserializationSchema(use_orjson=use_orjson),
        values,
    )
    assert one == batch == values


@settings(deadline=None)  # a shared 2-core CI machine makes timings noisy
@given(values=st.lists(st.integers(), max_size=5))
def test_json_big_integers_roundtrip_with_the_standard_library(values: list[int]) -> None:
    # orjson reads integers beyond 64 bits as floats (documented); json keeps them exact.
    one, batch = roundtrip(
        JsonSerializationSchema(), JsonDeserializationSchema(use_orjson=False), values
    )
    assert one == batch == values


@settings(deadline=None)  # a shared 2-core CI machine makes timings noisy
@given(values=st.lists(st.fixed_dictionaries({"id": int64, "name": st.text()}), max_size=5))
def test_json_roundtrip_with_json_schema(values: list[dict[str, Any]]) -> None:
    schema = {
        "type": "object",
        "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
        "required": ["id", "name"],
    }
    one, batch = roundtrip(
        JsonSerializationSchema(schema), JsonDeserializationSchema(schema), values
    )
    assert one == batch == values


@settings(deadline=None)  # a shared 2-core CI machine makes timings noisy
@given(values=st.lists(events, max_size=6))
def test_avro_roundtrip(values: list[dict[str, Any]]) -> None:
    one, batch = roundtrip(
        AvroSerializationSchema(EVENT_SCHEMA), AvroDeserializationSchema(EVENT_SCHEMA), values
    )
    assert one == batch == values


@settings(deadline=None)  # a shared 2-core CI machine makes timings noisy
@given(values=st.lists(events, max_size=4))
def test_avro_roundtrip_with_reader_schema(values: list[dict[str, Any]]) -> None:
    # Schema evolution: the reader drops 'payload' and adds a field with a default.
    reader = dict(EVENT_SCHEMA)
    reader["fields"] = [f for f in EVENT_SCHEMA["fields"] if f["name"] != "payload"] + [
        {"name": "region", "type": "string", "default": "eu"}
    ]
    one, batch = roundtrip(
        AvroSerializationSchema(EVENT_SCHEMA),
        AvroDeserializationSchema(EVENT_SCHEMA, reader_schema=reader),
        values,
    )
    expected = [{**{k: v for k, v in e.items() if k != "payload"}, "region": "eu"} for e in values]
    assert one == batch == expected


@settings(deadline=None)  # a shared 2-core CI machine makes timings noisy
@given(values=st.lists(orders, max_size=6))
def test_protobuf_roundtrip(values: list[Any]) -> None:
    one, batch = roundtrip(
        ProtobufSerializationSchema(Order), ProtobufDeserializationSchema(Order), values
    )
    assert one == batch == values


@settings(deadline=None)  # a shared 2-core CI machine makes timings noisy
@given(values=st.lists(orders, max_size=4))
def test_protobuf_dict_output_matches_the_message(values: list[Any]) -> None:
    from google.protobuf import json_format

    deser = ProtobufDeserializationSchema("streamplug_serde.testing:Order", output="dict")
    ser = ProtobufSerializationSchema("streamplug_serde.testing.Order")
    one, batch = roundtrip(ser, deser, values)
    assert one == batch
    # The dicts go back into equal messages, and a dict is accepted by the serializer too.
    assert [json_format.ParseDict(d, Order()) for d in one] == values
    assert [ser.serialize(d) for d in one] == [v.SerializeToString() for v in values]


csv_cell = st.text()


@settings(deadline=None)  # a shared 2-core CI machine makes timings noisy
@given(rows=st.lists(st.lists(csv_cell, min_size=1, max_size=6), max_size=8))
def test_csv_roundtrip_lists(rows: list[list[str]]) -> None:
    one, batch = roundtrip(CsvRowSerializationSchema(), CsvRowDeserializationSchema(), rows)
    assert one == batch == rows


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
@settings(deadline=None)  # a shared 2-core CI machine makes timings noisy
@given(data=st.data())
def test_csv_roundtrip_typed_dicts(delimiter: str, data: st.DataObject) -> None:
    fields = ["name", "count", "price", "active", "note"]
    types = {"count": "int", "price": "float", "active": "bool"}
    rows = data.draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.text(),
                    "count": int64,
                    "price": st.floats(allow_nan=False),
                    "active": st.booleans(),
                    "note": st.none() | st.text(min_size=1).filter(lambda t: t != "NULL"),
                }
            ),
            max_size=8,
        )
    )
    options: dict[str, Any] = {
        "fields": fields,
        "field_types": types,
        "delimiter": delimiter,
        "null_literal": "NULL",
    }
    ser = CsvRowSerializationSchema(**options)
    deser = CsvRowDeserializationSchema(**options)
    # A name equal to the null literal would read back as None: that is what null_literal means.
    rows = [r for r in rows if r["name"] != "NULL"]
    one, batch = roundtrip(ser, deser, rows)
    assert one == batch == rows


needs_mock_registry = pytest.mark.skipif(
    not HAS_MOCK_REGISTRY,
    reason="confluent-kafka too old for its in-memory registry client (mock://)",
)


def _mock_url() -> str:
    return f"mock://{uuid.uuid4().hex}"


@needs_mock_registry
@settings(max_examples=50, deadline=None)
@given(values=st.lists(events, max_size=5))
def test_avro_confluent_roundtrip(values: list[dict[str, Any]]) -> None:
    url = _mock_url()
    ser = ConfluentAvroSerializationSchema(EVENT_SCHEMA, schema_registry_url=url, topic="events")
    one, batch = roundtrip(ser, ConfluentAvroDeserializationSchema(schema_registry_url=url), values)
    assert one == batch == values


@needs_mock_registry
@settings(max_examples=50, deadline=None)
@given(values=st.lists(orders, max_size=5), nested=st.booleans())
def test_protobuf_confluent_roundtrip(values: list[Any], nested: bool) -> None:
    url = _mock_url()
    cls = Order.Line if nested else Order
    if nested:
        values = [line for o in values for line in o.lines]
    ser = ConfluentProtobufSerializationSchema(cls, schema_registry_url=url, topic="orders")
    deser = ConfluentProtobufDeserializationSchema(cls, schema_registry_url=url)
    one, batch = roundtrip(ser, deser, values)
    assert one == batch == values


@needs_mock_registry
@settings(deadline=None)  # a shared 2-core CI machine makes timings noisy
@given(values=st.lists(st.builds(Customer, id=st.text(), name=st.text()), max_size=4))
def test_protobuf_confluent_first_message_without_registry_lookup(values: list[Any]) -> None:
    # Reading needs no registry when the class is known: the id is not looked up.
    ser = ConfluentProtobufSerializationSchema(
        Customer, schema_registry_url=_mock_url(), subject="customers-value"
    )
    one, batch = roundtrip(ser, ConfluentProtobufDeserializationSchema(Customer), values)
    assert one == batch == values


def _shared_schema_cases() -> list[tuple[str, Any, Any, Callable[[int], Any]]]:
    cases: list[tuple[str, Any, Any, Callable[[int], Any]]] = [
        (
            "avro",
            AvroSerializationSchema(EVENT_SCHEMA),
            AvroDeserializationSchema(EVENT_SCHEMA),
            lambda i: {
                "id": i,
                "name": "n" * (i % 7),
                "score": i / 3,
                "ratio": 0.5,
                "ok": bool(i % 2),
                "payload": bytes([i % 256]) * (i % 5),
                "tags": ["t"] * (i % 3),
                "counts": {"c": i % 100},
                "note": None,
                "kind": "B",
                "digest": b"abcd",
            },
        ),
        (
            "csv",
            CsvRowSerializationSchema(["a", "b"], field_types={"b": "int"}),
            CsvRowDeserializationSchema(["a", "b"], field_types={"b": "int"}),
            lambda i: {"a": "x," * (i % 4), "b": i},
        ),
        (
            "json",
            JsonSerializationSchema(),
            JsonDeserializationSchema(),
            lambda i: {"i": [i] * (i % 5)},
        ),
        (
            "protobuf",
            ProtobufSerializationSchema(Order),
            ProtobufDeserializationSchema(Order),
            lambda i: Order(id=str(i), quantity=i),
        ),
    ]
    if HAS_MOCK_REGISTRY:
        url = _mock_url()
        cases.append(
            (
                "avro-confluent",
                ConfluentAvroSerializationSchema(EVENT_SCHEMA, schema_registry_url=url, topic="t"),
                ConfluentAvroDeserializationSchema(schema_registry_url=url),
                cases[0][3],
            )
        )
    return cases


@pytest.mark.parametrize("case", _shared_schema_cases(), ids=lambda c: c[0])
def test_one_schema_shared_by_parallel_threads(
    case: tuple[str, Any, Any, Callable[[int], Any]],
) -> None:
    # Sinks hand one schema object to all their parallel writers, each on its own thread.
    _, ser, deser, make = case
    ser.open()
    deser.open()
    per_thread = 2_000

    def work(offset: int) -> list[tuple[Any, bytes]]:
        elements = [make(offset + i) for i in range(per_thread)]
        return [(e, ser.serialize(e)) for e in elements]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = [
            r for chunk in pool.map(work, range(0, 4 * per_thread, per_thread)) for r in chunk
        ]
    elements = [e for e, _ in results]
    assert deser.deserialize_batch([b for _, b in results]) == elements
