"""Contexts for unit-testing a connector's readers, writers and committers without running
a job. They are the runtime's own context classes, so a test sees exactly what a job sees.

>>> ctx = sink_context(subtask_index=1, parallelism=2, checkpoint_interval_ms=500)
>>> writer = my_sink.create_writer(ctx, restored_state=[])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from streamplug.api.context import ReaderContext, SinkContext
from streamplug.metrics import MetricGroup
from streamplug.plugins import PluginHost, build_plugin_host
from streamplug.runtime.config import DEFAULT_TIMEOUT_MS
from streamplug.runtime.contexts import RuntimeReaderContext, RuntimeSinkContext

__all__ = ["reader_context", "sink_context"]


def _host(host: PluginHost | None, plugins: Iterable[object]) -> PluginHost:
    # Without autoload: a unit test decides which plugins (e.g. security) take part.
    return host if host is not None else build_plugin_host(autoload=False, plugins=plugins)


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
    group = MetricGroup(("test",), {"job": job_name, "subtask": subtask_index})
    return RuntimeReaderContext(
        _host(host, plugins),
        job_name,
        subtask_index,
        parallelism,
        attempt_number,
        group,
        checkpointing,
        request_split=on_split_request,
    )


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
    group = MetricGroup(("test",), {"job": job_name, "subtask": subtask_index})
    return RuntimeSinkContext(
        _host(host, plugins),
        job_name,
        subtask_index,
        parallelism,
        attempt_number,
        group,
        checkpoint_interval_ms is not None,
        restored_checkpoint_id=restored_checkpoint_id,
        interval_ms=checkpoint_interval_ms,
        timeout_ms=checkpoint_timeout_ms,
    )
