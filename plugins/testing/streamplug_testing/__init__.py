"""Test support for streamplug and its Kafka plugins, in a distribution of its own so that
installing a connector brings no test machinery (no pytest plugin, no ``atexit`` hook, no
ctypes load of librdkafka).

- :class:`KafkaCluster`: real Apache Kafka (KRaft) nodes as local ``java`` processes.
- :class:`MockCluster`: librdkafka's in-process mock cluster (no Java, fault injection,
  not for exactly-once proofs).
- pytest fixtures (``kafka_cluster``, ``kafka_bootstrap``, ``kafka_cluster_3``,
  ``mock_cluster``, ``topic_factory``, ``new_topic``) registered via ``pytest11``.
- the ``streamplug broker`` command.

Importing this package imports nothing heavy: the launcher and the mock cluster load when
their names are first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamplug_testing.broker import (
        KAFKA_SCRIPT_JVM_OPTIONS,
        BrokerStartError,
        KafkaCluster,
        KafkaNode,
        ListenerSpec,
        ScramUser,
    )
    from streamplug_testing.jars import (
        KAFKA_VERSION,
        KafkaJarsError,
        ensure_kafka_jars,
        kafka_classpath,
    )
    from streamplug_testing.mock import ApiKey, MockCluster, MockClusterUnavailable

__all__ = [
    "KAFKA_SCRIPT_JVM_OPTIONS",
    "KAFKA_VERSION",
    "ApiKey",
    "BrokerStartError",
    "KafkaCluster",
    "KafkaJarsError",
    "KafkaNode",
    "ListenerSpec",
    "MockCluster",
    "MockClusterUnavailable",
    "ScramUser",
    "ensure_kafka_jars",
    "kafka_classpath",
]

_HOMES = {
    "KAFKA_SCRIPT_JVM_OPTIONS": "broker",
    "BrokerStartError": "broker",
    "KafkaCluster": "broker",
    "KafkaNode": "broker",
    "ListenerSpec": "broker",
    "ScramUser": "broker",
    "KAFKA_VERSION": "jars",
    "KafkaJarsError": "jars",
    "ensure_kafka_jars": "jars",
    "kafka_classpath": "jars",
    "ApiKey": "mock",
    "MockCluster": "mock",
    "MockClusterUnavailable": "mock",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'streamplug_testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"streamplug_testing.{_HOMES[name]}"), name)
    globals()[name] = value
    return value
