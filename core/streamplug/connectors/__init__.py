"""Connectors that need no external system: for tests, examples and benchmarks."""

from streamplug.connectors.collection import CollectionSource, CollectionSplit, CollectSink
from streamplug.connectors.files import TransactionalFileSink
from streamplug.connectors.printing import DiscardingSink, PrintSink

__all__ = [
    "CollectSink",
    "CollectionSource",
    "CollectionSplit",
    "DiscardingSink",
    "PrintSink",
    "TransactionalFileSink",
]
