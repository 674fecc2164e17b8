"""The streamplug-otel plugin: trace context through a job, and messaging spans, on
streamplug's source, reader, writer and checkpoint hooks and ``opentelemetry-api`` alone.

How a record's context gets from its input record to its output records: the reader hook
and the writer hook of one subtask run on the subtask's thread, batch by batch (the reader
hook for a run of records, then deserialization, the operators and the writer hook for what
they made of it). The reader hook keeps, in thread-local state, the W3C headers of each
record of the run by position (and the per-record spans of sampled records); the writer
hook maps its batch back to them:

* position i to position i when the runtime says only maps lie between source and sink
  (``ProducingBatch.same_positions``) and the batch has as many elements as the run had
  records;
* otherwise (a filter or flat_map, or records the deserializer skipped) the mapping is
  unknown: when every record of the run that had a context had the same one, every output
  record gets it; when they differ, output records get none, and the batch's publish span
  links to all of them.

Records whose context is carried but not sampled keep their context unchanged: their raw
``traceparent`` / ``tracestate`` / ``baggage`` headers are copied, not parsed, so the
trace continues from the upstream span at no per-record span cost.
"""

from __future__ import annotations

import importlib
import math
import random
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from streamplug import hookimpl
from streamplug.plugin.records import (
    CheckpointAck,
    FetchedBatch,
    JobInfo,
    ProducingBatch,
    SourceInfo,
    WriterOutcome,
)
from streamplug_otel import options as _options

__all__ = [
    "streamplug_checkpoint_aborted",
    "streamplug_checkpoint_completed",
    "streamplug_checkpoint_started",
    "streamplug_checkpoint_subtask_acknowledged",
    "streamplug_reader_batch_fetched",
    "streamplug_source_starting",
    "streamplug_writer_batch_producing",
    "streamplug_writer_outcome",
]

W3C_HEADERS = frozenset({"traceparent", "tracestate", "baggage"})
# Links per batch span: OpenTelemetry's default span limit is 128; a few dozen show the
# fan-in without making every batch span heavy.
MAX_LINKS = 32
# Records looked at for links: a batch of one request's records (all one traceparent)
# would otherwise be scanned to its end, per batch, twice.
MAX_LINK_SCAN = 64

_tracer = trace.get_tracer("streamplug_otel", "0.1.0")
_local = threading.local()
_setup_lock = threading.Lock()
_setup_done: set[str] = set()

_txn_lock = threading.Lock()
# Publish spans of records in an open transaction (EXACTLY_ONCE), by transaction token:
# they end when the transaction does, saying whether it committed.
_txn_spans: dict[str, list[Any]] = {}

_ckpt_lock = threading.Lock()
_ckpt_spans: dict[tuple[str, int], list[Any]] = {}


def _settings() -> _options.OtelOptions:
    opts = _options.current()
    name = opts.tracer_provider
    if name is not None and name not in _setup_done:
        _install_provider(name)
    return opts


def _install_provider(name: str) -> None:
    with _setup_lock:
        if name in _setup_done:
            return
        module, _, attr = name.partition(":")
        if not module or not attr:
            raise _options.OptionsError(
                (_options.ENV, "tracer_provider"),
                f'must be "module:function", got {name!r}',
                'tracer_provider = "myapp.tracing:provider"',
            )
        provider = getattr(importlib.import_module(module), attr)()
        if provider is not None:
            trace.set_tracer_provider(provider)
        _setup_done.add(name)


def _w3c(headers: list[tuple[str, bytes]]) -> list[tuple[str, bytes]] | None:
    if len(headers) == 1:
        # The common case, a traceparent alone: the client's own list, no copy.
        return headers if headers[0][0] in W3C_HEADERS else None
    found = [(k, v) for k, v in headers if k in W3C_HEADERS]
    return found or None


def _carrier(headers: Iterable[tuple[str, bytes]]) -> dict[str, str]:
    return {k: v.decode("latin-1") for k, v in headers if v is not None}


def _context_of(headers: Iterable[tuple[str, bytes]]) -> otel_context.Context:
    return propagate.extract(_carrier(headers))


def _span_context_of(headers: Iterable[tuple[str, bytes]]) -> trace.SpanContext | None:
    span_context = trace.get_current_span(_context_of(headers)).get_span_context()
    return span_context if span_context.is_valid else None


def _traceparent(headers: list[tuple[str, bytes]]) -> bytes | None:
    first = headers[0]
    if first[0] == "traceparent":
        return first[1]
    for name, value in headers:
        if name == "traceparent":
            return value
    return None


def _parse_traceparent(value: bytes) -> trace.SpanContext | None:
    """A link's span context straight from ``00-<trace id>-<span id>-<flags>``: the
    propagator's extract builds a whole Context per call, several times the cost, and a
    link needs none of it."""
    parts = value.split(b"-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        span_context = trace.SpanContext(
            int(parts[1], 16), int(parts[2], 16), True, trace.TraceFlags(int(parts[3][:2], 16))
        )
    except ValueError:
        return None
    return span_context if span_context.is_valid else None


def _links(carried: Sequence[list[tuple[str, bytes]] | None]) -> list[Link]:
    """Links to the distinct traces among the first records of a batch."""
    links: list[Link] = []
    seen: set[bytes] = set()
    for headers in carried[:MAX_LINK_SCAN]:
        if headers is None:
            continue
        parent = _traceparent(headers)
        if parent is None or parent in seen:
            continue
        seen.add(parent)
        span_context = _parse_traceparent(parent)
        if span_context is not None:
            links.append(Link(span_context))
            if len(links) >= MAX_LINKS:
                break
    return links


def _sample(n: int, share: float) -> Sequence[int]:
    """Positions of a batch of ``n`` traced one by one: each with probability ``share``,
    drawn by geometric skips, so 1% costs one draw per sampled record, not per record."""
    if share <= 0.0 or n == 0:
        return ()
    if share >= 1.0:
        return range(n)
    log_q = math.log1p(-share)
    out = []
    i = int(math.log(1.0 - random.random()) / log_q)
    while i < n:
        out.append(i)
        i += 1 + int(math.log(1.0 - random.random()) / log_q)
    return out


class _ReadBatch:
    """What the reader hook left for the writer hook of the same subtask thread."""

    __slots__ = ("carried", "count", "ended", "links", "records")

    def __init__(
        self,
        count: int,
        carried: list[list[tuple[str, bytes]] | None] | None,
        records: dict[int, tuple[Any, otel_context.Context]] | None,
        links: list[Link] | None,
    ) -> None:
        self.count = count
        self.carried = carried
        # Sampled positions: (process span, the context it was started in).
        self.records = records
        self.ended = False
        # Computed once, for the receive span and again for the publish span.
        self.links = links

    def end(self, mapped: bool) -> None:
        if self.ended or not self.records:
            return
        self.ended = True
        for span, _ in self.records.values():
            if not mapped:
                span.set_attribute("streamplug.output.mapped", False)
            span.end()


def _messaging(topic: str | None, operation: str, kind: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.system": "kafka",
        "messaging.operation": operation,
        "messaging.operation.name": operation,
        "messaging.operation.type": kind,
    }
    if topic is not None:
        attributes["messaging.destination.name"] = topic
    return attributes


# -- source ------------------------------------------------------------------------------


@hookimpl
def streamplug_source_starting(source: SourceInfo) -> None:
    # Options and the tracer provider are checked before the first record.
    _settings()


# -- reader ------------------------------------------------------------------------------


@hookimpl
def streamplug_reader_batch_fetched(batch: FetchedBatch) -> None:
    opts = _settings()
    previous: _ReadBatch | None = getattr(_local, "batch", None)
    if previous is not None:
        previous.end(mapped=False)
    _local.batch = None
    messages = batch.messages
    count = len(messages)
    carried: list[list[tuple[str, bytes]] | None] | None = None
    # The client's own method, looked up once per batch: map() and any() call it from C,
    # and a batch without any header (most untraced input) builds no list at all.
    headers_of = type(messages[0]).headers if count else None
    if headers_of is not None and any(map(headers_of, messages)):
        carried = [_w3c(h) if h else None for h in map(headers_of, messages)]
        if not any(carried):
            carried = None
    sampled = _sample(count, opts.sampling)
    if carried is None and not (sampled and opts.root_without_context):
        # Nothing in this batch belongs to a trace, and none starts here: no span either
        # (a span per untraced batch would be a root trace of its own, noise).
        return
    links = _links(carried) if carried is not None else None
    receive_context: trace.SpanContext | None = None
    # Batch spans show how a batch's records' traces fan in; a batch with none (only new
    # traces started here) would be a root trace of its own per batch: noise, and two
    # spans a batch, as many as two sampled records cost.
    if opts.batch_spans and carried is not None:
        attributes = _messaging(batch.topic, "receive", "receive")
        attributes.update(
            {
                "messaging.destination.partition.id": str(batch.partition),
                "messaging.batch.message_count": count,
                "messaging.kafka.offset.first": messages[0].offset() if count else -1,
                "messaging.kafka.offset.last": messages[-1].offset() if count else -1,
                "streamplug.job": batch.subtask.job_name,
                "streamplug.subtask": batch.subtask.subtask_index,
            }
        )
        if batch.group_id:
            attributes["messaging.consumer.group.name"] = batch.group_id
        span = _tracer.start_span(
            f"receive {batch.topic}",
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
            context=otel_context.Context(),
        )
        receive_context = span.get_span_context()
        span.end()
    records: dict[int, tuple[Any, otel_context.Context]] | None = None
    for position in sampled:
        own = carried[position] if carried is not None else None
        if own is not None:
            parent = _context_of(own)
        elif opts.root_without_context:
            parent = otel_context.Context()
        else:
            continue
        message = messages[position]
        attributes = _messaging(batch.topic, "process", "process")
        attributes.update(
            {
                "messaging.destination.partition.id": str(batch.partition),
                "messaging.kafka.message.offset": message.offset(),
                "streamplug.job": batch.subtask.job_name,
                "streamplug.subtask": batch.subtask.subtask_index,
            }
        )
        value = message.value()
        if value is not None:
            attributes["messaging.message.body.size"] = len(value)
        if batch.group_id:
            attributes["messaging.consumer.group.name"] = batch.group_id
        links = [Link(receive_context)] if receive_context is not None else None
        span = _tracer.start_span(
            f"process {batch.topic}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
        )
        if records is None:
            records = {}
        records[position] = (span, parent)
    if carried is not None or records:
        _local.batch = _ReadBatch(count, carried, records, links)


# -- writer ------------------------------------------------------------------------------


def _hold_or_end(spans: list[Any], transaction: str | None) -> None:
    if transaction is None:
        for span in spans:
            span.end()
        return
    with _txn_lock:
        _txn_spans.setdefault(transaction, []).extend(spans)


def _publish_attributes(batch: ProducingBatch) -> dict[str, Any]:
    attributes = _messaging(batch.topic, "publish", "send")
    attributes["streamplug.job"] = batch.subtask.job_name
    attributes["streamplug.subtask"] = batch.subtask.subtask_index
    attributes["streamplug.delivery_guarantee"] = batch.delivery_guarantee
    if batch.transaction is not None:
        attributes["streamplug.transaction"] = batch.transaction
    return attributes


@hookimpl
def streamplug_writer_batch_producing(
    batch: ProducingBatch,
) -> list[list[tuple[str, bytes]] | None] | None:
    opts = _settings()
    read: _ReadBatch | None = getattr(_local, "batch", None)
    count = len(batch.values)
    to_end: list[Any] = []
    # A header list (or None) per output position: the writer's header column.
    out: list[list[tuple[str, bytes]] | None] | None = None
    carried = read.carried if read is not None else None
    mapped = read is not None and batch.same_positions and count == read.count
    if read is not None and mapped:
        # Position i came from record i: the reader's column is the writer's, as it is.
        out = carried
        if read.records:
            out = list(carried) if carried is not None else [None] * count
            for position, (process, parent) in read.records.items():
                attributes = _publish_attributes(batch)
                publish = _tracer.start_span(
                    f"publish {batch.topic}",
                    context=trace.set_span_in_context(process, parent),
                    kind=SpanKind.PRODUCER,
                    attributes=attributes,
                )
                carrier: dict[str, str] = {}
                propagate.inject(carrier, context=trace.set_span_in_context(publish, parent))
                out[position] = [(k, v.encode("latin-1")) for k, v in carrier.items()]
                to_end.append(publish)
            read.end(mapped=True)
    elif carried is not None:
        distinct = {tuple(h) for h in carried if h is not None}
        if len(distinct) == 1:
            # One request fanned out (or filtered): every output record belongs to it.
            (only,) = distinct
            out = [list(only)] * count
    if read is not None and not mapped:
        read.end(mapped=False)
    if opts.batch_spans and read is not None and read.carried is not None:
        attributes = _publish_attributes(batch)
        attributes["messaging.batch.message_count"] = count
        attributes["streamplug.positions_mapped"] = mapped
        span = _tracer.start_span(
            f"publish {batch.topic}",
            kind=SpanKind.PRODUCER,
            attributes=attributes,
            links=read.links,
            context=otel_context.Context(),
        )
        to_end.append(span)
    if to_end:
        _hold_or_end(to_end, batch.transaction)
    return out if opts.propagate else None


@hookimpl
def streamplug_writer_outcome(outcome: WriterOutcome) -> None:
    if outcome.kind != "transaction" or outcome.transaction is None:
        return
    with _txn_lock:
        spans = _txn_spans.pop(outcome.transaction, [])
    for span in spans:
        span.set_attribute("streamplug.transaction.outcome", outcome.outcome)
        if outcome.checkpoint_id is not None:
            span.set_attribute("streamplug.checkpoint.id", outcome.checkpoint_id)
        if outcome.outcome != "committed":
            span.set_status(
                Status(StatusCode.ERROR, f"transaction {outcome.outcome}: {outcome.error or ''}")
            )
        span.end()


# -- checkpoints ---------------------------------------------------------------------------


@hookimpl
def streamplug_checkpoint_started(job: JobInfo, checkpoint_id: int) -> None:
    if not _settings().checkpoint_spans:
        return
    span = _tracer.start_span(
        f"checkpoint {job.name}",
        kind=SpanKind.INTERNAL,
        attributes={
            "streamplug.job": job.name,
            "streamplug.job.attempt": job.attempt,
            "streamplug.checkpoint.id": checkpoint_id,
        },
        context=otel_context.Context(),
    )
    with _ckpt_lock:
        _ckpt_spans[(job.job_id, checkpoint_id)] = [span, 0]


@hookimpl
def streamplug_checkpoint_subtask_acknowledged(ack: CheckpointAck) -> None:
    with _ckpt_lock:
        entry = _ckpt_spans.get((ack.job.job_id, ack.checkpoint_id))
        if entry is None:
            return
        entry[1] += ack.state_bytes
        parent = entry[0]
    now = time.time_ns()
    child = _tracer.start_span(
        f"checkpoint {ack.job.name} {ack.pipeline}[{ack.subtask_index}]",
        context=trace.set_span_in_context(parent),
        kind=SpanKind.INTERNAL,
        start_time=now - ack.duration_ms * 1_000_000,
        attributes={
            "streamplug.checkpoint.id": ack.checkpoint_id,
            "streamplug.subtask": ack.subtask_index,
            "streamplug.pipeline": ack.pipeline,
            "streamplug.checkpoint.state_bytes": ack.state_bytes,
            "streamplug.checkpoint.duration_ms": ack.duration_ms,
        },
    )
    child.end(end_time=now)


def _end_checkpoint(job: JobInfo, checkpoint_id: int, outcome: str, detail: str) -> None:
    with _ckpt_lock:
        entry = _ckpt_spans.pop((job.job_id, checkpoint_id), None)
    if entry is None:
        return
    span, size = entry
    span.set_attribute("streamplug.checkpoint.outcome", outcome)
    span.set_attribute("streamplug.checkpoint.state_bytes", size)
    if outcome == "completed":
        span.set_attribute("streamplug.checkpoint.location", detail)
    else:
        span.set_status(Status(StatusCode.ERROR, detail))
    span.end()


@hookimpl
def streamplug_checkpoint_completed(job: JobInfo, checkpoint_id: int, location: str) -> None:
    _end_checkpoint(job, checkpoint_id, "completed", location)


@hookimpl
def streamplug_checkpoint_aborted(job: JobInfo, checkpoint_id: int, reason: str) -> None:
    _end_checkpoint(job, checkpoint_id, "aborted", reason)
