"""The enumerator's view of the cluster: topic metadata and offsets, through one AdminClient."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from streamplug.errors import ConfigError
from streamplug.secrets import redact_text
from streamplug_kafka_source.split.split import KafkaTopicPartition

_NO_OFFSET = -1001  # librdkafka's RD_KAFKA_OFFSET_INVALID: nothing committed


class AdminOffsetsRetriever:
    """Answers ``PartitionOffsetsRetriever`` questions with batched admin requests, and
    lists topics for discovery. Used from the enumerator's worker thread only."""

    def __init__(
        self,
        properties: Mapping[str, Any],
        group_id: str | None,
        read_committed: bool,
        timeout_s: float = 30.0,
    ) -> None:
        self._properties = dict(properties)
        self._admin = AdminClient(self._properties)
        self._group_id = group_id
        self._isolation = (
            IsolationLevel.READ_COMMITTED if read_committed else IsolationLevel.READ_UNCOMMITTED
        )
        self._timeout = timeout_s

    def _fail(self, what: str, exc: BaseException) -> RuntimeError:
        text = redact_text(str(exc), self._properties)
        return RuntimeError(f"Kafka source could not {what}: {text}")

    def list_topics(self) -> dict[str, int]:
        """Topic -> partition count for every topic the cluster lists (without errors)."""
        try:
            metadata = self._admin.list_topics(timeout=self._timeout)
        except KafkaException as exc:
            raise self._fail("list topics for partition discovery", exc) from exc
        return {
            name: len(meta.partitions)
            for name, meta in metadata.topics.items()
            if meta.error is None and meta.partitions
        }

    def _list_offsets(
        self, specs: Mapping[KafkaTopicPartition, OffsetSpec], what: str
    ) -> dict[KafkaTopicPartition, int]:
        if not specs:
            return {}
        request = {TopicPartition(tp.topic, tp.partition): spec for tp, spec in specs.items()}
        try:
            futures = self._admin.list_offsets(
                request, isolation_level=self._isolation, request_timeout=self._timeout
            )
            return {
                KafkaTopicPartition(tp.topic, tp.partition): fut.result(self._timeout).offset
                for tp, fut in futures.items()
            }
        except KafkaException as exc:
            raise self._fail(f"list {what} offsets", exc) from exc

    def beginning_offsets(
        self, partitions: Collection[KafkaTopicPartition]
    ) -> dict[KafkaTopicPartition, int]:
        return self._list_offsets(dict.fromkeys(partitions, OffsetSpec.earliest()), "beginning")

    def end_offsets(
        self, partitions: Collection[KafkaTopicPartition]
    ) -> dict[KafkaTopicPartition, int]:
        return self._list_offsets(dict.fromkeys(partitions, OffsetSpec.latest()), "end")

    def offsets_for_times(
        self, timestamps: Mapping[KafkaTopicPartition, int]
    ) -> dict[KafkaTopicPartition, int | None]:
        found = self._list_offsets(
            {tp: OffsetSpec.for_timestamp(ts) for tp, ts in timestamps.items()}, "timestamp"
        )
        return {tp: (o if o >= 0 else None) for tp, o in found.items()}

    def committed_offsets(
        self, partitions: Collection[KafkaTopicPartition]
    ) -> dict[KafkaTopicPartition, int]:
        if not partitions:
            return {}
        if not self._group_id:
            raise ConfigError(
                "a group id is required to start or stop at committed offsets: "
                "call set_group_id(...)",
                option="group.id",
            )
        request = ConsumerGroupTopicPartitions(
            self._group_id, [TopicPartition(tp.topic, tp.partition) for tp in partitions]
        )
        try:
            futures = self._admin.list_consumer_group_offsets(
                [request], request_timeout=self._timeout
            )
            result = futures[self._group_id].result(self._timeout)
        except KafkaException as exc:
            raise self._fail(f"read committed offsets of group {self._group_id!r}", exc) from exc
        return {
            KafkaTopicPartition(tp.topic, tp.partition): tp.offset
            for tp in result.topic_partitions
            if tp.error is None and tp.offset >= 0 and tp.offset != _NO_OFFSET
        }
