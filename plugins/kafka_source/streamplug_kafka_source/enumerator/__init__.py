"""Partition discovery, offsets initializers and split assignment."""

from streamplug_kafka_source.enumerator.enumerator import KafkaSourceEnumerator, split_owner
from streamplug_kafka_source.enumerator.initializer import (
    KafkaOffsetResetStrategy,
    KafkaOffsetsInitializer,
    PartitionOffsetsRetriever,
)
from streamplug_kafka_source.enumerator.state import (
    KafkaSourceEnumState,
    KafkaSourceEnumStateSerializer,
)
from streamplug_kafka_source.enumerator.subscriber import (
    KafkaSubscriber,
    PartitionSetSubscriber,
    TopicListSubscriber,
    TopicPatternSubscriber,
)

__all__ = [
    "KafkaOffsetResetStrategy",
    "KafkaOffsetsInitializer",
    "KafkaSourceEnumState",
    "KafkaSourceEnumStateSerializer",
    "KafkaSourceEnumerator",
    "KafkaSubscriber",
    "PartitionOffsetsRetriever",
    "PartitionSetSubscriber",
    "TopicListSubscriber",
    "TopicPatternSubscriber",
    "split_owner",
]
