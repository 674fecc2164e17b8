"""Kafka -> Kafka throughput under each delivery guarantee: a streamplug job (KafkaSource ->
KafkaSink, parallelism 1 and 2, checkpoints every second) against the fastest hand-written
confluent-kafka loops with the same guarantee, on the same broker in the same run.

Hand-written baselines (one consumer, one producer, batch ``consume(500)``, the tuned
fetch settings streamplug's source uses, error-only delivery reports):

* NONE — consume and produce, nothing waited for until the end;
* AT_LEAST_ONCE — idempotent producer (acks=all); every second ``flush()`` (all acks) and a
  synchronous offset commit, which is what a checkpoint does;
* EXACTLY_ONCE — transactional producer; every second ``send_offsets_to_transaction`` +
  ``commit_transaction`` + ``begin_transaction``: the same commit cadence as the job.

Runs come in pairs (one baseline, one streamplug job per parallelism), the order inside
a pair swapped every other pair so neither side always runs right after the other's
output check; medians are compared, so the ratio measures streamplug's overhead, not
broker noise. Each pair also gives its own ratio (the two runs were seconds apart): their
min-max range is reported next to the median ratio so the figure's noise is visible.
Results go to stdout and to the "## Kafka sink" section of benchmarks/RESULTS.md (with
--write-results).

With ``--keyed`` every input record carries a key (``key-<n>``, 6-10 bytes); the hand
loops produce each record's key with its value, and the streamplug job reads ``(key,
value)`` tuples (``KafkaRecordDeserializationSchema.key_value``) and writes them with
``set_key_value_serialization_schemas``: the keyed fast path.

    python benchmarks/bench_sink.py [--records 1000000] [--runs 7] [--partitions 2]
                                    [--parallelism 1,2] [--keyed]
                                    [--bootstrap-servers host:port] [--write-results]
                                    [--writer-only]
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import confluent_kafka
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from streamplug.api import DeserializationSchema, SerializationSchema
from streamplug.api.sink import DeliveryGuarantee
from streamplug.runtime import StreamExecutionEnvironment
from streamplug_kafka_common import admin
from streamplug_kafka_sink import KafkaRecordSerializationSchema, KafkaSink
from streamplug_kafka_source import (
    KafkaOffsetsInitializer,
    KafkaRecordDeserializationSchema,
    KafkaSource,
)

VALUE_BYTES = 100
# The hand loops' consume() size: the source's default poll.max.records (about the fastest
# for both; larger batches outlive the garbage collector's young generation).
BATCH = 500
CHECKPOINT_MS = 1000
CONSUMER_TUNING = {"fetch.queue.backoff.ms": "10", "queued.min.messages": "200000"}
TARGETS = {"AT_LEAST_ONCE": 0.85, "EXACTLY_ONCE": 0.7}
RESULTS = Path(__file__).parent / "RESULTS.md"
SECTION = "## Kafka sink"


class PassThroughIn(DeserializationSchema[bytes]):
    def deserialize(self, message: bytes) -> bytes:
        return message

    def deserialize_batch(self, messages: Sequence[bytes]) -> list[bytes]:
        return messages if isinstance(messages, list) else list(messages)


class PassThroughOut(SerializationSchema[bytes]):
    """Values as they are: the hand loop hands the consumed bytes to produce() unchanged."""

    def serialize(self, element: bytes) -> bytes:
        return element

    def serialize_batch(self, elements: Sequence[bytes]) -> list[bytes]:
        return elements if isinstance(elements, list) else list(elements)


def _capture_writers(sink: KafkaSink) -> list[Any]:
    """The job's sink writers, collected as the runtime creates them, so the benchmark can
    watch their own output counters."""
    writers: list[Any] = []
    create = sink.create_writer

    def create_writer(context: Any, restored: Any) -> Any:
        writer = create(context, restored)
        writers.append(writer)
        return writer

    sink.create_writer = create_writer
    return writers


def _watch_first_record(client: Any, writers: list[Any]) -> float | None:
    """When a sink writer first counted output (it does once it has handed its first batch
    to the producer), seen from the benchmark's own thread every 5 ms: start-up is told
    apart from steady throughput without adding per-record work to the measured pipeline
    (a per-record check in the serializer cost ~5% of the run). The writers' counters, not
    ``client.metrics()``: the job refreshes those only every 100 ms, which put the first
    record up to 0.1 s late (runs 4-6 in RESULTS.md)."""
    while True:
        if any(w.metrics.records_out.value > 0 for w in list(writers)):
            return time.perf_counter()
        if client.status.is_terminal:
            return None
        time.sleep(0.005)


@attrs.frozen
class Run:
    """One timed run: wall seconds, process CPU seconds (every thread, librdkafka's
    included), and seconds from start to the first record handed to the producer."""

    wall: float
    cpu: float
    startup: float


def produce_input(
    bootstrap: str, topic: str, records: int, partitions: int, keyed: bool = False
) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "queue.buffering.max.messages": 2_000_000}
    )
    value = b"x" * VALUE_BYTES
    for i in range(records):
        key = f"key-{i}".encode() if keyed else None
        while True:
            try:
                producer.produce(topic, value, key, partition=i % partitions)
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush()


def _consumer(bootstrap: str, topic: str, partitions: int) -> Consumer:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-sink-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **CONSUMER_TUNING,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    return consumer


def hand_loop(
    guarantee: str,
    bootstrap: str,
    source: str,
    sink: str,
    records: int,
    partitions: int,
    keyed: bool = False,
) -> Run:
    """The fastest loop we can write for the guarantee."""
    start = time.perf_counter()
    cpu = time.process_time()
    first: float | None = None
    consumer = _consumer(bootstrap, source, partitions)
    errors: list[KafkaError] = []
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "delivery.report.only.error": True,
        "on_delivery": lambda err, _msg: errors.append(err) if err is not None else None,
    }
    if guarantee != "NONE":
        conf.update({"acks": "all", "enable.idempotence": True})
    if guarantee == "EXACTLY_ONCE":
        conf["transactional.id"] = f"bench-hand-{uuid.uuid4().hex}"
    producer = Producer(conf)
    if guarantee == "EXACTLY_ONCE":
        # The fastest start we know, the one KafkaSink uses too: wait until metadata comes
        # from a broker with a node id, else init_transactions often finds no broker it may
        # use for transactions and waits out librdkafka's 500 ms coordinator retry timer.
        deadline = time.monotonic() + 1.0
        while producer.list_topics(sink, timeout=5).orig_broker_id < 0:
            if time.monotonic() > deadline:
                break
            time.sleep(0.002)
        producer.init_transactions()
        producer.begin_transaction()
    produce, poll = producer.produce, producer.poll
    positions: dict[int, int] = {}
    done = 0
    last_commit = time.monotonic()

    def checkpoint() -> None:
        offsets = [TopicPartition(source, p, o) for p, o in positions.items()]
        if guarantee == "AT_LEAST_ONCE":
            while producer.flush(1.0):
                pass
            if errors:
                raise RuntimeError(f"delivery failed: {errors[0]}")
            if offsets:
                consumer.commit(offsets=offsets, asynchronous=False)
        elif guarantee == "EXACTLY_ONCE":
            if offsets:
                producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata())
            producer.commit_transaction()
            producer.begin_transaction()

    while done < records:
        batch = consumer.consume(BATCH, 0.5)
        if first is None and batch:
            first = time.perf_counter()
        last: dict[int, int] = {}
        for msg in batch:
            if msg.error() is not None:
                continue
            value = msg.value()
            key = msg.key() if keyed else None
            try:
                produce(sink, value, key)
            except BufferError:
                while True:
                    poll(0.005)
                    try:
                        produce(sink, value, key)
                        break
                    except BufferError:
                        continue
        for msg in reversed(batch):
            p = msg.partition() or 0
            if p not in last:
                last[p] = (msg.offset() or 0) + 1
        positions.update(last)
        done += len(batch)
        poll(0)
        if guarantee != "NONE" and time.monotonic() - last_commit >= CHECKPOINT_MS / 1000:
            checkpoint()
            last_commit = time.monotonic()
    if guarantee == "NONE":
        producer.flush()
    else:
        checkpoint()
        if guarantee == "EXACTLY_ONCE":
            producer.abort_transaction()  # the empty transaction opened by the last checkpoint
    run = Run(time.perf_counter() - start, time.process_time() - cpu, (first or start) - start)
    consumer.close()
    return run


def streamplug_job(
    guarantee: str,
    bootstrap: str,
    source: str,
    sink: str,
    records: int,
    partitions: int,
    parallelism: int,
    keyed: bool = False,
) -> Run:
    out = PassThroughOut()
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(parallelism)
    checkpoints = tempfile.mkdtemp(prefix="bench-sink-")
    if guarantee != "NONE":
        env.enable_checkpointing(CHECKPOINT_MS)
        env.get_checkpoint_config().set_checkpoint_storage_dir(checkpoints)
    kafka_source = (
        KafkaSource.builder()
        .set_bootstrap_servers(bootstrap)
        .set_topics(source)
        .set_group_id(f"bench-sink-{uuid.uuid4().hex}")
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_bounded(KafkaOffsetsInitializer.latest())
        .set_deserializer(
            KafkaRecordDeserializationSchema.key_value(PassThroughIn(), PassThroughIn())
            if keyed
            else KafkaRecordDeserializationSchema.value_only(PassThroughIn())
        )
        .build()
    )
    record_schema = KafkaRecordSerializationSchema.builder().set_topic(sink)
    if keyed:
        record_schema.set_key_value_serialization_schemas(out, out)
    else:
        record_schema.set_value_serialization_schema(out)
    builder = (
        KafkaSink.builder()
        .set_bootstrap_servers(bootstrap)
        .set_record_serializer(record_schema.build())
        .set_delivery_guarantee(DeliveryGuarantee[guarantee])
    )
    if guarantee == "EXACTLY_ONCE":
        builder.set_transactional_id_prefix(f"bench-{uuid.uuid4().hex[:8]}")
    kafka_sink = builder.build()
    writers = _capture_writers(kafka_sink)
    env.from_source(kafka_source, None, "in").sink_to(kafka_sink)
    start = time.perf_counter()
    cpu = time.process_time()
    client = env.execute_async(f"bench-sink-{guarantee}")
    first = _watch_first_record(client, writers)
    client.wait()
    return Run(time.perf_counter() - start, time.process_time() - cpu, (first or start) - start)


def count_output(bootstrap: str, topic: str, guarantee: str, keyed: bool = False) -> int:
    """Records in the output; with keys, distinct keys (every input key is unique, so a
    duplicate or a lost key shows), and every record must carry one."""
    level = "read_committed" if guarantee == "EXACTLY_ONCE" else "read_uncommitted"
    if guarantee == "NONE" and not keyed:
        return sum(admin.end_offsets(bootstrap, topic, level).values())
    messages = admin.read_all(bootstrap, topic, level, timeout=300)
    if not keyed:
        return len(messages)
    keys = [m.key() for m in messages]
    if None in keys:
        raise SystemExit(f"{topic}: {keys.count(None)} records lost their key")
    distinct = len(set(keys))
    if distinct != len(keys) and guarantee == "EXACTLY_ONCE":
        raise SystemExit(f"{topic}: {len(keys) - distinct} duplicate keys under EXACTLY_ONCE")
    return distinct


def measure(
    name: str,
    fn: Callable[[str], Run],
    bootstrap: str,
    guarantee: str,
    records: int,
    partitions: int,
    keyed: bool = False,
) -> Run:
    sink = f"bench-sink-out-{uuid.uuid4().hex[:8]}"
    admin.create_topic(bootstrap, sink, partitions)
    run = fn(sink)
    written = count_output(bootstrap, sink, guarantee, keyed)
    if written < records:
        raise SystemExit(f"{name} {guarantee}: only {written} of {records} records reached {sink}")
    print(
        f"  {name:<11} {guarantee:<14} {run.wall:6.2f} s  {records / run.wall:>10,.0f} rec/s  "
        f"first record after {run.startup:4.2f} s  cpu {run.cpu:5.2f} s",
        flush=True,
    )
    return run


@attrs.frozen
class Summary:
    """Medians over runs, as records per second: total (wall clock from start to end),
    steady (from the first record to the end), and per CPU-second."""

    total: float
    steady: float
    cpu: float
    best: float

    @classmethod
    def of(cls, runs: Sequence[Run], records: int) -> Summary:
        return cls(
            total=statistics.median(records / r.wall for r in runs),
            steady=statistics.median(records / max(1e-9, r.wall - r.startup) for r in runs),
            cpu=statistics.median(records / r.cpu for r in runs),
            best=max(records / r.wall for r in runs),
        )


def pair_ratios(hand_runs: Sequence[Run], job_runs: Sequence[Run]) -> list[float]:
    """Whole-run ratio (streamplug records/s over the hand loop's) of each pair of runs."""
    return [h.wall / j.wall for h, j in zip(hand_runs, job_runs, strict=True)]


def _hand(
    guarantee: str,
    bootstrap: str,
    source: str,
    records: int,
    partitions: int,
    keyed: bool,
    sink: str,
) -> Run:
    return hand_loop(guarantee, bootstrap, source, sink, records, partitions, keyed)


def _job(
    guarantee: str,
    bootstrap: str,
    source: str,
    records: int,
    partitions: int,
    parallelism: int,
    keyed: bool,
    sink: str,
) -> Run:
    return streamplug_job(
        guarantee, bootstrap, source, sink, records, partitions, parallelism, keyed
    )


def writer_only(bootstrap: str, records: int, partitions: int, runs: int) -> None:
    """The AT_LEAST_ONCE writer alone (no source, no runtime) against a bare produce loop
    over the same batches: the sink's own overhead."""
    from streamplug.testing import sink_context

    batch_size = 5000
    batch = [b"x" * VALUE_BYTES] * batch_size
    stamps = [int(time.time() * 1000)] * batch_size
    batches = records // batch_size

    def sink_run() -> float:
        topic = f"bench-writer-{uuid.uuid4().hex[:8]}"
        admin.create_topic(bootstrap, topic, partitions)
        schema = (
            KafkaRecordSerializationSchema.builder()
            .set_topic(topic)
            .set_value_serialization_schema(PassThroughOut())
            .build()
        )
        sink = (
            KafkaSink.builder()
            .set_bootstrap_servers(bootstrap)
            .set_record_serializer(schema)
            .set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
            .build()
        )
        writer = sink.create_writer(sink_context(), [])
        start = time.perf_counter()
        for _ in range(batches):
            writer.write(batch, stamps)
        writer.flush(False)
        elapsed = time.perf_counter() - start
        writer.close()
        return elapsed

    def loop_run() -> float:
        topic = f"bench-writer-{uuid.uuid4().hex[:8]}"
        admin.create_topic(bootstrap, topic, partitions)
        errors: list[KafkaError] = []
        producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "delivery.report.only.error": True,
                "on_delivery": lambda err, _msg: errors.append(err) if err is not None else None,
            }
        )
        produce, poll = producer.produce, producer.poll
        start = time.perf_counter()
        for _ in range(batches):
            for value in batch:
                try:
                    produce(topic, value)
                except BufferError:
                    while True:
                        poll(0.005)
                        try:
                            produce(topic, value)
                            break
                        except BufferError:
                            continue
            poll(0)
        while producer.flush(1.0):
            pass
        if errors:
            raise RuntimeError(f"delivery failed: {errors[0]}")
        return time.perf_counter() - start

    loops, sinks = [], []
    for run in range(runs):
        loops.append(loop_run())
        sinks.append(sink_run())
        print(
            f"  run {run + 1}: produce loop {loops[-1]:.2f} s, KafkaSink writer {sinks[-1]:.2f} s"
        )
    loop_rate = batches * batch_size / statistics.median(loops)
    sink_rate = batches * batch_size / statistics.median(sinks)
    print(
        f"writer only, AT_LEAST_ONCE, {batches * batch_size:,} records in batches of {batch_size}: "
        f"produce loop {loop_rate:,.0f} rec/s, KafkaSink writer (event time kept) "
        f"{sink_rate:,.0f} rec/s, ratio {sink_rate / loop_rate:.2f}"
    )


def bar_chart(
    rows: Sequence[tuple[str, Summary, dict[int, Summary]]], width: int = 48
) -> list[str]:
    """Whole-run medians as a text bar chart (renders anywhere RESULTS.md is read)."""
    top = max(max(h.total, *(j.total for j in jobs.values())) for _, h, jobs in rows)
    out = ["```text", "records/s, whole run (median)"]
    for guarantee, hand, jobs in rows:
        entries = [("hand loop", hand.total)] + [
            (f"streamplug p={p}", j.total) for p, j in jobs.items()
        ]
        for i, (label, rate) in enumerate(entries):
            bar = "#" * max(1, round(rate / top * width))
            out.append(f"{guarantee if i == 0 else '':<14} {label:<15} {bar} {rate / 1000:,.0f}k")
    out.append("```")
    return out


def update_results(text: str) -> None:
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    block = f"{SECTION}\n\n{text.strip()}\n\n"
    if pattern.search(current):
        current = pattern.sub(lambda _m: block, current)
    else:
        current = current.rstrip("\n") + "\n\n" + block
    RESULTS.write_text(current.rstrip("\n") + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument(
        "--runs", type=int, default=7, help="pairs of runs (baseline + streamplug) per guarantee"
    )
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument(
        "--parallelism",
        default="1,2",
        help="comma-separated; the first is checked against the targets",
    )
    parser.add_argument("--guarantees", default="NONE,AT_LEAST_ONCE,EXACTLY_ONCE")
    parser.add_argument("--bootstrap-servers", default=os.environ.get("STREAMPLUG_KAFKA_BOOTSTRAP"))
    parser.add_argument("--write-results", action="store_true", help="update benchmarks/RESULTS.md")
    parser.add_argument(
        "--keyed", action="store_true", help="keyed records, read and written as (key, value)"
    )
    parser.add_argument(
        "--writer-only",
        action="store_true",
        help="measure the AT_LEAST_ONCE writer alone against a bare produce loop, then exit",
    )
    args = parser.parse_args(argv)

    cluster = None
    bootstrap = args.bootstrap_servers
    if not bootstrap:
        from streamplug_testing.broker import KafkaCluster

        cluster = KafkaCluster(nodes=1).start()
        bootstrap = cluster.bootstrap_servers
    try:
        if args.writer_only:
            writer_only(bootstrap, args.records, args.partitions, args.runs)
            return 0
        source = f"bench-sink-in-{uuid.uuid4().hex[:8]}"
        admin.create_topic(bootstrap, source, args.partitions)
        print(
            f"producing {args.records:,} records of {VALUE_BYTES} bytes into {source}", flush=True
        )
        produce_input(bootstrap, source, args.records, args.partitions, args.keyed)
        parallelisms = [int(p) for p in str(args.parallelism).split(",")]
        rows = []
        for guarantee in args.guarantees.split(","):
            hand_runs: list[Run] = []
            job_runs: dict[int, list[Run]] = {p: [] for p in parallelisms}
            for run in range(args.runs):
                print(f"{guarantee} run {run + 1}/{args.runs}", flush=True)
                hand_step = (
                    "hand-loop",
                    functools.partial(
                        _hand,
                        guarantee,
                        bootstrap,
                        source,
                        args.records,
                        args.partitions,
                        args.keyed,
                    ),
                    hand_runs,
                )
                job_steps = [
                    (
                        f"streamplug{par}",
                        functools.partial(
                            _job,
                            guarantee,
                            bootstrap,
                            source,
                            args.records,
                            args.partitions,
                            par,
                            args.keyed,
                        ),
                        job_runs[par],
                    )
                    for par in parallelisms
                ]
                # Baseline first in even pairs, last in odd ones: whatever the previous run
                # leaves behind (broker work on its output, page cache) falls on both sides.
                steps = [hand_step, *job_steps] if run % 2 == 0 else [*job_steps, hand_step]
                for name, fn, runs in steps:
                    runs.append(
                        measure(
                            name,
                            fn,
                            bootstrap,
                            guarantee,
                            args.records,
                            args.partitions,
                            args.keyed,
                        )
                    )
                    print(f"    load average {os.getloadavg()[0]:.2f}", flush=True)
            hand = Summary.of(hand_runs, args.records)
            jobs = {p: Summary.of(r, args.records) for p, r in job_runs.items()}
            pairs = {p: pair_ratios(hand_runs, r) for p, r in job_runs.items()}
            rows.append((guarantee, hand, jobs, pairs))
        lines = [
            f"Kafka -> Kafka, {args.records:,} records of {VALUE_BYTES} bytes, {args.partitions} "
            f"partitions, checkpoints / commits every {CHECKPOINT_MS} ms, {args.runs} pairs of "
            "runs (each pair: one run per column) on one local Apache Kafka 4.1.1 broker. The hand-written loops are "
            "single-threaded (one consumer, one producer). **ratio** = median records/s over the "
            "whole run (job start to end), the figure the targets apply to, checked at streamplug "
            f"parallelism {parallelisms[0]}; *steady* = median from the first record handed to the "
            "producer to the end (leaves out job start-up); *CPU* = records per CPU-second of the "
            "process, all threads; *best* = ratio of the best runs; *pairs* = lowest-highest "
            "whole-run ratio of the individual pairs of runs (a baseline and a streamplug run "
            "seconds apart, order swapped every other pair), the spread behind the median. "
            f"{platform.python_implementation()} {platform.python_version()}, confluent-kafka "
            f"{confluent_kafka.__version__} (librdkafka {confluent_kafka.libversion()[0]}), "
            f"{os.cpu_count()} cores shared with the broker and other work. Command: "
            f"`python benchmarks/bench_sink.py --guarantees {args.guarantees} --parallelism "
            f"{args.parallelism} --runs {args.runs} --records {args.records} --partitions "
            f"{args.partitions}`.",
            "",
            "| guarantee | hand loop rec/s | streamplug | rec/s | **ratio** | pairs | steady | CPU "
            "| best | target |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        spreads = []
        for guarantee, hand, jobs, pairs in rows:
            target = TARGETS.get(guarantee)
            for i, (par, job) in enumerate(jobs.items()):
                ratio = job.total / hand.total
                verdict = "-"
                if target and i == 0:
                    verdict = f">= {target}: " + ("met" if ratio >= target else "MISSED")
                    above = sum(r >= target for r in pairs[par])
                    spreads.append(
                        f"{guarantee} p={par} pairs: "
                        + ", ".join(f"{r:.2f}" for r in pairs[par])
                        + f" (median {statistics.median(pairs[par]):.2f}; {above} of "
                        f"{len(pairs[par])} at or above {target})"
                    )
                lines.append(
                    f"| {guarantee if i == 0 else ''} | {f'{hand.total:,.0f}' if i == 0 else ''} "
                    f"| p={par} | {job.total:,.0f} | **{ratio:.2f}** "
                    f"| {min(pairs[par]):.2f}-{max(pairs[par]):.2f} "
                    f"| {job.steady / hand.steady:.2f} | {job.cpu / hand.cpu:.2f} "
                    f"| {job.best / hand.best:.2f} | {verdict} |"
                )
        lines += ["", *(f"- {line}" for line in spreads)]
        lines += ["", *bar_chart([(g, h, j) for g, h, j, _ in rows])]
        text = "\n".join(lines)
        print()
        print(text)
        if args.write_results:
            update_results(text)
            print(f"\nwritten to {RESULTS}")
    finally:
        if cluster is not None:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
