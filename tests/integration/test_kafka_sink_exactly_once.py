"""EXACTLY_ONCE on a real Kafka broker: visibility only at commit, recovery of a commit a
SIGKILL interrupted (before and after commit_transaction), reused checkpoint ids,
fencing of a stale writer, broker-refused transaction timeouts, and AT_LEAST_ONCE through
a leader change on three nodes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import pytest

from streamplug.api.context import SinkContext
from streamplug.api.sink import CommitOutcome, Committer, DeliveryGuarantee
from streamplug.errors import CheckpointError, ConfigError
from streamplug.testing import sink_context
from streamplug_kafka_common.admin import describe_partitions, read_all
from streamplug_kafka_sink import KafkaRecordSerializationSchema, KafkaSink
from streamplug_kafka_sink.transaction import KafkaCommittable, KafkaCommittableSerializer

pytestmark = pytest.mark.integration


def _sink(
    bootstrap: str,
    topic: str,
    guarantee: DeliveryGuarantee,
    prefix: str | None = None,
    **props: Any,
) -> KafkaSink:
    schema = (
        KafkaRecordSerializationSchema.builder()
        .set_topic(topic)
        .set_value_serialization_schema(lambda s: s.encode())
        .build()
    )
    b = (
        KafkaSink.builder()
        .set_bootstrap_servers(bootstrap)
        .set_record_serializer(schema)
        .set_delivery_guarantee(guarantee)
        .set_properties(props)
    )
    if prefix:
        b.set_transactional_id_prefix(prefix)
    return b.build()


def _committed(bootstrap: str, topic: str) -> list[str]:
    return sorted((m.value() or b"").decode() for m in read_all(bootstrap, topic, "read_committed"))


def _prefix() -> str:
    return f"sink-it-{uuid.uuid4().hex[:8]}"


def _exactly_once(bootstrap: str, topic: str, prefix: str | None = None, **props: Any) -> KafkaSink:
    """An EXACTLY_ONCE sink with transactional id ``prefix``, or a fresh one."""
    return _sink(bootstrap, topic, DeliveryGuarantee.EXACTLY_ONCE, prefix or _prefix(), **props)


def _committer(sink: KafkaSink, ctx: SinkContext | None = None) -> Committer[KafkaCommittable]:
    """The sink's committer, which a transactional sink must have."""
    committer = sink.create_committer(ctx or sink_context())
    assert committer is not None
    return committer


def test_records_visible_only_when_checkpoint_commits(
    kafka_bootstrap: str, topic_factory: Any
) -> None:
    topic = topic_factory(partitions=2)
    sink = _exactly_once(kafka_bootstrap, topic)
    ctx = sink_context(parallelism=2)
    committer = _committer(sink, ctx)
    writers = [
        sink.create_writer(sink_context(subtask_index=i, parallelism=2), []) for i in range(2)
    ]
    for i, w in enumerate(writers):
        w.write([f"a{i}-{n}" for n in range(100)], None)
        w.flush(False)
    committables = [c for w in writers for c in w.prepare_commit()]
    assert len({c.token for c in committables}) == 1, "the writers share one transaction"
    assert _committed(kafka_bootstrap, topic) == []
    assert len(read_all(kafka_bootstrap, topic, "read_uncommitted")) == 200
    committer.commit(1, committables)
    assert len(_committed(kafka_bootstrap, topic)) == 200
    # The next transaction is already open and its records stay invisible until commit.
    writers[0].write(["b"], None)
    writers[0].flush(False)
    assert len(_committed(kafka_bootstrap, topic)) == 200
    committer.commit(2, writers[0].prepare_commit())
    assert len(_committed(kafka_bootstrap, topic)) == 201
    # The decision records name the job and checkpoint.
    log = read_all(kafka_bootstrap, sink.commit_log_topic or "", "read_committed")
    decisions = [json.loads(m.value() or b"") for m in log]
    assert [d["checkpoint_id"] for d in decisions] == [1, 2]
    assert (
        decisions[0]["job"] == "test-job"
        and decisions[0]["transactional_id"] == sink.transactional_id
    )
    for w in writers:
        w.close()
    committer.close()


_CHILD = r"""
import json, sys
from streamplug.api.sink import DeliveryGuarantee
from streamplug_kafka_sink import KafkaRecordSerializationSchema, KafkaSink
from streamplug.testing import sink_context
from streamplug_kafka_sink.transaction import KafkaCommittableSerializer

bootstrap, topic, prefix, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
schema = (KafkaRecordSerializationSchema.builder().set_topic(topic)
          .set_value_serialization_schema(lambda s: s.encode()).build())
sink = (KafkaSink.builder().set_bootstrap_servers(bootstrap).set_record_serializer(schema)
        .set_delivery_guarantee(DeliveryGuarantee.EXACTLY_ONCE)
        .set_transactional_id_prefix(prefix).build())
ctx = sink_context()
committer = sink.create_committer(ctx)
writer = sink.create_writer(ctx, [])
writer.write([f"{prefix}-{i}" for i in range(n)], None)
writer.flush(False)
committables = writer.prepare_commit()
ser = KafkaCommittableSerializer()
print(json.dumps([ser.serialize(c) for c in committables]), flush=True)
committer.commit(7, committables)
print("COMMIT RETURNED", flush=True)
"""


def _crash_child(bootstrap: str, topic: str, prefix: str, fault: str) -> list[KafkaCommittable]:
    env = dict(os.environ, STREAMPLUG_FAULT_POINTS=f"{fault}:1")
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, bootstrap, topic, prefix, "300"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "COMMIT RETURNED" not in proc.stdout
    ser = KafkaCommittableSerializer()
    return [ser.deserialize(1, d) for d in json.loads(proc.stdout.splitlines()[0])]


@pytest.mark.parametrize(
    ("fault", "outcome", "visible"),
    [
        ("kafka_sink.before_commit", CommitOutcome.ABORTED, 0),
        ("kafka_sink.after_commit", CommitOutcome.COMMITTED, 300),
    ],
)
def test_resolve_after_sigkill_around_commit(
    kafka_bootstrap: str, topic_factory: Any, fault: str, outcome: CommitOutcome, visible: int
) -> None:
    topic = topic_factory(partitions=1)
    prefix = _prefix()
    committables = _crash_child(kafka_bootstrap, topic, prefix, fault)
    # The crashed process may leave an open transaction: read_committed stops before it.
    sink = _exactly_once(kafka_bootstrap, topic, prefix)
    committer = _committer(sink)
    started = time.monotonic()
    assert committer.resolve(7, committables) is outcome
    # init_transactions fenced the dead producer at once: no wait for the transaction timeout.
    assert time.monotonic() - started < 30
    assert len(_committed(kafka_bootstrap, topic)) == visible
    # The next attempt continues on the same transactional id.
    writer = sink.create_writer(sink_context(), [])
    writer.write(["after"], None)
    writer.flush(False)
    committer.commit(8, writer.prepare_commit())
    assert len(_committed(kafka_bootstrap, topic)) == visible + 1
    writer.close()
    committer.close()


def test_reused_checkpoint_id_is_not_mistaken_for_committed(
    kafka_bootstrap: str, topic_factory: Any
) -> None:
    """Checkpoint ids repeat after a dropped checkpoint; resolve must look for the
    transaction's own token, not just the id."""
    topic = topic_factory(partitions=1)
    prefix = _prefix()
    sink = _exactly_once(kafka_bootstrap, topic, prefix)
    committer = _committer(sink)
    writer = sink.create_writer(sink_context(), [])
    writer.write(["first"], None)
    writer.flush(False)
    committer.commit(5, writer.prepare_commit())
    writer.write(["second"], None)
    writer.flush(False)
    pending = writer.prepare_commit()  # checkpoint 5 again, never committed
    writer.close()
    committer.close()
    fresh = _exactly_once(kafka_bootstrap, topic, prefix)
    resolver = _committer(fresh)
    assert resolver.resolve(5, pending) is CommitOutcome.ABORTED
    assert _committed(kafka_bootstrap, topic) == ["first"]
    resolver.close()


def test_stale_writer_is_fenced_and_its_records_never_visible(
    kafka_bootstrap: str, topic_factory: Any
) -> None:
    topic = topic_factory(partitions=2)
    prefix = _prefix()
    threads_before = _client_threads()
    stale_sink = _exactly_once(kafka_bootstrap, topic, prefix)
    stale_committer = _committer(stale_sink)
    stale = stale_sink.create_writer(sink_context(), [])
    stale.write([f"zombie-{i}" for i in range(50)], None)
    stale.flush(False)
    zombie_committables = stale.prepare_commit()

    # A restarted job (same prefix) starts while the old process still runs.
    new_sink = _exactly_once(kafka_bootstrap, topic, prefix)
    new_committer = _committer(new_sink, sink_context(attempt_number=1))
    fresh = new_sink.create_writer(sink_context(attempt_number=1), [])
    fresh.write([f"live-{i}" for i in range(20)], None)
    fresh.flush(False)
    new_committer.commit(1, fresh.prepare_commit())

    # The zombie keeps going: writing or committing fails with a fencing error.
    with pytest.raises((CheckpointError, Exception)) as err:
        stale.write(["zombie-late"], None)
        stale.flush(False)
        stale_committer.commit(1, zombie_committables)
    assert "fenced" in str(err.value).lower() or "epoch" in str(err.value).lower()
    stale.close()
    stale_committer.close()
    fresh.close()
    new_committer.close()
    assert _committed(kafka_bootstrap, topic) == sorted(f"live-{i}" for i in range(20))
    # The fenced producer is gone too, although confluent-kafka kept the traceback of the
    # fatal error it lost (before the fix: 4 client threads left for good).
    _wait_for_client_threads(threads_before)


def test_broker_refuses_too_long_transaction_timeout(
    kafka_bootstrap: str, topic_factory: Any
) -> None:
    topic = topic_factory(partitions=1)
    sink = _exactly_once(
        kafka_bootstrap,
        topic,
        **{"transaction.timeout.ms": "3600000"},  # Flink's default; brokers allow 15 min
    )
    # The producer starts beside the job's source: the writer's first use says why it
    # could not.
    writer = sink.create_writer(sink_context(), [])
    try:
        with pytest.raises(ConfigError, match=r"transaction\.max\.timeout\.ms"):
            writer.write(["a"], None)
        with pytest.raises(ConfigError, match=r"transaction\.max\.timeout\.ms"):
            writer.prepare_commit()
    finally:
        writer.close()


def test_a_producer_that_cannot_start_fails_a_job_with_an_idle_input_at_once(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Any
) -> None:
    """No record and no checkpoint for a minute: the start's failure still reaches the job
    from the producer's start-up thread (SinkContext.run_in_task), not at the checkpoint."""
    from streamplug.errors import JobFailedError
    from streamplug.runtime import RestartStrategies, StreamExecutionEnvironment
    from streamplug_kafka_source import KafkaOffsetsInitializer, KafkaSource

    idle, out = topic_factory(partitions=1), topic_factory(partitions=1)
    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(kafka_bootstrap)
        .set_topics(idle)
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_value_only_deserializer(lambda b: b)
        .build()
    )
    sink = _exactly_once(kafka_bootstrap, out, **{"transaction.timeout.ms": "3600000"})
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1).enable_checkpointing(60_000)
    env.set_restart_strategy(RestartStrategies.no_restart())
    env.get_checkpoint_config().set_checkpoint_storage_dir(str(tmp_path))
    env.from_source(source, None, "idle").sink_to(sink)
    started = time.monotonic()
    with pytest.raises(JobFailedError) as info:
        env.execute("idle-input-bad-sink")
    assert time.monotonic() - started < 20
    assert isinstance(info.value.__cause__, ConfigError), info.value.__cause__
    assert "transaction.max.timeout.ms" in str(info.value.__cause__)


def test_at_least_once_rides_out_a_stopped_leader(kafka_cluster_3: Any) -> None:
    bootstrap = kafka_cluster_3.bootstrap_servers
    topic = f"sink-alo-failover-{uuid.uuid4().hex[:6]}"
    kafka_cluster_3.create_topic(topic, 2, 3, {"min.insync.replicas": "2"})
    sink = _sink(bootstrap, topic, DeliveryGuarantee.AT_LEAST_ONCE)
    writer = sink.create_writer(sink_context(), [])
    leader = describe_partitions(bootstrap, topic)[0].leader
    stopper = threading.Thread(target=kafka_cluster_3.stop_node, args=(leader,))
    expected = []
    for batch in range(40):
        values = [f"{batch}-{i}" for i in range(500)]
        expected.extend(values)
        writer.write(values, None)
        if batch == 10:
            stopper.start()
        if batch % 10 == 9:
            writer.flush(False)  # a checkpoint: every record so far acknowledged
        time.sleep(0.02)
    writer.flush(False)
    writer.close()
    stopper.join()
    got = [
        (m.value() or b"").decode()
        for m in read_all(bootstrap, topic, "read_uncommitted", timeout=60)
    ]
    assert sorted(set(got)) == sorted(expected)
    kafka_cluster_3.start_node(leader)


def test_transaction_open_too_long_is_aborted_and_explained(
    kafka_bootstrap: str, topic_factory: Any
) -> None:
    topic = topic_factory(partitions=1)
    sink = _exactly_once(kafka_bootstrap, topic, **{"transaction.timeout.ms": "2000"})
    # Passes the start-up check (500 + 1000 < 2000), then a "checkpoint" takes far longer.
    ctx = sink_context(checkpoint_interval_ms=500, checkpoint_timeout_ms=1000)
    committer = _committer(sink, ctx)
    writer = sink.create_writer(ctx, [])
    writer.write(["too-late"], None)
    writer.flush(False)
    # The broker looks for timed-out transactions every 10 s (Kafka's default interval).
    time.sleep(13)
    with pytest.raises(Exception, match=r"longer than transaction\.timeout\.ms=2000") as err:
        writer.write(["more"], None)
        writer.flush(False)
        committer.commit(1, writer.prepare_commit())
    assert "raise transaction.timeout.ms" in str(err.value)
    writer.close()
    committer.close()
    assert _committed(kafka_bootstrap, topic) == []


def test_resolve_waits_for_a_foreign_open_transaction_on_a_shared_commit_log(
    kafka_bootstrap: str, topic_factory: Any
) -> None:
    """A read_committed reader stops at another producer's open transaction; a decision
    record behind it must not be mistaken for absent."""
    from confluent_kafka import Producer

    topic = topic_factory(partitions=1)
    shared = f"shared-commit-log-{uuid.uuid4().hex[:8]}"
    prefix = _prefix()
    sink = _exactly_once(kafka_bootstrap, topic, prefix, **{"commit.log.topic": shared})
    committer = _committer(sink)
    writer = sink.create_writer(sink_context(), [])  # creates the commit log
    foreign = Producer(
        {"bootstrap.servers": kafka_bootstrap, "transactional.id": f"foreign-{prefix}"}
    )
    foreign.init_transactions()
    foreign.begin_transaction()
    foreign.produce(shared, b"{}", partition=0)
    foreign.flush()
    writer.write(["kept"], None)
    writer.flush(False)
    committables = writer.prepare_commit()
    committer.commit(3, committables)  # our decision now sits behind the open transaction
    writer.close()
    committer.close()

    threading.Timer(3.0, foreign.commit_transaction).start()
    resolving_sink = _exactly_once(kafka_bootstrap, topic, prefix, **{"commit.log.topic": shared})
    resolver = _committer(resolving_sink)
    started = time.monotonic()
    assert resolver.resolve(3, committables) is CommitOutcome.COMMITTED
    assert time.monotonic() - started >= 2.0, "resolve must have waited for the foreign commit"
    resolver.close()
    assert _committed(kafka_bootstrap, topic) == ["kept"]


@pytest.mark.slow
def test_commit_that_cannot_complete_fails_undecided_and_resolve_decides(
    kafka_cluster: Any, topic_factory: Any
) -> None:
    if not hasattr(kafka_cluster, "stop_node"):
        pytest.skip("needs the local broker (stops it)")
    bootstrap = kafka_cluster.bootstrap_servers
    topic = topic_factory(partitions=1)
    prefix = _prefix()
    props = {"transaction.timeout.ms": "5000"}
    sink = _exactly_once(bootstrap, topic, prefix, **props)
    ctx = sink_context(checkpoint_interval_ms=500, checkpoint_timeout_ms=1000)
    committer = _committer(sink, ctx)
    writer = sink.create_writer(ctx, [])
    writer.write(["in-doubt"], None)
    writer.flush(False)
    committables = writer.prepare_commit()
    kafka_cluster.stop_node(1)
    started = time.monotonic()
    try:
        with pytest.raises(CheckpointError, match=r"did not complete within|aborted|failed"):
            committer.commit(1, committables)
        # Bounded by the transaction timeout, not stuck at the barrier.
        assert time.monotonic() - started < 90
    finally:
        kafka_cluster.start_node(1)
    writer.close()
    committer.close()
    resolver = _committer(_exactly_once(bootstrap, topic, prefix, **props), ctx)
    outcome = resolver.resolve(1, committables)
    visible = _committed(bootstrap, topic)
    # Whatever happened, the decision and the output agree.
    assert (outcome, visible) in [
        (CommitOutcome.ABORTED, []),
        (CommitOutcome.COMMITTED, ["in-doubt"]),
    ]
    resolver.close()


def _client_threads() -> int:
    """librdkafka's threads in this process (named ``rdk:...``); 0 where /proc is missing."""
    tasks = "/proc/self/task"
    if not os.path.isdir(tasks):
        return 0
    names = []
    for task in os.listdir(tasks):
        try:
            with open(f"{tasks}/{task}/comm") as comm:
                names.append(comm.read())
        except OSError:
            continue  # the thread ended meanwhile
    return sum(name.startswith("rdk:") for name in names)


def _wait_for_client_threads(before: int) -> None:
    """Wait up to 10 s for the client thread count to fall back to ``before``."""
    deadline = time.monotonic() + 10
    while _client_threads() > before:
        assert time.monotonic() < deadline, f"{_client_threads() - before} client threads left"
        time.sleep(0.1)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_a_finished_exactly_once_job_leaves_no_client_behind(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Any
) -> None:
    import gc

    from streamplug.runtime import RestartStrategies, StreamExecutionEnvironment

    topic = topic_factory()
    before = _client_threads()
    # Without the collector, only reference counting can end the clients: a reference
    # cycle holding the shared producer would keep its threads running.
    gc.disable()
    try:
        env = StreamExecutionEnvironment.get_execution_environment()
        env.set_parallelism(2).enable_checkpointing(200)
        env.set_restart_strategy(RestartStrategies.no_restart())
        env.get_checkpoint_config().set_checkpoint_storage_dir(str(tmp_path))
        sink = _sink(kafka_bootstrap, topic, DeliveryGuarantee.EXACTLY_ONCE, _prefix())
        env.from_collection([str(i) for i in range(100)]).sink_to(sink)
        env.execute("no-leak")
        _wait_for_client_threads(before)
    finally:
        gc.enable()
    assert _committed(kafka_bootstrap, topic) == sorted(str(i) for i in range(100))
