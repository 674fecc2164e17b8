"""The sink's pluggy hooks: the ``kafka`` sink connector and the built-in partitioners."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from streamplug.plugins import ConnectorSpec, PartitionerSpec, hookimpl

__all__ = ["kafka_sink_from_options"]


def kafka_sink_from_options(**options: Any) -> Any:
    """Build a KafkaSink from pipeline options, named like Flink SQL's Kafka connector:
    ``topic``, ``properties.bootstrap.servers`` (or ``bootstrap-servers``), ``value.format``
    (a registered format; ``format`` also works) with ``value.<option>`` format options,
    ``sink.delivery-guarantee``, ``sink.transactional-id-prefix``, ``sink.partitioner``
    (``default``, ``fixed``, ``round-robin`` or any registered name) and
    ``properties.<librdkafka property>`` (or one ``properties`` mapping). Underscores may
    stand for dashes, so a pipeline file's ``bootstrap_servers``, ``value_format``,
    ``delivery_guarantee`` and ``transactional_id_prefix`` work as well."""
    from streamplug.errors import ConfigError
    from streamplug.plugins import build_plugin_host
    from streamplug_kafka_sink.record_serializer import KafkaRecordSerializationSchema
    from streamplug_kafka_sink.sink import KafkaSink

    host = options.pop("plugin_host", None) or build_plugin_host()
    properties: dict[str, str] = {}
    opts: dict[str, Any] = {}
    for key, value in options.items():
        if key == "properties" and isinstance(value, Mapping):
            # A pipeline file's [sink.properties] table.
            properties.update({str(k): v for k, v in value.items()})
        elif key.startswith("properties."):
            properties[key[len("properties.") :]] = value
        else:
            norm = key.replace("_", "-")
            opts[norm[len("sink.") :] if norm.startswith("sink.") else norm] = value
    builder = KafkaSink.builder()
    servers = properties.pop("bootstrap.servers", None) or opts.pop("bootstrap-servers", None)
    if not servers:
        raise ConfigError(
            "the kafka sink needs 'properties.bootstrap.servers' (host:port[,host:port])",
            option="properties.bootstrap.servers",
        )
    builder.set_bootstrap_servers(str(servers))
    topic = opts.pop("topic", None)
    if not topic:
        raise ConfigError("the kafka sink needs a 'topic' option", option="topic")
    fmt = (
        opts.pop("value.format", None) or opts.pop("value-format", None) or opts.pop("format", None)
    )
    if not fmt:
        raise ConfigError(
            "the kafka sink needs 'value.format'; installed formats: "
            + ", ".join(host.names("format")),
            option="value.format",
        )
    format_options = {
        k[len("value.") :].replace("-", "_"): v
        for k, v in list(opts.items())
        if k.startswith("value.")
    }
    for k in [k for k in opts if k.startswith("value.")]:
        opts.pop(k)
    spec = host.format(str(fmt))
    if spec.serializer is None:
        raise ConfigError(f"format {fmt!r} cannot serialize (it only reads)", option="value.format")
    record = KafkaRecordSerializationSchema.builder().set_topic(str(topic))
    record.set_value_serialization_schema(spec.serializer(**format_options))
    partitioner = opts.pop("partitioner", None)
    if partitioner:
        record.set_partitioner(str(partitioner), plugin_host=host)
    builder.set_record_serializer(record.build())
    guarantee = opts.pop("delivery-guarantee", None)
    if guarantee:
        builder.set_delivery_guarantee(str(guarantee))
    prefix = opts.pop("transactional-id-prefix", None)
    if prefix:
        builder.set_transactional_id_prefix(str(prefix))
    if opts:
        raise ConfigError(
            f"unknown kafka sink option(s) {sorted(opts)}; valid: topic, value.format, "
            "value.<format option>, "
            "sink.delivery-guarantee, sink.transactional-id-prefix, sink.partitioner, "
            "properties.<name>",
            option=sorted(opts)[0],
        )
    builder.set_properties(properties)
    return builder.build()


def _fixed(**options: Any) -> Any:
    from streamplug_kafka_sink.partitioner import FlinkFixedPartitioner

    return FlinkFixedPartitioner(**options)


def _round_robin(**options: Any) -> Any:
    from streamplug_kafka_sink.partitioner import RoundRobinPartitioner

    return RoundRobinPartitioner(**options)


def _default(**options: Any) -> Any:
    from streamplug_kafka_sink.partitioner import DefaultPartitioner

    return DefaultPartitioner(**options)


@hookimpl
def streamplug_register_connectors(register: Callable[[ConnectorSpec], None]) -> None:
    register(
        ConnectorSpec(
            name="kafka",
            kind="sink",
            factory=kafka_sink_from_options,
            description="Apache Kafka topic (NONE, AT_LEAST_ONCE, EXACTLY_ONCE)",
        )
    )


@hookimpl
def streamplug_register_partitioners(register: Callable[[PartitionerSpec], None]) -> None:
    register(
        PartitionerSpec(
            "default", _default, "Kafka's key hashing (murmur2, like the Java producer)"
        )
    )
    register(
        PartitionerSpec(
            "fixed", _fixed, "each writer subtask to one partition (Flink's FlinkFixedPartitioner)"
        )
    )
    register(
        PartitionerSpec(
            "round-robin", _round_robin, "cycle through the partitions record by record"
        )
    )
