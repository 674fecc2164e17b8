"""Avro binary records without a container header (format ``avro``), through fastavro.

This is the "schemaless" encoding Kafka producers use: the writer and reader agree on the
schema out of band (or through a Schema Registry, see ``registry``). Records are dicts.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import fastavro
import fastavro.read
import fastavro.schema

from streamplug.api.serde import DeserializationError, DeserializationSchema, SerializationSchema
from streamplug.errors import ConfigError
from streamplug_serde._util import (
    BYTES_LIKE,
    SerializationError,
    deserialize_each,
    load_json_document,
    not_bytes_error,
)

__all__ = [
    "AvroDeserializationSchema",
    "AvroSerializationSchema",
    "avro_document",
    "parse_avro_schema",
]

FORMAT = "avro"

# fastavro raises a variety of types for corrupt input (EOFError for truncation,
# UnicodeDecodeError for bad strings, IndexError for an out-of-range union branch or enum
# symbol, SchemaResolutionError when the reader schema does not fit, ValueError/TypeError
# for others); all of them mean "these bytes are not a record".
_READ_ERRORS = (
    EOFError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    OverflowError,
    MemoryError,
    AttributeError,
    StopIteration,
    fastavro.read.SchemaResolutionError,
)


def avro_document(schema: Any, option: str = "schema") -> Any:
    """An Avro schema given as a dict, a JSON string, a primitive type name or an ``.avsc``
    file path, as a JSON document."""
    if isinstance(schema, str) and schema.strip() in _PRIMITIVES:
        return schema.strip()
    return load_json_document(schema, option)


def parse_avro_schema(
    schema: Any, option: str = "schema", named_schemas: dict[str, Any] | None = None
) -> Any:
    """Parse an Avro schema (see ``avro_document``) with fastavro.

    ``named_schemas`` collects named types, so a schema can refer to types parsed before it
    (Schema Registry references)."""
    document = avro_document(schema, option)
    try:
        return fastavro.parse_schema(
            document, named_schemas=named_schemas if named_schemas is not None else {}
        )
    except (fastavro.schema.SchemaParseException, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"{option} is not a valid Avro schema: {exc}", option=option) from exc


_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def record_name(parsed: Any) -> str | None:
    """The full name of a record/enum/fixed schema (subject name strategies use it)."""
    if isinstance(parsed, dict):
        name = parsed.get("name")
        return str(name) if name is not None else None
    return None


class AvroSerializationSchema(SerializationSchema[Any]):
    """Writes a value (a dict for a record) as Avro binary with ``schema``."""

    format_name = FORMAT

    def __init__(self, schema: Any) -> None:
        self.schema_document = avro_document(schema)
        self.parsed_schema = parse_avro_schema(self.schema_document)

    def serialize(self, element: Any) -> bytes:
        return self._write(element, b"")

    def _write(self, element: Any, header: bytes) -> bytes:
        # A buffer per call, not per schema: sinks share one schema object between their
        # parallel writers, each on its own thread.
        buf = io.BytesIO()
        buf.write(header)
        try:
            fastavro.schemaless_writer(buf, self.parsed_schema, element)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise SerializationError(
                f"does not match the Avro schema: {type(exc).__name__}: {exc}",
                format=self.format_name,
                element=element,
            ) from exc
        return buf.getvalue()

    def __repr__(self) -> str:
        name = record_name(self.parsed_schema) or self.parsed_schema
        return f"{type(self).__name__}(schema={name!r})"


def read_avro(fmt: str, message: bytes, start: int, writer: Any, reader: Any | None) -> Any:
    """Read one Avro value from ``message[start:]``; every byte must belong to it."""
    stream = io.BytesIO(message)
    stream.seek(start)
    try:
        value = fastavro.schemaless_reader(stream, writer, reader)
    except _READ_ERRORS as exc:
        reason = str(exc) or "unexpected end of data"
        raise DeserializationError(
            f"not a valid Avro record: {type(exc).__name__}: {reason}", format=fmt, data=message
        ) from exc
    trailing = len(message) - stream.tell()
    if trailing:
        raise DeserializationError(
            f"{trailing} bytes left over after the Avro record: the writer used a different schema",
            format=fmt,
            data=message,
        )
    return value


class AvroDeserializationSchema(DeserializationSchema[Any]):
    """Reads Avro binary written with ``schema``. With ``reader_schema`` the record is
    resolved to that schema (Avro schema evolution: added fields with defaults, removed
    fields, promoted types)."""

    format_name = FORMAT

    def __init__(self, schema: Any, reader_schema: Any = None) -> None:
        self.parsed_schema = parse_avro_schema(schema)
        self.parsed_reader_schema = (
            parse_avro_schema(reader_schema, "reader_schema") if reader_schema is not None else None
        )

    def deserialize(self, message: bytes) -> Any:
        if not isinstance(message, BYTES_LIKE):
            raise not_bytes_error(self.format_name, message)
        return read_avro(
            self.format_name, bytes(message), 0, self.parsed_schema, self.parsed_reader_schema
        )

    def deserialize_batch(self, messages: Sequence[bytes]) -> list[Any]:
        # One BytesIO per record is unavoidable with fastavro's API; binding the names
        # locally and skipping per-record error plumbing is what the bulk path saves.
        reader = fastavro.schemaless_reader
        writer_schema = self.parsed_schema
        reader_schema = self.parsed_reader_schema
        bytes_io = io.BytesIO
        out = []
        try:
            for m in messages:
                stream = bytes_io(m)
                out.append(reader(stream, writer_schema, reader_schema))
                if stream.tell() != len(m):
                    raise ValueError("trailing bytes")
        except _READ_ERRORS:
            return deserialize_each(self.deserialize, messages)
        return out

    def __repr__(self) -> str:
        name = record_name(self.parsed_schema) or self.parsed_schema
        return f"{type(self).__name__}(schema={name!r})"
