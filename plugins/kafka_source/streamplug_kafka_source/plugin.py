"""The plugin's hook implementations: the ``kafka`` source connector and the built-in
offsets initializers, registered through the same hooks a third-party plugin uses."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from streamplug.errors import ConfigError
from streamplug.plugins import ConnectorSpec, OffsetsInitializerSpec, PluginHost, hookimpl
from streamplug_kafka_source.enumerator.initializer import (
    KafkaOffsetsInitializer,
    initializer_from_options,
)

BUILTIN_INITIALIZERS = {
    "earliest": "the first record still in each partition (default start)",
    "latest": "the end of each partition when it is discovered",
    "committed": "the group's committed offsets; option reset_strategy=earliest|latest|none",
    "timestamp": "the first record at or after option timestamp (epoch ms or ISO-8601)",
    "offsets": "explicit offsets, option offsets={'topic:partition': offset}, reset_strategy",
}


def _initializer_factory(name: str) -> Callable[..., KafkaOffsetsInitializer]:
    def factory(**options: Any) -> KafkaOffsetsInitializer:
        return initializer_from_options(name, **options)

    factory.__name__ = f"{name}_offsets"
    return factory


def resolve_initializer(
    spec: KafkaOffsetsInitializer | str | Mapping[str, Any], host: PluginHost | None = None
) -> KafkaOffsetsInitializer:
    """An initializer from a pipeline option: an instance, a registered name
    (``"latest"``), ``"timestamp:<ms>"``, or ``{"name": ..., **options}``."""
    if isinstance(spec, KafkaOffsetsInitializer):
        return spec
    options: dict[str, Any]
    if isinstance(spec, str):
        name, _, arg = spec.partition(":")
        options = {}
        if arg:
            key = {"timestamp": "timestamp", "committed": "reset_strategy"}.get(name)
            if key is None:
                raise ConfigError(
                    f"offsets initializer {spec!r}: only timestamp:<ms> and committed:<reset> "
                    "take an argument; use {'name': ..., ...options} for others",
                    option="starting-offsets",
                )
            options[key] = arg
    elif isinstance(spec, Mapping):
        options = dict(spec)
        name = str(options.pop("name", ""))
    else:
        raise ConfigError(
            f"cannot read {spec!r} as an offsets initializer: use a name like 'earliest'",
            option="starting-offsets",
        )
    if host is None:
        from streamplug.plugins import build_plugin_host

        host = build_plugin_host()
    factory = host.lookup("offsets initializer", name).factory
    initializer = factory(**options)
    if not isinstance(initializer, KafkaOffsetsInitializer):
        raise ConfigError(
            f"offsets initializer {name!r} built a {type(initializer).__name__}, not a "
            "KafkaOffsetsInitializer: fix the plugin that registers it",
            option="starting-offsets",
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


def kafka_source_from_options(**options: Any) -> Any:
    """Build a ``KafkaSource`` from pipeline options.

    Options: ``bootstrap_servers`` (or ``bootstrap.servers``), one of ``topics``,
    ``topic_pattern``, ``partitions`` (``["topic:0", ...]``), ``group_id``,
    ``starting_offsets`` and ``stopping_offsets`` (initializer names or mappings, see
    ``resolve_initializer``), ``bounded`` (default: bounded when stopping offsets are
    given), ``deserializer`` (a schema object) or ``format`` + ``format_options`` (a
    registered format name), ``bad_record_policy``, ``dead_letter_topic``,
    ``properties`` (librdkafka and source properties, also accepted one by one as
    ``properties.<name>``), and ``plugin_host``.
    """
    from streamplug_kafka_source.enumerator.initializer import _as_tp
    from streamplug_kafka_source.reader.bad_records import BadRecordPolicy
    from streamplug_kafka_source.source import KafkaSource

    opts: dict[str, Any] = {}
    flat_properties: dict[str, Any] = {}
    for key, value in options.items():
        if key.startswith("properties."):  # Flink SQL's style: properties.group.id = ...
            flat_properties[key.removeprefix("properties.")] = value
        else:
            opts[key.replace("-", "_")] = value
    host: PluginHost | None = opts.pop("plugin_host", None)
    builder = KafkaSource.builder()
    properties = dict(opts.pop("properties", None) or {})
    properties.update(flat_properties)
    bootstrap = opts.pop("bootstrap_servers", None) or opts.pop("bootstrap.servers", None)
    if bootstrap is None:
        bootstrap = properties.pop("bootstrap.servers", None)
    if bootstrap:
        builder.set_bootstrap_servers(str(bootstrap))
    builder.set_properties(properties)
    if "topics" in opts:
        builder.set_topics(_listify(opts.pop("topics")))
    if "topic" in opts:
        builder.set_topics(_listify(opts.pop("topic")))
    if "topic_pattern" in opts:
        builder.set_topic_pattern(str(opts.pop("topic_pattern")))
    if "partitions" in opts:
        builder.set_partitions({_as_tp(p) for p in _listify(opts.pop("partitions"))})
    if "group_id" in opts:
        builder.set_group_id(str(opts.pop("group_id")))
    if "client_id_prefix" in opts:
        builder.set_client_id_prefix(str(opts.pop("client_id_prefix")))
    if "starting_offsets" in opts:
        builder.set_starting_offsets(resolve_initializer(opts.pop("starting_offsets"), host))
    stopping = opts.pop("stopping_offsets", None)
    bounded = opts.pop("bounded", None)
    if stopping is not None:
        init = resolve_initializer(stopping, host)
        if bounded is None or bool(bounded):
            builder.set_bounded(init)
        else:
            builder.set_unbounded(init)
    elif bounded:
        builder.set_bounded(KafkaOffsetsInitializer.latest())
    deserializer = opts.pop("deserializer", None)
    fmt = opts.pop("format", None)
    format_options = dict(opts.pop("format_options", None) or {})
    if deserializer is not None:
        if hasattr(deserializer, "deserialize") and not hasattr(deserializer, "deserialize_batch"):
            builder.set_deserializer(deserializer)
        else:
            builder.set_value_only_deserializer(deserializer)
    elif fmt is not None:
        if host is None:
            from streamplug.plugins import build_plugin_host

            host = build_plugin_host()
        spec = host.format(str(fmt))
        if spec.deserializer is None:
            raise ConfigError(
                f"format {fmt!r} cannot deserialize (it only writes)", option="format"
            )
        builder.set_value_only_deserializer(spec.deserializer(**format_options))
    policy = opts.pop("bad_record_policy", None)
    dead_letter = opts.pop("dead_letter_topic", None)
    if policy is not None:
        builder.set_bad_record_policy(
            policy
            if isinstance(policy, BadRecordPolicy)
            else BadRecordPolicy.parse(str(policy), dead_letter)
        )
    if opts:
        raise ConfigError(
            f"unknown kafka source options {sorted(opts)}; librdkafka and source properties "
            "go under 'properties'",
            option=sorted(opts)[0],
        )
    return builder.build()


@hookimpl
def streamplug_register_connectors(register: Callable[[ConnectorSpec], None]) -> None:
    register(
        ConnectorSpec(
            name="kafka",
            kind="source",
            factory=kafka_source_from_options,
            description="reads Kafka topics (Flink's KafkaSource)",
        )
    )


@hookimpl
def streamplug_register_offsets_initializers(
    register: Callable[[OffsetsInitializerSpec], None],
) -> None:
    for name, description in BUILTIN_INITIALIZERS.items():
        register(OffsetsInitializerSpec(name, _initializer_factory(name), description))
