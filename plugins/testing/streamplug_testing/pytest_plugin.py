"""pytest fixtures for Kafka tests, loaded through the ``pytest11`` entry point.

Fixtures (all lazy: nothing starts unless a test asks for it):

- ``kafka_cluster`` — one real single-node Kafka per test session, or the external
  cluster named by ``$STREAMPLUG_KAFKA_BOOTSTRAP``. Node failures injected by a test
  are repaired (the node restarted) after it.
- ``kafka_bootstrap`` — its bootstrap servers (str).
- ``kafka_cluster_3`` — a real three-node cluster per session, for replication and
  failover tests; always launched locally because tests kill its nodes.
- ``mock_cluster`` — a fresh librdkafka mock cluster (3 brokers) per test: it starts
  in milliseconds and faults injected into it must not leak into the next test.
  ``mock_cluster_factory(brokers=N)`` makes others.
- ``topic_factory(partitions=1, replication_factor=1, config=None)`` — creates a
  uniquely named topic on ``kafka_cluster`` and returns its name; ``new_topic`` is one
  such topic with one partition.

Markers registered: ``integration`` (needs a real broker) and ``slow``.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from streamplug_testing.broker import KafkaCluster
    from streamplug_testing.mock import MockCluster

__all__ = ["BOOTSTRAP_ENV", "ExternalKafka"]

BOOTSTRAP_ENV = "STREAMPLUG_KAFKA_BOOTSTRAP"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: needs a real Kafka broker (started by the suite)"
    )
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


class ExternalKafka:
    """Stands in for :class:`KafkaCluster` when tests target an existing cluster.

    Only the non-destructive part of the API exists; node control skips the test.
    """

    def __init__(self, bootstrap_servers: str) -> None:
        self.bootstrap_servers = bootstrap_servers

    def bootstrap_servers_for(self, listener_name: str) -> str:
        pytest.skip(f"{BOOTSTRAP_ENV} is set: the external cluster's listeners are unknown")

    def admin_config(self) -> dict[str, Any]:
        return {"bootstrap.servers": self.bootstrap_servers}

    @property
    def node_ids(self) -> list[int]:
        """Broker ids the external cluster currently reports."""
        from confluent_kafka.admin import AdminClient

        return sorted(AdminClient(self.admin_config()).list_topics(timeout=10).brokers)

    def running_node_ids(self) -> list[int]:
        return self.node_ids

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        replication_factor: int = 1,
        config: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        from streamplug_kafka_common import admin

        admin.create_topic(
            self.admin_config(), name, partitions, replication_factor, config, timeout
        )

    def _no_control(self, *_: Any, **__: Any) -> None:
        pytest.skip(f"{BOOTSTRAP_ENV} is set: cannot stop or start nodes of an external cluster")

    stop_node = kill_node = start_node = _no_control

    def __repr__(self) -> str:
        return f"<ExternalKafka {self.bootstrap_servers}>"


def _restart_stopped(cluster: KafkaCluster) -> None:
    for nid in cluster.node_ids:
        if not cluster.node(nid).running:
            cluster.start_node(nid)


@pytest.fixture(scope="session")
def _kafka_cluster_session() -> Iterator[KafkaCluster | ExternalKafka]:
    external = os.environ.get(BOOTSTRAP_ENV)
    if external:
        yield ExternalKafka(external)
        return
    from streamplug_testing.broker import KafkaCluster

    with KafkaCluster(nodes=1) as cluster:
        yield cluster


@pytest.fixture
def kafka_cluster(
    _kafka_cluster_session: KafkaCluster | ExternalKafka,
) -> Iterator[KafkaCluster | ExternalKafka]:
    """The session's single-node Kafka (or the external cluster)."""
    cluster = _kafka_cluster_session
    yield cluster
    if not isinstance(cluster, ExternalKafka):
        _restart_stopped(cluster)


@pytest.fixture
def kafka_bootstrap(_kafka_cluster_session: KafkaCluster | ExternalKafka) -> str:
    """Bootstrap servers of ``kafka_cluster``."""
    return _kafka_cluster_session.bootstrap_servers


@pytest.fixture(scope="session")
def _kafka_cluster_3_session() -> Iterator[KafkaCluster]:
    from streamplug_testing.broker import KafkaCluster

    with KafkaCluster(nodes=3) as cluster:
        yield cluster


@pytest.fixture
def kafka_cluster_3(_kafka_cluster_3_session: KafkaCluster) -> Iterator[KafkaCluster]:
    """The session's three-node Kafka; nodes a test stopped are restarted after it."""
    yield _kafka_cluster_3_session
    _restart_stopped(_kafka_cluster_3_session)


@pytest.fixture
def mock_cluster_factory() -> Iterator[Callable[..., MockCluster]]:
    """``factory(brokers=3) -> MockCluster``; all are closed after the test."""
    from streamplug_testing.mock import MockCluster

    made: list[MockCluster] = []

    def factory(brokers: int = 3) -> MockCluster:
        cluster = MockCluster(brokers)
        made.append(cluster)
        return cluster

    yield factory
    for cluster in made:
        cluster.close()


@pytest.fixture
def mock_cluster(mock_cluster_factory: Callable[..., MockCluster]) -> MockCluster:
    """A fresh 3-broker librdkafka mock cluster (closed after the test)."""
    return mock_cluster_factory(3)


def _topic_prefix(node_name: str) -> str:
    # Kafka topic names allow [a-zA-Z0-9._-] and at most 249 characters; a name
    # derived from the test makes broker logs readable.
    cleaned = re.sub(r"[^a-zA-Z0-9._-]+", "-", node_name).strip("-.")
    return cleaned[:80] or "topic"


@pytest.fixture
def topic_factory(
    request: pytest.FixtureRequest, kafka_cluster: KafkaCluster | ExternalKafka
) -> Callable[..., str]:
    """``topic_factory(partitions=1, replication_factor=1, config=None, name=None) -> str``
    creates a uniquely named topic on ``kafka_cluster`` and waits until it is ready."""
    prefix = _topic_prefix(request.node.name)

    def factory(
        partitions: int = 1,
        replication_factor: int = 1,
        config: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> str:
        topic = f"{name or prefix}-{uuid.uuid4().hex[:8]}"
        kafka_cluster.create_topic(topic, partitions, replication_factor, config)
        return topic

    return factory


@pytest.fixture
def new_topic(topic_factory: Callable[..., str]) -> str:
    """A fresh single-partition topic on ``kafka_cluster``."""
    return topic_factory()
