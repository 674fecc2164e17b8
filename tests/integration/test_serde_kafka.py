"""Formats against real servers: a Schema-Registry-compatible server (Apicurio Registry,
started by the suite from Maven Central) and a real Kafka broker.

Shows that Avro and Protobuf records written by confluent_kafka's own registry serializers
are read by streamplug, and the reverse, through the registry server and through Kafka
topics read by KafkaSource and written by KafkaSink; that bad records reach the source's
bad-record policy as DeserializationError with their location; and that a pipeline uses
the example third-party format by name.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext, StringSerializer

from streamplug.api import WatermarkStrategy
from streamplug.api.serde import DeserializationError
from streamplug.connectors import CollectSink
from streamplug.errors import JobFailedError
from streamplug.plugins import build_plugin_host
from streamplug.runtime import RestartStrategies, StreamExecutionEnvironment
from streamplug_kafka_common.admin import read_all
from streamplug_kafka_sink import KafkaRecordSerializationSchema, KafkaSink
from streamplug_kafka_source import KafkaOffsetsInitializer, KafkaSource
from streamplug_kafka_source.deserializer import KafkaRecord, KafkaRecordDeserializationSchema
from streamplug_kafka_source.reader.bad_records import BadRecordPolicy
from streamplug_serde import (
    ConfluentAvroDeserializationSchema,
    ConfluentAvroSerializationSchema,
    ConfluentProtobufDeserializationSchema,
    ConfluentProtobufSerializationSchema,
    SimpleStringSchema,
)
from streamplug_serde.testing import Money, Order, schema_registry

pytestmark = pytest.mark.integration

USER = {
    "type": "record",
    "name": "User",
    "namespace": "com.example",
    "fields": [
        {"name": "name", "type": "string"},
        {"name": "age", "type": "int"},
        {"name": "email", "type": ["null", "string"], "default": None},
    ],
}
USERS = [
    {"name": f"user-{i}", "age": 20 + i, "email": None if i % 2 else f"u{i}@x"} for i in range(40)
]
ORDERS = [
    Order(id=f"o-{i}", quantity=i, price=Money(currency="EUR", units=i * 100), tags=["a"] * (i % 3))
    for i in range(40)
]
PROTO_CONF = {"use.deprecated.format": False}


@pytest.fixture(scope="module")
def registry_url() -> Iterator[str]:
    with schema_registry() as url:
        yield url


@pytest.fixture
def client(registry_url: str) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": registry_url})


def ctx(topic: str) -> SerializationContext:
    return SerializationContext(topic, MessageField.VALUE)


# -- byte level, through the registry server --------------------------------------------------


def test_avro_both_ways_through_the_registry_server(registry_url: str, client: Any) -> None:
    theirs = AvroSerializer(client, json.dumps(USER))
    written_by_confluent = [theirs(u, ctx("srv-users")) for u in USERS]
    ours = ConfluentAvroDeserializationSchema(schema_registry_url=registry_url)
    assert ours.deserialize_batch(written_by_confluent) == USERS

    writer = ConfluentAvroSerializationSchema(
        USER, schema_registry_url=registry_url, topic="srv-users2"
    )
    written_by_us = [writer.serialize(u) for u in USERS]
    assert [AvroDeserializer(client)(b, ctx("srv-users2")) for b in written_by_us] == USERS
    assert "srv-users2-value" in client.get_subjects()


def test_protobuf_both_ways_through_the_registry_server(registry_url: str, client: Any) -> None:
    theirs = ProtobufSerializer(Order, client, PROTO_CONF)
    written_by_confluent = [theirs(o, ctx("srv-orders")) for o in ORDERS]
    ours = ConfluentProtobufDeserializationSchema(Order, schema_registry_url=registry_url)
    assert ours.deserialize_batch(written_by_confluent) == ORDERS

    writer = ConfluentProtobufSerializationSchema(
        Order,
        schema_registry_url=registry_url,
        topic="srv-orders2",
        subject_name_strategy="topic-record",
    )
    written_by_us = [writer.serialize(o) for o in ORDERS]
    assert [ProtobufDeserializer(Order, PROTO_CONF)(b, ctx("x")) for b in written_by_us] == ORDERS
    subjects = client.get_subjects()
    assert "srv-orders2-streamplug.examples.Order" in subjects
    # The imported money.proto was registered as a reference under its file name.
    assert "streamplug/examples/money.proto" in subjects


def test_unknown_schema_id_is_a_deserialization_error(registry_url: str) -> None:
    reader = ConfluentAvroDeserializationSchema(schema_registry_url=registry_url)
    with pytest.raises(DeserializationError, match="99999"):
        reader.deserialize(b"\x00" + (99999).to_bytes(4, "big") + b"\x02a\x02\x00")


# -- through Kafka: KafkaSource and KafkaSink ---------------------------------------------------


def _read(
    bootstrap: str, topic: str, deserializer: Any, *, policy: BadRecordPolicy | None = None
) -> list[Any]:
    builder = (
        KafkaSource.builder()
        .set_bootstrap_servers(bootstrap)
        .set_topics(topic)
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_bounded(KafkaOffsetsInitializer.latest())
    )
    if isinstance(deserializer, KafkaRecordDeserializationSchema):
        builder.set_deserializer(deserializer)
    else:
        builder.set_value_only_deserializer(deserializer)
    if policy is not None:
        builder.set_bad_record_policy(policy)
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2).set_restart_strategy(RestartStrategies.no_restart())
    sink = CollectSink()
    env.from_source(builder.build(), WatermarkStrategy.no_watermarks(), "kafka").sink_to(sink)
    env.execute("serde-read")
    return list(sink.results)


def _write(
    bootstrap: str, topic: str, elements: list[Any], value_schema: Any, key_schema: Any = None
) -> None:
    record = (
        KafkaRecordSerializationSchema.builder()
        .set_topic(topic)
        .set_value_serialization_schema(value_schema)
    )
    if key_schema is not None:
        record.set_key_serialization_schema(key_schema)
    sink = (
        KafkaSink.builder()
        .set_bootstrap_servers(bootstrap)
        .set_record_serializer(record.build())
        .build()
    )
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2).set_restart_strategy(RestartStrategies.no_restart())
    env.from_collection(elements).sink_to(sink)
    env.execute("serde-write")


def _produce(
    bootstrap: str, topic: str, values: list[bytes], keys: list[bytes] | None = None
) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i, value in enumerate(values):
        producer.produce(topic, value, key=keys[i] if keys else None, partition=i % 2)
    assert producer.flush(15) == 0


def _by(field: str) -> Callable[[Any], Any]:
    return lambda v: v[field] if isinstance(v, dict) else getattr(v, field)


def test_kafka_avro_written_by_confluent_read_by_kafka_source(
    kafka_bootstrap: str, topic_factory: Callable[..., str], registry_url: str, client: Any
) -> None:
    topic = topic_factory(partitions=2)
    theirs = AvroSerializer(client, json.dumps(USER))
    _produce(kafka_bootstrap, topic, [theirs(u, ctx(topic)) for u in USERS])
    got = _read(
        kafka_bootstrap, topic, ConfluentAvroDeserializationSchema(schema_registry_url=registry_url)
    )
    assert sorted(got, key=_by("name")) == sorted(USERS, key=_by("name"))


def test_kafka_avro_written_by_kafka_sink_read_by_confluent(
    kafka_bootstrap: str, topic_factory: Callable[..., str], registry_url: str, client: Any
) -> None:
    topic = topic_factory(partitions=2)
    _write(
        kafka_bootstrap,
        topic,
        USERS,
        ConfluentAvroSerializationSchema(USER, schema_registry_url=registry_url, topic=topic),
    )
    theirs = AvroDeserializer(client)
    got = [theirs(m.value(), ctx(topic)) for m in read_all(kafka_bootstrap, topic)]
    assert sorted(got, key=_by("name")) == sorted(USERS, key=_by("name"))


def test_kafka_protobuf_both_ways(
    kafka_bootstrap: str, topic_factory: Callable[..., str], registry_url: str, client: Any
) -> None:
    theirs_topic = topic_factory(partitions=2)
    theirs = ProtobufSerializer(Order, client, PROTO_CONF)
    _produce(kafka_bootstrap, theirs_topic, [theirs(o, ctx(theirs_topic)) for o in ORDERS])
    got = _read(
        kafka_bootstrap,
        theirs_topic,
        ConfluentProtobufDeserializationSchema(Order, schema_registry_url=registry_url),
    )
    assert sorted(got, key=_by("id")) == sorted(ORDERS, key=_by("id"))

    ours_topic = topic_factory(partitions=2)
    _write(
        kafka_bootstrap,
        ours_topic,
        ORDERS,
        ConfluentProtobufSerializationSchema(
            Order, schema_registry_url=registry_url, topic=ours_topic
        ),
    )
    reader = ProtobufDeserializer(Order, PROTO_CONF)
    got = [reader(m.value(), ctx(ours_topic)) for m in read_all(kafka_bootstrap, ours_topic)]
    assert sorted(got, key=_by("id")) == sorted(ORDERS, key=_by("id"))


def test_kafka_whole_record_with_key_and_value_schemas(
    kafka_bootstrap: str, topic_factory: Callable[..., str], registry_url: str, client: Any
) -> None:
    topic = topic_factory(partitions=2)
    key_serializer = StringSerializer()
    value_serializer = AvroSerializer(client, json.dumps(USER))
    _produce(
        kafka_bootstrap,
        topic,
        [value_serializer(u, ctx(topic)) for u in USERS],
        keys=[key_serializer(u["name"]) for u in USERS],
    )
    key_schema = SimpleStringSchema()
    value_schema = ConfluentAvroDeserializationSchema(schema_registry_url=registry_url)

    class KeyValue(KafkaRecordDeserializationSchema[tuple[str, dict[str, Any], int]]):
        def deserialize(self, record: KafkaRecord) -> tuple[str, dict[str, Any], int]:
            assert record.key is not None and record.value is not None
            return (
                key_schema.deserialize(record.key),
                value_schema.deserialize(record.value),
                record.partition,
            )

    got = _read(kafka_bootstrap, topic, KeyValue())
    assert sorted((k, v["age"]) for k, v, _ in got) == sorted((u["name"], u["age"]) for u in USERS)
    assert all(k == v["name"] for k, v, _ in got)
    assert {p for _, _, p in got} == {0, 1}


def test_bad_records_reach_the_source_policy_with_their_location(
    kafka_bootstrap: str, topic_factory: Callable[..., str], registry_url: str, client: Any
) -> None:
    topic = topic_factory(partitions=1)
    good = AvroSerializer(client, json.dumps(USER))
    values = [good(u, ctx(topic)) for u in USERS[:5]]
    values.insert(2, b"not avro at all")
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for v in values:
        producer.produce(topic, v, partition=0)
    assert producer.flush(15) == 0

    schema = ConfluentAvroDeserializationSchema(schema_registry_url=registry_url)
    skipped = _read(kafka_bootstrap, topic, schema, policy=BadRecordPolicy.skip())
    assert sorted(skipped, key=_by("name")) == USERS[:5]

    with pytest.raises(JobFailedError) as info:
        _read(kafka_bootstrap, topic, schema, policy=BadRecordPolicy.fail())
    error = info.value.__cause__
    while error is not None and not isinstance(error, DeserializationError):
        error = error.__cause__
    assert isinstance(error, DeserializationError), info.value
    assert (error.topic, error.partition, error.offset) == (topic, 0, 2)
    assert error.format == "avro-confluent"
    assert error.data == b"not avro at all"


def test_pipeline_uses_the_example_msgpack_format_by_name(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    pytest.importorskip("streamplug_msgpack", reason="pip install -e examples/msgpack_format")
    from streamplug.pipeline.build import build_pipeline
    from streamplug.pipeline.config import pipeline_from_dict

    topic = topic_factory(partitions=2)
    events = [{"id": i, "tags": ["x"] * (i % 3), "blob": bytes([i])} for i in range(30)]
    host = build_plugin_host()
    config = pipeline_from_dict(
        {
            "job": {"name": "msgpack-writer", "parallelism": 2},
            "source": {"connector": "collection", "elements": events},
            "sink": {
                "connector": "kafka",
                "topic": topic,
                "bootstrap_servers": kafka_bootstrap,
                "format": "msgpack",
            },
        }
    )
    build_pipeline(config, host, restore="none").env.execute("msgpack-writer")

    from streamplug_kafka_source.plugin import kafka_source_from_options

    source = kafka_source_from_options(
        bootstrap_servers=kafka_bootstrap,
        topics=[topic],
        starting_offsets="earliest",
        bounded=True,
        format="msgpack",
        plugin_host=host,
    )
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2).set_restart_strategy(RestartStrategies.no_restart())
    sink = CollectSink()
    env.from_source(source, WatermarkStrategy.no_watermarks(), "kafka").sink_to(sink)
    env.execute("msgpack-reader")
    assert sorted(sink.results, key=_by("id")) == events
