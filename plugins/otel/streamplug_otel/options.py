"""What streamplug-otel can be told, declared the way every streamplug component declares
its options (``streamplug.plugin.options``), and where it reads them from.

The options come from ``configure(...)`` in the process (tests, embedded applications),
else from the environment variable ``STREAMPLUG_OTEL``, written as the body of a TOML
table::

    STREAMPLUG_OTEL='sampling = 0.01, root_without_context = true'

An environment variable reaches every worker process of the ``processes`` runtime (and of
Ray, through the job's runtime environment), which is where the reader and writer hooks
run. A wrong key or value raises ``OptionsError`` naming the key in every hook that reads
the options; the plugin host logs it and the job runs on untraced.
"""

from __future__ import annotations

import os
import threading
import tomllib
from typing import Any

import attrs

from streamplug.plugin.options import OptionsError, option, structure

__all__ = ["ENV", "OtelOptions", "configure", "current"]

ENV = "STREAMPLUG_OTEL"


def _ratio(_instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(
            f"{attribute.name} must be between 0 and 1 (a share of records), got {value}"
        )


@attrs.frozen
class OtelOptions:
    """Tracing through streamplug jobs (the streamplug-otel plugin)."""

    propagate: bool = option(
        True,
        doc="carry each input record's W3C trace context (traceparent, tracestate, baggage) "
        "into the headers of the records the job writes from it (with false, the context "
        "is still read for the spans and their links, and no header is written)",
        example="propagate = false",
    )
    sampling: float = option(
        0.0,
        doc="share of records traced one by one (a process and a publish span each); the "
        "others are only in their batch's spans",
        example="sampling = 0.01",
        validator=_ratio,
    )
    root_without_context: bool = option(
        False,
        doc="a sampled record that carries no trace context starts a new trace (otherwise "
        "it starts none)",
        example="root_without_context = true",
    )
    batch_spans: bool = option(
        True,
        doc="a receive span per fetched batch and a publish span per produced batch that "
        "carry trace context, linked to the traces of their records",
        example="batch_spans = false",
    )
    checkpoint_spans: bool = option(
        True,
        doc="a span per checkpoint (and per subtask snapshot) with duration, size and outcome",
        example="checkpoint_spans = false",
    )
    tracer_provider: str | None = option(
        None,
        doc='"module:function" returning the TracerProvider to install in each process '
        "before its first span (worker processes of the processes runtime included); "
        "without it the process's global provider is used",
        example='tracer_provider = "myapp.tracing:provider"',
    )


_lock = threading.Lock()
_configured: OtelOptions | None = None
_from_env: tuple[str | None, OtelOptions] | None = None


def configure(**options: Any) -> None:
    """Set this process's options (checked like a pipeline table); ``configure()`` with
    no arguments goes back to the environment variable."""
    global _configured
    with _lock:
        _configured = (
            structure(OtelOptions, options, ("streamplug_otel.configure",)) if options else None
        )


def current() -> OtelOptions:
    """The options in force: ``configure``'s, else ``STREAMPLUG_OTEL``'s, else defaults."""
    global _from_env
    configured = _configured
    if configured is not None:
        return configured
    raw = os.environ.get(ENV)
    cached = _from_env
    if cached is not None and cached[0] == raw:
        return cached[1]
    parsed = _parse(raw)
    _from_env = (raw, parsed)
    return parsed


def _parse(raw: str | None) -> OtelOptions:
    if not raw or not raw.strip():
        return OtelOptions()
    try:
        table = tomllib.loads("\n".join(part.strip() for part in _split(raw)))
    except tomllib.TOMLDecodeError as exc:
        raise OptionsError(
            (ENV,),
            f"is not a TOML table body: {exc}",
            f"{ENV}='sampling = 0.01, batch_spans = true'",
        ) from None
    options: OtelOptions = structure(OtelOptions, table, (ENV,))
    return options


def _split(raw: str) -> list[str]:
    """``a = 1, b = "x, y"`` as TOML lines: commas outside strings separate keys."""
    parts: list[str] = []
    current_part = ""
    quote: str | None = None
    for char in raw:
        if quote is None and char in "\"'":
            quote = char
        elif quote is not None and char == quote:
            quote = None
        if char in ",\n" and quote is None:
            parts.append(current_part)
            current_part = ""
        else:
            current_part += char
    parts.append(current_part)
    return [p for p in parts if p.strip()]
