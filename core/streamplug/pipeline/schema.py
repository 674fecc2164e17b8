"""A JSON Schema of pipeline files, made from the options every installed component
declares, so editors can complete and check a pipeline file (``streamplug schema``)."""

from __future__ import annotations

import re
from typing import Any

from streamplug.pipeline import config
from streamplug.plugin import PluginHost
from streamplug.plugin.options import Duration, json_schema, type_schema

__all__ = ["pipeline_schema"]

_DURATION = type_schema(Duration)


def _keys(keys: tuple[str, ...], types: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {k: types.get(k, {}) for k in keys},
        "additionalProperties": False,
    }


def _component(host: PluginHost, kind: str, direction: str | None) -> dict[str, Any]:
    """A reference to a component of ``kind``: one of the installed names, or a table with
    ``name`` and that component's options."""
    options: dict[str, Any] = {}
    for name in host.names(kind):
        record = host.lookup(kind, name)
        if kind == "format" and direction is not None and getattr(record, direction) is None:
            continue
        cls = host.options_class(kind, name, direction)
        options[name] = json_schema(cls, _components(host)) if cls is not None else {}
    tables = []
    for name, schema in options.items():
        props = {"name": {"const": name}, **schema.get("properties", {})}
        table: dict[str, Any] = {"type": "object", "properties": props, "required": ["name"]}
        if schema.get("additionalProperties") is False:
            table["additionalProperties"] = False
        table["required"] += schema.get("required", [])
        tables.append(table)
    names = sorted(options)
    # "timestamp:1700000000000": a name and one argument its plugin reads.
    pattern = "^(" + "|".join(re.escape(n) for n in names) + ")(:.+)?$"
    strings: dict[str, Any] = (
        {"enum": names} if kind == "format" else {"type": "string", "pattern": pattern}
    )
    return {"anyOf": [strings, *tables], "x-streamplug-options": options}


def _components(host: PluginHost) -> Any:
    return lambda kind, direction: _component(host, kind, direction)


def _strip(schema: Any) -> Any:
    """The schema without the per-name options kept for conditions (not a JSON Schema word)."""
    if isinstance(schema, dict):
        return {k: _strip(v) for k, v in schema.items() if k != "x-streamplug-options"}
    if isinstance(schema, list):
        return [_strip(v) for v in schema]
    return schema


def _connectors(host: PluginHost, role: str, reserved: dict[str, Any]) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    conditions = []
    for name in host.names(role):
        record = host.connector(name, role)  # type: ignore[arg-type]
        schema: dict[str, Any] = (
            json_schema(record.options, _components(host)) if record.options is not None else {}
        )
        if schema:
            schema["properties"] = {**reserved, **schema["properties"]}
        if record.description:
            schema["description"] = record.description
        defs[f"{role}.{name}"] = schema
        conditions.append(
            {
                "if": {"properties": {"connector": {"const": name}}, "required": ["connector"]},
                "then": {"$ref": f"#/$defs/{role}.{name}"},
            }
        )
    table = {
        "type": "object",
        "required": ["connector"],
        "properties": {"connector": {"enum": host.names(role)}},
        "allOf": conditions,
    }
    return {"table": table, "defs": defs}


def pipeline_schema(host: PluginHost) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a pipeline file with the components ``host``
    has installed: every connector's, format's, partitioner's and offsets initializer's
    options, key by key."""
    watermarks = _keys(
        config.WATERMARK_KEYS,
        {
            "strategy": {
                "enum": [*config.WATERMARK_STRATEGIES, *config._WATERMARK_ALIASES],
            },
            "max_out_of_orderness": _DURATION,
            "idleness": _DURATION,
            "timestamp_field": {"type": "string"},
            "timestamp_assigner": {"type": "string"},
        },
    )
    named = {"connector": {"type": "string"}, "name": {"type": "string"}}
    source = _connectors(host, "source", {**named, "watermarks": watermarks})
    sink = _connectors(host, "sink", named)
    restart_keys = sorted({k for keys in config.RESTART_KEYS.values() for k in keys})
    restart = _keys(
        ("type", *restart_keys),
        {
            "type": {"enum": [*config.RESTART_KEYS, *config._RESTART_ALIASES]},
            **{k: _DURATION for k in restart_keys if k not in ("attempts", "jitter_factor")},
            "attempts": {"type": "integer", "minimum": 0},
            "max_failures_per_interval": {"type": "integer", "minimum": 1},
            "backoff_multiplier": {"type": "number"},
            "jitter_factor": {"type": "number"},
        },
    )
    transform = _keys(
        config.TRANSFORM_KEYS,
        {
            **{
                k: {"type": "string", "pattern": r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"}
                for k in config.TRANSFORM_KINDS
            },
            "name": {"type": "string"},
            "options": {"type": "object"},
        },
    )
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "streamplug pipeline file",
        "type": "object",
        "required": ["source", "sink"],
        "additionalProperties": False,
        "properties": {
            "job": _keys(
                config.JOB_KEYS,
                {
                    "name": {"type": "string"},
                    "parallelism": {"type": "integer", "minimum": 1},
                    "auto_watermark_interval": _DURATION,
                },
            ),
            "checkpointing": {
                **_keys(
                    config.CHECKPOINT_KEYS,
                    {
                        "interval": _DURATION,
                        "timeout": _DURATION,
                        "min_pause": _DURATION,
                        "max_retained": {"type": "integer", "minimum": 1},
                        "storage": {"type": "string"},
                        "tolerable_failures": {"type": "integer", "minimum": 0},
                    },
                ),
                "required": ["interval"],
            },
            "restart_strategy": restart,
            "source": source["table"],
            "transform": {"type": "array", "items": transform},
            "sink": {
                "anyOf": [
                    sink["table"],
                    {"type": "array", "items": sink["table"], "minItems": 1},
                ]
            },
        },
        "$defs": {**source["defs"], **sink["defs"]},
    }
    stripped: dict[str, Any] = _strip(schema)
    return stripped
