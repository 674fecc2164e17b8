"""The hand-written confluent-kafka loops streamplug is measured against: the fastest plain
loop we can write for each job, one consumer and (for Kafka -> Kafka) one producer.

``mode``:

* ``consume``: read every record (its value, and its key when ``keyed``), nothing else;
* ``NONE``: consume -> produce, one flush at the end;
* ``AT_LEAST_ONCE``: idempotent producer (acks=all); every ``checkpoint_ms`` a ``flush()``
  (all acks) then a synchronous offset commit, which is what a checkpoint does;
* ``EXACTLY_ONCE``: transactional producer; every ``checkpoint_ms``
  ``send_offsets_to_transaction`` + ``commit_transaction`` + ``begin_transaction``.

``timestamps``: each output record gets its input record's timestamp, as streamplug's and
Flink's sinks write it (false: the producer stamps the current time, less work).

``discover``: the loop finds its input's extent before it reads, as a bounded job's
enumerator does (``input_extent``), and reads to those end offsets; without it the loop is
told: it reads ``partitions`` partitions from offset 0 and stops after ``records`` records
(the latency runs, whose input is still being written, and bench_scaling.py's loops).
``assign`` (optional, told loops only): the partitions this loop reads (all of them without
it); ``records`` is then the count in those partitions.

Each batch's messages are checked for errors (``any(map(Message.error, batch))``): librdkafka
hands consumer errors out as messages in the batch, so a loop that does not look counts an
error as a record; the source does the same scan (about 38 ns a record here, measured with a
500-record batch of this benchmark's records).

Batches of up to 500 taken without waiting (``consume(500, 0)``: whatever librdkafka has
fetched; ``consume`` with a timeout waits to fill the whole batch, holding back the records
it already has), and only when there is nothing a blocking ``poll`` for the next record;
streamplug's source reads the same way, 500 being its ``poll.max.records``. The batch size
is the same on purpose: a loop holding 10,000 ``Message`` objects at a time paid Python's
cyclic garbage collector for them (a third of its CPU, see benchmarks/profiles/), which made
the framework look faster than the loop. Values (and keys, timestamps) are taken with
``map(Message.value, batch)`` and produced with ``starmap(produce, zip(...))``, in C, as the
source and the sink do: a Python ``for`` loop over the records costs ~10% more CPU per record
and made streamplug look faster than the loop. The fetch tuning streamplug's source uses
(``fetch.queue.backoff.ms=10``, ``queued.min.messages=200000``), error-only delivery reports.
Idempotent and transactional producers wait for a learned broker's metadata before their
first record, as streamplug's sink does (``await_learned_broker``). The loop's clients are
closed before its window ends, as a job's are before ``execute()`` returns and as every
peer's are: a consumer's close took 5-28 ms here, which the loops used to leave out.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from itertools import repeat, starmap
from operator import itemgetter, length_hint
from typing import Any

import _common
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

# Imported before the measured window, where the frameworks have it imported too (a first
# import inside it took ~20 ms): the extent's admin client, and ``list_topics``'s answers.
from confluent_kafka.admin import AdminClient, OffsetSpec

_second = itemgetter(1)
TUNING = {"fetch.queue.backoff.ms": "10", "queued.min.messages": "200000"}
BATCH = 500


def await_learned_broker(producer: Producer, topic: str) -> None:
    """Ask for metadata until a broker learned from metadata answers (node id >= 0), as
    streamplug's sink does on a thread of its own (``_startup``): otherwise an idempotent or
    transactional producer whose first request came before that connection waited
    librdkafka's 500 ms timer for its producer id, in some runs and not others, which
    flattered every framework compared with this loop. Consumption starts meanwhile: the
    consumer was assigned before."""
    deadline = time.monotonic() + 2.0
    while producer.list_topics(topic, timeout=2.0).orig_broker_id < 0:
        if time.monotonic() > deadline:
            return
        time.sleep(0.002)


def input_extent(bootstrap: str, topic: str) -> dict[int, tuple[int, int]]:
    """Each partition of ``topic`` with its first and end offsets now: what a loop that
    reads a topic to its end must ask the broker before it reads, as a bounded job's
    enumerator does, and asked the way the enumerator asks: an admin client of its own,
    made beside the consumer so that both connect at once (``enable.sparse.connections``
    off, streamplug's admin default, see docs/source.md), the partitions, then the first
    offsets, then the end offsets."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "enable.sparse.connections": "false"})
    partitions = sorted(admin.list_topics(topic, timeout=10).topics[topic].partitions)
    tps = [TopicPartition(topic, p) for p in partitions]

    def offsets(spec: OffsetSpec) -> dict[int, int]:
        found = admin.list_offsets(dict.fromkeys(tps, spec), request_timeout=10)
        return {tp.partition: future.result(10).offset for tp, future in found.items()}

    first, end = offsets(OffsetSpec.earliest()), offsets(OffsetSpec.latest())
    return {p: (first[p], end[p]) for p in partitions}


def main() -> None:
    s = _common.spec()
    bootstrap, source, sink = s["bootstrap"], s["in"], s.get("out")
    mode, keyed, records = s["mode"], bool(s["keyed"]), int(s["records"])
    partitions, checkpoint_s = int(s["partitions"]), s.get("checkpoint_ms", 1000) / 1000
    poll_s = float(s.get("poll_s", 0.5))

    window = _common.Window()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-hand-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            **TUNING,
        }
    )
    if s.get("discover"):
        extent = input_extent(bootstrap, source)
        consumer.assign([TopicPartition(source, p, lo) for p, (lo, _) in extent.items()])
        records = sum(hi - lo for lo, hi in extent.values())
    else:
        # Told: concrete offsets from 0 (OFFSET_BEGINNING costs a ListOffsets round trip
        # before the first fetch). ``assign``: a subset of the partitions, for several
        # loops side by side (the plain processes bench_scaling.py measures the machine's
        # ceiling with).
        assigned = s.get("assign") or range(partitions)
        consumer.assign([TopicPartition(source, p, 0) for p in assigned])
    done = 0
    consume, poll_one = consumer.consume, consumer.poll

    def next_batch(limit: int) -> list[Any]:
        batch = consume(limit, 0)
        if not batch:
            first = poll_one(poll_s)
            if first is None:
                return []
            batch = [first, *consume(limit - 1, 0)] if limit > 1 else [first]
        # librdkafka hands its consumer errors (a topic deleted, a partition's fetch
        # refused) out in the batch as messages: every confluent-kafka consumer looks at
        # each message's error(), or it counts an error as a record.
        if any(map(Message.error, batch)):
            raise RuntimeError(f"consumer error: {next(filter(None, map(Message.error, batch)))}")
        return batch

    if mode == "consume":
        first = None
        while done < records:
            batch = next_batch(min(BATCH, records - done))
            if first is None and batch:
                first = time.time()
            values = list(map(Message.value, batch))
            if keyed:
                keys = list(map(Message.key, batch))
                assert len(keys) == len(values)
            done += len(values)
        consumer.close()
        window.report("confluent-kafka", processed=done, t_first=first)
        return

    errors: list[KafkaError] = []
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "delivery.report.only.error": True,
        # Keys hashed as the Java producer (and so streamplug's and Flink's sinks) hash them:
        # the same output partitions. librdkafka's own default is CRC32 (callgrind, 12-byte
        # keys: ~240 instructions a record in crc32_z, against ~60 in rd_murmur2).
        "partitioner": "murmur2_random",
        "on_delivery": lambda err, _msg: errors.append(err) if err is not None else None,
    }
    if mode != "NONE":
        conf.update({"acks": "all", "enable.idempotence": True})
    if mode == "EXACTLY_ONCE":
        conf["transactional.id"] = f"bench-hand-{uuid.uuid4().hex}"
    producer = Producer(conf)
    if mode != "NONE":
        await_learned_broker(producer, sink)
    if mode == "EXACTLY_ONCE":
        producer.init_transactions()
        producer.begin_transaction()
    produce, poll = producer.produce, producer.poll
    positions: dict[int, int] = {}
    last_commit = time.monotonic()

    def checkpoint() -> None:
        offsets = [TopicPartition(source, p, o) for p, o in positions.items()]
        if mode == "AT_LEAST_ONCE":
            while producer.flush(1.0):
                pass
            if errors:
                raise RuntimeError(f"delivery failed: {errors[0]}")
            if offsets:
                consumer.commit(offsets=offsets, asynchronous=False)
        elif mode == "EXACTLY_ONCE":
            if offsets:
                producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata())
            producer.commit_transaction()
            producer.begin_transaction()

    def send(value: bytes, key: bytes | None, timestamp: int = 0) -> None:
        while True:
            try:
                produce(sink, value, key, -1, None, None, timestamp)
                return
            except BufferError:
                poll(0.005)

    def produce_batch(batch: list[Any]) -> None:
        """The batch's records to ``sink``, iterated in C as streamplug's sink does:
        ``starmap`` over ``zip``ped columns, positional up to the timestamp (key, partition
        -1 for the partitioner, on_delivery and callback None for the producer-wide one). A
        full queue raises BufferError with the refused record already taken from
        ``values``: its length hint says which one it was; it is waited in, and the same
        ``starmap`` goes on after it."""
        values = list(map(Message.value, batch))
        keys = list(map(Message.key, batch)) if keyed else None
        stamps = list(map(_second, map(Message.timestamp, batch))) if stamped else None
        remaining = iter(values)
        if stamps is not None:
            key_column = keys if keys is not None else repeat(None)
            args: Any = zip(
                repeat(sink), remaining, key_column, repeat(-1), repeat(None), repeat(None), stamps
            )
        elif keys is not None:
            args = zip(repeat(sink), remaining, keys)
        else:
            args = zip(repeat(sink), remaining)
        calls = starmap(produce, args)
        while True:
            try:
                deque(calls, 0)
                return
            except BufferError:
                refused = len(values) - length_hint(remaining) - 1
                send(
                    values[refused],
                    keys[refused] if keys is not None else None,
                    stamps[refused] if stamps is not None else 0,
                )

    # --self-test only: make this run's output wrong on purpose, to show the check sees it.
    sabotage = s.get("sabotage")
    stamped = bool(s.get("timestamps"))
    while done < records:
        batch = next_batch(min(BATCH, records - done))
        if sabotage and batch:
            batch = batch[1:] if sabotage == "drop" else [batch[0], *batch]
            done += 1 if sabotage == "drop" else -1
            sabotage = None
        produce_batch(batch)
        # The last offset of each partition in the batch, in C: a dict keeps a key's last
        # value, and a batch holds each partition's records in offset order.
        last = dict(zip(map(Message.partition, batch), map(Message.offset, batch), strict=True))
        positions.update({p: o + 1 for p, o in last.items()})
        done += len(batch)
        poll(0)
        if mode != "NONE" and time.monotonic() - last_commit >= checkpoint_s:
            checkpoint()
            last_commit = time.monotonic()
    if mode == "NONE":
        producer.flush()
        if errors:
            raise RuntimeError(f"delivery failed: {errors[0]}")
    else:
        checkpoint()
        if mode == "EXACTLY_ONCE":
            producer.abort_transaction()  # the empty one the last checkpoint opened
    consumer.close()
    producer.close()
    window.report("confluent-kafka", processed=done)


if __name__ == "__main__":
    main()
