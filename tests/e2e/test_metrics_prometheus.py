"""``streamplug run --metrics-port``: Prometheus scrapes the source's and the sink's metrics
while a Kafka -> Kafka pipeline runs on a real broker."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

pytest.importorskip(
    "opentelemetry.exporter.prometheus", reason="needs pip install 'streamplug[metrics]'"
)

# Metrics the connectors document (Flink's names; the SDK lower-cases them and the
# exporter turns dots into underscores), as patterns over the scraped metric names.
SOURCE_METRICS = {
    "KafkaSourceReader.commitsSucceeded": r"kafkasourcereader_commitssucceeded_total",
    "KafkaSourceReader.currentOffset (per partition)": r"kafkasourcereader_currentoffset",
    "pendingRecords": r"pendingrecords",
    "KafkaConsumer statistics": r"kafkasourcereader_kafkaconsumer_rxmsgs",
}
SINK_METRICS = {
    "numBytesOut": r"numbytesout\w*_total",
    "numRecordsOut": r"numrecordsout\w*_total",
    "currentSendTime": r"currentsendtime",
    "KafkaProducer statistics": r"kafkaproducer_txmsgs",
}
JOB_METRICS = {"numberOfCompletedCheckpoints": r"job_numberofcompletedcheckpoints"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(url: str) -> dict[str, list[str]]:
    """Metric name -> its sample lines."""
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    samples: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("streamplug_"):
            samples.setdefault(re.split(r"[{ ]", line, maxsplit=1)[0], []).append(line)
    return samples


def _find(samples: dict[str, list[str]], pattern: str) -> list[str]:
    return [line for name, lines in samples.items() if re.search(pattern, name) for line in lines]


def test_prometheus_scrape_during_a_run_has_source_and_sink_metrics(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    from confluent_kafka import Producer

    source_topic = topic_factory(partitions=2, name="metrics-in")
    sink_topic = topic_factory(partitions=2, name="metrics-out")
    stop = threading.Event()

    def produce() -> None:
        producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
        n = 0
        while not stop.is_set():
            for _ in range(200):
                producer.produce(source_topic, json.dumps({"n": n}).encode())
                n += 1
            producer.poll(0)
            time.sleep(0.05)
        producer.flush(10)

    feeder = threading.Thread(target=produce, daemon=True)
    feeder.start()
    pipeline = tmp_path / "metered.toml"
    pipeline.write_text(
        f"""\
[job]
name = "metered"
parallelism = 2

[checkpointing]
interval = "500 ms"
timeout = "30 s"
storage = "{tmp_path / "chk"}"

[source]
connector = "kafka"
topics = ["{source_topic}"]
group_id = "metered"
format = "json"

[sink]
connector = "kafka"
topic = "{sink_topic}"
format = "json"
delivery_guarantee = "at-least-once"
"""
    )
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamplug.cli",
            "run",
            str(pipeline),
            "--bootstrap-servers",
            kafka_bootstrap,
            "--metrics-port",
            str(port),
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wanted = {**SOURCE_METRICS, **SINK_METRICS, **JOB_METRICS}
    missing = dict(wanted)
    samples: dict[str, list[str]] = {}
    try:
        deadline = time.monotonic() + 90
        while missing and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(1)
            try:
                samples = _scrape(f"http://127.0.0.1:{port}/metrics")
            except OSError:
                continue
            missing = {k: p for k, p in missing.items() if not _find(samples, p)}
        assert proc.poll() is None, proc.communicate()[1]
        assert not missing, f"not scraped: {sorted(missing)}; names seen: {sorted(samples)}"

        # Labels say which job, subtask and partition a value belongs to.
        offsets = _find(samples, SOURCE_METRICS["KafkaSourceReader.currentOffset (per partition)"])
        assert any(f'topic="{source_topic}"' in line for line in offsets), offsets
        assert all('job="metered"' in line for line in offsets)
        sent = _find(samples, SINK_METRICS["numRecordsOut"])
        assert sum(float(line.rsplit(" ", 1)[1]) for line in sent) > 0, sent
        checkpoints = _find(samples, JOB_METRICS["numberOfCompletedCheckpoints"])
        assert float(checkpoints[0].rsplit(" ", 1)[1]) >= 1
    finally:
        stop.set()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        feeder.join(15)
    assert proc.returncode == 0, out + err
    assert f"metrics: http://127.0.0.1:{port}/metrics" in out
