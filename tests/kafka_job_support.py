"""The Kafka -> map -> Kafka job that the exactly-once tests run on every runtime, and how
they check its output.

One job, one check: the e2e crash job script (tests/e2e/jobs/sink_crash_job.py), the
``processes`` runtime's integration tests and the ``ray`` runtime's tests all build the
same pipeline here -- UTF-8 values in, ``v`` -> ``"v:mapped"``, UTF-8 values out -- so a
checkpoint one of them writes can be restored by another, and each proves the same thing:
a ``read_committed`` reader sees every input record's result exactly once.

pytest puts this directory on ``sys.path`` (tests/conftest.py has no package around it);
the job script adds it itself. Ray's nodes do not have it: the Ray tests ship this module
by value (``cloudpickle.register_pickle_by_value``).
"""

from __future__ import annotations

import collections
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import Producer

from streamplug.api.serde import DeserializationSchema, SerializationSchema
from streamplug.api.sink import DeliveryGuarantee
from streamplug.runtime import JobClient, JobMetrics, StreamExecutionEnvironment
from streamplug_kafka_common.admin import create_topic, read_all
from streamplug_kafka_sink import KafkaRecordSerializationSchema, KafkaSink
from streamplug_kafka_source import KafkaOffsetsInitializer, KafkaSource
from streamplug_serde import SimpleStringSchema

SOURCE_NAME = "input"

# The named fault points (streamplug.runtime.faults) around the job's exactly-once path:
# the sink's commit runs in the worker slot that owns the transaction (``name@W`` picks
# slot W), the checkpoint points in the driver.
SINK_FAULTS = ("kafka_sink.before_commit", "kafka_sink.after_commit")
CHECKPOINT_FAULTS = (
    "checkpoint.before_write",
    "checkpoint.during_write",
    "checkpoint.after_pending",
    "checkpoint.before_complete",
)


class Utf8In(DeserializationSchema[str]):
    def deserialize(self, message: bytes) -> str:
        return message.decode()


class Utf8Out(SerializationSchema[str]):
    def serialize(self, element: str) -> bytes:
        return element.encode()


class Throttle:
    """``v`` -> ``"v:mapped"`` at most ``rate`` calls a second per thread, i.e. per subtask
    (0: no limit), so a test has time to break the job while records flow.

    ``release``: a file that lifts the limit once it exists, so a test that is done
    breaking the job lets it run the rest at full speed instead of waiting out the rate.
    Every slot of the tests' runtimes -- threads, worker processes, Ray actors on local
    nodes -- runs on this machine and sees it."""

    def __init__(self, rate: int, release: str | None = None) -> None:
        self.rate = rate
        self.release = release
        self.local = threading.local()

    # Shipped to worker processes and Ray actors: each starts its own counters.
    def __getstate__(self) -> dict[str, Any]:
        return {"rate": self.rate, "release": self.release}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["rate"], state.get("release"))  # type: ignore[misc]

    def __call__(self, value: str) -> str:
        if self.rate and self.release is not None and os.path.exists(self.release):
            self.rate = 0
        if self.rate:
            state = self.local.__dict__
            n = state.get("n", 0) + 1
            state["n"] = n
            start = state.setdefault("start", time.monotonic())
            ahead = n / self.rate - (time.monotonic() - start)
            if ahead > 0.01:
                time.sleep(ahead)
        return f"{value}:mapped"


def add_kafka_job(
    env: StreamExecutionEnvironment,
    bootstrap: str,
    source_topic: str,
    sink_topic: str,
    prefix: str,
    *,
    guarantee: DeliveryGuarantee = DeliveryGuarantee.EXACTLY_ONCE,
    map_function: Callable[[str], str] | None = None,
    poll_max_records: int = 100,
) -> None:
    """Add the job to ``env``: read ``source_topic`` from the earliest offset up to the end
    it has when the job first starts (bounded), map, write ``sink_topic`` with
    ``guarantee`` (transactional ids ``<prefix>-<slot>``). The group id and the
    transactional ids derive from ``prefix``, so runs with the same prefix and checkpoint
    storage are one job resumed.

    A checkpoint barrier waits for the batch in flight: the default 100-record polls keep
    that short even when the map is throttled."""
    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(bootstrap)
        .set_topics(source_topic)
        .set_group_id(f"{prefix}-reader")
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_bounded(KafkaOffsetsInitializer.latest())
        .set_value_only_deserializer(Utf8In())
        .set_property("poll.max.records", poll_max_records)
        .build()
    )
    sink = (
        KafkaSink.builder()
        .set_bootstrap_servers(bootstrap)
        .set_record_serializer(
            KafkaRecordSerializationSchema.builder()
            .set_topic(sink_topic)
            .set_value_serialization_schema(Utf8Out())
            .build()
        )
        .set_delivery_guarantee(guarantee)
        .set_transactional_id_prefix(prefix)
        .build()
    )
    env.from_source(source, None, SOURCE_NAME).map(map_function or Throttle(0)).sink_to(sink)


def produce_input(bootstrap: str, topic: str, records: int, partitions: int = 2) -> None:
    """Values ``"0"`` .. ``str(records - 1)``, record ``i`` into partition ``i % partitions``."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True}
    )
    for i in range(records):
        while True:
            try:
                producer.produce(topic, str(i).encode(), partition=i % partitions)
                break
            except BufferError:
                producer.poll(0.01)
    assert producer.flush(60) == 0


def produce_values(
    bootstrap: str, topic: str, values: Iterable[bytes], key: bytes | None = None
) -> None:
    """Each of ``values`` into ``topic`` in order, all with ``key``; returns once every one
    is acknowledged."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for value in values:
        producer.produce(topic, value, key)
    assert producer.flush(30) == 0


def string_source(bootstrap: str, topic: str, prefix: str, *, bounded: bool = True) -> KafkaSource:
    """UTF-8 values of ``topic`` from the earliest offset (``bounded``: up to the end it has
    when the job first starts) in a fresh group ``<prefix>-<random>``."""
    builder = (
        KafkaSource.builder()
        .set_bootstrap_servers(bootstrap)
        .set_topics(topic)
        .set_group_id(f"{prefix}-{uuid.uuid4().hex[:8]}")
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_value_only_deserializer(SimpleStringSchema())
    )
    if bounded:
        builder.set_bounded(KafkaOffsetsInitializer.latest())
    return builder.build()


def string_sink(
    bootstrap: str, topic: str, guarantee: DeliveryGuarantee, prefix: str | None = None
) -> KafkaSink:
    """UTF-8 values into ``topic`` with ``guarantee``; with ``prefix``, fresh transactional
    ids ``<prefix>-<random>-<slot>``."""
    builder = (
        KafkaSink.builder()
        .set_bootstrap_servers(bootstrap)
        .set_record_serializer(
            KafkaRecordSerializationSchema.builder()
            .set_topic(topic)
            .set_value_serialization_schema(SimpleStringSchema())
            .build()
        )
        .set_delivery_guarantee(guarantee)
    )
    if prefix is not None:
        builder.set_transactional_id_prefix(f"{prefix}-{uuid.uuid4().hex[:8]}")
    return builder.build()


def wait_while_running(
    client: JobClient, done: Callable[[JobMetrics], bool], timeout: float
) -> None:
    """Until ``done(client.metrics())``: fails as soon as the job ends first, or once
    ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not done(client.metrics()):
        assert time.monotonic() < deadline, client.metrics()
        assert not client.status.is_terminal, client.status
        time.sleep(0.05)


def create_topics(
    bootstrap: str,
    records: int,
    partitions: int,
    name: str,
    replication: int = 1,
    config: dict[str, str] | None = None,
) -> tuple[str, str]:
    """A fresh input topic holding ``records`` values and an empty output topic, both with
    ``partitions`` partitions; returns their names (``<name>-in-<tag>``, ``<name>-out-<tag>``)."""
    tag = uuid.uuid4().hex[:8]
    source, sink = f"{name}-in-{tag}", f"{name}-out-{tag}"
    create_topic(bootstrap, source, partitions, replication, config)
    create_topic(bootstrap, sink, partitions, replication, config)
    produce_input(bootstrap, source, records, partitions)
    return source, sink


def expected(records: int) -> list[str]:
    return [f"{i}:mapped" for i in range(records)]


def read_output(bootstrap: str, topic: str, isolation: str = "read_committed") -> list[str]:
    return [m.value().decode() for m in read_all(bootstrap, topic, isolation, timeout=120)]


def check_exact(bootstrap: str, sink_topic: str, records: int, context: str = "") -> list[str]:
    """Assert that a ``read_committed`` reader of ``sink_topic`` sees every one of the
    ``records`` mapped values exactly once, nothing else; returns what it read."""
    got = read_output(bootstrap, sink_topic)
    counts = collections.Counter(got)
    duplicates = sum(c - 1 for c in counts.values() if c > 1)
    want = expected(records)
    missing = len(set(want) - counts.keys())
    where = f"{context}: " if context else ""
    assert (missing, duplicates) == (0, 0), f"{where}{missing} missing, {duplicates} duplicated"
    assert sorted(got) == sorted(want), f"{where}output holds records that are not the input's"
    return got
