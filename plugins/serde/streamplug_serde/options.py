"""The options each format takes in a pipeline file's ``format_options``, declared per
direction so a key is checked (with its line and a did-you-mean) before a schema is built.

They mirror the keyword arguments of the schema classes that a TOML file can express;
Python objects (a registry client, a class) are passed to the classes directly instead.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from streamplug.plugin.options import option

SubjectNameStrategy = Literal["topic", "record", "topic-record"]


@attrs.frozen
class NoOptions:
    """This format takes no options."""


@attrs.frozen
class StringOptions:
    """Text in a charset."""

    charset: str = option("utf-8", doc="the text's encoding", example='charset = "latin-1"')


@attrs.frozen
class JsonOptions:
    """JSON values."""

    json_schema: Any = option(
        None,
        doc="a JSON Schema every value is checked against: a table, a JSON string or a file path",
    )
    use_orjson: bool | None = option(None, doc="use orjson (default: when it is installed)")


@attrs.frozen
class AvroSerializerOptions:
    """Avro binary with a given writer schema."""

    schema: Any = option(
        doc="the Avro schema: a table, a JSON string or an .avsc path",
        example='schema = "schemas/order.avsc"',
    )


@attrs.frozen
class AvroDeserializerOptions:
    """Avro binary with a given writer schema (and an optional reader schema)."""

    schema: Any = option(
        doc="the writer's Avro schema: a table, a JSON string or an .avsc path",
        example='schema = "schemas/order.avsc"',
    )
    reader_schema: Any = option(None, doc="the schema to read into, when it differs")


@attrs.frozen(kw_only=True)
class RegistryOptions:
    """Where the Confluent Schema Registry is."""

    schema_registry_url: str | None = option(
        None,
        doc="the registry's URL",
        example='schema_registry_url = "http://localhost:8081"',
    )
    schema_registry_conf: dict[str, Any] | None = option(
        None, doc="the registry client's settings (basic.auth.user.info...)"
    )


@attrs.frozen(kw_only=True)
class RegisteredSerializerOptions(RegistryOptions):
    """How a registry serializer names and registers its subject."""

    subject: str | None = option(None, doc="the subject (default: from subject_name_strategy)")
    topic: str | None = option(None, doc="the topic the subject is named after")
    is_key: bool = option(False, doc="the schema is the key's")
    subject_name_strategy: SubjectNameStrategy = option("topic", doc="how subjects are named")
    auto_register_schemas: bool = option(True, doc="register the schema when it is new")
    normalize_schemas: bool = option(False, doc="normalize schemas before registering")


@attrs.frozen(kw_only=True)
class ConfluentAvroSerializerOptions(RegisteredSerializerOptions):
    """Avro in the Confluent wire format."""

    schema: Any = option(None, doc="the Avro schema (default: the subject's latest)")
    use_latest_version: bool = option(False, doc="write with the subject's latest schema")


@attrs.frozen(kw_only=True)
class ConfluentAvroDeserializerOptions(RegistryOptions):
    """Avro in the Confluent wire format, writer schemas from the registry."""

    reader_schema: Any = option(None, doc="the schema to read into, when it differs")


@attrs.frozen(kw_only=True)
class ProtobufSerializerOptions:
    """Protocol Buffers messages of one class."""

    message_class: str = option(
        doc="the generated message class, 'package.module:Class'",
        example='message_class = "orders_pb2:Order"',
    )


@attrs.frozen(kw_only=True)
class ProtobufDeserializerOptions(ProtobufSerializerOptions):
    """Protocol Buffers messages of one class."""

    output: Literal["message", "dict"] = option("message", doc="records as messages or dicts")


@attrs.frozen(kw_only=True)
class ConfluentProtobufSerializerOptions(RegisteredSerializerOptions):
    """Protobuf in the Confluent wire format."""

    message_class: str = option(
        doc="the generated message class, 'package.module:Class'",
        example='message_class = "orders_pb2:Order"',
    )


@attrs.frozen(kw_only=True)
class ConfluentProtobufDeserializerOptions(RegistryOptions):
    """Protobuf in the Confluent wire format."""

    message_class: str = option(
        doc="the generated message class, 'package.module:Class'",
        example='message_class = "orders_pb2:Order"',
    )
    output: Literal["message", "dict"] = option("message", doc="records as messages or dicts")


@attrs.frozen(kw_only=True)
class CsvOptions:
    """One CSV row per record."""

    fields: list[str] | str | None = option(
        None, doc="the columns, in order (a list, or one comma-separated string)"
    )
    field_types: dict[str, str] | None = option(None, doc="a type per column (int, float...)")
    delimiter: str = option(",", doc="the column separator")
    quote_char: str = option('"', doc="the quote character")
    null_literal: str | None = option(None, doc="the text that stands for a missing value")
    charset: str = option("utf-8", doc="the text's encoding")


OPTIONS: dict[str, tuple[type, type]] = {
    "bytes": (NoOptions, NoOptions),
    "string": (StringOptions, StringOptions),
    "json": (JsonOptions, JsonOptions),
    "avro": (AvroSerializerOptions, AvroDeserializerOptions),
    "avro-confluent": (ConfluentAvroSerializerOptions, ConfluentAvroDeserializerOptions),
    "protobuf": (ProtobufSerializerOptions, ProtobufDeserializerOptions),
    "protobuf-confluent": (
        ConfluentProtobufSerializerOptions,
        ConfluentProtobufDeserializerOptions,
    ),
    "csv": (CsvOptions, CsvOptions),
}
"""Each built-in format's (serializer options, deserializer options)."""
