"""Kafka partitions as source splits, the reader's progress on them, and their serializer."""

from streamplug_kafka_source.split.serializer import KafkaPartitionSplitSerializer
from streamplug_kafka_source.split.split import (
    COMMITTED_OFFSET,
    EARLIEST_OFFSET,
    LATEST_OFFSET,
    KafkaPartitionSplit,
    KafkaTopicPartition,
)
from streamplug_kafka_source.split.state import KafkaPartitionSplitState

__all__ = [
    "COMMITTED_OFFSET",
    "EARLIEST_OFFSET",
    "LATEST_OFFSET",
    "KafkaPartitionSplit",
    "KafkaPartitionSplitSerializer",
    "KafkaPartitionSplitState",
    "KafkaTopicPartition",
]
