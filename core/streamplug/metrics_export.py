"""Serving streamplug's metrics to Prometheus over HTTP (``streamplug run --metrics-port``).

Connectors record metrics through the OpenTelemetry API only (``streamplug.metrics``).
This module installs the OpenTelemetry SDK's ``MeterProvider`` with the Prometheus reader
and serves ``/metrics`` in the Prometheus text format. It needs the optional extra::

    pip install 'streamplug[metrics]'

Paths: ``/metrics`` picks the format from the scraper's ``Accept`` header (OpenMetrics when
asked for it, as Prometheus does first, else the text format 0.0.4). ``/metrics/text``
always serves the text format 0.0.4 and ``/metrics/openmetrics`` always OpenMetrics 1.0,
whatever ``Accept`` says: for scrapers that mishandle one format and cannot be told to
ask for the other (Prometheus before 2.49 has no ``scrape_protocols``; point its
``metrics_path`` at ``/metrics/text``).

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

# Paths that serve one format whatever the scraper's Accept header says, and the Accept
# header each stands for (what prometheus_client's encoder choice reads).
TEXT_PATH = "/metrics/text"
OPENMETRICS_PATH = "/metrics/openmetrics"
_FORCED_ACCEPT = {
    TEXT_PATH: "text/plain; version=0.0.4; charset=utf-8",
    OPENMETRICS_PATH: "application/openmetrics-text; version=1.0.0; charset=utf-8",
}

_lock = threading.Lock()
_reader: Any = None


def _require() -> tuple[Any, Any, Any, Any]:
    try:
        from opentelemetry import metrics as otel_metrics
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from prometheus_client import make_wsgi_app
    except ImportError as exc:
        raise ImportError(
            f"serving metrics to Prometheus needs the OpenTelemetry SDK and Prometheus exporter "
            f"({exc.name or exc} is missing): {INSTALL_HINT}"
        ) from exc
    return otel_metrics, PrometheusMetricReader, MeterProvider, make_wsgi_app


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
        """``/metrics``: the format the scraper's ``Accept`` header asks for."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    @property
    def text_url(self) -> str:
        """``/metrics/text``: always the Prometheus text format 0.0.4."""
        return self.url + TEXT_PATH.removeprefix("/metrics")

    @property
    def openmetrics_url(self) -> str:
        """``/metrics/openmetrics``: always OpenMetrics 1.0."""
        return self.url + OPENMETRICS_PATH.removeprefix("/metrics")

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


def _app(make_wsgi_app: Any) -> Any:
    """prometheus_client's WSGI app behind the fixed-format paths."""
    negotiated = make_wsgi_app()

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        forced = _FORCED_ACCEPT.get(environ.get("PATH_INFO", "").rstrip("/"))
        if forced is not None:
            environ = {**environ, "HTTP_ACCEPT": forced}
        return negotiated(environ, start_response)

    return app


def _serve(app: Any, port: int, host: str) -> tuple[Any, threading.Thread]:
    import socket
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]

    class Server(ThreadingMixIn, WSGIServer):
        address_family = family
        # Request threads never outlive the process's interest in them.
        daemon_threads = True

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per scrape on stderr is noise

    server = make_server(host, port, app, Server, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="prometheus-endpoint", daemon=True)
    thread.start()
    return server, thread


def start_prometheus_exporter(port: int, host: str = "127.0.0.1") -> PrometheusEndpoint:
    """Install the SDK meter provider (once) and serve ``/metrics`` (and the fixed-format
    ``/metrics/text`` and ``/metrics/openmetrics``) on ``host:port``. ``port=0`` picks a
    free port (see ``endpoint.port``). Raises ImportError naming
    ``pip install 'streamplug[metrics]'`` when the extra is missing, OSError when the port
    is taken."""
    make_wsgi_app = _require()[3]
    _install_provider()
    server, thread = _serve(_app(make_wsgi_app), port, host)
    return PrometheusEndpoint(host, int(server.server_address[1]), server, thread)
