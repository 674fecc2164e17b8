"""The source's own options, and how they become librdkafka client properties."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import attrs

from streamplug.errors import ConfigError
from streamplug_kafka_source._compat import HAS_FETCH_QUEUE_BACKOFF

log = logging.getLogger(__name__)

# -- option keys (Flink's KafkaSourceOptions, plus streamplug's own) -----------------------

CLIENT_ID_PREFIX = "client.id.prefix"
PARTITION_DISCOVERY_INTERVAL_MS = "partition.discovery.interval.ms"
REGISTER_CONSUMER_METRICS = "register.consumer.metrics"
COMMIT_OFFSETS_ON_CHECKPOINT = "commit.offsets.on.checkpoint"
BAD_RECORD_POLICY = "bad.record.policy"
DEAD_LETTER_TOPIC = "bad.record.dead.letter.topic"
POLL_MAX_RECORDS = "poll.max.records"
POLL_TIMEOUT_MS = "poll.timeout.ms"
# The Java client's bound on a blocking call; here it bounds the enumerator's metadata and
# offsets requests, so an unreachable bootstrap address fails the job within it.
API_TIMEOUT_MS = "default.api.timeout.ms"
DEFAULT_API_TIMEOUT_MS = "30000"

SOURCE_ONLY_KEYS = frozenset(
    {
        CLIENT_ID_PREFIX,
        PARTITION_DISCOVERY_INTERVAL_MS,
        REGISTER_CONSUMER_METRICS,
        COMMIT_OFFSETS_ON_CHECKPOINT,
        BAD_RECORD_POLICY,
        DEAD_LETTER_TOPIC,
        POLL_MAX_RECORDS,
        POLL_TIMEOUT_MS,
        API_TIMEOUT_MS,
    }
)

# Java client settings with no librdkafka counterpart: librdkafka always hands out bytes,
# which is exactly what Flink forces these to (ByteArrayDeserializer).
JAVA_ONLY_KEYS = frozenset({"key.deserializer", "value.deserializer"})

# Settings only a consumer understands; admin clients and the dead-letter producer get the
# rest (bootstrap, security, client tuning), so librdkafka does not warn about each one.
CONSUMER_ONLY_PREFIXES = (
    "group.",
    "enable.auto.",
    "auto.commit.",
    "auto.offset.reset",
    "isolation.level",
    "fetch.",
    "queued.",
    "max.partition.fetch.bytes",
    "enable.partition.eof",
    "check.crcs",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "partition.assignment.strategy",
    "max.poll.interval.ms",
    "consume.callback.max.messages",
    "offset.store.",
    "allow.auto.create.topics",
    "statistics.interval.ms",
)

# Consumer tuning the source applies unless the user set the property. Measured here
# (shared/notes/brokers.md): librdkafka's default fetch.queue.backoff.ms=1000 makes a
# consumer that drains its pre-fetch queue wait a whole second before fetching again once
# queued.min.messages is reached, which caps a catching-up reader near 130k records/s;
# 10 ms lets the fetcher refill the queue as fast as the reader empties it (~1M records/s),
# while queued.min.messages still bounds the memory a fast broker can push into the queue.
# librdkafka < 2.3 has no fetch.queue.backoff.ms (and refuses unknown settings).
CONSUMER_DEFAULTS: Mapping[str, str] = {
    **({"fetch.queue.backoff.ms": "10"} if HAS_FETCH_QUEUE_BACKOFF else {}),
    "queued.min.messages": "200000",
}

# Client tuning for the reader's consumer and the enumerator's admin client, unless the
# user set it. A new librdkafka client first talks to the bootstrap address, learns the
# broker ids from its metadata and then opens the broker connections, but waits
# reconnect.backoff.ms / 2 (50 ms by default) before that next connection; a request made
# in that window (the enumerator's topic listing, the reader's first metadata and fetch)
# waits for it. Measured on a local broker: the enumerator's first listing 55 ms -> ~5 ms,
# a job's first record ~0.09 s -> ~0.04 s after execute(). The backoff still doubles on
# every failed attempt up to reconnect.backoff.max.ms, so an unreachable broker is not
# hammered.
CLIENT_DEFAULTS: Mapping[str, str] = {"reconnect.backoff.ms": "10"}

# The enumerator's admin client also opens every broker connection at once. On librdkafka
# 2.16 a new client's first metadata answer from the bootstrap address makes it drop that
# connection, failing the application's request still in flight on it; the request is sent
# again once the next broker connection may be opened, about 10 ms later in librdkafka's
# debug log (its pause between new connections, already at its floor with the backoff
# above), unless the learned brokers are being connected anyway. Measured on a local broker
# (benchmarks/bench_client_start.py, 20 tries each): a new admin client's first topic
# listing 14.7-15.2 ms median with sparse connections, 3.5-3.8 ms without; that listing is
# on the path from execute() to a job's first record. An admin client asks every
# partition's leader for offsets anyway, so the connections are not wasted.
ADMIN_DEFAULTS: Mapping[str, str] = {"enable.sparse.connections": "false"}

DEFAULT_STATISTICS_INTERVAL_MS = "5000"
# Kafka's own max.poll.records default, and the cheapest batch measured here: a batch's
# Message objects (and a keyed path's tuples) are tracked by the cyclic garbage collector,
# and a batch larger than its first generation (700 allocations) survives collections into
# the oldest generation, whose full collections then take 18-32% of a reading process's
# CPU. CPython 3.11, 1M records of 100 bytes, 3 runs each: the source alone used 0.87-0.98
# CPU-s at 10,000 records per poll, 0.63-0.70 at 500; a keyed Kafka -> Kafka job 2.38 and
# 2.09. Per-batch work (consume call, runtime step, produce loop) stays small at 500.
DEFAULT_POLL_MAX_RECORDS = 500
DEFAULT_POLL_TIMEOUT_MS = 100

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"property {key}={value!r} must be true or false", option=key)


def parse_int(key: str, value: Any, minimum: int | None = None) -> int:
    try:
        result = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"property {key}={value!r} must be an integer", option=key) from None
    if minimum is not None and result < minimum:
        raise ConfigError(f"property {key}={value!r} must be >= {minimum}", option=key)
    return result


def is_consumer_only(key: str) -> bool:
    return key.startswith(CONSUMER_ONLY_PREFIXES)


@attrs.frozen
class SourceSettings:
    """The parsed, validated source options (everything but librdkafka's own)."""

    client_id_prefix: str
    discovery_interval_ms: int
    register_consumer_metrics: bool
    commit_offsets_on_checkpoint: bool
    poll_max_records: int
    poll_timeout_ms: int
    api_timeout_ms: int = int(DEFAULT_API_TIMEOUT_MS)

    @classmethod
    def parse(
        cls, properties: Mapping[str, str], group_id: str | None, bounded: bool
    ) -> SourceSettings:
        discovery = parse_int(
            PARTITION_DISCOVERY_INTERVAL_MS,
            properties.get(PARTITION_DISCOVERY_INTERVAL_MS, "-1"),
        )
        if bounded and discovery > 0:
            # As in Flink: a bounded read is a fixed set of partitions.
            log.info("%s is ignored in bounded mode", PARTITION_DISCOVERY_INTERVAL_MS)
            discovery = -1
        commit_set = COMMIT_OFFSETS_ON_CHECKPOINT in properties
        commit = parse_bool(
            COMMIT_OFFSETS_ON_CHECKPOINT, properties.get(COMMIT_OFFSETS_ON_CHECKPOINT, "true")
        )
        if commit and not group_id:
            if commit_set:
                raise ConfigError(
                    f"{COMMIT_OFFSETS_ON_CHECKPOINT}=true needs a consumer group to commit to: "
                    f"call set_group_id(...) or set {COMMIT_OFFSETS_ON_CHECKPOINT}=false",
                    option=COMMIT_OFFSETS_ON_CHECKPOINT,
                )
            commit = False
        return cls(
            client_id_prefix=str(
                properties.get(CLIENT_ID_PREFIX) or group_id or "streamplug-kafka-source"
            ),
            discovery_interval_ms=discovery,
            register_consumer_metrics=parse_bool(
                REGISTER_CONSUMER_METRICS, properties.get(REGISTER_CONSUMER_METRICS, "true")
            ),
            commit_offsets_on_checkpoint=commit,
            poll_max_records=parse_int(
                POLL_MAX_RECORDS, properties.get(POLL_MAX_RECORDS, DEFAULT_POLL_MAX_RECORDS), 1
            ),
            poll_timeout_ms=parse_int(
                POLL_TIMEOUT_MS, properties.get(POLL_TIMEOUT_MS, DEFAULT_POLL_TIMEOUT_MS), 0
            ),
            api_timeout_ms=parse_int(
                API_TIMEOUT_MS, properties.get(API_TIMEOUT_MS, DEFAULT_API_TIMEOUT_MS), 1
            ),
        )


def client_properties(properties: Mapping[str, str]) -> dict[str, str]:
    """The user's properties minus the source's own options and Java-only settings."""
    result = {}
    for key, value in properties.items():
        if key in SOURCE_ONLY_KEYS:
            continue
        if key in JAVA_ONLY_KEYS:
            log.warning(
                "Kafka source ignores %s: records always arrive as bytes and the "
                "deserializer set with set_deserializer() reads them",
                key,
            )
            continue
        result[key] = value
    return result


def common_properties(properties: Mapping[str, str]) -> dict[str, str]:
    """Client properties any client role accepts (for admin clients and producers)."""
    return {k: v for k, v in client_properties(properties).items() if not is_consumer_only(k)}
