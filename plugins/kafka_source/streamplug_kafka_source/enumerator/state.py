"""What the enumerator remembers across a restart, and its versioned serializer."""

from __future__ import annotations

from typing import Any

import attrs

from streamplug.api.state import StateSerializer
from streamplug_kafka_source.split.serializer import KafkaPartitionSplitSerializer
from streamplug_kafka_source.split.split import KafkaPartitionSplit, KafkaTopicPartition


@attrs.frozen
class KafkaSourceEnumState:
    """``assigned``: partitions handed to a reader (their progress lives in the readers'
    state). ``unassigned``: splits discovered and resolved but not yet handed out, kept
    with their offsets so a restart does not re-resolve them (``latest`` would move).
    ``initial_discovery_finished``: whether partitions found later start from the
    earliest offset instead of the starting initializer."""

    assigned: frozenset[KafkaTopicPartition] = frozenset()
    unassigned: tuple[KafkaPartitionSplit, ...] = ()
    initial_discovery_finished: bool = False


class KafkaSourceEnumStateSerializer(StateSerializer[KafkaSourceEnumState]):
    """Version 1: ``{"assigned": [{"topic", "partition"}...], "unassigned": [split...],
    "initial_discovery_finished": bool}``."""

    VERSION = 1

    def __init__(self) -> None:
        self._splits = KafkaPartitionSplitSerializer()

    @property
    def version(self) -> int:
        return self.VERSION

    def serialize(self, value: KafkaSourceEnumState) -> Any:
        return {
            "assigned": [
                {"topic": tp.topic, "partition": tp.partition} for tp in sorted(value.assigned)
            ],
            "unassigned": [self._splits.serialize(s) for s in value.unassigned],
            "initial_discovery_finished": value.initial_discovery_finished,
        }

    def deserialize(self, version: int, data: Any) -> KafkaSourceEnumState:
        if version != self.VERSION:
            raise ValueError(
                f"Kafka enumerator state version {version} is unknown; this release reads "
                f"version {self.VERSION}"
            )
        try:
            return KafkaSourceEnumState(
                frozenset(
                    KafkaTopicPartition(a["topic"], a["partition"]) for a in data["assigned"]
                ),
                tuple(
                    self._splits.deserialize(KafkaPartitionSplitSerializer.VERSION, s)
                    for s in data.get("unassigned", ())
                ),
                bool(data.get("initial_discovery_finished", False)),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed Kafka enumerator state {data!r}: {exc}") from exc
