"""The core's own connectors, registered through the same hooks as any plugin. (The core's
commands register themselves: ``streamplug.cli`` and ``streamplug.pipeline.cli``.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamplug.plugin.records import ConnectorSpec
from streamplug.plugin.spec import hookimpl


def _collection_source(**options: Any) -> Any:
    from streamplug.connectors.collection import CollectionSource

    return CollectionSource.from_options(**options)


def _print_sink(**options: Any) -> Any:
    from streamplug.connectors.printing import PrintSink

    return PrintSink(**options)


def _discard_sink(**options: Any) -> Any:
    from streamplug.connectors.printing import DiscardingSink

    return DiscardingSink(**options)


@hookimpl
def streamplug_register_connectors(register: Callable[[ConnectorSpec], None]) -> None:
    register(
        ConnectorSpec(
            "collection", "source", _collection_source, "in-memory elements, split evenly"
        )
    )
    register(ConnectorSpec("print", "sink", _print_sink, "prints each record to stdout"))
    register(ConnectorSpec("discard", "sink", _discard_sink, "drops every record (benchmarks)"))
