"""Building a job: ``StreamExecutionEnvironment`` and ``DataStream`` (PyFlink's names).

A job is one or more pipelines, each a source followed by a tree of chained operators
(map, filter, flat_map) ending in sinks. Every pipeline runs with the job's parallelism:
subtask *i* of a pipeline reads the splits assigned to reader *i* and writes through
writer *i* of each sink, with no shuffle between them (Flink's operator chaining).
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from streamplug.api.sink import Sink
from streamplug.api.source import Source
from streamplug.api.watermarks import WatermarkStrategy
from streamplug.errors import ConfigError, JobCancelledError
from streamplug.runtime.config import CheckpointConfig
from streamplug.runtime.restart import RestartStrategies, RestartStrategy
from streamplug.runtime.runtimes import Runtime, create_runtime

if TYPE_CHECKING:
    from streamplug.plugins import PluginHost
    from streamplug.runtime.job import JobClient, JobExecutionResult

__all__ = ["DataStream", "StreamExecutionEnvironment"]


class _Node:
    """One operator in a pipeline's tree; ``kind`` is source, map, filter, flat_map or
    timestamps (``assign_timestamps_and_watermarks``, which has a ``strategy``)."""

    def __init__(
        self,
        kind: str,
        fn: Callable[[Any], Any] | None,
        name: str,
        strategy: WatermarkStrategy | None = None,
    ) -> None:
        self.kind = kind
        self.fn = fn
        self.name = name
        self.strategy = strategy
        self.children: list[_Node] = []
        self.sinks: list[tuple[Sink[Any, Any], str]] = []


class Pipeline:
    """A source, its watermark strategy, and the operator tree hanging off it."""

    def __init__(self, source: Source[Any, Any], strategy: WatermarkStrategy, name: str) -> None:
        self.source = source
        self.strategy = strategy
        self.name = name
        self.root = _Node("source", None, name)

    def sinks(self) -> list[tuple[Sink[Any, Any], str]]:
        found: list[tuple[Sink[Any, Any], str]] = []

        def walk(node: _Node) -> None:
            found.extend(node.sinks)
            for child in node.children:
                walk(child)

        walk(self.root)
        return found

    def sinks_keeping_positions(self) -> set[int]:
        """``id`` of every sink whose writer gets, at each position of a batch, the element
        made from the record at the same position of the source's batch: only maps and
        timestamp assignment lie between them (no filter, no flat_map)."""
        found: set[int] = set()

        def walk(node: _Node) -> None:
            if node.kind not in ("source", "map", "timestamps"):
                return
            found.update(id(sink) for sink, _ in node.sinks)
            for child in node.children:
                walk(child)

        walk(self.root)
        return found


class DataStream:
    """A stream of records inside a pipeline. Transformations return new streams."""

    def __init__(self, env: StreamExecutionEnvironment, pipeline: Pipeline, node: _Node) -> None:
        self._env = env
        self._pipeline = pipeline
        self._node = node

    def _add(self, kind: str, fn: Callable[[Any], Any], name: str | None) -> DataStream:
        if not callable(fn):
            raise TypeError(f"{kind} needs a callable, got {fn!r}")
        node = _Node(kind, fn, name or str(getattr(fn, "__name__", kind)))
        self._node.children.append(node)
        return DataStream(self._env, self._pipeline, node)

    def map(self, fn: Callable[[Any], Any], name: str | None = None) -> DataStream:
        return self._add("map", fn, name)

    def filter(self, fn: Callable[[Any], bool], name: str | None = None) -> DataStream:
        return self._add("filter", fn, name)

    def flat_map(self, fn: Callable[[Any], Iterable[Any]], name: str | None = None) -> DataStream:
        return self._add("flat_map", fn, name)

    def assign_timestamps_and_watermarks(
        self, watermark_strategy: WatermarkStrategy, name: str | None = None
    ) -> DataStream:
        """A stream whose event times and watermarks come from ``watermark_strategy``.

        For event time that only exists after a transformation (a field of a parsed
        record). Each record's event time becomes what the strategy's timestamp assigner
        returns (it is given the record's previous event time, or None), or stays as it is
        without an assigner. The strategy's generator makes the watermarks the sinks below
        this stream receive, per subtask; the source's watermarks stop here, except the
        final one at the end of a bounded input. Idleness has nothing to act on here (the
        operator has one input); set it on ``from_source`` instead. The job's watermark
        metrics stay the source's.
        """
        if not isinstance(watermark_strategy, WatermarkStrategy):
            raise TypeError(
                "assign_timestamps_and_watermarks needs a WatermarkStrategy, "
                f"got {type(watermark_strategy).__name__}"
            )
        node = _Node("timestamps", None, name or "Timestamps/Watermarks", watermark_strategy)
        self._node.children.append(node)
        return DataStream(self._env, self._pipeline, node)

    def sink_to(self, sink: Sink[Any, Any], name: str | None = None) -> DataStream:
        """Write this stream to ``sink``; returns this stream so further sinks can follow."""
        if not isinstance(sink, Sink):
            raise TypeError(f"sink_to needs a streamplug Sink, got {type(sink).__name__}")
        self._node.sinks.append((sink, name or type(sink).__name__))
        return self

    def print(self, prefix: str = "") -> DataStream:
        from streamplug.connectors.printing import PrintSink

        return self.sink_to(PrintSink(prefix=prefix), name="print")


class StreamExecutionEnvironment:
    """Where a job is assembled and executed, embedded in the calling process."""

    def __init__(self, plugin_host: PluginHost | None = None) -> None:
        self._plugin_host = plugin_host
        self.parallelism = 1
        self.checkpoint_config = CheckpointConfig()
        self.restart_strategy: RestartStrategy | None = None
        self.auto_watermark_interval_ms = 200
        self.batch_size_hint = 1000
        self.pipelines: list[Pipeline] = []
        self.runtime: str | Runtime = "threads"
        self.runtime_options: dict[str, Any] = {}

    @staticmethod
    def get_execution_environment(
        plugin_host: PluginHost | None = None,
    ) -> StreamExecutionEnvironment:
        """A new environment (PyFlink's entry point). Each call returns a fresh one."""
        return StreamExecutionEnvironment(plugin_host)

    @property
    def plugin_host(self) -> PluginHost:
        if self._plugin_host is None:
            from streamplug.plugins import build_plugin_host

            self._plugin_host = build_plugin_host()
        return self._plugin_host

    # -- configuration ---------------------------------------------------------------------

    def set_parallelism(self, parallelism: int) -> StreamExecutionEnvironment:
        if not isinstance(parallelism, int) or parallelism < 1:
            raise ConfigError(
                f"parallelism must be a positive integer, got {parallelism!r}", option="parallelism"
            )
        self.parallelism = parallelism
        return self

    def get_parallelism(self) -> int:
        return self.parallelism

    def enable_checkpointing(self, interval_ms: int) -> StreamExecutionEnvironment:
        self.checkpoint_config.set_checkpoint_interval(interval_ms)
        return self

    def get_checkpoint_config(self) -> CheckpointConfig:
        return self.checkpoint_config

    def set_restart_strategy(self, strategy: RestartStrategy) -> StreamExecutionEnvironment:
        self.restart_strategy = strategy
        return self

    def set_auto_watermark_interval(self, interval_ms: int) -> StreamExecutionEnvironment:
        if interval_ms <= 0:
            raise ConfigError(
                f"watermark interval must be positive, got {interval_ms}",
                option="auto watermark interval",
            )
        self.auto_watermark_interval_ms = int(interval_ms)
        return self

    def set_runtime(self, runtime: str | Runtime, **options: Any) -> StreamExecutionEnvironment:
        """Where the job's worker slots run: ``"threads"`` (default: every subtask a thread
        of this process), ``"processes"`` (one spawned process per slot, so Python work
        uses every core), ``"ray"`` (one Ray actor per slot, with ``streamplug-ray``
        installed), any runtime a plugin registers, or a ``Runtime`` instance. The job
        code stays the same; see the Scaling out page of the docs."""
        if isinstance(runtime, Runtime):
            if options:
                raise ConfigError(
                    "runtime options go to the Runtime's constructor when you pass an instance",
                    option="runtime",
                )
        elif not isinstance(runtime, str) or not runtime:
            raise ConfigError(
                f"runtime must be a name such as 'threads' or 'processes', got {runtime!r}",
                option="runtime",
            )
        else:
            # Fail here, not when the job starts, on a name nobody registered.
            create_runtime(runtime, self.plugin_host, options).close()
        self.runtime = runtime
        self.runtime_options = dict(options)
        return self

    def get_runtime(self) -> str:
        return self.runtime if isinstance(self.runtime, str) else self.runtime.name

    def create_runtime(self) -> Runtime:
        """The runtime of one job run (a fresh one per run)."""
        if isinstance(self.runtime, Runtime):
            return self.runtime
        return create_runtime(self.runtime, self.plugin_host, self.runtime_options)

    def effective_restart_strategy(self) -> RestartStrategy:
        # Flink's defaults: no restarts without checkpointing, exponential backoff with it.
        if self.restart_strategy is not None:
            return self.restart_strategy
        if self.checkpoint_config.enabled:
            return RestartStrategies.exponential_delay_restart()
        return RestartStrategies.no_restart()

    # -- building --------------------------------------------------------------------------

    def from_source(
        self,
        source: Source[Any, Any],
        watermark_strategy: WatermarkStrategy | None = None,
        source_name: str | None = None,
    ) -> DataStream:
        """A stream read from ``source``. Without ``watermark_strategy`` the source's own
        (``Source.get_watermark_strategy``) applies, else no watermarks."""
        if not isinstance(source, Source):
            raise TypeError(f"from_source needs a streamplug Source, got {type(source).__name__}")
        strategy = (
            watermark_strategy
            or source.get_watermark_strategy()
            or WatermarkStrategy.no_watermarks()
        )
        name = self._unique_name(source_name or type(source).__name__)
        pipeline = Pipeline(source, strategy, name)
        self.pipelines.append(pipeline)
        return DataStream(self, pipeline, pipeline.root)

    def add_source(self, source: Source[Any, Any], source_name: str | None = None) -> DataStream:
        """The older connectors' ``env.add_source(consumer)``: ``from_source`` with the
        watermark strategy the source carries (``assign_timestamps_and_watermarks`` on the
        legacy ``FlinkKafkaConsumer``), if any."""
        return self.from_source(source, None, source_name)

    def from_collection(
        self, collection: Iterable[Any], *, num_splits: int | None = None, name: str = "collection"
    ) -> DataStream:
        from streamplug.connectors.collection import CollectionSource

        source = CollectionSource(list(collection), num_splits=num_splits)
        return self.from_source(source, WatermarkStrategy.no_watermarks(), name)

    def _unique_name(self, name: str) -> str:
        taken = {p.name for p in self.pipelines}
        if name not in taken:
            return name
        for i in itertools.count(2):
            candidate = f"{name}-{i}"
            if candidate not in taken:
                return candidate
        raise AssertionError("unreachable")

    # -- running ---------------------------------------------------------------------------

    def execute_async(self, job_name: str = "streamplug job") -> JobClient:
        """Start the job on background threads and return a client to watch or stop it."""
        from streamplug.runtime.job import JobClient

        return JobClient.start(self, job_name)

    def execute(self, job_name: str = "streamplug job") -> JobExecutionResult:
        """Run the job to its end (bounded sources, ``stop``/``cancel`` from elsewhere).

        Called from the main thread, SIGINT (Ctrl-C) and SIGTERM stop the job as
        ``JobClient.stop()`` does and then end the process with ``SystemExit(0)``; a second
        signal cancels it (``SystemExit(128 + signal)``), as does a first one that finds
        no attempt running (during a restart delay), since no final checkpoint can be taken.
        """
        from streamplug.runtime.signals import stop_on_signals

        client = self.execute_async(job_name)
        with stop_on_signals(client) as signals:
            try:
                result = signals.wait()
            except JobCancelledError:
                if signals.received is None:
                    raise
                raise SystemExit(signals.exit_code(finished=False)) from None
            except KeyboardInterrupt:
                # Handlers are only installed from the main thread.
                client.cancel()
                client.wait_quietly(30)
                raise
        if signals.received is not None:
            where = f"; last checkpoint {result.last_checkpoint}" if result.last_checkpoint else ""
            print(f"job {job_name!r} stopped by {signals.received}{where}", file=sys.stderr)
            raise SystemExit(signals.exit_code(finished=True))
        return result
