"""streamplug's Kafka source: Flink's ``KafkaSource`` on confluent-kafka.

Build one with ``KafkaSource.builder()`` and read it with ``env.from_source(...)``.
"""

from streamplug_kafka_source.deserializer import (
    KafkaRecord,
    KafkaRecordDeserializationSchema,
    TimestampType,
)
from streamplug_kafka_source.enumerator.initializer import (
    KafkaOffsetResetStrategy,
    KafkaOffsetsInitializer,
    PartitionOffsetsRetriever,
)
from streamplug_kafka_source.legacy import FlinkKafkaConsumer
from streamplug_kafka_source.reader.bad_records import BadRecordPolicy
from streamplug_kafka_source.source import KafkaSource, KafkaSourceBuilder
from streamplug_kafka_source.split.split import KafkaPartitionSplit, KafkaTopicPartition

__all__ = [
    "BadRecordPolicy",
    "FlinkKafkaConsumer",
    "KafkaOffsetResetStrategy",
    "KafkaOffsetsInitializer",
    "KafkaPartitionSplit",
    "KafkaRecord",
    "KafkaRecordDeserializationSchema",
    "KafkaSource",
    "KafkaSourceBuilder",
    "KafkaTopicPartition",
    "PartitionOffsetsRetriever",
    "TimestampType",
]
