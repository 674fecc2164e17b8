"""The split enumerator: discovers partitions, resolves their offsets, assigns them to readers."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

import attrs

from streamplug.api.context import SplitEnumeratorContext
from streamplug.api.source import SplitEnumerator
from streamplug.errors import ConfigError
from streamplug_kafka_source.enumerator.initializer import (
    KafkaOffsetsInitializer,
    PartitionOffsetsRetriever,
)
from streamplug_kafka_source.enumerator.state import KafkaSourceEnumState
from streamplug_kafka_source.enumerator.subscriber import KafkaSubscriber
from streamplug_kafka_source.split.split import KafkaPartitionSplit, KafkaTopicPartition

log = logging.getLogger(__name__)


class DiscoveryClient(PartitionOffsetsRetriever, Protocol):
    """A ``PartitionOffsetsRetriever`` that can also list topics."""

    def list_topics(self) -> dict[str, int]: ...


def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode`` (over UTF-16 code units, 32-bit wrap-around), as a
    signed int: Flink's assignment rule is defined in terms of it."""
    h = 0
    for char in text:
        unit = ord(char)
        if unit > 0xFFFF:
            # Outside the BMP Java stores a surrogate pair. Worked out here rather than
            # with the utf-16 codec, whose import cost ~0.2 ms of a job's start.
            unit -= 0x10000
            h = (31 * h + (0xD800 | unit >> 10)) & 0xFFFFFFFF
            unit = 0xDC00 | (unit & 0x3FF)
        h = (31 * h + unit) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def _log_release(_: object, error: BaseException | None) -> None:
    if error is not None:
        log.debug("Kafka source enumerator: releasing the admin client failed: %s", error)


def split_owner(tp: KafkaTopicPartition, parallelism: int) -> int:
    """The subtask that reads ``tp``: Flink's ``KafkaSourceEnumerator.getSplitOwner``.

    Each topic gets a start index from its name's hash, and its partitions go round-robin
    from there, so partitions spread evenly and a topic's partition 0s do not all land on
    subtask 0.
    """
    start_index = ((java_string_hash(tp.topic) * 31) & 0x7FFFFFFF) % parallelism
    return (start_index + tp.partition) % parallelism


@attrs.frozen
class _Discovered:
    first_round: bool
    splits: tuple[KafkaPartitionSplit, ...]


class KafkaSourceEnumerator(SplitEnumerator[KafkaPartitionSplit, KafkaSourceEnumState]):
    """Assigns each partition to ``split_owner`` and pushes it to that reader.

    Discovery (listing topics and resolving offsets) runs on the runtime's worker thread
    through ``call_async``; the result is applied on the coordinator thread. Partitions
    found in the first round start at the starting initializer's offsets; partitions that
    appear later (new topics matching a pattern, added partitions) start at the earliest
    offset, so records written before they were discovered are not skipped.
    """

    def __init__(
        self,
        context: SplitEnumeratorContext[KafkaPartitionSplit],
        subscriber: KafkaSubscriber,
        starting_offsets: KafkaOffsetsInitializer,
        stopping_offsets: KafkaOffsetsInitializer | None,
        client_factory: Callable[[], DiscoveryClient],
        discovery_interval_ms: int,
        state: KafkaSourceEnumState | None = None,
    ) -> None:
        self._context = context
        self._subscriber = subscriber
        self._starting = starting_offsets
        self._stopping = stopping_offsets
        self._client_factory = client_factory
        self._client: DiscoveryClient | None = None
        self._discovery_interval_ms = discovery_interval_ms
        state = state or KafkaSourceEnumState()
        # Shared with the discovery worker thread: guarded by _lock.
        self._lock = threading.Lock()
        self._assigned: set[KafkaTopicPartition] = set(state.assigned)
        self._pending: dict[int, dict[KafkaTopicPartition, KafkaPartitionSplit]] = {}
        self._initial_discovery_finished = state.initial_discovery_finished
        self._no_more_new_splits = False
        self._signalled: set[int] = set()
        # Named topics the cluster did not list at the last discovery (worker thread only).
        self._missing: set[str] = set()
        self._add_pending(state.unassigned)

    # -- SplitEnumerator ---------------------------------------------------------------

    def start(self) -> None:
        if self._discovery_interval_ms > 0:
            log.info(
                "Kafka source discovers %s every %d ms",
                self._subscriber.describe(),
                self._discovery_interval_ms,
            )
            self._context.call_async(
                self._discover, self._on_discovered, 0, self._discovery_interval_ms
            )
        else:
            self._context.call_async(self._discover, self._on_discovered)

    def add_reader(self, subtask_id: int) -> None:
        # A (re-)registered reader is a fresh instance: it needs its own end-of-splits signal.
        self._signalled.discard(subtask_id)
        self._assign_pending([subtask_id])

    def add_splits_back(self, splits: Sequence[KafkaPartitionSplit], subtask_id: int) -> None:
        with self._lock:
            for split in splits:
                self._assigned.discard(split.topic_partition)
        self._add_pending(splits)
        # The reader may fail again before it re-registers; it gets them in add_reader.
        self._signalled.discard(subtask_id)
        if subtask_id in self._context.registered_readers():
            self._assign_pending([subtask_id])

    def snapshot_state(self, checkpoint_id: int) -> KafkaSourceEnumState:
        with self._lock:
            return KafkaSourceEnumState(
                frozenset(self._assigned),
                tuple(s for owned in self._pending.values() for s in owned.values()),
                self._initial_discovery_finished,
            )

    def close(self) -> None:
        client, self._client = self._client, None
        # A discovery in flight (on the runtime's worker thread) gives up at once.
        close = getattr(client, "close", None)
        if close is not None:
            close()

    # -- discovery (worker thread) -----------------------------------------------------

    def _release_client(self) -> None:
        # The last reference: librdkafka takes the client apart here, on this thread.
        self._client = None

    def _discover(self) -> _Discovered:
        if self._client is None:
            self._client = self._client_factory()
        client = self._client
        with self._lock:
            known = set(self._assigned)
            known.update(tp for owned in self._pending.values() for tp in owned)
            first_round = not self._initial_discovery_finished
        topics = client.list_topics()
        self._report_missing(topics)
        partitions = self._subscriber.subscribed_partitions(topics)
        new = partitions - known
        if not new:
            return _Discovered(first_round, ())
        initializer = self._starting if first_round else KafkaOffsetsInitializer.earliest()
        starts = initializer.get_partition_offsets(new, client)
        stops = self._stopping.get_partition_offsets(new, client) if self._stopping else {}
        missing = sorted(str(tp) for tp in new if tp not in starts)
        if missing:
            raise ConfigError(
                f"offsets initializer {initializer} returned no starting offset for {missing}: "
                "a custom initializer must return an offset for every partition it is given",
                option="starting-offsets",
            )
        splits = tuple(
            KafkaPartitionSplit(tp.topic, tp.partition, starts[tp], stops.get(tp))
            for tp in sorted(new)
        )
        return _Discovered(first_round, splits)

    def _report_missing(self, topics: Mapping[str, int]) -> None:
        # Said once per topic, not per round: a job reading nothing is otherwise a mystery.
        missing = set(self._subscriber.missing_topics(topics))
        for topic in sorted(missing - self._missing):
            if self._discovery_interval_ms > 0:
                later = (
                    f"it is read once it exists (partition discovery runs every "
                    f"{self._discovery_interval_ms} ms)"
                )
            else:
                later = (
                    "partition discovery is off, so this run will not read it: create it and "
                    "restart, or set partition.discovery.interval.ms to pick it up when it appears"
                )
            log.warning("Kafka source: topic %r does not exist; %s", topic, later)
        for topic in sorted(self._missing - missing):
            log.info("Kafka source: topic %r exists now; reading it", topic)
        self._missing = missing

    # -- coordinator thread ------------------------------------------------------------

    def _on_discovered(self, result: _Discovered | None, error: BaseException | None) -> None:
        if error is not None:
            if isinstance(error, ConfigError) or not self._initial_discovery_finished:
                raise RuntimeError(f"Kafka partition discovery failed: {error}") from error
            log.warning("Kafka partition discovery failed, retrying next round: %s", error)
            return
        assert result is not None
        if result.splits:
            log.info(
                "Kafka source discovered %d new partitions: %s",
                len(result.splits),
                ", ".join(str(s) for s in result.splits),
            )
        if result.splits:
            self._context.splits_discovered(result.splits)
        self._add_pending(result.splits)
        with self._lock:
            self._initial_discovery_finished = True
        if self._discovery_interval_ms <= 0:
            self._no_more_new_splits = True
        self._assign_pending(self._context.registered_readers())
        if self._discovery_interval_ms <= 0:
            # No second round: the admin client's connections and threads are not needed
            # again in this attempt. Taking it apart (librdkafka joins its threads, a few
            # ms) runs on the worker thread while the readers read, not at the job's end.
            self._context.call_async(self._release_client, _log_release)

    def _add_pending(self, splits: Iterable[KafkaPartitionSplit]) -> None:
        parallelism = self._context.parallelism
        with self._lock:
            for split in splits:
                tp = split.topic_partition
                if tp in self._assigned:
                    continue
                owned = self._pending.setdefault(split_owner(tp, parallelism), {})
                owned.setdefault(tp, split)

    def _assign_pending(self, readers: Iterable[int]) -> None:
        registered = set(self._context.registered_readers())
        assignment: dict[int, list[KafkaPartitionSplit]] = {}
        with self._lock:
            for reader in readers:
                if reader not in registered:
                    continue
                owned = self._pending.pop(reader, None)
                if owned:
                    assignment[reader] = list(owned.values())
                    self._assigned.update(owned)
        if assignment:
            self._context.assign_splits(assignment)
        if self._no_more_new_splits:
            for reader in readers:
                if reader in registered and reader not in self._signalled:
                    self._signalled.add(reader)
                    self._context.signal_no_more_splits(reader)

    @property
    def assigned_partitions(self) -> frozenset[KafkaTopicPartition]:
        with self._lock:
            return frozenset(self._assigned)
