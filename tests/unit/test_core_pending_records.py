"""Consumer lag in the job's live view: ``SourceReader.pending_records``, its sum in
``JobMetrics.pending_records``, and the ``lag`` column of the progress line."""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from typing import Any

import pytest

from streamplug.api.context import ReaderContext
from streamplug.api.source import InputStatus, ReaderOutput, SourceReader
from streamplug.connectors import CollectionSource, CollectSink
from streamplug.connectors.collection import _Reader as CollectionReader
from streamplug.pipeline import ProgressLine
from streamplug.plugins import build_plugin_host
from streamplug.runtime import JobMetrics, StreamExecutionEnvironment


class MinimalReader(SourceReader[Any]):
    def poll_next(self, output: ReaderOutput[Any]) -> InputStatus:
        return InputStatus.END_OF_INPUT

    def add_splits(self, splits: Sequence[Any]) -> None:
        pass

    def snapshot_state(self, checkpoint_id: int) -> list[Any]:
        return []


def test_a_reader_that_does_not_implement_pending_records_cannot_say() -> None:
    assert MinimalReader().pending_records() is None


class SilentReader(CollectionReader):
    """The collection reader, as a reader that cannot say how much it has left."""

    def pending_records(self) -> int | None:
        return None


class FailingReader(CollectionReader):
    def pending_records(self) -> int | None:
        raise RuntimeError("a bug in a plugin")


class MixedSource(CollectionSource):
    """Subtask 0 and 1 can say what they have left, subtask 2 cannot, subtask 3 fails to."""

    def create_reader(self, context: ReaderContext) -> Any:
        kind = [CollectionReader, CollectionReader, SilentReader, FailingReader]
        return kind[context.subtask_index](self.elements, self.batch_size, self.records_per_second)


@pytest.fixture
def env() -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment.get_execution_environment(build_plugin_host(autoload=False))
    env.set_parallelism(4)
    return env


def test_job_metrics_sum_the_readers_that_can_say(
    env: StreamExecutionEnvironment, caplog: pytest.LogCaptureFixture
) -> None:
    # 8 splits of 500: two per subtask; the counting readers hold 2000 at the start.
    source = MixedSource(list(range(4000)), num_splits=8, batch_size=50, records_per_second=2000)
    sink = CollectSink()
    env.from_source(source).sink_to(sink)
    client = env.execute_async("pending")
    seen: list[int] = []
    deadline = time.monotonic() + 20
    while not client.status.is_terminal and time.monotonic() < deadline:
        pending = client.metrics().pending_records
        if pending is not None:
            seen.append(pending)
        time.sleep(0.02)
    result = client.wait(10)
    assert result.records_in == 4000 and len(sink.results) == 4000
    assert seen and 0 < max(seen) <= 2000, seen
    after_peak = seen[seen.index(max(seen)) :]
    assert after_peak == sorted(after_peak, reverse=True), "the lag of a bounded read shrinks"
    assert client.metrics().pending_records == 0
    # The failing reader neither failed the job nor flooded the log.
    failures = [r for r in caplog.records if "pending_records of FailingReader" in r.message]
    assert len(failures) == 1


class SilentSource(CollectionSource):
    def create_reader(self, context: ReaderContext) -> Any:
        return SilentReader(self.elements, self.batch_size, self.records_per_second)


def test_the_collection_reader_says_what_its_splits_have_left() -> None:
    reader = CollectionReader(list(range(10)), 3, None)
    reader.add_splits(CollectionSource(list(range(10)), num_splits=2).splits())
    assert reader.pending_records() == 10


def test_job_metrics_have_no_pending_records_when_no_reader_can_say(
    env: StreamExecutionEnvironment,
) -> None:
    env.from_source(SilentSource(list(range(100)))).sink_to(CollectSink())
    client = env.execute_async("unknown")
    client.wait(10)
    assert client.metrics().pending_records is None
    assert JobMetrics().pending_records is None


def progress_text(progress: ProgressLine, **metrics: Any) -> str:
    return progress.text(JobMetrics(status="RUNNING", **metrics))


def test_progress_line_shows_the_jobs_pending_records_as_lag() -> None:
    progress = ProgressLine(io.StringIO(), interactive=False)
    # No lag known: no column, as for a source that cannot say.
    assert "lag" not in progress_text(progress, records_in=10)
    assert "lag 12.3k" in progress_text(progress, records_in=20, pending_records=12_345)
    # Once shown, the column stays, so the line does not jump.
    assert "lag -" in progress_text(progress, records_in=30)
    assert "lag 0" in progress_text(progress, records_in=40, pending_records=0)


def test_progress_line_lag_override_replaces_the_pending_records() -> None:
    progress = ProgressLine(io.StringIO(), interactive=False, lag=lambda m: m.records_in // 2)
    assert "lag 50" in progress_text(progress, records_in=100, pending_records=7)
    unknown = ProgressLine(io.StringIO(), interactive=False, lag=lambda m: None)
    assert "lag -" in progress_text(unknown, pending_records=7)
