"""Turning Kafka records into stream elements (Flink's ``KafkaRecordDeserializationSchema``).

Two shapes:

* value-only: a ``DeserializationSchema`` (or a confluent-kafka ``Deserializer``) reads each
  record's value. The reader hands it a whole batch of values at once, so a schema with a
  bulk ``deserialize_batch`` runs with no per-record Python overhead in the source.
  Records with a null value (tombstones) carry nothing to deserialize and are dropped.
* whole-record: a subclass (or ``KafkaRecordDeserializationSchema.of(fn)``) receives a
  ``KafkaRecord`` with key, value, headers, topic, partition, offset, timestamp and
  timestamp type, and returns the element (or None to drop the record).

An exception from either marks the record as bad; the source's bad-record policy decides
what happens next (fail the job, skip and count, or a dead-letter topic).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import attrs
from confluent_kafka import Message
from confluent_kafka.serialization import Deserializer, MessageField, SerializationContext

from streamplug.api.serde import DeserializationSchema

T = TypeVar("T")

__all__ = ["KafkaRecord", "KafkaRecordDeserializationSchema", "TimestampType"]


class TimestampType(enum.IntEnum):
    """How a record's timestamp was set (Kafka's ``TimestampType``)."""

    NO_TIMESTAMP_TYPE = 0
    CREATE_TIME = 1
    LOG_APPEND_TIME = 2


Headers = tuple[tuple[str, bytes | None], ...]


@attrs.frozen(slots=True)
class KafkaRecord:
    """Everything a Kafka record carries, as a whole-record deserializer sees it."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    timestamp_type: TimestampType
    key: bytes | None
    value: bytes | None
    headers: Headers = ()

    @classmethod
    def from_message(cls, message: Message) -> KafkaRecord:
        ts_type, ts = message.timestamp()
        headers = message.headers()
        return cls(
            message.topic() or "",
            message.partition() or 0,
            message.offset() or 0,
            ts,
            TimestampType(ts_type),
            message.key(),
            message.value(),
            _headers(headers),
        )

    def header(self, name: str) -> bytes | None:
        """The last value of header ``name``, or None."""
        for key, value in reversed(self.headers):
            if key == name:
                return value
        return None


def _headers(raw: Any) -> Headers:
    if not raw:
        return ()
    pairs = raw.items() if isinstance(raw, dict) else raw
    return tuple((k, v.encode() if isinstance(v, str) else v) for k, v in pairs)


class KafkaRecordDeserializationSchema(ABC, Generic[T]):
    """Reads whole Kafka records. Subclass it, or use one of the factories."""

    def open(self) -> None:
        """Called once per reader, on the reader's thread, before the first record."""

    @abstractmethod
    def deserialize(self, record: KafkaRecord) -> T | None:
        """The element for ``record``; None drops the record. Raise for bad input."""

    @property
    def format_name(self) -> str:
        """Names the format in error messages."""
        return type(self).__name__

    # -- factories -----------------------------------------------------------------------

    @staticmethod
    def value_only(
        schema: DeserializationSchema[Any] | Deserializer,
    ) -> KafkaRecordDeserializationSchema[Any]:
        """Deserialize only the value with ``schema``: a streamplug ``DeserializationSchema``
        or a confluent-kafka ``Deserializer`` (e.g. ``StringDeserializer()``, a Schema
        Registry ``AvroDeserializer``)."""
        if isinstance(schema, DeserializationSchema):
            return ValueOnlyDeserializationSchema(schema)
        if isinstance(schema, Deserializer) or callable(schema):
            return ValueOnlyDeserializationSchema(_ConfluentDeserializerSchema(schema))
        raise TypeError(
            f"value_only() takes a DeserializationSchema or a confluent_kafka Deserializer, "
            f"got {type(schema).__name__}"
        )

    @staticmethod
    def of(fn: Callable[[KafkaRecord], T | None]) -> KafkaRecordDeserializationSchema[T]:
        """A whole-record schema from a function of the ``KafkaRecord``."""
        return _FunctionRecordSchema(fn)


class _FunctionRecordSchema(KafkaRecordDeserializationSchema[T]):
    def __init__(self, fn: Callable[[KafkaRecord], T | None]) -> None:
        self._fn = fn

    def deserialize(self, record: KafkaRecord) -> T | None:
        return self._fn(record)

    @property
    def format_name(self) -> str:
        return getattr(self._fn, "__name__", "record function")


class _ConfluentDeserializerSchema(DeserializationSchema[Any]):
    """Adapts a confluent-kafka ``Deserializer`` (which wants a serialization context)."""

    def __init__(self, deserializer: Deserializer | Callable[..., Any]) -> None:
        self.deserializer = deserializer

    def deserialize(self, message: bytes) -> Any:
        return self.deserializer(message, None)

    def deserialize_for_topic(self, topic: str, values: Sequence[bytes]) -> list[Any]:
        ctx = SerializationContext(topic, MessageField.VALUE)
        deserialize = self.deserializer
        return [deserialize(v, ctx) for v in values]


class ValueOnlyDeserializationSchema(KafkaRecordDeserializationSchema[T]):
    """Reads each record's value with a ``DeserializationSchema`` (the batch fast path)."""

    def __init__(self, schema: DeserializationSchema[T]) -> None:
        self.schema = schema

    def open(self) -> None:
        self.schema.open()

    @property
    def format_name(self) -> str:
        inner = self.schema
        if isinstance(inner, _ConfluentDeserializerSchema):
            return type(inner.deserializer).__name__
        return type(inner).__name__

    def deserialize(self, record: KafkaRecord) -> T | None:
        if record.value is None:
            return None
        return self.deserialize_value(record.topic, record.value)

    def deserialize_value(self, topic: str, value: bytes) -> T:
        """One value, through the schema's own single-record path (precise errors)."""
        schema = self.schema
        if isinstance(schema, _ConfluentDeserializerSchema):
            return schema.deserialize_for_topic(topic, [value])[0]
        return schema.deserialize(value)

    def deserialize_values(self, topic: str, values: list[bytes]) -> list[T]:
        """Deserialize the values of one partition's records in one call."""
        schema = self.schema
        if isinstance(schema, _ConfluentDeserializerSchema):
            return schema.deserialize_for_topic(topic, values)
        return schema.deserialize_batch(values)
