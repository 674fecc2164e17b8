"""Metrics through the OpenTelemetry API, named the way Flink names them.

A ``MetricGroup`` is a scope (``KafkaSourceReader``, ``KafkaConsumer``...) plus
attributes (job, subtask, topic, partition). Instruments are created on the global
``MeterProvider``: without the OpenTelemetry SDK installed they cost almost nothing; with
it (``pip install 'streamplug[metrics]'``) they are exported wherever the SDK sends them.

Instrument names are ``streamplug.<scope>.<name>``, e.g.
``streamplug.KafkaSourceReader.commitsSucceeded``; OpenTelemetry treats names as
case-insensitive and its SDK exports them lower-cased (Prometheus:
``streamplug_kafkasourcereader_commitssucceeded``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry import metrics as otel_metrics

__all__ = ["METER_NAME", "Counter", "Gauge", "MetricGroup", "metric_name"]

METER_NAME = "streamplug"


def metric_name(scope: Iterable[str], name: str) -> str:
    return ".".join(["streamplug", *scope, name])


# HELP text for Flink's standard names, used where the code that registers one gives none:
# Prometheus shows it beside every series, and an OpenMetrics family without one is hard to
# read. Anything else without a description still gets a line naming where it is described.
_STANDARD_HELP = {
    "numRecordsIn": "records the source emitted",
    "numRecordsOut": "records that reached the sinks",
    "numberOfCompletedCheckpoints": "checkpoints completed",
    "numberOfFailedCheckpoints": "checkpoints that failed",
    "lastCheckpointDuration": "ms from trigger to COMPLETE of the last checkpoint",
    "numRestarts": "attempts restarted by the restart strategy",
    "currentWatermark": "the job's combined watermark (epoch ms)",
    "currentOffset": "the next offset the reader hands out, per partition",
    "committedOffset": "the offset last committed to Kafka, per partition",
}


def _help(scope: Iterable[str], name: str, description: str) -> str:
    if description:
        return description
    return _STANDARD_HELP.get(name) or f"{metric_name(scope, name)} (see the metrics docs)"


class Counter:
    """A monotonically increasing count; ``value`` is kept locally for tests and progress."""

    def __init__(self, instrument: Any, attributes: Mapping[str, Any]) -> None:
        self._instrument = instrument
        self._attributes = dict(attributes)
        self.value = 0

    def inc(self, n: int = 1) -> None:
        self.value += n
        self._instrument.add(n, self._attributes)


class Gauge:
    """A value read on demand (OpenTelemetry observable gauge) from a callback."""

    def __init__(self, read: Callable[[], float | int | None]) -> None:
        self.read = read

    @property
    def value(self) -> float | int | None:
        return self.read()


class _Registry:
    """Instruments are global in OpenTelemetry; this makes one per name and fans observable
    callbacks out to every group that registered a gauge under that name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, Any] = {}
        self._gauges: dict[str, dict[int, tuple[Gauge, dict[str, Any]]]] = {}
        self._histograms: dict[str, Any] = {}
        self._next = 0

    def meter(self) -> Any:
        return otel_metrics.get_meter(METER_NAME)

    def counter(self, name: str, unit: str, description: str) -> Any:
        with self._lock:
            if name not in self._counters:
                self._counters[name] = self.meter().create_counter(
                    name, unit=unit, description=description
                )
            return self._counters[name]

    def histogram(self, name: str, unit: str, description: str) -> Any:
        with self._lock:
            if name not in self._histograms:
                self._histograms[name] = self.meter().create_histogram(
                    name, unit=unit, description=description
                )
            return self._histograms[name]

    def add_gauge(
        self, name: str, gauge: Gauge, attributes: dict[str, Any], description: str
    ) -> int:
        with self._lock:
            self._next += 1
            key = self._next
            if name not in self._gauges:
                self._gauges[name] = {}
                observers = self._gauges[name]

                def callback(
                    _options: Any, _observers: dict[int, tuple[Gauge, dict[str, Any]]] = observers
                ) -> Any:
                    result = []
                    for g, attrs in list(_observers.values()):
                        try:
                            v = g.read()
                        except Exception:
                            continue
                        if v is not None:
                            result.append(otel_metrics.Observation(v, attrs))
                    return result

                self.meter().create_observable_gauge(
                    name, callbacks=[callback], description=description
                )
            self._gauges[name][key] = (gauge, attributes)
            return key

    def remove_gauge(self, name: str, key: int) -> None:
        with self._lock:
            self._gauges.get(name, {}).pop(key, None)


_REGISTRY = _Registry()


class MetricGroup:
    """A named scope with attributes. ``close`` unregisters its gauges (a closed reader's
    gauges must not keep reporting)."""

    def __init__(
        self, scope: tuple[str, ...] = (), attributes: Mapping[str, Any] | None = None
    ) -> None:
        self.scope = scope
        self.attributes: dict[str, Any] = dict(attributes or {})
        self._gauges: list[tuple[str, int]] = []
        self._children: list[MetricGroup] = []
        self.counters: dict[str, Counter] = {}
        self.gauges: dict[str, Gauge] = {}

    def add_group(self, name: str, **attributes: Any) -> MetricGroup:
        """A sub-scope (``add_group("KafkaConsumer")``) or, like Flink's key/value groups,
        the same scope with more attributes (``add_group("topic", topic="t", partition=0)``):
        variable parts belong in attributes, so instrument names stay fixed."""
        scope = self.scope if attributes else (*self.scope, name)
        child = MetricGroup(scope, {**self.attributes, **attributes})
        self._children.append(child)
        return child

    def counter(self, name: str, unit: str = "1", description: str = "") -> Counter:
        if name not in self.counters:
            full = metric_name(self.scope, name)
            self.counters[name] = Counter(
                _REGISTRY.counter(full, unit, _help(self.scope, name, description)),
                self.attributes,
            )
        return self.counters[name]

    def gauge(
        self, name: str, read: Callable[[], float | int | None], description: str = ""
    ) -> Gauge:
        gauge = Gauge(read)
        full = metric_name(self.scope, name)
        description = _help(self.scope, name, description)
        self._gauges.append((full, _REGISTRY.add_gauge(full, gauge, self.attributes, description)))
        self.gauges[name] = gauge
        return gauge

    def histogram(self, name: str, unit: str = "ms", description: str = "") -> Any:
        instrument = _REGISTRY.histogram(
            metric_name(self.scope, name), unit, _help(self.scope, name, description)
        )
        attributes = self.attributes

        def record(value: float) -> None:
            instrument.record(value, attributes)

        return record

    def close(self) -> None:
        for full, key in self._gauges:
            _REGISTRY.remove_gauge(full, key)
        self._gauges.clear()
        for child in self._children:
            child.close()
