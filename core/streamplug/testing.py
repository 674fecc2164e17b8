"""Helpers for unit-testing a connector's enumerators, readers, writers and committers
without running a job.

``reader_context`` and ``sink_context`` are the runtime's own context classes, so a test sees
exactly what a job sees. ``enumerator_context`` records what an enumerator asks of the
runtime and runs its ``call_async`` work when the test says so; ``RecordingOutput`` keeps
what a reader emits.

>>> ctx = sink_context(subtask_index=1, parallelism=2, checkpoint_interval_ms=500)
>>> writer = my_sink.create_writer(ctx, restored_state=[])

>>> reader = my_source.create_reader(reader_context())
>>> output = RecordingOutput()
>>> reader.add_splits(splits); reader.poll_next(output)
>>> assert output.values == [...]

>>> ctx = enumerator_context(parallelism=2)
>>> enumerator = my_source.create_enumerator(ctx)
>>> enumerator.start()
>>> ctx.run_async_calls()  # one round of discovery
>>> assert ctx.assigned == {0: [...], 1: [...]}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from streamplug.api.context import ReaderContext, SinkContext, SplitEnumeratorContext
from streamplug.metrics import MetricGroup
from streamplug.plugins import PluginHost, build_plugin_host
from streamplug.runtime.config import DEFAULT_TIMEOUT_MS
from streamplug.runtime.contexts import RuntimeReaderContext, RuntimeSinkContext, _HostFacts

__all__ = [
    "AsyncCall",
    "EmittedBatch",
    "RecordingEnumeratorContext",
    "RecordingOutput",
    "enumerator_context",
    "reader_context",
    "sink_context",
]


def _host(host: PluginHost | None, plugins: Iterable[object]) -> PluginHost:
    # Without autoload: a unit test decides which plugins (e.g. security) take part.
    return host if host is not None else build_plugin_host(autoload=False, plugins=plugins)


def _subtask_facts(
    host: PluginHost | None,
    plugins: Iterable[object],
    job_name: str,
    subtask_index: int,
    parallelism: int,
    attempt_number: int,
    checkpointing: bool,
) -> tuple[Any, ...]:
    """The arguments every runtime subtask context starts with, in its order."""
    group = MetricGroup(("test",), {"job": job_name, "subtask": subtask_index})
    return (
        _host(host, plugins),
        job_name,
        subtask_index,
        parallelism,
        attempt_number,
        group,
        checkpointing,
    )


def reader_context(
    *,
    subtask_index: int = 0,
    parallelism: int = 1,
    job_name: str = "test-job",
    attempt_number: int = 0,
    checkpointing: bool = True,
    plugins: Iterable[object] = (),
    host: PluginHost | None = None,
    on_split_request: Callable[[], None] = lambda: None,
) -> ReaderContext:
    """What ``Source.create_reader`` receives inside a job."""
    facts = _subtask_facts(
        host, plugins, job_name, subtask_index, parallelism, attempt_number, checkpointing
    )
    return RuntimeReaderContext(*facts, request_split=on_split_request)


def sink_context(
    *,
    subtask_index: int = 0,
    parallelism: int = 1,
    job_name: str = "test-job",
    attempt_number: int = 0,
    checkpoint_interval_ms: int | None = 500,
    checkpoint_timeout_ms: int = DEFAULT_TIMEOUT_MS,
    restored_checkpoint_id: int | None = None,
    plugins: Iterable[object] = (),
    host: PluginHost | None = None,
) -> SinkContext:
    """What ``Sink.create_writer`` and ``Sink.create_committer`` receive inside a job;
    ``checkpoint_interval_ms=None`` means checkpointing is off."""
    checkpointing = checkpoint_interval_ms is not None
    facts = _subtask_facts(
        host, plugins, job_name, subtask_index, parallelism, attempt_number, checkpointing
    )
    return RuntimeSinkContext(
        *facts,
        restored_checkpoint_id=restored_checkpoint_id,
        interval_ms=checkpoint_interval_ms,
        timeout_ms=checkpoint_timeout_ms,
    )


# -- enumerators ---------------------------------------------------------------------------


class AsyncCall(NamedTuple):
    """One ``call_async`` request, as the enumerator made it."""

    fn: Callable[[], Any]
    handler: Callable[[Any, BaseException | None], None]
    initial_delay_ms: int
    period_ms: int


class RecordingEnumeratorContext(_HostFacts, SplitEnumeratorContext[Any]):
    """An enumerator's context that records instead of delivering, and runs the
    enumerator's asynchronous work only when the test calls ``run_async_calls``.

    ``assigned`` maps each reader to the splits it was given, in order; ``no_more_splits``
    lists the readers told that nothing more comes; ``async_calls`` holds the
    ``call_async`` requests still scheduled. ``readers`` is what ``registered_readers``
    reports: change it to play a reader that registers late or fails.
    """

    def __init__(
        self,
        host: PluginHost,
        parallelism: int,
        readers: Iterable[int],
        metric_group: MetricGroup,
        checkpointing: bool,
    ) -> None:
        # The runtime's own host, metric group and checkpointing facts.
        super().__init__(host, metric_group, checkpointing)
        self._parallelism = parallelism
        self.readers = list(readers)
        self.assigned: dict[int, list[Any]] = {}
        self.no_more_splits: list[int] = []
        self.async_calls: list[AsyncCall] = []

    @property
    def parallelism(self) -> int:
        return self._parallelism

    def registered_readers(self) -> Sequence[int]:
        return list(self.readers)

    def assign_splits(self, assignment: Mapping[int, Sequence[Any]]) -> None:
        for subtask_id, splits in assignment.items():
            # The runtime refuses the same way: there is no such reader to send them to.
            if not 0 <= subtask_id < self._parallelism:
                raise ValueError(
                    f"cannot assign splits to subtask {subtask_id}: parallelism is {self._parallelism}"
                )
            self.assigned.setdefault(subtask_id, []).extend(splits)

    def signal_no_more_splits(self, subtask_id: int) -> None:
        self.no_more_splits.append(subtask_id)

    def call_async(
        self,
        fn: Callable[[], Any],
        handler: Callable[[Any, BaseException | None], None],
        initial_delay_ms: int = 0,
        period_ms: int = 0,
    ) -> None:
        self.async_calls.append(AsyncCall(fn, handler, initial_delay_ms, period_ms))

    def run_async_calls(self) -> None:
        """Run every scheduled call once, delays ignored, on the test's thread: ``fn``,
        then ``handler(result, error)``, as the runtime would. A one-shot call is then
        done; a periodic one stays scheduled for the next round. An exception from a
        handler propagates, as it fails a job."""
        due = self.async_calls
        self.async_calls = [call for call in due if call.period_ms > 0]
        for call in due:
            try:
                result, error = call.fn(), None
            except Exception as exc:  # handed to the handler, as the runtime does
                result, error = None, exc
            call.handler(result, error)


def enumerator_context(
    *,
    parallelism: int = 1,
    registered_readers: Iterable[int] | None = None,
    job_name: str = "test-job",
    checkpointing: bool = True,
    plugins: Iterable[object] = (),
    host: PluginHost | None = None,
) -> RecordingEnumeratorContext:
    """What ``Source.create_enumerator`` and ``Source.restore_enumerator`` receive inside a
    job, recording what the enumerator does (see ``RecordingEnumeratorContext``). All
    ``parallelism`` readers are registered unless ``registered_readers`` says which."""
    readers = range(parallelism) if registered_readers is None else registered_readers
    group = MetricGroup(("test",), {"job": job_name})
    return RecordingEnumeratorContext(
        _host(host, plugins), parallelism, readers, group, checkpointing
    )


# -- readers -------------------------------------------------------------------------------


class EmittedBatch(NamedTuple):
    """One ``collect_batch`` call; a ``collect`` call is kept as a batch of one value."""

    split_id: str | None
    values: list[Any]
    timestamps: list[int] | None


class RecordingOutput:
    """A ``ReaderOutput`` that keeps what a reader emitted, for assertions.

    ``batches`` holds each ``collect_batch`` call and ``collected`` each ``collect`` call
    (so a test can tell which path a reader takes); ``values`` every value from both, in
    order; ``released`` the splits released; ``idle_marks`` and ``active_marks`` count the
    ``mark_idle`` and ``mark_active`` calls. Timestamps that do not match the values one to
    one fail at once, as they break the runtime's batch path.
    """

    def __init__(self) -> None:
        self.batches: list[EmittedBatch] = []
        self.collected: list[EmittedBatch] = []
        self.values: list[Any] = []
        self.released: list[str] = []
        self.idle_marks = 0
        self.active_marks = 0

    def collect_batch(
        self,
        values: Sequence[Any],
        timestamps: Sequence[int] | None = None,
        split_id: str | None = None,
    ) -> None:
        if timestamps is not None and len(timestamps) != len(values):
            raise AssertionError(
                f"{len(timestamps)} timestamps for {len(values)} values in one batch"
            )
        stamps = None if timestamps is None else list(timestamps)
        self.batches.append(EmittedBatch(split_id, list(values), stamps))
        self.values.extend(values)

    def collect(
        self, value: Any, timestamp: int | None = None, split_id: str | None = None
    ) -> None:
        stamps = None if timestamp is None else [timestamp]
        self.collected.append(EmittedBatch(split_id, [value], stamps))
        self.values.append(value)

    def release_split(self, split_id: str) -> None:
        self.released.append(split_id)

    def mark_idle(self) -> None:
        self.idle_marks += 1

    def mark_active(self) -> None:
        self.active_marks += 1
