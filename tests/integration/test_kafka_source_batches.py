"""How a reader of several partitions cuts a fetched batch into its splits' runs, on a real
broker: batches that hold one partition are told by the consumer's positions, the others
are scanned, and either way every record reaches its own split once and in order, with
transaction markers (gaps in the offsets) between them."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Producer

from streamplug.api import DeserializationSchema
from streamplug.api.source import InputStatus
from streamplug.testing import RecordingOutput, reader_context
from streamplug_kafka_source import KafkaPartitionSplit, KafkaSource
from streamplug_kafka_source.reader.reader import KafkaSourceReader

pytestmark = pytest.mark.integration

PARTITIONS = 3
PER_PARTITION = 3000


class Utf8(DeserializationSchema[str]):
    def deserialize(self, message: bytes) -> str:
        return message.decode()


def fill(bootstrap: str, topic: str) -> dict[int, int]:
    """PER_PARTITION values "p:i" in each partition, half plain and half in small
    transactions (each commit leaves a marker: a gap in the offsets); the end offsets."""
    plain = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    txn = Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": f"batches-{uuid.uuid4().hex}"}
    )
    txn.init_transactions(30)
    half = PER_PARTITION // 2
    for i in range(half):
        for p in range(PARTITIONS):
            plain.produce(topic, f"{p}:{i}".encode(), partition=p)
    assert plain.flush(30) == 0
    for start in range(half, PER_PARTITION, 50):
        txn.begin_transaction()
        for i in range(start, min(start + 50, PER_PARTITION)):
            for p in range(PARTITIONS):
                txn.produce(topic, f"{p}:{i}".encode(), partition=p)
        txn.commit_transaction(30)
    # One marker per transaction and partition after its records.
    transactions = len(range(half, PER_PARTITION, 50))
    return dict.fromkeys(range(PARTITIONS), PER_PARTITION + transactions)


@pytest.mark.parametrize("fetch_bytes", [1_048_576, 3_000], ids=["large-fetches", "small-fetches"])
def test_every_record_reaches_its_own_split_once_and_in_order(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    fetch_bytes: int,
) -> None:
    topic = topic_factory(partitions=PARTITIONS)
    ends = fill(kafka_bootstrap, topic)
    told = {"by positions": 0, "scanned": 0}
    probe = KafkaSourceReader._moved_split

    def counted(self: KafkaSourceReader, records: int) -> Any:
        found = probe(self, records)
        told["by positions" if found is not None else "scanned"] += 1
        return found

    monkeypatch.setattr(KafkaSourceReader, "_moved_split", counted)
    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(kafka_bootstrap)
        .set_topics(topic)
        .set_value_only_deserializer(Utf8())
        # Small fetches put several partitions' runs into one batch.
        .set_property("max.partition.fetch.bytes", str(fetch_bytes))
        .set_property("isolation.level", "read_committed")
        .build()
    )
    reader = source.create_reader(reader_context())
    output = RecordingOutput()
    try:
        reader.start()
        reader.add_splits([KafkaPartitionSplit(topic, p, 0, ends[p]) for p in range(PARTITIONS)])
        reader.notify_no_more_splits()
        deadline = time.monotonic() + 60
        while reader.poll_next(output) is not InputStatus.END_OF_INPUT:
            assert time.monotonic() < deadline, f"not done in 60 s: {len(output.values)} read"
    finally:
        reader.close()

    assert sorted(output.released) == [f"{topic}-{p}" for p in range(PARTITIONS)]
    seen: dict[int, list[int]] = defaultdict(list)
    for batch in output.batches:
        partitions = {int(v.split(":")[0]) for v in batch.values}
        assert partitions == {int(batch.split_id.rsplit("-", 1)[1])}, batch.split_id  # type: ignore[union-attr]
        for value in batch.values:
            seen[int(value.split(":")[0])].append(int(value.split(":")[1]))
    assert {p: seen[p] for p in range(PARTITIONS)} == {
        p: list(range(PER_PARTITION)) for p in range(PARTITIONS)
    }
    assert told["by positions"] > 0
    if fetch_bytes < 10_000:
        assert told["scanned"] > 1, told
