"""Exactly-once job start-up: time from ``execute_async()`` to the first record reaching
the job's map, and to its first batch written (handed to the transactional producer), over
N jobs (Kafka -> map -> Kafka, EXACTLY_ONCE, parallelism 1), each with
its own transactional id on the same commit-log topic, one after another.

With ``--phases`` it also reports where the exactly-once sink's start-up goes (commit-log
check, producer ``init_transactions``, commit-log end, first transaction), timed by
wrapping the transaction manager's steps.

    python benchmarks/bench_eos_startup.py [--jobs 20] [--bound 0.15] [--phases]
                                           [--bootstrap-servers host:port]

Without --bootstrap-servers (or $STREAMPLUG_KAFKA_BOOTSTRAP) a local single-node Apache
Kafka is started for the run.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from confluent_kafka import Producer

from streamplug.api.sink import DeliveryGuarantee
from streamplug.runtime import StreamExecutionEnvironment
from streamplug_kafka_common import admin
from streamplug_kafka_sink import KafkaRecordSerializationSchema, KafkaSink
from streamplug_kafka_sink import transaction as txn
from streamplug_kafka_source import (
    KafkaOffsetsInitializer,
    KafkaRecordDeserializationSchema,
    KafkaSource,
)

_written: list[float] = []


def _note_first_write() -> None:
    """Times the first batch handed to the transactional producer: the writer's producer
    starts beside the source, so the map may see a record before it can be written."""
    write = txn.ExactlyOnceWriter.write

    @functools.wraps(write)
    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = write(self, *args, **kwargs)
        if not _written:
            _written.append(time.perf_counter())
        return result

    txn.ExactlyOnceWriter.write = timed  # type: ignore[method-assign]


def eos_job(
    bootstrap: str, source: str, sink: str, prefix: str, commit_log: str
) -> tuple[float, float]:
    """Seconds from execute_async() to the first map call of one exactly-once job, and to
    its first batch written (handed to the transactional producer, in its transaction)."""
    first: list[float] = []
    _written.clear()

    def mark(element: Any) -> Any:
        if not first:
            first.append(time.perf_counter())
        return element

    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1)
    env.enable_checkpointing(1000)
    env.get_checkpoint_config().set_checkpoint_storage_dir(tempfile.mkdtemp(prefix="eos-start-"))
    kafka_source = (
        KafkaSource.builder()
        .set_bootstrap_servers(bootstrap)
        .set_topics(source)
        .set_group_id(f"eos-start-{uuid.uuid4().hex}")
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_bounded(KafkaOffsetsInitializer.latest())
        .set_deserializer(KafkaRecordDeserializationSchema.key_value(None, None))
        .build()
    )
    kafka_sink = (
        KafkaSink.builder()
        .set_bootstrap_servers(bootstrap)
        .set_record_serializer(
            KafkaRecordSerializationSchema.builder()
            .set_topic(sink)
            .set_key_value_serialization_schemas(None, None)
            .build()
        )
        .set_delivery_guarantee(DeliveryGuarantee.EXACTLY_ONCE)
        .set_transactional_id_prefix(prefix)
        .set_property("commit.log.topic", commit_log)
        .build()
    )
    env.from_source(kafka_source, None, "in").map(mark).sink_to(kafka_sink)
    start = time.perf_counter()
    client = env.execute_async("eos-startup")
    client.wait()
    if not first or not _written:
        raise SystemExit("the job read or wrote no record")
    return first[0] - start, _written[0] - start


def time_phases() -> dict[str, list[float]]:
    """Wraps the transaction manager's start-up steps to time each."""
    phases: dict[str, list[float]] = defaultdict(list)

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                phases[name].append(time.perf_counter() - started)

        return wrapper

    manager = txn.TransactionManager
    for name in ("ensure_ready", "_ensure_commit_log", "_prepare_commit_log", "_connect", "_begin"):
        if hasattr(manager, name):
            setattr(manager, name, timed(name, getattr(manager, name)))
    factory_default = manager.__init__.__kwdefaults__ or {}
    make = factory_default.get("producer_factory", Producer)

    class TimedProducer:
        def __init__(self, conf: dict[str, Any]) -> None:
            self._producer = make(conf)

        def init_transactions(self, *args: Any) -> None:
            started = time.perf_counter()
            try:
                self._producer.init_transactions(*args)
            finally:
                phases["init_transactions"].append(time.perf_counter() - started)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._producer, name)

    if manager.__init__.__kwdefaults__ is not None:
        manager.__init__.__kwdefaults__["producer_factory"] = TimedProducer
    return phases


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--bound", type=float, default=0.15)
    parser.add_argument("--phases", action="store_true")
    parser.add_argument("--bootstrap-servers", default=os.environ.get("STREAMPLUG_KAFKA_BOOTSTRAP"))
    args = parser.parse_args()
    cluster = None
    bootstrap = args.bootstrap_servers
    if not bootstrap:
        from streamplug_testing.broker import KafkaCluster

        cluster = KafkaCluster(nodes=1).start()
        bootstrap = cluster.bootstrap_servers
    phases = time_phases() if args.phases else None
    _note_first_write()
    try:
        run = uuid.uuid4().hex[:8]
        source = f"eos-start-in-{run}"
        admin.create_topic(bootstrap, source, 2)
        producer = Producer({"bootstrap.servers": bootstrap})
        for i in range(100):
            producer.produce(source, b"x" * 100, f"k{i}".encode())
        producer.flush(30)
        commit_log = f"eos-start-log-{run}"
        times, writes = [], []
        for job in range(args.jobs):
            sink = f"eos-start-out-{run}-{job}"
            admin.create_topic(bootstrap, sink, 2)
            seconds, written = eos_job(
                bootstrap, source, sink, f"eos-start-{run}-{job}", commit_log
            )
            times.append(seconds)
            writes.append(written)
            print(
                f"job {job + 1:2d}: first record at the map {seconds:.3f} s, written "
                f"{written:.3f} s after execute() (load average {os.getloadavg()[0]:.2f})",
                flush=True,
            )
        for what, values in (("at the map", times), ("written", writes)):
            within = sum(t <= args.bound for t in values)
            print(
                f"{what:>10}: {within} of {len(values)} jobs within {args.bound} s; median "
                f"{statistics.median(values):.3f} s, max {max(values):.3f} s, "
                f"min {min(values):.3f} s"
            )
        if phases:
            for name, values in phases.items():
                print(
                    f"  {name:<20} median {statistics.median(values) * 1000:6.1f} ms, "
                    f"max {max(values) * 1000:6.1f} ms ({len(values)} calls)"
                )
    finally:
        if cluster is not None:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
