"""``KafkaSource`` and its builder, with PyFlink's names.

>>> source = (KafkaSource.builder()
...           .set_bootstrap_servers("localhost:9092")
...           .set_topics("orders")
...           .set_group_id("orders-reader")
...           .set_starting_offsets(KafkaOffsetsInitializer.earliest())
...           .set_value_only_deserializer(SimpleStringSchema())
...           .build())
>>> stream = env.from_source(source, WatermarkStrategy.for_monotonous_timestamps(), "orders")
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from streamplug.api.context import ReaderContext, SplitEnumeratorContext
from streamplug.api.serde import DeserializationSchema
from streamplug.api.source import Boundedness, Source
from streamplug.api.state import StateSerializer
from streamplug.errors import ConfigError
from streamplug.secrets import redact
from streamplug_kafka_source import _config
from streamplug_kafka_source.deserializer import KafkaRecordDeserializationSchema
from streamplug_kafka_source.enumerator._admin import AdminOffsetsRetriever
from streamplug_kafka_source.enumerator.enumerator import KafkaSourceEnumerator
from streamplug_kafka_source.enumerator.initializer import (
    CommittedOffsets,
    KafkaOffsetsInitializer,
)
from streamplug_kafka_source.enumerator.state import (
    KafkaSourceEnumState,
    KafkaSourceEnumStateSerializer,
)
from streamplug_kafka_source.enumerator.subscriber import (
    KafkaSubscriber,
    PartitionSetSubscriber,
    TopicListSubscriber,
    TopicPatternSubscriber,
    compile_pattern,
)
from streamplug_kafka_source.reader.bad_records import BadRecordPolicy
from streamplug_kafka_source.reader.reader import KafkaSourceReader
from streamplug_kafka_source.split.serializer import KafkaPartitionSplitSerializer
from streamplug_kafka_source.split.split import KafkaPartitionSplit, KafkaTopicPartition

__all__ = ["KafkaSource", "KafkaSourceBuilder"]

log = logging.getLogger(__name__)

# Settings that make a client connect securely, and the security plugin's documented switch
# for its credential check (docs/security.md), which a build-time check must not trigger.
_SECURITY_PREFIXES = ("security.", "sasl.", "ssl.")
_VERIFY_CREDENTIALS = "streamplug.security.verify-credentials"


def _property_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class KafkaSource(Source[KafkaPartitionSplit, KafkaSourceEnumState]):
    """Reads Kafka partitions as splits: one enumerator assigns them, one reader per
    subtask reads its share over a single consumer. Build it with ``KafkaSource.builder()``."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        subscriber: KafkaSubscriber,
        deserializer: KafkaRecordDeserializationSchema[Any],
        starting_offsets: KafkaOffsetsInitializer,
        stopping_offsets: KafkaOffsetsInitializer | None,
        boundedness: Boundedness,
        properties: Mapping[str, str],
        bad_record_policy: BadRecordPolicy,
    ) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._subscriber = subscriber
        self._deserializer = deserializer
        self._starting = starting_offsets
        self._stopping = stopping_offsets
        self._boundedness = boundedness
        self._properties = dict(properties)
        self._group_id = self._properties.get("group.id") or None
        self._bad_record_policy = bad_record_policy
        self._settings = _config.SourceSettings.parse(
            self._properties, self._group_id, boundedness is Boundedness.BOUNDED
        )

    @staticmethod
    def builder() -> KafkaSourceBuilder:
        return KafkaSourceBuilder()

    @staticmethod
    def from_options(**options: Any) -> KafkaSource:
        """The keyword form (and the ``kafka`` connector of config pipelines); see
        ``streamplug_kafka_source.plugin.kafka_source_from_options``."""
        from streamplug_kafka_source.plugin import kafka_source_from_options

        return kafka_source_from_options(**options)

    # -- facts ---------------------------------------------------------------------------

    def get_boundedness(self) -> Boundedness:
        return self._boundedness

    @property
    def properties(self) -> dict[str, str]:
        """The configured properties (a copy; may hold secrets: do not log it)."""
        return dict(self._properties)

    @property
    def settings(self) -> _config.SourceSettings:
        return self._settings

    def describe(self) -> Mapping[str, Any]:
        return {
            "type": "KafkaSource",
            "bootstrap.servers": self._bootstrap_servers,
            "subscription": self._subscriber.describe(),
            "group.id": self._group_id,
            "starting offsets": str(self._starting),
            "stopping offsets": None if self._stopping is None else str(self._stopping),
            "boundedness": self._boundedness.value,
            "deserializer": self._deserializer.format_name,
            "bad records": self._bad_record_policy.action.value,
            "properties": redact(self._properties),
        }

    def __repr__(self) -> str:
        return f"KafkaSource({self._subscriber.describe()} @ {self._bootstrap_servers})"

    # -- client properties ---------------------------------------------------------------

    def _client_id(self, suffix: str) -> str:
        return f"{self._settings.client_id_prefix}-{suffix}"

    def consumer_properties(self, context: ReaderContext) -> dict[str, str]:
        """The reader consumer's librdkafka properties, with the overrides the source
        enforces, before the ``streamplug_configure_client`` hooks ran."""
        props = _config.client_properties(self._properties)
        for key, value in {**_config.CLIENT_DEFAULTS, **_config.CONSUMER_DEFAULTS}.items():
            props.setdefault(key, value)
        props["bootstrap.servers"] = self._bootstrap_servers
        # librdkafka wants a group even for assign-only consumers; without the user's,
        # a private one keeps this reader from touching anybody's offsets.
        props["group.id"] = self._group_id or f"streamplug-kafka-source-{uuid.uuid4().hex}"
        props["client.id"] = self._client_id(str(context.subtask_index))
        reset = self._starting.get_auto_offset_reset_strategy().auto_offset_reset
        user_reset = props.get("auto.offset.reset")
        if user_reset is not None and user_reset != reset:
            log.warning(
                "Kafka source overrides auto.offset.reset=%s with %s: the starting offsets "
                "initializer (%s) decides; use set_starting_offsets(...) to change it",
                user_reset,
                reset,
                self._starting,
            )
        props["auto.offset.reset"] = reset
        # Bounded splits finish by position, not by end-of-partition events.
        props["enable.partition.eof"] = "false"
        if context.checkpointing_enabled:
            if _config.parse_bool("enable.auto.commit", props.get("enable.auto.commit", "false")):
                log.warning(
                    "Kafka source sets enable.auto.commit=false because checkpointing is on: "
                    "offsets are committed when checkpoints complete (%s)",
                    _config.COMMIT_OFFSETS_ON_CHECKPOINT,
                )
            props["enable.auto.commit"] = "false"
        else:
            props.setdefault("enable.auto.commit", "false")
        if self._settings.register_consumer_metrics:
            props.setdefault("statistics.interval.ms", _config.DEFAULT_STATISTICS_INTERVAL_MS)
        return props

    def admin_properties(self) -> dict[str, str]:
        props = _config.common_properties(self._properties)
        for key, value in {**_config.CLIENT_DEFAULTS, **_config.ADMIN_DEFAULTS}.items():
            props.setdefault(key, value)
        props["bootstrap.servers"] = self._bootstrap_servers
        props["client.id"] = self._client_id("enumerator")
        return props

    def dead_letter_properties(self, subtask_index: int) -> dict[str, str]:
        props = _config.common_properties(self._properties)
        props["bootstrap.servers"] = self._bootstrap_servers
        props["client.id"] = self._client_id(f"dead-letter-{subtask_index}")
        # Every bad record must land in the dead-letter topic exactly as it was read.
        props["acks"] = "all"
        props["enable.idempotence"] = "true"
        return props

    def check_client_settings(self, plugin_host: Any = None) -> None:
        """Run the ``streamplug_configure_client`` hooks of ``plugin_host`` (the run's host;
        without one, a host of the installed plugins) on a copy of the consumer's
        properties, so a setting a plugin refuses (e.g. Kerberos on a librdkafka without
        GSSAPI) fails when the source is built rather than when the job starts.

        Nothing connects: the security plugin's one-time credential check is switched off
        for the copy (it runs when the job's clients are configured), since a build must not
        wait on brokers that may not be reachable from where the job is defined."""
        if plugin_host is None:
            from streamplug import plugins  # looked up per call: tests swap the host builder

            plugin_host = plugins.build_plugin_host()

        props: dict[str, Any] = _config.client_properties(self._properties)
        props["bootstrap.servers"] = self._bootstrap_servers
        props.setdefault("group.id", "streamplug-kafka-source-build-check")
        if any(k.startswith(_SECURITY_PREFIXES) for k in props):
            props.setdefault(_VERIFY_CREDENTIALS, "false")
        plugin_host.configure_client(props, role="consumer", connector="kafka")

    def _read_committed(self) -> bool:
        # librdkafka's default isolation level is read_committed.
        return str(self._properties.get("isolation.level", "read_committed")) == "read_committed"

    # -- Source --------------------------------------------------------------------------

    def create_enumerator(
        self, context: SplitEnumeratorContext[KafkaPartitionSplit]
    ) -> KafkaSourceEnumerator:
        return self._enumerator(context, None)

    def restore_enumerator(
        self, context: SplitEnumeratorContext[KafkaPartitionSplit], checkpoint: KafkaSourceEnumState
    ) -> KafkaSourceEnumerator:
        return self._enumerator(context, checkpoint)

    def _enumerator(
        self,
        context: SplitEnumeratorContext[KafkaPartitionSplit],
        state: KafkaSourceEnumState | None,
    ) -> KafkaSourceEnumerator:
        admin = dict(
            context.configure_client(self.admin_properties(), role="admin", connector="kafka")
        )
        group_id, read_committed = self._group_id, self._read_committed()
        timeout_s = self._settings.api_timeout_ms / 1000

        def client_factory() -> AdminOffsetsRetriever:
            return AdminOffsetsRetriever(admin, group_id, read_committed, timeout_s)

        return KafkaSourceEnumerator(
            context,
            self._subscriber,
            self._starting,
            self._stopping,
            client_factory,
            self._settings.discovery_interval_ms,
            state,
        )

    def create_reader(self, context: ReaderContext) -> KafkaSourceReader:
        consumer = context.configure_client(
            self.consumer_properties(context), role="consumer", connector="kafka"
        )
        dead_letter = None
        if self._bad_record_policy.dead_letter_topic is not None:
            dead_letter = context.configure_client(
                self.dead_letter_properties(context.subtask_index),
                role="producer",
                connector="kafka",
            )
        return KafkaSourceReader(
            context,
            consumer,
            self._deserializer,
            bad_record_policy=self._bad_record_policy,
            dead_letter_properties=dead_letter,
            commit_offsets_on_checkpoint=self._settings.commit_offsets_on_checkpoint,
            register_consumer_metrics=self._settings.register_consumer_metrics,
            poll_max_records=self._settings.poll_max_records,
            poll_timeout_ms=self._settings.poll_timeout_ms,
            splits_can_finish=self._stopping is not None,
            subscribed_topics=self._subscriber.named_topics(),
        )

    def get_split_serializer(self) -> StateSerializer[KafkaPartitionSplit]:
        return KafkaPartitionSplitSerializer()

    def get_enumerator_checkpoint_serializer(self) -> StateSerializer[KafkaSourceEnumState]:
        return KafkaSourceEnumStateSerializer()


class KafkaSourceBuilder:
    """Collects a ``KafkaSource``'s settings; ``build()`` checks them. Every setter returns
    the builder, so calls chain as in PyFlink."""

    def __init__(self) -> None:
        self._bootstrap_servers: str | None = None
        self._subscriber: KafkaSubscriber | None = None
        self._subscription_call: str | None = None
        self._deserializer: KafkaRecordDeserializationSchema[Any] | None = None
        self._starting: KafkaOffsetsInitializer = KafkaOffsetsInitializer.earliest()
        self._stopping: KafkaOffsetsInitializer | None = None
        self._boundedness = Boundedness.CONTINUOUS_UNBOUNDED
        self._properties: dict[str, str] = {}
        self._bad_record_policy: BadRecordPolicy | None = None
        self._plugin_host: Any = None

    def set_plugin_host(self, plugin_host: Any) -> KafkaSourceBuilder:
        """The run's ``streamplug.plugin.PluginHost``, whose client-configuration hooks
        ``build()`` checks the settings with (the ``kafka`` connector of a pipeline passes
        its run's). Without one, ``build()`` uses a host of the installed plugins."""
        self._plugin_host = plugin_host
        return self

    def set_bootstrap_servers(self, bootstrap_servers: str) -> KafkaSourceBuilder:
        self._bootstrap_servers = bootstrap_servers
        return self

    def _subscribe(self, call: str, subscriber: KafkaSubscriber) -> KafkaSourceBuilder:
        if self._subscription_call is not None and self._subscription_call != call:
            raise ConfigError(
                f"the source already reads by {self._subscription_call}(); {call}() would "
                "replace it: use exactly one of set_topics, set_topic_pattern, set_partitions",
                option="subscription",
            )
        self._subscription_call = call
        self._subscriber = subscriber
        return self

    def set_topics(self, *topics: str | Iterable[str]) -> KafkaSourceBuilder:
        """Read these topics (``set_topics("a", "b")`` or ``set_topics(["a", "b"])``)."""
        names: list[str] = []
        for topic in topics:
            names.extend([topic] if isinstance(topic, str) else list(topic))
        bad = [t for t in names if not isinstance(t, str) or not t]
        if not names or bad:
            raise ConfigError(
                f"set_topics() needs one or more non-empty topic names, got {list(topics)!r}",
                option="topics",
            )
        return self._subscribe("set_topics", TopicListSubscriber(tuple(dict.fromkeys(names))))

    def set_topic_pattern(self, topic_pattern: str | re.Pattern[str]) -> KafkaSourceBuilder:
        """Read every topic whose whole name matches the regular expression (topics created
        later are found with ``partition.discovery.interval.ms``)."""
        return self._subscribe(
            "set_topic_pattern", TopicPatternSubscriber(compile_pattern(topic_pattern))
        )

    def set_partitions(self, partitions: Iterable[KafkaTopicPartition]) -> KafkaSourceBuilder:
        chosen = frozenset(partitions)
        if not chosen or not all(isinstance(p, KafkaTopicPartition) for p in chosen):
            raise ConfigError(
                "set_partitions() needs a non-empty set of KafkaTopicPartition(topic, partition)",
                option="partitions",
            )
        return self._subscribe("set_partitions", PartitionSetSubscriber(chosen))

    def set_group_id(self, group_id: str) -> KafkaSourceBuilder:
        return self.set_property("group.id", group_id)

    def set_client_id_prefix(self, prefix: str) -> KafkaSourceBuilder:
        return self.set_property(_config.CLIENT_ID_PREFIX, prefix)

    def set_starting_offsets(self, initializer: KafkaOffsetsInitializer) -> KafkaSourceBuilder:
        self._starting = _check_initializer(initializer, "set_starting_offsets")
        return self

    def set_bounded(self, stopping_offsets: KafkaOffsetsInitializer) -> KafkaSourceBuilder:
        """Stop every partition at these offsets and finish the job when all are read."""
        self._stopping = _check_initializer(stopping_offsets, "set_bounded")
        self._boundedness = Boundedness.BOUNDED
        return self

    def set_unbounded(self, stopping_offsets: KafkaOffsetsInitializer) -> KafkaSourceBuilder:
        """Stop every partition at these offsets but stay a streaming source."""
        self._stopping = _check_initializer(stopping_offsets, "set_unbounded")
        self._boundedness = Boundedness.CONTINUOUS_UNBOUNDED
        return self

    def set_deserializer(
        self, deserializer: KafkaRecordDeserializationSchema[Any]
    ) -> KafkaSourceBuilder:
        if not isinstance(deserializer, KafkaRecordDeserializationSchema):
            raise ConfigError(
                f"set_deserializer() takes a KafkaRecordDeserializationSchema, got "
                f"{type(deserializer).__name__}; for a value-only schema call "
                "set_value_only_deserializer(...)",
                option="deserializer",
            )
        self._deserializer = deserializer
        return self

    def set_value_only_deserializer(
        self, schema: DeserializationSchema[Any] | Any
    ) -> KafkaSourceBuilder:
        """Read only record values, with a ``DeserializationSchema`` or a confluent-kafka
        ``Deserializer``."""
        self._deserializer = KafkaRecordDeserializationSchema.value_only(schema)
        return self

    def set_bad_record_policy(self, policy: BadRecordPolicy) -> KafkaSourceBuilder:
        """What to do with a record that fails to deserialize (default: fail the job)."""
        self._bad_record_policy = policy
        return self

    def set_property(self, key: str, value: Any) -> KafkaSourceBuilder:
        if key == "bootstrap.servers":
            return self.set_bootstrap_servers(str(value))
        self._properties[key] = _property_value(value)
        return self

    def set_properties(self, properties: Mapping[str, Any]) -> KafkaSourceBuilder:
        for key, value in properties.items():
            self.set_property(key, value)
        return self

    def build(self) -> KafkaSource:
        if not self._bootstrap_servers:
            raise ConfigError(
                "bootstrap servers are not set: call set_bootstrap_servers('host:9092')",
                option="bootstrap.servers",
            )
        if self._subscriber is None:
            raise ConfigError(
                "the source has no topics to read: call set_topics(...), "
                "set_topic_pattern(...) or set_partitions(...)",
                option="subscription",
            )
        if self._deserializer is None:
            raise ConfigError(
                "the source has no deserializer: call set_value_only_deserializer(schema) "
                "or set_deserializer(KafkaRecordDeserializationSchema...)",
                option="deserializer",
            )
        group_id = self._properties.get("group.id")
        for what, init in (("starting", self._starting), ("stopping", self._stopping)):
            if isinstance(init, CommittedOffsets) and not group_id:
                raise ConfigError(
                    f"a group id is required when the {what} offsets are the committed "
                    "offsets: call set_group_id(...)",
                    option="group.id",
                )
        policy = self._bad_record_policy
        if policy is None:
            policy = BadRecordPolicy.parse(
                self._properties.get(_config.BAD_RECORD_POLICY, "fail"),
                self._properties.get(_config.DEAD_LETTER_TOPIC),
            )
        source = KafkaSource(
            bootstrap_servers=self._bootstrap_servers,
            subscriber=self._subscriber,
            deserializer=self._deserializer,
            starting_offsets=self._starting,
            stopping_offsets=self._stopping,
            boundedness=self._boundedness,
            properties=self._properties,
            bad_record_policy=policy,
        )
        source.check_client_settings(self._plugin_host)
        return source


def _check_initializer(value: Any, call: str) -> KafkaOffsetsInitializer:
    if not isinstance(value, KafkaOffsetsInitializer):
        raise ConfigError(
            f"{call}() takes a KafkaOffsetsInitializer (e.g. KafkaOffsetsInitializer.latest()), "
            f"got {type(value).__name__}",
            option=call,
        )
    return value
