"""streamplug-otel on the real broker: a producer outside the job sends records with a
``traceparent``; a Kafka -> map -> Kafka job writes output whose headers continue the same
traces, and the spans the OpenTelemetry SDK records (in-memory exporter) form one trace from
the upstream span to the output record, with the messaging attributes of Kafka. The same
under EXACTLY_ONCE with the commit of a checkpoint failing in the middle (an in-process fault
point, ``kafka_sink.before_commit:N:raise``, so the in-memory exporter survives the restart
and the aborted transaction's spans can be checked), and with a real SIGKILL of a worker
process at its commit (``processes``: the spans die with the worker, the headers in Kafka are
checked); and under ``processes`` at all (hooks in the worker processes)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from kafka_job_support import produce_values, string_sink, string_source
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import SpanKind

import streamplug_otel
from streamplug.api.sink import DeliveryGuarantee
from streamplug.runtime import StreamExecutionEnvironment, faults
from streamplug.runtime.restart import RestartStrategies
from streamplug_kafka_common.admin import read_all

pytestmark = pytest.mark.integration

_EXPORTER = InMemorySpanExporter()
_installed: list[TracerProvider] = []


class _Switch(Sampler):
    """Records spans only while a test of this module runs: the provider stays installed
    for the rest of the session (one global provider per process), and later tests' jobs
    (streamplug-otel is installed, so it takes part in them) must not fill the exporter."""

    on = False

    def should_sample(
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: Any = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        # The SDK takes the span's attributes from the result: hand them through.
        decision = Decision.RECORD_AND_SAMPLE if self.on else Decision.DROP
        return SamplingResult(decision, attributes if self.on else None)

    def get_description(self) -> str:
        return "streamplug-otel tests"


_SWITCH = _Switch()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The SDK's in-memory exporter behind the process's tracer provider."""
    if not _installed:
        provider = TracerProvider(sampler=_SWITCH)
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
        _installed.append(provider)
    _EXPORTER.clear()
    _SWITCH.on = True
    try:
        yield _EXPORTER
    finally:
        _SWITCH.on = False
        streamplug_otel.configure()
        _EXPORTER.clear()


def _send_traced(bootstrap: str, topic: str, count: int) -> dict[bytes, Any]:
    """Records ``v{i}``; every third one without trace context, the others each sent inside
    an upstream PRODUCER span of their own. Returns value -> upstream span."""
    tracer = trace.get_tracer("upstream-service")
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    upstream = {}
    for i in range(count):
        value = f"v{i}".encode()
        if i % 3 == 2:
            producer.produce(topic, value, key=f"k{i}".encode())
            continue
        with tracer.start_as_current_span(f"send {topic}", kind=SpanKind.PRODUCER) as span:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            headers = [(k, v.encode()) for k, v in carrier.items()]
            producer.produce(topic, value, key=f"k{i}".encode(), headers=headers)
            upstream[value] = span
    assert producer.flush(30) == 0
    return upstream


def _env(
    bootstrap: str,
    source: str,
    sink: str,
    checkpoints: Path,
    guarantee: DeliveryGuarantee,
    *,
    runtime: str = "threads",
    parallelism: int = 1,
) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(parallelism)
    env.set_runtime(runtime)
    env.enable_checkpointing(300)
    env.get_checkpoint_config().set_checkpoint_storage_dir(str(checkpoints))
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(3, 100))
    kafka_source = string_source(bootstrap, source, "otel")
    kafka_sink = string_sink(bootstrap, sink, guarantee, "otel")
    env.from_source(kafka_source, None, "traced").map(str.upper).sink_to(kafka_sink)
    return env


def _traceparent(message: Any) -> tuple[str, str] | None:
    """(trace id, parent span id) of a record's traceparent header, as hex."""
    for key, value in message.headers() or []:
        if key == "traceparent":
            _, trace_id, span_id, _ = value.decode().split("-")
            return trace_id, span_id
    return None


def _hex(number: int, width: int) -> str:
    return format(number, f"0{width}x")


def _by_span_id(finished: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {_hex(s.context.span_id, 16): s for s in finished}


def _assert_each_keeps_its_input_context(out: list[Any], upstream: dict[bytes, Any]) -> None:
    """Every output record carries exactly the traceparent its input had (none without)."""
    for message in out:
        original = message.value().decode().lower().encode()
        parent = _traceparent(message)
        if original in upstream:
            context = upstream[original].get_span_context()
            assert parent == (_hex(context.trace_id, 32), _hex(context.span_id, 16))
        else:
            assert parent is None


@contextlib.contextmanager
def _fault_plan(monkeypatch: pytest.MonkeyPatch, plan: str) -> Iterator[None]:
    """Fault points armed with ``plan`` (in this process and the workers it spawns) for the
    block, disarmed after it."""
    monkeypatch.setenv(faults.ENV, plan)
    faults.reset()
    try:
        yield
    finally:
        monkeypatch.delenv(faults.ENV)
        faults.reset()


def test_output_continues_each_input_trace_through_a_map(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    source, sink = topic_factory(), topic_factory()
    upstream = _send_traced(kafka_bootstrap, source, 30)
    streamplug_otel.configure(sampling=1.0)
    _env(kafka_bootstrap, source, sink, tmp_path, DeliveryGuarantee.AT_LEAST_ONCE).execute(
        "otel-alo"
    )
    out = read_all(kafka_bootstrap, sink)
    assert len(out) == 30
    finished = spans.get_finished_spans()
    by_id = _by_span_id(finished)
    for message in out:
        original = message.value().decode().lower().encode()
        parent = _traceparent(message)
        if original not in upstream:
            # No context in, none started (root_without_context is off).
            assert parent is None
            continue
        up = upstream[original]
        assert parent is not None and parent[0] == _hex(up.get_span_context().trace_id, 32)
        # input -> process -> publish -> output: one trace.
        publish = by_id[parent[1]]
        assert publish.kind is SpanKind.PRODUCER and publish.name == f"publish {sink}"
        assert publish.attributes is not None
        assert publish.attributes["messaging.system"] == "kafka"
        assert publish.attributes["messaging.destination.name"] == sink
        assert publish.attributes["messaging.operation.type"] == "send"
        assert publish.parent is not None
        process = by_id[_hex(publish.parent.span_id, 16)]
        assert process.kind is SpanKind.CONSUMER and process.name == f"process {source}"
        assert process.parent is not None
        assert process.parent.span_id == up.get_span_context().span_id
        assert process.context.trace_id == up.get_span_context().trace_id
        attributes = process.attributes
        assert attributes is not None
        assert attributes["messaging.system"] == "kafka"
        assert attributes["messaging.destination.name"] == source
        assert attributes["messaging.destination.partition.id"] == "0"
        assert attributes["messaging.operation"] == "process"
        assert str(attributes["messaging.consumer.group.name"]).startswith("otel-")
        assert isinstance(attributes["messaging.kafka.message.offset"], int)
    # The batch spans: a receive span linked to the records' traces.
    receives = [s for s in finished if s.name == f"receive {source}"]
    assert receives and all(s.kind is SpanKind.CONSUMER for s in receives)
    linked = {link.context.trace_id for s in receives for link in s.links}
    assert {u.get_span_context().trace_id for u in upstream.values()} <= linked
    assert sum(int(s.attributes["messaging.batch.message_count"]) for s in receives) == 30  # type: ignore[index]
    # Checkpoint spans: outcome and size.
    checkpoints = [s for s in finished if s.name == "checkpoint otel-alo"]
    assert checkpoints and all(
        s.attributes["streamplug.checkpoint.outcome"] == "completed"  # type: ignore[index]
        and int(s.attributes["streamplug.checkpoint.state_bytes"]) > 0  # type: ignore[index]
        for s in checkpoints
    )


def test_sampled_records_without_context_start_traces_of_their_own(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    """``root_without_context``: a sampled record that carries no context starts a trace
    (its process span is the root, its output record names the publish span); input without
    any context gets no batch spans (each would be a root trace of its own)."""
    source, sink = topic_factory(), topic_factory()
    produce_values(kafka_bootstrap, source, [f"v{i}".encode() for i in range(20)])
    streamplug_otel.configure(sampling=1.0, root_without_context=True)
    _env(kafka_bootstrap, source, sink, tmp_path, DeliveryGuarantee.AT_LEAST_ONCE).execute(
        "otel-roots"
    )
    out = read_all(kafka_bootstrap, sink)
    assert [m.value() for m in out] == [f"V{i}".encode() for i in range(20)]
    finished = spans.get_finished_spans()
    by_id = _by_span_id(finished)
    trace_ids = set()
    for message in out:
        parent = _traceparent(message)
        assert parent is not None, "a sampled record without context must start a trace"
        publish = by_id[parent[1]]
        assert publish.kind is SpanKind.PRODUCER and publish.parent is not None
        process = by_id[_hex(publish.parent.span_id, 16)]
        assert process.name == f"process {source}" and process.parent is None
        assert _hex(process.context.trace_id, 32) == parent[0]
        trace_ids.add(parent[0])
    assert len(trace_ids) == 20, "each record starts its own trace"
    names = {s.name for s in finished}
    assert f"receive {source}" not in names
    assert not [s for s in finished if "messaging.batch.message_count" in (s.attributes or {})]


def test_unsampled_records_keep_their_context_unchanged(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    source, sink = topic_factory(), topic_factory()
    upstream = _send_traced(kafka_bootstrap, source, 30)
    _env(kafka_bootstrap, source, sink, tmp_path, DeliveryGuarantee.AT_LEAST_ONCE).execute(
        "otel-unsampled"
    )
    out = read_all(kafka_bootstrap, sink)
    # Records with headers and without are interleaved: one produce order, kept.
    assert [m.value() for m in out] == [f"V{i}".encode() for i in range(30)]
    _assert_each_keeps_its_input_context(out, upstream)
    names = {s.name for s in spans.get_finished_spans()}
    assert f"process {source}" not in names, "sampling 0 must start no per-record span"
    assert {f"receive {source}", f"publish {sink}"} <= names


def test_exactly_once_with_a_failed_commit_leaves_no_committed_span_for_aborted_output(
    kafka_bootstrap: str,
    topic_factory: Any,
    tmp_path: Path,
    spans: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source, sink = topic_factory(), topic_factory()
    upstream = _send_traced(kafka_bootstrap, source, 300)
    streamplug_otel.configure(sampling=1.0)
    # The first commit fails after the checkpoint's output and decision record were
    # produced: that transaction is aborted, the attempt restarts and replays.
    with _fault_plan(monkeypatch, "kafka_sink.before_commit:1:raise"):
        result = _env(
            kafka_bootstrap, source, sink, tmp_path, DeliveryGuarantee.EXACTLY_ONCE
        ).execute("otel-eos")
    assert result.records_in >= 300
    out = read_all(kafka_bootstrap, sink, "read_committed")
    assert sorted(m.value() for m in out) == sorted(f"V{i}".encode() for i in range(300))
    finished = spans.get_finished_spans()
    by_id = _by_span_id(finished)
    publishes = [s for s in finished if s.name == f"publish {sink}" and s.kind is SpanKind.PRODUCER]
    outcomes = {s.attributes.get("streamplug.transaction.outcome") for s in publishes}  # type: ignore[union-attr]
    assert outcomes == {"committed", "aborted"}, outcomes
    committed_txns = {
        s.attributes["streamplug.transaction"]  # type: ignore[index]
        for s in publishes
        if s.attributes["streamplug.transaction.outcome"] == "committed"  # type: ignore[index]
    }
    aborted_txns = {
        s.attributes["streamplug.transaction"]  # type: ignore[index]
        for s in publishes
        if s.attributes["streamplug.transaction.outcome"] == "aborted"  # type: ignore[index]
    }
    assert committed_txns and aborted_txns and not committed_txns & aborted_txns
    assert all(
        s.status.status_code.name == "ERROR"
        for s in publishes
        if s.attributes["streamplug.transaction.outcome"] == "aborted"  # type: ignore[index]
    )
    # Every visible record's publish span says committed, and continues its input's trace.
    for message in out:
        original = message.value().decode().lower().encode()
        parent = _traceparent(message)
        if original not in upstream:
            assert parent is None
            continue
        assert parent is not None
        assert parent[0] == _hex(upstream[original].get_span_context().trace_id, 32)
        publish = by_id[parent[1]]
        assert publish.attributes["streamplug.transaction.outcome"] == "committed"  # type: ignore[index]
    # The aborted output's records were published (and replayed), their spans say so.
    aborted_records = [
        s
        for s in publishes
        if s.attributes["streamplug.transaction.outcome"] == "aborted"  # type: ignore[index]
        and "messaging.batch.message_count" not in s.attributes  # type: ignore[operator]
    ]
    assert aborted_records, "the failed checkpoint carried no traced record"
    checkpoints = [s for s in finished if s.name == "checkpoint otel-eos"]
    assert {s.attributes["streamplug.checkpoint.outcome"] for s in checkpoints} == {  # type: ignore[index]
        "completed",
        "aborted",
    }


@pytest.mark.skipif(os.name != "posix", reason="the processes runtime spawns workers")
def test_headers_carry_the_trace_from_worker_processes(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    """Under ``processes`` the reader and writer hooks run in the spawned workers, whose
    plugin hosts load streamplug-otel from its entry point."""
    source, sink = topic_factory(partitions=2), topic_factory()
    upstream = _send_traced(kafka_bootstrap, source, 40)
    _env(
        kafka_bootstrap,
        source,
        sink,
        tmp_path,
        DeliveryGuarantee.AT_LEAST_ONCE,
        runtime="processes",
        parallelism=2,
    ).execute("otel-processes")
    out = read_all(kafka_bootstrap, sink)
    assert len(out) == 40
    carried = 0
    for message in out:
        original = message.value().decode().lower().encode()
        if original in upstream:
            parent = _traceparent(message)
            assert parent is not None
            assert parent[0] == _hex(upstream[original].get_span_context().trace_id, 32)
            carried += 1
    assert carried == len(upstream)


def test_through_a_filter_a_shared_context_is_kept_and_differing_ones_are_not_guessed(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    """Behind a filter the writer's positions no longer match the reader's: one request's
    records (one shared context) keep it, records of different requests get none rather
    than a wrong one, and the publish span links to every input trace."""
    tracer = trace.get_tracer("upstream-service")
    shared_in, mixed_in = topic_factory(), topic_factory()
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    with tracer.start_as_current_span("one request") as request:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        one = [(k, v.encode()) for k, v in carrier.items()]
        for i in range(20):
            producer.produce(shared_in, f"v{i}".encode(), headers=one)
    mixed_traces = set()
    for i in range(20):
        with tracer.start_as_current_span(f"request {i}") as span:
            carrier = {}
            propagate.inject(carrier)
            producer.produce(
                mixed_in, f"v{i}".encode(), headers=[(k, v.encode()) for k, v in carrier.items()]
            )
            mixed_traces.add(span.get_span_context().trace_id)
    assert producer.flush(30) == 0
    for name, source in (("shared", shared_in), ("mixed", mixed_in)):
        sink = topic_factory(name=f"filtered-{name}")
        env = StreamExecutionEnvironment.get_execution_environment()
        env.enable_checkpointing(300)
        env.get_checkpoint_config().set_checkpoint_storage_dir(str(tmp_path / name))
        kafka_source = string_source(kafka_bootstrap, source, "otel")
        kafka_sink = string_sink(kafka_bootstrap, sink, DeliveryGuarantee.AT_LEAST_ONCE)
        env.from_source(kafka_source, None, "filtered").filter(
            lambda v: int(v[1:]) % 2 == 0
        ).sink_to(kafka_sink)
        env.execute(f"otel-filter-{name}")
        out = read_all(kafka_bootstrap, sink)
        assert len(out) == 10
        if name == "shared":
            trace_id = _hex(request.get_span_context().trace_id, 32)
            assert all((_traceparent(m) or ("", ""))[0] == trace_id for m in out)
        else:
            assert all(_traceparent(m) is None for m in out)
            publishes = [s for s in spans.get_finished_spans() if s.name == f"publish {sink}"]
            assert publishes and not any(
                s.attributes["streamplug.positions_mapped"]  # type: ignore[index]
                for s in publishes
            )
            linked = {link.context.trace_id for s in publishes for link in s.links}
            assert linked == mixed_traces


def test_a_worker_killed_at_its_commit_leaves_every_record_once_with_its_trace(
    kafka_bootstrap: str,
    topic_factory: Any,
    tmp_path: Path,
    spans: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real kill: under ``processes`` the worker slot's process is SIGKILLed right before
    its first commit (its spans die with it; the broker aborts its transaction when the
    restarted slot fences it). A read_committed consumer sees every record exactly once,
    each carrying its input's trace: the headers went into the transactions with the
    records, the aborted one's included, and only committed ones are visible."""
    source, sink = topic_factory(), topic_factory()
    upstream = _send_traced(kafka_bootstrap, source, 3000)
    # The first commit always comes (a periodic checkpoint's or the final one's); only the
    # slot's first process dies there, the restarted one commits.
    with _fault_plan(monkeypatch, "kafka_sink.before_commit@0:1"):
        env = _env(
            kafka_bootstrap,
            source,
            sink,
            tmp_path,
            DeliveryGuarantee.EXACTLY_ONCE,
            runtime="processes",
        )
        result = env.execute("otel-eos-kill")
    assert result.attempts == 2, "the worker was never killed at its commit"
    out = read_all(kafka_bootstrap, sink, "read_committed")
    assert sorted(m.value() for m in out) == sorted(f"V{i}".encode() for i in range(3000))
    _assert_each_keeps_its_input_context(out, upstream)
