"""What the source, reader and writer hooks cost: Kafka -> identity map -> Kafka, value-only
100-byte records, AT_LEAST_ONCE, parallelism 1, ``threads``, in one run, interleaved:

- ``hooks unused``: streamplug-otel disabled (``STREAMPLUG_DISABLED_PLUGINS=otel``), so no
  installed plugin implements a role hook; the runtime and the connectors decided that once
  at start. The same code paths as before the hooks existed, plus that one decision.
- ``otel sampling 0``: streamplug-otel with an SDK tracer provider (batch span processor,
  an exporter that drops what it gets): batch spans, propagation, no per-record span.
- ``otel sampling 1%``: the same with one record in a hundred traced one by one (on input
  without context that traces nothing: no record has a trace to follow);
- ``otel sampling 1%, new traces`` (input without context only): ``root_without_context``,
  so every sampled record starts a trace of its own -- its process and publish spans.
- ``--interpreter LABEL=PYTHON`` (repeatable): the hooks-unused job run by another build's
  Python, e.g. a venv with main as it was before the hooks, side by side in the same run.

Each on two inputs: records without headers, and records that all carry a ``traceparent``
(then every output record carries it too, which the writer produces record by record).
Every run is its own process; every run's output is read back and counted (and, for traced
input under otel, every record's traceparent checked). A wrong run is reported WRONG.

    python benchmarks/bench_hooks.py [--records 600000] [--runs 7] [--bootstrap-servers H:P]
                                     [--interpreter LABEL=PYTHON ...]

This machine has 2 cores shared with the broker (and with other agents' work): the load
average is printed beside every figure.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from compare.runners._common import precompile, rusage_cpu_seconds

CONFIGS = {
    "hooks unused": {"STREAMPLUG_DISABLED_PLUGINS": "otel"},
    "otel sampling 0": {
        "STREAMPLUG_OTEL": 'sampling = 0.0, tracer_provider = "bench_hooks:provider"'
    },
    "otel sampling 1%": {
        "STREAMPLUG_OTEL": 'sampling = 0.01, tracer_provider = "bench_hooks:provider"'
    },
    # On input without context "sampling 1%" traces nothing; with root_without_context
    # every sampled record starts a trace of its own (its process and publish spans).
    "otel sampling 1%, new traces": {
        "STREAMPLUG_OTEL": (
            'sampling = 0.01, root_without_context = true, tracer_provider = "bench_hooks:provider"'
        )
    },
}
# Configurations that mean something on one input only.
UNTRACED_ONLY = {"otel sampling 1%, new traces"}
TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def provider() -> Any:
    """An SDK provider whose spans go through a batch processor into an exporter that
    drops them: the cost of making spans, not of shipping them."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Drop()))
    return tracer_provider


def identity(value: Any) -> Any:
    return value


def one(args: argparse.Namespace) -> int:
    from streamplug.api.sink import DeliveryGuarantee
    from streamplug.runtime import StreamExecutionEnvironment
    from streamplug_kafka_common.admin import create_topic, read_all
    from streamplug_kafka_sink import KafkaRecordSerializationSchema, KafkaSink
    from streamplug_kafka_source import KafkaOffsetsInitializer, KafkaSource
    from streamplug_serde import BytesSchema

    out = f"hooks-out-{uuid.uuid4().hex[:10]}"
    create_topic(args.bootstrap, out, 1, 1)
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1).enable_checkpointing(1000)
    env.get_checkpoint_config().set_checkpoint_storage_dir(Path(args.tmp) / uuid.uuid4().hex)
    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(args.bootstrap)
        .set_topics(args.topic)
        .set_group_id(f"hooks-{uuid.uuid4().hex[:8]}")
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_bounded(KafkaOffsetsInitializer.latest())
        .set_value_only_deserializer(BytesSchema())
        .build()
    )
    sink = (
        KafkaSink.builder()
        .set_bootstrap_servers(args.bootstrap)
        .set_record_serializer(
            KafkaRecordSerializationSchema.builder()
            .set_topic(out)
            .set_value_serialization_schema(BytesSchema())
            .build()
        )
        .set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
        .build()
    )
    env.from_source(source, None, "in").map(identity).sink_to(sink)
    # One-time costs outside the measurement, in every configuration alike: the SDK's
    # import (~0.1 s of CPU here) and, with otel, reading its options and installing the
    # provider. What is measured is what a record costs, not what a process start costs.
    import opentelemetry.sdk.trace  # noqa: F401

    if "otel" in args.config:
        from streamplug_otel import plugin as otel_plugin

        otel_plugin._settings()
    before = rusage_cpu_seconds()
    started = time.perf_counter()
    result = env.execute("bench-hooks")
    elapsed = time.perf_counter() - started
    # CPU seconds of the job's process (every thread, librdkafka's included): on a machine
    # shared with the broker and other work, less noisy than the wall clock.
    cpu_s = rusage_cpu_seconds() - before
    messages = read_all(args.bootstrap, out, "read_uncommitted", timeout=120)
    check = "ok"
    if len(messages) != args.records or result.records_in != args.records:
        check = (
            f"WRONG: {len(messages)} records out, {result.records_in} in, expected {args.records}"
        )
    elif args.traced and "otel" in args.config:
        # The input's trace: its own traceparent, or (sampled) one naming a publish span of it.
        trace_id = TRACEPARENT.split(b"-")[1]
        carried = sum(
            1
            for m in messages
            if any(
                k == "traceparent" and v.split(b"-")[1] == trace_id for k, v in m.headers() or []
            )
        )
        if carried != args.records:
            check = f"WRONG: {carried} of {args.records} records carry the input's trace"
    print("RESULT " + json.dumps({"elapsed": elapsed, "cpu_s": cpu_s, "check": check}), flush=True)
    return 0


def _produce(bootstrap: str, topic: str, records: int, traced: bool) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    value = b"x" * 100
    headers = [("traceparent", TRACEPARENT)] if traced else None
    for _ in range(records):
        while True:
            try:
                producer.produce(topic, value, headers=headers)
                break
            except BufferError:
                producer.poll(0.01)
    assert producer.flush(120) == 0


def compare(args: argparse.Namespace) -> int:
    import tempfile

    precompile()
    from streamplug_kafka_common.admin import create_topic

    tmp = tempfile.mkdtemp(prefix="bench-hooks-")
    cluster = None
    bootstrap = args.bootstrap_servers
    if bootstrap is None:
        from streamplug_testing.broker import KafkaCluster

        cluster = KafkaCluster(nodes=1).start()
        bootstrap = cluster.bootstrap_servers
    topics = {}
    inputs = [
        traced for traced in (False, True) if ("traced" if traced else "plain") in args.inputs
    ]
    # Only the inputs this run measures: filling one takes as long as a few runs.
    for traced in inputs:
        topic = f"hooks-in-{'traced' if traced else 'plain'}-{uuid.uuid4().hex[:8]}"
        create_topic(bootstrap, topic, 1, 1)
        _produce(bootstrap, topic, args.records, traced)
        topics[traced] = topic
    results: dict[tuple[str, bool], list[dict[str, Any]]] = collections.defaultdict(list)
    interpreters = dict(item.split("=", 1) for item in args.interpreter)
    names = [*interpreters, *CONFIGS]
    wanted = set(args.configs.split(";")) if args.configs else set(names)
    configs = [
        (name, traced)
        for traced in inputs
        for name in names
        if name in wanted and not (traced and name in UNTRACED_ONLY)
    ]
    total = len(configs) * args.runs
    done = 0
    here = Path(__file__).resolve()
    try:
        for round_ in range(args.runs):
            for name, traced in configs:
                done += 1
                print(f"[{done}/{total}] round {round_ + 1}: {name}, traced={traced}", flush=True)
                env = {k: v for k, v in os.environ.items() if k not in ("STREAMPLUG_OTEL",)}
                # Another build (main before the hooks, say) runs the hooks-unused job.
                python = interpreters.get(name, sys.executable)
                env.update(CONFIGS.get(name, CONFIGS["hooks unused"]))
                env["PYTHONPATH"] = os.pathsep.join(
                    [str(here.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
                )
                cmd = [
                    python,
                    str(here),
                    "--one",
                    "--config",
                    "hooks unused" if name in interpreters else name,
                    "--bootstrap",
                    str(bootstrap),
                    "--topic",
                    topics[traced],
                    "--records",
                    str(args.records),
                    "--tmp",
                    tmp,
                ] + (["--traced"] if traced else [])
                load = os.getloadavg()[0]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
                line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
                if proc.returncode != 0 or not line:
                    report = {"check": f"WRONG: exit {proc.returncode}: {proc.stderr[-500:]}"}
                else:
                    report = json.loads(line[-1][len("RESULT ") :])
                report["load"] = load
                results[(name, traced)].append(report)
                if report.get("check") != "ok":
                    print(f"    {report.get('check')}", flush=True)
    finally:
        if cluster is not None:
            cluster.stop()
    print(_table(configs, results, args), flush=True)
    if args.json:
        Path(args.json).write_text(
            json.dumps({f"{n}|{t}": r for (n, t), r in results.items()}, indent=1)
        )
    return 0


def _table(
    configs: list[tuple[str, bool]],
    results: dict[tuple[str, bool], list[dict[str, Any]]],
    args: argparse.Namespace,
) -> str:
    lines = [
        f"Kafka -> map -> Kafka, {args.records} value-only 100-byte records, AT_LEAST_ONCE, "
        f"parallelism 1, threads; {args.runs} interleaved runs each, median; "
        f"{os.cpu_count()} cores shared with the broker and other work",
        "",
        "| input | configuration | records/s (median) | runs (records/s) | vs hooks unused "
        "| CPU us/record (median) | CPU vs hooks unused | load avg (1 min) | checks |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def medians(runs: list[dict[str, Any]]) -> tuple[list[float], float, float]:
        good = [args.records / r["elapsed"] for r in runs if r.get("check") == "ok"]
        cpu = [r["cpu_s"] / args.records * 1e6 for r in runs if r.get("check") == "ok"]
        return (
            good,
            statistics.median(good) if good else 0.0,
            statistics.median(cpu) if cpu else float("nan"),
        )

    base: dict[bool, float] = {}
    base_cpu: dict[bool, float] = {}
    for traced in (False, True):
        if results.get(("hooks unused", traced)):
            _, base[traced], base_cpu[traced] = medians(results[("hooks unused", traced)])
    for name, traced in configs:
        runs = results[(name, traced)]
        good, median, cpu_median = medians(runs)
        ratio = median / base[traced] if base.get(traced) else float("nan")
        # Throughput-like: hooks unused's CPU per record over this one's (1.0 = no cost).
        cpu_ratio = base_cpu[traced] / cpu_median if base_cpu.get(traced) else float("nan")
        loads = [r["load"] for r in runs]
        checks = "ok" if all(r.get("check") == "ok" for r in runs) else "WRONG"
        lines.append(
            f"| {'traceparent on every record' if traced else 'no headers'} | {name} "
            f"| {median:,.0f} | {', '.join(f'{g / 1000:.0f}k' for g in good)} | {ratio:.3f} "
            f"| {cpu_median:.2f} | {cpu_ratio:.3f} "
            f"| {min(loads):.1f}-{max(loads):.1f} | {checks} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=600_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--bootstrap-servers")
    parser.add_argument("--json")
    parser.add_argument(
        "--configs", help="configuration names to run, separated by ; (default: all)"
    )
    parser.add_argument(
        "--inputs", default="plain,traced", help="plain (no headers), traced, or both"
    )
    parser.add_argument(
        "--interpreter",
        action="append",
        default=[],
        metavar="LABEL=PYTHON",
        help="also run the hooks-unused job with this Python (another build's venv, e.g. "
        "main before the hooks), labelled LABEL",
    )
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    return one(args) if args.one else compare(args)


if __name__ == "__main__":
    sys.exit(main())
