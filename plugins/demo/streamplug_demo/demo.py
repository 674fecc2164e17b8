"""``streamplug demo``: an exactly-once Kafka -> transform -> Kafka pipeline, end to end.

1. Kafka: librdkafka's mock cluster inside this process (no Java, nothing to install), or
   the user's cluster with ``--bootstrap-servers`` (topics get a unique suffix).
2. A generator thread produces order events into the input topic.
3. The pipeline — Kafka source (JSON, bounded out-of-orderness watermarks on the events'
   ``ts``) -> ``enrich`` -> Kafka sink (EXACTLY_ONCE: one transaction per checkpoint) — is
   described in the same schema as a pipeline file and built by ``streamplug.pipeline``.
4. A progress line shows records/s, consumer lag (events produced minus records read),
   checkpoints and the watermark.
5. When every event was read, the job stops with a final checkpoint (which commits the
   last transaction), and the output topic is read ``read_committed`` and compared with
   the input: every event exactly once, transformed correctly.

The mock cluster keeps at most ~45k small records per partition, so the demo spreads
events over enough partitions (and writes its output round-robin) to stay below that.
"""

from __future__ import annotations

import collections
import json
import logging
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, TextIO

import attrs
from confluent_kafka import KafkaException, Producer

from streamplug.pipeline import ProgressLine, build_pipeline, pipeline_from_dict
from streamplug.pipeline.progress import format_count
from streamplug.plugins import PluginHost
from streamplug.runtime import JobMetrics
from streamplug_demo.transforms import enrich, make_event

__all__ = ["DemoCheck", "DemoSettings", "run_demo"]

log = logging.getLogger(__name__)

MOCK_RECORDS_PER_PARTITION = 25_000
"""Events per partition on the mock cluster, well under its ~45k-record retention."""


@attrs.frozen
class DemoSettings:
    events: int = 200_000
    parallelism: int = 2
    partitions: int | None = None
    checkpoint_interval_ms: int = 1000
    rate: float | None = None
    bootstrap_servers: str | None = None
    checkpoint_dir: Path | None = None
    timeout_s: float = 300.0


@attrs.frozen
class DemoCheck:
    """What the closing check found in the output topic."""

    expected: int
    output_records: int
    missing: int
    duplicates: int
    wrong: int

    @property
    def passed(self) -> bool:
        return (
            self.missing == 0
            and self.duplicates == 0
            and self.wrong == 0
            and self.output_records == self.expected
        )


@attrs.frozen
class DemoResult:
    check: DemoCheck
    elapsed_s: float
    pipeline_s: float
    checkpoints: int
    input_topic: str
    output_topic: str


class _Generator(threading.Thread):
    """Produces the events, optionally at a fixed rate; ``produced`` counts acknowledged ones."""

    def __init__(
        self, bootstrap: str, topic: str, events: int, base_ts: int, rate: float | None
    ) -> None:
        super().__init__(name="demo-generator", daemon=True)
        self.bootstrap = bootstrap
        self.topic = topic
        self.events = events
        self.base_ts = base_ts
        self.rate = rate
        self.produced = 0
        self.error: BaseException | None = None
        self.stopped = threading.Event()

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.error = KafkaException(err)
        else:
            self.produced += 1

    def run(self) -> None:
        producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "linger.ms": 20,
                "batch.num.messages": 10_000,
                "queue.buffering.max.messages": 500_000,
                "enable.idempotence": True,
            }
        )
        started = time.monotonic()
        dumps = json.dumps
        try:
            for seq in range(self.events):
                if self.stopped.is_set() or self.error is not None:
                    break
                if self.rate is not None and seq % 1000 == 0:
                    ahead = seq / self.rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
                event = make_event(seq, self.base_ts)
                while True:
                    try:
                        producer.produce(
                            self.topic,
                            dumps(event, separators=(",", ":")).encode(),
                            key=str(seq).encode(),
                            timestamp=event["ts"],
                            on_delivery=self._delivered,
                        )
                        break
                    except BufferError:
                        producer.poll(0.05)
                if seq % 5000 == 0:
                    producer.poll(0)
            while producer.flush(1.0) > 0 and not self.stopped.is_set():
                pass
        except BaseException as exc:
            self.error = exc


def _lag(metrics: JobMetrics, generator: _Generator) -> int:
    """Events the broker acknowledged minus records read. Exact for the demo's input topic,
    which only the generator writes and the job reads from the start; the source's own
    ``pending_records`` comes from librdkafka statistics up to an interval old, and would
    still show a lag when the run ends with everything read."""
    return max(0, generator.produced - metrics.records_in)


def _pipeline_document(
    settings: DemoSettings,
    bootstrap: str,
    topics: tuple[str, str],
    suffix: str,
    checkpoint_dir: Path,
) -> dict[str, Any]:
    """The demo's pipeline in the pipeline-file schema (``streamplug run`` reads the same)."""
    input_topic, output_topic = topics
    return {
        "job": {"name": f"streamplug-demo-{suffix}", "parallelism": settings.parallelism},
        "checkpointing": {
            "interval": settings.checkpoint_interval_ms,
            "timeout": "60 s",
            "storage": str(checkpoint_dir),
        },
        "restart_strategy": {"type": "fixed-delay", "attempts": 3, "delay": "1 s"},
        "source": {
            "connector": "kafka",
            "name": "orders",
            "bootstrap_servers": bootstrap,
            "topics": [input_topic],
            "group_id": f"streamplug-demo-{suffix}",
            "starting_offsets": "earliest",
            "format": "json",
            "watermarks": {
                "strategy": "bounded-out-of-orderness",
                "max_out_of_orderness": "2 s",
                "timestamp_field": "ts",
            },
        },
        "transform": [{"map": "streamplug_demo.transforms:enrich", "name": "enrich"}],
        "sink": [
            {
                "connector": "kafka",
                "name": "enriched",
                "bootstrap_servers": bootstrap,
                "topic": output_topic,
                "format": "json",
                "partitioner": "round-robin",
                "delivery_guarantee": "exactly-once",
                "transactional_id_prefix": f"streamplug-demo-{suffix}",
                # Must outlast a checkpoint interval plus timeout; brokers cap it at
                # transaction.max.timeout.ms (15 min by default).
                "properties": {"transaction.timeout.ms": "300000"},
            }
        ],
    }


def check_output(bootstrap: str, output_topic: str, events: int, base_ts: int) -> DemoCheck:
    """Read the output ``read_committed`` and compare it with what ``enrich`` makes of
    every generated event."""
    from streamplug_kafka_common import admin

    seen: collections.Counter[int] = collections.Counter()
    wrong = 0
    records = admin.read_all(bootstrap, output_topic, "read_committed", timeout=120)
    for msg in records:
        raw = msg.value()
        if raw is None:  # a tombstone is never what the demo's sink writes
            wrong += 1
            continue
        value = json.loads(raw)
        seq = int(value["id"])
        seen[seq] += 1
        if seen[seq] == 1 and (not 0 <= seq < events or value != enrich(make_event(seq, base_ts))):
            wrong += 1
    missing = sum(1 for seq in range(events) if seq not in seen)
    duplicates = sum(n - 1 for n in seen.values() if n > 1)
    return DemoCheck(events, len(records), missing, duplicates, wrong)


def run_demo(
    settings: DemoSettings,
    host: PluginHost,
    *,
    out: TextIO | None = None,
    progress: ProgressLine | None = None,
) -> DemoResult:
    """Run the whole demo; returns what the closing check found. Raises on setup errors."""
    out = out or sys.stdout
    started = time.monotonic()
    suffix = uuid.uuid4().hex[:8]
    mock = None
    if settings.bootstrap_servers:
        bootstrap = settings.bootstrap_servers
        partitions = settings.partitions or 8
        where = f"your Kafka at {bootstrap}"
    else:
        from streamplug_testing.mock import MockCluster

        mock = MockCluster(brokers=1)
        bootstrap = mock.bootstrap_servers
        partitions = settings.partitions or max(
            4, -(-settings.events // MOCK_RECORDS_PER_PARTITION)
        )
        where = f"embedded Kafka (librdkafka mock cluster, in this process) at {bootstrap}"
    input_topic = f"streamplug-demo-orders-{suffix}"
    output_topic = f"streamplug-demo-enriched-{suffix}"
    tmp: tempfile.TemporaryDirectory[str] | None = None
    try:
        if mock is not None:
            mock.create_topic(input_topic, partitions)
            mock.create_topic(output_topic, partitions)
            # The exactly-once sink's decision records; the mock cannot create topics on request.
            mock.create_topic(f"streamplug-demo-{suffix}.streamplug-commits", 1)
        else:
            from streamplug_kafka_common import admin

            admin.create_topic(bootstrap, input_topic, partitions)
            admin.create_topic(bootstrap, output_topic, partitions)
        if settings.checkpoint_dir is not None:
            checkpoint_dir = settings.checkpoint_dir
        else:
            tmp = tempfile.TemporaryDirectory(prefix="streamplug-demo-")
            checkpoint_dir = Path(tmp.name)
        document = _pipeline_document(
            settings, bootstrap, (input_topic, output_topic), suffix, checkpoint_dir
        )
        config = pipeline_from_dict(document, file="<streamplug demo>")
        built = build_pipeline(config, host, restore="none")

        print(f"streamplug demo: {where}", file=out)
        print(
            f"  {input_topic} ({partitions} partitions) -> {output_topic} ({partitions} partitions)",
            file=out,
        )
        print(
            f"  pipeline: kafka source (json, event-time watermarks) -> map enrich -> kafka sink "
            f"(exactly-once), parallelism {settings.parallelism}, checkpoint every "
            f"{settings.checkpoint_interval_ms} ms",
            file=out,
        )
        print(
            f"  generating {settings.events:,} order events"
            + (f" at {settings.rate:,.0f}/s" if settings.rate else ""),
            file=out,
            flush=True,
        )

        base_ts = int(time.time() * 1000) - settings.events * 5
        generator = _Generator(bootstrap, input_topic, settings.events, base_ts, settings.rate)
        generator.start()
        pipeline_started = time.monotonic()
        client = built.env.execute_async(built.job_name)
        if progress is not None:
            progress.lag = lambda m: _lag(m, generator)
        deadline = pipeline_started + settings.timeout_s
        try:
            while True:
                metrics = client.metrics()
                if progress is not None:
                    progress.update(metrics)
                if generator.error is not None:
                    raise RuntimeError(f"the event generator failed: {generator.error}")
                if client.status.is_terminal:
                    client.wait()  # raises the job's failure
                    raise RuntimeError(f"the demo job ended early ({client.status.value})")
                if metrics.records_in >= settings.events:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"the demo read {metrics.records_in:,} of {settings.events:,} events in "
                        f"{settings.timeout_s:.0f} s; is the broker reachable and the input topic intact?"
                    )
                client.wait_quietly(0.25)
            # Stop like Flink's stop-with-savepoint: a final checkpoint commits the last transaction.
            client.stop(timeout=120)
            result = client.wait(0)
        finally:
            generator.stopped.set()
            if not client.status.is_terminal:
                client.cancel()
                client.wait_quietly(30)
            if progress is not None:
                progress.finish(client.metrics())
        pipeline_s = time.monotonic() - pipeline_started
        print(f"checking: reading {output_topic} read_committed ...", file=out, flush=True)
        check = check_output(bootstrap, output_topic, settings.events, base_ts)
        if mock is not None:
            # Honest about the embedded broker: its transactions lack fencing and crash
            # recovery, so this run shows the pipeline, not a proof of exactly-once.
            print(
                "note: the embedded broker is librdkafka's mock cluster; exactly-once across "
                "crashes is proven on real Kafka (streamplug demo --bootstrap-servers HOST:PORT)",
                file=out,
            )
        elapsed = time.monotonic() - started
        return DemoResult(
            check, elapsed, pipeline_s, result.checkpoints_completed, input_topic, output_topic
        )
    finally:
        if tmp is not None:
            tmp.cleanup()
        if mock is not None:
            mock.close()


def describe_check(result: DemoResult) -> str:
    c = result.check
    verdict = "PASSED" if c.passed else "FAILED"
    return (
        f"check {verdict}: {c.output_records:,} committed output records for {c.expected:,} input events "
        f"({c.missing:,} missing, {c.duplicates:,} duplicated, {c.wrong:,} wrong)\n"
        f"done in {result.elapsed_s:.1f} s (pipeline {result.pipeline_s:.1f} s, "
        f"{format_count(c.expected / result.pipeline_s if result.pipeline_s else 0)} events/s, "
        f"{result.checkpoints} checkpoints)"
    )
