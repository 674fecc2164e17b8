"""librdkafka mock cluster through ctypes: topics, produce/consume, fault injection."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from streamplug_kafka_common import admin
from streamplug_testing.mock import ApiKey, MockCluster, find_librdkafka


def _produce(bootstrap: str, topic: str, count: int, **conf: object) -> list[KafkaError | None]:
    results: list[KafkaError | None] = []
    producer = Producer({"bootstrap.servers": bootstrap, "log_level": 0, **conf})
    for i in range(count):
        producer.produce(
            topic,
            key=str(i).encode(),
            value=f"value-{i}".encode(),
            on_delivery=lambda err, _msg: results.append(err),
        )
    producer.flush(30)
    return results


def test_library_is_found() -> None:
    assert find_librdkafka().is_file()


def test_create_topic_produce_consume(mock_cluster: MockCluster) -> None:
    mock_cluster.create_topic("orders", partitions=3, replication_factor=3)
    assert admin.describe_partitions(mock_cluster.bootstrap_servers, "orders")[0].replicas == (
        1,
        2,
        3,
    )

    results = _produce(mock_cluster.bootstrap_servers, "orders", 300)
    assert results == [None] * 300

    offsets = admin.end_offsets(mock_cluster.bootstrap_servers, "orders")
    assert sorted(offsets) == [0, 1, 2]
    assert sum(offsets.values()) == 300
    records = admin.read_all(mock_cluster.bootstrap_servers, "orders", timeout=20)
    assert sorted(int(m.key() or b"-1") for m in records) == list(range(300))


def test_broker_down_times_out_then_recovers(mock_cluster: MockCluster) -> None:
    mock_cluster.create_topic("fragile", partitions=1, replication_factor=1)
    mock_cluster.set_partition_leader("fragile", 0, 2)

    mock_cluster.broker_down(2)
    failed = _produce(mock_cluster.bootstrap_servers, "fragile", 5, **{"message.timeout.ms": 1500})
    assert [e.code() if e else None for e in failed] == [KafkaError._MSG_TIMED_OUT] * 5

    mock_cluster.broker_up(2)
    assert _produce(mock_cluster.bootstrap_servers, "fragile", 5) == [None] * 5
    assert admin.end_offsets(mock_cluster.bootstrap_servers, "fragile") == {0: 5}


def test_leader_move(mock_cluster: MockCluster) -> None:
    mock_cluster.create_topic("moving", partitions=1, replication_factor=3)
    mock_cluster.set_partition_leader("moving", 0, 3)
    assert admin.describe_partitions(mock_cluster.bootstrap_servers, "moving")[0].leader == 3
    mock_cluster.set_partition_leader("moving", 0, 1)
    assert admin.describe_partitions(mock_cluster.bootstrap_servers, "moving")[0].leader == 1


def test_request_errors_are_retried(mock_cluster: MockCluster) -> None:
    mock_cluster.create_topic("flaky", partitions=1)
    mock_cluster.push_request_errors(
        ApiKey.PRODUCE,
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError.NOT_ENOUGH_REPLICAS,
    )
    # Retriable errors are absorbed by the producer's retries.
    assert _produce(mock_cluster.bootstrap_servers, "flaky", 3) == [None] * 3


def test_non_retriable_request_error_reaches_delivery_report(mock_cluster: MockCluster) -> None:
    mock_cluster.create_topic("broken", partitions=1)
    mock_cluster.push_request_errors(ApiKey.PRODUCE, KafkaError.MSG_SIZE_TOO_LARGE)
    results = _produce(mock_cluster.bootstrap_servers, "broken", 1)
    assert results[0] is not None
    assert results[0].code() == KafkaError.MSG_SIZE_TOO_LARGE


def test_admin_calls_fail_fast(mock_cluster: MockCluster) -> None:
    # set_controller_id(1) makes unsupported admin calls fail at once instead of
    # waiting for a controller until the request times out.
    if not mock_cluster.controller_pinned:
        pytest.skip("this librdkafka has no rd_kafka_mock_set_controller_id")
    client = AdminClient({"bootstrap.servers": mock_cluster.bootstrap_servers, "log_level": 0})
    started = time.monotonic()
    with pytest.raises(KafkaException):
        admin.create_topic({"bootstrap.servers": mock_cluster.bootstrap_servers}, "x", timeout=10)
    assert time.monotonic() - started < 5
    assert set(client.list_topics(timeout=5).brokers) == {1, 2, 3}


def test_close_is_idempotent_and_guards_calls() -> None:
    cluster = MockCluster(1)
    assert "127.0.0.1" in cluster.bootstrap_servers
    cluster.close()
    cluster.close()
    assert cluster.closed
    with pytest.raises(RuntimeError, match="closed"):
        cluster.create_topic("late")


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="brokers"):
        MockCluster(0)
    with MockCluster(1) as cluster:
        with pytest.raises(ValueError, match="replication_factor"):
            cluster.create_topic("t", 1, replication_factor=2)
        with pytest.raises(ValueError, match="key_type"):
            cluster.set_coordinator("consumer", "g", 1)  # type: ignore[arg-type]


def test_broker_start_embedded_command(broker_command: Callable[..., Any]) -> None:
    """`streamplug broker start --embedded`: bootstrap alone on line 1, clean SIGTERM."""
    args = ("--embedded", "--nodes", "2", "--topic", "cli:2:2")
    with broker_command(*args, stop_within_s=20) as broker:
        assert len(broker.bootstrap.split(",")) == 2
        assert all(part.startswith("127.0.0.1:") for part in broker.bootstrap.split(","))
        assert len(admin.describe_partitions(broker.bootstrap, "cli")[1].replicas) == 2
    assert broker.returncode == 0, broker.err
    assert "mock cluster" in broker.out


def test_consumer_group_joins_without_delay(mock_cluster: MockCluster) -> None:
    # group_initial_rebalance_delay_ms(0) at creation: no 3 s wait for the first join.
    from confluent_kafka import Consumer

    if not mock_cluster.rebalance_delay_removed:
        pytest.skip("this librdkafka's mock cannot remove the 3 s initial rebalance delay")

    mock_cluster.create_topic("grouped", partitions=2)
    mock_cluster.set_coordinator("group", "g1", 2)
    assert _produce(mock_cluster.bootstrap_servers, "grouped", 4) == [None] * 4
    consumer = Consumer(
        {
            "bootstrap.servers": mock_cluster.bootstrap_servers,
            "group.id": "g1",
            "auto.offset.reset": "earliest",
            "log_level": 0,
        }
    )
    try:
        consumer.subscribe(["grouped"])
        started = time.monotonic()
        seen: list[bytes] = []
        while len(seen) < 4 and time.monotonic() - started < 10:
            seen += [m.value() or b"" for m in consumer.consume(10, 0.2) if m.error() is None]
        assert len(seen) == 4
        assert time.monotonic() - started < 2.5
    finally:
        consumer.close()
