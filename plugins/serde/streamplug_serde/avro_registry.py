"""Avro in the Confluent Schema Registry wire format (format ``avro-confluent``).

Byte-compatible with ``confluent_kafka.schema_registry.avro.AvroSerializer`` /
``AvroDeserializer`` (and the Java ``KafkaAvroSerializer``): records written by either side
are read by the other. Reading takes the writer's schema from the registry by the id in
each record, so the deserializer needs no schema of its own; ``reader_schema`` resolves
every record to one schema (Avro schema evolution).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import fastavro

from streamplug.api.serde import DeserializationError, DeserializationSchema
from streamplug.errors import ConfigError
from streamplug_serde._util import BYTES_LIKE, deserialize_each, not_bytes_error
from streamplug_serde.avro_format import (
    _READ_ERRORS,
    AvroSerializationSchema,
    parse_avro_schema,
    read_avro,
    record_name,
)
from streamplug_serde.registry import (
    HEADER_SIZE,
    MAGIC_BYTE,
    RegisteredHeader,
    RegistrySettings,
    SchemaCache,
    _import_client_module,
    encode_header,
    read_header,
    registered_schema_id,
    subject_name,
)

__all__ = ["ConfluentAvroDeserializationSchema", "ConfluentAvroSerializationSchema"]

FORMAT = "avro-confluent"

StrategyT = str | Callable[[str | None, bool, str | None], str]


class ConfluentAvroSerializationSchema(RegisteredHeader, AvroSerializationSchema):
    """Writes Avro records prefixed with the schema id of ``schema`` in the registry.

    The subject is ``subject`` when given, else derived by ``subject_name_strategy``
    (``topic``: ``<topic>-value`` or ``<topic>-key`` with ``is_key``; ``record``: the record's
    full name; ``topic-record``: ``<topic>-<full name>``). With ``auto_register_schemas`` the
    schema is registered (a no-op when it already is); otherwise it must already be
    registered under the subject. ``use_latest_version`` writes with the subject's latest
    schema instead of ``schema`` (which may then be omitted).
    """

    format_name = FORMAT

    def __init__(
        self,
        schema: Any = None,
        *,
        schema_registry_url: str | None = None,
        schema_registry_conf: Mapping[str, Any] | None = None,
        schema_registry_client: Any = None,
        subject: str | None = None,
        topic: str | None = None,
        is_key: bool = False,
        subject_name_strategy: StrategyT = "topic",
        auto_register_schemas: bool = True,
        use_latest_version: bool = False,
        normalize_schemas: bool = False,
    ) -> None:
        if schema is None and not use_latest_version:
            raise ConfigError(
                "avro-confluent serialization needs the writer schema: set schema, or set "
                "use_latest_version=True to write with the subject's latest registered schema",
                option="schema",
            )
        if schema is not None:
            super().__init__(schema)
        else:
            self.schema_document = None
            self.parsed_schema = None
        self.registry = RegistrySettings.from_options(
            schema_registry_url, schema_registry_conf, schema_registry_client
        )
        self.topic = topic
        self.is_key = is_key
        self.subject_name_strategy = subject_name_strategy
        self.auto_register_schemas = auto_register_schemas
        self.use_latest_version = use_latest_version
        self.normalize_schemas = normalize_schemas
        self._subject = subject
        if subject is None and schema is not None:
            # Fail at construction, not at the first record, when the strategy cannot work.
            self._subject = self._derive_subject()
        self._init_header()

    def _derive_subject(self) -> str:
        return subject_name(
            self.subject_name_strategy,
            topic=self.topic,
            is_key=self.is_key,
            record_name=record_name(self.parsed_schema),
        )

    @property
    def subject(self) -> str:
        if self._subject is None:
            self._subject = self._derive_subject()
        return self._subject

    def _register(self) -> bytes:
        sr = _import_client_module()
        client = self.registry.get_client()
        if self.use_latest_version:
            if self._subject is None and self.subject_name_strategy != "topic":
                raise ConfigError(
                    "use_latest_version without a schema needs subject (or the 'topic' "
                    "strategy with topic), since there is no record name to derive it from",
                    option="subject",
                )
            latest = client.get_latest_version(self.subject)
            self.schema_document = json.loads(latest.schema.schema_str or "null")
            self.parsed_schema = parse_avro_schema(self.schema_document)
            return encode_header(int(latest.schema_id or 0))
        schema = sr.Schema(json.dumps(self.schema_document), "AVRO")
        return encode_header(
            registered_schema_id(
                client,
                self.subject,
                schema,
                auto_register=self.auto_register_schemas,
                normalize=self.normalize_schemas,
            )
        )

    def serialize(self, element: Any) -> bytes:
        header = self._header if self._header is not None else self._resolve()
        return self._write(element, header)

    def __repr__(self) -> str:
        return (
            f"ConfluentAvroSerializationSchema(subject={self._subject!r}, "
            f"registry={self.registry!r})"
        )


def _parse_registered(client: Any, schema: Any, _seen: frozenset[str] = frozenset()) -> Any:
    """Parse a registered Avro schema, first parsing the schemas it references so their
    named types resolve."""
    if schema.schema_type not in (None, "AVRO"):
        raise ConfigError(
            f"the registry holds a {schema.schema_type} schema where an Avro one was expected; "
            "use the format that matches the topic's schema type",
            option="format",
        )
    named: dict[str, Any] = {}
    for ref in schema.references or []:
        if ref.subject in _seen:
            continue
        registered = client.get_version(ref.subject, ref.version)
        _collect_named(client, registered.schema, named, _seen | {ref.subject})
    return parse_avro_schema(schema.schema_str, "registered schema", named_schemas=named)


def _collect_named(client: Any, schema: Any, named: dict[str, Any], seen: frozenset[str]) -> None:
    for ref in schema.references or []:
        if ref.subject not in seen:
            registered = client.get_version(ref.subject, ref.version)
            _collect_named(client, registered.schema, named, seen | {ref.subject})
    parse_avro_schema(schema.schema_str, "referenced schema", named_schemas=named)


class ConfluentAvroDeserializationSchema(DeserializationSchema[Any]):
    """Reads Avro records in the wire format, with the writer schema named by each
    record's id (fetched once per id). ``reader_schema`` resolves them all to one schema.

    A record without the magic byte, with an id the registry does not know, or whose bytes
    do not match its schema raises ``DeserializationError``. A registry that cannot be
    reached raises the client's error instead: that is not the record's fault, and a
    dead-letter policy must not swallow good records while the registry is down.
    """

    format_name = FORMAT

    def __init__(
        self,
        reader_schema: Any = None,
        *,
        schema_registry_url: str | None = None,
        schema_registry_conf: Mapping[str, Any] | None = None,
        schema_registry_client: Any = None,
    ) -> None:
        self.parsed_reader_schema = (
            parse_avro_schema(reader_schema, "reader_schema") if reader_schema is not None else None
        )
        self.registry = RegistrySettings.from_options(
            schema_registry_url, schema_registry_conf, schema_registry_client
        )
        self._schemas = SchemaCache(FORMAT, self.registry, _parse_registered)

    def deserialize(self, message: bytes) -> Any:
        if not isinstance(message, BYTES_LIKE):
            raise not_bytes_error(FORMAT, message)
        data = bytes(message)
        schema_id = read_header(FORMAT, data)
        writer = self._schemas.get(schema_id, data)
        return read_avro(FORMAT, data, HEADER_SIZE, writer, self.parsed_reader_schema)

    def deserialize_batch(self, messages: Sequence[bytes]) -> list[Any]:
        schemas = self._schemas
        reader = fastavro.schemaless_reader
        reader_schema = self.parsed_reader_schema
        bytes_io = io.BytesIO
        out = []
        try:
            for m in messages:
                if len(m) < HEADER_SIZE or m[0] != MAGIC_BYTE:
                    raise ValueError("not in the wire format")
                stream = bytes_io(m)
                stream.seek(HEADER_SIZE)
                writer = schemas.get(int.from_bytes(m[1:5], "big"), m)
                out.append(reader(stream, writer, reader_schema))
                if stream.tell() != len(m):
                    raise ValueError("trailing bytes")
        except (*_READ_ERRORS, DeserializationError):
            return deserialize_each(self.deserialize, messages)
        return out

    def __repr__(self) -> str:
        return f"ConfluentAvroDeserializationSchema(registry={self.registry!r})"
