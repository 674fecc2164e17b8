"""The sink's metrics, named like Flink's KafkaSink metrics.

On the writer's group: ``numRecordsOut``, ``numBytesOut``, ``numRecordsOutErrors`` and the
``currentSendTime`` gauge (ms a produce request took to be acknowledged, as librdkafka
measures it: the average broker round trip of the last statistics window). With
``register.producer.metrics`` (the default) the librdkafka statistics of the producer are
also published as gauges under the ``KafkaProducer`` sub-group.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from streamplug.metrics import MetricGroup

__all__ = ["PRODUCER_STATISTICS", "ProducerStatistics", "WriterMetrics"]

log = logging.getLogger(__name__)

# Top-level numeric fields of librdkafka's statistics JSON worth publishing (see
# librdkafka's STATISTICS.md); per-broker and per-partition detail is summarised instead
# of being exploded into thousands of series.
PRODUCER_STATISTICS: tuple[str, ...] = (
    "msg_cnt",
    "msg_size",
    "msg_max",
    "msg_size_max",
    "tx",
    "tx_bytes",
    "rx",
    "rx_bytes",
    "txmsgs",
    "txmsg_bytes",
)


class ProducerStatistics:
    """The latest librdkafka statistics of one producer, fed by its ``stats_cb``.

    The callback runs inside ``poll``/``flush`` on whichever thread called them; gauges
    are read by the metrics exporter's thread, hence the lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, float] = {}
        self.current_send_time_ms: float | None = None

    def on_stats(self, stats_json: str) -> None:
        try:
            stats = json.loads(stats_json)
        except ValueError:
            log.debug("unreadable librdkafka statistics ignored")
            return
        values: dict[str, float] = {}
        for name in PRODUCER_STATISTICS:
            v = stats.get(name)
            if isinstance(v, int | float):
                values[name] = v
        rtts: list[float] = []
        outbuf: list[float] = []
        for broker in (stats.get("brokers") or {}).values():
            if broker.get("nodeid", -1) < 0:
                continue  # bootstrap pseudo-brokers never carry produce requests
            rtt = (broker.get("rtt") or {}).get("avg", 0)
            if rtt:
                rtts.append(rtt)
            lat = (broker.get("outbuf_latency") or {}).get("avg", 0)
            if lat:
                outbuf.append(lat)
        if rtts:
            values["request_latency_avg_ms"] = sum(rtts) / len(rtts) / 1000.0
        if outbuf:
            values["outbuf_latency_avg_ms"] = sum(outbuf) / len(outbuf) / 1000.0
        txn = stats.get("eos") or {}
        if isinstance(txn.get("txn_state"), str):
            values["txn_may_enq"] = 1.0 if txn.get("txn_may_enq") else 0.0
        with self._lock:
            self._values.update(values)
            if rtts:
                self.current_send_time_ms = values["request_latency_avg_ms"]

    def get(self, name: str) -> float | None:
        with self._lock:
            return self._values.get(name)

    def register(self, group: MetricGroup) -> None:
        """Publish every statistic as a gauge of ``group`` (reported once known)."""
        for name in (*PRODUCER_STATISTICS, "request_latency_avg_ms", "outbuf_latency_avg_ms"):
            group.gauge(name, self._reader(name), f"librdkafka producer statistic {name}")

    def _reader(self, name: str) -> Callable[[], float | None]:
        return lambda: self.get(name)


class WriterMetrics:
    """The counters and gauges of one writer subtask."""

    def __init__(
        self, group: MetricGroup, statistics: ProducerStatistics, register_producer_metrics: bool
    ) -> None:
        self.group = group
        self.records_out = group.counter(
            "numRecordsOut", description="records handed to the producer"
        )
        self.bytes_out = group.counter(
            "numBytesOut", unit="By", description="key + value bytes produced"
        )
        self.errors = group.counter(
            "numRecordsOutErrors", description="records whose delivery failed"
        )
        self.statistics = statistics
        group.gauge(
            "currentSendTime",
            lambda: statistics.current_send_time_ms,
            "ms a produce request takes to be acknowledged (librdkafka's average broker round "
            "trip)",
        )
        if register_producer_metrics:
            statistics.register(group.add_group("KafkaProducer"))

    def close(self) -> None:
        self.group.close()

    def snapshot(self) -> dict[str, Any]:
        return {
            "numRecordsOut": self.records_out.value,
            "numBytesOut": self.bytes_out.value,
            "numRecordsOutErrors": self.errors.value,
            "currentSendTime": self.statistics.current_send_time_ms,
        }
