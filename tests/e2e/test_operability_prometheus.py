"""The Prometheus endpoint passes a stock scrape: a running Kafka -> Kafka job served in
both the Prometheus text format and OpenMetrics (what Prometheus asks for first), each
parsed by prometheus_client's own parser, with unique names, a service name, HELP on the
record counters, and values that count the job's records; and a real Prometheus server
scraping it in both formats (/metrics and /metrics/text), checked through its query
API."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka_job_support import produce_values

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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_job(
    tmp_path: Path,
    name: str,
    bootstrap: str,
    source_topic: str,
    sink_topic: str,
    metrics_port: int,
    checkpointing: str = "",
) -> subprocess.Popen[str]:
    """``streamplug run`` of pipeline ``name``: UTF-8 strings Kafka -> Kafka, at-least-once,
    its metrics served on ``metrics_port``; ``checkpointing`` is its [checkpointing] table."""
    pipeline = tmp_path / f"{name}.toml"
    pipeline.write_text(
        f"""\
[job]
name = "{name}"

{checkpointing}
[source]
connector = "kafka"
bootstrap_servers = "{bootstrap}"
topics = ["{source_topic}"]
starting_offsets = "earliest"
format = "string"

[sink]
connector = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "{sink_topic}"
format = "string"
delivery_guarantee = "at-least-once"
"""
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamplug.cli",
            "run",
            str(pipeline),
            "--no-progress",
            "--metrics-port",
            str(metrics_port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_both_formats_parse_with_unique_names_and_count_the_records(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    from prometheus_client.openmetrics.parser import (
        text_string_to_metric_families as parse_openmetrics,
    )
    from prometheus_client.parser import text_string_to_metric_families as parse_text

    source_topic, sink_topic = topic_factory(), topic_factory()
    produce_values(kafka_bootstrap, source_topic, (str(i).encode() for i in range(RECORDS)))
    port = _free_port()
    checkpointing = f'[checkpointing]\ninterval = "300 ms"\nstorage = "{tmp_path / "chk"}"\n'
    proc = _start_job(
        tmp_path, "scraped", kafka_bootstrap, source_topic, sink_topic, port, checkpointing
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

        undocumented = [
            name
            for name, f in om_families.items()
            if name.startswith("streamplug") and not f.documentation
        ]
        assert not undocumented, f"families without HELP: {undocumented}"
        runtime_out = om_families["streamplug_task_numrecordsout"]
        assert runtime_out.type == "gauge"
        assert runtime_out.documentation == "records that reached the sinks"
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


INSTALL = "sudo apt-get install -y --no-install-recommends prometheus"


def _query(prometheus: str, expression: str) -> list[dict[str, object]]:
    import json
    import urllib.parse

    url = f"{prometheus}/api/v1/query?query={urllib.parse.quote(expression)}"
    with urllib.request.urlopen(url, timeout=5) as response:
        answer = json.loads(response.read())
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


def _metadata(prometheus: str, metric: str) -> dict[str, tuple[str, str]]:
    """Scrape job -> (type, unit) of ``metric`` as Prometheus recorded it per target."""
    import json
    import urllib.parse

    url = f"{prometheus}/api/v1/targets/metadata?metric={urllib.parse.quote(metric)}"
    with urllib.request.urlopen(url, timeout=5) as response:
        answer = json.loads(response.read())
    assert answer["status"] == "success", answer
    return {
        str(entry["target"]["job"]): (str(entry["type"]), str(entry["unit"]))
        for entry in answer["data"]
    }


def test_a_real_prometheus_scrapes_a_running_job_in_both_formats(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    import shutil

    binary = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if binary is None:
        pytest.skip(
            f"Prometheus is not installed (tox installs it as root through "
            f".ci/install-system.sh): {INSTALL}"
        )
    source_topic, sink_topic = topic_factory(), topic_factory()
    produce_values(kafka_bootstrap, source_topic, (str(i).encode() for i in range(RECORDS)))
    job_port, prom_port = _free_port(), _free_port()
    config = tmp_path / "prometheus.yml"
    # Two scrapes of one endpoint: /metrics, where Prometheus 2.42's Accept header gets
    # OpenMetrics, and /metrics/text, which serves the text format 0.0.4 whatever Accept
    # says (2.42 has no scrape_protocols to ask for it).
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: openmetrics\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{job_port}']\n"
        "  - job_name: text\n"
        "    metrics_path: /metrics/text\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{job_port}']\n"
    )
    job = _start_job(tmp_path, "prom-scraped", kafka_bootstrap, source_topic, sink_topic, job_port)
    server = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    prometheus = f"http://127.0.0.1:{prom_port}"
    try:
        deadline = time.monotonic() + 60
        counted: dict[str, float] = {}
        # Per scrape job: the sink's counter, summed over subtasks and the job's label.
        expression = "sum by (job) (streamplug_task_kafkasinkwriter_numrecordsout_total)"
        while time.monotonic() < deadline:
            assert job.poll() is None, job.communicate()[1]
            assert server.poll() is None, server.communicate()[1]
            time.sleep(1)
            try:
                counted = {
                    str(r["metric"]["job"]): float(str(r["value"][1]))  # type: ignore[index]
                    for r in _query(prometheus, expression)
                }
            except OSError:
                continue
            if len(counted) == 2 and min(counted.values()) >= RECORDS:
                break
        # Both scrapes succeeded, and each holds the job's record counters.
        up = {str(r["metric"]["job"]): r["value"][1] for r in _query(prometheus, "up")}  # type: ignore[index]
        assert up == {"openmetrics": "1", "text": "1"}, up
        assert counted == {"openmetrics": RECORDS, "text": RECORDS}, counted
        runtime = {
            str(r["metric"]["job"]): float(str(r["value"][1]))  # type: ignore[index]
            for r in _query(prometheus, "sum by (job) (streamplug_task_numrecordsout)")
        }
        assert runtime == {"openmetrics": RECORDS, "text": RECORDS}, runtime
        targets = {
            str(r["metric"]["job"]): r["metric"]["service_name"]  # type: ignore[index]
            for r in _query(prometheus, "target_info")
        }
        assert targets == {"openmetrics": "streamplug", "text": "streamplug"}, targets
        # Which format each scrape got, in Prometheus' own words: only OpenMetrics
        # carries units (# UNIT), and names a counter's family without _total.
        metadata = _metadata(prometheus, "streamplug_task_kafkasinkwriter_numbytesout_bytes")
        assert metadata.get("openmetrics") == ("counter", "bytes"), metadata
        assert "text" not in metadata, metadata
        text_metadata = _metadata(
            prometheus, "streamplug_task_kafkasinkwriter_numbytesout_bytes_total"
        )
        assert text_metadata.get("text") == ("counter", ""), text_metadata
    finally:
        for process in (job, server):
            process.send_signal(signal.SIGTERM)
        for process in (job, server):
            try:
                process.wait(30)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
