"""The module the ``streamplug`` entry point names: its hook registers the format."""

from __future__ import annotations

from collections.abc import Callable

import attrs

from streamplug.plugin import FormatSpec, hookimpl
from streamplug.plugin.options import option
from streamplug_msgpack.schemas import MsgPackDeserializationSchema, MsgPackSerializationSchema


@attrs.frozen
class WriteOptions:
    """Writing MessagePack takes no options."""


@attrs.frozen
class ReadOptions:
    """How MessagePack is read (a pipeline's ``format_options``)."""

    strict_map_key: bool = option(False, doc="refuse map keys that are not strings or bytes")


@hookimpl
def streamplug_register_formats(register: Callable[[FormatSpec], None]) -> None:
    register(
        FormatSpec(
            name="msgpack",
            serializer=MsgPackSerializationSchema,
            deserializer=MsgPackDeserializationSchema,
            description="MessagePack values (example third-party plugin)",
            serializer_options=WriteOptions,
            deserializer_options=ReadOptions,
        )
    )
