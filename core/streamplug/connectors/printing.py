"""Sinks for looking at a stream or for measuring it: print and discard."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, TextIO

from streamplug.api.context import SinkContext
from streamplug.api.sink import DeliveryGuarantee, Sink, SinkWriter


class _PrintWriter(SinkWriter[Any, Any]):
    def __init__(self, prefix: str, stream: TextIO, subtask: int, parallelism: int) -> None:
        self._stream = stream
        label = f"{subtask + 1}> " if parallelism > 1 else ""
        self._prefix = f"{prefix}:{label}" if prefix else label

    def write(self, values: Sequence[Any], timestamps: Sequence[int] | None) -> None:
        self._stream.write("".join(f"{self._prefix}{v}\n" for v in values))

    def flush(self, end_of_input: bool) -> None:
        self._stream.flush()


class PrintSink(Sink[Any, Any]):
    """Prints every record, prefixed like Flink's ``print()`` (``2> record`` at parallelism > 1)."""

    def __init__(self, prefix: str = "", stream: TextIO | None = None) -> None:
        self.prefix = prefix
        self.stream = stream

    def create_writer(self, context: SinkContext, restored_state: Sequence[Any]) -> _PrintWriter:
        return _PrintWriter(
            self.prefix, self.stream or sys.stdout, context.subtask_index, context.parallelism
        )

    @property
    def delivery_guarantee(self) -> DeliveryGuarantee:
        return DeliveryGuarantee.NONE


class _DiscardWriter(SinkWriter[Any, Any]):
    def write(self, values: Sequence[Any], timestamps: Sequence[int] | None) -> None:
        pass

    def flush(self, end_of_input: bool) -> None:
        pass


class DiscardingSink(Sink[Any, Any]):
    """Drops every record: for benchmarks of everything before the sink."""

    def create_writer(self, context: SinkContext, restored_state: Sequence[Any]) -> _DiscardWriter:
        return _DiscardWriter()

    @property
    def delivery_guarantee(self) -> DeliveryGuarantee:
        return DeliveryGuarantee.NONE
