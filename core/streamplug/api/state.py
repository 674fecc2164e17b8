"""Versioned state serializers: how splits, enumerator state and committables are written
into checkpoints.

A serializer turns a value into JSON-compatible data (dicts, lists, strings, numbers) so a
checkpoint stays readable with ``streamplug checkpoints show``, and tags it with a version
so a newer release can still read an older checkpoint.
"""

from __future__ import annotations

import base64
import pickle
from abc import ABC, abstractmethod
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class StateSerializer(ABC, Generic[T]):
    """Converts one kind of state value to and from JSON-compatible data."""

    @property
    @abstractmethod
    def version(self) -> int:
        """The version ``serialize`` writes. Bump it whenever the layout changes."""

    @abstractmethod
    def serialize(self, value: T) -> Any:
        """JSON-compatible data for ``value``."""

    @abstractmethod
    def deserialize(self, version: int, data: Any) -> T:
        """Rebuild a value written by ``serialize`` of version ``version``; raise
        ``ValueError`` naming both versions for one it cannot read."""


class PickleStateSerializer(StateSerializer[Any]):
    """A fallback for state with no serializer of its own. Opaque in checkpoint listings and
    tied to the Python classes that wrote it, so connectors should not rely on it."""

    @property
    def version(self) -> int:
        return 1

    def serialize(self, value: Any) -> Any:
        return {"pickle": base64.b64encode(pickle.dumps(value, protocol=5)).decode("ascii")}

    def deserialize(self, version: int, data: Any) -> Any:
        if version != 1:
            raise ValueError(f"pickled state version {version} is unknown; this release reads 1")
        return pickle.loads(base64.b64decode(data["pickle"]))
