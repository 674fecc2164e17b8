"""The embedded runtime without Kafka: operators, parallelism, checkpoints, recovery,
restarts, stop and cancel, watermarks."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from streamplug.api import (
    CommitOutcome,
    Committer,
    DeliveryGuarantee,
    Sink,
    SinkWriter,
    WatermarkStrategy,
)
from streamplug.api.watermarks import MAX_WATERMARK, MIN_WATERMARK
from streamplug.connectors import CollectionSource, CollectSink, TransactionalFileSink
from streamplug.errors import CheckpointError, ConfigError, JobCancelledError, JobFailedError
from streamplug.plugins import build_plugin_host
from streamplug.runtime import (
    DataStream,
    FileCheckpointStorage,
    JobStatus,
    RestartStrategies,
    StreamExecutionEnvironment,
)


@pytest.fixture
def env() -> StreamExecutionEnvironment:
    return StreamExecutionEnvironment.get_execution_environment(build_plugin_host(autoload=False))


def test_chained_operators_at_parallelism_three(env: StreamExecutionEnvironment) -> None:
    env.set_parallelism(3)
    sink = CollectSink()
    stream = env.from_source(CollectionSource(list(range(10_000)), batch_size=333), None, "n")
    stream.map(lambda x: x * 2).filter(lambda x: x % 3 == 0).flat_map(lambda x: [x, -x]).sink_to(
        sink
    )
    result = env.execute("ops")
    expected = [y for x in range(10_000) if (x * 2) % 3 == 0 for y in (x * 2, -(x * 2))]
    assert sorted(sink.results) == sorted(expected)
    assert result.records_in == 10_000
    assert result.records_out == len(expected)


def test_branches_feed_every_sink(env: StreamExecutionEnvironment) -> None:
    evens, odds = CollectSink(), CollectSink()
    stream = env.from_collection(range(100))
    stream.filter(lambda x: x % 2 == 0).sink_to(evens)
    stream.filter(lambda x: x % 2 == 1).sink_to(odds)
    env.execute("branches")
    assert sorted(evens.results) == list(range(0, 100, 2))
    assert sorted(odds.results) == list(range(1, 100, 2))


def test_a_job_without_sink_or_source_says_what_to_call(env: StreamExecutionEnvironment) -> None:
    with pytest.raises(ConfigError, match="from_source"):
        env.execute("empty")
    env.from_collection([1]).map(str)
    with pytest.raises(ConfigError, match="sink_to"):
        env.execute("no sink")


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_bad_parallelism_is_rejected(env: StreamExecutionEnvironment, bad: Any) -> None:
    with pytest.raises(ConfigError, match="parallelism"):
        env.set_parallelism(bad)


def test_checkpoint_storage_of_an_unsupported_scheme_is_rejected_with_the_fix(
    env: StreamExecutionEnvironment,
) -> None:
    with pytest.raises(ConfigError, match=r"ftp://host/chk.*use s3:// for any S3-compatible"):
        env.get_checkpoint_config().set_checkpoint_storage_dir("ftp://host/chk")


def _fail_once_at(value: int) -> Any:
    done = threading.Event()

    def fn(x: int) -> int:
        if x == value and not done.is_set():
            done.set()
            raise RuntimeError(f"injected failure at {value}")
        return x

    return fn


def _numbers_failing_once(env: StreamExecutionEnvironment, tmp_path: Path) -> DataStream:
    """0..5999 at parallelism 2, checkpointed every 30 ms, through a map that fails once at
    4000; the job may restart 3 times."""
    env.set_parallelism(2).enable_checkpointing(30)
    env.get_checkpoint_config().set_checkpoint_storage_dir(tmp_path / "chk")
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(3, 10))
    source = CollectionSource(list(range(6000)), batch_size=100, records_per_second=6000)
    return env.from_source(source, None, "n").map(_fail_once_at(4000))


def test_failure_restarts_from_checkpoint_exactly_once(
    env: StreamExecutionEnvironment, tmp_path: Path
) -> None:
    _numbers_failing_once(env, tmp_path).sink_to(TransactionalFileSink(tmp_path / "out"))
    result = env.execute("failover")
    assert result.attempts == 2
    out = TransactionalFileSink.read_committed(tmp_path / "out")
    assert sorted(out) == list(range(6000)), "lost or duplicated records across the restart"


def test_failure_under_at_least_once_loses_nothing(
    env: StreamExecutionEnvironment, tmp_path: Path
) -> None:
    _numbers_failing_once(env, tmp_path).sink_to(CollectSink(tmp_path / "out.jsonl"))
    env.execute("alo")
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert set(lines) == set(range(6000))


def test_restart_strategy_gives_up_with_the_cause(env: StreamExecutionEnvironment) -> None:
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(1, 1))

    def always(x: int) -> int:
        raise ValueError("bad record 7")

    env.from_collection([7]).map(always).sink_to(CollectSink())
    with pytest.raises(JobFailedError, match="2 attempt") as info:
        env.execute("doomed")
    assert isinstance(info.value.__cause__, ValueError)


def test_stop_takes_a_final_checkpoint_and_a_new_run_resumes(tmp_path: Path) -> None:
    def build() -> StreamExecutionEnvironment:
        env = StreamExecutionEnvironment.get_execution_environment(
            build_plugin_host(autoload=False)
        )
        env.set_parallelism(2).enable_checkpointing(10_000)
        env.get_checkpoint_config().set_checkpoint_storage_dir(tmp_path / "chk")
        source = CollectionSource(list(range(4000)), batch_size=50, records_per_second=4000)
        env.from_source(source, None, "n").sink_to(TransactionalFileSink(tmp_path / "out"))
        return env

    client = build().execute_async("resumable")
    time.sleep(0.4)
    final = client.stop(timeout=30)
    assert client.status is JobStatus.FINISHED
    assert final is not None
    first = TransactionalFileSink.read_committed(tmp_path / "out")
    assert 0 < len(first) < 4000
    build().execute("resumable")
    assert sorted(TransactionalFileSink.read_committed(tmp_path / "out")) == list(range(4000))


def test_restore_with_other_parallelism_redistributes_splits(tmp_path: Path) -> None:
    def build(parallelism: int) -> StreamExecutionEnvironment:
        env = StreamExecutionEnvironment.get_execution_environment(
            build_plugin_host(autoload=False)
        )
        env.set_parallelism(parallelism).enable_checkpointing(10_000)
        env.get_checkpoint_config().set_checkpoint_storage_dir(tmp_path / "chk")
        source = CollectionSource(list(range(3000)), batch_size=50, records_per_second=3000)
        env.from_source(source, None, "n").sink_to(TransactionalFileSink(tmp_path / "out"))
        return env

    client = build(2).execute_async("rescale")
    time.sleep(0.3)
    client.stop(timeout=30)
    build(3).execute("rescale")
    assert sorted(TransactionalFileSink.read_committed(tmp_path / "out")) == list(range(3000))


def test_cancel_ends_without_committing(env: StreamExecutionEnvironment, tmp_path: Path) -> None:
    env.enable_checkpointing(60_000)
    source = CollectionSource(list(range(100_000)), batch_size=10, records_per_second=1000)
    env.from_source(source, None, "n").sink_to(TransactionalFileSink(tmp_path / "out"))
    client = env.execute_async("cancelled")
    time.sleep(0.2)
    client.cancel()
    with pytest.raises(JobCancelledError):
        client.wait(10)
    assert client.status is JobStatus.CANCELED
    assert TransactionalFileSink.read_committed(tmp_path / "out") == []


def test_fresh_start_ignores_old_checkpoints(tmp_path: Path) -> None:
    for _ in range(2):
        env = StreamExecutionEnvironment.get_execution_environment(
            build_plugin_host(autoload=False)
        )
        env.enable_checkpointing(10_000).get_checkpoint_config().set_checkpoint_storage_dir(
            tmp_path
        ).set_restore(None)
        sink = CollectSink()
        env.from_collection(range(10)).sink_to(sink)
        env.execute("again")
        assert sorted(sink.results) == list(range(10))


def test_finished_job_restored_from_its_final_checkpoint_emits_nothing(tmp_path: Path) -> None:
    outputs = []
    for _ in range(2):
        env = StreamExecutionEnvironment.get_execution_environment(
            build_plugin_host(autoload=False)
        )
        env.enable_checkpointing(10_000).get_checkpoint_config().set_checkpoint_storage_dir(
            tmp_path
        )
        sink = CollectSink()
        env.from_collection(range(10)).sink_to(sink)
        env.execute("once")
        outputs.append(sorted(sink.results))
    assert outputs == [list(range(10)), []]


class _TwoPhaseProbe(Sink[str, Any]):
    """A sink whose committer's verdict on a PENDING checkpoint is scripted."""

    def __init__(self, outcome: CommitOutcome) -> None:
        self.outcome = outcome
        self.resolved: list[int] = []
        self.committed: list[int] = []

    def create_writer(self, context: Any, restored_state: Sequence[Any]) -> SinkWriter[str, Any]:
        class W(SinkWriter[str, Any]):
            def write(self, values: Sequence[Any], timestamps: Sequence[int] | None) -> None:
                pass

            def flush(self, end_of_input: bool) -> None:
                pass

            def prepare_commit(self) -> list[str]:
                return ["txn"]

        return W()

    def create_committer(self, context: Any) -> Committer[str]:
        probe = self

        class C(Committer[str]):
            def commit(self, checkpoint_id: int, committables: Sequence[str]) -> None:
                probe.committed.append(checkpoint_id)

            def resolve(self, checkpoint_id: int, committables: Sequence[str]) -> CommitOutcome:
                probe.resolved.append(checkpoint_id)
                return probe.outcome

        return C()

    @property
    def delivery_guarantee(self) -> DeliveryGuarantee:
        return DeliveryGuarantee.EXACTLY_ONCE


@pytest.mark.parametrize("outcome", [CommitOutcome.COMMITTED, CommitOutcome.ABORTED])
def test_pending_checkpoint_is_promoted_or_dropped_by_the_committer(
    tmp_path: Path, outcome: CommitOutcome
) -> None:
    def build(sink: _TwoPhaseProbe) -> StreamExecutionEnvironment:
        env = StreamExecutionEnvironment.get_execution_environment(
            build_plugin_host(autoload=False)
        )
        env.enable_checkpointing(10_000).get_checkpoint_config().set_checkpoint_storage_dir(
            tmp_path
        )
        env.from_collection(range(5)).sink_to(sink)
        return env

    build(_TwoPhaseProbe(outcome)).execute("two-phase")
    storage = FileCheckpointStorage(tmp_path, "two-phase")
    complete = storage.list()[0]
    # Turn the final checkpoint back into what a crash between PENDING and COMPLETE leaves.
    storage.write(complete.checkpoint_id + 1, "PENDING", dict(complete.document, final=False))
    probe = _TwoPhaseProbe(outcome)
    build(probe).execute("two-phase")
    assert probe.resolved == [complete.checkpoint_id + 1]
    ids = storage.ids()
    if outcome is CommitOutcome.COMMITTED:
        assert complete.checkpoint_id + 1 in ids
    else:
        assert complete.checkpoint_id + 1 not in ids


def test_torn_temporary_and_corrupt_checkpoints_are_ignored(tmp_path: Path) -> None:
    storage = FileCheckpointStorage(tmp_path, "job")
    storage.write(1, "COMPLETE", {"pipelines": {}})
    (storage.directory / ".chk-00000002.json.abc.tmp").write_text('{"format": 1, "checkp')
    (storage.directory / "chk-00000003.json").write_text("not json")
    assert [c.checkpoint_id for c in storage.list()] == [1]
    storage.remove_temporaries()
    assert not list(storage.directory.glob(".chk-*"))


def test_retention_keeps_the_newest_complete_checkpoints(tmp_path: Path) -> None:
    storage = FileCheckpointStorage(tmp_path, "job")
    for cid in range(1, 7):
        storage.write(cid, "COMPLETE", {})
    storage.prune(2)
    assert storage.ids() == [6, 5]


def test_unknown_checkpoint_format_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "chk-00000001.json"
    path.write_text(json.dumps({"format": 99, "checkpoint_id": 1, "status": "COMPLETE"}))
    with pytest.raises(CheckpointError, match="format 99"):
        FileCheckpointStorage.read(path)


def test_idle_readers_do_not_hold_back_the_watermark(env: StreamExecutionEnvironment) -> None:
    env.set_parallelism(4)
    sink = CollectSink()
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(
        lambda v, ts: v
    )
    source = CollectionSource(
        list(range(1, 20_001)), num_splits=2, batch_size=100, records_per_second=20_000
    )
    client = env.from_source(source, strategy, "ts").sink_to(sink)._env.execute_async("wm")
    deadline = time.monotonic() + 10
    seen = None
    while time.monotonic() < deadline:
        metrics = client.metrics()
        if metrics.watermark is not None and metrics.watermark > 1000:
            seen = metrics
            break
        time.sleep(0.05)
    client.wait(30)
    assert seen is not None, "the job watermark never advanced past 1000 with two idle readers"
    # Readers 2 and 3 never get a split: idle (no watermark) or already finished (MAX).
    assert {seen.subtask_watermarks["ts[2]"], seen.subtask_watermarks["ts[3]"]} <= {
        None,
        MAX_WATERMARK,
    }
    assert sink.watermarks[-1] == MAX_WATERMARK


def test_a_reader_without_splits_is_idle_once_the_assignment_round_is_over() -> None:
    from streamplug.runtime.task import SubtaskOutput

    output = SubtaskOutput(
        WatermarkStrategy.for_monotonous_timestamps(), lambda v, t: None, lambda w: None
    )
    output.mark_idle()
    output.periodic()
    # Before the enumerator's first round, no split means "not yet": it holds back.
    assert not output.idle
    output.assignment_round()
    assert output.idle
    output.register_split("p0")
    output.mark_active()
    output.periodic()
    assert not output.idle


def test_idleness_timeout_releases_a_silent_split(env: StreamExecutionEnvironment) -> None:
    from streamplug.runtime.task import SubtaskOutput

    emitted: list[int] = []
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(0).with_idleness(50)
    output = SubtaskOutput(strategy, lambda v, t: None, emitted.append)
    output.register_split("fast")
    output.register_split("slow")
    output.collect_batch([1], [1000], "slow")
    output.collect_batch([1], [5000], "fast")
    output.periodic()
    assert output.watermark == 999
    time.sleep(0.06)
    output.collect_batch([1], [6000], "fast")
    output.periodic()
    assert output.watermark == 5999, "the silent split still holds the watermark back"


def test_restart_strategies_follow_flink_semantics() -> None:
    from streamplug.runtime.restart import fresh

    exp = fresh(RestartStrategies.exponential_delay_restart(100, 350, 2.0, 60_000, 0.0, attempts=4))
    assert [exp.next_delay_ms(RuntimeError()) for _ in range(5)] == [100, 200, 350, 350, None]
    rate = fresh(RestartStrategies.failure_rate_restart(2, 60_000, 5))
    assert [rate.next_delay_ms(RuntimeError()) for _ in range(3)] == [5, 5, None]
    assert fresh(RestartStrategies.no_restart()).next_delay_ms(RuntimeError()) is None


class SourceWithItsOwnStrategy(CollectionSource):
    """An older-style source that carries its watermark strategy (as the legacy
    FlinkKafkaConsumer does after assign_timestamps_and_watermarks)."""

    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(
        lambda v, ts: v
    )

    def get_watermark_strategy(self) -> WatermarkStrategy | None:
        return self.strategy


def test_a_source_without_a_given_strategy_uses_its_own(env: StreamExecutionEnvironment) -> None:
    # One split: splits not yet read would hold the watermark back until the end.
    source = SourceWithItsOwnStrategy(list(range(1, 101)), num_splits=1, records_per_second=100)
    env.add_source(source, "own").sink_to(CollectSink())
    assert env.pipelines[-1].strategy is SourceWithItsOwnStrategy.strategy
    client = env.execute_async("own-strategy")
    seen: set[int] = set()
    while not client.status.is_terminal:
        seen.add(client.metrics().watermark or 0)
        time.sleep(0.02)
    client.wait(10)
    # Event time from the source's own assigner (the values): watermarks inside 1..100.
    assert any(0 < w < 100 for w in seen), seen
    # A strategy given to from_source wins; a plain source without one has none.
    given = WatermarkStrategy.no_watermarks()
    env.from_source(SourceWithItsOwnStrategy([1]), given, "given")
    assert env.pipelines[-1].strategy is given
    env.from_source(CollectionSource([1]), None, "plain")
    assert env.pipelines[-1].strategy.timestamp_assigner is None


class EventSink(Sink[Any, Any]):
    """Records what reaches it in arrival order: ("record", value, event time) and
    ("watermark", value)."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def create_writer(self, context: Any, restored_state: Sequence[Any]) -> SinkWriter[Any, Any]:
        events = self.events

        class Writer(SinkWriter[Any, Any]):
            def write(self, values: Sequence[Any], timestamps: Sequence[int] | None) -> None:
                stamps = timestamps if timestamps is not None else [None] * len(values)
                events.extend(("record", v, t) for v, t in zip(values, stamps, strict=True))

            def write_watermark(self, watermark: int) -> None:
                events.append(("watermark", watermark))

            def flush(self, end_of_input: bool) -> None:
                pass

        return Writer()

    def records(self) -> list[tuple[Any, Any]]:
        return [(e[1], e[2]) for e in self.events if e[0] == "record"]

    def watermarks(self) -> list[int]:
        return [e[1] for e in self.events if e[0] == "watermark"]


def test_assign_timestamps_and_watermarks_after_a_map(env: StreamExecutionEnvironment) -> None:
    lines = [json.dumps({"id": i, "ts": 10_000 + 10 * i}) for i in range(200)]
    # The source's event time is a constant 7 for every record, so its watermark stays 6.
    source_strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(
        lambda v, t: 7
    )
    # 200 records over about 0.4 s, with a watermark every 20 ms.
    source = CollectionSource(lines, num_splits=1, batch_size=10, records_per_second=500)
    stream = env.set_auto_watermark_interval(20).from_source(source, source_strategy)
    raw, parsed, kept = EventSink(), EventSink(), EventSink()
    stream.sink_to(raw)
    events = stream.map(json.loads).assign_timestamps_and_watermarks(
        WatermarkStrategy.for_bounded_out_of_orderness(5).with_timestamp_assigner(
            lambda e, previous: e["ts"]
        )
    )
    events.sink_to(parsed)
    # Without an assigner, records keep the event time they came with (the source's 7).
    stream.assign_timestamps_and_watermarks(WatermarkStrategy.for_monotonous_timestamps()).sink_to(
        kept
    )
    env.execute("timestamps-after-map")

    # Before the operator: the source's event times and watermarks.
    assert {t for _, t in raw.records()} == {7}
    assert set(raw.watermarks()) <= {6, MAX_WATERMARK} and raw.watermarks()[-1] == MAX_WATERMARK
    # After it: the field's event times, and watermarks from its own generator only.
    assert [t for _, t in parsed.records()] == [10_000 + 10 * i for i in range(200)]
    marks = parsed.watermarks()
    assert marks[-1] == MAX_WATERMARK and 6 not in marks
    assert marks[:-1] == sorted(set(marks[:-1])) and len(marks) > 2
    assert all(10_000 - 6 <= m <= 10_000 + 10 * 199 - 6 for m in marks[:-1])
    # Event times only grow here, so no record may arrive at or below a watermark sent
    # before it.
    highest = MIN_WATERMARK
    for event in parsed.events:
        if event[0] == "watermark":
            highest = event[1]
        else:
            assert event[2] > highest, (event, highest)
    assert {t for _, t in kept.records()} == {7}
    assert kept.watermarks()[-1] == MAX_WATERMARK and set(kept.watermarks()) <= {6, MAX_WATERMARK}


def test_assign_timestamps_and_watermarks_needs_a_strategy(env: StreamExecutionEnvironment) -> None:
    stream = env.from_collection([1])
    with pytest.raises(TypeError, match="needs a WatermarkStrategy, got function"):
        stream.assign_timestamps_and_watermarks(lambda v, t: v)  # type: ignore[arg-type]


def test_watermark_lag_is_now_minus_the_subtasks_watermark(
    env: StreamExecutionEnvironment,
) -> None:
    groups: list[Any] = []

    class Source(CollectionSource):
        def create_reader(self, context: Any) -> Any:
            groups.append(context.metric_group)
            return super().create_reader(context)

    # Event times a minute old: the lag is about a minute while the job runs.
    base = int(time.time() * 1000) - 60_000
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(
        lambda v, t: base + v
    )
    source = Source(list(range(300)), num_splits=1, batch_size=10, records_per_second=500)
    env.set_parallelism(1).set_auto_watermark_interval(20)
    env.from_source(source, strategy, "old-events").sink_to(CollectSink())
    client = env.execute_async("watermark-lag")
    seen: list[int] = []
    while not client.status.is_terminal:
        # The reader's group exists before the runtime registers the subtask's gauges in it.
        gauge = groups[0].gauges.get("watermarkLag") if groups else None
        if gauge is not None and (lag := gauge.value) is not None:
            seen.append(lag)
        time.sleep(0.02)
    client.wait(10)
    assert seen, "no watermarkLag while the job ran"
    assert all(59_000 < lag < 70_000 for lag in seen), seen
    assert groups[0].gauges["watermarkLag"].value is None  # ended: MAX_WATERMARK, no lag


# -- what a writer reports off its own calls -------------------------------------------------


class _Refused(Exception):
    """A failure a writer learns of on a thread of its own (or in its close)."""


class _ReportingSink(Sink[Any, Any]):
    """``fail_after_s``: the writer's context gets ``run_in_task`` of a failing call from
    another thread that long after the writer starts; ``close_fails``: close raises."""

    def __init__(self, fail_after_s: float | None = None, close_fails: bool = False) -> None:
        self.fail_after_s = fail_after_s
        self.close_fails = close_fails
        self.queued: list[bool] = []

    def create_writer(self, context: Any, restored_state: Sequence[Any]) -> SinkWriter[Any, Any]:
        sink = self

        class Writer(SinkWriter[Any, Any]):
            def write(self, values: Sequence[Any], timestamps: Sequence[int] | None) -> None:
                pass

            def flush(self, end_of_input: bool) -> None:
                pass

            def close(self) -> None:
                if sink.close_fails:
                    raise _Refused("3 records were not acknowledged")

        def fail() -> None:
            raise _Refused("the brokers never answered")

        if self.fail_after_s is not None:
            timer = threading.Timer(
                self.fail_after_s, lambda: self.queued.append(context.run_in_task(fail))
            )
            timer.daemon = True
            timer.start()
        return Writer()

    @property
    def delivery_guarantee(self) -> DeliveryGuarantee:
        return DeliveryGuarantee.AT_LEAST_ONCE


def _slow_source() -> CollectionSource:
    return CollectionSource(list(range(10_000)), num_splits=1, records_per_second=20)


def test_a_failure_handed_to_run_in_task_fails_the_job_without_another_write(
    env: StreamExecutionEnvironment,
) -> None:
    # The writer sees no call after the failure is found (a slow source, no checkpoints):
    # only the subtask's own thread running the call can fail the job in time.
    sink = _ReportingSink(fail_after_s=0.3)
    env.set_restart_strategy(RestartStrategies.no_restart())
    env.from_source(_slow_source(), WatermarkStrategy.no_watermarks(), "slow").sink_to(sink)
    started = time.monotonic()
    with pytest.raises(JobFailedError, match="_Refused: the brokers never answered"):
        env.execute("run-in-task")
    assert time.monotonic() - started < 3
    assert sink.queued == [True]


def test_run_in_task_outside_a_subtask_says_it_queued_nothing() -> None:
    from streamplug.testing import sink_context

    assert sink_context().run_in_task(lambda: None) is False


@pytest.mark.parametrize("checkpointing", [False, True], ids=["no-checkpoints", "checkpoints"])
def test_a_writer_close_that_fails_on_a_stop_fails_the_job(
    env: StreamExecutionEnvironment, tmp_path: Path, checkpointing: bool
) -> None:
    if checkpointing:
        env.enable_checkpointing(60_000)
        env.get_checkpoint_config().set_checkpoint_storage_dir(tmp_path / "chk")
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(3, 100))
    env.from_source(_slow_source(), WatermarkStrategy.no_watermarks(), "slow").sink_to(
        _ReportingSink(close_fails=True)
    )
    client = env.execute_async("close-fails")
    time.sleep(0.3)
    with pytest.raises(JobFailedError, match="_Refused: 3 records were not acknowledged"):
        client.stop(timeout=10)
    assert client.status is JobStatus.FAILED
    assert client._run.attempts == 1  # asked to stop: never restarted


def test_a_writer_close_that_fails_after_a_cancel_is_only_logged(
    env: StreamExecutionEnvironment, caplog: pytest.LogCaptureFixture
) -> None:
    env.from_source(_slow_source(), WatermarkStrategy.no_watermarks(), "slow").sink_to(
        _ReportingSink(close_fails=True)
    )
    client = env.execute_async("close-fails-cancel")
    time.sleep(0.3)
    client.cancel()
    with pytest.raises(JobCancelledError):
        client.wait(10)
    assert "closing Writer of subtask ('slow', 0) after the attempt ended: 3 records" in (
        caplog.text
    )


def test_a_close_still_waiting_when_the_attempt_ends_fails_a_stop(
    env: StreamExecutionEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A writer whose close outlasts the slot's wait (brokers gone at the stop) could still
    # report lost records after the attempt ended, where nobody listens: the job must not
    # end FINISHED meanwhile.
    from streamplug.runtime import worker

    monkeypatch.setattr(worker, "_CLOSE_WAIT_S", 0.3)

    class SlowClose(_ReportingSink):
        def create_writer(
            self, context: Any, restored_state: Sequence[Any]
        ) -> SinkWriter[Any, Any]:
            writer = super().create_writer(context, restored_state)
            writer.close = lambda: time.sleep(2)  # type: ignore[method-assign]
            return writer

    env.from_source(_slow_source(), WatermarkStrategy.no_watermarks(), "slow").sink_to(SlowClose())
    client = env.execute_async("slow-close")
    time.sleep(0.3)
    with pytest.raises(
        JobFailedError, match=r"TimeoutError: subtask slow\[0\] did not close within 0.3 s"
    ):
        client.stop(timeout=10)
