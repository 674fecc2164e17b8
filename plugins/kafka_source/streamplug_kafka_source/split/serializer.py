"""How splits are written into checkpoints: readable JSON, with a version."""

from __future__ import annotations

from typing import Any

from streamplug.api.state import StateSerializer
from streamplug_kafka_source.split.split import KafkaPartitionSplit


class KafkaPartitionSplitSerializer(StateSerializer[KafkaPartitionSplit]):
    """Version 1: ``{"topic": str, "partition": int, "starting_offset": int,
    "stopping_offset": int | null}``."""

    VERSION = 1

    @property
    def version(self) -> int:
        return self.VERSION

    def serialize(self, value: KafkaPartitionSplit) -> Any:
        return {
            "topic": value.topic,
            "partition": value.partition,
            "starting_offset": value.starting_offset,
            "stopping_offset": value.stopping_offset,
        }

    def deserialize(self, version: int, data: Any) -> KafkaPartitionSplit:
        if version != self.VERSION:
            raise ValueError(
                f"Kafka split state version {version} is unknown; this release reads version "
                f"{self.VERSION}: restore with the streamplug-kafka-source release that wrote it"
            )
        try:
            return KafkaPartitionSplit(
                data["topic"],
                data["partition"],
                data["starting_offset"],
                data.get("stopping_offset"),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed Kafka split state {data!r}: {exc}") from exc
