"""The ``streamplug`` entry point of streamplug-serde: every built-in format, by name.

Factories receive a pipeline's format options as keyword arguments; option names may be
spelled with dots, dashes or underscores (``schema.registry.url``). Formats that need an
optional library import it only when built, so ``streamplug plugins`` lists them all even
where, say, the registry client is not installed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamplug.plugin import FormatSpec, hookimpl
from streamplug_serde._util import options_factory
from streamplug_serde.options import OPTIONS


def _specs() -> list[FormatSpec]:
    from streamplug_serde.avro_format import AvroDeserializationSchema, AvroSerializationSchema
    from streamplug_serde.avro_registry import (
        ConfluentAvroDeserializationSchema,
        ConfluentAvroSerializationSchema,
    )
    from streamplug_serde.basic import BytesSchema, SimpleStringSchema
    from streamplug_serde.csv_format import CsvRowDeserializationSchema, CsvRowSerializationSchema
    from streamplug_serde.json_format import JsonDeserializationSchema, JsonSerializationSchema
    from streamplug_serde.protobuf_format import (
        ProtobufDeserializationSchema,
        ProtobufSerializationSchema,
    )
    from streamplug_serde.protobuf_registry import (
        ConfluentProtobufDeserializationSchema,
        ConfluentProtobufSerializationSchema,
    )

    def spec(name: str, ser: Any, deser: Any, description: str) -> FormatSpec:
        return FormatSpec(
            name=name,
            serializer=options_factory(name, ser),
            deserializer=options_factory(name, deser),
            description=description,
            serializer_options=OPTIONS[name][0],
            deserializer_options=OPTIONS[name][1],
        )

    return [
        spec("bytes", BytesSchema, BytesSchema, "raw bytes, unchanged"),
        spec("string", SimpleStringSchema, SimpleStringSchema, "text in a charset (default utf-8)"),
        spec(
            "json",
            JsonSerializationSchema,
            JsonDeserializationSchema,
            "JSON values (orjson when installed), optional JSON Schema validation",
        ),
        spec(
            "avro", AvroSerializationSchema, AvroDeserializationSchema, "Avro binary, schema given"
        ),
        spec(
            "avro-confluent",
            ConfluentAvroSerializationSchema,
            ConfluentAvroDeserializationSchema,
            "Avro in the Confluent Schema Registry wire format",
        ),
        spec(
            "protobuf",
            ProtobufSerializationSchema,
            ProtobufDeserializationSchema,
            "Protocol Buffers messages of one class",
        ),
        spec(
            "protobuf-confluent",
            ConfluentProtobufSerializationSchema,
            ConfluentProtobufDeserializationSchema,
            "Protobuf in the Confluent Schema Registry wire format",
        ),
        spec(
            "csv", CsvRowSerializationSchema, CsvRowDeserializationSchema, "one CSV row per record"
        ),
    ]


@hookimpl
def streamplug_register_formats(register: Callable[[FormatSpec], None]) -> None:
    for format_spec in _specs():
        register(format_spec)
