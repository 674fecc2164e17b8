"""Which partitions a source reads: a topic list, a topic pattern, or fixed partitions."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping

import attrs

from streamplug.errors import ConfigError
from streamplug_kafka_source.split.split import KafkaTopicPartition

TopicMetadata = Mapping[str, int]
"""Topic name -> number of partitions, as cluster metadata lists them."""


class KafkaSubscriber(ABC):
    """Picks the partitions to read out of the cluster's metadata. Pure: no I/O."""

    @abstractmethod
    def subscribed_partitions(self, topics: TopicMetadata) -> set[KafkaTopicPartition]:
        """The partitions to read, given every topic the cluster lists."""

    @abstractmethod
    def describe(self) -> str: ...

    def missing_topics(self, topics: TopicMetadata) -> list[str]:
        """Topics this subscriber names that the cluster does not list (none for a
        pattern, which names no topic)."""
        return [t for t in self.named_topics() if t not in topics]

    def named_topics(self) -> tuple[str, ...]:
        """The topics this subscriber names, known before any discovery (none for a
        pattern)."""
        return ()


@attrs.frozen
class TopicListSubscriber(KafkaSubscriber):
    topics: tuple[str, ...]

    def named_topics(self) -> tuple[str, ...]:
        return self.topics

    def subscribed_partitions(self, topics: TopicMetadata) -> set[KafkaTopicPartition]:
        # A listed topic that does not exist (yet) is not an error: discovery picks it
        # up once it is created, as Flink's source does.
        return {
            KafkaTopicPartition(t, p) for t in self.topics if t in topics for p in range(topics[t])
        }

    def describe(self) -> str:
        return f"topics {list(self.topics)}"


@attrs.frozen
class TopicPatternSubscriber(KafkaSubscriber):
    pattern: re.Pattern[str]

    def subscribed_partitions(self, topics: TopicMetadata) -> set[KafkaTopicPartition]:
        match = self.pattern.fullmatch
        return {
            KafkaTopicPartition(t, p)
            for t, count in topics.items()
            if match(t) and not t.startswith("__")
            for p in range(count)
        }

    def describe(self) -> str:
        return f"topic pattern {self.pattern.pattern!r}"


@attrs.frozen
class PartitionSetSubscriber(KafkaSubscriber):
    partitions: frozenset[KafkaTopicPartition]

    def subscribed_partitions(self, topics: TopicMetadata) -> set[KafkaTopicPartition]:
        return {tp for tp in self.partitions if tp.partition < topics.get(tp.topic, 0)}

    def named_topics(self) -> tuple[str, ...]:
        return tuple(sorted({tp.topic for tp in self.partitions}))

    def describe(self) -> str:
        return f"partitions {sorted(str(tp) for tp in self.partitions)}"


def compile_pattern(pattern: str | re.Pattern[str]) -> re.Pattern[str]:
    if isinstance(pattern, re.Pattern):
        return pattern
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(
            f"topic pattern {pattern!r} is not a valid regular expression: {exc}",
            option="topic-pattern",
        ) from None
