"""streamplug jobs: KafkaSource -> (identity map) -> KafkaSink, or the source alone into a
discarding sink.

``mode``: ``source`` (read only), ``NONE``, ``AT_LEAST_ONCE``, ``EXACTLY_ONCE``
(checkpoints every ``checkpoint_ms`` for the last two). ``keyed``: records are read and
written as ``(key, value)`` through the keyed fast path
(``KafkaRecordDeserializationSchema.key_value`` and the record serializer's
``set_key_value_serialization_schemas``) where this streamplug has it, and through the
whole-record ``KafkaRecord`` schema and separate key/value serializers where it does not;
the result says which (``keyed_path``). Values are bytes throughout, no decoding.
``statistics_ms`` (optional): librdkafka's statistics interval of the source and the sink,
for runs under valgrind, where the defaults' timers would fire ~20x more often per record.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Sequence
from typing import Any

import _common

from streamplug.api import DeserializationSchema, SerializationSchema
from streamplug.api.sink import DeliveryGuarantee
from streamplug.connectors import DiscardingSink
from streamplug.runtime import StreamExecutionEnvironment
from streamplug_kafka_sink import KafkaRecordSerializationSchema, KafkaSink
from streamplug_kafka_source import (
    KafkaOffsetsInitializer,
    KafkaRecordDeserializationSchema,
    KafkaSource,
    KafkaTopicPartition,
)


class RawIn(DeserializationSchema[bytes]):
    """Values as they came. Notes when the first batch arrived (one test per batch): a
    source-only job writes no output whose append time would tell start-up apart."""

    first: float | None = None

    def deserialize(self, message: bytes) -> bytes:
        return message

    def deserialize_batch(self, messages: Sequence[bytes]) -> list[bytes]:
        if RawIn.first is None:
            RawIn.first = time.time()
        return messages if isinstance(messages, list) else list(messages)


class RawOut(SerializationSchema[bytes]):
    def serialize(self, element: bytes) -> bytes:
        return element

    def serialize_batch(self, elements: Sequence[bytes]) -> list[bytes]:
        return elements if isinstance(elements, list) else list(elements)


def identity(element: Any) -> Any:
    return element


def has_keyed_fast_path() -> bool:
    return hasattr(KafkaRecordDeserializationSchema, "key_value") and hasattr(
        KafkaRecordSerializationSchema.builder(), "set_key_value_serialization_schemas"
    )


def main() -> None:
    s = _common.spec()
    bootstrap, topic, mode = s["bootstrap"], s["in"], s["mode"]
    keyed, parallelism = bool(s["keyed"]), int(s["parallelism"])
    fast = has_keyed_fast_path()
    keyed_path = ("key_value" if fast else "KafkaRecord") if keyed else None

    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(parallelism)
    if mode in ("AT_LEAST_ONCE", "EXACTLY_ONCE"):
        env.enable_checkpointing(int(s.get("checkpoint_ms", 1000)))
        storage = tempfile.mkdtemp(prefix="bench-compare-")
        env.get_checkpoint_config().set_checkpoint_storage_dir(storage)
    stop = (
        KafkaOffsetsInitializer.offsets(
            {KafkaTopicPartition(topic, int(p)): int(o) for p, o in s["stop"].items()}
        )
        if s.get("stop")
        else KafkaOffsetsInitializer.latest()
    )
    builder = (
        KafkaSource.builder()
        .set_bootstrap_servers(bootstrap)
        .set_topics(topic)
        .set_group_id(f"bench-compare-{uuid.uuid4().hex}")
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_bounded(stop)
    )
    statistics_ms = s.get("statistics_ms")
    if statistics_ms is not None:
        builder.set_property("statistics.interval.ms", str(int(statistics_ms)))
    if not keyed:
        builder.set_value_only_deserializer(RawIn())
    elif fast:
        builder.set_deserializer(KafkaRecordDeserializationSchema.key_value(None, None))  # type: ignore[attr-defined]
    else:
        builder.set_deserializer(KafkaRecordDeserializationSchema.of(lambda r: (r.key, r.value)))
    stream = env.from_source(builder.build(), None, "in")

    if mode == "source":
        stream.sink_to(DiscardingSink())
    else:
        records = KafkaRecordSerializationSchema.builder().set_topic(s["out"])
        if not keyed:
            records.set_value_serialization_schema(RawOut())
        elif fast:
            records.set_key_value_serialization_schemas(None, None)  # type: ignore[attr-defined]
        else:
            records.set_key_serialization_schema(lambda kv: kv[0])
            records.set_value_serialization_schema(lambda kv: kv[1])
        sink = (
            KafkaSink.builder()
            .set_bootstrap_servers(bootstrap)
            .set_record_serializer(records.build())
            .set_delivery_guarantee(DeliveryGuarantee[mode])
        )
        if statistics_ms is not None:
            sink.set_property("statistics.interval.ms", str(int(statistics_ms)))
        if mode == "EXACTLY_ONCE":
            sink.set_transactional_id_prefix(f"bench-{uuid.uuid4().hex[:8]}")
            if s.get("commit_log"):
                # The run's job is one that ran before: its commit log exists (see
                # compare/run.py's ``commit_log``).
                sink.set_property("commit.log.topic", s["commit_log"])
        stream.map(identity).sink_to(sink.build())

    window = _common.Window()
    result = env.execute(f"bench-{mode}")
    window.report(
        "streamplug",
        "streamplug-kafka-source",
        "confluent-kafka",
        processed=result.records_in,
        keyed_path=keyed_path,
        t_first=RawIn.first,
    )


if __name__ == "__main__":
    main()
