"""Turning a ``PipelineConfig`` into a job on a ``StreamExecutionEnvironment``.

Everything a pipeline names is found through the run's ``PluginHost``: the source and sink
connectors, and inside their options the formats, partitioners and offsets initializers.
Each connector declares its options as a frozen class; the host converts the table into
it (``PluginHost.check_options``), checking at any depth every key, every type and every
component the options name, with that component's own options. A problem is reported on
its line with the key path, a did-you-mean and the fix; the connector's factory then gets
the checked options and the host.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from streamplug.api.watermarks import TimestampAssigner, WatermarkStrategy
from streamplug.errors import ConfigError, UnknownNameError
from streamplug.pipeline.config import (
    PipelineConfig,
    SinkSettings,
    SourceSettings,
    WatermarkSettings,
    did_you_mean,
)
from streamplug.pipeline.errors import PipelineConfigError
from streamplug.pipeline.locate import PathElement
from streamplug.plugin import PluginHost
from streamplug.plugin.options import OptionsError
from streamplug.runtime import RestartStrategies, RestartStrategy, StreamExecutionEnvironment
from streamplug.runtime.storage import parse_storage_location, storage_scheme

__all__ = ["BuiltPipeline", "build_pipeline", "import_function"]

# The one option --bootstrap-servers sets, on every connector whose options have it.
BOOTSTRAP_OPTION = "bootstrap_servers"

Path_ = tuple[PathElement, ...]


@attrs.frozen
class BuiltPipeline:
    """A job ready to ``execute``: the environment, the job name, and what was built."""

    env: StreamExecutionEnvironment
    job_name: str
    config: PipelineConfig
    source: Any
    sinks: tuple[Any, ...]


class _FieldTimestamp(TimestampAssigner):
    """Event time from a field of mapping records (``timestamp_field = "ts"``), in epoch ms."""

    def __init__(self, field: str) -> None:
        self.field = field

    def extract_timestamp(self, value: Any, record_timestamp: int | None) -> int:
        try:
            return int(value[self.field])
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise ValueError(
                f"record has no usable timestamp field {self.field!r} ({type(exc).__name__}: {exc}); "
                "fix the records or the watermarks' timestamp_field"
            ) from None


def import_function(reference: str, base_dir: Path | None = None) -> Any:
    """The object a ``module:attribute`` reference names. ``base_dir`` (the pipeline file's
    directory) is put on ``sys.path`` first, so modules beside the file import. Raises
    ImportError or AttributeError with a message naming what is missing."""
    module_name, _, attribute = reference.partition(":")
    if base_dir is not None and str(base_dir) not in sys.path:
        sys.path.insert(0, str(base_dir))
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            public = sorted(
                n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
            )
            raise AttributeError(
                f"module {module_name!r} has no attribute {attribute!r}; "
                f"{did_you_mean(part, public)}its functions: {', '.join(public) or '(none)'}"
            )
        obj = getattr(obj, part)
    return obj


def _resolve_function(
    config: PipelineConfig, reference: str, path: Path_, options: Mapping[str, Any] | None
) -> Callable[..., Any]:
    try:
        obj = import_function(reference, config.base_dir)
    except ModuleNotFoundError as exc:
        raise config.error(
            path,
            f"cannot import {reference!r}: {exc}",
            f"put {exc.name or reference.split(':')[0]}.py next to the pipeline file or install the package that provides it",
        ) from None
    except (ImportError, AttributeError) as exc:
        raise config.error(
            path,
            f"cannot load {reference!r}: {exc}",
            "name a function that exists: 'module:function'",
        ) from None
    except Exception as exc:
        raise config.error(
            path, f"importing {reference!r} raised {type(exc).__name__}: {exc}", "fix the module"
        ) from exc
    if options is not None:
        # A factory: called once with the options, it returns the function to apply.
        try:
            obj = obj(**options)
        except Exception as exc:
            raise config.error(
                (*path[:-1], "options"),
                f"{reference}(**options) raised {type(exc).__name__}: {exc}",
                "options are keyword arguments of the referenced factory; match its signature",
            ) from exc
    if not callable(obj):
        raise config.error(
            path, f"{reference!r} is a {type(obj).__name__}, not a function", "name a function"
        )
    fn: Callable[..., Any] = obj
    return fn


def _build_connector(
    config: PipelineConfig,
    host: PluginHost,
    settings: SourceSettings | SinkSettings,
    role: str,
    overrides: Mapping[str, Any],
) -> Any:
    path = settings.path
    try:
        spec = host.connector(settings.connector, role)  # type: ignore[arg-type]
    except UnknownNameError as exc:
        hint = (
            " (the Kafka connectors ship as streamplug-kafka-source and streamplug-kafka-sink)"
            if settings.connector == "kafka"
            else ""
        )
        raise config.error(
            (*path, "connector"),
            f"no {role} connector named {settings.connector!r} is installed{hint}",
            f"{did_you_mean(settings.connector, exc.valid)}installed {role} connectors: "
            f"{', '.join(sorted(exc.valid)) or '(none)'}",
        ) from None
    options = dict(settings.options)
    declared = attrs.fields_dict(spec.options) if spec.options is not None else options
    options.update({k: v for k, v in overrides.items() if k in declared})

    def option_path(option: str | None) -> Path_:
        if option is not None:
            key = option.split(".")[0]
            if key in options:
                return (*path, key)
        return (*path, "connector")

    try:
        if spec.options is None:
            # A connector that declares no options class gets the table as it is.
            return spec.factory(**options)
        checked = host.check_options(spec.options, options)
        return spec.factory(checked, host)
    except OptionsError as exc:
        raise config.error((*path, *exc.path), exc.problem, exc.fix) from None
    except ConfigError as exc:
        raise config.error(
            option_path(exc.option), f"{settings.connector} {role}: {exc}", None
        ) from None
    except TypeError as exc:
        if spec.options is not None:
            raise
        raise config.error(
            (*path, "connector"),
            f"{settings.connector} {role} rejected its options: {exc}",
            "check the option names in the connector's docs",
        ) from None
    except (ValueError, LookupError) as exc:
        raise config.error(
            (*path, "connector"),
            f"{settings.connector} {role}: {type(exc).__name__}: {exc}",
            "fix the option it names",
        ) from None


def _watermark_strategy(config: PipelineConfig, settings: WatermarkSettings) -> WatermarkStrategy:
    if settings.strategy == "bounded-out-of-orderness":
        strategy = WatermarkStrategy.for_bounded_out_of_orderness(
            settings.max_out_of_orderness_ms or 0
        )
    elif settings.strategy == "monotonous":
        strategy = WatermarkStrategy.for_monotonous_timestamps()
    else:
        strategy = WatermarkStrategy.no_watermarks()
    if settings.timestamp_field is not None:
        strategy = strategy.with_timestamp_assigner(_FieldTimestamp(settings.timestamp_field))
    elif settings.timestamp_assigner is not None:
        fn = _resolve_function(
            config,
            settings.timestamp_assigner,
            ("source", "watermarks", "timestamp_assigner"),
            None,
        )
        strategy = strategy.with_timestamp_assigner(fn)
    if settings.idleness_ms:
        strategy = strategy.with_idleness(settings.idleness_ms)
    return strategy


def _restart_strategy(config: PipelineConfig) -> RestartStrategy | None:
    restart = config.restart
    if restart is None:
        return None
    p = restart.params
    if restart.type == "none":
        return RestartStrategies.no_restart()
    if restart.type == "fixed-delay":
        return RestartStrategies.fixed_delay_restart(p.get("attempts", 1), p.get("delay", 1000))
    if restart.type == "exponential-delay":
        return RestartStrategies.exponential_delay_restart(
            initial_backoff=p.get("initial_backoff", 1000),
            max_backoff=p.get("max_backoff", 60_000),
            backoff_multiplier=p.get("backoff_multiplier", 2.0),
            reset_backoff_threshold=p.get("reset_backoff_threshold", 3_600_000),
            jitter_factor=p.get("jitter_factor", 0.1),
            attempts=p.get("attempts"),
        )
    return RestartStrategies.failure_rate_restart(
        p.get("max_failures_per_interval", 1),
        p.get("failure_rate_interval", 60_000),
        p.get("delay", 1000),
    )


def build_pipeline(
    config: PipelineConfig,
    host: PluginHost,
    *,
    bootstrap_servers: str | None = None,
    restore: str | None = "latest",
    checkpoint_storage: str | Path | None = None,
    runtime: str | None = None,
) -> BuiltPipeline:
    """Build ``config`` into a job on a fresh environment.

    ``bootstrap_servers`` overrides the option of that name on every source and sink whose
    connector declares it. ``restore`` is ``"latest"`` (resume from this job's newest usable
    checkpoint, if any), ``"none"`` (start fresh) or the path of a checkpoint file.
    ``checkpoint_storage`` overrides ``[checkpointing] storage``; ``runtime`` overrides
    ``[job] runtime``.
    """
    env = StreamExecutionEnvironment.get_execution_environment(host)
    env.set_parallelism(config.job.parallelism)
    try:
        env.set_runtime(runtime or config.job.runtime)
    except ConfigError as exc:
        if runtime:
            raise
        raise PipelineConfigError(
            str(exc), path=("job", "runtime"), fix='runtime = "threads"'
        ) from exc
    if config.job.auto_watermark_interval_ms:
        env.set_auto_watermark_interval(config.job.auto_watermark_interval_ms)
    checkpoint_config = env.get_checkpoint_config()
    cp = config.checkpointing
    if cp is not None:
        env.enable_checkpointing(cp.interval_ms)
        if cp.timeout_ms is not None:
            checkpoint_config.set_checkpoint_timeout(cp.timeout_ms)
        if cp.min_pause_ms is not None:
            checkpoint_config.set_min_pause_between_checkpoints(cp.min_pause_ms)
        if cp.max_retained is not None:
            checkpoint_config.set_max_retained_checkpoints(cp.max_retained)
        if cp.tolerable_failures is not None:
            checkpoint_config.set_tolerable_checkpoint_failure_number(cp.tolerable_failures)
        if cp.storage is not None:
            checkpoint_config.set_checkpoint_storage_dir(cp.storage, cp.storage_options)
    if checkpoint_storage is not None:
        # The file's object store options (an endpoint, say) go with an object store override.
        options = cp.storage_options if cp is not None else {}
        try:
            override = parse_storage_location(checkpoint_storage)
        except ImportError as exc:
            raise ConfigError(f"--checkpoint-dir: {exc}", option="checkpoint storage") from None
        checkpoint_config.set_checkpoint_storage_dir(
            override, options if isinstance(override, str) else None
        )
    if restore in (None, "none"):
        checkpoint_config.set_restore(None)
    elif restore == "latest":
        checkpoint_config.set_restore("latest")
    elif storage_scheme(restore) is not None:
        # An object: opening it needs the storage options, and a missing one fails the
        # restore with its URL in the message.
        checkpoint_config.set_restore(restore)
    else:
        chosen = Path(restore)
        if not chosen.is_file():
            raise ConfigError(
                f"--restore {restore!r}: no such checkpoint file; use 'latest', 'none' or a chk-*.json path "
                "(streamplug checkpoints list DIR shows them)",
                option="restore",
            )
        checkpoint_config.set_restore(chosen)
    strategy = _restart_strategy(config)
    if strategy is not None:
        env.set_restart_strategy(strategy)

    overrides = {BOOTSTRAP_OPTION: bootstrap_servers} if bootstrap_servers else {}
    source = _build_connector(config, host, config.source, "source", overrides)
    stream = env.from_source(
        source, _watermark_strategy(config, config.source.watermarks), config.source.name
    )
    for transform in config.transforms:
        fn = _resolve_function(
            config, transform.function, (*transform.path, transform.kind), transform.options
        )
        name = transform.name or transform.function.rpartition(":")[2]
        if transform.kind == "map":
            stream = stream.map(fn, name)
        elif transform.kind == "filter":
            stream = stream.filter(fn, name)
        else:
            stream = stream.flat_map(fn, name)
    sinks = []
    for sink_settings in config.sinks:
        sink = _build_connector(config, host, sink_settings, "sink", overrides)
        stream.sink_to(sink, sink_settings.name)
        sinks.append(sink)
    return BuiltPipeline(env, config.job.name, config, source, tuple(sinks))
