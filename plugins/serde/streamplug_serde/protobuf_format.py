"""Protocol Buffers messages of one generated class (format ``protobuf``)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Literal

from google.protobuf import json_format
from google.protobuf.message import DecodeError, EncodeError, Message

from streamplug.api.serde import DeserializationError, DeserializationSchema, SerializationSchema
from streamplug.errors import ConfigError
from streamplug_serde._util import (
    BYTES_LIKE,
    SerializationError,
    deserialize_each,
    load_object,
    not_bytes_error,
)

__all__ = ["ProtobufDeserializationSchema", "ProtobufSerializationSchema", "resolve_message_class"]

FORMAT = "protobuf"

# Parsing corrupt bytes raises DecodeError from every protobuf backend (upb, cpp, python);
# RuntimeError and ValueError come from the pure-python backend on some inputs.
_DECODE_ERRORS = (DecodeError, RuntimeError, ValueError, TypeError, IndexError)


# protobuf 5.26 renamed the option that includes fields left at their default value.
_PRINT_DEFAULTS: dict[str, bool] = (
    {"always_print_fields_with_no_presence": True}
    if "always_print_fields_with_no_presence"
    in inspect.signature(json_format.MessageToDict).parameters
    else {"including_default_value_fields": True}
)


def resolve_message_class(message_class: Any, option: str = "message_class") -> type[Message]:
    """A generated message class, or its import path ``package.module_pb2:Name``."""
    cls = load_object(message_class, option) if isinstance(message_class, str) else message_class
    if not (isinstance(cls, type) and issubclass(cls, Message)):
        raise ConfigError(
            f"{option} must be a generated protobuf message class (a subclass of "
            f"google.protobuf.message.Message), got {cls!r}",
            option=option,
        )
    return cls


class ProtobufSerializationSchema(SerializationSchema[Any]):
    """Writes messages of ``message_class``. A dict is accepted too and converted with
    protobuf's JSON mapping (field names as in the .proto or in lowerCamelCase)."""

    format_name = FORMAT

    def __init__(self, message_class: Any) -> None:
        self.message_class = resolve_message_class(message_class)

    def _to_message(self, element: Any) -> Message:
        if isinstance(element, self.message_class):
            return element
        if isinstance(element, dict):
            try:
                return json_format.ParseDict(element, self.message_class())
            except json_format.ParseError as exc:
                raise SerializationError(
                    f"dict does not fit {self.message_class.DESCRIPTOR.full_name}: {exc}",
                    format=self.format_name,
                    element=element,
                ) from exc
        raise SerializationError(
            f"expected a {self.message_class.DESCRIPTOR.full_name} message or a dict",
            format=self.format_name,
            element=element,
        )

    def serialize(self, element: Any) -> bytes:
        if type(element) is self.message_class:
            # The common case: one attribute lookup and the C serializer, nothing else.
            try:
                return element.SerializeToString()
            except EncodeError as exc:
                raise SerializationError(
                    str(exc), format=self.format_name, element=element
                ) from exc
        message = self._to_message(element)
        try:
            return message.SerializeToString()
        except EncodeError as exc:  # proto2 required fields left unset
            raise SerializationError(str(exc), format=self.format_name, element=element) from exc

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message_class.DESCRIPTOR.full_name})"


class ProtobufDeserializationSchema(DeserializationSchema[Any]):
    """Reads messages of ``message_class``; ``output="dict"`` returns plain dicts (protobuf's
    JSON mapping, original field names, default values included) instead of messages."""

    format_name = FORMAT

    def __init__(self, message_class: Any, output: Literal["message", "dict"] = "message") -> None:
        self.message_class = resolve_message_class(message_class)
        if output not in ("message", "dict"):
            raise ConfigError(
                f"output must be 'message' or 'dict', got {output!r}", option="output"
            )
        self.output = output

    def _convert(self, message: Message) -> Any:
        if self.output == "dict":
            return json_format.MessageToDict(
                message, preserving_proto_field_name=True, **_PRINT_DEFAULTS
            )
        return message

    def parse(self, data: bytes, start: int = 0) -> Any:
        view = memoryview(data)[start:] if start else data
        try:
            message = self.message_class.FromString(view)
        except _DECODE_ERRORS as exc:
            raise DeserializationError(
                f"not a valid {self.message_class.DESCRIPTOR.full_name}: {exc}",
                format=self.format_name,
                data=bytes(data),
            ) from exc
        return self._convert(message)

    def deserialize(self, message: bytes) -> Any:
        if not isinstance(message, BYTES_LIKE):
            raise not_bytes_error(self.format_name, message)
        return self.parse(bytes(message))

    def deserialize_batch(self, messages: Sequence[bytes]) -> list[Any]:
        from_string = self.message_class.FromString
        try:
            parsed = [from_string(m) for m in messages]
        except _DECODE_ERRORS:
            return deserialize_each(self.deserialize, messages)
        if self.output == "dict":
            return [self._convert(m) for m in parsed]
        return parsed

    def __repr__(self) -> str:
        name = self.message_class.DESCRIPTOR.full_name
        return f"{type(self).__name__}({name}, output={self.output!r})"
