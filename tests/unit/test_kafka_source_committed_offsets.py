"""The enumerator reads a group's committed offsets through a consumer that never joins the
group, retrying while the group's coordinator settles (AdminClient's
list_consumer_group_offsets crashes the process on NOT_COORDINATOR: librdkafka #5040)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from streamplug_kafka_common.admin import group_offsets
from streamplug_kafka_source import KafkaTopicPartition
from streamplug_kafka_source.enumerator._admin import AdminOffsetsRetriever
from streamplug_testing.mock import MockCluster

OFFSET_FETCH = 9  # Kafka's API key of the request that reads committed offsets
GROUP = "the-job"
P0, P1 = KafkaTopicPartition("t", 0), KafkaTopicPartition("t", 1)


@pytest.fixture
def cluster() -> Iterator[MockCluster]:
    with MockCluster(1) as mock:
        mock.create_topic("t", partitions=2)
        committer = Consumer({"bootstrap.servers": mock.bootstrap_servers, "group.id": GROUP})
        committer.commit(offsets=[TopicPartition("t", 0, 7)], asynchronous=False)
        committer.close()
        yield mock


def retriever(cluster: MockCluster, timeout_s: float = 10) -> AdminOffsetsRetriever:
    props = {"bootstrap.servers": cluster.bootstrap_servers}
    return AdminOffsetsRetriever(props, GROUP, read_committed=False, timeout_s=timeout_s)


def test_committed_offsets_leave_out_partitions_without_a_commit(cluster: MockCluster) -> None:
    assert retriever(cluster).committed_offsets([P0, P1]) == {P0: 7}


def test_committed_offsets_wait_for_the_coordinator_to_settle(cluster: MockCluster) -> None:
    # What a fresh cluster answers until __consumer_offsets exists.
    cluster.push_request_errors(
        OFFSET_FETCH,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.NOT_COORDINATOR,
    )
    assert retriever(cluster).committed_offsets([P0, P1]) == {P0: 7}


def test_committed_offsets_fail_on_other_errors_naming_the_group(cluster: MockCluster) -> None:
    cluster.push_request_errors(OFFSET_FETCH, KafkaError.GROUP_AUTHORIZATION_FAILED)
    with pytest.raises(RuntimeError, match="read committed offsets of group 'the-job'"):
        retriever(cluster).committed_offsets([P0])


def test_committed_offsets_give_up_when_the_coordinator_never_settles(
    cluster: MockCluster,
) -> None:
    cluster.push_request_errors(OFFSET_FETCH, *[KafkaError.NOT_COORDINATOR] * 100)
    with pytest.raises(RuntimeError, match=r"Not coordinator|NOT_COORDINATOR"):
        retriever(cluster, timeout_s=1).committed_offsets([P0])


def test_kafka_common_group_offsets_wait_for_the_coordinator_too(cluster: MockCluster) -> None:
    # The helper tests and users' tools share: the same path, no admin client involved.
    cluster.push_request_errors(OFFSET_FETCH, KafkaError.NOT_COORDINATOR)
    assert group_offsets(cluster.bootstrap_servers, GROUP, "t", 2) == {0: 7, 1: -1001}
