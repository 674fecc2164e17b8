"""Input records and the read-back check of every run's output (confluent-kafka; used by
the orchestrator and by the latency reader, both in the project's environment)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import _common
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

PAD = b"x" * (_common.VALUE_BYTES - _common.SEQ_DIGITS - _common.STAMP_DIGITS)
TS_LOG_APPEND_TIME = 2


def value_of(seq: int, stamp_us: int = 0) -> bytes:
    return b"%012d%016d" % (seq, stamp_us) + PAD


def key_of(seq: int) -> bytes:
    return b"k%011d" % seq


def producer(bootstrap: str, **extra: Any) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 2_000_000,
            **extra,
        }
    )


def produce_range(
    p: Producer, topic: str, start: int, stop: int, partitions: int, keyed: bool
) -> None:
    produce = p.produce
    for seq in range(start, stop):
        while True:
            try:
                produce(
                    topic,
                    value_of(seq),
                    key_of(seq) if keyed else None,
                    partition=seq % partitions,
                )
                break
            except BufferError:
                p.poll(0.01)


def fill(bootstrap: str, topic: str, records: int, partitions: int, keyed: bool) -> None:
    p = producer(bootstrap)
    produce_range(p, topic, 0, records, partitions, keyed)
    if p.flush(120):
        raise RuntimeError(f"input for {topic} not delivered in 120 s")


def warm_up(bootstrap: str, topic: str) -> None:
    """Does once, on ``topic`` (a scratch topic of its own), what each job's first run would
    otherwise do on a fresh broker: commit a consumer group's offsets (the broker creates
    ``__consumer_offsets``, 50 partitions), run a transaction that carries offsets (it
    creates ``__transaction_state``) and have an idempotent producer ask for its id (a KRaft
    broker asks its controller for a block of ids first). Without it, whichever job came
    first paid for all that: the first idempotent hand loop's run spent ~0.57 s more
    outside its steady state than its later runs."""
    group = f"bench-warmup-{uuid.uuid4().hex}"
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
        # Errors only: its "coordinator load in progress: retrying" warnings are what this
        # warm-up is for.
        transactional = Producer(
            {"bootstrap.servers": bootstrap, "transactional.id": f"{group}-txn", "log_level": 3}
        )
        transactional.init_transactions(60)
        transactional.begin_transaction()
        transactional.produce(topic, b"warm-up")
        transactional.send_offsets_to_transaction(
            [TopicPartition(topic, 0, 0)], consumer.consumer_group_metadata(), 60
        )
        transactional.commit_transaction(60)
    finally:
        consumer.close()
    idempotent = producer(bootstrap, **{"enable.idempotence": True, "acks": "all"})
    idempotent.produce(topic, b"warm-up")
    if idempotent.flush(60):
        raise RuntimeError(f"the broker warm-up's record to {topic} was not delivered in 60 s")


def stop_offsets(total: int, partitions: int) -> dict[int, int]:
    """End offset of each partition after records 0..total-1 went to seq % partitions."""
    return {p: len(range(p, total, partitions)) for p in range(partitions)}


class Check:
    """Reads a topic back and counts records by sequence number.

    ``valid``: every record carries a known sequence number (and, keyed, the key that
    belongs to it); ``duplicates``: records seen more than once; ``gaps``: records missing
    inside what was processed (for each input partition, everything up to the highest
    sequence number read from it must be there); ``markers``: offsets that hold no
    readable record (transaction markers, aborted records); ``first_append`` /
    ``last_append``: the broker's LogAppendTime of the first and last output record.
    """

    def __init__(self, total_input: int, partitions_in: int, keyed: bool) -> None:
        self.total_input = total_input
        self.partitions_in = partitions_in
        self.keyed = keyed
        self.counts = bytearray(total_input)
        self.records = 0
        self.invalid = 0
        self.first_append = float("inf")
        self.last_append = 0.0
        self.markers = 0
        self.on_batch: Callable[[list[Any], float], None] | None = None

    def add(self, batch: list[Any]) -> None:
        counts, total, keyed = self.counts, self.total_input, self.keyed
        first = self.first_append
        last = self.last_append
        for m in batch:
            v = m.value()
            try:
                seq = int(v[:12])
            except (TypeError, ValueError):
                self.invalid += 1
                continue
            if seq >= total or (keyed and m.key() != b"k" + v[1:12]):
                self.invalid += 1
                continue
            if counts[seq] < 255:
                counts[seq] += 1
            ts_type, ts = m.timestamp()
            if ts_type == TS_LOG_APPEND_TIME:
                ts /= 1000
                if ts < first:
                    first = ts
                if ts > last:
                    last = ts
        self.first_append, self.last_append = first, last
        self.records += len(batch)

    @property
    def distinct(self) -> int:
        return len(self.counts) - self.counts.count(0)

    @property
    def duplicates(self) -> int:
        return self.records - self.invalid - self.distinct

    @property
    def gaps(self) -> int:
        missing = 0
        counts, n = self.counts, self.partitions_in
        for p in range(n):
            seen = counts[p::n].rstrip(b"\x00")
            missing += seen.count(0)
        return missing


def read_back(
    bootstrap: str,
    topic: str,
    check: Check,
    *,
    committed: bool,
    expect: int,
    timeout: float = 120.0,
    settle: float = 3.0,
    on_batch: Callable[[list[Any], float], None] | None = None,
    wait_first: float = 0.0,
) -> Check:
    """Read ``topic`` from the start into ``check`` until ``expect`` records arrived, or
        nothing new came for ``settle`` seconds after every partition reached its end (the end
        offset of a read_committed reader is the last stable offset, which trails a commit by a
        few milliseconds), or ``timeout``. While the output is still empty the settle wait only
    starts after ``wait_first`` seconds (a job that is still starting has written nothing)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-check-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed" if committed else "read_uncommitted",
            "fetch.queue.backoff.ms": "10",
            "queued.min.messages": "200000",
            # An idle fetch parked at the end for the default 500 ms delays both the end
            # of partition event and the watermark queries queued behind it.
            "fetch.wait.max.ms": 10,
        }
    )
    meta = consumer.list_topics(topic, timeout=30).topics[topic]
    parts = sorted(meta.partitions)
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    at_end: set[int] = set()
    started = time.monotonic()
    deadline = started + timeout
    quiet_since = started
    try:
        while time.monotonic() < deadline:
            batch = consumer.consume(10_000, 0.005 if on_batch else 0.2)
            now = time.time()
            data = []
            for m in batch:  # in order: a partition's EOF may follow its data in one batch
                err = m.error()
                if err is None:
                    data.append(m)
                    at_end.discard(m.partition() or 0)
                elif err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(m.partition() or 0)
                else:
                    raise RuntimeError(f"reading {topic} back: {err}")
            if data:
                check.add(data)
                if on_batch is not None:
                    on_batch(data, now)
                quiet_since = time.monotonic()
            if check.records >= expect and len(at_end) == len(parts):
                break
            waiting = check.records == 0 and time.monotonic() - started < wait_first
            if (
                len(at_end) == len(parts)
                and time.monotonic() - quiet_since > settle
                and not waiting
            ):
                break
        consumer.unassign()
        ends = 0
        for p in parts:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            ends += high
        check.markers = ends - check.records
    finally:
        consumer.close()
    return check
