"""Kafka support shared by the streamplug Kafka plugins and their tests.

- :class:`KafkaCluster`: real Apache Kafka (KRaft) nodes as local ``java`` processes.
- :class:`MockCluster`: librdkafka's in-process mock cluster (no Java, fault injection,
  not for exactly-once proofs).
- :mod:`streamplug_kafka_common.admin`: create/describe topics, end offsets, read a topic.
- pytest fixtures (``kafka_cluster``, ``kafka_bootstrap``, ``kafka_cluster_3``,
  ``mock_cluster``, ``topic_factory``, ``new_topic``) registered via ``pytest11``.
"""

from __future__ import annotations

from streamplug_kafka_common import admin
from streamplug_kafka_common.broker import (
    BrokerStartError,
    KafkaCluster,
    KafkaNode,
    ListenerSpec,
    ScramUser,
)
from streamplug_kafka_common.jars import (
    KAFKA_VERSION,
    KafkaJarsError,
    ensure_kafka_jars,
    kafka_classpath,
)
from streamplug_kafka_common.mock import ApiKey, MockCluster, MockClusterUnavailable

__all__ = [
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
    "admin",
    "ensure_kafka_jars",
    "kafka_classpath",
]
