"""What differs between the confluent-kafka releases the source runs on.

Kerberos needs a librdkafka built with Cyrus SASL; the PyPI wheels have none, so GSSAPI
users compile confluent-kafka against their distribution's librdkafka (Debian bookworm:
2.0.2, which only confluent-kafka 2.0.2 builds against). Two things the source uses on
current releases are missing there:

- ``AdminClient.list_offsets`` and ``IsolationLevel`` (confluent-kafka 2.3): offsets are
  then resolved with a consumer's ``get_watermark_offsets`` / ``offsets_for_times``,
  which ask the partition leaders the same ListOffsets question (one partition per
  request for the watermarks, so the admin path stays the fast one where it exists);
- ``fetch.queue.backoff.ms`` (librdkafka 2.3): librdkafka refuses unknown properties, so
  the source's throughput default for it is only applied where the setting exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition, libversion
from confluent_kafka.admin import AdminClient

__all__ = [
    "HAS_ADMIN_LIST_OFFSETS",
    "HAS_FETCH_QUEUE_BACKOFF",
    "ConsumerOffsetsLister",
]

HAS_ADMIN_LIST_OFFSETS: bool = hasattr(AdminClient, "list_offsets")
HAS_FETCH_QUEUE_BACKOFF: bool = libversion()[1] >= 0x02030000

# ListOffsets answers "no record at or after this timestamp" with offset -1.
_NOT_FOUND = -1


class ConsumerOffsetsLister:
    """Earliest, latest and by-timestamp offsets through a consumer that never joins its
    group or reads a record. ``properties`` are admin-safe client properties (bootstrap,
    security, ``error_cb``...); the consumer adds a private group and the isolation level,
    which decides whether "latest" is the last stable offset or the high watermark."""

    def __init__(
        self, properties: Mapping[str, Any], read_committed: bool, timeout_s: float
    ) -> None:
        config = dict(properties)
        config["group.id"] = f"streamplug-kafka-source-offsets-{uuid.uuid4().hex}"
        config["enable.auto.commit"] = False
        config["isolation.level"] = "read_committed" if read_committed else "read_uncommitted"
        self._consumer = Consumer(config)
        self._timeout = timeout_s

    def _refresh(self, partitions: list[TopicPartition]) -> None:
        # These lookups fail with "Unknown partition" for partitions the consumer's own
        # metadata cache does not hold yet (partitions added since it last refreshed,
        # every 5 min by default); a metadata request for the topics updates the cache.
        for topic in dict.fromkeys(tp.topic for tp in partitions):
            self._consumer.list_topics(topic, timeout=self._timeout)

    def _watermarks(self, partitions: list[TopicPartition]) -> list[tuple[int, int]]:
        self._refresh(partitions)
        return [
            self._consumer.get_watermark_offsets(tp, timeout=self._timeout, cached=False)
            for tp in partitions
        ]

    def earliest(self, partitions: list[TopicPartition]) -> list[int]:
        return [low for low, _ in self._watermarks(partitions)]

    def latest(self, partitions: list[TopicPartition]) -> list[int]:
        return [high for _, high in self._watermarks(partitions)]

    def for_times(self, request: list[TopicPartition]) -> dict[tuple[str, int], int]:
        """The first offset at or after each partition's timestamp (given as its offset);
        -1 where there is none."""
        self._refresh(request)
        found = self._consumer.offsets_for_times(request, timeout=self._timeout)
        result: dict[tuple[str, int], int] = {}
        for tp in found:
            if tp.error is not None:
                raise KafkaException(tp.error)
            result[(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else _NOT_FOUND
        return result
