"""MessagePack serialization and deserialization schemas."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import msgpack

from streamplug.api.serde import DeserializationError, DeserializationSchema, SerializationSchema

__all__ = ["MsgPackDeserializationSchema", "MsgPackSerializationSchema"]

FORMAT = "msgpack"

# Everything msgpack raises for bytes that are not one complete value: ExtraData and
# FormatError are ValueErrors, OutOfData is an UnpackException, bad UTF-8 in a str is a
# UnicodeDecodeError (a ValueError), and unhashable map keys are a TypeError.
_UNPACK_ERRORS = (ValueError, TypeError, msgpack.UnpackException)


class MsgPackSerializationSchema(SerializationSchema[Any]):
    """Writes any msgpack-able value: dict, list, str, bytes, int, float, bool, None."""

    def __init__(self) -> None:
        # A Packer reused for every record (building one per call costs more than packing),
        # one per thread: a sink shares this object between its parallel writers.
        self._local = threading.local()

    def _packer(self) -> msgpack.Packer:
        try:
            return self._local.packer
        except AttributeError:
            self._local.packer = msgpack.Packer(use_bin_type=True, autoreset=True)
            return self._local.packer

    def serialize(self, element: Any) -> bytes:
        packer = self._packer()
        try:
            return packer.pack(element)
        except (TypeError, ValueError, OverflowError) as exc:
            # The packer keeps partial output after a failure; start the next record clean.
            packer.reset()
            raise ValueError(
                f"cannot serialize {type(element).__name__} as msgpack: {exc}"
            ) from exc

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._local = threading.local()


class MsgPackDeserializationSchema(DeserializationSchema[Any]):
    """Reads one msgpack value per record. ``strict_map_key=False`` (the default here)
    allows integer map keys, which msgpack itself refuses unless told."""

    def __init__(self, strict_map_key: bool = False) -> None:
        self.strict_map_key = strict_map_key

    def deserialize(self, message: bytes) -> Any:
        if not isinstance(message, bytes | bytearray | memoryview):
            raise DeserializationError(
                f"expected bytes, got {type(message).__name__}", format=FORMAT, data=None
            )
        try:
            return msgpack.unpackb(message, raw=False, strict_map_key=self.strict_map_key)
        except _UNPACK_ERRORS as exc:
            raise DeserializationError(
                f"not a msgpack value: {type(exc).__name__}: {exc}",
                format=FORMAT,
                data=bytes(message),
            ) from exc

    def deserialize_batch(self, messages: Sequence[bytes]) -> list[Any]:
        unpackb = msgpack.unpackb
        strict = self.strict_map_key
        try:
            return [unpackb(m, raw=False, strict_map_key=strict) for m in messages]
        except _UNPACK_ERRORS:
            # Find the bad record and report it with its own bytes.
            return [self.deserialize(m) for m in messages]
