"""Turning stream elements into Kafka records (Flink's ``KafkaRecordSerializationSchema``).

Build one with ``KafkaRecordSerializationSchema.builder()``::

    schema = (
        KafkaRecordSerializationSchema.builder()
        .set_topic("orders-out")
        .set_value_serialization_schema(SimpleStringSchema())
        .build()
    )

or implement ``KafkaRecordSerializationSchema.serialize`` for full control.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import attrs
from confluent_kafka.serialization import MessageField, SerializationContext

from streamplug.api.serde import SerializationSchema
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
        if self._value is None and self._kafka_value is None:
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
        self._context: KafkaSinkContext | None = None

    def __repr__(self) -> str:
        target = self.topic if self.topic is not None else "<selector>"
        return f"KafkaRecordSerializationSchema(topic={target!r}, partitioner={self.partitioner!r})"

    @property
    def fixed_topic_value_only(self) -> bool:
        """True when a record is just (fixed topic, serialized value): the writer then
        skips everything else per record."""
        return (
            self.topic is not None
            and self.value is not None
            and self.key is None
            and self.kafka_key is None
            and self.partitioner is None
            and self.headers is None
            and self.timestamp is None
        )

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
        headers = self.headers(element) if self.headers is not None else None
        value: bytes | None
        key: bytes | None
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
