"""Protobuf in the Confluent Schema Registry wire format (format ``protobuf-confluent``).

Byte-compatible with ``confluent_kafka.schema_registry.protobuf.ProtobufSerializer`` /
``ProtobufDeserializer``: magic byte, schema id, the message indexes (the path of the
message type inside its .proto file) and the message. Schemas are registered as Confluent's
clients register them: the serialized file descriptor, base64-encoded, with each imported
file registered under its own name as a reference (protobuf's well-known types excepted).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, FileDescriptor

from streamplug.api.serde import DeserializationError
from streamplug.errors import ConfigError
from streamplug_serde._util import BYTES_LIKE, deserialize_each, not_bytes_error
from streamplug_serde.protobuf_format import (
    _DECODE_ERRORS,
    ProtobufDeserializationSchema,
    ProtobufSerializationSchema,
)
from streamplug_serde.registry import (
    HEADER_SIZE,
    MAGIC_BYTE,
    RegisteredHeader,
    RegistrySettings,
    SchemaCache,
    _import_client_module,
    decode_message_indexes,
    encode_header,
    encode_message_indexes,
    read_header,
    registered_schema_id,
    subject_name,
)

__all__ = [
    "ConfluentProtobufDeserializationSchema",
    "ConfluentProtobufSerializationSchema",
    "message_indexes",
]

FORMAT = "protobuf-confluent"

StrategyT = str | Callable[[str | None, bool, str | None], str]


def message_indexes(descriptor: Descriptor) -> list[int]:
    """The path of a message type in its file: top-level index, then nested indexes."""
    path: list[int] = []
    current = descriptor
    while current.containing_type is not None:
        parent = current.containing_type
        path.append([n.name for n in parent.nested_types].index(current.name))
        current = parent
    file_proto = descriptor_pb2.FileDescriptorProto.FromString(current.file.serialized_pb)
    path.append([m.name for m in file_proto.message_type].index(current.name))
    return path[::-1]


def _is_well_known(file: FileDescriptor) -> bool:
    # Registries know google/protobuf/*.proto (and Confluent's own option files) without
    # references; Confluent's serializers skip them the same way.
    return file.name.startswith(("google/protobuf/", "confluent/"))


def _schema_text(file: FileDescriptor) -> str:
    return base64.standard_b64encode(file.serialized_pb).decode("ascii")


def _register_file(client: Any, sr: Any, file: FileDescriptor, auto_register: bool) -> list[Any]:
    """Register (or look up) every file ``file`` imports, depth first; return its references."""
    references = []
    for dependency in file.dependencies:
        if _is_well_known(dependency):
            continue
        dep_refs = _register_file(client, sr, dependency, auto_register)
        schema = sr.Schema(_schema_text(dependency), "PROTOBUF", dep_refs)
        if auto_register:
            client.register_schema(dependency.name, schema)
        version = client.lookup_schema(dependency.name, schema).version
        references.append(sr.SchemaReference(dependency.name, dependency.name, version))
    return references


class ConfluentProtobufSerializationSchema(RegisteredHeader, ProtobufSerializationSchema):
    """Writes messages of ``message_class`` in the wire format.

    Subject naming and registration work as for ``avro-confluent``; the record name of the
    ``record`` and ``topic-record`` strategies is the message's full name.
    """

    format_name = FORMAT

    def __init__(
        self,
        message_class: Any,
        *,
        schema_registry_url: str | None = None,
        schema_registry_conf: Mapping[str, Any] | None = None,
        schema_registry_client: Any = None,
        subject: str | None = None,
        topic: str | None = None,
        is_key: bool = False,
        subject_name_strategy: StrategyT = "topic",
        auto_register_schemas: bool = True,
        normalize_schemas: bool = False,
    ) -> None:
        super().__init__(message_class)
        self.registry = RegistrySettings.from_options(
            schema_registry_url, schema_registry_conf, schema_registry_client
        )
        self.subject = subject or subject_name(
            subject_name_strategy,
            topic=topic,
            is_key=is_key,
            record_name=self.message_class.DESCRIPTOR.full_name,
        )
        self.auto_register_schemas = auto_register_schemas
        self.normalize_schemas = normalize_schemas
        self._indexes = encode_message_indexes(message_indexes(self.message_class.DESCRIPTOR))
        self._init_header()

    def _register(self) -> bytes:
        sr = _import_client_module()
        client = self.registry.get_client()
        file = self.message_class.DESCRIPTOR.file
        refs = _register_file(client, sr, file, self.auto_register_schemas)
        schema = sr.Schema(_schema_text(file), "PROTOBUF", refs)
        schema_id = registered_schema_id(
            client,
            self.subject,
            schema,
            auto_register=self.auto_register_schemas,
            normalize=self.normalize_schemas,
        )
        return encode_header(schema_id) + self._indexes

    def serialize(self, element: Any) -> bytes:
        header = self._header if self._header is not None else self._resolve()
        return header + super().serialize(element)

    def __repr__(self) -> str:
        return (
            f"ConfluentProtobufSerializationSchema({self.message_class.DESCRIPTOR.full_name}, "
            f"subject={self.subject!r}, registry={self.registry!r})"
        )


def _check_protobuf(client: Any, schema: Any) -> Any:
    if schema.schema_type != "PROTOBUF":
        raise ConfigError(
            f"the registry holds a {schema.schema_type or 'AVRO'} schema where a Protobuf one "
            "was expected; use the format that matches the topic's schema type",
            option="format",
        )
    return schema


class ConfluentProtobufDeserializationSchema(ProtobufDeserializationSchema):
    """Reads wire-format records into ``message_class`` (or dicts, ``output="dict"``).

    The message indexes of every record must name ``message_class``'s place in its file;
    a record of another message type raises ``DeserializationError``. With registry
    settings, each schema id is also checked once to be a Protobuf schema the registry
    knows; without, the id is not looked up (the class already says how to read).
    """

    format_name = FORMAT

    def __init__(
        self,
        message_class: Any,
        *,
        output: Literal["message", "dict"] = "message",
        schema_registry_url: str | None = None,
        schema_registry_conf: Mapping[str, Any] | None = None,
        schema_registry_client: Any = None,
    ) -> None:
        super().__init__(message_class, output)
        self.expected_indexes = message_indexes(self.message_class.DESCRIPTOR)
        self._indexes_bytes = encode_message_indexes(self.expected_indexes)
        if schema_registry_url or schema_registry_client or schema_registry_conf:
            self.registry: RegistrySettings | None = RegistrySettings.from_options(
                schema_registry_url, schema_registry_conf, schema_registry_client
            )
            self._schemas: SchemaCache | None = SchemaCache(FORMAT, self.registry, _check_protobuf)
        else:
            self.registry = None
            self._schemas = None

    def deserialize(self, message: bytes) -> Any:
        if not isinstance(message, BYTES_LIKE):
            raise not_bytes_error(FORMAT, message)
        data = bytes(message)
        schema_id = read_header(FORMAT, data)
        if self._schemas is not None:
            self._schemas.get(schema_id, data)
        indexes, start = decode_message_indexes(FORMAT, data, HEADER_SIZE)
        if indexes != self.expected_indexes:
            raise DeserializationError(
                f"the record holds the message at index path {indexes} of its schema, but "
                f"message_class {self.message_class.DESCRIPTOR.full_name} is at "
                f"{self.expected_indexes}",
                format=FORMAT,
                data=data,
            )
        return self.parse(data, start)

    def deserialize_batch(self, messages: Sequence[bytes]) -> list[Any]:
        # Fast path: every record carries the expected index bytes right after the header,
        # so the payload offset is fixed; anything else goes through the careful path.
        prefix_end = HEADER_SIZE + len(self._indexes_bytes)
        index_bytes = self._indexes_bytes
        from_string = self.message_class.FromString
        schemas = self._schemas
        parsed = []
        try:
            for m in messages:
                if m[0] != MAGIC_BYTE or m[HEADER_SIZE:prefix_end] != index_bytes:
                    raise ValueError("unexpected prefix")
                if schemas is not None:
                    schemas.get(int.from_bytes(m[1:HEADER_SIZE], "big"), m)
                parsed.append(from_string(memoryview(m)[prefix_end:]))
        except (*_DECODE_ERRORS, DeserializationError):
            return deserialize_each(self.deserialize, messages)
        if self.output == "dict":
            return [self._convert(p) for p in parsed]
        return parsed

    def __repr__(self) -> str:
        return (
            f"ConfluentProtobufDeserializationSchema({self.message_class.DESCRIPTOR.full_name}, "
            f"registry={self.registry!r})"
        )
