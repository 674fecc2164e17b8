"""Small, generic Kafka admin helpers for tests and plugins.

Every function takes ``client_config``: either a bootstrap string or a full librdkafka
configuration mapping (so secured clusters work unchanged). They work against real
Kafka; on librdkafka's mock cluster only the read helpers work, because the mock does
not implement CreateTopics (use ``MockCluster.create_topic`` there).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any, Literal

import attrs
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
    libversion,
)
from confluent_kafka.admin import AdminClient, NewTopic

__all__ = [
    "ClientConfig",
    "PartitionInfo",
    "committed_offsets",
    "create_topic",
    "describe_partitions",
    "end_offsets",
    "group_offsets",
    "read_all",
    "wait_for_topic",
]

ClientConfig = str | Mapping[str, Any]
IsolationLevel = Literal["read_committed", "read_uncommitted"]


# Drain a backlog fast: librdkafka's 1 s default fetch-queue backoff throttles a
# consumer reading a topic to the end. The setting exists since librdkafka 2.3; older
# system builds (used for GSSAPI tests) reject unknown properties.
_FAST_DRAIN: dict[str, Any] = (
    {"fetch.queue.backoff.ms": 10} if libversion()[1] >= 0x02030000 else {}
)


# What a group's coordinator answers while it is being set up: a fresh cluster creating
# __consumer_offsets, or a coordinator moving to another broker.
_COORDINATOR_SETTLING = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)


def committed_offsets(
    consumer: Consumer, partitions: list[TopicPartition], timeout_s: float
) -> list[TopicPartition]:
    """The committed offsets of ``consumer``'s group for ``partitions`` (offset -1001 where
    nothing is committed), asking again while the group's coordinator settles, until
    ``timeout_s``; other errors, and the last one at the deadline, raise KafkaException.

    ``consumer`` should be a consumer of the group that never subscribes, so it never joins
    the group. Not ``AdminClient.list_consumer_group_offsets``: librdkafka (up to at least
    2.16, issue #5040) dereferences a null consumer-group handle when that request is
    answered NOT_COORDINATOR and crashes the process (SIGSEGV), which is what a fresh
    cluster answers until its __consumer_offsets topic exists."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return list(consumer.committed(partitions, timeout=timeout_s))
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            settling = isinstance(error, KafkaError) and error.code() in _COORDINATOR_SETTLING
            if not settling or time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def group_offsets(
    client_config: ClientConfig, group: str, topic: str, partitions: int, timeout_s: float = 10
) -> dict[int, int]:
    """Partition -> committed offset of ``group`` on the first ``partitions`` partitions of
    ``topic`` (-1001 where nothing is committed), without joining the group."""
    consumer = Consumer(_config(client_config, **{"group.id": group, "enable.auto.commit": False}))
    try:
        found = committed_offsets(
            consumer, [TopicPartition(topic, p) for p in range(partitions)], timeout_s
        )
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found}


def _config(client_config: ClientConfig, **extra: Any) -> dict[str, Any]:
    if isinstance(client_config, str):
        conf: dict[str, Any] = {"bootstrap.servers": client_config}
    else:
        conf = dict(client_config)
    conf.update(extra)
    return conf


def _topic_metadata(metadata: Any, topic: str) -> Any:
    tmeta = metadata.topics.get(topic)
    if tmeta is None:
        raise KafkaException(
            KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, f"topic {topic!r} absent from metadata")
        )
    if tmeta.error is not None:
        err = tmeta.error
        raise KafkaException(
            KafkaError(err.code(), f"topic {topic!r} is not available: {err.str()}")
        )
    return tmeta


@attrs.frozen
class PartitionInfo:
    """One partition as cluster metadata describes it (leader -1 = no leader)."""

    topic: str
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


def describe_partitions(
    client_config: ClientConfig, topic: str, timeout: float = 10.0
) -> list[PartitionInfo]:
    """Return the topic's partitions sorted by number.

    Raises ``KafkaException`` with the broker's error (UNKNOWN_TOPIC_OR_PART,
    TOPIC_AUTHORIZATION_FAILED, ...) when the topic cannot be described.
    """
    client = AdminClient(_config(client_config))
    tmeta = _topic_metadata(client.list_topics(topic=topic, timeout=timeout), topic)
    return [
        PartitionInfo(
            topic=topic,
            partition=p.id,
            leader=p.leader,
            replicas=tuple(p.replicas),
            isr=tuple(p.isrs),
        )
        for p in sorted(tmeta.partitions.values(), key=lambda p: p.id)
    ]


def wait_for_topic(
    client_config: ClientConfig,
    topic: str,
    partitions: int | None = None,
    timeout: float = 30.0,
    *,
    full_isr: bool = False,
) -> list[PartitionInfo]:
    """Wait until ``topic`` (with ``partitions`` partitions, if given) has a leader for
    every partition — and, with ``full_isr``, every replica in sync. Returns the
    partitions; raises TimeoutError naming what was still missing."""
    deadline = time.monotonic() + timeout
    last = "no metadata yet"
    while True:
        try:
            infos = describe_partitions(client_config, topic, timeout=min(5.0, timeout))
            if partitions is not None and len(infos) != partitions:
                last = f"{len(infos)} of {partitions} partitions visible"
            elif not infos:
                last = "no partitions visible"
            elif any(p.leader < 0 for p in infos):
                last = f"leaderless partitions {[p.partition for p in infos if p.leader < 0]}"
            elif full_isr and any(set(p.isr) != set(p.replicas) for p in infos):
                lagging = [p.partition for p in infos if set(p.isr) != set(p.replicas)]
                last = f"under-replicated partitions {lagging}"
            else:
                return infos
        except KafkaException as exc:
            last = str(exc)
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic!r} not ready after {timeout:.0f} s: {last}")
        time.sleep(0.1)


def create_topic(
    client_config: ClientConfig,
    name: str,
    partitions: int = 1,
    replication_factor: int = 1,
    config: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    *,
    exist_ok: bool = False,
) -> list[PartitionInfo]:
    """Create a topic and wait until every partition has a leader.

    Raises ``KafkaException`` from the broker (e.g. TOPIC_ALREADY_EXISTS unless
    ``exist_ok``, INVALID_REPLICATION_FACTOR when there are too few brokers).
    """
    client = AdminClient(_config(client_config))
    new_topic = NewTopic(
        name,
        num_partitions=partitions,
        replication_factor=replication_factor,
        config=dict(config or {}),
    )
    futures = client.create_topics([new_topic], operation_timeout=timeout, request_timeout=timeout)
    try:
        futures[name].result(timeout)
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        if not (
            exist_ok
            and isinstance(err, KafkaError)
            and err.code() == KafkaError.TOPIC_ALREADY_EXISTS
        ):
            raise
    return wait_for_topic(client_config, name, partitions, timeout)


def end_offsets(
    client_config: ClientConfig,
    topic: str,
    isolation_level: IsolationLevel = "read_uncommitted",
    timeout: float = 10.0,
) -> dict[int, int]:
    """Partition -> end offset: the high watermark, or with ``read_committed`` the
    last stable offset (where a transactional consumer stops)."""
    consumer = _offsets_consumer(client_config, isolation_level)
    try:
        return _partition_ends(consumer, topic, timeout)
    finally:
        consumer.close()


def _offsets_consumer(client_config: ClientConfig, isolation_level: IsolationLevel) -> Consumer:
    return Consumer(
        _config(
            client_config,
            **{
                "group.id": f"streamplug-admin-{uuid.uuid4().hex}",
                "isolation.level": isolation_level,
            },
        )
    )


def _partition_ends(consumer: Consumer, topic: str, timeout: float) -> dict[int, int]:
    """Each partition's end as ``consumer``'s isolation level sees it, asked of the broker."""
    tmeta = _topic_metadata(consumer.list_topics(topic, timeout=timeout), topic)
    result: dict[int, int] = {}
    for pid in sorted(tmeta.partitions):
        _low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, pid), timeout=timeout, cached=False
        )
        result[pid] = high
    return result


def _wait_for_stable_end(client_config: ClientConfig, topic: str, settle_s: float) -> None:
    """Wait up to ``settle_s`` until no transaction hides records written so far."""
    end = end_offsets(client_config, topic, "read_uncommitted")
    deadline = time.monotonic() + settle_s
    # One consumer asked again, not a new client every 50 ms.
    consumer = _offsets_consumer(client_config, "read_committed")
    try:
        while True:
            stable = _partition_ends(consumer, topic, timeout=10.0)
            if all(stable.get(p, 0) >= offset for p, offset in end.items()):
                return
            if time.monotonic() >= deadline:
                return
            time.sleep(0.05)
    finally:
        consumer.close()


def read_all(
    client_config: ClientConfig,
    topic: str,
    isolation_level: IsolationLevel = "read_committed",
    timeout: float = 30.0,
    settle_s: float = 2.0,
) -> list[Message]:
    """Read every record of ``topic`` from the beginning up to its current end and
    return them ordered by (partition, offset).

    With ``read_committed`` (the default: what a downstream consumer of an
    exactly-once sink sees) records of open or aborted transactions are not returned
    and reading stops at the last stable offset. Raises TimeoutError if the end is
    not reached in time (e.g. an open transaction that never ends is fine — the LSO
    stops there — but an unreachable leader is not).

    A transaction committed a moment ago can still be unreadable: the coordinator
    answers the commit before its markers reach the partitions, so the last stable
    offset lags for a few milliseconds. Where it is short of the end, ``read_committed``
    reads first wait up to ``settle_s`` for it to catch up, so the whole output of a job
    that has just finished is read; a transaction still open after that stays unread.
    """
    if isolation_level == "read_committed" and settle_s > 0:
        _wait_for_stable_end(client_config, topic, settle_s)
    conf = _config(
        client_config,
        **{
            "group.id": f"streamplug-read-all-{uuid.uuid4().hex}",
            "isolation.level": isolation_level,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            **_FAST_DRAIN,
        },
    )
    consumer = Consumer(conf)
    records: list[Message] = []
    try:
        tmeta = _topic_metadata(consumer.list_topics(topic, timeout=timeout), topic)
        pending = set(tmeta.partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in sorted(pending)])
        deadline = time.monotonic() + timeout
        # EOF is reported when the fetch position reaches the high watermark (the
        # LSO under read_committed): the end as of now, like Flink's bounded mode.
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"read_all({topic!r}) did not reach the end of partitions "
                    f"{sorted(pending)} within {timeout:.0f} s ({len(records)} records read)"
                )
            for msg in consumer.consume(10000, timeout=0.5):
                err = msg.error()
                if err is None:
                    records.append(msg)
                elif err.code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition() or 0)
                elif not err.retriable():
                    raise KafkaException(err)
    finally:
        consumer.close()
    records.sort(key=lambda m: (m.partition() or 0, m.offset() or 0))
    return records
