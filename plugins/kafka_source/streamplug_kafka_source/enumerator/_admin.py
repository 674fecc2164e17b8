"""The enumerator's view of the cluster: topic metadata and offsets, through an AdminClient
(and consumers that never join a group, where the admin API falls short)."""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from streamplug.errors import ConfigError
from streamplug.secrets import redact_text
from streamplug_kafka_common.admin import committed_offsets
from streamplug_kafka_common.failures import is_unreachable, unreachable_error
from streamplug_kafka_common.logs import install_client_logger
from streamplug_kafka_source._compat import HAS_ADMIN_LIST_OFFSETS, ConsumerOffsetsLister
from streamplug_kafka_source._config import API_TIMEOUT_MS
from streamplug_kafka_source.split.split import KafkaTopicPartition

_NO_OFFSET = -1001  # librdkafka's RD_KAFKA_OFFSET_INVALID: nothing committed
# Kafka's ListOffsets sentinels, used here as "timestamps" for the two ends of a partition
# (the broker reads a timestamp of -1 or -2 the same way).
EARLIEST = -2
LATEST = -1


class AdminOffsetsRetriever:
    """Answers ``PartitionOffsetsRetriever`` questions with batched admin requests, and
    lists topics for discovery. Used from the enumerator's worker thread only.

    Offsets come from ``AdminClient.list_offsets`` where confluent-kafka has it (>= 2.3),
    otherwise from a consumer (``_compat.ConsumerOffsetsLister``)."""

    def __init__(
        self,
        properties: Mapping[str, Any],
        group_id: str | None,
        read_committed: bool,
        timeout_s: float = 30.0,
    ) -> None:
        self._properties = dict(properties)
        install_client_logger(self._properties)
        self._admin = AdminClient(self._properties)
        self._group_id = group_id
        self._read_committed = read_committed
        self._timeout = timeout_s
        self._lister: ConsumerOffsetsLister | None = None
        self._committed_reader: Consumer | None = None
        self._closed = threading.Event()

    def close(self) -> None:
        """Give up a listing in flight (from another thread): a stopped job's process must
        not wait out the timeout for a broker that does not answer."""
        self._closed.set()

    def _fail(self, what: str, exc: BaseException) -> Exception:
        text = redact_text(str(exc), self._properties)
        if is_unreachable(exc):
            err = exc.args[0]
            return unreachable_error(
                "Kafka source",
                str(self._properties.get("bootstrap.servers")),
                self._timeout,
                what,
                redact_text(err.str(), self._properties),
                f"the source property {API_TIMEOUT_MS} (now {self._timeout * 1000:.0f})",
            )
        return RuntimeError(f"Kafka source could not {what}: {text}")

    def list_topics(self) -> dict[str, int]:
        """Topic -> partition count for every topic the cluster lists (without errors)."""
        deadline = time.monotonic() + self._timeout
        while True:
            left = deadline - time.monotonic()
            try:
                # In slices, so close() is noticed within a second.
                metadata = self._admin.list_topics(timeout=max(0.05, min(1.0, left)))
                break
            except KafkaException as exc:
                if self._closed.is_set() or left <= 1.0 or not is_unreachable(exc):
                    raise self._fail("list topics for partition discovery", exc) from exc
        return {
            name: len(meta.partitions)
            for name, meta in metadata.topics.items()
            if meta.error is None and meta.partitions
        }

    def _list_offsets(
        self, specs: Mapping[KafkaTopicPartition, int], what: str
    ) -> dict[KafkaTopicPartition, int]:
        """``specs`` maps partitions to a timestamp, or to EARLIEST / LATEST."""
        if not specs:
            return {}
        try:
            if HAS_ADMIN_LIST_OFFSETS:
                return self._admin_list_offsets(specs)
            return self._consumer_list_offsets(specs)
        except KafkaException as exc:
            raise self._fail(f"list {what} offsets", exc) from exc

    def _admin_list_offsets(
        self, specs: Mapping[KafkaTopicPartition, int]
    ) -> dict[KafkaTopicPartition, int]:
        from confluent_kafka import IsolationLevel
        from confluent_kafka.admin import OffsetSpec

        def spec(ts: int) -> OffsetSpec:
            if ts == EARLIEST:
                return OffsetSpec.earliest()
            if ts == LATEST:
                return OffsetSpec.latest()
            return OffsetSpec.for_timestamp(ts)

        isolation = (
            IsolationLevel.READ_COMMITTED
            if self._read_committed
            else IsolationLevel.READ_UNCOMMITTED
        )
        request = {TopicPartition(tp.topic, tp.partition): spec(ts) for tp, ts in specs.items()}
        futures = self._admin.list_offsets(
            request, isolation_level=isolation, request_timeout=self._timeout
        )
        return {
            KafkaTopicPartition(tp.topic, tp.partition): fut.result(self._timeout).offset
            for tp, fut in futures.items()
        }

    def _consumer_list_offsets(
        self, specs: Mapping[KafkaTopicPartition, int]
    ) -> dict[KafkaTopicPartition, int]:
        if self._lister is None:
            self._lister = ConsumerOffsetsLister(
                self._properties, self._read_committed, self._timeout
            )
        lister = self._lister
        result: dict[KafkaTopicPartition, int] = {}
        for which, ask in ((EARLIEST, lister.earliest), (LATEST, lister.latest)):
            chosen = [tp for tp, ts in specs.items() if ts == which]
            if chosen:
                found = ask([TopicPartition(tp.topic, tp.partition) for tp in chosen])
                result.update(zip(chosen, found, strict=True))
        by_time = [
            TopicPartition(tp.topic, tp.partition, ts)
            for tp, ts in specs.items()
            if ts not in (EARLIEST, LATEST)
        ]
        if by_time:
            found_times = lister.for_times(by_time)
            result.update(
                (KafkaTopicPartition(t, p), offset) for (t, p), offset in found_times.items()
            )
        return result

    def beginning_offsets(
        self, partitions: Collection[KafkaTopicPartition]
    ) -> dict[KafkaTopicPartition, int]:
        return self._list_offsets(dict.fromkeys(partitions, EARLIEST), "beginning")

    def end_offsets(
        self, partitions: Collection[KafkaTopicPartition]
    ) -> dict[KafkaTopicPartition, int]:
        return self._list_offsets(dict.fromkeys(partitions, LATEST), "end")

    def offsets_for_times(
        self, timestamps: Mapping[KafkaTopicPartition, int]
    ) -> dict[KafkaTopicPartition, int | None]:
        found = self._list_offsets(timestamps, "timestamp")
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
        request = [TopicPartition(tp.topic, tp.partition) for tp in partitions]
        try:
            found = committed_offsets(self._group_consumer(), request, self._timeout)
        except KafkaException as exc:
            raise self._fail(f"read committed offsets of group {self._group_id!r}", exc) from exc
        return {
            KafkaTopicPartition(tp.topic, tp.partition): tp.offset
            for tp in found
            if tp.error is None and tp.offset >= 0 and tp.offset != _NO_OFFSET
        }

    def _group_consumer(self) -> Consumer:
        """A consumer of the job's group that never subscribes, so it never joins the group
        or disturbs its members; it only asks the coordinator for committed offsets (not
        the admin client: see ``streamplug_kafka_common.admin.committed_offsets``)."""
        if self._committed_reader is None:
            config = dict(self._properties)
            config["group.id"] = self._group_id
            config["enable.auto.commit"] = False
            self._committed_reader = Consumer(config)
        return self._committed_reader
