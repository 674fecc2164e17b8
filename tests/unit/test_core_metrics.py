"""Runtime metrics reach an OpenTelemetry SDK reader under Flink's names."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from streamplug.connectors import CollectionSource, CollectSink
from streamplug.metrics import MetricGroup
from streamplug.plugins import build_plugin_host
from streamplug.runtime import StreamExecutionEnvironment

sdk_metrics = pytest.importorskip("opentelemetry.sdk.metrics")
export = pytest.importorskip("opentelemetry.sdk.metrics.export")


@pytest.fixture(scope="module")
def reader() -> object:
    from opentelemetry import metrics

    reader = export.InMemoryMetricReader()
    metrics.set_meter_provider(sdk_metrics.MeterProvider(metric_readers=[reader]))
    return reader


def _points(reader: object) -> dict[str, list[tuple[dict[str, object], float]]]:
    data = reader.get_metrics_data()  # type: ignore[attr-defined]
    found: dict[str, list[tuple[dict[str, object], float]]] = {}
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    # The SDK lower-cases instrument names; compare in Flink's spelling.
                    found.setdefault(metric.name.lower(), []).append(
                        (dict(point.attributes), point.value)
                    )
    return found


def test_task_and_checkpoint_metrics_are_exported(reader: object, tmp_path: Path) -> None:
    env = StreamExecutionEnvironment.get_execution_environment(build_plugin_host(autoload=False))
    env.set_parallelism(2).enable_checkpointing(30)
    env.get_checkpoint_config().set_checkpoint_storage_dir(tmp_path)
    source = CollectionSource(list(range(2000)), batch_size=50, records_per_second=4000)
    env.from_source(source, None, "numbers").sink_to(CollectSink())
    client = env.execute_async("metered")
    # Sample while the job runs (a loaded machine may take a while to start it). The task
    # gauges go away when the job ends, so keep the last sample that had records in, and
    # the highest checkpoint count seen: on a slow machine the first checkpoint can land
    # after the last sample in which the subtasks still report.
    deadline = time.monotonic() + 20
    records_in: list[tuple[dict[str, object], float]] = []
    checkpoints = 0.0
    while time.monotonic() < deadline and not (records_in and checkpoints >= 1):
        points = _points(reader)
        sample = points.get("streamplug.task.numrecordsin", [])
        if sample and sum(v for _, v in sample) > 0:
            records_in = sample
        for _, value in points.get("streamplug.job.numberofcompletedcheckpoints", []):
            checkpoints = max(checkpoints, value)
        time.sleep(0.05)
    client.wait(30)
    assert {attrs["subtask"] for attrs, _ in records_in} == {0, 1}
    assert all(attrs["job"] == "metered" for attrs, _ in records_in)
    assert sum(v for _, v in records_in) > 0
    assert checkpoints >= 1


def test_task_metrics_of_worker_processes_are_served_by_the_driver(
    reader: object, tmp_path: Path
) -> None:
    """With the processes runtime the subtasks live in other processes; the driver's
    exporter still shows their records in and out, from the slots' progress reports."""
    env = StreamExecutionEnvironment.get_execution_environment(build_plugin_host(autoload=False))
    env.set_parallelism(2).set_runtime("processes")
    source = CollectionSource(list(range(4000)), batch_size=50, records_per_second=2000)
    env.from_source(source, None, "numbers").sink_to(CollectSink(path=tmp_path / "out"))
    client = env.execute_async("metered-processes")
    deadline = time.monotonic() + 30

    def seen() -> dict[int, float]:
        return {
            attrs["subtask"]: value
            for attrs, value in _points(reader).get("streamplug.task.numrecordsout", [])
            if attrs["job"] == "metered-processes"
        }

    while time.monotonic() < deadline and not (len(seen()) == 2 and all(seen().values())):
        time.sleep(0.05)
    assert set(seen()) == {0, 1} and all(v > 0 for v in seen().values()), seen()
    assert client.worker_pids()
    client.wait(60)


def test_counters_keep_a_local_value_and_closed_groups_stop_reporting(reader: object) -> None:
    group = MetricGroup(("KafkaSourceReader",), {"job": "j"})
    counter = group.counter("commitsSucceeded")
    counter.inc()
    counter.inc(2)
    assert counter.value == 3
    value = [5]
    group.add_group("topic", topic="t", partition=0).gauge("currentOffsets", lambda: value[0])
    assert _points(reader)["streamplug.kafkasourcereader.currentoffsets"] == [
        ({"job": "j", "topic": "t", "partition": 0}, 5)
    ]
    group.close()
    assert "streamplug.kafkasourcereader.currentoffsets" not in _points(reader)
