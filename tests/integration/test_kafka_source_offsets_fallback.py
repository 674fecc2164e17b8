"""Offsets resolved through a consumer (the source's path on confluent-kafka < 2.3, which
has no ``AdminClient.list_offsets``) against real Kafka: the same answers as the admin
path for both ends, timestamps, and the last stable offset under read_committed."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewPartitions

from streamplug_kafka_source import KafkaTopicPartition, _compat
from streamplug_kafka_source.enumerator import _admin
from streamplug_kafka_source.enumerator._admin import AdminOffsetsRetriever

pytestmark = pytest.mark.integration

# Record timestamps an hour ago. Kafka deletes records older than retention.ms (7 days by
# default) by their timestamps, at its next retention check (every 5 minutes): with a base
# in 2023 a partition's records sometimes vanished mid-test.
BASE_TS = int(time.time() * 1000) - 3_600_000
RECORDS = 30


def _offsets(bootstrap: str, topic: str, read_committed: bool) -> dict[str, Any]:
    retriever = AdminOffsetsRetriever({"bootstrap.servers": bootstrap}, None, read_committed)
    partitions = [KafkaTopicPartition(topic, p) for p in range(2)]
    return {
        "beginning": retriever.beginning_offsets(partitions),
        "end": retriever.end_offsets(partitions),
        "mid": retriever.offsets_for_times(dict.fromkeys(partitions, BASE_TS + 12)),
        "future": retriever.offsets_for_times(dict.fromkeys(partitions, BASE_TS + 10**6)),
    }


def test_consumer_fallback_matches_the_admin_path(
    kafka_cluster: Any, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = f"compat-{uuid.uuid4().hex[:8]}"
    kafka_cluster.create_topic(topic, partitions=2)
    # Idempotent, so offsets follow the produce order: a plain producer's retry (a leader
    # not yet known right after the topic was created) can reorder batches, and the
    # timestamp lookup below once found offset 5 for the 13th record.
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for p in range(2):
        for i in range(RECORDS):
            producer.produce(topic, b"v", partition=p, timestamp=BASE_TS + i)
    assert producer.flush(10) == 0
    # An open transaction: read_committed ends at its first record (the last stable
    # offset), read_uncommitted after its last.
    txn = Producer(
        {"bootstrap.servers": kafka_bootstrap, "transactional.id": f"compat-{uuid.uuid4()}"}
    )
    txn.init_transactions(10)
    txn.begin_transaction()
    for _ in range(5):
        txn.produce(topic, b"open", partition=0, timestamp=BASE_TS + 100)
    assert txn.flush(10) == 0
    try:
        p0, p1 = KafkaTopicPartition(topic, 0), KafkaTopicPartition(topic, 1)
        monkeypatch.setattr(_admin, "HAS_ADMIN_LIST_OFFSETS", False)
        committed = _offsets(kafka_bootstrap, topic, read_committed=True)
        uncommitted = _offsets(kafka_bootstrap, topic, read_committed=False)
        assert committed == {
            "beginning": {p0: 0, p1: 0},
            "end": {p0: RECORDS, p1: RECORDS},
            "mid": {p0: 12, p1: 12},
            "future": {p0: None, p1: None},
        }
        assert uncommitted["end"] == {p0: RECORDS + 5, p1: RECORDS}
        if _compat.HAS_ADMIN_LIST_OFFSETS:
            monkeypatch.setattr(_admin, "HAS_ADMIN_LIST_OFFSETS", True)
            assert _offsets(kafka_bootstrap, topic, read_committed=True) == committed
            assert _offsets(kafka_bootstrap, topic, read_committed=False) == uncommitted
    finally:
        txn.abort_transaction(10)


def test_consumer_fallback_sees_partitions_added_after_its_first_lookup(
    kafka_cluster: Any, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Partition discovery asks about partitions the lookup consumer's metadata cache has
    # not seen (it refreshes every 5 min by default).
    topic = f"compat-grow-{uuid.uuid4().hex[:8]}"
    kafka_cluster.create_topic(topic, partitions=1)
    monkeypatch.setattr(_admin, "HAS_ADMIN_LIST_OFFSETS", False)
    retriever = AdminOffsetsRetriever({"bootstrap.servers": kafka_bootstrap}, None, False)
    p0, p1 = KafkaTopicPartition(topic, 0), KafkaTopicPartition(topic, 1)
    assert retriever.end_offsets([p0]) == {p0: 0}
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_partitions([NewPartitions(topic, 2)]).values():
        future.result(10)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    producer.produce(topic, b"v", partition=1, timestamp=BASE_TS)
    assert producer.flush(10) == 0
    assert retriever.end_offsets([p0, p1]) == {p0: 0, p1: 1}
    assert retriever.offsets_for_times({p1: BASE_TS}) == {p1: 0}
