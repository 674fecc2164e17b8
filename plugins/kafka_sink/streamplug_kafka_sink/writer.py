"""Writers for DeliveryGuarantee.NONE and AT_LEAST_ONCE, and the produce loop every
writer shares.

AT_LEAST_ONCE: ``flush(False)`` at each checkpoint waits until every record handed to the
producer so far is acknowledged by all in-sync replicas, and raises if any delivery failed,
which fails the checkpoint: a failed record is never dropped silently. NONE never waits at
a checkpoint; failures are logged and counted.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import repeat, starmap
from operator import length_hint
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from streamplug.api.context import SinkContext
from streamplug.api.sink import DeliveryGuarantee, SinkWriter
from streamplug.errors import StreamplugError
from streamplug.plugin.records import ProducingBatch, SubtaskInfo, WriterOutcome
from streamplug_kafka_common.callbacks import ChainedErrorCallback
from streamplug_kafka_common.failures import unrecoverable_kafka_error
from streamplug_kafka_sink._startup import StartupCheck
from streamplug_kafka_sink.metrics import WriterMetrics
from streamplug_kafka_sink.record_serializer import (
    KafkaRecordSerializationSchema,
    KafkaSinkContext,
    _BuiltSchema,
)

__all__ = ["DeliveryErrors", "KafkaDeliveryError", "KafkaWriter", "RecordEmitter"]

log = logging.getLogger(__name__)

_METADATA_MAX_AGE_S = 30.0
_FULL_QUEUE_POLL_S = 0.005

# Runs an iterator to its end in C, keeping nothing: a deque of maxlen 0 never stores an
# item, so one shared by every writer thread has no state to race on.
_exhaust: Callable[[Iterable[Any]], None] = deque(maxlen=0).extend


class KafkaDeliveryError(StreamplugError):
    """Records could not be delivered; the checkpoint (and the attempt) fails so the
    records are replayed from the last checkpoint instead of being lost."""


class DeliveryErrors:
    """Collects delivery failures reported by a producer's callback (which runs inside
    ``poll``/``flush``, on whichever thread called them)."""

    _SAMPLES = 5

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.samples: list[str] = []
        self.total = 0
        self.last: KafkaError | None = None

    def on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            return
        try:
            where = f"{msg.topic()}[{msg.partition()}]"
        except Exception:
            where = "?"
        with self._lock:
            self.last = err
            self.count += 1
            self.total += 1
            if len(self.samples) < self._SAMPLES:
                self.samples.append(f"{where}: {err.str()}")

    def take(self) -> tuple[int, list[str]]:
        with self._lock:
            count, samples = self.count, self.samples
            self.count, self.samples = 0, []
            return count, samples

    def raise_if_any(self, what: str) -> None:
        count, samples = self.take()
        if count:
            last = self.last
            # A missing topic or a denied ACL fails every replay the same way: say so, and
            # let the runtime fail the job instead of restarting it.
            hopeless = (
                unrecoverable_kafka_error(
                    last, f"Kafka sink: {count} record(s) not delivered {what}"
                )
                if last is not None
                else None
            )
            if hopeless is not None:
                raise hopeless from KafkaDeliveryError("; ".join(samples))
            raise KafkaDeliveryError(
                f"{count} record(s) could not be delivered {what}: {'; '.join(samples)}. The "
                "checkpoint fails and the job replays from the last completed checkpoint; "
                "check the topic exists, the sink may write to it, and the brokers are reachable "
                "(raise message.timeout.ms to ride out longer outages)"
            )


def _alive(method: weakref.WeakMethod[Any]) -> Callable[[str], list[int]]:
    found: Callable[[str], list[int]] | None = method()
    if found is None:
        raise RuntimeError("the Kafka sink writer was closed")
    return found


class RecordEmitter:
    """Serializes a batch and hands it to the producer with as little Python per record as
    possible. A full librdkafka queue is waited out by polling (which also serves delivery
    callbacks); nothing is skipped."""

    def __init__(
        self,
        producer: Producer,
        schema: KafkaRecordSerializationSchema[Any],
        context: SinkContext,
        metrics: WriterMetrics,
        *,
        delivery_wait_s: float,
        failure: Callable[[], BaseException | None] = lambda: None,
        guarantee: DeliveryGuarantee = DeliveryGuarantee.NONE,
        transaction: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._producer = producer
        self._produce = producer.produce
        self._delivery_wait_s = delivery_wait_s
        self._failure = failure
        self._metrics = metrics
        self._partitions: dict[str, tuple[float, list[int]]] = {}
        self.schema = schema.for_subtask()
        # A weak reference back: the schema keeps the context, and a strong one would make
        # a cycle that keeps this emitter, and the producer it holds, alive after the
        # writer let go of it, until a garbage collection (measured: 4 client threads
        # left per finished exactly-once job).
        partitions_for = weakref.WeakMethod(self.partitions_for)
        self.sink_context = KafkaSinkContext(
            context.subtask_index,
            context.parallelism,
            lambda topic: _alive(partitions_for)(topic),
        )
        self.schema.open(self.sink_context)
        built = self.schema if isinstance(self.schema, _BuiltSchema) else None
        self._fast_topic = (
            built.topic if built is not None and built.fixed_topic_value_only else None
        )
        self._fast_values: Callable[[Sequence[Any]], list[bytes]] | None = (
            built.value.serialize_batch
            if built is not None and self._fast_topic is not None and built.value
            else None
        )
        # A key schema of the whole element (Flink's setKeySerializationSchema) runs in
        # bulk beside the value schema.
        self._fast_keys: Callable[[Sequence[Any]], list[Any]] | None = (
            built.key.serialize_batch
            if built is not None and self._fast_values is not None and built.key is not None
            else None
        )
        # (key, value) elements to one topic: both columns in bulk.
        self._fast_key_value = built if built is not None and built.fixed_topic_key_value else None
        # Asked once: with no plugin implementing the hook, emit() checks one attribute.
        hook = getattr(context, "plugin_hook", None)
        self._on_batch = hook("streamplug_writer_batch_producing") if hook is not None else None
        self._subtask_info = SubtaskInfo.from_context(context, "kafka")
        self._guarantee = guarantee.name
        self._transaction = transaction
        self._keeps_positions = bool(getattr(context, "keeps_positions", False))
        self._warned_headers = False
        self._topic = built.topic if built is not None else None

    def partitions_for(self, topic: str) -> list[int]:
        cached = self._partitions.get(topic)
        now = time.monotonic()
        if cached is not None and now - cached[0] < _METADATA_MAX_AGE_S:
            return cached[1]
        deadline = now + 30.0
        # A topic created just before the job is often not yet in the broker's metadata
        # answer: ask again soon (a fixed half second here was most of a keyed job's
        # start-up), then back off.
        backoff = 0.01
        while True:
            metadata = self._producer.list_topics(topic, timeout=10)
            tmeta = metadata.topics.get(topic)
            if tmeta is not None and tmeta.error is None and tmeta.partitions:
                partitions = sorted(tmeta.partitions)
                self._partitions[topic] = (now, partitions)
                return partitions
            if cached is not None:
                return cached[1]  # keep writing where we did while metadata is briefly unavailable
            pending = self._failure()
            if pending is not None:
                raise pending
            if time.monotonic() > deadline:
                err = tmeta.error if tmeta is not None else "absent from cluster metadata"
                raise KafkaDeliveryError(
                    f"cannot choose a partition of topic {topic!r}: {err}; create the topic "
                    "(the sink does not create output topics) or fix the topic name"
                )
            time.sleep(backoff)
            backoff = min(backoff * 2, 0.5)

    def _produce_blocking(
        self, topic: str, value: Any, key: Any, partition: int, ts: int, headers: Any
    ) -> None:
        # A full queue empties as records are acknowledged or time out; when neither
        # happens (the brokers never answer), stop after the same bound as a flush.
        deadline = time.monotonic() + self._delivery_wait_s
        while True:
            self._producer.poll(_FULL_QUEUE_POLL_S)
            pending = self._failure()
            if pending is not None:
                raise pending
            try:
                self._produce(topic, value, key, partition, timestamp=ts, headers=headers)
                return
            except BufferError:
                if time.monotonic() >= deadline:
                    raise KafkaDeliveryError(
                        f"the producer's queue for topic {topic!r} stayed full for "
                        f"{self._delivery_wait_s:.0f} s (message.timeout.ms plus slack): the "
                        "brokers are not answering. Check that they are up and that this "
                        "client can connect and authenticate to them"
                    ) from None

    def _produce_values(
        self,
        topic: str,
        encoded: list[Any],
        timestamps: Sequence[int] | None,
        keys: list[Any] | None = None,
    ) -> None:
        """Hands ``encoded`` (with ``timestamps``, each > 0 or 0 for "now") to the producer
        in order, with no bytecode run per record: ``starmap`` calls ``produce`` from C
        with the argument tuple ``zip`` refills in place (``map`` would build a new tuple
        per call). Against a Python ``for`` loop this saves ~10% of the instructions a
        record costs in the sink. A full queue raises BufferError out of the starmap with
        the refused record already taken from ``values``: its length hint tells which one
        that was, it is waited in, and the same starmap carries on after it. Any other
        error propagates as from a plain loop. ``keys``, when given, go beside the values
        (zip takes a value before its key, so the hint still counts records)."""
        values = iter(encoded)
        if timestamps is None:
            args = zip(repeat(topic), values) if keys is None else zip(repeat(topic), values, keys)
        elif keys is not None:
            args = zip(
                repeat(topic),
                values,
                keys,
                repeat(-1),
                repeat(None),
                repeat(None),
                timestamps,
            )
        else:
            # Positional up to ``timestamp``: key, partition (-1: the producer's
            # partitioner), on_delivery and callback (None: the producer-wide callback).
            args = zip(
                repeat(topic),
                values,
                repeat(None),
                repeat(-1),
                repeat(None),
                repeat(None),
                timestamps,
            )
        self._run_produce_calls(
            starmap(self._produce, args), values, topic, encoded, timestamps, keys
        )

    def _run_produce_calls(
        self,
        calls: Iterator[Any],
        values: Iterator[Any],
        topic: str,
        encoded: list[Any],
        timestamps: Sequence[int] | None,
        keys: list[Any] | None,
        headers: list[Any] | None = None,
    ) -> None:
        """Runs the ``produce`` calls of a column batch; on a full queue, finds the refused
        record from ``values``' length hint, waits it in, and carries on after it."""
        n = len(encoded)
        while True:
            try:
                _exhaust(calls)
                return
            except BufferError:
                refused = n - length_hint(values) - 1
                ts = timestamps[refused] if timestamps is not None else 0
                key = keys[refused] if keys is not None else None
                added = headers[refused] if headers is not None else None
                self._produce_blocking(topic, encoded[refused], key, -1, ts, added)

    def _headers_from_plugins(
        self, values: Sequence[Any], timestamps: Sequence[int] | None
    ) -> list[Any] | None:
        """The headers streamplug_writer_batch_producing implementations add, as a column
        (a header list or None per position), or None when they add none."""
        assert self._on_batch is not None
        batch = ProducingBatch(
            self._subtask_info,
            self._topic,
            values,
            timestamps,
            self._guarantee,
            self._transaction(),
            self._keeps_positions,
        )
        results = [r for r in self._on_batch(batch=batch) if r]
        if not results:
            return None
        n = len(values)
        columns = []
        for result in results:
            try:
                columns.append(_as_column(result, n))
            except (IndexError, ValueError, TypeError) as exc:
                # Like a hook that raised: a plugin's mistake never fails the job.
                if not self._warned_headers:
                    self._warned_headers = True
                    log.error("%s; its headers are left out (said once per writer)", exc)
        if not columns:
            return None
        if len(columns) == 1:
            return columns[0]
        # pluggy's results come last-registered first; apply them in registration order
        # so that a later plugin's header of a name replaces an earlier one's.
        merged: list[Any] = [None] * n
        for column in reversed(columns):
            for position, headers in enumerate(column):
                if headers is not None:
                    merged[position] = _merge_headers(merged[position], headers)
        return merged

    def _emit_with_headers(
        self,
        values: Sequence[Any],
        timestamps: Sequence[int] | None,
        extra: list[Any],
    ) -> None:
        """Record by record, each with the headers its serializer set and those the
        plugins added."""
        tuples = self._tuples(values, timestamps)
        for position, added in enumerate(extra):
            record = tuples[position]
            if record is not None and added is not None:
                tuples[position] = (*record[:5], _merge_headers(record[5], added))
        self._produce_tuples([t for t in tuples if t is not None])

    def _tuples(self, values: Sequence[Any], timestamps: Sequence[int] | None) -> list[Any]:
        """A (topic, value, key, partition, timestamp, headers) tuple per element, or None
        where the serializer wrote nothing: one per position, so plugin headers line up."""
        schema = self.schema
        ctx = self.sink_context
        stamps: Sequence[int | None] = (
            timestamps if timestamps is not None else [None] * len(values)
        )
        if isinstance(schema, _BuiltSchema):
            return [schema.to_tuple(e, t, ctx) for e, t in zip(values, stamps, strict=True)]
        tuples: list[Any] = []
        for element, ets in zip(values, stamps, strict=True):
            rec = schema.serialize(element, ctx, ets)
            if rec is None:
                tuples.append(None)
                continue
            part = rec.partition if rec.partition is not None else -1
            tuples.append((rec.topic, rec.value, rec.key, part, rec.timestamp or 0, rec.headers))
        return tuples

    def _produce_tuples(self, tuples: Sequence[Any]) -> None:
        produce = self._produce
        nbytes = 0
        for t_topic, value, key, partition, ts, headers in tuples:
            try:
                if headers is None:
                    produce(t_topic, value, key, partition, None, None, ts)
                else:
                    produce(t_topic, value, key, partition, timestamp=ts, headers=headers)
            except BufferError:
                self._produce_blocking(t_topic, value, key, partition, ts, headers)
            if value is not None:
                nbytes += len(value)
            if key is not None:
                nbytes += len(key)
        self._producer.poll(0)
        self._metrics.records_out.inc(len(tuples))
        self._metrics.bytes_out.inc(nbytes)

    def _produce_columns(
        self,
        topic: str,
        encoded: list[Any],
        timestamps: Sequence[int] | None,
        keys: list[Any] | None,
        headers: list[Any] | None,
    ) -> None:
        """``_produce_values``, with the headers plugins added to some records: still one
        ``produce`` call per record from C, in order, the headers as one more column (None
        where a record gets none)."""
        if headers is None:
            self._produce_values(topic, encoded, timestamps, keys)
            return
        values = iter(encoded)
        args = zip(
            repeat(topic),
            values,
            repeat(None) if keys is None else keys,
            repeat(-1),
            repeat(None),
            repeat(None),
            repeat(0) if timestamps is None else timestamps,
            headers,
        )
        self._run_produce_calls(
            starmap(self._produce, args), values, topic, encoded, timestamps, keys, headers
        )

    def emit(self, values: Sequence[Any], timestamps: Sequence[int] | None) -> None:
        extra: list[Any] | None = None
        if self._on_batch is not None and values:
            extra = self._headers_from_plugins(values, timestamps)
        nbytes = 0
        count = 0
        topic = self._fast_topic
        key_value = self._fast_key_value
        if extra is not None and key_value is None and (topic is None or self._fast_values is None):
            self._emit_with_headers(values, timestamps, extra)
            return
        if key_value is not None:
            # Keys and values each serialized in one call, then produced from C as above:
            # no record object and no bytecode per record.
            keys, encoded = key_value.key_value_columns(values)
            timestamps = _producer_timestamps(timestamps, len(encoded))
            self._produce_columns(key_value.topic, encoded, timestamps, keys, extra)  # type: ignore[arg-type]
            nbytes = _total_length(encoded) + _total_length(keys)
            count = len(values)
        elif topic is not None and self._fast_values is not None:
            # The value format serializes the whole batch (in C for bytes and text), and
            # sum() runs its loop in C: no Python runs per record here.
            encoded = self._fast_values(values)
            timestamps = _producer_timestamps(timestamps, len(encoded))
            fast_keys = self._fast_keys
            if fast_keys is None:
                self._produce_columns(topic, encoded, timestamps, None, extra)
            else:
                keys = fast_keys(values)
                if len(keys) != len(encoded):
                    raise ValueError(
                        f"the key schema's serialize_batch returned {len(keys)} keys for "
                        f"{len(encoded)} elements"
                    )
                self._produce_columns(topic, encoded, timestamps, keys, extra)
                nbytes += _total_length(keys)
            nbytes += _total_length(encoded)
            count = len(values)
        else:
            # Record by record: a topic chosen per element, a partitioner, headers...
            self._produce_tuples([t for t in self._tuples(values, timestamps) if t is not None])
            return
        self._producer.poll(0)
        self._metrics.records_out.inc(count)
        self._metrics.bytes_out.inc(nbytes)


def _as_column(result: Any, n: int) -> list[Any]:
    """A hook's headers as a column of ``n``: from a mapping of positions, or a sequence
    of ``n`` (used as it is when it is a list)."""
    if isinstance(result, Mapping):
        if not (min(result) >= 0 and max(result) < n):
            bad = [p for p in result if not 0 <= p < n][:3]
            raise IndexError(
                f"a streamplug_writer_batch_producing hook returned headers for position(s) "
                f"{bad} of a batch of {n}"
            )
        column: list[Any] = [None] * n
        for position, headers in result.items():
            column[position] = headers
        return column
    if len(result) != n:
        raise ValueError(
            f"a streamplug_writer_batch_producing hook returned {len(result)} header lists "
            f"for a batch of {n}: return one per element (None for none) or a mapping of "
            "positions"
        )
    return result if isinstance(result, list) else list(result)


def _merge_headers(headers: Any, added: Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """``headers`` (a list of pairs, a dict or None) with ``added``: an added header
    replaces every header of its name, the others stay in order."""
    added = list(added)
    names = {name for name, _ in added}
    if headers is None:
        kept: list[tuple[str, bytes]] = []
    elif isinstance(headers, dict):
        kept = [(k, v) for k, v in headers.items() if k not in names]
    else:
        kept = [(k, v) for k, v in headers if k not in names]
    return kept + added


def _total_length(items: Sequence[Any]) -> int:
    """Bytes in a column of keys or values; None (no key, a tombstone) counts 0. Joining
    copies the bytes in C and is half the cost of summing their lengths (4 against 8 us a
    batch of 500 values of 100 bytes); a None (rare) or a str makes it a TypeError, and
    the column is then counted item by item."""
    try:
        return len(b"".join(items))
    except TypeError:
        return sum(map(len, filter(None, items)))


def _producer_timestamps(timestamps: Sequence[int] | None, count: int) -> Sequence[int] | None:
    """Event times as produce() takes them: 0 (the producer stamps "now") for none."""
    if timestamps is None:
        return None
    if len(timestamps) != count:
        raise ValueError(f"{count} values but {len(timestamps)} timestamps")
    if timestamps and min(timestamps) <= 0:
        return [t if t and t > 0 else 0 for t in timestamps]
    return timestamps


def flush_producer(
    producer: Producer,
    what: str,
    *,
    timeout_s: float,
    failure: Callable[[], BaseException | None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> None:
    """Wait until the producer's queue is empty. Retriable trouble (leader changes, a
    broker briefly away) is retried by librdkafka inside; we only keep waiting, up to
    ``timeout_s`` (see ``_config.delivery_wait_s``: by then librdkafka has failed every
    record it could not deliver, so a longer wait would wait for nothing). ``failure``
    returns what a chained ``error_cb`` raised (rejected credentials, say), which ends the
    wait at once. Fatal producer errors surface as KafkaException from flush itself."""
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = producer.flush(1.0)
        pending = failure() if failure is not None else None
        if pending is not None:
            raise pending
        if remaining == 0:
            return
        if stop is not None and stop():
            raise KafkaDeliveryError(f"gave up waiting for {remaining} record(s) {what}")
        if time.monotonic() >= deadline:
            raise KafkaDeliveryError(
                f"flush timed out: {remaining} record(s) {what} got neither an acknowledgement "
                f"nor a delivery error within {timeout_s:.0f} s (message.timeout.ms plus slack); "
                "the brokers are not answering. Check that they are up and that this client can "
                "connect and authenticate to them (bootstrap.servers, security.protocol, TLS "
                "and SASL settings)"
            )
        log.debug("still waiting for %d record(s) %s", remaining, what)


class KafkaWriter(SinkWriter[Any, Any]):
    """One subtask's writer for NONE and AT_LEAST_ONCE, with its own idempotent producer."""

    def __init__(
        self,
        producer: Producer,
        errors: DeliveryErrors,
        schema: KafkaRecordSerializationSchema[Any],
        guarantee: DeliveryGuarantee,
        context: SinkContext,
        metrics: WriterMetrics,
        close_timeout_s: float = 30.0,
        *,
        client_errors: ChainedErrorCallback | None = None,
        delivery_wait_s: float = 330.0,
        startup_check: StartupCheck | None = None,
    ) -> None:
        if guarantee is DeliveryGuarantee.EXACTLY_ONCE:
            raise ValueError(
                "KafkaWriter is for NONE and AT_LEAST_ONCE; EXACTLY_ONCE uses a transactional "
                "writer"
            )
        self._producer = producer
        self._errors = errors
        self._guarantee = guarantee
        self._metrics = metrics
        self._close_timeout_s = close_timeout_s
        # Without a chain of its own (tests build writers directly), an empty one that
        # never reports a failure.
        self._client_errors = client_errors or ChainedErrorCallback(None, None)
        self._delivery_wait_s = delivery_wait_s
        self._emitter = RecordEmitter(
            producer,
            schema,
            context,
            metrics,
            delivery_wait_s=delivery_wait_s,
            failure=self._client_failure,
            guarantee=guarantee,
        )
        self._subtask = context.subtask_index
        self._job_name = context.job_name
        hook = getattr(context, "plugin_hook", None)
        self._on_outcome = hook("streamplug_writer_outcome") if hook is not None else None
        self._closed = False
        self._reported = 0
        self._startup_check = startup_check
        # Whether the job has heard of _client_failure() from a call of ours: close()
        # reports it only if not.
        self._failure_raised = False
        if startup_check is not None:
            # Raised on the subtask's thread as soon as it is known: no write or
            # checkpoint may come for a long while (the records already written wait out
            # message.timeout.ms in the producer's queue).
            startup_check.start(lambda: context.run_in_task(self._raise_client_failure))

    @property
    def producer(self) -> Producer:
        return self._producer

    @property
    def metrics(self) -> WriterMetrics:
        return self._metrics

    def _client_failure(self) -> BaseException | None:
        """Why the producer cannot deliver anything: what a hook's chained ``error_cb``
        raised (rejected credentials), or what the start-up check found (no broker
        answers, no such topic)."""
        failure = self._client_errors.failure
        if failure is None and self._startup_check is not None:
            failure = self._startup_check.failure
        return failure

    def _raise_client_failure(self) -> None:
        failure = self._client_failure()
        if failure is not None:
            self._failure_raised = True
            raise failure

    def write(self, values: Sequence[Any], timestamps: Sequence[int] | None) -> None:
        self._raise_client_failure()
        self._check_errors()
        try:
            self._emitter.emit(values, timestamps)
        except BaseException as exc:
            if exc is self._client_failure():
                self._failure_raised = True
            raise

    def _check_errors(self) -> None:
        if self._guarantee is DeliveryGuarantee.AT_LEAST_ONCE:
            # Fail early rather than keep writing after a record was lost: the job would
            # fail at the next checkpoint anyway.
            self._errors.raise_if_any(f"by subtask {self._subtask}")
        else:
            count, samples = self._errors.take()
            if count:
                self._metrics.errors.inc(count)
                log.warning(
                    "subtask %d: %d record(s) were not delivered (DeliveryGuarantee.NONE drops "
                    "them): %s",
                    self._subtask,
                    count,
                    "; ".join(samples),
                )

    def flush(self, end_of_input: bool) -> None:
        if self._guarantee is DeliveryGuarantee.NONE and not end_of_input:
            self._producer.poll(0)
            self._raise_client_failure()
            self._check_errors()
            return
        if self._on_outcome is None:
            self._flush()
            return
        try:
            self._flush()
        except BaseException as exc:
            self._report("failed", f"{type(exc).__name__}: {exc}")
            raise
        self._report("committed", None)

    def _report(self, outcome: str, error: str | None) -> None:
        assert self._on_outcome is not None
        self._on_outcome(
            outcome=WriterOutcome(
                self._job_name, "flush", outcome, subtask_index=self._subtask, error=error
            )
        )

    def _flush(self) -> None:
        try:
            flush_producer(
                self._producer,
                f"of subtask {self._subtask} to be acknowledged",
                timeout_s=self._delivery_wait_s,
                failure=self._client_failure,
            )
        except KafkaException as exc:
            raise KafkaDeliveryError(f"subtask {self._subtask}: producer failed: {exc}") from exc
        except BaseException as exc:
            if exc is self._client_failure():
                self._failure_raised = True
            raise
        count = self._errors.count
        if count and self._guarantee is DeliveryGuarantee.AT_LEAST_ONCE:
            self._metrics.errors.inc(count)
        self._check_errors()

    def close(self) -> None:
        """Wait (at most ``close_timeout_s``) for what was written since the last flush and
        release the producer. AT_LEAST_ONCE raises ``KafkaDeliveryError`` if a record was
        refused or is still unacknowledged: on a graceful end without a checkpoint after
        the last write (a stop without checkpointing), this is the only place that learns
        of it, and the runtime makes it the job's outcome. NONE logs and counts."""
        if self._closed:
            return
        self._closed = True
        lost: BaseException | None = None
        try:
            if self._startup_check is not None:
                self._startup_check.close()
            # A client whose credentials were rejected, or whose brokers never answered,
            # delivers nothing: do not wait.
            failure = self._client_failure()
            wait_s = 0.0 if failure is not None else self._close_timeout_s
            remaining = self._producer.flush(wait_s)
            count, samples = self._errors.take()
            if remaining:
                # close() flushes again without a bound; give up on what is left.
                self._producer.purge()
                self._producer.poll(0)
                self._errors.take()  # "purged" reports: counted as `remaining` already
                samples.append(f"{remaining} still unacknowledged after {wait_s:g} s")
            if count or remaining:
                self._metrics.errors.inc(count + remaining)
            if self._guarantee is DeliveryGuarantee.AT_LEAST_ONCE and samples and failure:
                # Lost because of it; the job has heard of it already, or hears it now.
                if not self._failure_raised:
                    lost = failure
            elif self._guarantee is DeliveryGuarantee.AT_LEAST_ONCE and samples:
                lost = KafkaDeliveryError(
                    f"Kafka sink subtask {self._subtask} closed with {count + remaining} "
                    f"record(s) not delivered ({'; '.join(samples)}): no checkpoint covers "
                    "them and they are not in the topic, so the job fails instead of ending "
                    "without them. Check that the topic exists, takes records of their size "
                    "(max.message.bytes) and that the sink may write to it, and that the "
                    "brokers are reachable; then run the job again from offsets before them"
                )
            elif samples:
                log.warning(
                    "subtask %d closed with %d record(s) undelivered: %s",
                    self._subtask,
                    count + remaining,
                    "; ".join(samples),
                )
            # Stop librdkafka's threads now rather than when the object is collected: a
            # closed writer must not keep reconnecting to the cluster. Older confluent-kafka
            # releases (2.0.2 among them) have no Producer.close(); collection does it there.
            close = getattr(self._producer, "close", None)
            if close is not None:
                close()
        finally:
            self._metrics.close()
        if lost is not None:
            raise lost
