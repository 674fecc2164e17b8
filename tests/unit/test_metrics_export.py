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


# What Prometheus 2.42 (Debian 12's) sends with every scrape, whatever its configuration.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)

SCRAPE_EACH_PATH = textwrap.dedent(
    """
    import sys, urllib.request
    from streamplug.metrics import MetricGroup
    from streamplug.metrics_export import start_prometheus_exporter

    endpoint = start_prometheus_exporter(0)
    MetricGroup(("task",), {"job": "j"}).counter("numRecordsOut").inc(7)
    for url in (endpoint.url, endpoint.text_url, endpoint.openmetrics_url):
        for accept in (sys.argv[1], None):
            headers = {"Accept": accept} if accept else {}
            request = urllib.request.Request(url, headers=headers)
            with urllib.request.urlopen(request, timeout=10) as response:
                kind = response.headers["Content-Type"]
                print(url.rsplit("/", 1)[1], bool(accept), kind, sep="|")
                print(response.read().decode())
                print("=====")
    endpoint.close()
    """
)


def test_fixed_format_paths_ignore_the_accept_header() -> None:
    from prometheus_client.openmetrics.parser import (
        text_string_to_metric_families as parse_openmetrics,
    )
    from prometheus_client.parser import text_string_to_metric_families as parse_text

    run = subprocess.run(
        [sys.executable, "-c", SCRAPE_EACH_PATH, PROMETHEUS_ACCEPT],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    served = {}
    for chunk in run.stdout.split("=====\n")[:-1]:
        head, _, body = chunk.partition("\n")
        path, asked, kind = head.split("|")
        served[(path, asked == "True")] = (kind, body.rstrip("\n") + "\n")  # print's newline
    assert len(served) == 6, run.stdout
    for (path, asked), (kind, body) in served.items():
        openmetrics = path == "openmetrics" or (path == "metrics" and asked)
        if openmetrics:
            assert kind.startswith("application/openmetrics-text; version=1.0.0"), (path, kind)
            families = {f.name: f for f in parse_openmetrics(body)}
            assert body.rstrip().endswith("# EOF")
        else:
            assert kind == "text/plain; version=0.0.4; charset=utf-8", (path, asked, kind)
            families = {f.name: f for f in parse_text(body)}
        out = families["streamplug_task_numrecordsout"]
        assert [s.value for s in out.samples if s.name.endswith("_total")] == [7.0], body
