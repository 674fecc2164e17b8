"""Declared component options: how a table of a pipeline file becomes a component's frozen
options class, in one place, and how that class becomes a JSON Schema.

A plugin declares what each component takes as an ``attrs.frozen`` class and names it in
the record it registers (``ConnectorSpec(options=...)``, ``FormatSpec(serializer_options=...,
deserializer_options=...)``, ``PartitionerSpec(options=...)``, ``OffsetsInitializerSpec(
options=...)``)::

    @attrs.frozen
    class CsvOptions:
        fields: list[str] | None = option(None, doc="column names, in order")
        delimiter: str = option(",", doc="one character")

``structure`` converts a table into it with cattrs, strictly (TOML types, no coercion of
``"5"`` into 5 or ``"false"`` into True), and raises ``OptionsError`` naming the key path
of the first problem, with a did-you-mean for an unknown key. ``json_schema`` describes
the class for editors and ``streamplug schema``.
"""

from __future__ import annotations

import datetime
import difflib
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NewType

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from streamplug.errors import ConfigError, UnknownNameError
from streamplug.secrets import MASK, is_secret_key, redact_nested

__all__ = [
    "Duration",
    "OptionsError",
    "UnknownComponentError",
    "component",
    "component_options",
    "given",
    "json_schema",
    "option",
    "structure",
    "type_schema",
]

Duration = NewType("Duration", int)
"""Milliseconds, written as an integer or as a string with a unit (``"5 s"``, ``"1 min"``)."""

_META = "streamplug"

PathElement = str | int


class OptionsError(ConfigError):
    """An options table does not fit its class. ``path`` is the key path inside the table,
    ``problem`` and ``fix`` say what is wrong and what to write instead."""

    def __init__(self, path: tuple[PathElement, ...], problem: str, fix: str | None) -> None:
        super().__init__(self._place(path, problem, fix), option=_dotted(path) or None)

    def _place(self, path: tuple[PathElement, ...], problem: str, fix: str | None) -> str:
        self.path = path
        self.problem = problem
        self.fix = fix
        where = _dotted(path)
        return f"{where + ': ' if where else ''}{problem}" + (f"; fix: {fix}" if fix else "")


class UnknownComponentError(OptionsError, UnknownNameError):
    """An option names a component no installed plugin registers (a ``LookupError`` too)."""

    def __init__(
        self, path: tuple[PathElement, ...], kind: str, name: str, valid: list[str]
    ) -> None:
        self.kind = kind
        self.name = name
        self.valid = valid
        close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        message = self._place(
            path,
            f"no {kind} named {name!r} is installed",
            f"{hint}installed {kind}s: {', '.join(valid) or '(none)'} "
            "(streamplug plugins shows which distribution provides each)",
        )
        self.option = _dotted(path) or None
        Exception.__init__(self, message)


def _dotted(path: tuple[PathElement, ...]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (("." if out else "") + str(p))
    return out


# -- declaring ----------------------------------------------------------------------------------


def option(
    default: Any = attrs.NOTHING,
    *,
    doc: str = "",
    example: str | None = None,
    factory: Callable[[], Any] | None = None,
    validator: Callable[[Any, Any, Any], Any] | None = None,
) -> Any:
    """An option: ``doc`` becomes its description in the schema, ``example`` (a TOML line)
    the fix shown when it is missing or wrong. ``validator(instance, attribute, value)``
    raises for a value of the right type that still cannot work; its message is shown
    on the key's line."""
    meta = {_META: {"doc": doc, "example": example}}
    if factory is not None:
        return attrs.field(factory=factory, metadata=meta, validator=validator)
    return attrs.field(default=default, metadata=meta, validator=validator)


def component(
    kind: str,
    default: Any = None,
    *,
    doc: str = "",
    direction: str | None = None,
    example: str | None = None,
) -> Any:
    """An option naming a registered component of ``kind`` (``"format"``, ``"partitioner"``,
    ``"offsets initializer"``), as a string or a ``{ name = ..., <its options> }`` table.
    For formats, ``direction`` is ``"serializer"`` or ``"deserializer"``."""
    return attrs.field(
        default=default,
        metadata={
            _META: {"doc": doc, "component": kind, "direction": direction, "example": example}
        },
    )


def component_options(of: str, *, doc: str = "") -> Any:
    """An option holding the options of the component another option (``of``) names, such
    as ``format_options`` beside ``format``."""
    return attrs.field(factory=dict, metadata={_META: {"doc": doc, "options_of": of}})


def _meta(field: attrs.Attribute[Any]) -> dict[str, Any]:
    meta: dict[str, Any] = field.metadata.get(_META, {})
    return meta


# -- converting ---------------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    """A value as an error quotes it, with the secrets of a table it holds masked."""
    return repr(redact_nested(value))


def _expected(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is str:
        return "a string"
    if tp is bool:
        return "a boolean (true or false)"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is Duration:
        return 'a duration (milliseconds, or a string such as "5 s")'
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        return "an array"
    if origin in (dict, typing.Mapping) or tp is dict:
        return "a table"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_expected(a) for a in typing.get_args(tp) if a is not type(None))
    return getattr(tp, "__name__", str(tp))


def _strict(kind: type | tuple[type, ...], reject_bool: bool = True) -> Callable[[Any, Any], Any]:
    def hook(value: Any, tp: Any) -> Any:
        if (reject_bool and isinstance(value, bool)) or not isinstance(value, kind):
            raise TypeError(f"must be {_expected(tp)}, got {_type_name(value)} {_show(value)}")
        return value

    return hook


def _duration(value: Any, tp: Any) -> int:
    from streamplug.pipeline.config import parse_duration_ms

    try:
        return parse_duration_ms(value)
    except ValueError as exc:
        raise TypeError(
            f"{exc}: write milliseconds as an integer or a string with a unit (ms, s, min, h, d)"
        ) from None


def _union(value: Any, tp: Any) -> Any:
    errors = []
    for member in typing.get_args(tp):
        if member is type(None):
            if value is None:
                return None
            continue
        try:
            return _converter.structure(value, member)
        except Exception as exc:
            errors.append(exc)
    raise TypeError(f"must be {_expected(tp)}, got {_type_name(value)} {_show(value)}")


def _literal(value: Any, tp: Any) -> Any:
    if value not in typing.get_args(tp):
        close = difflib.get_close_matches(str(value), [str(a) for a in typing.get_args(tp)], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TypeError(f"must be {_expected(tp)}, got {_show(value)}{hint}")
    return value


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(str, _strict(str))
    converter.register_structure_hook(int, _strict(int))
    converter.register_structure_hook(float, lambda v, t: float(_strict((int, float))(v, t)))
    converter.register_structure_hook(bool, _strict(bool, reject_bool=False))
    converter.register_structure_hook(Duration, _duration)
    converter.register_structure_hook(Any, lambda v, t: v)
    converter.register_structure_hook(
        datetime.datetime, _strict((datetime.datetime, datetime.date))
    )
    converter.register_structure_hook_func(
        lambda t: typing.get_origin(t) in (typing.Union, types.UnionType), _union
    )
    converter.register_structure_hook_func(
        lambda t: typing.get_origin(t) is typing.Literal, _literal
    )

    def is_list(t: Any) -> bool:
        return typing.get_origin(t) is list

    def structure_list(value: Any, tp: Any) -> Any:
        if not isinstance(value, list):
            raise TypeError(f"must be {_expected(tp)}, got {_type_name(value)} {_show(value)}")
        args = typing.get_args(tp)
        item = args[0] if args else Any
        return [_at(converter.structure, v, item, i) for i, v in enumerate(value)]

    converter.register_structure_hook_func(is_list, structure_list)

    def is_dict(t: Any) -> bool:
        return typing.get_origin(t) in (dict, typing.Mapping) or t is dict

    def structure_dict(value: Any, tp: Any) -> Any:
        if not isinstance(value, dict):
            raise TypeError(f"must be a table, got {_type_name(value)} {_show(value)}")
        args = typing.get_args(tp)
        if not args or args[1] is Any:
            return dict(value)
        return {k: _at(converter.structure, v, args[1], k) for k, v in value.items()}

    converter.register_structure_hook_func(is_dict, structure_dict)
    return converter


class _KeyedError(Exception):
    def __init__(self, key: PathElement, error: Exception) -> None:
        self.key = key
        self.error = error


def _at(structure: Callable[[Any, Any], Any], value: Any, tp: Any, key: PathElement) -> Any:
    try:
        return structure(value, tp)
    except Exception as exc:
        raise _KeyedError(key, exc) from None


_converter = _make_converter()


def _problems(
    exc: BaseException, cls: type, path: tuple[PathElement, ...]
) -> Iterator[tuple[tuple[PathElement, ...], str, str | None]]:
    """(key path, problem, fix) of every leaf of a cattrs error, unknown keys first."""
    if isinstance(exc, ForbiddenExtraKeysError):
        valid = [f.name for f in attrs.fields(exc.cl)]
        for key in sorted(exc.extra_fields):
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            yield (
                (*path, key),
                f"unknown key {key!r}",
                f"{hint}valid keys are: {', '.join(valid) or '(none)'}",
            )
    elif isinstance(exc, ClassValidationError):
        with_notes, without = exc.group_exceptions()
        for sub in without:
            yield from _problems(sub, exc.cl, path)
        fields = attrs.fields_dict(exc.cl)
        for sub, note in with_notes:
            name = getattr(note, "name", None)
            field = fields.get(name) if name else None
            if isinstance(sub, KeyError) and field is not None and name is not None:
                example = _meta(field).get("example") or f"{name} = ..."
                yield (*path, name), f"missing key {name!r}", example
            else:
                yield from _problems(sub, exc.cl, (*path, name) if name else path)
    elif isinstance(exc, IterableValidationError):
        items, rest = exc.group_exceptions()
        for sub, item in items:
            yield from _problems(sub, cls, (*path, item.index))
        for sub in rest:
            yield from _problems(sub, cls, path)
    elif isinstance(exc, _KeyedError):
        yield from _problems(exc.error, cls, (*path, exc.key))
    else:
        field = attrs.fields_dict(cls).get(str(path[-1])) if path and attrs.has(cls) else None
        example = _meta(field).get("example") if field is not None else None
        yield path, str(exc), example


def structure(cls: type, table: Mapping[str, Any], path: tuple[PathElement, ...] = ()) -> Any:
    """``table`` as an instance of the options class ``cls``. Raises ``OptionsError`` at the
    first problem, unknown keys (with a did-you-mean) before missing ones and wrong types."""
    if not isinstance(table, Mapping):
        raise OptionsError(path, f"must be a table, got {_type_name(table)} {_show(table)}", None)
    try:
        return _converter.structure(dict(table), cls)
    except Exception as exc:
        problems = sorted(_problems(exc, cls, path), key=lambda p: "unknown key" not in p[1])
        if not problems:
            raise
        where, problem, fix = problems[0]
        if any(isinstance(k, str) and is_secret_key(k) for k in where) and ", got " in problem:
            # The key may hold a secret: say what is wrong without quoting the value.
            problem = problem.split(", got ")[0] + f", got {MASK}"
        raise OptionsError(where, problem, fix) from None


def given(instance: Any, table: Mapping[str, Any]) -> dict[str, Any]:
    """The converted values of the keys ``table`` gave, as keyword arguments: a factory's
    own defaults stay in charge of the rest."""
    return {
        f.name: getattr(instance, f.name) for f in attrs.fields(type(instance)) if f.name in table
    }


# -- describing ---------------------------------------------------------------------------------


def type_schema(tp: Any) -> dict[str, Any]:
    """The JSON Schema of one option type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is Duration:
        return {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*[a-zA-Z]*\s*$"},
            ]
        }
    if tp is datetime.datetime:
        return {"type": "string", "format": "date-time"}
    if origin is list or tp is list:
        return {"type": "array", "items": type_schema(args[0])} if args else {"type": "array"}
    if origin in (dict, typing.Mapping) or tp is dict:
        if args and args[1] is not Any:
            return {"type": "object", "additionalProperties": type_schema(args[1])}
        return {"type": "object"}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        members = [type_schema(a) for a in args if a is not type(None)]
        return members[0] if len(members) == 1 else {"anyOf": members}
    if attrs.has(tp):
        return json_schema(tp)
    return {}


def json_schema(
    cls: type, components: Callable[[str, str | None], dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of the options class ``cls``. ``components(kind,
    direction)`` gives the schema of a component reference (names and their options);
    without it a reference is any string or table with a name."""
    attrs.resolve_types(cls)
    properties: dict[str, Any] = {}
    required = []
    conditions = []
    for field in attrs.fields(cls):
        meta = _meta(field)
        if "component" in meta:
            if components is not None:
                schema = components(meta["component"], meta.get("direction"))
            else:
                schema = {
                    "anyOf": [
                        {"type": "string"},
                        {"type": "object", "required": ["name"]},
                    ]
                }
        elif "options_of" in meta:
            schema = {"type": "object"}
            if components is not None:
                named = attrs.fields_dict(cls)[meta["options_of"]]
                ref = components(_meta(named)["component"], _meta(named).get("direction"))
                for name, options_schema in ref.get("x-streamplug-options", {}).items():
                    conditions.append(
                        {
                            "if": {
                                "properties": {meta["options_of"]: {"const": name}},
                                "required": [meta["options_of"]],
                            },
                            "then": {"properties": {field.name: options_schema}},
                        }
                    )
        else:
            schema = type_schema(field.type)
        if meta.get("doc"):
            schema = {**schema, "description": meta["doc"]}
        properties[field.name] = schema
        if field.default is attrs.NOTHING:
            required.append(field.name)
    out: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if cls.__doc__:
        out["description"] = " ".join(cls.__doc__.split())
    if required:
        out["required"] = required
    if conditions:
        out["allOf"] = conditions
    return out
