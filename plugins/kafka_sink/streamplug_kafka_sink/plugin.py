"""The sink's pluggy hooks: the ``kafka`` sink connector and the built-in partitioners."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import attrs

from streamplug.plugin import ConnectorSpec, PartitionerSpec, PluginHost, hookimpl
from streamplug.plugin.options import component, component_options, option

__all__ = [
    "KafkaRecordSerializerOptions",
    "KafkaSinkOptions",
    "kafka_sink",
    "kafka_sink_from_options",
]


@attrs.frozen(kw_only=True)
class KafkaRecordSerializerOptions:
    """How the ``kafka`` sink turns a record into a Kafka record (its
    ``KafkaRecordSerializationSchema``)."""

    topic: str = option(doc="the topic to write", example='topic = "orders-enriched"')
    format: str = component(
        "format",
        attrs.NOTHING,
        doc="the records' value format",
        direction="serializer",
        example='format = "json"',
    )
    format_options: dict[str, Any] = component_options("format", doc="options of the format")
    partitioner: str | dict[str, Any] | None = component(
        "partitioner", doc="which partition each record goes to (default: Kafka's own)"
    )


@attrs.frozen(kw_only=True)
class KafkaSinkOptions(KafkaRecordSerializerOptions):
    """The ``kafka`` sink of a pipeline file: Flink's KafkaSink, configured by key."""

    bootstrap_servers: str = option(
        doc="host:port[,host:port...] of the Kafka cluster (--bootstrap-servers overrides it)",
        example='bootstrap_servers = "localhost:9092"',
    )
    delivery_guarantee: Literal["none", "at-least-once", "exactly-once"] | None = option(
        None, doc="none (default), at-least-once or exactly-once"
    )
    transactional_id_prefix: str | None = option(
        None, doc="prefix of the transactional ids (exactly-once); unique per job"
    )
    properties: dict[str, Any] = option(
        factory=dict,
        doc="librdkafka producer properties and the sink's own (transaction.timeout.ms, "
        "commit.log.topic...)",
    )


def record_serializer(options: KafkaRecordSerializerOptions, host: PluginHost) -> Any:
    """The sink's ``KafkaRecordSerializationSchema`` from its checked options."""
    from streamplug_kafka_sink.record_serializer import KafkaRecordSerializationSchema

    record = KafkaRecordSerializationSchema.builder().set_topic(options.topic)
    record.set_value_serialization_schema(
        host.build_format(
            options.format, options.format_options, "serializer", path=("format_options",)
        )
    )
    if options.partitioner is not None:
        record.set_partitioner(
            host.build_component("partitioner", options.partitioner, path=("partitioner",))
        )
    return record.build()


def kafka_sink(options: KafkaSinkOptions, host: PluginHost) -> Any:
    """The ``kafka`` sink connector: a ``KafkaSink`` from its checked options, with the
    format and partitioner they name built through ``host``."""
    from streamplug.plugin.options import OptionsError
    from streamplug_kafka_sink.sink import KafkaSink

    if options.delivery_guarantee == "exactly-once" and not options.transactional_id_prefix:
        raise OptionsError(
            ("transactional_id_prefix",),
            "missing key 'transactional_id_prefix': exactly-once writes in transactions whose "
            "ids must be unique per job and stable across restarts",
            'transactional_id_prefix = "my-job"',
        )
    if "transactional.id" in options.properties:
        raise OptionsError(
            ("properties", "transactional.id"),
            "the sink derives each producer's transactional.id from transactional_id_prefix "
            "('<prefix>-0'); it cannot be set",
            'transactional_id_prefix = "my-job" (and remove "transactional.id")',
        )
    builder = KafkaSink.builder().set_bootstrap_servers(options.bootstrap_servers)
    builder.set_record_serializer(record_serializer(options, host))
    if options.delivery_guarantee is not None:
        builder.set_delivery_guarantee(options.delivery_guarantee)
    if options.transactional_id_prefix is not None:
        builder.set_transactional_id_prefix(options.transactional_id_prefix)
    builder.set_properties(dict(options.properties))
    return builder.build()


def kafka_sink_from_options(*, plugin_host: PluginHost | None = None, **options: Any) -> Any:
    """Build a ``KafkaSink`` from keyword options: the keys of a pipeline file's ``[sink]``
    (``KafkaSinkOptions``), checked the same way. The format and partitioner they name
    are built through ``plugin_host``; without one, a host is built from the installed
    plugins."""
    if plugin_host is None:
        from streamplug.plugin import build_plugin_host

        plugin_host = build_plugin_host()
    return kafka_sink(plugin_host.check_options(KafkaSinkOptions, options), plugin_host)


@attrs.frozen
class NoOptions:
    """This partitioner takes no options."""


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
            factory=kafka_sink,
            description="Apache Kafka topic (NONE, AT_LEAST_ONCE, EXACTLY_ONCE)",
            options=KafkaSinkOptions,
        )
    )


@hookimpl
def streamplug_register_partitioners(register: Callable[[PartitionerSpec], None]) -> None:
    register(
        PartitionerSpec(
            "default",
            _default,
            "Kafka's key hashing (murmur2, like the Java producer)",
            NoOptions,
        )
    )
    register(
        PartitionerSpec(
            "fixed",
            _fixed,
            "each writer subtask to one partition (Flink's FlinkFixedPartitioner)",
            NoOptions,
        )
    )
    register(
        PartitionerSpec(
            "round-robin",
            _round_robin,
            "cycle through the partitions record by record",
            NoOptions,
        )
    )
