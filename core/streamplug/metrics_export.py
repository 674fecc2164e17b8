"""Serving streamplug's metrics to Prometheus over HTTP (``streamplug run --metrics-port``).

Connectors record metrics through the OpenTelemetry API only (``streamplug.metrics``).
This module installs the OpenTelemetry SDK's ``MeterProvider`` with the Prometheus reader
and serves ``/metrics`` in the Prometheus text format. It needs the optional extra::

    pip install 'streamplug[metrics]'

Names are translated by the Prometheus exporter: dots become underscores and counters get
``_total``, so ``streamplug.KafkaSourceReader.commitsSucceeded`` is scraped as
``streamplug_KafkaSourceReader_commitsSucceeded_total``. Attributes (job, subtask,
topic, partition) become labels.

OpenTelemetry allows one global ``MeterProvider`` per process: the first call here sets it,
later calls reuse it and only start another HTTP listener.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import attrs

__all__ = ["INSTALL_HINT", "PrometheusEndpoint", "start_prometheus_exporter"]

INSTALL_HINT = "pip install 'streamplug[metrics]'"
SERVICE = "streamplug"

_lock = threading.Lock()
_reader: Any = None


def _require() -> tuple[Any, Any, Any, Any]:
    try:
        from opentelemetry import metrics as otel_metrics
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from prometheus_client import start_http_server
    except ImportError as exc:
        raise ImportError(
            f"serving metrics to Prometheus needs the OpenTelemetry SDK and Prometheus exporter "
            f"({exc.name or exc} is missing): {INSTALL_HINT}"
        ) from exc
    return otel_metrics, PrometheusMetricReader, MeterProvider, start_http_server


@attrs.define
class PrometheusEndpoint:
    """A running ``/metrics`` listener. ``close()`` stops the listener (the meter provider
    stays: OpenTelemetry cannot replace it within a process)."""

    host: str
    port: int
    _server: Any = attrs.field(default=None, repr=False)
    _thread: Any = attrs.field(default=None, repr=False)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


def _install_provider() -> None:
    global _reader
    otel_metrics, reader_cls, provider_cls, _ = _require()
    with _lock:
        if _reader is not None:
            return
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource

        reader = reader_cls()
        # Scraped as target_info{service_name=...}; OTEL_SERVICE_NAME names a deployment.
        resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or SERVICE})
        provider = provider_cls(metric_readers=[reader], resource=resource)
        otel_metrics.set_meter_provider(provider)
        if otel_metrics.get_meter_provider() is not provider:
            # Someone set an SDK provider first; its readers are fixed, ours would see nothing.
            provider.shutdown()
            raise RuntimeError(
                "another OpenTelemetry MeterProvider is already installed in this process; "
                "add a PrometheusMetricReader to it instead of using --metrics-port"
            )
        _reader = reader


def start_prometheus_exporter(port: int, host: str = "127.0.0.1") -> PrometheusEndpoint:
    """Install the SDK meter provider (once) and serve ``/metrics`` on ``host:port``.
    ``port=0`` picks a free port (see ``endpoint.port``). Raises ImportError naming
    ``pip install 'streamplug[metrics]'`` when the extra is missing, OSError when the port
    is taken."""
    _, _, _, start_http_server = _require()
    _install_provider()
    result = start_http_server(port, addr=host)
    server, thread = result if isinstance(result, tuple) else (None, None)
    actual = server.server_address[1] if server is not None else port
    return PrometheusEndpoint(host, int(actual), server, thread)
