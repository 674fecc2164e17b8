"""The builder, the properties the source enforces, the plugin's registrations, the
offsets initializers and the deprecated consumer facade — everything that needs no broker."""

from __future__ import annotations

import re
import warnings
from collections.abc import Collection, Mapping
from typing import Any

import pytest

from streamplug.api import DeserializationSchema
from streamplug.api.source import Boundedness
from streamplug.errors import ConfigError, UnknownNameError
from streamplug.plugins import OffsetsInitializerSpec, build_plugin_host, hookimpl
from streamplug.testing import reader_context
from streamplug_kafka_source import (
    BadRecordPolicy,
    FlinkKafkaConsumer,
    KafkaOffsetResetStrategy,
    KafkaOffsetsInitializer,
    KafkaRecord,
    KafkaRecordDeserializationSchema,
    KafkaSource,
    KafkaTopicPartition,
)
from streamplug_kafka_source import legacy as legacy_module
from streamplug_kafka_source._compat import HAS_FETCH_QUEUE_BACKOFF
from streamplug_kafka_source.plugin import kafka_source_from_options, resolve_initializer

TP0, TP1 = KafkaTopicPartition("t", 0), KafkaTopicPartition("t", 1)


class Utf8(DeserializationSchema[str]):
    def deserialize(self, message: bytes) -> str:
        return message.decode()


def builder() -> Any:
    return (
        KafkaSource.builder()
        .set_bootstrap_servers("k:9092")
        .set_topics("t")
        .set_value_only_deserializer(Utf8())
    )


# -- builder ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strip", "message"),
    [
        ("bootstrap", r"call set_bootstrap_servers\('host:9092'\)"),
        ("topics", r"call set_topics\(...\), set_topic_pattern\(...\) or set_partitions\(...\)"),
        ("deserializer", r"call set_value_only_deserializer\(schema\)"),
    ],
)
def test_build_names_the_missing_call(strip: str, message: str) -> None:
    b = KafkaSource.builder()
    if strip != "bootstrap":
        b.set_bootstrap_servers("k:9092")
    if strip != "topics":
        b.set_topics("t")
    if strip != "deserializer":
        b.set_value_only_deserializer(Utf8())
    with pytest.raises(ConfigError, match=message):
        b.build()


def test_committed_offsets_need_a_group_id() -> None:
    b = builder().set_starting_offsets(KafkaOffsetsInitializer.committed_offsets())
    with pytest.raises(ConfigError, match=r"group id is required .* call set_group_id"):
        b.build()
    assert b.set_group_id("g").build().properties["group.id"] == "g"


def test_only_one_subscription_kind_and_patterns_are_checked() -> None:
    with pytest.raises(ConfigError, match="already reads by set_topics"):
        builder().set_topic_pattern("t.*")
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        KafkaSource.builder().set_topic_pattern("(")
    with pytest.raises(ConfigError, match="non-empty topic names"):
        KafkaSource.builder().set_topics()
    with pytest.raises(ConfigError, match="KafkaOffsetsInitializer"):
        builder().set_bounded("latest")


def test_bounded_unbounded_and_describe_never_shows_secrets() -> None:
    source = (
        builder()
        .set_bounded(KafkaOffsetsInitializer.latest())
        .set_property("sasl.password", "hunter2")
        .build()
    )
    assert source.get_boundedness() is Boundedness.BOUNDED
    assert "hunter2" not in repr(source.describe())
    unbounded = builder().set_unbounded(KafkaOffsetsInitializer.latest()).build()
    assert unbounded.get_boundedness() is Boundedness.CONTINUOUS_UNBOUNDED


# -- the properties the source enforces --------------------------------------------------------


def test_consumer_properties_carry_flinks_overrides_and_the_fetch_tuning() -> None:
    source = (
        builder()
        .set_group_id("g")
        .set_client_id_prefix("app")
        .set_starting_offsets(KafkaOffsetsInitializer.latest())
        .set_properties(
            {
                "auto.offset.reset": "earliest",
                "enable.auto.commit": True,
                "value.deserializer": "org.apache.kafka.common.serialization.StringDeserializer",
                "partition.discovery.interval.ms": 1000,
                "fetch.queue.backoff.ms": "50",
            }
        )
        .build()
    )
    props = source.consumer_properties(reader_context(subtask_index=3, checkpointing=True))
    assert props["auto.offset.reset"] == "latest"  # from the initializer, as in Flink
    assert props["enable.auto.commit"] == "false"  # checkpointing decides commits
    assert props["client.id"] == "app-3"
    assert props["group.id"] == "g"
    assert props["fetch.queue.backoff.ms"] == "50"  # the user's tuning wins
    assert props["queued.min.messages"] == "200000"
    assert "value.deserializer" not in props  # librdkafka always hands out bytes
    assert "partition.discovery.interval.ms" not in props  # a source option, not librdkafka's
    assert source.settings.discovery_interval_ms == 1000
    no_checkpoints = source.consumer_properties(reader_context(checkpointing=False))
    assert no_checkpoints["enable.auto.commit"] == "true"  # Kafka's own auto-commit, per Flink


def test_defaults_discovery_off_and_commits_only_with_a_group() -> None:
    plain = builder().build()
    assert plain.settings.discovery_interval_ms <= 0
    assert not plain.settings.commit_offsets_on_checkpoint  # no group: nothing to commit to
    props = plain.consumer_properties(reader_context())
    assert props["group.id"].startswith("streamplug-kafka-source-")
    assert props["client.id"] == "streamplug-kafka-source-0"
    # The throughput default, where librdkafka knows the setting (>= 2.3).
    assert props.get("fetch.queue.backoff.ms") == ("10" if HAS_FETCH_QUEUE_BACKOFF else None)
    assert builder().set_group_id("g").build().settings.commit_offsets_on_checkpoint
    bounded = (
        builder()
        .set_property("partition.discovery.interval.ms", "100")
        .set_bounded(KafkaOffsetsInitializer.latest())
        .build()
    )
    assert bounded.settings.discovery_interval_ms <= 0  # off in bounded mode
    with pytest.raises(ConfigError, match="needs a consumer group"):
        builder().set_property("commit.offsets.on.checkpoint", "true").build()
    with pytest.raises(ConfigError, match="must be true or false"):
        builder().set_property("register.consumer.metrics", "maybe").build()


def test_admin_and_dead_letter_clients_get_no_consumer_settings() -> None:
    source = (
        builder()
        .set_group_id("g")
        .set_properties({"security.protocol": "SSL", "fetch.max.bytes": "1000"})
        .build()
    )
    admin = source.admin_properties()
    assert admin["security.protocol"] == "SSL"
    assert "fetch.max.bytes" not in admin and "group.id" not in admin
    assert admin["client.id"] == "g-enumerator"
    dlq = source.dead_letter_properties(2)
    assert dlq["acks"] == "all" and dlq["enable.idempotence"] == "true"
    assert dlq["client.id"] == "g-dead-letter-2"


def test_bad_record_policy_from_properties_or_builder() -> None:
    with pytest.raises(ConfigError, match="needs a topic"):
        BadRecordPolicy.dead_letter("")
    with pytest.raises(ConfigError, match="use one of fail, skip, dead-letter"):
        builder().set_property("bad.record.policy", "ignore").build()
    source = (
        builder()
        .set_properties({"bad.record.policy": "dead-letter", "bad.record.dead.letter.topic": "d"})
        .build()
    )
    assert source.describe()["bad records"] == "dead-letter"


# -- offsets initializers ---------------------------------------------------------------------


class Retriever:
    def committed_offsets(
        self, partitions: Collection[KafkaTopicPartition]
    ) -> dict[KafkaTopicPartition, int]:
        return {TP0: 5} if TP0 in partitions else {}

    def beginning_offsets(
        self, partitions: Collection[KafkaTopicPartition]
    ) -> dict[KafkaTopicPartition, int]:
        return dict.fromkeys(partitions, 1)

    def end_offsets(
        self, partitions: Collection[KafkaTopicPartition]
    ) -> dict[KafkaTopicPartition, int]:
        return dict.fromkeys(partitions, 9)

    def offsets_for_times(
        self, timestamps: Mapping[KafkaTopicPartition, int]
    ) -> dict[KafkaTopicPartition, int | None]:
        return {tp: (4 if tp == TP0 else None) for tp in timestamps}


@pytest.mark.parametrize(
    ("initializer", "expected", "reset"),
    [
        (KafkaOffsetsInitializer.earliest(), {TP0: 1, TP1: 1}, "earliest"),
        (KafkaOffsetsInitializer.latest(), {TP0: 9, TP1: 9}, "latest"),
        (KafkaOffsetsInitializer.committed_offsets("earliest"), {TP0: 5, TP1: 1}, "earliest"),
        (
            KafkaOffsetsInitializer.committed_offsets(KafkaOffsetResetStrategy.LATEST),
            {TP0: 5, TP1: 9},
            "latest",
        ),
        (KafkaOffsetsInitializer.timestamp(1000), {TP0: 4, TP1: 9}, "latest"),
        (KafkaOffsetsInitializer.offsets({TP1: 7}), {TP0: 1, TP1: 7}, "earliest"),
        (KafkaOffsetsInitializer.offsets({"t:0": 3}, "latest"), {TP0: 3, TP1: 9}, "latest"),
    ],
)
def test_initializers_resolve_offsets(
    initializer: KafkaOffsetsInitializer, expected: dict[KafkaTopicPartition, int], reset: str
) -> None:
    assert initializer.get_partition_offsets([TP0, TP1], Retriever()) == expected
    assert initializer.get_auto_offset_reset_strategy().value == reset


def test_initializer_errors_name_the_value_and_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"partitions t-1 .* reset strategy is NONE"):
        KafkaOffsetsInitializer.committed_offsets().get_partition_offsets([TP0, TP1], Retriever())
    with pytest.raises(ConfigError, match="must be >= 0"):
        KafkaOffsetsInitializer.offsets({TP0: -3})
    with pytest.raises(ConfigError, match="no time zone"):
        import datetime

        KafkaOffsetsInitializer.timestamp(datetime.datetime(2024, 1, 1))
    with pytest.raises(ConfigError, match="unknown offset reset strategy 'sometimes'"):
        KafkaOffsetsInitializer.committed_offsets("sometimes")
    assert KafkaOffsetResetStrategy.NONE.auto_offset_reset == "error"


# -- plugin registrations ---------------------------------------------------------------------


def test_plugin_registers_the_kafka_source_and_builtin_initializers() -> None:
    from streamplug_kafka_source import plugin

    host = build_plugin_host(autoload=False)
    host.register(plugin, name="kafka_source_test")
    try:
        source = kafka_source_from_options(
            bootstrap_servers="k:9092",
            topics="a, b",
            group_id="g",
            starting_offsets="timestamp:1700000000000",
            stopping_offsets="latest",
            deserializer=Utf8(),
            plugin_host=host,
        )
        assert source.get_boundedness() is Boundedness.BOUNDED
        assert source.describe()["subscription"] == "topics ['a', 'b']"
        assert source.describe()["starting offsets"] == "timestamp 1700000000000"
        assert set(host.names("offsets initializer")) >= {
            "earliest",
            "latest",
            "committed",
            "timestamp",
            "offsets",
        }
        committed = resolve_initializer({"name": "committed", "reset_strategy": "latest"}, host)
        assert committed.get_auto_offset_reset_strategy() is KafkaOffsetResetStrategy.LATEST
        with pytest.raises(UnknownNameError, match="installed offsets initializers: committed"):
            resolve_initializer("yesterday", host)
        props = kafka_source_from_options(
            plugin_host=host,
            bootstrap_servers="k:9092",
            topics=["a"],
            deserializer=Utf8(),
            group_id="g2",
            properties={"fetch.max.bytes": "1000"},
        )
        assert props.properties == {"group.id": "g2", "fetch.max.bytes": "1000"}
        with pytest.raises(ConfigError, match="unknown key 'x'"):
            kafka_source_from_options(
                plugin_host=host, bootstrap_servers="k", topics="a", deserializer=Utf8(), x=1
            )
        with pytest.raises(ConfigError, match="missing key 'group_id'"):
            kafka_source_from_options(
                plugin_host=host,
                bootstrap_servers="k",
                topics="a",
                deserializer=Utf8(),
                starting_offsets="committed",
            )
    finally:
        host.unregister("kafka_source_test")


class _SecondPartitionOnly(KafkaOffsetsInitializer):
    def __init__(self, offset: int) -> None:
        self.offset = offset

    def get_partition_offsets(
        self, partitions: Collection[KafkaTopicPartition], retriever: Any
    ) -> dict[KafkaTopicPartition, int]:
        return {tp: (self.offset if tp.partition == 1 else 0) for tp in partitions}


class _ThirdPartyInitializers:
    @hookimpl
    def streamplug_register_offsets_initializers(self, register: Any) -> None:
        register(
            OffsetsInitializerSpec(
                "second-partition", lambda offset=0: _SecondPartitionOnly(int(offset))
            )
        )


def test_a_third_party_initializer_is_usable_by_name() -> None:
    from streamplug_kafka_source import plugin

    host = build_plugin_host(autoload=False)
    host.register(plugin, name="kafka_source_test")
    host.register(_ThirdPartyInitializers(), name="third_party", distribution="acme-offsets")
    try:
        source = kafka_source_from_options(
            bootstrap_servers="k:9092",
            topic_pattern="t.*",
            starting_offsets={"name": "second-partition", "offset": 12},
            deserializer=Utf8(),
            plugin_host=host,
        )
        init = source._starting
        assert init.get_partition_offsets([TP0, TP1], Retriever()) == {TP0: 0, TP1: 12}
    finally:
        host.unregister("third_party")
        host.unregister("kafka_source_test")


# -- deserialization schemas and the legacy facade ---------------------------------------------


def test_whole_record_and_confluent_deserializers_are_accepted() -> None:
    from confluent_kafka.serialization import StringDeserializer

    def as_pair(record: KafkaRecord) -> tuple[bytes | None, int]:
        return record.key, record.offset

    source = builder().set_deserializer(KafkaRecordDeserializationSchema.of(as_pair)).build()
    assert source.describe()["deserializer"] == "as_pair"
    confluent = KafkaRecordDeserializationSchema.value_only(StringDeserializer())
    assert confluent.deserialize_values("t", [b"a", b"b"]) == ["a", "b"]  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="set_value_only_deserializer"):
        builder().set_deserializer(Utf8())  # type: ignore[arg-type]


def test_legacy_consumer_warns_once_and_runs_on_kafka_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(legacy_module, "_warned", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        consumer = FlinkKafkaConsumer("t", Utf8(), {"bootstrap.servers": "k:9092", "group.id": "g"})
        FlinkKafkaConsumer(re.compile("t.*"), Utf8(), {"bootstrap.servers": "k:9092"})
    deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert len(deprecations) == 1 and "KafkaSource.builder()" in str(deprecations[0].message)
    assert "committed" in consumer.source.describe()["starting offsets"]  # group offsets first
    consumer.set_start_from_timestamp(1234).set_commit_offsets_on_checkpoints(False)
    assert consumer.source.describe()["starting offsets"] == "timestamp 1234"
    assert not consumer.source.settings.commit_offsets_on_checkpoint
    consumer.set_start_from_specific_offsets({TP1: 6})
    assert consumer.source._starting.get_partition_offsets([TP0, TP1], Retriever()) == {
        TP0: 5,
        TP1: 6,
    }
    with pytest.raises(ConfigError, match=r"bootstrap\.servers"):
        FlinkKafkaConsumer(["t"], Utf8(), {}).source  # noqa: B018 - building raises


def test_client_errors_name_the_problem_but_never_a_secret() -> None:
    source = (
        builder()
        .set_properties({"no.such.property": "1", "sasl.password": "hunter2-secret"})
        .build()
    )
    # A ConfigError: the runtime does not restart what a restart cannot fix.
    with pytest.raises(
        ConfigError, match=r"no configuration property 'no\.such\.property'"
    ) as info:
        source.create_reader(reader_context())
    assert "hunter2-secret" not in str(info.value)
    assert info.value.option == "no.such.property"
