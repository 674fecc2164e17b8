"""KafkaSink builder, record serialization schema, partitioners, options and plugin wiring
(no broker)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from confluent_kafka.serialization import StringSerializer

from streamplug.api.serde import SerializationSchema
from streamplug.api.sink import DeliveryGuarantee
from streamplug.errors import ConfigError, UnknownNameError
from streamplug.plugins import build_plugin_host
from streamplug.testing import sink_context
from streamplug_kafka_sink import (
    FlinkFixedPartitioner,
    FlinkKafkaProducer,
    FunctionPartitioner,
    KafkaRecordSerializationSchema,
    KafkaSink,
    KafkaSinkContext,
    ProducerRecord,
    RoundRobinPartitioner,
    Semantic,
    _config,
    legacy,
    plugin,
)
from streamplug_kafka_sink.transaction import KafkaCommittable, KafkaCommittableSerializer


class Utf8(SerializationSchema[str]):
    def serialize(self, element: str) -> bytes:
        return element.encode()


def _ctx(
    partitions: list[int] | None = None, subtask: int = 0, parallelism: int = 1
) -> KafkaSinkContext:
    parts = partitions or [0, 1, 2]
    return KafkaSinkContext(subtask, parallelism, lambda _topic: parts)


def _schema(**kw: Any) -> KafkaRecordSerializationSchema[Any]:
    b = KafkaRecordSerializationSchema.builder().set_topic(kw.pop("topic", "out"))
    b.set_value_serialization_schema(kw.pop("value", Utf8()))
    for name, value in kw.items():
        getattr(b, f"set_{name}")(value)
    return b.build()


def _partition(schema: KafkaRecordSerializationSchema[Any], element: str) -> int | None:
    record = schema.serialize(element, _ctx(), None)
    assert record is not None
    return record.partition


def _sink(**kw: Any) -> Any:
    b = KafkaSink.builder().set_bootstrap_servers("localhost:9092").set_record_serializer(_schema())
    for name, value in kw.items():
        getattr(b, f"set_{name}")(value)
    return b


# -- record serialization schema --------------------------------------------------------


def test_schema_needs_topic_and_value_serializer() -> None:
    with pytest.raises(ConfigError, match=r"set_topic\(name\) or set_topic_selector"):
        KafkaRecordSerializationSchema.builder().set_value_serialization_schema(Utf8()).build()
    with pytest.raises(ConfigError, match=r"set_value_serialization_schema"):
        KafkaRecordSerializationSchema.builder().set_topic("t").build()
    with pytest.raises(ConfigError, match="use one"):
        (
            KafkaRecordSerializationSchema.builder()
            .set_topic("t")
            .set_value_serialization_schema(Utf8())
            .set_kafka_value_serializer(StringSerializer())
            .build()
        )


def test_schema_serializes_key_value_headers_timestamp() -> None:
    schema = (
        KafkaRecordSerializationSchema.builder()
        .set_topic_selector(lambda e: f"topic-{e['kind']}")
        .set_value_serialization_schema(lambda e: e["v"].encode())
        .set_key_serialization_schema(lambda e: e["k"].encode())
        .set_header_provider(lambda e: [("trace", e["trace"].encode())])
        .set_timestamp_extractor(lambda e: e["ts"])
        .build()
    )
    sub = schema.for_subtask()
    sub.open(_ctx())
    rec = sub.serialize(
        {"kind": "a", "v": "val", "k": "key", "trace": "t1", "ts": 1234}, _ctx(), 99
    )
    assert rec == ProducerRecord("topic-a", b"val", b"key", None, 1234, [("trace", b"t1")])


def test_schema_uses_event_time_unless_extractor() -> None:
    sub = _schema().for_subtask()
    sub.open(_ctx())
    assert sub.serialize("x", _ctx(), 5000) == ProducerRecord("out", b"x", None, None, 5000, None)
    assert sub.serialize("x", _ctx(), None) == ProducerRecord("out", b"x")


def test_confluent_kafka_serializers_get_the_topic() -> None:
    seen: list[Any] = []

    def value_serializer(obj: Any, ctx: Any) -> bytes:
        seen.append((ctx.topic, str(ctx.field)))
        return str(obj).encode()

    schema = (
        KafkaRecordSerializationSchema.builder()
        .set_topic("orders")
        .set_kafka_value_serializer(value_serializer)
        .set_kafka_key_serializer(StringSerializer())
        .build()
    )
    sub = schema.for_subtask()
    sub.open(_ctx())
    rec = sub.serialize("k1", _ctx(), None)
    assert rec is not None and rec.value == b"k1" and rec.key == b"k1"
    assert seen == [("orders", "value")]


# -- partitioners -------------------------------------------------------------------------


def test_fixed_partitioner_subtask_i_to_partition_i_mod_n() -> None:
    chosen = []
    for subtask in range(5):
        p = FlinkFixedPartitioner()
        p.open(subtask, 5)
        chosen.append(p.partition("r", None, b"v", "t", [0, 1, 2]))
    assert chosen == [0, 1, 2, 0, 1]


def test_fixed_partitioner_requires_open() -> None:
    with pytest.raises(RuntimeError, match="before open"):
        FlinkFixedPartitioner().partition("r", None, b"v", "t", [0])


def test_round_robin_cycles_from_subtask_offset() -> None:
    p = RoundRobinPartitioner()
    p.open(1, 2)
    assert [p.partition("r", None, None, "t", [0, 1, 2]) for _ in range(4)] == [1, 2, 0, 1]


def test_partitioner_copy_per_subtask_and_function_partitioner() -> None:
    schema = _schema(partitioner=RoundRobinPartitioner())
    a, b = schema.for_subtask(), schema.for_subtask()
    a.open(_ctx(subtask=0, parallelism=2))
    b.open(_ctx(subtask=1, parallelism=2))
    assert [_partition(a, "x") for _ in range(3)] == [0, 1, 2]
    assert [_partition(b, "x") for _ in range(3)] == [1, 2, 0]

    by_len = _schema(partitioner=lambda rec, key, value, topic, parts: parts[len(rec) % len(parts)])
    sub = by_len.for_subtask()
    sub.open(_ctx())
    assert _partition(sub, "abcd") == 1


def test_named_partitioners_registered_through_hook() -> None:
    host = build_plugin_host(autoload=False, plugins=[plugin])
    assert {"default", "fixed", "round-robin"} <= set(host.names("partitioner"))
    schema = (
        KafkaRecordSerializationSchema.builder()
        .set_topic("t")
        .set_value_serialization_schema(Utf8())
        .set_partitioner("fixed", plugin_host=host)
        .build()
    )
    assert isinstance(getattr(schema, "partitioner", None), FlinkFixedPartitioner)
    with pytest.raises(UnknownNameError, match="fixed"):
        KafkaRecordSerializationSchema.builder().set_partitioner("nope", plugin_host=host)


def test_third_party_partitioner_by_name() -> None:
    from streamplug.plugins import PartitionerSpec, hookimpl

    class Region:
        @hookimpl
        def streamplug_register_partitioners(self, register: Any) -> None:
            register(PartitionerSpec("first", lambda: lambda r, k, v, t, parts: parts[0]))

    host = build_plugin_host(autoload=False, plugins=[plugin, Region()])
    p = (
        KafkaRecordSerializationSchema.builder()
        .set_partitioner("first", plugin_host=host)
        ._partitioner
    )
    assert isinstance(p, FunctionPartitioner)
    assert p.partition("r", None, None, "t", [4, 5]) == 4


# -- sink builder ----------------------------------------------------------------------------


def test_sink_builder_errors_name_the_call() -> None:
    with pytest.raises(ConfigError, match=r"set_bootstrap_servers"):
        KafkaSink.builder().set_record_serializer(_schema()).build()
    with pytest.raises(ConfigError, match=r"set_record_serializer"):
        KafkaSink.builder().set_bootstrap_servers("h:1").build()
    with pytest.raises(ConfigError, match=r"set_transactional_id_prefix"):
        _sink(delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE).build()
    with pytest.raises(ConfigError, match="acks"):
        _sink(delivery_guarantee="at-least-once").set_property("acks", "1").build()
    with pytest.raises(ConfigError, match=r"transactional\.id"):
        _sink().set_property("transactional.id", "x")


def test_default_guarantee_none_and_safe_defaults() -> None:
    sink = _sink().build()
    assert sink.delivery_guarantee is DeliveryGuarantee.NONE
    assert sink.create_committer(sink_context()) is None
    alo = _config.producer_properties({}, DeliveryGuarantee.AT_LEAST_ONCE)
    assert alo["acks"] == "all" and alo["enable.idempotence"] == "true"
    assert alo["partitioner"] == "murmur2_random"
    assert "acks" not in _config.producer_properties({}, DeliveryGuarantee.NONE)


def test_exactly_once_needs_checkpointing() -> None:
    sink = _sink(delivery_guarantee="exactly-once", transactional_id_prefix="p").build()
    with pytest.raises(ConfigError, match=r"enable_checkpointing"):
        sink.create_committer(sink_context(checkpoint_interval_ms=None))


def test_transaction_timeout_validation_names_numbers_and_fix() -> None:
    sink = (
        _sink(delivery_guarantee="exactly-once", transactional_id_prefix="p")
        .set_property("transaction.timeout.ms", "60000")
        .build()
    )
    ctx = sink_context(checkpoint_interval_ms=30_000, checkpoint_timeout_ms=60_000)
    with pytest.raises(ConfigError) as err:
        sink.create_committer(ctx)
    msg = str(err.value)
    assert "transaction.timeout.ms=60000" in msg and "30000 ms" in msg and "60000 ms" in msg
    assert "90000 ms" in msg and "set_property('transaction.timeout.ms', '150000')" in msg
    # Without a setting the default is derived from the cadence, capped at the broker max.
    assert _config.transaction_timeout_ms({}, ctx, 30_000, 60_000) == 150_000
    with pytest.raises(ConfigError, match=r"transaction\.max\.timeout\.ms"):
        _config.transaction_timeout_ms({}, ctx, 500, 900_000)


def test_properties_split_between_clients() -> None:
    props = {
        "bootstrap.servers": "h:1",
        "security.protocol": "SASL_SSL",
        "sasl.password": "s3cret",
        "linger.ms": "20",
        "register.producer.metrics": "false",
        "commit.log.topic": "c",
    }
    assert _config.connection_properties(props) == {
        "bootstrap.servers": "h:1",
        "security.protocol": "SASL_SSL",
        "sasl.password": "s3cret",
    }
    producer = _config.producer_properties(props, DeliveryGuarantee.AT_LEAST_ONCE)
    assert producer["linger.ms"] == "20" and "commit.log.topic" not in producer


def test_repr_and_describe_hide_secrets() -> None:
    sink = _sink().set_property("sasl.password", "hunter2").build()
    assert "hunter2" not in repr(sink)
    assert "hunter2" not in str(sink.describe())


def test_committable_serializer_roundtrip_and_validation() -> None:
    c = KafkaCommittable("p-0", "tok", "p.streamplug-commits", 7)
    ser = KafkaCommittableSerializer()
    assert ser.deserialize(ser.version, ser.serialize(c)) == c
    with pytest.raises(ValueError, match="version 2"):
        ser.deserialize(2, ser.serialize(c))
    with pytest.raises(ValueError):
        KafkaCommittable("p-0", "", "t", 0)


# -- connector factory and legacy facade --------------------------------------------------------


def test_kafka_sink_connector_from_options() -> None:
    from streamplug.api.serde import FormatSpec
    from streamplug.plugin import hookimpl
    from streamplug.plugin.options import OptionsError
    from streamplug_kafka_sink.plugin import KafkaSinkOptions, kafka_sink_from_options

    class Fmt:
        @hookimpl
        def streamplug_register_formats(self, register: Any) -> None:
            register(FormatSpec("utf8", serializer=lambda **_: Utf8()))

    host = build_plugin_host(autoload=False, plugins=[plugin, Fmt()])
    spec = host.connector("kafka", "sink")
    assert spec.options is KafkaSinkOptions
    sink = kafka_sink_from_options(
        plugin_host=host,
        topic="out",
        bootstrap_servers="h:1",
        format="utf8",
        delivery_guarantee="exactly-once",
        transactional_id_prefix="job",
        partitioner="round-robin",
        properties={"linger.ms": "7"},
    )
    assert isinstance(sink, KafkaSink)
    assert sink.delivery_guarantee is DeliveryGuarantee.EXACTLY_ONCE
    assert sink.transactional_id == "job-0" and sink.commit_log_topic == "job.streamplug-commits"
    assert sink.properties["linger.ms"] == "7"
    with pytest.raises(OptionsError, match="unknown key 'bogus'"):
        kafka_sink_from_options(
            plugin_host=host, topic="o", bogus=1, bootstrap_servers="h:1", format="utf8"
        )
    # The Flink SQL spellings of the old factory are one vocabulary now: snake_case.
    with pytest.raises(OptionsError, match="did you mean 'delivery_guarantee'"):
        kafka_sink_from_options(
            plugin_host=host,
            topic="o",
            bootstrap_servers="h:1",
            format="utf8",
            **{"delivery-guarantee": "none"},
        )
    with pytest.raises(OptionsError, match="missing key 'transactional_id_prefix'"):
        kafka_sink_from_options(
            plugin_host=host,
            topic="o",
            bootstrap_servers="h:1",
            format="utf8",
            delivery_guarantee="exactly-once",
        )


def test_legacy_producer_warns_once_and_builds_a_sink() -> None:
    legacy._warned.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = FlinkKafkaProducer("h:1", "topic", Utf8(), custom_partitioner=FlinkFixedPartitioner())
        b = FlinkKafkaProducer(
            "topic",
            Utf8(),
            {"bootstrap.servers": "h:2", "transactional.id": "legacy"},
            semantic=Semantic.EXACTLY_ONCE,
        )
    deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert len(deprecations) == 1 and "KafkaSink.builder()" in str(deprecations[0].message)
    assert (
        a.sink.bootstrap_servers == "h:1"
        and a.delivery_guarantee is DeliveryGuarantee.AT_LEAST_ONCE
    )
    assert b.sink.transactional_id == "legacy-0"
    with pytest.raises(ConfigError, match=r"bootstrap\.servers"):
        FlinkKafkaProducer("topic", Utf8(), {})


def test_kafka_sink_connector_from_pipeline_file_keys() -> None:
    from streamplug.api.serde import FormatSpec
    from streamplug.plugin import hookimpl

    class Fmt:
        @hookimpl
        def streamplug_register_formats(self, register: Any) -> None:
            register(FormatSpec("utf8", serializer=lambda **_: Utf8()))

    host = build_plugin_host(autoload=False, plugins=[plugin, Fmt()])
    spec = host.connector("kafka", "sink")
    table = {
        "bootstrap_servers": "h:1",
        "topic": "out",
        "format": "utf8",
        "delivery_guarantee": "at-least-once",
        "partitioner": "fixed",
        "properties": {"linger.ms": 3, "commit.log.topic": "c"},
    }
    assert spec.options is not None
    sink = spec.factory(host.check_options(spec.options, table), host)
    assert sink.delivery_guarantee is DeliveryGuarantee.AT_LEAST_ONCE
    assert sink.properties == {"linger.ms": "3", "commit.log.topic": "c"}
    assert isinstance(getattr(sink.serializer, "partitioner", None), FlinkFixedPartitioner)
