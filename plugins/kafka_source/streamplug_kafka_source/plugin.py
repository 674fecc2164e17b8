"""The plugin's hook implementations: the ``kafka`` source connector and the built-in
offsets initializers, registered through the same hooks a third-party plugin uses."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import attrs

from streamplug.errors import ConfigError
from streamplug.plugin import ConnectorSpec, OffsetsInitializerSpec, PluginHost, hookimpl
from streamplug.plugin.options import component, component_options, option
from streamplug_kafka_source.enumerator.initializer import (
    KafkaOffsetsInitializer,
    _to_epoch_ms,
    initializer_from_options,
)

ResetStrategy = Literal["earliest", "latest", "none"]


@attrs.frozen
class NoOptions:
    """This initializer takes no options."""


@attrs.frozen
class CommittedOptions:
    """The group's committed offsets."""

    reset_strategy: ResetStrategy = option(
        "none",
        doc="where a partition without a committed offset starts ('none': fail)",
        example='reset_strategy = "earliest"',
    )


@attrs.frozen
class TimestampOptions:
    """The first record at or after a time."""

    timestamp: int | str | datetime.datetime = option(
        doc="epoch milliseconds, an ISO-8601 date-time string or a TOML date-time",
        example="timestamp = 2024-06-01T00:00:00Z",
        validator=lambda _self, _field, value: _to_epoch_ms(value),
    )


@attrs.frozen
class OffsetsOptions:
    """Explicit offsets per partition."""

    offsets: dict[str, int] = option(
        doc="offset by 'topic:partition'", example='offsets = { "orders:0" = 42 }'
    )
    reset_strategy: ResetStrategy = option(
        "earliest", doc="where a partition without an offset here starts"
    )


BUILTIN_INITIALIZERS: dict[str, tuple[str, type]] = {
    "earliest": ("the first record still in each partition (default start)", NoOptions),
    "latest": ("the end of each partition when it is discovered", NoOptions),
    "committed": (
        "the group's committed offsets; option reset_strategy=earliest|latest|none",
        CommittedOptions,
    ),
    "timestamp": (
        "the first record at or after option timestamp (epoch ms or ISO-8601)",
        TimestampOptions,
    ),
    "offsets": (
        "explicit offsets, option offsets={'topic:partition': offset}, reset_strategy",
        OffsetsOptions,
    ),
}


@attrs.frozen
class KafkaSourceOptions:
    """The ``kafka`` source of a pipeline file: Flink's KafkaSource, configured by key."""

    bootstrap_servers: str = option(
        doc="host:port[,host:port...] of the Kafka cluster (--bootstrap-servers overrides it)",
        example='bootstrap_servers = "localhost:9092"',
    )
    topics: list[str] | None = option(
        None, doc="topics to read (or topic_pattern, or partitions)", example='topics = ["orders"]'
    )
    topic_pattern: str | None = option(None, doc="a regular expression of topics to read")
    partitions: list[str] | None = option(
        None, doc="fixed partitions as 'topic:partition'", example='partitions = ["orders:0"]'
    )
    group_id: str | None = option(None, doc="the consumer group", example='group_id = "my-job"')
    client_id_prefix: str | None = option(None, doc="prefix of the consumers' client.id")
    starting_offsets: str | dict[str, Any] | None = component(
        "offsets initializer", doc="where each partition starts (default: earliest)"
    )
    stopping_offsets: str | dict[str, Any] | None = component(
        "offsets initializer", doc="where each partition stops; makes the source bounded"
    )
    bounded: bool | None = option(
        None, doc="stop at stopping_offsets (default: bounded when they are given)"
    )
    format: str | None = component(
        "format", doc="the records' value format", direction="deserializer"
    )
    format_options: dict[str, Any] = component_options("format", doc="options of the format")
    bad_record_policy: Literal["fail", "skip", "dead-letter"] | None = option(
        None, doc="what a record that fails to deserialize does (default: fail the job)"
    )
    dead_letter_topic: str | None = option(None, doc="where dead-letter records go")
    properties: dict[str, Any] = option(
        factory=dict,
        doc="librdkafka consumer properties and the source's own, such as "
        "partition.discovery.interval.ms",
    )


def _initializer_factory(name: str) -> Callable[..., KafkaOffsetsInitializer]:
    def factory(**options: Any) -> KafkaOffsetsInitializer:
        return initializer_from_options(name, **options)

    factory.__name__ = f"{name}_offsets"
    return factory


def resolve_initializer(
    spec: KafkaOffsetsInitializer | str | Mapping[str, Any], host: PluginHost | None = None
) -> KafkaOffsetsInitializer:
    """An initializer from an option: an instance, a registered name (``"latest"``),
    ``"timestamp:<ms>"``, ``"committed:<reset>"``, or ``{"name": ..., **options}``, built
    through ``host`` with its options checked against the class it declares."""
    if isinstance(spec, KafkaOffsetsInitializer):
        return spec
    ref: str | dict[str, Any]
    if isinstance(spec, str):
        name, _, arg = spec.partition(":")
        ref = name
        if arg:
            key = {"timestamp": "timestamp", "committed": "reset_strategy"}.get(name)
            if key is None:
                raise ConfigError(
                    f"offsets initializer {spec!r}: only timestamp:<ms> and committed:<reset> "
                    "take an argument; use {'name': ..., ...options} for others",
                    option="starting_offsets",
                )
            ref = {"name": name, key: int(arg) if arg.isdigit() else arg}
    elif isinstance(spec, Mapping):
        ref = dict(spec)
    else:
        raise ConfigError(
            f"cannot read {spec!r} as an offsets initializer: use a name like 'earliest'",
            option="starting_offsets",
        )
    if host is None:
        from streamplug.plugin import build_plugin_host

        host = build_plugin_host()
    initializer = host.build_component("offsets initializer", ref)
    if not isinstance(initializer, KafkaOffsetsInitializer):
        raise ConfigError(
            f"offsets initializer {ref!r} built a {type(initializer).__name__}, not a "
            "KafkaOffsetsInitializer: fix the plugin that registers it",
            option="starting_offsets",
        )
    return initializer


def _listify(value: Any) -> list[str]:
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, Iterable):
        return [str(t) for t in value]
    raise ConfigError(
        f"topics must be a list or a comma-separated string, got {value!r}", option="topics"
    )


def _initializer_name(ref: Any) -> str | None:
    if isinstance(ref, str):
        return ref.partition(":")[0]
    if isinstance(ref, Mapping):
        return str(ref.get("name"))
    return None


def _check_consistent(options: KafkaSourceOptions, deserializer: Any) -> None:
    """What the builder would refuse, said in the keys of a pipeline file."""
    from streamplug.plugin.options import OptionsError

    for key in ("topics", "partitions"):
        value = getattr(options, key)
        if value is not None and not [v for v in value if v.strip()]:
            raise OptionsError((key,), f"{key} is empty: name at least one", 'topics = ["orders"]')
    given = [k for k in ("topics", "topic_pattern", "partitions") if getattr(options, k)]
    if not given:
        raise OptionsError(
            ("topics",),
            "missing key 'topics': the source needs topics, topic_pattern or partitions",
            'topics = ["orders"]',
        )
    if len(given) > 1:
        raise OptionsError(
            (given[1],),
            f"{given[0]} and {given[1]} both choose what to read",
            f"keep one of {' and '.join(given)}",
        )
    if deserializer is None and options.format is None:
        raise OptionsError(
            ("format",), "missing key 'format': how to read the records' values", 'format = "json"'
        )
    for key in ("starting_offsets", "stopping_offsets"):
        if _initializer_name(getattr(options, key)) == "committed" and not options.group_id:
            raise OptionsError(
                ("group_id",),
                f"missing key 'group_id': the committed {key.replace('_', ' ')} are a "
                "consumer group's",
                'group_id = "my-job"',
            )
    if options.bad_record_policy == "dead-letter" and not options.dead_letter_topic:
        raise OptionsError(
            ("dead_letter_topic",),
            "missing key 'dead_letter_topic': bad_record_policy = \"dead-letter\" needs a topic",
            'dead_letter_topic = "orders-dlq"',
        )


def kafka_source(options: KafkaSourceOptions, host: PluginHost, deserializer: Any = None) -> Any:
    """The ``kafka`` source connector: a ``KafkaSource`` from its checked options, with the
    format and offsets initializers they name built through ``host``."""
    from streamplug_kafka_source.enumerator.initializer import _as_tp
    from streamplug_kafka_source.reader.bad_records import BadRecordPolicy
    from streamplug_kafka_source.source import KafkaSource

    _check_consistent(options, deserializer)
    builder = KafkaSource.builder().set_plugin_host(host)
    builder.set_bootstrap_servers(options.bootstrap_servers)
    builder.set_properties(dict(options.properties))
    if options.topics is not None:
        builder.set_topics(list(options.topics))
    if options.topic_pattern is not None:
        builder.set_topic_pattern(options.topic_pattern)
    if options.partitions is not None:
        builder.set_partitions({_as_tp(p) for p in options.partitions})
    if options.group_id is not None:
        builder.set_group_id(options.group_id)
    if options.client_id_prefix is not None:
        builder.set_client_id_prefix(options.client_id_prefix)
    if options.starting_offsets is not None:
        builder.set_starting_offsets(resolve_initializer(options.starting_offsets, host))
    if options.stopping_offsets is not None:
        init = resolve_initializer(options.stopping_offsets, host)
        if options.bounded is None or options.bounded:
            builder.set_bounded(init)
        else:
            builder.set_unbounded(init)
    elif options.bounded:
        builder.set_bounded(KafkaOffsetsInitializer.latest())
    if deserializer is not None:
        if hasattr(deserializer, "deserialize") and not hasattr(deserializer, "deserialize_batch"):
            builder.set_deserializer(deserializer)
        else:
            builder.set_value_only_deserializer(deserializer)
    elif options.format is not None:
        builder.set_value_only_deserializer(
            host.build_format(
                options.format, options.format_options, "deserializer", path=("format_options",)
            )
        )
    if options.bad_record_policy is not None:
        builder.set_bad_record_policy(
            BadRecordPolicy.parse(options.bad_record_policy, options.dead_letter_topic)
        )
    return builder.build()


def kafka_source_from_options(
    *, plugin_host: PluginHost | None = None, deserializer: Any = None, **options: Any
) -> Any:
    """Build a ``KafkaSource`` from keyword options: the keys of a pipeline file's
    ``[source]`` (``KafkaSourceOptions``), checked the same way, plus ``deserializer`` (a
    schema object, instead of ``format``). ``topics`` may also be a comma-separated string.
    Names of formats and offsets initializers are built through ``plugin_host``; without
    one, a host is built from the installed plugins."""
    table = dict(options)
    if isinstance(table.get("topics"), str):
        table["topics"] = _listify(table["topics"])
    if isinstance(table.get("partitions"), str):
        table["partitions"] = _listify(table["partitions"])
    for key in ("starting_offsets", "stopping_offsets"):
        if isinstance(table.get(key), KafkaOffsetsInitializer):
            # An instance needs no plugin: it is set on the builder as it is.
            table.pop(key)
    instances = {k: v for k, v in options.items() if isinstance(v, KafkaOffsetsInitializer)}
    if plugin_host is None:
        from streamplug.plugin import build_plugin_host

        plugin_host = build_plugin_host()
    checked = attrs.evolve(plugin_host.check_options(KafkaSourceOptions, table), **instances)
    return kafka_source(checked, plugin_host, deserializer)


@hookimpl
def streamplug_register_connectors(register: Callable[[ConnectorSpec], None]) -> None:
    register(
        ConnectorSpec(
            name="kafka",
            kind="source",
            factory=kafka_source,
            description="reads Kafka topics (Flink's KafkaSource)",
            options=KafkaSourceOptions,
        )
    )


@hookimpl
def streamplug_register_offsets_initializers(
    register: Callable[[OffsetsInitializerSpec], None],
) -> None:
    for name, (description, options) in BUILTIN_INITIALIZERS.items():
        register(OffsetsInitializerSpec(name, _initializer_factory(name), description, options))
