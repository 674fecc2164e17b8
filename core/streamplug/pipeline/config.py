"""Reading and validating a pipeline file (TOML) into a ``PipelineConfig``.

The file reads like a Flink job written down::

    [job]
    name = "orders-enrichment"
    parallelism = 2
    runtime = "processes"            # threads (default), processes, ray

    [checkpointing]
    interval = "5 s"
    storage = "./checkpoints"

    [restart_strategy]
    type = "fixed-delay"
    attempts = 3
    delay = "2 s"

    [source]
    connector = "kafka"              # a name registered by an installed plugin
    topics = ["orders"]              # every other key is the connector's option
    [source.watermarks]
    strategy = "bounded-out-of-orderness"
    max_out_of_orderness = "5 s"

    [[transform]]
    map = "transforms:enrich"        # module:function

    [sink]
    connector = "kafka"
    topic = "orders-enriched"

This module only checks the file's shape. Names of connectors, formats, partitioners and
offsets initializers are checked against the installed plugins when the pipeline is built
(``streamplug.pipeline.build``), with the same line-numbered errors.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

from streamplug.errors import ConfigError
from streamplug.pipeline.errors import PipelineConfigError
from streamplug.pipeline.locate import KeyLocator, PathElement
from streamplug.runtime.storage import parse_storage_location, redact_storage_options
from streamplug.secrets import redacted_repr

__all__ = [
    "CheckpointSettings",
    "JobSettings",
    "PipelineConfig",
    "RestartSettings",
    "SinkSettings",
    "SourceSettings",
    "TransformSettings",
    "WatermarkSettings",
    "load_pipeline",
    "parse_duration_ms",
    "parse_pipeline",
    "pipeline_from_dict",
]

TOP_LEVEL_KEYS = ("job", "checkpointing", "restart_strategy", "source", "transform", "sink")
JOB_KEYS = ("name", "parallelism", "auto_watermark_interval", "runtime")
CHECKPOINT_KEYS = (
    "interval",
    "timeout",
    "min_pause",
    "max_retained",
    "storage",
    "storage_options",
    "tolerable_failures",
)
RESTART_KEYS: dict[str, tuple[str, ...]] = {
    "none": (),
    "fixed-delay": ("attempts", "delay"),
    "exponential-delay": (
        "initial_backoff",
        "max_backoff",
        "backoff_multiplier",
        "reset_backoff_threshold",
        "jitter_factor",
        "attempts",
    ),
    "failure-rate": ("max_failures_per_interval", "failure_rate_interval", "delay"),
}
# Flink spells "no restarts" several ways; all mean the same.
_RESTART_ALIASES = {"disable": "none", "off": "none", "no-restart": "none", "norestart": "none"}
WATERMARK_STRATEGIES = ("none", "monotonous", "bounded-out-of-orderness")
_WATERMARK_ALIASES = {
    "no-watermarks": "none",
    "bounded": "bounded-out-of-orderness",
    "monotonic": "monotonous",
}
WATERMARK_KEYS = (
    "strategy",
    "max_out_of_orderness",
    "idleness",
    "timestamp_field",
    "timestamp_assigner",
)
TRANSFORM_KINDS = ("map", "filter", "flat_map")
TRANSFORM_KEYS = (*TRANSFORM_KINDS, "name", "options")
CONNECTOR_RESERVED = ("connector", "name")

_UNITS_MS = {
    "ms": 1,
    "milli": 1,
    "millis": 1,
    "millisecond": 1,
    "milliseconds": 1,
    "s": 1000,
    "sec": 1000,
    "secs": 1000,
    "second": 1000,
    "seconds": 1000,
    "m": 60_000,
    "min": 60_000,
    "mins": 60_000,
    "minute": 60_000,
    "minutes": 60_000,
    "h": 3_600_000,
    "hour": 3_600_000,
    "hours": 3_600_000,
    "d": 86_400_000,
    "day": 86_400_000,
    "days": 86_400_000,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_ENV = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_FUNCTION_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def parse_duration_ms(value: Any) -> int:
    """Milliseconds of ``value``: an integer (ms) or a string like ``"500 ms"``, ``"5s"``,
    ``"1.5 min"``, ``"2h"`` (Flink's duration syntax). Raises ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is negative")
        return value
    if isinstance(value, float):
        if value < 0:
            raise ValueError(f"{value} is negative")
        return int(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            unit = m.group(2).lower() or "ms"
            if unit in _UNITS_MS:
                return int(float(m.group(1)) * _UNITS_MS[unit])
    raise ValueError(f"{value!r} is not a duration")


# -- the validated model -------------------------------------------------------------------


@attrs.frozen
class JobSettings:
    name: str
    parallelism: int = 1
    auto_watermark_interval_ms: int | None = None
    runtime: str = "threads"


def _redacted_options(options: dict[str, Any]) -> str:
    return repr(redact_storage_options(options))


@attrs.frozen
class CheckpointSettings:
    interval_ms: int
    timeout_ms: int | None = None
    min_pause_ms: int | None = None
    max_retained: int | None = None
    # A Path for a directory, the URL for an object store (s3://bucket/prefix).
    storage: Path | str | None = None
    tolerable_failures: int | None = None
    # fsspec options of an object store; credentials are masked in the repr.
    storage_options: dict[str, Any] = attrs.field(factory=dict, repr=_redacted_options)


@attrs.frozen
class RestartSettings:
    """``type`` is one of ``none``, ``fixed-delay``, ``exponential-delay``, ``failure-rate``;
    ``params`` holds its settings with durations already in ms."""

    type: str
    params: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class WatermarkSettings:
    strategy: str = "none"
    max_out_of_orderness_ms: int | None = None
    idleness_ms: int | None = None
    timestamp_field: str | None = None
    timestamp_assigner: str | None = None


@attrs.frozen
class SourceSettings:
    """``options`` are every key of ``[source]`` except ``connector``, ``name`` and
    ``watermarks``, handed to the connector's factory as keyword arguments."""

    connector: str
    name: str
    # Values come expanded from ${VAR}s: passwords and JAAS text are masked in the repr.
    options: dict[str, Any] = attrs.field(repr=redacted_repr)
    watermarks: WatermarkSettings
    path: tuple[PathElement, ...] = ("source",)


@attrs.frozen
class TransformSettings:
    kind: Literal["map", "filter", "flat_map"]
    function: str
    name: str | None
    options: dict[str, Any] | None = attrs.field(repr=redacted_repr)
    path: tuple[PathElement, ...]


@attrs.frozen
class SinkSettings:
    connector: str
    name: str
    options: dict[str, Any] = attrs.field(repr=redacted_repr)
    path: tuple[PathElement, ...]


@attrs.frozen
class PipelineConfig:
    """A validated pipeline file. ``error(path, ...)`` makes an error placed on the line of a
    key, for problems found later (when building against the installed plugins)."""

    file: str
    base_dir: Path
    job: JobSettings
    source: SourceSettings
    transforms: tuple[TransformSettings, ...]
    sinks: tuple[SinkSettings, ...]
    checkpointing: CheckpointSettings | None = None
    restart: RestartSettings | None = None
    locator: KeyLocator | None = attrs.field(default=None, eq=False, repr=False)

    def line_of(self, path: Iterable[PathElement]) -> int | None:
        return self.locator.line(tuple(path)) if self.locator is not None else None

    def error(
        self, path: Iterable[PathElement], problem: str, fix: str | None = None
    ) -> PipelineConfigError:
        p = tuple(path)
        return PipelineConfigError(problem, path=p, fix=fix, file=self.file, line=self.line_of(p))


# -- helpers that raise errors naming the key ------------------------------------------------


def _type_name(value: Any) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


def _check_keys(
    table: Mapping[str, Any], allowed: Iterable[str], path: tuple[PathElement, ...], where: str
) -> None:
    allowed = list(allowed)
    for key in table:
        if key not in allowed:
            raise PipelineConfigError(
                f"unknown key {key!r} in {where}",
                path=(*path, key),
                fix=f"{did_you_mean(key, allowed)}valid keys are: {', '.join(allowed) or '(none)'}",
            )


def _table(value: Any, path: tuple[PathElement, ...], example: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PipelineConfigError(
            f"must be a table, got {_type_name(value)} {value!r}", path=path, fix=example
        )
    return value


def _str(value: Any, path: tuple[PathElement, ...], example: str) -> str:
    if not isinstance(value, str) or not value:
        raise PipelineConfigError(
            f"must be a non-empty string, got {_type_name(value)} {value!r}", path=path, fix=example
        )
    return value


def _int(value: Any, path: tuple[PathElement, ...], minimum: int, example: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PipelineConfigError(
            f"must be an integer >= {minimum}, got {_type_name(value)} {value!r}",
            path=path,
            fix=example,
        )
    return value


def _number(value: Any, path: tuple[PathElement, ...], minimum: float, example: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise PipelineConfigError(
            f"must be a number >= {minimum}, got {_type_name(value)} {value!r}",
            path=path,
            fix=example,
        )
    return float(value)


def _duration(value: Any, path: tuple[PathElement, ...], example: str) -> int:
    try:
        return parse_duration_ms(value)
    except ValueError as exc:
        raise PipelineConfigError(
            f"{exc}: write milliseconds as an integer or a string with a unit (ms, s, min, h, d)",
            path=path,
            fix=example,
        ) from None


def _function_ref(value: Any, path: tuple[PathElement, ...], example: str) -> str:
    if not isinstance(value, str) or not _FUNCTION_REF.match(value):
        raise PipelineConfigError(
            f"must name a Python function as 'module:function', got {value!r}",
            path=path,
            fix=example,
        )
    return value


def _interpolate(value: Any, path: tuple[PathElement, ...], environ: Mapping[str, str]) -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string by the environment's value,
    so secrets and per-host settings stay out of the file. ``$$`` is a literal ``$``."""
    if isinstance(value, str):
        if "$" not in value:
            return value

        def replace(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name, default = m.group(1), m.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            raise PipelineConfigError(
                f"environment variable {name} is not set",
                path=path,
                fix=f"export {name}=... before running, or give a default: ${{{name}:-value}}",
            )

        return _ENV.sub(replace, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, (*path, k), environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*path, i), environ) for i, v in enumerate(value)]
    return value


# -- sections ------------------------------------------------------------------------------


def _job(data: dict[str, Any], default_name: str) -> JobSettings:
    raw = _table(data.get("job", {}), ("job",), '[job] with name = "my-job"')
    _check_keys(raw, JOB_KEYS, ("job",), "[job]")
    name = _str(raw.get("name", default_name), ("job", "name"), 'name = "orders-enrichment"')
    parallelism = _int(raw.get("parallelism", 1), ("job", "parallelism"), 1, "parallelism = 2")
    interval = raw.get("auto_watermark_interval")
    interval_ms = None
    if interval is not None:
        interval_ms = _duration(
            interval, ("job", "auto_watermark_interval"), 'auto_watermark_interval = "200 ms"'
        )
        if interval_ms <= 0:
            raise PipelineConfigError(
                "must be positive",
                path=("job", "auto_watermark_interval"),
                fix='auto_watermark_interval = "200 ms"',
            )
    runtime = _str(raw.get("runtime", "threads"), ("job", "runtime"), 'runtime = "processes"')
    return JobSettings(name, parallelism, interval_ms, runtime)


def _checkpointing(data: dict[str, Any]) -> CheckpointSettings | None:
    if "checkpointing" not in data:
        return None
    path: tuple[PathElement, ...] = ("checkpointing",)
    raw = _table(data["checkpointing"], path, '[checkpointing] with interval = "10 s"')
    _check_keys(raw, CHECKPOINT_KEYS, path, "[checkpointing]")
    if "interval" not in raw:
        raise PipelineConfigError(
            "[checkpointing] needs an interval",
            path=path,
            fix='add interval = "10 s" (or remove the section)',
        )
    interval = _duration(raw["interval"], (*path, "interval"), 'interval = "10 s"')
    if interval < 10:
        raise PipelineConfigError(
            f"checkpoint interval must be at least 10 ms, got {interval} ms",
            path=(*path, "interval"),
            fix='interval = "10 s"',
        )

    def opt_duration(key: str, example: str) -> int | None:
        return _duration(raw[key], (*path, key), example) if key in raw else None

    timeout = opt_duration("timeout", 'timeout = "10 min"')
    if timeout is not None and timeout <= 0:
        raise PipelineConfigError(
            "must be positive", path=(*path, "timeout"), fix='timeout = "10 min"'
        )
    storage: Path | str | None = None
    if "storage" in raw:
        text = _str(raw["storage"], (*path, "storage"), 'storage = "./checkpoints"')
        try:
            storage = parse_storage_location(text)
        except ConfigError as exc:
            raise PipelineConfigError(
                str(exc),
                path=(*path, "storage"),
                fix='storage = "/var/lib/streamplug/checkpoints" or storage = "s3://bucket/prefix"',
            ) from None
        except ImportError as exc:
            # The file is fine; this machine lacks the extra. Say so at the line.
            raise PipelineConfigError(
                str(exc), path=(*path, "storage"), fix=str(exc).rpartition(": ")[2]
            ) from None
    storage_options: dict[str, Any] = {}
    if "storage_options" in raw:
        storage_options = dict(
            _table(
                raw["storage_options"],
                (*path, "storage_options"),
                '[checkpointing.storage_options] with endpoint_url = "http://minio:9000"',
            )
        )
        if isinstance(storage, Path):
            raise PipelineConfigError(
                "storage options apply to an object store storage (s3://...) only",
                path=(*path, "storage_options"),
                fix='storage = "s3://bucket/prefix", or remove [checkpointing.storage_options]',
            )
    return CheckpointSettings(
        interval_ms=interval,
        timeout_ms=timeout,
        min_pause_ms=opt_duration("min_pause", 'min_pause = "500 ms"'),
        max_retained=(
            _int(raw["max_retained"], (*path, "max_retained"), 1, "max_retained = 3")
            if "max_retained" in raw
            else None
        ),
        storage=storage,
        storage_options=storage_options,
        tolerable_failures=(
            _int(
                raw["tolerable_failures"],
                (*path, "tolerable_failures"),
                0,
                "tolerable_failures = 0",
            )
            if "tolerable_failures" in raw
            else None
        ),
    )


def _restart(data: dict[str, Any]) -> RestartSettings | None:
    if "restart_strategy" not in data:
        return None
    path: tuple[PathElement, ...] = ("restart_strategy",)
    raw = _table(data["restart_strategy"], path, '[restart_strategy] with type = "fixed-delay"')
    kinds = list(RESTART_KEYS)
    if "type" not in raw:
        raise PipelineConfigError(
            "[restart_strategy] needs a type",
            path=path,
            fix=f'add type = "fixed-delay" (one of: {", ".join(kinds)})',
        )
    kind = _str(raw["type"], (*path, "type"), 'type = "fixed-delay"')
    kind = _RESTART_ALIASES.get(kind, kind)
    if kind not in RESTART_KEYS:
        raise PipelineConfigError(
            f"unknown restart strategy {kind!r}",
            path=(*path, "type"),
            fix=f"{did_you_mean(kind, kinds)}use one of: {', '.join(kinds)}",
        )
    allowed = RESTART_KEYS[kind]
    _check_keys(
        {k: v for k, v in raw.items() if k != "type"}, allowed, path, f"a {kind} restart strategy"
    )
    params: dict[str, Any] = {}
    for key, value in raw.items():
        kp = (*path, key)
        if key == "type":
            continue
        if key in ("attempts", "max_failures_per_interval"):
            params[key] = _int(value, kp, 0, f"{key} = 3")
        elif key in ("backoff_multiplier",):
            params[key] = _number(value, kp, 1.0, f"{key} = 2.0")
        elif key == "jitter_factor":
            params[key] = _number(value, kp, 0.0, f"{key} = 0.1")
        else:
            params[key] = _duration(value, kp, f'{key} = "10 s"')
    return RestartSettings(kind, params)


def _watermarks(raw_value: Any, path: tuple[PathElement, ...]) -> WatermarkSettings:
    raw = _table(raw_value, path, '[source.watermarks] with strategy = "bounded-out-of-orderness"')
    _check_keys(raw, WATERMARK_KEYS, path, "the watermarks table")
    strategy = _str(
        raw.get("strategy", "none"), (*path, "strategy"), 'strategy = "bounded-out-of-orderness"'
    )
    strategy = _WATERMARK_ALIASES.get(strategy, strategy)
    if strategy not in WATERMARK_STRATEGIES:
        raise PipelineConfigError(
            f"unknown watermark strategy {strategy!r}",
            path=(*path, "strategy"),
            fix=f"{did_you_mean(strategy, WATERMARK_STRATEGIES)}use one of: {', '.join(WATERMARK_STRATEGIES)}",
        )
    delay = None
    if strategy == "bounded-out-of-orderness":
        if "max_out_of_orderness" not in raw:
            raise PipelineConfigError(
                "a bounded-out-of-orderness strategy needs max_out_of_orderness",
                path=(*path, "strategy"),
                fix='add max_out_of_orderness = "5 s"',
            )
        delay = _duration(
            raw["max_out_of_orderness"],
            (*path, "max_out_of_orderness"),
            'max_out_of_orderness = "5 s"',
        )
    elif "max_out_of_orderness" in raw:
        raise PipelineConfigError(
            f"max_out_of_orderness applies to the bounded-out-of-orderness strategy, not {strategy!r}",
            path=(*path, "max_out_of_orderness"),
            fix='set strategy = "bounded-out-of-orderness" or remove max_out_of_orderness',
        )
    idleness = None
    if "idleness" in raw:
        idleness = _duration(raw["idleness"], (*path, "idleness"), 'idleness = "30 s"')
        if idleness <= 0:
            raise PipelineConfigError(
                "must be positive", path=(*path, "idleness"), fix='idleness = "30 s"'
            )
    field = raw.get("timestamp_field")
    assigner = raw.get("timestamp_assigner")
    if field is not None and assigner is not None:
        raise PipelineConfigError(
            "timestamp_field and timestamp_assigner both say where event time comes from",
            path=(*path, "timestamp_assigner"),
            fix="keep one of them",
        )
    if field is not None:
        field = _str(field, (*path, "timestamp_field"), 'timestamp_field = "ts"')
    if assigner is not None:
        assigner = _function_ref(
            assigner, (*path, "timestamp_assigner"), 'timestamp_assigner = "events:event_time"'
        )
    return WatermarkSettings(strategy, delay, idleness, field, assigner)


def _connector_options(
    raw: dict[str, Any], path: tuple[PathElement, ...], reserved: Iterable[str]
) -> dict[str, Any]:
    options = {k: v for k, v in raw.items() if k not in reserved}
    if "properties" in options:
        props = _table(
            options["properties"],
            (*path, "properties"),
            '[source.properties] with "fetch.min.bytes" = "1"',
        )
        for key, value in props.items():
            if isinstance(value, dict | list):
                raise PipelineConfigError(
                    f"client properties are flat key = value pairs, got {_type_name(value)}",
                    path=(*path, "properties", key),
                    fix=f'quote dotted names: "{key}.x" = "value"',
                )
        # librdkafka takes every property as a string; TOML's true/5 are spelled for people.
        options["properties"] = {
            k: ("true" if v is True else "false" if v is False else str(v))
            for k, v in props.items()
        }
    return options


def _connector_and_name(
    raw: dict[str, Any], path: tuple[PathElement, ...], what: str, name_example: str
) -> tuple[str, str]:
    """A source's or sink's ``connector`` (required) and ``name`` (the connector's by
    default); ``what`` names the table in the error."""
    if "connector" not in raw:
        raise PipelineConfigError(
            f"{what} needs a connector",
            path=path,
            fix='add connector = "kafka" (streamplug plugins lists them)',
        )
    connector = _str(raw["connector"], (*path, "connector"), 'connector = "kafka"')
    return connector, _str(raw.get("name", connector), (*path, "name"), name_example)


def _source(data: dict[str, Any]) -> SourceSettings:
    path: tuple[PathElement, ...] = ("source",)
    if "source" not in data:
        raise PipelineConfigError(
            "the pipeline has no [source]",
            path=(),
            fix='add a [source] table with connector = "kafka" (streamplug plugins lists installed connectors)',
        )
    raw = data["source"]
    if isinstance(raw, list):
        raise PipelineConfigError(
            "a pipeline reads one source; [[source]] declares several",
            path=path,
            fix="write [source] once, and run one pipeline file per source",
        )
    raw = _table(raw, path, '[source] with connector = "kafka"')
    connector, name = _connector_and_name(raw, path, "[source]", 'name = "orders"')
    watermarks = _watermarks(raw.get("watermarks", {}), (*path, "watermarks"))
    options = _connector_options(raw, path, (*CONNECTOR_RESERVED, "watermarks"))
    return SourceSettings(connector, name, options, watermarks, path)


def _entries(data: dict[str, Any], key: str) -> list[tuple[tuple[PathElement, ...], Any]]:
    """``[key]`` (one table) or ``[[key]]`` (an array of tables), with each entry's path."""
    raw = data.get(key)
    if raw is None:
        return []
    if isinstance(raw, dict):
        return [((key,), raw)]
    if isinstance(raw, list):
        return [((key, i), v) for i, v in enumerate(raw)]
    raise PipelineConfigError(
        f"must be a table or an array of tables, got {_type_name(raw)}",
        path=(key,),
        fix=f"write [[{key}]] blocks",
    )


def _transforms(data: dict[str, Any]) -> tuple[TransformSettings, ...]:
    result = []
    for path, raw_value in _entries(data, "transform"):
        raw = _table(raw_value, path, '[[transform]] with map = "module:function"')
        _check_keys(raw, TRANSFORM_KEYS, path, "[[transform]]")
        kinds = [k for k in TRANSFORM_KINDS if k in raw]
        if len(kinds) != 1:
            problem = (
                "names no function"
                if not kinds
                else f"names {len(kinds)} functions ({', '.join(kinds)})"
            )
            raise PipelineConfigError(
                f"a transform {problem}",
                path=path,
                fix='give exactly one of map, filter or flat_map, e.g. map = "transforms:enrich" '
                "(one [[transform]] block per step)",
            )
        kind: Literal["map", "filter", "flat_map"] = kinds[0]  # type: ignore[assignment]
        function = _function_ref(raw[kind], (*path, kind), f'{kind} = "transforms:enrich"')
        name = _str(raw["name"], (*path, "name"), 'name = "enrich"') if "name" in raw else None
        options = (
            _table(raw["options"], (*path, "options"), "options = { rate = 0.5 }")
            if "options" in raw
            else None
        )
        result.append(TransformSettings(kind, function, name, options, path))
    return tuple(result)


def _sinks(data: dict[str, Any]) -> tuple[SinkSettings, ...]:
    entries = _entries(data, "sink")
    if not entries:
        raise PipelineConfigError(
            "the pipeline has no [sink]",
            path=(),
            fix='add a [sink] table, e.g. connector = "print"',
        )
    result = []
    names: set[str] = set()
    for path, raw_value in entries:
        raw = _table(raw_value, path, '[sink] with connector = "kafka"')
        connector, name = _connector_and_name(raw, path, "a sink", 'name = "enriched"')
        if name in names:
            raise PipelineConfigError(
                f"two sinks are named {name!r}",
                path=(*path, "name"),
                fix="give each [[sink]] its own name",
            )
        names.add(name)
        result.append(
            SinkSettings(connector, name, _connector_options(raw, path, CONNECTOR_RESERVED), path)
        )
    return tuple(result)


# -- entry points ----------------------------------------------------------------------------


def pipeline_from_dict(
    data: Mapping[str, Any],
    *,
    file: str = "<pipeline>",
    base_dir: str | os.PathLike[str] | None = None,
    locator: KeyLocator | None = None,
    environ: Mapping[str, str] | None = None,
) -> PipelineConfig:
    """Validate an already-parsed pipeline document (a TOML file's dict, or one built in
    code). Raises ``PipelineConfigError`` naming the file, line, key and fix."""
    try:
        raw = _interpolate(dict(data), (), os.environ if environ is None else environ)
        _check_keys(raw, TOP_LEVEL_KEYS, (), "the pipeline file")
        stem = Path(file).stem if file and not file.startswith("<") else "pipeline"
        return PipelineConfig(
            file=file,
            base_dir=Path(base_dir) if base_dir is not None else Path.cwd(),
            job=_job(raw, stem),
            source=_source(raw),
            transforms=_transforms(raw),
            sinks=_sinks(raw),
            checkpointing=_checkpointing(raw),
            restart=_restart(raw),
            locator=locator,
        )
    except PipelineConfigError as exc:
        raise exc.located(file, locator.line(exc.key_path) if locator else None) from None


def parse_pipeline(
    text: str,
    *,
    file: str = "<pipeline>",
    base_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> PipelineConfig:
    """Parse and validate pipeline TOML text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already ends in "(at line N, column M)"; lift the line out.
        m = re.search(r"at line (\d+)", str(exc))
        raise PipelineConfigError(
            f"not valid TOML: {exc}",
            fix="check quoting and brackets on that line (strings need quotes, tables [name])",
            file=file,
            line=int(m.group(1)) if m else None,
        ) from None
    return pipeline_from_dict(
        data, file=file, base_dir=base_dir, locator=KeyLocator(text), environ=environ
    )


def load_pipeline(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> PipelineConfig:
    """Read and validate a pipeline file. ``module:function`` references are later imported
    with the file's directory on ``sys.path``, so a ``transforms.py`` beside it is found."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PipelineConfigError(
            f"pipeline file {str(p)!r} does not exist",
            fix="pass the path of a .toml pipeline file",
            file=str(p),
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineConfigError(f"cannot read pipeline file: {exc}", file=str(p)) from None
    return parse_pipeline(text, file=str(p), base_dir=p.resolve().parent, environ=environ)
