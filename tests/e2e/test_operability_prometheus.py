"""The Prometheus endpoint passes a stock scrape: a running Kafka -> Kafka job served in
both the Prometheus text format and OpenMetrics (what Prometheus asks for first), each
parsed by prometheus_client's own parser, with unique names, a service name, HELP on the
record counters, and values that count the job's records."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

pytest.importorskip(
    "opentelemetry.exporter.prometheus", reason="needs pip install 'streamplug[metrics]'"
)

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
RECORDS = 500


def _get(url: str, accept: str | None) -> tuple[str, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.headers.get("Content-Type", ""), response.read().decode()


def test_both_formats_parse_with_unique_names_and_count_the_records(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    from confluent_kafka import Producer
    from prometheus_client.openmetrics.parser import (
        text_string_to_metric_families as parse_openmetrics,
    )
    from prometheus_client.parser import text_string_to_metric_families as parse_text

    source_topic, sink_topic = topic_factory(), topic_factory()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(RECORDS):
        producer.produce(source_topic, str(i).encode())
    assert producer.flush(10) == 0
    pipeline = tmp_path / "metered.toml"
    pipeline.write_text(
        f"""\
[job]
name = "scraped"

[checkpointing]
interval = "300 ms"
storage = "{tmp_path / "chk"}"

[source]
connector = "kafka"
bootstrap_servers = "{kafka_bootstrap}"
topics = ["{source_topic}"]
starting_offsets = "earliest"
format = "string"

[sink]
connector = "kafka"
bootstrap_servers = "{kafka_bootstrap}"
topic = "{sink_topic}"
format = "string"
delivery_guarantee = "at-least-once"
"""
    )
    port = 0
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamplug.cli",
            "run",
            str(pipeline),
            "--no-progress",
            "--metrics-port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        deadline = time.monotonic() + 60
        written = 0.0
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            try:
                _, text = _get(url, None)
            except OSError:
                continue
            families = {f.name: f for f in parse_text(text)}
            writer = families.get("streamplug_task_kafkasinkwriter_numrecordsout")
            if writer is not None:
                written = sum(s.value for s in writer.samples if s.name.endswith("_total"))
                if written >= RECORDS:
                    break
        assert proc.poll() is None, proc.communicate()[1]
        assert written == RECORDS, f"the sink counted {written} of {RECORDS}"

        content_type, text = _get(url, None)
        assert content_type.startswith("text/plain"), content_type
        text_families = list(parse_text(text))
        names = [f.name for f in text_families]
        assert len(names) == len(set(names)), "a metric family appears twice"

        content_type, om = _get(url, OPENMETRICS)
        assert content_type.startswith("application/openmetrics-text"), content_type
        # Raises on what Prometheus' OpenMetrics scrape rejects (clashing names, ...).
        om_families = {f.name: f for f in parse_openmetrics(om)}
        assert om.rstrip().endswith("# EOF")

        runtime_out = om_families["streamplug_task_numrecordsout"]
        assert runtime_out.type == "gauge"
        assert sum(s.value for s in runtime_out.samples) == RECORDS
        sink_out = om_families["streamplug_task_kafkasinkwriter_numrecordsout"]
        assert sink_out.type == "counter"
        assert sink_out.documentation == "records handed to the producer"
        assert sum(s.value for s in sink_out.samples) == RECORDS
        bytes_out = om_families["streamplug_task_kafkasinkwriter_numbytesout_bytes"]
        assert bytes_out.unit == "bytes"

        target = om_families["target"]
        labels = target.samples[0].labels
        assert labels.get("service_name") == "streamplug", labels
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
