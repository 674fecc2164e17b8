"""Adapters between streamplug schemas and ``confluent_kafka`` serializers.

``confluent_kafka``'s ``Serializer``/``Deserializer`` objects (its ``StringSerializer``,
registry ``AvroSerializer``, ``ProtobufDeserializer``, ``JSONSerializer``...) take a
``SerializationContext`` (topic, key or value, headers); streamplug schemas take bytes
only. ``from_confluent_*`` fixes the context at construction so a Kafka-native serializer
can be used wherever a streamplug schema is expected; ``to_confluent_*`` goes the other
way, for code that hands a streamplug schema to a plain ``confluent_kafka`` Producer or
Consumer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from streamplug.api.serde import DeserializationError, DeserializationSchema, SerializationSchema
from streamplug_serde._util import BYTES_LIKE, SerializationError, deserialize_each, not_bytes_error

__all__ = [
    "ConfluentDeserializerSchema",
    "ConfluentSerializerSchema",
    "to_confluent_deserializer",
    "to_confluent_serializer",
]


def _context(topic: str, field: Literal["key", "value"], headers: Any) -> Any:
    from confluent_kafka.serialization import MessageField, SerializationContext

    if field not in ("key", "value"):
        from streamplug.errors import ConfigError

        raise ConfigError(f"field must be 'key' or 'value', got {field!r}", option="field")
    kind = MessageField.KEY if field == "key" else MessageField.VALUE
    return SerializationContext(topic, kind, headers)


def _name(obj: object) -> str:
    return f"confluent:{type(obj).__name__}"


class ConfluentSerializerSchema(SerializationSchema[Any]):
    """A ``confluent_kafka.serialization.Serializer`` used as a streamplug schema.

    ``topic`` and ``field`` form the ``SerializationContext`` every call gets (the topic
    name strategy of registry serializers needs them); ``headers`` too, when given.
    """

    def __init__(
        self,
        serializer: Any,
        topic: str,
        field: Literal["key", "value"] = "value",
        headers: Mapping[str, bytes] | Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        self.serializer = serializer
        self.topic = topic
        self.field = field
        self._ctx = _context(topic, field, headers)
        self.format_name = _name(serializer)

    def serialize(self, element: Any) -> bytes:
        try:
            data = self.serializer(element, self._ctx)
        except Exception as exc:
            raise SerializationError(
                f"{type(exc).__name__}: {exc}", format=self.format_name, element=element
            ) from exc
        if data is None:
            raise SerializationError(
                "the serializer returned None", format=self.format_name, element=element
            )
        return bytes(data)

    def __repr__(self) -> str:
        inner = type(self.serializer).__name__
        return f"ConfluentSerializerSchema({inner}, topic={self.topic!r}, field={self.field!r})"


class ConfluentDeserializerSchema(DeserializationSchema[Any]):
    """A ``confluent_kafka.serialization.Deserializer`` used as a streamplug schema. Any
    exception it raises becomes ``DeserializationError``, and so does a ``None`` result
    (confluent's deserializers return None for a null value)."""

    def __init__(
        self,
        deserializer: Any,
        topic: str,
        field: Literal["key", "value"] = "value",
        headers: Mapping[str, bytes] | Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        self.deserializer = deserializer
        self.topic = topic
        self.field = field
        self._ctx = _context(topic, field, headers)
        self.format_name = _name(deserializer)

    def deserialize(self, message: bytes) -> Any:
        if not isinstance(message, BYTES_LIKE):
            raise not_bytes_error(self.format_name, message)
        data = bytes(message)
        try:
            value = self.deserializer(data, self._ctx)
        except Exception as exc:
            raise DeserializationError(
                f"{type(exc).__name__}: {exc}", format=self.format_name, data=data
            ) from exc
        if value is None:
            raise DeserializationError(
                "the deserializer returned None", format=self.format_name, data=data
            )
        return value

    def deserialize_batch(self, messages: Sequence[bytes]) -> list[Any]:
        return deserialize_each(self.deserialize, messages)

    def __repr__(self) -> str:
        inner = type(self.deserializer).__name__
        return f"ConfluentDeserializerSchema({inner}, topic={self.topic!r}, field={self.field!r})"


def to_confluent_serializer(schema: SerializationSchema[Any]) -> Any:
    """A ``confluent_kafka.serialization.Serializer`` calling ``schema.serialize``; the
    context is ignored. ``None`` stays ``None`` (a tombstone), as confluent's own do."""
    from confluent_kafka.serialization import Serializer

    class _StreamplugSerializer(Serializer):
        def __init__(self) -> None:
            self.schema = schema
            schema.open()

        def __call__(self, obj: Any, ctx: Any = None) -> bytes | None:
            if obj is None:
                return None
            return schema.serialize(obj)

        def __repr__(self) -> str:
            return f"to_confluent_serializer({schema!r})"

    return _StreamplugSerializer()


def to_confluent_deserializer(schema: DeserializationSchema[Any]) -> Any:
    """A ``confluent_kafka.serialization.Deserializer`` calling ``schema.deserialize``;
    ``None`` (a null value) stays ``None``, and bad bytes raise ``DeserializationError``."""
    from confluent_kafka.serialization import Deserializer

    class _StreamplugDeserializer(Deserializer):
        def __init__(self) -> None:
            self.schema = schema
            schema.open()

        def __call__(self, value: bytes | None, ctx: Any = None) -> Any:
            if value is None:
                return None
            return schema.deserialize(value)

        def __repr__(self) -> str:
            return f"to_confluent_deserializer({schema!r})"

    return _StreamplugDeserializer()
