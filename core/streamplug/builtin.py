"""The core's own connectors, registered through the same hooks as any plugin. (The core's
commands register themselves: ``streamplug.cli`` and ``streamplug.pipeline.cli``.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from streamplug.plugin.options import option
from streamplug.plugin.records import ConnectorSpec
from streamplug.plugin.spec import hookimpl


@attrs.frozen
class CollectionOptions:
    """The ``collection`` source: in-memory elements, split evenly across the readers."""

    elements: list[Any] = option(
        factory=list, doc="the records, in order", example="elements = [1, 2, 3]"
    )
    num_splits: int | None = option(None, doc="how many splits (default: up to 4)")
    batch_size: int = option(1000, doc="records per batch a reader emits")
    records_per_second: float | None = option(None, doc="throttle each reader to this rate")


@attrs.frozen
class PrintOptions:
    """The ``print`` sink: one line per record on stdout."""

    prefix: str = option("", doc="written before each record, followed by ':'")


@attrs.frozen
class DiscardOptions:
    """The ``discard`` sink takes no options."""


def _collection_source(options: CollectionOptions, host: Any) -> Any:
    from streamplug.connectors.collection import CollectionSource

    return CollectionSource(
        list(options.elements),
        num_splits=options.num_splits,
        batch_size=options.batch_size,
        records_per_second=options.records_per_second,
    )


def _print_sink(options: PrintOptions, host: Any) -> Any:
    from streamplug.connectors.printing import PrintSink

    return PrintSink(options.prefix)


def _discard_sink(options: DiscardOptions, host: Any) -> Any:
    from streamplug.connectors.printing import DiscardingSink

    return DiscardingSink()


@hookimpl
def streamplug_register_connectors(register: Callable[[ConnectorSpec], None]) -> None:
    register(
        ConnectorSpec(
            "collection",
            "source",
            _collection_source,
            "in-memory elements, split evenly",
            CollectionOptions,
        )
    )
    register(
        ConnectorSpec("print", "sink", _print_sink, "prints each record to stdout", PrintOptions)
    )
    register(
        ConnectorSpec(
            "discard", "sink", _discard_sink, "drops every record (benchmarks)", DiscardOptions
        )
    )
