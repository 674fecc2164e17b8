"""Choosing the Kafka partition of each record (Flink's ``FlinkKafkaPartitioner``).

A partitioner is opened once per writer subtask and then asked, per record, for a
partition among the topic's partitions. Returning ``None`` leaves the choice to the
producer's own partitioner, which the sink configures as Kafka's Java default
(murmur2 of the key), so keyed records land where a Java producer would put them.

Named partitioners (``"default"``, ``"fixed"``, ``"round-robin"``) are registered through
the ``streamplug_register_partitioners`` hook; a plugin adds its own the same way.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from streamplug.errors import ConfigError

__all__ = [
    "DefaultPartitioner",
    "FlinkFixedPartitioner",
    "FunctionPartitioner",
    "KafkaPartitioner",
    "RoundRobinPartitioner",
    "partitioner_from",
]


class KafkaPartitioner(ABC):
    """Picks a partition for a record.

    Lifecycle: ``open`` is called once per writer subtask before the first ``partition``;
    ``partition`` is then called on that subtask's thread only, so an instance may keep
    unsynchronised state. Each subtask gets its own copy of the configured partitioner.
    """

    def open(self, parallel_instance_id: int, parallel_instances: int) -> None:
        """Called once with this subtask's index and the sink's parallelism."""

    @abstractmethod
    def partition(
        self,
        record: Any,
        key: bytes | None,
        value: bytes | None,
        target_topic: str,
        partitions: Sequence[int],
    ) -> int | None:
        """The partition for ``record`` (one of ``partitions``, sorted ascending), or
        ``None`` to let Kafka's key hashing decide."""


class DefaultPartitioner(KafkaPartitioner):
    """Kafka's own choice: murmur2 of the key, like the Java producer; records without a
    key are spread by the producer."""

    def partition(
        self,
        record: Any,
        key: bytes | None,
        value: bytes | None,
        target_topic: str,
        partitions: Sequence[int],
    ) -> int | None:
        return None


class FlinkFixedPartitioner(KafkaPartitioner):
    """Each writer subtask writes to a single partition: subtask ``i`` to
    ``partitions[i % len(partitions)]``. With fewer subtasks than partitions some
    partitions stay empty; with more, several subtasks share one."""

    def __init__(self) -> None:
        self._index = -1

    def open(self, parallel_instance_id: int, parallel_instances: int) -> None:
        if (
            parallel_instance_id < 0
            or parallel_instances <= 0
            or parallel_instance_id >= parallel_instances
        ):
            raise ValueError(
                f"subtask {parallel_instance_id} of {parallel_instances} is not a valid parallel "
                "instance"
            )
        self._index = parallel_instance_id

    def partition(
        self,
        record: Any,
        key: bytes | None,
        value: bytes | None,
        target_topic: str,
        partitions: Sequence[int],
    ) -> int | None:
        if self._index < 0:
            raise RuntimeError("FlinkFixedPartitioner.partition called before open()")
        return partitions[self._index % len(partitions)]


class RoundRobinPartitioner(KafkaPartitioner):
    """Cycles through every partition of the topic record by record, ignoring keys. Each
    subtask starts at its own offset so parallel writers do not move in lockstep."""

    def __init__(self) -> None:
        self._counter = itertools.count()

    def open(self, parallel_instance_id: int, parallel_instances: int) -> None:
        self._counter = itertools.count(parallel_instance_id)

    def partition(
        self,
        record: Any,
        key: bytes | None,
        value: bytes | None,
        target_topic: str,
        partitions: Sequence[int],
    ) -> int | None:
        return partitions[next(self._counter) % len(partitions)]


PartitionFunction = Callable[
    [Any, "bytes | None", "bytes | None", str, Sequence[int]], "int | None"
]


class FunctionPartitioner(KafkaPartitioner):
    """A plain function ``fn(record, key, value, topic, partitions) -> partition | None``."""

    def __init__(self, fn: PartitionFunction) -> None:
        if not callable(fn):
            raise ConfigError(f"partitioner function {fn!r} is not callable", option="partitioner")
        self.fn = fn

    def partition(
        self,
        record: Any,
        key: bytes | None,
        value: bytes | None,
        target_topic: str,
        partitions: Sequence[int],
    ) -> int | None:
        return self.fn(record, key, value, target_topic, partitions)

    def __repr__(self) -> str:
        return f"FunctionPartitioner({getattr(self.fn, '__qualname__', self.fn)!r})"


def partitioner_from(
    value: KafkaPartitioner | PartitionFunction | str, plugin_host: Any = None
) -> KafkaPartitioner:
    """A partitioner from an instance, a function, or a registered name (looked up through
    ``plugin_host``, a ``streamplug.plugins.PluginHost``; one is built when omitted)."""
    if isinstance(value, KafkaPartitioner):
        return value
    if isinstance(value, str):
        if plugin_host is None:
            from streamplug.plugins import build_plugin_host

            plugin_host = build_plugin_host()
        built = plugin_host.build_component("partitioner", value, path=("partitioner",))
        if not isinstance(built, KafkaPartitioner):
            built = FunctionPartitioner(built)
        return built
    if callable(value):
        return FunctionPartitioner(value)
    raise ConfigError(
        f"partitioner {value!r} is neither a KafkaPartitioner, a function nor a registered name",
        option="partitioner",
    )
