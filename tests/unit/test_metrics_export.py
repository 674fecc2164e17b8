"""The Prometheus endpoint: what it serves, and the install hint when the extra is missing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from streamplug import metrics_export

pytest.importorskip("opentelemetry.exporter.prometheus")

# OpenTelemetry allows one MeterProvider per process and other tests install their own,
# so the endpoint is exercised in a fresh interpreter.
SERVE_AND_SCRAPE = textwrap.dedent(
    """
    import sys, urllib.request
    from streamplug.metrics import MetricGroup
    from streamplug.metrics_export import start_prometheus_exporter

    group = MetricGroup(("KafkaSourceReader",), {"job": "j", "subtask": 0})
    early = group.counter("commitsSucceeded")   # created before the provider exists
    endpoint = start_prometheus_exporter(0)
    early.inc(3)
    group.gauge("pendingRecords", lambda: 42)
    group.add_group("topic", topic="orders", partition=1).counter("bytesConsumed").inc(100)
    second = start_prometheus_exporter(0)        # a second listener shares the provider
    for url in (endpoint.url, second.url):
        print(urllib.request.urlopen(url, timeout=10).read().decode())
        print("=====")
    endpoint.close()
    second.close()
    try:
        urllib.request.urlopen(endpoint.url, timeout=2)
    except OSError:
        print("closed")
    """
)


def test_the_endpoint_serves_streamplug_metrics_in_prometheus_text() -> None:
    run = subprocess.run(
        [sys.executable, "-c", SERVE_AND_SCRAPE], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    first, second, tail = run.stdout.split("=====\n")
    for text in (first, second):
        lines = text.splitlines()
        # The SDK lower-cases instrument names; the exporter turns dots into underscores.
        counter = [
            ln
            for ln in lines
            if ln.startswith("streamplug_kafkasourcereader_commitssucceeded_total{")
        ]
        assert len(counter) == 1, text
        assert 'job="j"' in counter[0] and 'subtask="0"' in counter[0]
        assert counter[0].endswith(" 3.0")
        gauge = [
            ln for ln in lines if ln.startswith("streamplug_kafkasourcereader_pendingrecords{")
        ]
        assert gauge and gauge[0].endswith(" 42.0"), text
        per_partition = [
            ln for ln in lines if ln.startswith("streamplug_kafkasourcereader_bytesconsumed")
        ]
        assert (
            per_partition
            and 'topic="orders"' in per_partition[0]
            and 'partition="1"' in per_partition[0]
        )
    assert tail.strip() == "closed"


def test_a_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.prometheus", None)
    with pytest.raises(ImportError) as info:
        metrics_export.start_prometheus_exporter(0)
    assert "pip install 'streamplug[metrics]'" in str(info.value)
    assert metrics_export.INSTALL_HINT == "pip install 'streamplug[metrics]'"
