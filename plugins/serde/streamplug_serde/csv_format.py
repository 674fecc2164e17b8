"""One CSV row per record (format ``csv``), through the standard library's csv module.

With ``fields`` a row is a dict keyed by field name; without, a list of strings.
``field_types`` converts named fields (``int``, ``float``, ``bool``, ``string``) on read
and checks them on write. Fields are strings otherwise: CSV has no types of its own.
"""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from streamplug.api.serde import DeserializationError, DeserializationSchema, SerializationSchema
from streamplug.errors import ConfigError
from streamplug_serde._util import BYTES_LIKE, SerializationError, deserialize_each, not_bytes_error

__all__ = ["CsvRowDeserializationSchema", "CsvRowSerializationSchema"]

FORMAT = "csv"


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false)")


_READERS: dict[str, Callable[[str], Any]] = {
    "string": str,
    "int": int,
    "float": float,
    "bool": _parse_bool,
}
_WRITE_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "int": (int,),
    "float": (float, int),
    "bool": (bool,),
}


def _bool_text(value: Any) -> str:
    return "true" if value else "false"


class _Dialect:
    """The options both directions share, validated once."""

    def __init__(
        self,
        fields: Sequence[str] | str | None,
        field_types: Mapping[str, str] | None,
        delimiter: str,
        quote_char: str,
        null_literal: str | None,
        charset: str,
    ) -> None:
        if isinstance(fields, str):
            fields = [f.strip() for f in fields.split(",") if f.strip()]
        self.fields: list[str] | None = list(fields) if fields is not None else None
        if self.fields is not None:
            if not self.fields:
                raise ConfigError("fields is empty; name at least one column", option="fields")
            if len(set(self.fields)) != len(self.fields):
                raise ConfigError(f"fields has duplicate names: {self.fields}", option="fields")
        self.field_types = dict(field_types or {})
        for name, type_name in self.field_types.items():
            if self.fields is None or name not in self.fields:
                raise ConfigError(
                    f"field_types names {name!r}, which is not in fields={self.fields}; "
                    "list the column in fields",
                    option="field_types",
                )
            if type_name not in _READERS:
                raise ConfigError(
                    f"field_types[{name!r}]={type_name!r} is not a CSV type; "
                    f"use one of {', '.join(_READERS)}",
                    option="field_types",
                )
        if len(delimiter) != 1:
            raise ConfigError(
                f"delimiter must be one character, got {delimiter!r}", option="delimiter"
            )
        if len(quote_char) != 1:
            raise ConfigError(
                f"quote_char must be one character, got {quote_char!r}", option="quote_char"
            )
        self.delimiter = delimiter
        self.quote_char = quote_char
        self.null_literal = null_literal
        self.charset = charset
        self.csv_options: dict[str, Any] = {
            "delimiter": delimiter,
            "quotechar": quote_char,
            "doublequote": True,
            "strict": True,
            # The writer quotes a field holding any line-terminator character, so "\r\n"
            # makes it quote a lone "\r" too, which readers would otherwise take for a row end.
            "lineterminator": "\r\n",
            "quoting": csv.QUOTE_MINIMAL,
        }


class CsvRowSerializationSchema(SerializationSchema[Any]):
    """Writes a dict (with ``fields``) or a sequence as one CSV line, without a line end.

    ``None`` is written as ``null_literal`` when one is set and refused otherwise, so a
    null never turns silently into an empty string."""

    format_name = FORMAT

    def __init__(
        self,
        fields: Sequence[str] | str | None = None,
        *,
        field_types: Mapping[str, str] | None = None,
        delimiter: str = ",",
        quote_char: str = '"',
        null_literal: str | None = None,
        charset: str = "utf-8",
    ) -> None:
        self.dialect = _Dialect(fields, field_types, delimiter, quote_char, null_literal, charset)
        # Sinks share one schema object between their parallel writers (one thread each),
        # so the reusable buffer and csv writer are per thread.
        self._local = threading.local()

    def _buffer_and_writer(self) -> tuple[io.StringIO, Any]:
        try:
            return self._local.pair
        except AttributeError:
            buf = io.StringIO()
            self._local.pair = (buf, csv.writer(buf, **self.dialect.csv_options))
            return self._local.pair

    def _cells(self, element: Any) -> list[Any]:
        d = self.dialect
        if type(element) is list and d.fields is None and not d.field_types and None not in element:
            return element
        if isinstance(element, Mapping):
            if d.fields is None:
                raise SerializationError(
                    "a dict row needs the column order: set the fields option",
                    format=FORMAT,
                    element=element,
                )
            extra = set(element) - set(d.fields)
            if extra:
                raise SerializationError(
                    f"keys {sorted(map(str, extra))} are not in fields={d.fields}",
                    format=FORMAT,
                    element=element,
                )
            values = [element.get(f) for f in d.fields]
        elif isinstance(element, Sequence) and not isinstance(element, str | bytes):
            values = list(element)
            if d.fields is not None and len(values) != len(d.fields):
                raise SerializationError(
                    f"row has {len(values)} values but fields has {len(d.fields)}",
                    format=FORMAT,
                    element=element,
                )
        else:
            raise SerializationError(
                "expected a dict or a list/tuple of values", format=FORMAT, element=element
            )
        if not d.field_types and None not in values:
            return values  # nothing to check or convert per cell
        names: Sequence[Any] = d.fields if d.fields is not None else range(len(values))
        cells: list[Any] = []
        for name, value in zip(names, values, strict=True):
            if value is None:
                if d.null_literal is None:
                    raise SerializationError(
                        f"column {name!r} is None; set null_literal (e.g. '') to write nulls",
                        format=FORMAT,
                        element=element,
                    )
                cells.append(d.null_literal)
                continue
            type_name = d.field_types.get(name) if isinstance(name, str) else None
            if type_name is not None:
                if not isinstance(value, _WRITE_TYPES[type_name]) or (
                    type_name in ("int", "float") and isinstance(value, bool)
                ):
                    raise SerializationError(
                        f"column {name!r} must be {type_name}, got {type(value).__name__}",
                        format=FORMAT,
                        element=element,
                    )
                if type_name == "bool":
                    value = _bool_text(value)
                elif type_name == "float":
                    value = repr(float(value))  # type: ignore[arg-type]
            cells.append(value)
        return cells

    def serialize(self, element: Any) -> bytes:
        cells = self._cells(element)
        buf, writer = self._buffer_and_writer()
        buf.seek(0)
        buf.truncate()
        try:
            writer.writerow(cells)
        except csv.Error as exc:
            raise SerializationError(str(exc), format=FORMAT, element=element) from exc
        text = buf.getvalue()[:-2]  # drop the line terminator: one record is one row
        try:
            return text.encode(self.dialect.charset)
        except UnicodeEncodeError as exc:
            raise SerializationError(
                f"not representable in {self.dialect.charset}", format=FORMAT, element=element
            ) from exc

    def __repr__(self) -> str:
        d = self.dialect
        return f"CsvRowSerializationSchema(fields={d.fields}, delimiter={d.delimiter!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"dialect": self.dialect}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.dialect = state["dialect"]
        self._local = threading.local()


class CsvRowDeserializationSchema(DeserializationSchema[Any]):
    """Reads one CSV row per record: a dict with ``fields``, else a list of strings.

    A record holding zero or several rows, bad quoting, a wrong column count or a value
    that does not convert to its ``field_types`` type raises ``DeserializationError``."""

    format_name = FORMAT

    def __init__(
        self,
        fields: Sequence[str] | str | None = None,
        *,
        field_types: Mapping[str, str] | None = None,
        delimiter: str = ",",
        quote_char: str = '"',
        null_literal: str | None = None,
        charset: str = "utf-8",
    ) -> None:
        self.dialect = _Dialect(fields, field_types, delimiter, quote_char, null_literal, charset)
        d = self.dialect
        names = d.fields or []
        self._converters = [
            (i, name, _READERS[d.field_types[name]])
            for i, name in enumerate(names)
            if name in d.field_types and d.field_types[name] != "string"
        ]

    def _row(self, cells: list[str], message: bytes) -> Any:
        d = self.dialect
        if d.fields is not None and len(cells) != len(d.fields):
            raise DeserializationError(
                f"row has {len(cells)} columns but fields has {len(d.fields)} ({d.fields})",
                format=FORMAT,
                data=message,
            )
        values: list[Any] = list(cells)
        if d.null_literal is not None:
            null = d.null_literal
            values = [None if v == null else v for v in values]
        for i, name, convert in self._converters:
            if values[i] is None:
                continue
            try:
                values[i] = convert(values[i])
            except ValueError as exc:
                raise DeserializationError(
                    f"column {name!r}: {values[i]!r} is not {d.field_types[name]} ({exc})",
                    format=FORMAT,
                    data=message,
                ) from exc
        if d.fields is None:
            return values
        return dict(zip(d.fields, values, strict=True))

    def deserialize(self, message: bytes) -> Any:
        if not isinstance(message, BYTES_LIKE):
            raise not_bytes_error(FORMAT, message)
        data = bytes(message)
        try:
            text = data.decode(self.dialect.charset)
        except UnicodeDecodeError as exc:
            raise DeserializationError(
                f"not valid {self.dialect.charset}: {exc.reason}", format=FORMAT, data=data
            ) from exc
        try:
            rows = list(csv.reader([text], **self.dialect.csv_options))
        except csv.Error as exc:
            raise DeserializationError(f"malformed CSV: {exc}", format=FORMAT, data=data) from exc
        if len(rows) != 1:
            raise DeserializationError(
                f"expected exactly one CSV row, found {len(rows)}", format=FORMAT, data=data
            )
        return self._row(rows[0], data)

    def deserialize_batch(self, messages: Sequence[bytes]) -> list[Any]:
        # One csv.reader over the whole batch parses in C without per-record set-up. A
        # record with an unterminated quote would swallow the next one, so the row count
        # must match exactly; otherwise the per-record path finds and reports the culprit.
        charset = self.dialect.charset
        try:
            texts = [m.decode(charset) for m in messages]
            rows = list(csv.reader(texts, **self.dialect.csv_options))
        except (UnicodeDecodeError, AttributeError, csv.Error):
            return deserialize_each(self.deserialize, messages)
        if len(rows) != len(texts):
            return deserialize_each(self.deserialize, messages)
        d = self.dialect
        if d.fields is None and d.null_literal is None:
            return rows  # lists of strings, exactly what the reader produced
        if d.fields is not None and not self._converters and d.null_literal is None:
            fields = d.fields
            width = len(fields)
            if all(len(r) == width for r in rows):
                return [dict(zip(fields, r, strict=True)) for r in rows]
        try:
            return [self._row(r, m) for r, m in zip(rows, messages, strict=True)]
        except DeserializationError:
            return deserialize_each(self.deserialize, messages)

    def __repr__(self) -> str:
        d = self.dialect
        return f"CsvRowDeserializationSchema(fields={d.fields}, delimiter={d.delimiter!r})"
