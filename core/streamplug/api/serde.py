"""Serialization and deserialization schemas, and the one error a bad record raises."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import attrs

from streamplug.errors import StreamplugError

T = TypeVar("T")


class SerializationSchema(ABC, Generic[T]):
    """Turns an element into bytes (Flink's ``SerializationSchema``)."""

    def open(self) -> None:
        """Called once before the first ``serialize``, on the thread that will use it."""

    @abstractmethod
    def serialize(self, element: T) -> bytes: ...

    def serialize_batch(self, elements: Sequence[T]) -> list[bytes]:
        """Serialize many at once, in order; formats with a faster bulk path override this.
        A bad element raises what ``serialize`` raises for it."""
        return list(map(self.serialize, elements))


class DeserializationSchema(ABC, Generic[T]):
    """Turns bytes into an element (Flink's ``DeserializationSchema``).

    Raise ``DeserializationError`` (or any exception: the source wraps it) for bad input;
    never return None for a record that could not be read.
    """

    def open(self) -> None:
        """Called once before the first ``deserialize``, on the thread that will use it."""

    @abstractmethod
    def deserialize(self, message: bytes) -> T: ...

    def deserialize_batch(self, messages: Sequence[bytes]) -> list[T]:
        """Deserialize many at once; formats with a faster bulk path override this."""
        deserialize = self.deserialize
        return [deserialize(m) for m in messages]


def map_present(batch: Callable[[list[Any]], list[Any]], items: list[Any]) -> list[Any]:
    """``batch`` applied to the items that are not None, None kept in place: how a keyed
    path runs a column (keys, values) with nulls in it through a schema's batch method.

    One call of ``batch`` per column whatever the mix; a column of only nulls (a topic
    without keys) never calls it. The checks run in C (``all``, ``list.count``); only a
    column that mixes nulls and data pays a Python step per item to put them back.

    >>> map_present(lambda xs: [x.upper() for x in xs], [b"a", None, b"c"])
    [b'A', None, b'C']
    """
    if all(items):
        return batch(items)
    nulls = items.count(None)
    if nulls == 0:
        return batch(items)  # falsy but not null (empty bytes or text)
    if nulls == len(items):
        return items
    present = batch([item for item in items if item is not None])
    if len(present) != len(items) - nulls:
        raise ValueError(
            f"a batch method returned {len(present)} results for {len(items) - nulls} items"
        )
    it = iter(present)
    return [None if item is None else next(it) for item in items]


EXCERPT_BYTES = 32


class SerializationError(StreamplugError, ValueError):
    """An element could not be turned into bytes by format ``format``.

    Raised by serialization schemas, whatever the library underneath raised, so a sink can
    tell a bad element from a broken client. The element itself is not kept (it may hold
    secrets); ``element_type`` names its type.
    """

    def __init__(self, reason: str, *, format: str, element: object = None) -> None:
        self.reason = reason
        self.format = format
        self.element_type = type(element).__name__
        super().__init__(f"cannot serialize {self.element_type} as {format}: {reason}")


class DeserializationError(StreamplugError, ValueError):
    """A record's bytes could not be read. Carries where it came from, so a source's
    bad-record policy (fail, skip and count, dead-letter) can act on it."""

    def __init__(
        self,
        reason: str,
        *,
        format: str,
        data: bytes | None = None,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        self.reason = reason
        self.format = format
        self.data = data
        self.topic = topic
        self.partition = partition
        self.offset = offset
        super().__init__(self._message())

    @property
    def excerpt(self) -> str:
        if self.data is None:
            return "<null>"
        head = self.data[:EXCERPT_BYTES]
        more = f"... ({len(self.data)} bytes)" if len(self.data) > EXCERPT_BYTES else ""
        return repr(head) + more

    def located(self, topic: str, partition: int, offset: int) -> DeserializationError:
        """The same error, placed at a record: sources call this when they catch it."""
        return DeserializationError(
            self.reason,
            format=self.format,
            data=self.data,
            topic=topic,
            partition=partition,
            offset=offset,
        )

    def _message(self) -> str:
        where = ""
        if self.topic is not None:
            where = f" at {self.topic}[{self.partition}]@{self.offset}"
        return (
            f"cannot deserialize {self.format} record{where}: {self.reason}; bytes: {self.excerpt}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_error,
            (self.reason, self.format, self.data, self.topic, self.partition, self.offset),
        )


def _rebuild_error(
    reason: str,
    fmt: str,
    data: bytes | None,
    topic: str | None,
    partition: int | None,
    offset: int | None,
) -> DeserializationError:
    return DeserializationError(
        reason, format=fmt, data=data, topic=topic, partition=partition, offset=offset
    )


@attrs.frozen
class FormatSpec:
    """A named serialization format, as plugins register it.

    ``serializer`` and ``deserializer`` are factories called with the format options of a
    pipeline (keyword arguments) and returning a schema; either may be None for a format
    that only goes one way. ``serializer_options`` and ``deserializer_options`` declare
    those keyword arguments as frozen attrs classes (see ``streamplug.plugin.options``), so
    a pipeline's ``format_options`` are checked key by key before a factory is called.
    """

    name: str
    serializer: Callable[..., SerializationSchema[Any]] | None = None
    deserializer: Callable[..., DeserializationSchema[Any]] | None = None
    description: str = ""
    serializer_options: type | None = None
    deserializer_options: type | None = None

    def __attrs_post_init__(self) -> None:
        if self.serializer is None and self.deserializer is None:
            raise ValueError(f"format {self.name!r} needs a serializer or a deserializer factory")
