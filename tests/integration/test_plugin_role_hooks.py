"""The source, enumerator, reader, writer and checkpoint hooks, each exercised on the real
runtime against the real broker by a small plugin registered in the test (the way
datasette tests its own hooks): what each hook receives, and that what a hook may change
(records dropped at the reader, headers added at the writer) is what reaches Kafka."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from kafka_job_support import produce_values, string_sink, string_source

from streamplug import hookimpl
from streamplug.api.sink import DeliveryGuarantee
from streamplug.plugin import build_plugin_host, spec
from streamplug.plugin.records import (
    CheckpointAck,
    EnumeratorSplits,
    FetchedBatch,
    ProducingBatch,
    ReaderSplits,
    SourceInfo,
    WriterOutcome,
)
from streamplug.runtime import JobClient, StreamExecutionEnvironment
from streamplug_kafka_common.admin import read_all

pytestmark = pytest.mark.integration

RECORDS = 400
PARTITIONS = 2


class RolePlugin:
    """Implements every role hook: records what it got; drops records keyed ``drop`` at
    the reader; stamps every produced record with the job's name."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: dict[str, list[Any]] = {}
        self.threads: dict[str, set[str]] = {}

    def _seen(self, hook: str, value: Any) -> None:
        with self.lock:
            self.calls.setdefault(hook, []).append(value)
            self.threads.setdefault(hook, set()).add(threading.current_thread().name)

    @hookimpl
    def streamplug_source_starting(self, source: SourceInfo) -> None:
        self._seen("streamplug_source_starting", source)

    @hookimpl
    def streamplug_enumerator_splits_discovered(self, splits: EnumeratorSplits) -> None:
        self._seen("streamplug_enumerator_splits_discovered", splits)

    @hookimpl
    def streamplug_enumerator_splits_assigned(self, splits: EnumeratorSplits) -> None:
        self._seen("streamplug_enumerator_splits_assigned", splits)

    @hookimpl
    def streamplug_enumerator_splits_added_back(self, splits: EnumeratorSplits) -> None:
        self._seen("streamplug_enumerator_splits_added_back", splits)

    @hookimpl
    def streamplug_reader_splits_added(self, splits: ReaderSplits) -> None:
        self._seen("streamplug_reader_splits_added", splits)

    @hookimpl
    def streamplug_reader_batch_fetched(self, batch: FetchedBatch) -> Iterable[int] | None:
        self._seen(
            "streamplug_reader_batch_fetched",
            (batch, [(m.key(), m.offset(), m.headers()) for m in batch.messages]),
        )
        drops = [i for i, m in enumerate(batch.messages) if m.key() == b"drop"]
        return drops or None

    @hookimpl
    def streamplug_reader_splits_finished(self, splits: ReaderSplits) -> None:
        self._seen("streamplug_reader_splits_finished", splits)

    @hookimpl
    def streamplug_writer_batch_producing(
        self, batch: ProducingBatch
    ) -> Mapping[int, list[tuple[str, bytes]]] | None:
        self._seen("streamplug_writer_batch_producing", (batch, list(batch.values)))
        stamp = [("x-job", batch.subtask.job_name.encode())]
        return dict.fromkeys(range(len(batch.values)), stamp)

    @hookimpl
    def streamplug_writer_outcome(self, outcome: WriterOutcome) -> None:
        self._seen("streamplug_writer_outcome", outcome)

    @hookimpl
    def streamplug_checkpoint_subtask_acknowledged(self, ack: CheckpointAck) -> None:
        self._seen("streamplug_checkpoint_subtask_acknowledged", ack)


def _produce(bootstrap: str, topic: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(RECORDS):
        key = b"drop" if i % 10 == 3 else f"k{i}".encode()
        producer.produce(
            topic, f"v{i}".encode(), key, partition=i % PARTITIONS, headers=[("origin", b"test")]
        )
    assert producer.flush(30) == 0


def _job(
    host: Any,
    bootstrap: str,
    source_topic: str,
    sink_topic: str,
    checkpoints: Path,
    *,
    parallelism: int,
    guarantee: DeliveryGuarantee,
    bounded: bool = True,
) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment.get_execution_environment(host)
    env.set_parallelism(parallelism)
    env.enable_checkpointing(300)
    env.get_checkpoint_config().set_checkpoint_storage_dir(str(checkpoints))
    source = string_source(bootstrap, source_topic, "hooks", bounded=bounded)
    sink = string_sink(bootstrap, sink_topic, guarantee, "hooks")
    env.from_source(source, None, "hooked").map(str.upper).sink_to(sink)
    return env


@pytest.fixture(scope="module")
def run(_kafka_cluster_session: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One bounded AT_LEAST_ONCE job and one EXACTLY_ONCE job at parallelism 2, then a
    stop and a restart of an unbounded one at parallelism 1 (its splits go back)."""
    cluster = _kafka_cluster_session
    bootstrap = cluster.bootstrap_servers
    topics = {}
    for name in ("in", "alo", "eos", "rescale-out"):
        topics[name] = f"role-hooks-{name}-{uuid.uuid4().hex[:8]}"
        cluster.create_topic(topics[name], PARTITIONS if name == "in" else 1, 1, None)
    _produce(bootstrap, topics["in"])
    plugin = RolePlugin()
    host = build_plugin_host(autoload=False, plugins=[plugin])
    tmp = tmp_path_factory.mktemp("role-hooks")
    alo = _job(
        host,
        bootstrap,
        topics["in"],
        topics["alo"],
        tmp / "alo",
        parallelism=2,
        guarantee=DeliveryGuarantee.AT_LEAST_ONCE,
    ).execute("hooks-alo")
    eos = _job(
        host,
        bootstrap,
        topics["in"],
        topics["eos"],
        tmp / "eos",
        parallelism=2,
        guarantee=DeliveryGuarantee.EXACTLY_ONCE,
    ).execute("hooks-eos")
    rescale = tmp / "rescale"

    def rescaled(parallelism: int, until: Callable[[JobClient], bool]) -> None:
        """An unbounded run writing ``rescale``'s checkpoints, stopped once ``until``."""
        client = _job(
            host,
            bootstrap,
            topics["in"],
            topics["rescale-out"],
            rescale,
            parallelism=parallelism,
            guarantee=DeliveryGuarantee.AT_LEAST_ONCE,
            bounded=False,
        ).execute_async("hooks-rescale")
        deadline = time.monotonic() + 60
        while not until(client) and time.monotonic() < deadline:
            time.sleep(0.1)
        client.stop(60)

    rescaled(2, lambda client: client.metrics().records_out >= 1)
    # A stopped job restarted at a lower parallelism: subtask 1's split goes back.
    rescaled(1, lambda _: bool(plugin.calls.get("streamplug_enumerator_splits_added_back")))
    # Again at parallelism 1: the checkpoint's splits are restored to their subtask.
    rescaled(1, lambda _: any(a.restored for a in _of(plugin, "streamplug_reader_splits_added")))
    yield plugin, bootstrap, topics, alo, eos


def _of(plugin: RolePlugin, hook: str, job: str | None = None) -> list[Any]:
    calls = plugin.calls.get(hook, [])
    if job is None:
        return calls
    return [c for c in calls if _job_of(c) == job]


def _job_of(call: Any) -> str:
    value = call[0] if isinstance(call, tuple) else call
    if hasattr(value, "job"):
        return str(value.job.name)
    if hasattr(value, "subtask"):
        return str(value.subtask.job_name)
    return str(value.job_name)


def test_every_role_hook_has_a_test_here() -> None:
    missing = [h for h in spec.ROLE_HOOKS if f"test_hook_{h}" not in globals()]
    assert not missing, f"no test_hook_<name> exercises {missing}"


def test_hook_streamplug_source_starting(run: Any) -> None:
    plugin, *_ = run
    (alo,) = _of(plugin, "streamplug_source_starting", "hooks-alo")
    assert alo.pipeline and alo.boundedness == "BOUNDED"
    assert alo.description["type"] == "KafkaSource"
    assert alo.job.parallelism == 2 and alo.job.attempt == 0
    unbounded = _of(plugin, "streamplug_source_starting", "hooks-rescale")[0]
    assert unbounded.boundedness == "CONTINUOUS_UNBOUNDED"


def test_hook_streamplug_enumerator_splits_discovered(run: Any) -> None:
    plugin, _, topics, *_ = run
    (found,) = _of(plugin, "streamplug_enumerator_splits_discovered", "hooks-alo")
    assert found.subtask_index is None
    assert sorted((s.topic, s.partition) for s in found.splits) == [
        (topics["in"], p) for p in range(PARTITIONS)
    ]


def test_hook_streamplug_enumerator_splits_assigned(run: Any) -> None:
    plugin, *_ = run
    assigned = _of(plugin, "streamplug_enumerator_splits_assigned", "hooks-alo")
    owners = {s.partition: a.subtask_index for a in assigned for s in a.splits}
    # Each partition goes to exactly one of the two readers, and both are used.
    assert sorted(owners) == list(range(PARTITIONS))
    assert set(owners.values()) == {0, 1}


def test_hook_streamplug_enumerator_splits_added_back(run: Any) -> None:
    plugin, *_ = run
    back = _of(plugin, "streamplug_enumerator_splits_added_back", "hooks-rescale")
    assert back, "restoring a parallelism-2 checkpoint at parallelism 1 added no split back"
    assert all(b.subtask_index == 0 for b in back)
    assert len({s.split_id for b in back for s in b.splits}) >= 1


def test_hook_streamplug_reader_splits_added(run: Any) -> None:
    plugin, *_ = run
    added = _of(plugin, "streamplug_reader_splits_added", "hooks-alo")
    assert {a.subtask.subtask_index for a in added} == {0, 1}
    assert sorted(i for a in added for i in a.split_ids) == sorted(
        s.split_id for a in added for s in a.splits
    )
    assert not any(a.restored for a in added)
    restored = [a for a in _of(plugin, "streamplug_reader_splits_added") if a.restored]
    assert restored, "the splits a restart at the same parallelism restored were not reported"
    assert {a.subtask.job_name for a in restored} == {"hooks-rescale"}
    assert sorted(i for a in restored for i in a.split_ids) == sorted(
        s.split_id for a in restored for s in a.splits
    )


def test_hook_streamplug_reader_batch_fetched(run: Any) -> None:
    plugin, bootstrap, topics, alo, _ = run
    fetched = _of(plugin, "streamplug_reader_batch_fetched", "hooks-alo")
    seen = [(batch.partition, offset) for batch, rows in fetched for _, offset, _ in rows]
    assert len(seen) == len(set(seen)) == RECORDS, "a record was offered twice or not at all"
    batch, rows = fetched[0]
    assert batch.topic == topics["in"] and batch.group_id and batch.group_id.startswith("hooks-")
    assert batch.subtask.connector == "kafka" and batch.split_id.startswith(topics["in"])
    assert rows[0][2] == [("origin", b"test")]
    # The records the hook dropped never reached the job, and were not replayed either.
    dropped = RECORDS // 10
    assert alo.records_in == RECORDS - dropped
    out = read_all(bootstrap, topics["alo"])
    assert len(out) == RECORDS - dropped
    assert b"V3" not in {m.value() for m in out}


def test_hook_streamplug_reader_splits_finished(run: Any) -> None:
    plugin, _, topics, *_ = run
    finished = _of(plugin, "streamplug_reader_splits_finished", "hooks-alo")
    assert sorted(i for f in finished for i in f.split_ids) == sorted(
        f"{topics['in']}-{p}" for p in range(PARTITIONS)
    )
    assert all(not f.splits for f in finished)


def test_hook_streamplug_writer_batch_producing(run: Any) -> None:
    plugin, bootstrap, topics, *_ = run
    batches = _of(plugin, "streamplug_writer_batch_producing", "hooks-alo")
    values = [v for _, vs in batches for v in vs]
    assert len(values) == RECORDS - RECORDS // 10 and all(v.isupper() for v in values)
    batch = batches[0][0]
    assert batch.topic == topics["alo"] and batch.delivery_guarantee == "AT_LEAST_ONCE"
    assert batch.transaction is None and batch.same_positions
    # The headers it returned are on every record, in Kafka.
    for topic, job in ((topics["alo"], "hooks-alo"), (topics["eos"], "hooks-eos")):
        out = read_all(bootstrap, topic)
        assert out and all(m.headers() == [("x-job", job.encode())] for m in out)
    eos = _of(plugin, "streamplug_writer_batch_producing", "hooks-eos")
    assert all(b.delivery_guarantee == "EXACTLY_ONCE" and b.transaction for b, _ in eos)


def test_hook_streamplug_writer_outcome(run: Any) -> None:
    plugin, *_ = run
    flushes = _of(plugin, "streamplug_writer_outcome", "hooks-alo")
    assert flushes and all(o.kind == "flush" and o.outcome == "committed" for o in flushes)
    assert {o.subtask_index for o in flushes} == {0, 1}
    txns = _of(plugin, "streamplug_writer_outcome", "hooks-eos")
    committed = [o for o in txns if o.outcome == "committed"]
    assert committed and all(o.kind == "transaction" and o.checkpoint_id for o in committed)
    # Every transaction the EXACTLY_ONCE writers produced into was committed.
    written = {
        b.transaction for b, _ in _of(plugin, "streamplug_writer_batch_producing", "hooks-eos")
    }
    assert written <= {o.transaction for o in committed}
    # The empty transaction opened after the final commit is dropped, and says so.
    assert {o.outcome for o in txns} <= {"committed", "aborted"}


def test_hook_streamplug_checkpoint_subtask_acknowledged(run: Any) -> None:
    plugin, *_ = run
    acks = _of(plugin, "streamplug_checkpoint_subtask_acknowledged", "hooks-eos")
    assert acks and {a.subtask_index for a in acks} == {0, 1}
    assert all(a.state_bytes > 0 and a.duration_ms >= 0 for a in acks)
    by_checkpoint: dict[int, int] = {}
    for a in acks:
        by_checkpoint[a.checkpoint_id] = by_checkpoint.get(a.checkpoint_id, 0) + 1
    assert set(by_checkpoint.values()) == {2}, "each checkpoint reports each subtask once"


def test_headers_for_positions_outside_the_batch_are_left_out_and_the_job_goes_on(
    kafka_bootstrap: str,
    topic_factory: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Wrong:
        @hookimpl
        def streamplug_writer_batch_producing(
            self, batch: ProducingBatch
        ) -> Mapping[int, list[tuple[str, bytes]]]:
            return {len(batch.values): [("x", b"y")]}

    class Column:
        @hookimpl
        def streamplug_writer_batch_producing(
            self, batch: ProducingBatch
        ) -> list[list[tuple[str, bytes]] | None]:
            # Every other record, as a column: order and positions must hold.
            return [[("n", str(i).encode())] if i % 2 else None for i in range(len(batch.values))]

    source, sink = topic_factory(), topic_factory()
    produce_values(kafka_bootstrap, source, (f"v{i}".encode() for i in range(50)), b"k")
    host = build_plugin_host(autoload=False, plugins=[Wrong(), Column()])
    _job(
        host,
        kafka_bootstrap,
        source,
        sink,
        tmp_path,
        parallelism=1,
        guarantee=DeliveryGuarantee.AT_LEAST_ONCE,
    ).execute("hooks-wrong")
    out = read_all(kafka_bootstrap, sink)
    assert [m.value() for m in out] == [f"V{i}".encode() for i in range(50)]
    # The column's headers are there, by position within each batch; the wrong ones never.
    assert all(not any(k == "x" for k, _ in (m.headers() or [])) for m in out)
    assert sum(1 for m in out if m.headers()) >= 20
    assert "returned headers for position(s)" in caplog.text
