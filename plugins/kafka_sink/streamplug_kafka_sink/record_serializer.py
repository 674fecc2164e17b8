"""Turning stream elements into Kafka records (Flink's ``KafkaRecordSerializationSchema``).

Build one with ``KafkaRecordSerializationSchema.builder()``::

    schema = (
        KafkaRecordSerializationSchema.builder()
        .set_topic("orders-out")
        .set_value_serialization_schema(SimpleStringSchema())
        .build()
    )

For keyed streams whose elements are ``(key, value)`` tuples (what the source's
``KafkaRecordDeserializationSchema.key_value`` yields), give both schemas at once; keys and
values are then serialized batch by batch and produced with no object per record::

    schema = (
        KafkaRecordSerializationSchema.builder()
        .set_topic("orders-out")
        .set_key_value_serialization_schemas(SimpleStringSchema(), JsonRowSchema())
        .build()
    )

or implement ``KafkaRecordSerializationSchema.serialize`` for full control.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any, Generic, TypeVar

import attrs
from confluent_kafka.serialization import MessageField, SerializationContext, Serializer

from streamplug.api.serde import SerializationSchema, map_present
from streamplug.errors import ConfigError
from streamplug_kafka_sink.partitioner import KafkaPartitioner, PartitionFunction, partitioner_from

__all__ = [
    "KafkaRecordSerializationSchema",
    "KafkaRecordSerializationSchemaBuilder",
    "KafkaSinkContext",
    "ProducerRecord",
]

T = TypeVar("T")

Headers = Sequence[tuple[str, bytes | None]] | Mapping[str, bytes | None]


@attrs.frozen
class ProducerRecord:
    """One record to produce. ``partition`` None lets the producer's partitioner decide;
    ``timestamp`` None lets the producer stamp the current time."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    partition: int | None = None
    timestamp: int | None = None
    headers: Headers | None = None

    def __attrs_post_init__(self) -> None:
        if not self.topic:
            raise ValueError("a ProducerRecord needs a topic")


@attrs.frozen
class KafkaSinkContext:
    """What a serialization schema learns about the writer it serves."""

    subtask_index: int
    parallelism: int
    partitions_for: Callable[[str], Sequence[int]]
    """Sorted partition ids of a topic, from the producer's (cached) metadata."""


class KafkaRecordSerializationSchema(ABC, Generic[T]):
    """Serializes an element into a ``ProducerRecord``.

    Lifecycle: each writer subtask works on its own shallow copy; ``open`` is called on it
    once, on the subtask's thread, before the first ``serialize``; ``serialize`` is then
    only called on that thread.
    """

    @staticmethod
    def builder() -> KafkaRecordSerializationSchemaBuilder[Any]:
        return KafkaRecordSerializationSchemaBuilder()

    def open(self, context: KafkaSinkContext) -> None:
        """Called once per writer subtask before the first ``serialize``."""

    @abstractmethod
    def serialize(
        self, element: T, context: KafkaSinkContext, timestamp: int | None
    ) -> ProducerRecord | None:
        """The record for ``element`` (``timestamp`` is its event time when known), or
        None to write nothing for it."""

    def for_subtask(self) -> KafkaRecordSerializationSchema[T]:
        """The copy a writer subtask uses (see the class docstring)."""
        return copy.copy(self)


ValueSerializer = Callable[[Any], bytes | None]


def _from_schema(
    schema: SerializationSchema[Any] | Callable[[Any], bytes], what: str
) -> SerializationSchema[Any]:
    if isinstance(schema, SerializationSchema):
        return schema
    if callable(schema):
        return _FunctionSchema(schema)
    raise ConfigError(
        f"{what} serialization schema {schema!r} is not a SerializationSchema or a function",
        option=f"{what}.serialization",
    )


class _FunctionSchema(SerializationSchema[Any]):
    def __init__(self, fn: Callable[[Any], bytes]) -> None:
        self.fn = fn

    def serialize(self, element: Any) -> bytes:
        return self.fn(element)

    def serialize_batch(self, elements: Sequence[Any]) -> list[bytes]:
        return list(map(self.fn, elements))


class _KafkaSerializerAdapter(SerializationSchema[Any]):
    """A confluent_kafka serializer (``serializer(obj, SerializationContext)``) as a schema
    bound to a topic: Schema Registry serializers need the topic for their subject name."""

    def __init__(
        self, serializer: Callable[[Any, SerializationContext], bytes | None], field: str
    ) -> None:
        self.serializer = serializer
        self.field = MessageField.KEY if field == "key" else MessageField.VALUE

    def serialize_for(self, element: Any, topic: str, headers: Any) -> bytes | None:
        return self.serializer(element, SerializationContext(topic, self.field, headers))

    def serialize(self, element: Any) -> bytes:  # pragma: no cover - serialize_for is used
        raise TypeError("a Kafka serializer needs the topic: use serialize_for")


class _Column:
    """Serializes one column (keys or values) of ``(key, value)`` elements with one schema:
    a streamplug ``SerializationSchema``, a function of the element, a confluent-kafka
    ``Serializer`` (called with the record's topic), or None for bytes as they are."""

    def __init__(self, schema: Any, field: str) -> None:
        self.field = field
        self.schema: SerializationSchema[Any] | None = None
        self.kafka: _KafkaSerializerAdapter | None = None
        if schema is None:
            pass
        elif isinstance(schema, SerializationSchema):
            self.schema = schema
        elif isinstance(schema, Serializer):
            self.kafka = _KafkaSerializerAdapter(schema, field)
        elif callable(schema):
            self.schema = _FunctionSchema(schema)
        else:
            raise ConfigError(
                f"{field} serialization schema {schema!r} is not a SerializationSchema, a "
                "confluent_kafka Serializer, a function or None",
                option=f"{field}.serialization",
            )
        self.raw = self.schema is None and self.kafka is None

    def __repr__(self) -> str:
        inner = self.schema if self.schema is not None else self.kafka
        return "bytes" if inner is None else type(inner).__name__

    def open(self) -> None:
        if self.schema is not None:
            self.schema.open()

    def one(self, item: Any, topic: str, headers: Any) -> bytes | None:
        if item is None or self.raw:
            return item
        if self.schema is not None:
            return self.schema.serialize(item)
        return self.kafka.serialize_for(item, topic, headers)  # type: ignore[union-attr]

    def batch(self, items: list[Any], topic: str) -> list[Any]:
        """The column serialized in order, None kept (a record without key, a tombstone)."""
        if self.raw:
            return items
        if self.schema is not None:
            return map_present(self.schema.serialize_batch, items)
        kafka = self.kafka
        assert kafka is not None
        return map_present(lambda xs: [kafka.serialize_for(x, topic, None) for x in xs], items)


_first = itemgetter(0)
_second = itemgetter(1)


class KafkaRecordSerializationSchemaBuilder(Generic[T]):
    """Builds the usual schema: a topic (fixed or chosen per element), a value serializer,
    optionally a key serializer, a partitioner, headers and a timestamp from the element.

    Validation happens in ``build()`` and names the call that is missing.
    """

    def __init__(self) -> None:
        self._topic: str | None = None
        self._topic_selector: Callable[[Any], str] | None = None
        self._value: SerializationSchema[Any] | None = None
        self._key: SerializationSchema[Any] | None = None
        self._kafka_value: _KafkaSerializerAdapter | None = None
        self._kafka_key: _KafkaSerializerAdapter | None = None
        self._partitioner: KafkaPartitioner | None = None
        self._headers: Callable[[Any], Headers | None] | None = None
        self._timestamp: Callable[[Any], int | None] | None = None
        self._key_value: tuple[_Column, _Column] | None = None
        self._element_headers = False

    def set_topic(self, topic: str) -> KafkaRecordSerializationSchemaBuilder[T]:
        if not isinstance(topic, str) or not topic:
            raise ConfigError(f"topic must be a non-empty string, got {topic!r}", option="topic")
        self._topic = topic
        return self

    def set_topic_selector(
        self, selector: Callable[[Any], str]
    ) -> KafkaRecordSerializationSchemaBuilder[T]:
        """``selector(element) -> topic`` picks the topic per element."""
        if not callable(selector):
            raise ConfigError(f"topic selector {selector!r} is not callable", option="topic")
        self._topic_selector = selector
        return self

    def set_value_serialization_schema(
        self, schema: SerializationSchema[Any] | Callable[[Any], bytes]
    ) -> KafkaRecordSerializationSchemaBuilder[T]:
        self._value = _from_schema(schema, "value")
        return self

    def set_key_serialization_schema(
        self, schema: SerializationSchema[Any] | Callable[[Any], bytes]
    ) -> KafkaRecordSerializationSchemaBuilder[T]:
        self._key = _from_schema(schema, "key")
        return self

    def set_key_value_serialization_schemas(
        self,
        key_schema: SerializationSchema[Any] | Serializer | Callable[[Any], bytes] | None,
        value_schema: SerializationSchema[Any] | Serializer | Callable[[Any], bytes] | None,
        *,
        include_headers: bool = False,
    ) -> KafkaRecordSerializationSchemaBuilder[T]:
        """Elements are ``(key, value)`` tuples (``(key, value, headers)`` with
        ``include_headers``): the key is serialized with ``key_schema``, the value with
        ``value_schema``, each a ``SerializationSchema``, a confluent-kafka ``Serializer``, a
        function, or None for elements that are bytes already. A None key writes a record
        without key, a None value a tombstone; neither reaches its schema.

        With a fixed topic and no partitioner, header provider or timestamp extractor, a
        batch's keys and values each go through one ``serialize_batch`` call and straight to
        the producer. The record timestamp is the element's event time (the source
        record's timestamp), as for any element."""
        self._key_value = (_Column(key_schema, "key"), _Column(value_schema, "value"))
        self._element_headers = include_headers
        return self

    def set_kafka_value_serializer(
        self, serializer: Callable[[Any, SerializationContext], bytes | None]
    ) -> KafkaRecordSerializationSchemaBuilder[T]:
        """A ``confluent_kafka.serialization.Serializer`` (Avro, JSON Schema, Protobuf with
        Schema Registry, StringSerializer...), called with the record's topic."""
        if not callable(serializer):
            raise ConfigError(
                f"Kafka value serializer {serializer!r} is not callable", option="value.serializer"
            )
        self._kafka_value = _KafkaSerializerAdapter(serializer, "value")
        return self

    def set_kafka_key_serializer(
        self, serializer: Callable[[Any, SerializationContext], bytes | None]
    ) -> KafkaRecordSerializationSchemaBuilder[T]:
        if not callable(serializer):
            raise ConfigError(
                f"Kafka key serializer {serializer!r} is not callable", option="key.serializer"
            )
        self._kafka_key = _KafkaSerializerAdapter(serializer, "key")
        return self

    def set_partitioner(
        self, partitioner: KafkaPartitioner | PartitionFunction | str, plugin_host: Any = None
    ) -> KafkaRecordSerializationSchemaBuilder[T]:
        """A ``KafkaPartitioner``, a function ``fn(record, key, value, topic, partitions)``,
        or the name of a registered partitioner (``"fixed"``, ``"round-robin"``...)."""
        self._partitioner = partitioner_from(partitioner, plugin_host)
        return self

    def set_header_provider(
        self, provider: Callable[[Any], Headers | None]
    ) -> KafkaRecordSerializationSchemaBuilder[T]:
        """``provider(element)`` returns the record's headers: a mapping or (name, bytes) pairs."""
        if not callable(provider):
            raise ConfigError(f"header provider {provider!r} is not callable", option="headers")
        self._headers = provider
        return self

    def set_timestamp_extractor(
        self, extractor: Callable[[Any], int | None]
    ) -> KafkaRecordSerializationSchemaBuilder[T]:
        """``extractor(element)`` returns the record timestamp (epoch ms). Without one the
        element's event time is used when the stream carries it."""
        if not callable(extractor):
            raise ConfigError(
                f"timestamp extractor {extractor!r} is not callable", option="timestamp"
            )
        self._timestamp = extractor
        return self

    def build(self) -> KafkaRecordSerializationSchema[T]:
        if self._topic is None and self._topic_selector is None:
            raise ConfigError(
                "no topic: call set_topic(name) or set_topic_selector(fn)", option="topic"
            )
        if self._topic is not None and self._topic_selector is not None:
            raise ConfigError(
                "both set_topic and set_topic_selector were called: use one of them", option="topic"
            )
        if self._key_value is not None:
            given = [
                name
                for name, value in (
                    ("set_value_serialization_schema", self._value),
                    ("set_kafka_value_serializer", self._kafka_value),
                    ("set_key_serialization_schema", self._key),
                    ("set_kafka_key_serializer", self._kafka_key),
                )
                if value is not None
            ]
            if given:
                raise ConfigError(
                    f"set_key_value_serialization_schemas serializes (key, value) elements and "
                    f"cannot be combined with {', '.join(given)}: use one or the other",
                    option="key.serialization",
                )
            if self._element_headers and self._headers is not None:
                raise ConfigError(
                    "headers come from the elements (include_headers=True) and from "
                    "set_header_provider: use one of them",
                    option="headers",
                )
        elif self._value is None and self._kafka_value is None:
            raise ConfigError(
                "no value serializer: call set_value_serialization_schema(schema) or "
                "set_kafka_value_serializer(serializer)",
                option="value.serialization",
            )
        if self._value is not None and self._kafka_value is not None:
            raise ConfigError(
                "both set_value_serialization_schema and set_kafka_value_serializer were called: "
                "use one",
                option="value.serialization",
            )
        if self._key is not None and self._kafka_key is not None:
            raise ConfigError(
                "both set_key_serialization_schema and set_kafka_key_serializer were called: use "
                "one",
                option="key.serialization",
            )
        return _BuiltSchema(
            topic=self._topic,
            topic_selector=self._topic_selector,
            value=self._value,
            key=self._key,
            kafka_value=self._kafka_value,
            kafka_key=self._kafka_key,
            partitioner=self._partitioner,
            headers=self._headers,
            timestamp=self._timestamp,
            key_value=self._key_value,
            element_headers=self._element_headers,
        )


# The writer's hot path: (topic, value, key, partition, timestamp, headers) tuples, where
# partition -1 means "let the producer decide" and timestamp 0 means "now" (librdkafka's
# conventions), so nothing per record allocates more than one tuple.
RecordTuple = tuple[str, "bytes | None", "bytes | None", int, int, Any]


class _BuiltSchema(KafkaRecordSerializationSchema[Any]):
    def __init__(
        self,
        *,
        topic: str | None,
        topic_selector: Callable[[Any], str] | None,
        value: SerializationSchema[Any] | None,
        key: SerializationSchema[Any] | None,
        kafka_value: _KafkaSerializerAdapter | None,
        kafka_key: _KafkaSerializerAdapter | None,
        partitioner: KafkaPartitioner | None,
        headers: Callable[[Any], Headers | None] | None,
        timestamp: Callable[[Any], int | None] | None,
        key_value: tuple[_Column, _Column] | None = None,
        element_headers: bool = False,
    ) -> None:
        self.topic = topic
        self.topic_selector = topic_selector
        self.value = value
        self.key = key
        self.kafka_value = kafka_value
        self.kafka_key = kafka_key
        self.partitioner = partitioner
        self.headers = headers
        self.timestamp = timestamp
        self.key_value = key_value
        self.element_headers = element_headers
        self._context: KafkaSinkContext | None = None

    def __repr__(self) -> str:
        target = self.topic if self.topic is not None else "<selector>"
        return f"KafkaRecordSerializationSchema(topic={target!r}, partitioner={self.partitioner!r})"

    @property
    def fixed_topic_value_only(self) -> bool:
        """True when a record is just (fixed topic, serialized value), or (fixed topic,
        serialized value, key serialized from the whole element by a streamplug schema):
        the writer then serializes the batch in bulk and skips everything else per record."""
        return (
            self.topic is not None
            and self.value is not None
            and self.kafka_key is None
            and self.key_value is None
            and self.partitioner is None
            and self.headers is None
            and self.timestamp is None
        )

    @property
    def fixed_topic_key_value(self) -> bool:
        """True when elements are (key, value) pairs for one fixed topic with nothing else
        per record: the writer then serializes both columns in bulk."""
        return (
            self.topic is not None
            and self.key_value is not None
            and not self.element_headers
            and self.partitioner is None
            and self.headers is None
            and self.timestamp is None
        )

    def key_value_columns(self, elements: Sequence[Any]) -> tuple[list[Any], list[Any]]:
        """Keys and values of a batch of (key, value) elements, each serialized in one
        call (see ``fixed_topic_key_value``)."""
        assert self.key_value is not None and self.topic is not None
        key_column, value_column = self.key_value
        # Elements of a stream share a shape: checking the ends catches a stream that was
        # not mapped to pairs without a step per record (a str would split into letters).
        if elements and not (_is_pair(elements[0]) and _is_pair(elements[-1])):
            raise _not_a_pair(elements[0] if not _is_pair(elements[0]) else elements[-1])
        try:
            keys = list(map(_first, elements))
            values = list(map(_second, elements))
        except (TypeError, IndexError, KeyError):
            bad = next(e for e in elements if not _is_pair(e))
            raise _not_a_pair(bad) from None
        return key_column.batch(keys, self.topic), value_column.batch(values, self.topic)

    def for_subtask(self) -> _BuiltSchema:
        mine = copy.copy(self)
        # Partitioners keep per-subtask state (round robin position, fixed index).
        mine.partitioner = copy.deepcopy(self.partitioner)
        return mine

    def open(self, context: KafkaSinkContext) -> None:
        self._context = context
        for schema in (self.value, self.key):
            if schema is not None:
                schema.open()
        if self.key_value is not None:
            for column in self.key_value:
                column.open()
        if self.partitioner is not None:
            self.partitioner.open(context.subtask_index, context.parallelism)

    def serialize(
        self, element: Any, context: KafkaSinkContext, timestamp: int | None
    ) -> ProducerRecord | None:
        topic, value, key, partition, ts, headers = self.to_tuple(element, timestamp, context)
        return ProducerRecord(
            topic,
            value,
            key,
            None if partition < 0 else partition,
            ts or None,
            headers,
        )

    def to_tuple(
        self, element: Any, timestamp: int | None, context: KafkaSinkContext | None = None
    ) -> RecordTuple:
        ctx = context or self._context
        if ctx is None:
            raise RuntimeError("KafkaRecordSerializationSchema used before open()")
        topic = self.topic if self.topic is not None else self.topic_selector(element)  # type: ignore[misc]
        if not topic:
            raise ValueError(
                f"the topic selector returned {topic!r} for an element; it must name a topic"
            )
        value: bytes | None
        key: bytes | None
        if self.key_value is not None:
            if not _is_pair(element, 3 if self.element_headers else 2):
                raise _not_a_pair(element, self.element_headers)
            if self.element_headers:
                headers = element[2]
            else:
                headers = self.headers(element) if self.headers is not None else None
            key_column, value_column = self.key_value
            key = key_column.one(element[0], topic, headers)
            value = value_column.one(element[1], topic, headers)
            return self._finish(element, topic, key, value, headers, timestamp, ctx)
        headers = self.headers(element) if self.headers is not None else None
        if self.value is not None:
            value = self.value.serialize(element)
        else:
            value = self.kafka_value.serialize_for(element, topic, headers)  # type: ignore[union-attr]
        if self.key is not None:
            key = self.key.serialize(element)
        elif self.kafka_key is not None:
            key = self.kafka_key.serialize_for(element, topic, headers)
        else:
            key = None
        return self._finish(element, topic, key, value, headers, timestamp, ctx)

    def _finish(
        self,
        element: Any,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Any,
        timestamp: int | None,
        ctx: KafkaSinkContext,
    ) -> RecordTuple:
        partition = -1
        if self.partitioner is not None:
            chosen = self.partitioner.partition(
                element, key, value, topic, ctx.partitions_for(topic)
            )
            if chosen is not None:
                partition = chosen
        if self.timestamp is not None:
            timestamp = self.timestamp(element)
        ts = timestamp if timestamp is not None and timestamp > 0 else 0
        return topic, value, key, partition, ts, headers

    def to_tuples(
        self, elements: Iterable[Any], timestamps: Sequence[int] | None
    ) -> list[RecordTuple]:
        ctx = self._context
        if timestamps is None:
            return [self.to_tuple(e, None, ctx) for e in elements]
        return [self.to_tuple(e, t, ctx) for e, t in zip(elements, timestamps, strict=True)]


def _is_pair(element: Any, size: int = 2) -> bool:
    return isinstance(element, (tuple, list)) and len(element) == size


def _not_a_pair(element: Any, with_headers: bool = False) -> TypeError:
    shape = "(key, value, headers)" if with_headers else "(key, value)"
    return TypeError(
        f"set_key_value_serialization_schemas expects {shape} tuples, got "
        f"{type(element).__name__} {element!r:.80}; map the stream to {shape} tuples before "
        "the sink, or use set_value_serialization_schema for whole elements"
    )
