"""Helpers shared by the formats: errors, option handling, loading named objects."""

from __future__ import annotations

import importlib
import inspect
import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from streamplug.api.serde import DeserializationError

# The core's, kept importable from here for the schemas of this package.
from streamplug.api.serde import SerializationError as SerializationError
from streamplug.errors import ConfigError

BYTES_LIKE = (bytes, bytearray, memoryview)


class BatchDeserializationError(DeserializationError):
    """A ``DeserializationError`` raised by ``deserialize_batch``; ``index`` is the position
    of the first bad message in the batch, so a source can apply its bad-record policy to
    that one record and go on with the rest."""

    def __init__(self, error: DeserializationError, index: int) -> None:
        super().__init__(
            error.reason,
            format=error.format,
            data=error.data,
            topic=error.topic,
            partition=error.partition,
            offset=error.offset,
        )
        self.index = index


def not_bytes_error(fmt: str, message: object) -> DeserializationError:
    if message is None:
        reason = "the value is null (a tombstone); filter nulls before deserializing"
    else:
        reason = f"expected bytes, got {type(message).__name__}"
    return DeserializationError(reason, format=fmt, data=None)


def deserialize_each(deserialize: Callable[[bytes], Any], messages: Iterable[bytes]) -> list[Any]:
    """The slow path after a bulk path failed: one message at a time, so the first bad one
    is reported with its position in the batch."""
    out = []
    for index, message in enumerate(messages):
        try:
            out.append(deserialize(message))
        except DeserializationError as exc:
            raise BatchDeserializationError(exc, index) from exc
    return out


def normalize_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Pipeline options may be spelled ``schema.registry.url``, ``schema-registry-url`` or
    ``schema_registry_url``; the schema constructors take the last spelling."""
    return {str(k).replace(".", "_").replace("-", "_"): v for k, v in options.items()}


def options_factory(fmt: str, cls: Callable[..., Any]) -> Callable[..., Any]:
    """A ``FormatSpec`` factory: normalizes option names and rejects unknown ones by name."""
    params = inspect.signature(cls).parameters
    valid = sorted(
        n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    )

    def factory(**options: Any) -> Any:
        normalized = normalize_options(options)
        unknown = sorted(set(normalized) - set(valid))
        if unknown:
            raise ConfigError(
                f"format {fmt!r} has no option {unknown[0]!r}; valid options: {', '.join(valid)}",
                option=unknown[0],
            )
        return cls(**normalized)

    factory.__name__ = f"{fmt.replace('-', '_')}_{getattr(cls, '__name__', 'factory')}"
    factory.__doc__ = cls.__doc__
    return factory


def load_object(spec: str, option: str) -> Any:
    """Import ``package.module:Name`` (or ``package.module.Name``)."""
    module_name, sep, attr = spec.partition(":")
    if not sep:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(
            f"{option} must look like 'package.module:ClassName', got {spec!r}", option=option
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"{option}={spec!r}: cannot import module {module_name!r} ({exc}); "
            "install the package that defines it or fix the name",
            option=option,
        ) from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise ConfigError(
                f"{option}={spec!r}: module {module_name!r} has no attribute {attr!r}",
                option=option,
            ) from exc
    return obj


def load_json_document(value: Any, option: str) -> Any:
    """A schema given as a dict/list, a JSON string, or a path to a JSON file."""
    if isinstance(value, Mapping | list):
        return value
    if isinstance(value, os.PathLike) or (
        isinstance(value, str) and not value.lstrip().startswith(("{", "[", '"'))
    ):
        path = Path(value)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"{option}: cannot read schema file {str(path)!r} ({exc.strerror}); "
                "pass the schema itself or an existing file path",
                option=option,
            ) from exc
        value = text
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise ConfigError(f"{option} is not valid JSON: {exc}", option=option) from exc
    raise ConfigError(
        f"{option} must be a dict, a JSON string or a file path, got {type(value).__name__}",
        option=option,
    )


def missing_dependency(what: str, module: str, extra: str) -> ImportError:
    return ImportError(
        f"{what} needs the {module!r} package, which is not installed; "
        f"install it with: pip install 'streamplug-serde[{extra}]'"
    )
