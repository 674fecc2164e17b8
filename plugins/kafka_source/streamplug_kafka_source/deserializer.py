"""Turning Kafka records into stream elements (Flink's ``KafkaRecordDeserializationSchema``).

Three shapes:

* value-only: a ``DeserializationSchema`` (or a confluent-kafka ``Deserializer``) reads each
  record's value. The reader hands it a whole batch of values at once, so a schema with a
  bulk ``deserialize_batch`` runs with no per-record Python overhead in the source.
  Records with a null value (tombstones) carry nothing to deserialize and are dropped.
* key and value: ``KafkaRecordDeserializationSchema.key_value(key_schema, value_schema)``
  yields ``(key, value)`` tuples (``(key, value, timestamp, headers)`` with the extras
  asked for). Keys and values are read column by column through each schema's
  ``deserialize_batch``, with no ``KafkaRecord`` per record. Null keys stay None, null
  values (tombstones: deletions in a compacted topic) stay None and are kept.
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
from typing import Any, Generic, NamedTuple, TypeVar

from confluent_kafka import Message
from confluent_kafka.serialization import Deserializer, MessageField, SerializationContext

from streamplug.api.serde import DeserializationError, DeserializationSchema, map_present

T = TypeVar("T")

__all__ = [
    "KafkaRecord",
    "KafkaRecordDeserializationSchema",
    "KeyValueDeserializationSchema",
    "TimestampType",
]


class TimestampType(enum.IntEnum):
    """How a record's timestamp was set (Kafka's ``TimestampType``)."""

    NO_TIMESTAMP_TYPE = 0
    CREATE_TIME = 1
    LOG_APPEND_TIME = 2


Headers = tuple[tuple[str, bytes | None], ...]


class KafkaRecord(NamedTuple):
    """Everything a Kafka record carries, as a whole-record deserializer sees it.

    An immutable named tuple: the reader builds one per record, and a tuple is the
    cheapest immutable object Python can build (about a quarter of what a frozen attrs
    class cost per record). Read its fields by name; ``_replace`` makes a changed copy.
    """

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
        return _new_tuple(
            cls,
            (
                message.topic() or "",
                message.partition() or 0,
                message.offset() or 0,
                ts,
                _TIMESTAMP_TYPES[ts_type],
                message.key(),
                message.value(),
                _headers(headers) if headers else (),
            ),
        )

    def header(self, name: str) -> bytes | None:
        """The last value of header ``name``, or None."""
        for key, value in reversed(self.headers):
            if key == name:
                return value
        return None


_new_tuple = tuple.__new__
# TimestampType by librdkafka's number, without the enum's call machinery (~0.3 us).
_TIMESTAMP_TYPES = tuple(TimestampType)


def records_of(topic: str, partition: int, messages: Sequence[Message]) -> list[KafkaRecord]:
    """One ``KafkaRecord`` per message of one partition's run (topic and partition shared)."""
    new, record, types = _new_tuple, KafkaRecord, _TIMESTAMP_TYPES
    return [
        new(
            record,
            (
                topic,
                partition,
                m.offset(),
                (stamp := m.timestamp())[1],
                types[stamp[0]],
                m.key(),
                m.value(),
                _headers(h) if (h := m.headers()) else (),
            ),
        )
        for m in messages
    ]


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
    def key_value(
        key_schema: DeserializationSchema[Any] | Deserializer | None,
        value_schema: DeserializationSchema[Any] | Deserializer | None,
        *,
        include_timestamp: bool = False,
        include_headers: bool = False,
    ) -> KeyValueDeserializationSchema:
        """Read each record as a ``(key, value)`` tuple, keys and values deserialized batch by
        batch with their schemas (a streamplug ``DeserializationSchema``, a confluent-kafka
        ``Deserializer``, or None for the raw bytes).

        ``include_timestamp`` appends the record timestamp (epoch ms), ``include_headers``
        the headers as ``(name, bytes | None)`` pairs: ``(key, value, timestamp, headers)``
        with both. A null key or value stays None and never reaches its schema.

        >>> from streamplug_serde import SimpleStringSchema
        >>> schema = KafkaRecordDeserializationSchema.key_value(None, SimpleStringSchema())
        >>> schema.deserialize(KafkaRecord("t", 0, 7, 0, TimestampType.CREATE_TIME, b"k", b"v"))
        (b'k', 'v')
        """
        return KeyValueDeserializationSchema(
            key_schema,
            value_schema,
            include_timestamp=include_timestamp,
            include_headers=include_headers,
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
        # The exact class, not isinstance: DeserializationSchema is an ABC, whose
        # isinstance check costs a Python-level call per batch; the adapter is private
        # and never subclassed.
        if type(schema) is _ConfluentDeserializerSchema:
            return schema.deserialize_for_topic(topic, [value])[0]
        return schema.deserialize(value)

    def deserialize_values(self, topic: str, values: list[bytes]) -> list[T]:
        """Deserialize the values of one partition's records in one call."""
        schema = self.schema
        if type(schema) is _ConfluentDeserializerSchema:
            return schema.deserialize_for_topic(topic, values)
        return schema.deserialize_batch(values)


class _Column:
    """Reads one column (the keys or the values) of a partition's records with one schema:
    a streamplug ``DeserializationSchema``, a confluent-kafka ``Deserializer`` (called with
    the topic, which Schema Registry deserializers need for the subject), or None for the
    bytes as they are."""

    def __init__(
        self, schema: DeserializationSchema[Any] | Deserializer | None, field: str
    ) -> None:
        self.field = field
        self.schema: DeserializationSchema[Any] | None = None
        self.confluent: Deserializer | Callable[..., Any] | None = None
        if schema is None:
            pass
        elif isinstance(schema, DeserializationSchema):
            self.schema = schema
        elif isinstance(schema, Deserializer) or callable(schema):
            self.confluent = schema
        else:
            raise TypeError(
                f"key_value() takes a DeserializationSchema, a confluent_kafka Deserializer or "
                f"None as the {field} schema, got {type(schema).__name__}"
            )
        self.raw = self.schema is None and self.confluent is None

    @property
    def name(self) -> str:
        inner = self.schema if self.schema is not None else self.confluent
        return "bytes" if inner is None else type(inner).__name__

    def open(self) -> None:
        if self.schema is not None:
            self.schema.open()

    def one(self, topic: str, data: bytes | None) -> Any:
        if data is None or self.raw:
            return data
        if self.schema is not None:
            return self.schema.deserialize(data)
        field = MessageField.KEY if self.field == "key" else MessageField.VALUE
        return self.confluent(data, SerializationContext(topic, field))  # type: ignore[misc]

    def _batch(self, topic: str, items: list[bytes]) -> list[Any]:
        if self.schema is not None:
            return self.schema.deserialize_batch(items)
        field = MessageField.KEY if self.field == "key" else MessageField.VALUE
        ctx = SerializationContext(topic, field)
        deserialize = self.confluent
        return [deserialize(item, ctx) for item in items]  # type: ignore[misc]

    def batch(self, topic: str, items: list[bytes | None]) -> list[Any]:
        """The column deserialized in order; None stays None. Raises what the schema raises
        (the reader then reads the run record by record to find the bad ones)."""
        if self.raw:
            return items
        return map_present(lambda present: self._batch(topic, present), items)


class KeyValueDeserializationSchema(KafkaRecordDeserializationSchema[tuple[Any, ...]]):
    """Reads records as ``(key, value[, timestamp][, headers])`` tuples, column by column
    (see ``KafkaRecordDeserializationSchema.key_value``)."""

    def __init__(
        self,
        key_schema: DeserializationSchema[Any] | Deserializer | None,
        value_schema: DeserializationSchema[Any] | Deserializer | None,
        *,
        include_timestamp: bool = False,
        include_headers: bool = False,
    ) -> None:
        self.key = _Column(key_schema, "key")
        self.value = _Column(value_schema, "value")
        self.include_timestamp = include_timestamp
        self.include_headers = include_headers

    def open(self) -> None:
        self.key.open()
        self.value.open()

    @property
    def format_name(self) -> str:
        return f"key {self.key.name} / value {self.value.name}"

    def __repr__(self) -> str:
        return (
            f"KafkaRecordDeserializationSchema.key_value({self.key.name}, {self.value.name}, "
            f"include_timestamp={self.include_timestamp}, "
            f"include_headers={self.include_headers})"
        )

    def deserialize(self, record: KafkaRecord) -> tuple[Any, ...]:
        return self.element(
            record.topic, record.key, record.value, record.timestamp, record.headers
        )

    def element(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        timestamp: int,
        headers: Any,
    ) -> tuple[Any, ...]:
        """One record's element, through the schemas' single-record paths (precise errors:
        a key that cannot be read says so)."""
        try:
            k = self.key.one(topic, key)
        except DeserializationError as exc:
            raise DeserializationError(
                f"key: {exc.reason}", format=exc.format, data=exc.data
            ) from exc
        except Exception as exc:
            raise DeserializationError(
                f"key: {type(exc).__name__}: {exc}", format=self.key.name, data=key
            ) from exc
        v = self.value.one(topic, value)
        if self.include_timestamp:
            if self.include_headers:
                return (k, v, timestamp, _headers(headers) if headers else ())
            return (k, v, timestamp)
        if self.include_headers:
            return (k, v, _headers(headers) if headers else ())
        return (k, v)

    def elements(
        self,
        topic: str,
        messages: list[Message],
        timestamps: Sequence[int],
    ) -> list[tuple[Any, ...]]:
        """The elements of one partition's run: each column in one schema call, then the
        tuples zipped together in C. Raises if any record is bad."""
        keys = self.key.batch(topic, list(map(_message_key, messages)))
        values = self.value.batch(topic, list(map(_message_value, messages)))
        if not self.include_timestamp and not self.include_headers:
            return list(zip(keys, values, strict=True))
        columns: list[Any] = [keys, values]
        if self.include_timestamp:
            columns.append(timestamps)
        if self.include_headers:
            columns.append([_headers(h) if h else () for h in map(_message_headers, messages)])
        return list(zip(*columns, strict=True))


_message_key = Message.key
_message_value = Message.value
_message_headers = Message.headers
