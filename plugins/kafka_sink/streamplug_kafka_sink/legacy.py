"""The older connector's producer style, as a deprecated facade over ``KafkaSink``.

``FlinkKafkaProducer("localhost:9092", "topic", SimpleStringSchema())`` (broker list, topic,
schema, optional partitioner) or ``FlinkKafkaProducer("topic", schema, {"bootstrap.servers":
...})`` as PyFlink spells it. New code should use ``KafkaSink.builder()``.
"""

from __future__ import annotations

import enum
import threading
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from streamplug.api.context import SinkContext
from streamplug.api.serde import SerializationSchema
from streamplug.api.sink import Committer, DeliveryGuarantee, Sink, SinkWriter
from streamplug.api.state import StateSerializer
from streamplug.errors import ConfigError
from streamplug_kafka_sink.partitioner import KafkaPartitioner, PartitionFunction
from streamplug_kafka_sink.record_serializer import KafkaRecordSerializationSchema
from streamplug_kafka_sink.sink import KafkaSink
from streamplug_kafka_sink.transaction import KafkaCommittable

__all__ = ["FlinkKafkaProducer", "Semantic"]

_warned = threading.Event()


class Semantic(enum.Enum):
    """The older connector's name for a delivery guarantee."""

    NONE = DeliveryGuarantee.NONE
    AT_LEAST_ONCE = DeliveryGuarantee.AT_LEAST_ONCE
    EXACTLY_ONCE = DeliveryGuarantee.EXACTLY_ONCE


def _warn_once() -> None:
    if not _warned.is_set():
        _warned.set()
        warnings.warn(
            "FlinkKafkaProducer is deprecated: use KafkaSink.builder() (set_bootstrap_servers, "
            "set_record_serializer, set_delivery_guarantee)",
            DeprecationWarning,
            stacklevel=3,
        )


class FlinkKafkaProducer(Sink[KafkaCommittable, Any]):
    """Deprecated: a ``KafkaSink`` configured the old way. Warns once per process.

    Either ``FlinkKafkaProducer(broker_list, topic, serialization_schema,
    custom_partitioner=None)`` or ``FlinkKafkaProducer(topic, serialization_schema,
    producer_config, custom_partitioner=None, semantic=Semantic.AT_LEAST_ONCE)``.
    EXACTLY_ONCE takes its transactional id prefix from ``producer_config["transactional.id"]``.
    """

    def __init__(
        self,
        first: str,
        second: str | SerializationSchema[Any],
        third: SerializationSchema[Any] | Mapping[str, Any],
        custom_partitioner: KafkaPartitioner | PartitionFunction | None = None,
        semantic: Semantic = Semantic.AT_LEAST_ONCE,
    ) -> None:
        _warn_once()
        if isinstance(second, str):
            brokers, topic = first, second
            if not isinstance(third, SerializationSchema):
                raise ConfigError(
                    "FlinkKafkaProducer(broker_list, topic, schema): the third argument must be a "
                    f"SerializationSchema, got {type(third).__name__}",
                    option="serialization.schema",
                )
            schema: SerializationSchema[Any] = third
            config: dict[str, Any] = {}
        else:
            topic, schema = first, second
            if not isinstance(third, Mapping):
                raise ConfigError(
                    "FlinkKafkaProducer(topic, schema, producer_config): producer_config must be a "
                    f"mapping with 'bootstrap.servers', got {type(third).__name__}",
                    option="producer_config",
                )
            config = dict(third)
            brokers = config.pop("bootstrap.servers", None)
            if not brokers:
                raise ConfigError(
                    "FlinkKafkaProducer: producer_config has no 'bootstrap.servers'",
                    option="bootstrap.servers",
                )
        record = (
            KafkaRecordSerializationSchema.builder()
            .set_topic(topic)
            .set_value_serialization_schema(schema)
        )
        if custom_partitioner is not None:
            record.set_partitioner(custom_partitioner)
        builder = (
            KafkaSink.builder()
            .set_bootstrap_servers(str(brokers))
            .set_record_serializer(record.build())
            .set_delivery_guarantee(semantic.value)
        )
        prefix = config.pop("transactional.id", None)
        if prefix:
            builder.set_transactional_id_prefix(str(prefix))
        elif semantic.value is DeliveryGuarantee.EXACTLY_ONCE:
            # The builder's advice (set_transactional_id_prefix) names a call this API lacks.
            raise ConfigError(
                "FlinkKafkaProducer with Semantic.EXACTLY_ONCE needs a transactional id, "
                "unique per job and stable across restarts: set 'transactional.id' in its "
                "producer_config (e.g. {'bootstrap.servers': ..., 'transactional.id': "
                "'my-job'}); the legacy (broker_list, topic, schema) form has no producer_config, "
                "use the (topic, schema, producer_config) form",
                option="transactional.id",
            )
        builder.set_properties(config)
        self._sink = builder.build()

    @property
    def sink(self) -> KafkaSink:
        return self._sink

    @property
    def delivery_guarantee(self) -> DeliveryGuarantee:
        return self._sink.delivery_guarantee

    def create_writer(
        self, context: SinkContext, restored_state: Sequence[Any]
    ) -> SinkWriter[KafkaCommittable, Any]:
        return self._sink.create_writer(context, restored_state)

    def create_committer(self, context: SinkContext) -> Committer[KafkaCommittable] | None:
        return self._sink.create_committer(context)

    def get_committable_serializer(self) -> StateSerializer[KafkaCommittable]:
        return self._sink.get_committable_serializer()

    def describe(self) -> Mapping[str, Any]:
        return {**self._sink.describe(), "type": "FlinkKafkaProducer"}

    def __repr__(self) -> str:
        return f"FlinkKafkaProducer({self._sink!r})"
