"""JSON records, with optional JSON Schema validation (format ``json``).

orjson is used when it is installed (``pip install 'streamplug-serde[fast]'``): it parses
and writes several times faster than the standard library. Two differences matter:
orjson reads integers beyond 64 bits as floats, refuses ``NaN``/``Infinity`` literals, and
writes float NaN and infinities as ``null`` (JSON has no such numbers; the standard library
path refuses to write them). Pass ``use_orjson=False`` when your data needs any of that.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from streamplug.api.serde import DeserializationError, DeserializationSchema, SerializationSchema
from streamplug.errors import ConfigError
from streamplug_serde._util import (
    BYTES_LIKE,
    SerializationError,
    deserialize_each,
    load_json_document,
    missing_dependency,
    not_bytes_error,
)

__all__ = ["JsonDeserializationSchema", "JsonSerializationSchema"]

FORMAT = "json"

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised only where orjson is absent
    _orjson = None  # type: ignore[assignment]


def _use_orjson(requested: bool | None) -> bool:
    if requested and _orjson is None:
        raise missing_dependency("use_orjson=True", "orjson", "fast")
    return _orjson is not None if requested is None else requested


def _stdlib_dumps(element: Any) -> bytes:
    return json.dumps(element, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(
        "utf-8"
    )


class _Validator:
    """A compiled JSON Schema; compiled once, used for every record."""

    def __init__(self, schema: Any, option: str) -> None:
        try:
            import jsonschema
            import jsonschema.exceptions
        except ImportError as exc:
            raise missing_dependency("JSON Schema validation", "jsonschema", "json-schema") from exc
        document = load_json_document(schema, option)
        cls = jsonschema.validators.validator_for(document)
        try:
            cls.check_schema(document)
        except jsonschema.exceptions.SchemaError as exc:
            raise ConfigError(
                f"{option} is not a valid JSON Schema: {exc.message}", option=option
            ) from exc
        self.schema = document
        self._validator = cls(document)
        self._best_match = jsonschema.exceptions.best_match

    def first_error(self, value: Any) -> str | None:
        if self._validator.is_valid(value):
            return None
        error = self._best_match(self._validator.iter_errors(value))
        if error is None:  # pragma: no cover - is_valid said there is one
            return "does not match the JSON Schema"
        path = "/" + "/".join(str(p) for p in error.absolute_path)
        return f"does not match the JSON Schema at {path}: {error.message}"


def _validator(json_schema: Any) -> _Validator | None:
    return _Validator(json_schema, "json_schema") if json_schema is not None else None


class JsonSerializationSchema(SerializationSchema[Any]):
    """Writes any JSON-compatible value (dict, list, str, int, float, bool, None) as UTF-8
    JSON. ``json_schema`` (a dict, a JSON string or a file path) is checked before
    writing, so a sink never emits a record its readers would reject."""

    def __init__(self, json_schema: Any = None, *, use_orjson: bool | None = None) -> None:
        self._validator = (
            _Validator(json_schema, "json_schema") if json_schema is not None else None
        )
        self.use_orjson = _use_orjson(use_orjson)
        self._dumps: Callable[[Any], bytes] = (
            _orjson.dumps if self.use_orjson and _orjson is not None else _stdlib_dumps
        )

    def serialize(self, element: Any) -> bytes:
        if self._validator is not None:
            problem = self._validator.first_error(element)
            if problem is not None:
                raise SerializationError(problem, format=FORMAT, element=element)
        try:
            return self._dumps(element)
        except TypeError as exc:
            # orjson refuses integers beyond 64 bits, which the standard library writes.
            if self._dumps is not _stdlib_dumps:
                try:
                    return _stdlib_dumps(element)
                except (TypeError, ValueError):
                    pass
            raise SerializationError(str(exc), format=FORMAT, element=element) from exc
        except ValueError as exc:
            raise SerializationError(str(exc), format=FORMAT, element=element) from exc

    def __repr__(self) -> str:
        validating = self._validator is not None
        return f"JsonSerializationSchema(validating={validating}, orjson={self.use_orjson})"


class JsonDeserializationSchema(DeserializationSchema[Any]):
    """Reads UTF-8 JSON into Python values. With ``json_schema`` every record is validated
    and one that does not match raises ``DeserializationError`` naming the failing path."""

    def __init__(self, json_schema: Any = None, *, use_orjson: bool | None = None) -> None:
        self._validator = (
            _Validator(json_schema, "json_schema") if json_schema is not None else None
        )
        self.use_orjson = _use_orjson(use_orjson)
        self._loads: Callable[[Any], Any] = (
            _orjson.loads if self.use_orjson and _orjson is not None else json.loads
        )

    def deserialize(self, message: bytes) -> Any:
        if not isinstance(message, BYTES_LIKE):
            raise not_bytes_error(FORMAT, message)
        try:
            value = self._loads(message)
        except (ValueError, TypeError) as exc:
            # JSONDecodeError (a ValueError) also covers bad UTF-8 in both libraries.
            raise DeserializationError(
                f"not valid JSON: {exc}", format=FORMAT, data=bytes(message)
            ) from exc
        except RecursionError as exc:
            raise DeserializationError(
                "JSON nested too deeply", format=FORMAT, data=bytes(message)
            ) from exc
        if self._validator is not None:
            problem = self._validator.first_error(value)
            if problem is not None:
                raise DeserializationError(problem, format=FORMAT, data=bytes(message))
        return value

    def deserialize_batch(self, messages: Sequence[bytes]) -> list[Any]:
        loads = self._loads
        try:
            values = [loads(m) for m in messages]
        except (ValueError, TypeError, RecursionError):
            return deserialize_each(self.deserialize, messages)
        if self._validator is not None:
            first_error = self._validator.first_error
            if any(first_error(v) is not None for v in values):
                return deserialize_each(self.deserialize, messages)
        return values

    @property
    def json_schema(self) -> Mapping[str, Any] | None:
        return self._validator.schema if self._validator is not None else None

    def __repr__(self) -> str:
        validating = self._validator is not None
        return f"JsonDeserializationSchema(validating={validating}, orjson={self.use_orjson})"
