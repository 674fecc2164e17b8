"""``FlinkKafkaConsumer``: the older connector's consumer style, kept for migrating code.

Deprecated: it warns once per process and builds a ``KafkaSource`` underneath, so it
behaves exactly like one (splits, checkpoints, offset commits). New code should use
``KafkaSource.builder()``.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Collection, Mapping
from typing import Any

import attrs

from streamplug.api.context import ReaderContext, SplitEnumeratorContext
from streamplug.api.serde import DeserializationSchema
from streamplug.api.source import Boundedness, Source, SourceReader
from streamplug.api.state import StateSerializer
from streamplug.api.watermarks import WatermarkStrategy
from streamplug.errors import ConfigError
from streamplug_kafka_source import _config
from streamplug_kafka_source.deserializer import KafkaRecordDeserializationSchema
from streamplug_kafka_source.enumerator.enumerator import KafkaSourceEnumerator
from streamplug_kafka_source.enumerator.initializer import (
    CommittedOffsets,
    KafkaOffsetResetStrategy,
    KafkaOffsetsInitializer,
    PartitionOffsetsRetriever,
    SpecifiedOffsets,
)
from streamplug_kafka_source.enumerator.state import KafkaSourceEnumState
from streamplug_kafka_source.source import KafkaSource
from streamplug_kafka_source.split.split import KafkaPartitionSplit, KafkaTopicPartition

__all__ = ["FlinkKafkaConsumer"]

_warned = False
_warn_lock = threading.Lock()

# The older connector's discovery switch, translated to the KafkaSource option.
_LEGACY_DISCOVERY_KEY = "flink.partition-discovery.interval-millis"
_RESET_ALIASES = {
    "smallest": "earliest",
    "beginning": "earliest",
    "largest": "latest",
    "end": "latest",
}


def _warn_once() -> None:
    global _warned
    with _warn_lock:
        if _warned:
            return
        _warned = True
    warnings.warn(
        "FlinkKafkaConsumer is deprecated: build a KafkaSource with KafkaSource.builder() "
        "(set_topics, set_group_id, set_starting_offsets, set_value_only_deserializer) and "
        "read it with env.from_source(...)",
        DeprecationWarning,
        stacklevel=3,
    )


@attrs.frozen
class _SpecificThenCommitted(KafkaOffsetsInitializer):
    """The older connector's specific offsets: partitions not listed start at the group's
    committed offset, or per ``auto.offset.reset`` when there is none."""

    partition_offsets: Mapping[KafkaTopicPartition, int]
    reset: KafkaOffsetResetStrategy

    def get_partition_offsets(
        self, partitions: Collection[KafkaTopicPartition], retriever: PartitionOffsetsRetriever
    ) -> dict[KafkaTopicPartition, int]:
        offsets = self.partition_offsets
        result = {tp: offsets[tp] for tp in partitions if tp in offsets}
        rest = [tp for tp in partitions if tp not in result]
        if rest:
            committed = KafkaOffsetsInitializer.committed_offsets(self.reset)
            result.update(committed.get_partition_offsets(rest, retriever))
        return result

    def get_auto_offset_reset_strategy(self) -> KafkaOffsetResetStrategy:
        return self.reset


class FlinkKafkaConsumer(Source[KafkaPartitionSplit, KafkaSourceEnumState]):
    """``FlinkKafkaConsumer(topics, deserialization_schema, properties)``, deprecated.

    ``topics`` is a topic, a list of topics or a compiled ``re.Pattern``;
    ``deserialization_schema`` a ``DeserializationSchema`` (values) or a
    ``KafkaRecordDeserializationSchema`` (whole records, the old keyed schema);
    ``properties`` must hold ``bootstrap.servers`` and usually ``group.id``.
    Starts from the group's offsets by default, as the older connector did.
    """

    def __init__(
        self,
        topics: str | list[str] | re.Pattern[str],
        deserialization_schema: DeserializationSchema[Any] | KafkaRecordDeserializationSchema[Any],
        properties: Mapping[str, Any],
    ) -> None:
        _warn_once()
        self._topics = topics
        self._schema = deserialization_schema
        self._properties = {str(k): v for k, v in properties.items()}
        reset = str(self._properties.get("auto.offset.reset", "latest")).lower()
        self._reset = KafkaOffsetResetStrategy.parse(_RESET_ALIASES.get(reset, reset))
        self._starting: KafkaOffsetsInitializer = CommittedOffsets(self._reset)
        self._commit_on_checkpoints = True
        self._watermark_strategy: WatermarkStrategy | None = None
        self._source: KafkaSource | None = None

    # -- the older connector's setters -----------------------------------------------------

    def set_start_from_earliest(self) -> FlinkKafkaConsumer:
        return self._start(KafkaOffsetsInitializer.earliest())

    def set_start_from_latest(self) -> FlinkKafkaConsumer:
        return self._start(KafkaOffsetsInitializer.latest())

    def set_start_from_group_offsets(self) -> FlinkKafkaConsumer:
        return self._start(KafkaOffsetsInitializer.committed_offsets(self._reset))

    def set_start_from_timestamp(self, startup_offsets_timestamp: int) -> FlinkKafkaConsumer:
        return self._start(KafkaOffsetsInitializer.timestamp(startup_offsets_timestamp))

    def set_start_from_specific_offsets(
        self, specific_startup_offsets: Mapping[KafkaTopicPartition, int]
    ) -> FlinkKafkaConsumer:
        offsets = SpecifiedOffsets(dict(specific_startup_offsets)).partition_offsets
        return self._start(_SpecificThenCommitted(offsets, self._reset))

    def set_commit_offsets_on_checkpoints(self, commit_on_checkpoints: bool) -> FlinkKafkaConsumer:
        self._commit_on_checkpoints = bool(commit_on_checkpoints)
        self._source = None
        return self

    def assign_timestamps_and_watermarks(
        self, watermark_strategy: WatermarkStrategy
    ) -> FlinkKafkaConsumer:
        """Event time and watermarks for this consumer's records, as the older connector
        did it: ``env.add_source(consumer)`` (or ``from_source`` without a strategy) uses
        this strategy, per partition like a ``KafkaSource``'s."""
        self._watermark_strategy = watermark_strategy
        return self

    def get_watermark_strategy(self) -> WatermarkStrategy | None:
        return self._watermark_strategy

    def _start(self, initializer: KafkaOffsetsInitializer) -> FlinkKafkaConsumer:
        self._starting = initializer
        self._source = None
        return self

    # -- the KafkaSource underneath ----------------------------------------------------------

    @property
    def source(self) -> KafkaSource:
        """The ``KafkaSource`` this consumer runs as."""
        if self._source is None:
            self._source = self._build()
        return self._source

    def _build(self) -> KafkaSource:
        props = dict(self._properties)
        bootstrap = props.pop("bootstrap.servers", None)
        if not bootstrap:
            raise ConfigError(
                "FlinkKafkaConsumer needs 'bootstrap.servers' in its properties",
                option="bootstrap.servers",
            )
        builder = KafkaSource.builder().set_bootstrap_servers(str(bootstrap))
        if _LEGACY_DISCOVERY_KEY in props:
            props[_config.PARTITION_DISCOVERY_INTERVAL_MS] = props.pop(_LEGACY_DISCOVERY_KEY)
        props.pop("auto.offset.reset", None)  # expressed by the starting offsets
        has_group = bool(props.get("group.id"))
        commit = self._commit_on_checkpoints and has_group
        props[_config.COMMIT_OFFSETS_ON_CHECKPOINT] = "true" if commit else "false"
        builder.set_properties(props)
        if isinstance(self._topics, re.Pattern):
            builder.set_topic_pattern(self._topics)
        elif isinstance(self._topics, str):
            builder.set_topics(self._topics)
        else:
            builder.set_topics(*self._topics)
        if isinstance(self._schema, KafkaRecordDeserializationSchema):
            builder.set_deserializer(self._schema)
        else:
            builder.set_value_only_deserializer(self._schema)
        starting = self._starting
        if not has_group:
            # Without a group nothing is committed: start where auto.offset.reset says.
            if isinstance(starting, CommittedOffsets):
                starting = (
                    KafkaOffsetsInitializer.earliest()
                    if self._reset is KafkaOffsetResetStrategy.EARLIEST
                    else KafkaOffsetsInitializer.latest()
                )
            elif isinstance(starting, _SpecificThenCommitted):
                reset = self._reset
                if reset is KafkaOffsetResetStrategy.NONE:
                    reset = KafkaOffsetResetStrategy.LATEST
                starting = KafkaOffsetsInitializer.offsets(starting.partition_offsets, reset)
        builder.set_starting_offsets(starting)
        return builder.build()

    # -- Source, delegated -------------------------------------------------------------------

    def get_boundedness(self) -> Boundedness:
        return self.source.get_boundedness()

    def create_enumerator(
        self, context: SplitEnumeratorContext[KafkaPartitionSplit]
    ) -> KafkaSourceEnumerator:
        return self.source.create_enumerator(context)

    def restore_enumerator(
        self, context: SplitEnumeratorContext[KafkaPartitionSplit], checkpoint: KafkaSourceEnumState
    ) -> KafkaSourceEnumerator:
        return self.source.restore_enumerator(context, checkpoint)

    def create_reader(self, context: ReaderContext) -> SourceReader[KafkaPartitionSplit]:
        return self.source.create_reader(context)

    def get_split_serializer(self) -> StateSerializer[KafkaPartitionSplit]:
        return self.source.get_split_serializer()

    def get_enumerator_checkpoint_serializer(self) -> StateSerializer[KafkaSourceEnumState]:
        return self.source.get_enumerator_checkpoint_serializer()

    def describe(self) -> Mapping[str, Any]:
        return {**self.source.describe(), "type": "FlinkKafkaConsumer (deprecated)"}
