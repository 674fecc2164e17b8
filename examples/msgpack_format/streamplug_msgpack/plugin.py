"""The module the ``streamplug`` entry point names: its hook registers the format."""

from __future__ import annotations

from collections.abc import Callable

from streamplug.api.serde import FormatSpec
from streamplug.plugin import hookimpl
from streamplug_msgpack.schemas import MsgPackDeserializationSchema, MsgPackSerializationSchema


@hookimpl
def streamplug_register_formats(register: Callable[[FormatSpec], None]) -> None:
    register(
        FormatSpec(
            name="msgpack",
            serializer=MsgPackSerializationSchema,
            deserializer=MsgPackDeserializationSchema,
            description="MessagePack values (example third-party plugin)",
        )
    )
