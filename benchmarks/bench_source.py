"""Kafka source throughput: a bounded read of N records of 100 bytes through streamplug's
KafkaSource (parallelism 1, discarding sink) against the fastest hand-written
confluent-kafka consume loop, on the same broker in the same run.

Both sides use the same consumer tuning (fetch.queue.backoff.ms=10, queued.min.messages=
200000; librdkafka's defaults cap a draining consumer near 130k records/s) and batch
``consume(500)`` calls; the loop also reads every value, as any real consumer must. The
two alternate, run after run, and the medians are compared, so the ratio measures
streamplug's overhead rather than broker or machine noise.

    python benchmarks/bench_source.py [--records 1000000] [--partitions 1] [--runs 3]
                                      [--bootstrap-servers host:port]

Without --bootstrap-servers (or $STREAMPLUG_KAFKA_BOOTSTRAP) a local single-node Apache
Kafka is started for the run (streamplug-kafka-common's launcher).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

import confluent_kafka
from confluent_kafka import Consumer, Producer, TopicPartition

from streamplug.api import DeserializationSchema, WatermarkStrategy
from streamplug.connectors import DiscardingSink
from streamplug.plugins import build_plugin_host
from streamplug.runtime import StreamExecutionEnvironment
from streamplug_kafka_common import admin
from streamplug_kafka_source import KafkaOffsetsInitializer, KafkaSource

VALUE_BYTES = 100
# The hand loop's consume() size: the source's default poll.max.records. Both sides read
# fastest at about 500: larger batches outlive the garbage collector's young generation and
# full collections cost up to a third of the CPU (consume(10000) took twice the CPU).
BATCH = 500
TUNING = {"fetch.queue.backoff.ms": "10", "queued.min.messages": "200000"}


class PassThrough(DeserializationSchema[bytes]):
    """Values as they arrive: the same work as the hand-written loop, no decoding. Notes
    when the first batch arrives (one attribute test per batch), so job start-up can be
    told apart from reading."""

    def __init__(self) -> None:
        self.first: float | None = None

    def deserialize(self, message: bytes) -> bytes:
        return message

    def deserialize_batch(self, messages: Sequence[bytes]) -> list[bytes]:
        if self.first is None:
            self.first = time.perf_counter()
        return messages if isinstance(messages, list) else list(messages)


def produce(bootstrap: str, topic: str, records: int, partitions: int) -> None:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 2_000_000,
        }
    )
    value = b"x" * VALUE_BYTES
    for i in range(records):
        while True:
            try:
                producer.produce(topic, value, partition=i % partitions)
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush()


def hand_loop(
    bootstrap: str, topic: str, records: int, partitions: int
) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds, seconds to the first record."""
    start, cpu = time.perf_counter(), time.process_time()
    first: float | None = None
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            **TUNING,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seen = 0
    while seen < records:
        batch = consumer.consume(BATCH, 1.0)
        if first is None and batch:
            first = time.perf_counter()
        values = [m.value() for m in batch]
        seen += len(values)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    consumer.close()
    return elapsed, cpu, (first or start) - start


def streamplug_job(
    bootstrap: str, topic: str, records: int, schema: Any
) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds, seconds to the first record (NaN when the schema does
    not note it)."""
    if isinstance(schema, PassThrough):
        schema.first = None
    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(bootstrap)
        .set_topics(topic)
        .set_bounded(KafkaOffsetsInitializer.latest())
        .set_value_only_deserializer(schema)
        .set_property("register.consumer.metrics", "false")
        .build()
    )
    env = StreamExecutionEnvironment.get_execution_environment(build_plugin_host(autoload=False))
    env.set_parallelism(1)
    env.from_source(source, WatermarkStrategy.for_monotonous_timestamps(), "kafka").sink_to(
        DiscardingSink()
    )
    start, cpu = time.perf_counter(), time.process_time()
    result = env.execute("bench-source")
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    if result.records_in != records:
        raise SystemExit(f"streamplug read {result.records_in} records, expected {records}")
    first = getattr(schema, "first", None)
    return elapsed, cpu, (first - start) if first is not None else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--bootstrap-servers", default=os.environ.get("STREAMPLUG_KAFKA_BOOTSTRAP"))
    parser.add_argument(
        "--bytes-schema",
        action="store_true",
        help="deserialize with streamplug-serde's BytesSchema instead of a pass-through",
    )
    args = parser.parse_args()

    cluster = None
    bootstrap = args.bootstrap_servers
    if not bootstrap:
        from streamplug_testing.broker import KafkaCluster

        print("starting a local Apache Kafka...", flush=True)
        cluster = KafkaCluster(nodes=1).start()
        bootstrap = cluster.bootstrap_servers
    schema: Any = PassThrough()
    if args.bytes_schema:
        from streamplug_serde import BytesSchema

        schema = BytesSchema()
    try:
        topic = f"bench-source-{uuid.uuid4().hex[:8]}"
        admin.create_topic(bootstrap, topic, args.partitions)
        t0 = time.perf_counter()
        produce(bootstrap, topic, args.records, args.partitions)
        print(
            f"python {platform.python_version()}, "
            f"confluent-kafka {importlib.metadata.version('confluent-kafka')}"
            f" (librdkafka {confluent_kafka.libversion()[0]}), {os.cpu_count()} cores; "
            f"{args.records:,} x {VALUE_BYTES} B in {args.partitions} partition(s), "
            f"produced in {time.perf_counter() - t0:.1f} s; median of {args.runs} runs",
            flush=True,
        )
        wall: dict[str, list[float]] = {"hand": [], "streamplug": []}
        cpu: dict[str, list[float]] = {"hand": [], "streamplug": []}
        first: dict[str, list[float]] = {"hand": [], "streamplug": []}
        for i in range(args.runs):
            for name, run in (
                ("hand", lambda: hand_loop(bootstrap, topic, args.records, args.partitions)),
                ("streamplug", lambda: streamplug_job(bootstrap, topic, args.records, schema)),
            ):
                w, c, f = run()
                wall[name].append(w)
                cpu[name].append(c)
                first[name].append(f)
            print(
                f"  run {i + 1}/{args.runs}: hand-written {args.records / wall['hand'][-1]:,.0f}"
                f" rec/s (first record after {first['hand'][-1]:.3f} s), streamplug "
                f"{args.records / wall['streamplug'][-1]:,.0f} rec/s (first record after "
                f"{first['streamplug'][-1]:.3f} s)",
                flush=True,
            )
        rate = {k: args.records / statistics.median(v) for k, v in wall.items()}
        cpu_rate = {k: args.records / statistics.median(v) for k, v in cpu.items()}
        label = f"streamplug KafkaSource p=1 ({type(schema).__name__})"
        print(f"\n{'reader':<48}{'records/s':>12}{'ratio':>7}{'rec/CPU-s':>12}{'ratio':>7}")
        for name, text in (
            ("hand", "hand-written confluent-kafka consume loop"),
            ("streamplug", label),
        ):
            print(
                f"{text:<48}{rate[name]:>12,.0f}{rate[name] / rate['hand']:>7.2f}"
                f"{cpu_rate[name]:>12,.0f}{cpu_rate[name] / cpu_rate['hand']:>7.2f}"
            )
        ratio = rate["streamplug"] / rate["hand"]
        # The fastest run of each is the one least disturbed by other processes.
        best = min(wall["hand"]) / min(wall["streamplug"])
        print(
            "\nfirst record after (median): hand-written "
            f"{statistics.median(first['hand']):.3f} s, streamplug "
            f"{statistics.median(first['streamplug']):.3f} s (from execute())"
        )
        print(
            f"ratio {ratio:.2f} of medians, {best:.2f} of best runs (target >= 0.80); "
            f"load average {os.getloadavg()[0]:.1f}"
        )
    finally:
        if cluster is not None:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
