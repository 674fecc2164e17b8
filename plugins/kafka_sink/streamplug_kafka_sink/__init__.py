"""streamplug's Kafka sink: KafkaSink with NONE, AT_LEAST_ONCE and EXACTLY_ONCE delivery."""

from streamplug.api.sink import DeliveryGuarantee
from streamplug_kafka_sink.committer import KafkaCommitter
from streamplug_kafka_sink.legacy import FlinkKafkaProducer, Semantic
from streamplug_kafka_sink.partitioner import (
    DefaultPartitioner,
    FlinkFixedPartitioner,
    FunctionPartitioner,
    KafkaPartitioner,
    RoundRobinPartitioner,
)
from streamplug_kafka_sink.record_serializer import (
    KafkaRecordSerializationSchema,
    KafkaRecordSerializationSchemaBuilder,
    KafkaSinkContext,
    ProducerRecord,
)
from streamplug_kafka_sink.sink import KafkaSink, KafkaSinkBuilder
from streamplug_kafka_sink.transaction import KafkaCommittable
from streamplug_kafka_sink.writer import KafkaDeliveryError

__all__ = [
    "DefaultPartitioner",
    "DeliveryGuarantee",
    "FlinkFixedPartitioner",
    "FlinkKafkaProducer",
    "FunctionPartitioner",
    "KafkaCommittable",
    "KafkaCommitter",
    "KafkaDeliveryError",
    "KafkaPartitioner",
    "KafkaRecordSerializationSchema",
    "KafkaRecordSerializationSchemaBuilder",
    "KafkaSink",
    "KafkaSinkBuilder",
    "KafkaSinkContext",
    "ProducerRecord",
    "RoundRobinPartitioner",
    "Semantic",
]
