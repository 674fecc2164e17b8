"""The reader's metrics, named as Flink's Kafka source names them.

On the reader's operator group (Flink's standard source metrics):
``currentEmitEventTimeLag``, ``sourceIdleTime``, ``pendingRecords`` and the counter
``numRecordsInErrors`` (records that failed to deserialize). ``numRecordsIn`` and
``watermarkLag`` are the runtime's: it counts what the source emits and knows the
subtask's watermark.

Under ``KafkaSourceReader``: ``commitsSucceeded``, ``commitsFailed``,
``deserializationErrors``, ``recordsSkipped``, ``recordsDeadLettered``, and per topic and
partition (attributes ``topic``, ``partition``) ``currentOffset`` and ``committedOffset``.

Under ``KafkaSourceReader.KafkaConsumer`` (when ``register.consumer.metrics`` is true):
librdkafka's own statistics (``statistics.interval.ms``), e.g. ``rxmsgs``, ``rx_bytes``,
``consumer_lag_max``, and per partition ``consumer_lag``, ``fetchq_cnt``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from streamplug.metrics import MetricGroup
from streamplug_kafka_source.split.split import KafkaTopicPartition

__all__ = ["KafkaSourceReaderMetrics"]

log = logging.getLogger(__name__)

KAFKA_SOURCE_READER = "KafkaSourceReader"
KAFKA_CONSUMER = "KafkaConsumer"

# Top-level counters of librdkafka's statistics JSON worth exporting for a consumer.
_CONSUMER_STATS = (
    "rx",
    "rx_bytes",
    "rxmsgs",
    "rxmsg_bytes",
    "tx",
    "tx_bytes",
    "replyq",
    "metadata_cache_cnt",
    "age",
)
_PARTITION_STATS = ("consumer_lag", "fetchq_cnt", "fetchq_size", "hi_offset", "ls_offset")


# How long an assigned partition may go without librdkafka fetching it before the reader
# says so. Leader elections and broker restarts take seconds; a partition still not
# fetching after this is stuck on something the user has to look at (no leader, an
# unreachable broker, an offset lookup that keeps failing), and without the warning a
# reader that reads nothing looks like a topic that holds nothing.
STALL_WARNING_S = 15.0


_monotonic = time.monotonic  # a module attribute, so tests can move the clock


def _now_ms() -> int:
    return int(time.time() * 1000)


class _PartitionMetrics:
    def __init__(self, group: MetricGroup) -> None:
        self.group = group
        self.committed_offset: int | None = None
        # Since when librdkafka has not been fetching this partition (monotonic s), or
        # None while it fetches; a new assignment starts out not fetching.
        self.not_fetching_since: float | None = _monotonic()
        self.stall_reported = False


class KafkaSourceReaderMetrics:
    """Owned by one reader; updated on its thread, read by the metrics exporter's thread
    (reads of plain attributes, so no locking is needed)."""

    def __init__(self, group: MetricGroup, register_consumer_metrics: bool) -> None:
        self.group = group
        self.reader_group = group.add_group(KAFKA_SOURCE_READER)
        self.records_emitted = 0
        self.num_records_in_errors = group.counter("numRecordsInErrors")
        self.commits_succeeded = self.reader_group.counter("commitsSucceeded")
        self.commits_failed = self.reader_group.counter("commitsFailed")
        self.deserialization_errors = self.reader_group.counter("deserializationErrors")
        self.records_skipped = self.reader_group.counter("recordsSkipped")
        self.records_dead_lettered = self.reader_group.counter("recordsDeadLettered")
        # Event time of the last record emitted, and when it was emitted (epoch ms).
        self.last_emit_event_time: int | None = None
        self.last_emit_lag: int | None = None
        self.last_record_time_ms = _now_ms()
        self.pending_records: Callable[[], int | None] = lambda: None
        group.gauge(
            "currentEmitEventTimeLag", lambda: self.last_emit_lag, "ms from event time to emit"
        )
        group.gauge(
            "sourceIdleTime", lambda: _now_ms() - self.last_record_time_ms, "ms without records"
        )
        group.gauge("pendingRecords", lambda: self.pending_records(), "records not yet read")
        self._partitions: dict[KafkaTopicPartition, _PartitionMetrics] = {}
        self._stats: dict[str, Any] = {}
        self._partition_stats: dict[tuple[str, int], dict[str, Any]] = {}
        self.consumer_group: MetricGroup | None = None
        if register_consumer_metrics:
            self.consumer_group = self.reader_group.add_group(KAFKA_CONSUMER)
            for name in _CONSUMER_STATS:
                self.consumer_group.gauge(name, self._stat_reader(name))
            self.consumer_group.gauge("consumer_lag_max", self._lag_max)
            self.consumer_group.gauge("consumer_lag_sum", self._lag_sum)

    # -- per batch -----------------------------------------------------------------------

    def record_emitted(self, count: int, last_event_time: int | None) -> None:
        now = _now_ms()
        self.records_emitted += count
        self.last_record_time_ms = now
        if last_event_time is not None and last_event_time >= 0:
            self.last_emit_event_time = last_event_time
            self.last_emit_lag = now - last_event_time

    # -- per partition -------------------------------------------------------------------

    def add_partition(
        self, tp: KafkaTopicPartition, current_offset: Callable[[], int | None]
    ) -> None:
        if tp in self._partitions:
            return
        pgroup = self.reader_group.add_group("topic", topic=tp.topic, partition=tp.partition)
        metrics = _PartitionMetrics(pgroup)
        pgroup.gauge("currentOffset", current_offset)
        pgroup.gauge("committedOffset", lambda: metrics.committed_offset)
        if self.consumer_group is not None:
            cgroup = self.consumer_group.add_group("topic", topic=tp.topic, partition=tp.partition)
            key = (tp.topic, tp.partition)
            for name in _PARTITION_STATS:
                cgroup.gauge(name, self._partition_stat_reader(key, name))
            pgroup._children.append(cgroup)  # closed together with the partition's group
        self._partitions[tp] = metrics

    def remove_partition(self, tp: KafkaTopicPartition) -> None:
        metrics = self._partitions.pop(tp, None)
        if metrics is not None:
            metrics.group.close()

    def committed(self, tp: KafkaTopicPartition, offset: int) -> None:
        metrics = self._partitions.get(tp)
        if metrics is not None:
            metrics.committed_offset = offset

    def partition_gauges(self, tp: KafkaTopicPartition) -> dict[str, Any]:
        """``currentOffset`` and ``committedOffset`` of a partition this reader reads."""
        metrics = self._partitions.get(tp)
        return {} if metrics is None else dict(metrics.group.gauges)

    def committed_offset(self, tp: KafkaTopicPartition) -> int | None:
        metrics = self._partitions.get(tp)
        return None if metrics is None else metrics.committed_offset

    # -- librdkafka statistics -----------------------------------------------------------

    def on_stats(self, stats_json: str) -> None:
        """librdkafka's ``stats_cb``: called on the reader thread during consume."""
        try:
            stats = json.loads(stats_json)
        except ValueError:
            log.debug("unreadable librdkafka statistics ignored")
            return
        partitions: dict[tuple[str, int], dict[str, Any]] = {}
        for topic, tstats in stats.get("topics", {}).items():
            for pid, pstats in tstats.get("partitions", {}).items():
                p = int(pid)
                if p >= 0:
                    partitions[(topic, p)] = pstats
        self._stats = stats
        self._partition_stats = partitions
        self._check_fetching(partitions)

    def _check_fetching(self, partitions: dict[tuple[str, int], dict[str, Any]]) -> None:
        """Warn once about each assigned partition librdkafka has not fetched for
        ``STALL_WARNING_S``, naming its fetch state and leader; say when it recovers."""
        now = _monotonic()
        for tp, metrics in self._partitions.items():
            pstats = partitions.get((tp.topic, tp.partition), {})
            state = pstats.get("fetch_state")
            if state == "active":
                if metrics.stall_reported:
                    log.warning("Kafka source: %s is fetching again", tp)
                metrics.not_fetching_since = None
                metrics.stall_reported = False
                continue
            if metrics.not_fetching_since is None:
                metrics.not_fetching_since = now
            waited = now - metrics.not_fetching_since
            if waited >= STALL_WARNING_S and not metrics.stall_reported:
                metrics.stall_reported = True
                leader = pstats.get("leader", -1)
                log.warning(
                    "Kafka source: %s has not been fetched for %.0f s (librdkafka fetch "
                    "state %r, leader %s); check that the partition has a leader and that "
                    "broker is reachable",
                    tp,
                    waited,
                    state or "unknown",
                    leader if isinstance(leader, int) and leader >= 0 else "unknown",
                )

    def _stat_reader(self, name: str) -> Callable[[], int | None]:
        return lambda: self._stats.get(name)

    def partition_stat(self, key: tuple[str, int], name: str) -> int | None:
        """One partition's counter from the last statistics (``hi_offset``...), or None.
        Safe from any thread: ``on_stats`` replaces the table, it never changes it."""
        value = self._partition_stats.get(key, {}).get(name)
        return value if isinstance(value, int) and value >= 0 else None

    def _partition_stat_reader(self, key: tuple[str, int], name: str) -> Callable[[], int | None]:
        return lambda: self.partition_stat(key, name)

    def _lags(self) -> list[int]:
        lags = []
        for key in self._partitions:
            lag = self._partition_stats.get((key.topic, key.partition), {}).get("consumer_lag", -1)
            if isinstance(lag, int) and lag >= 0:
                lags.append(lag)
        return lags

    def _lag_max(self) -> int | None:
        lags = self._lags()
        return max(lags) if lags else None

    def _lag_sum(self) -> int | None:
        lags = self._lags()
        return sum(lags) if lags else None

    def close(self) -> None:
        # The operator group belongs to the runtime, which closes it; this reader's own
        # scopes go now, so a closed reader's partitions stop reporting.
        self._partitions.clear()
        self.reader_group.close()
