"""Scaling across runtimes: the same jobs at parallelism 1, 2 and 4 under ``threads``,
``processes`` and (with streamplug-ray installed) ``ray``, side by side in one run.

    python benchmarks/bench_scaling.py [--records 1000000] [--cpu-records 200000] [--runs 3]
                                       [--parallelism 1,2,4] [--runtimes threads,processes,ray,plain]
                                       [--jobs cpu,kafka] [--bootstrap-servers HOST:PORT]
                                       [--partitions 6] [--shapes value,keyed]
                                       [--guarantees at-least-once,exactly-once]

Jobs:
- ``cpu``: a collection source -> a CPU-bound map (~15 us of pure Python per record) ->
  a discarding sink: how much Python work each runtime gets done. Beside it, runtime
  ``plain`` (no streamplug): the same function over the same numbers in ``p`` spawned
  processes, each given its share -- the most this machine gives any framework, so a
  ratio can be read against what was possible in the same run.
- ``kafka``: Kafka -> identity map -> Kafka, 100-byte values (and 8-byte keys for the keyed
  variant), AT_LEAST_ONCE and EXACTLY_ONCE, checkpoints every second, input (and output)
  topics of 6 partitions (``--partitions 2,6,24`` compares counts), on one local Apache
  Kafka broker the command starts (or ``--bootstrap-servers``). Every run's output is read
  back and checked (count; duplicates by key where keyed; read_committed where
  transactional). A wrong run is reported as WRONG. Beside it, runtime ``plain``: ``p``
  hand-written confluent-kafka loops (compare.py's), each in its own process over its share
  of the partitions -- the machine's ceiling for ``p`` processes with the broker on the
  same cores.

Every run is its own process (``--one``), so the peak memory of the driver is that run's
own (its VmHWM); worker processes' VmHWM is sampled while they run. Runs are interleaved
(every configuration once, then again...). Ratios compare each configuration with
``threads`` at parallelism 1 of the same job. This machine has 2 cores, shared with the
broker: say so next to every figure.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from compare.runners._common import cpu_seconds_of, precompile, rusage_cpu_seconds, vmhwm_kb_of

CPU_WORK = 300


def cpu_bound(x: int) -> int:
    # Pure Python arithmetic: the GIL-bound work a user's map does.
    acc = x
    for i in range(CPU_WORK):
        acc = (acc * 31 + i) % 1_000_003
    return acc


def identity(value: Any) -> Any:
    return value


class WorkerSampler:
    """Samples the worker processes' VmHWM and CPU time while a job runs (they end with
    the job, so after it there is nothing left to ask)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.hwm: dict[int, int] = {}
        self.cpu: dict[int, float] = {}
        self.started = time.perf_counter()
        self.first_record: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            if self.first_record is None and self.client.metrics().records_in > 0:
                self.first_record = time.perf_counter() - self.started
            for pid in self.client.worker_pids():
                hwm = vmhwm_kb_of(pid)
                cpu = cpu_seconds_of(pid)
                if hwm is not None:
                    self.hwm[pid] = max(hwm, self.hwm.get(pid, 0))
                if cpu is not None:
                    self.cpu[pid] = max(cpu, self.cpu.get(pid, 0.0))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# -- one run (in its own process) ------------------------------------------------------------


def _plain_share(share: range, times: Any) -> None:
    started = time.perf_counter()
    for x in share:
        cpu_bound(x)
    times.put((started, time.perf_counter()))


def run_plain(args: argparse.Namespace) -> dict[str, Any]:
    """The CPU-bound map without a framework: ``p`` spawned processes, each over its share."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    times = context.Queue()
    started = time.perf_counter()
    shares = [range(i, args.cpu_records, args.p) for i in range(args.p)]
    workers = [context.Process(target=_plain_share, args=(s, times)) for s in shares]
    for w in workers:
        w.start()
    spans = [times.get() for _ in workers]
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    ok = all(w.exitcode == 0 for w in workers)
    return {
        "elapsed": elapsed,
        "records": args.cpu_records,
        "check": "ok" if ok else "WRONG: a process failed",
        "worker_hwm_kib": None,
        "worker_cpu_s": None,
        "workers": len(workers),
        # Steady = from the moment the first process began its share.
        "first_record_s": min(start for start, _ in spans) - started,
    }


def run_cpu(args: argparse.Namespace) -> dict[str, Any]:
    if args.runtime == "plain":
        return run_plain(args)
    from streamplug.connectors import CollectionSource, DiscardingSink
    from streamplug.runtime import StreamExecutionEnvironment

    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(args.p).set_runtime(args.runtime)
    source = CollectionSource(list(range(args.cpu_records)), num_splits=8, batch_size=500)
    env.from_source(source, None, "numbers").map(cpu_bound).sink_to(DiscardingSink())
    started = time.perf_counter()
    client = env.execute_async("bench-cpu")
    sampler = WorkerSampler(client)
    result = client.wait()
    elapsed = time.perf_counter() - started
    sampler.stop()
    ok = result.records_in == args.cpu_records and result.records_out == args.cpu_records
    return {
        "elapsed": elapsed,
        "records": args.cpu_records,
        "check": "ok" if ok else f"WRONG: in {result.records_in} out {result.records_out}",
        "worker_hwm_kib": max(sampler.hwm.values(), default=None),
        "worker_cpu_s": sum(sampler.cpu.values()),
        "workers": len(sampler.hwm),
        "first_record_s": sampler.first_record,
    }


HAND_LOOP = Path(__file__).resolve().parent / "compare" / "runners" / "hand.py"


def run_plain_kafka(args: argparse.Namespace) -> dict[str, Any]:
    """Kafka -> Kafka without a framework: ``p`` hand-written confluent-kafka loops (the ones
    compare.py measures streamplug against, same guarantee and commit cadence), each in its
    own process over its share of the partitions -- the most this machine gives ``p``
    processes of any framework while the broker shares its cores."""
    from streamplug.api.sink import DeliveryGuarantee
    from streamplug_kafka_common.admin import create_topic

    keyed = args.shape == "keyed"
    guarantee = DeliveryGuarantee.parse(args.guarantee)
    out = f"scale-out-{uuid.uuid4().hex[:10]}"
    n = args.input_partitions
    create_topic(args.bootstrap, out, n, 1)
    shares = [list(range(i, n, args.p)) for i in range(args.p)]
    started, started_wall = time.perf_counter(), time.time()
    procs = []
    for share in shares:
        spec = {
            "bootstrap": args.bootstrap,
            "in": args.topic,
            "out": out,
            "mode": guarantee.name,
            "keyed": keyed,
            # _produce puts record i on partition i % n.
            "records": sum(len(range(p, args.records, n)) for p in share),
            "partitions": n,
            "assign": share,
            "checkpoint_ms": 1000,
            # As streamplug's sink writes them: the input records' timestamps.
            "timestamps": True,
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(HAND_LOOP), json.dumps(spec)],
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [proc.communicate(timeout=900)[0] for proc in procs]
    elapsed = time.perf_counter() - started
    reports = [
        json.loads(line[len("RESULT ") :])
        for text in outputs
        for line in text.splitlines()
        if line.startswith("RESULT ")
    ]
    if any(proc.returncode != 0 for proc in procs) or len(reports) != len(procs):
        check = "WRONG: a loop failed"
    else:
        check = _check_output(args, out, keyed, guarantee is DeliveryGuarantee.EXACTLY_ONCE)
    return {
        "elapsed": elapsed,
        "records": args.records,
        "check": check,
        "worker_hwm_kib": max((r["vmhwm_kb"] for r in reports), default=None),
        # The loops are this process's children: their CPU is reaped into RUSAGE_CHILDREN.
        "worker_cpu_s": None,
        "workers": len(procs),
        # Steady = from the moment the first loop opened its window.
        "first_record_s": (min(r["t_start"] for r in reports) - started_wall if reports else None),
    }


def run_kafka(args: argparse.Namespace) -> dict[str, Any]:
    if args.runtime == "plain":
        return run_plain_kafka(args)
    from streamplug.api.sink import DeliveryGuarantee
    from streamplug.runtime import StreamExecutionEnvironment
    from streamplug_kafka_sink import KafkaRecordSerializationSchema, KafkaSink
    from streamplug_kafka_source import (
        KafkaOffsetsInitializer,
        KafkaRecordDeserializationSchema,
        KafkaSource,
    )
    from streamplug_serde import BytesSchema

    keyed = args.shape == "keyed"
    guarantee = DeliveryGuarantee.parse(args.guarantee)
    out = f"scale-out-{uuid.uuid4().hex[:10]}"
    from streamplug_kafka_common.admin import create_topic

    create_topic(args.bootstrap, out, args.input_partitions, 1)
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(args.p).set_runtime(args.runtime).enable_checkpointing(1000)
    env.get_checkpoint_config().set_checkpoint_storage_dir(Path(args.tmp) / uuid.uuid4().hex)
    builder = (
        KafkaSource.builder()
        .set_bootstrap_servers(args.bootstrap)
        .set_topics(args.topic)
        .set_group_id(f"scale-{uuid.uuid4().hex[:8]}")
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_bounded(KafkaOffsetsInitializer.latest())
    )
    record = KafkaRecordSerializationSchema.builder().set_topic(out)
    if keyed:
        builder.set_deserializer(KafkaRecordDeserializationSchema.key_value(None, None))
        record.set_key_value_serialization_schemas(None, None)
    else:
        builder.set_value_only_deserializer(BytesSchema())
        record.set_value_serialization_schema(BytesSchema())
    sink = (
        KafkaSink.builder()
        .set_bootstrap_servers(args.bootstrap)
        .set_record_serializer(record.build())
        .set_delivery_guarantee(guarantee)
        .set_transactional_id_prefix(f"scale-{uuid.uuid4().hex[:8]}")
        .build()
    )
    env.from_source(builder.build(), None, "in").map(identity).sink_to(sink)
    started = time.perf_counter()
    client = env.execute_async("bench-kafka")
    sampler = WorkerSampler(client)
    result = client.wait()
    elapsed = time.perf_counter() - started
    sampler.stop()
    # Before the read-back below, which holds the whole output in this process.
    driver_hwm = vmhwm_kb_of("self")
    check = _check_output(args, out, keyed, guarantee is DeliveryGuarantee.EXACTLY_ONCE)
    return {
        "driver_hwm_kib": driver_hwm,
        "elapsed": elapsed,
        "records": args.records,
        "records_in": result.records_in,
        "check": check,
        "worker_hwm_kib": max(sampler.hwm.values(), default=None),
        "worker_cpu_s": sum(sampler.cpu.values()),
        "workers": len(sampler.hwm),
        "first_record_s": sampler.first_record,
    }


def _check_output(args: argparse.Namespace, topic: str, keyed: bool, committed: bool) -> str:
    from streamplug_kafka_common.admin import read_all

    isolation = "read_committed" if committed else "read_uncommitted"
    messages = read_all(args.bootstrap, topic, isolation, timeout=120)
    if len(messages) != args.records:
        return f"WRONG: {len(messages)} records, expected {args.records}"
    if keyed:
        counts = collections.Counter(m.key() for m in messages)
        duplicates = sum(c - 1 for c in counts.values() if c > 1)
        if duplicates:
            return f"WRONG: {duplicates} duplicate keys"
    return "ok"


def one(args: argparse.Namespace) -> int:
    before = rusage_cpu_seconds(resource.RUSAGE_SELF)
    children_before = rusage_cpu_seconds(resource.RUSAGE_CHILDREN)
    report = run_cpu(args) if args.job == "cpu" else run_kafka(args)
    driver_cpu = rusage_cpu_seconds(resource.RUSAGE_SELF) - before
    reaped = rusage_cpu_seconds(resource.RUSAGE_CHILDREN) - children_before
    # Worker processes are reaped at the end of the run: their CPU shows in RUSAGE_CHILDREN;
    # the sampled figure is the fallback for runtimes whose workers are not our children.
    report["cpu_s"] = driver_cpu + max(reaped, report.pop("worker_cpu_s") or 0.0)
    report["driver_cpu_s"] = driver_cpu
    report.setdefault("driver_hwm_kib", vmhwm_kb_of("self"))
    print("RESULT " + json.dumps(report), flush=True)
    return 0


# -- the whole comparison ------------------------------------------------------------------------


def _produce(bootstrap: str, topic: str, records: int, keyed: bool, partitions: int) -> None:
    from confluent_kafka import Producer

    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True}
    )
    value = b"x" * 100
    for i in range(records):
        key = i.to_bytes(8, "big") if keyed else None
        while True:
            try:
                producer.produce(topic, value, key, partition=i % partitions)
                break
            except BufferError:
                producer.poll(0.01)
    assert producer.flush(120) == 0


def _available_runtimes(wanted: list[str]) -> list[str]:
    from streamplug.plugins import build_plugin_host
    from streamplug.runtime.runtimes import runtime_names

    known = [*runtime_names(build_plugin_host()), "plain"]
    missing = [r for r in wanted if r not in known]
    if missing:
        print(f"skipping runtimes not installed: {', '.join(missing)}", flush=True)
    return [r for r in wanted if r in known]


def compare(args: argparse.Namespace) -> int:
    import tempfile

    precompile()
    runtimes = _available_runtimes(args.runtimes.split(","))
    parallelisms = [int(p) for p in args.parallelism.split(",")]
    jobs = args.jobs.split(",")
    tmp = tempfile.mkdtemp(prefix="bench-scaling-")
    cluster = None
    bootstrap = args.bootstrap_servers
    # Shape label -> (shape, partitions, input topic).
    inputs: dict[str, tuple[str, int, str]] = {}
    counts = [int(n) for n in args.partitions.split(",")]
    shapes = args.shapes.split(",")
    if "kafka" in jobs:
        if bootstrap is None:
            from streamplug_testing.broker import KafkaCluster

            cluster = KafkaCluster(nodes=1).start()
            bootstrap = cluster.bootstrap_servers
        from streamplug_kafka_common.admin import create_topic

        for shape in shapes:
            for n in counts:
                topic = f"scale-in-{shape}-{n}-{uuid.uuid4().hex[:8]}"
                create_topic(bootstrap, topic, n, 1)
                _produce(bootstrap, topic, args.records, shape == "keyed", n)
                label = shape if counts == [6] else f"{shape}, {n} partitions"
                inputs[label] = (shape, n, topic)
    configs: list[tuple[str, ...]] = []
    for job in jobs:
        variants = (
            [("cpu", "-", "-")]
            if job == "cpu"
            else [("kafka", label, g) for label in inputs for g in args.guarantees.split(",")]
        )
        for variant in variants:
            for runtime in runtimes:
                for p in parallelisms:
                    configs.append((*variant, runtime, str(p)))
    results: dict[tuple[str, ...], list[dict[str, Any]]] = collections.defaultdict(list)
    total = len(configs) * args.runs
    done = 0
    try:
        for round_ in range(args.runs):
            for config in configs:
                job, shape, guarantee, runtime, p = config
                done += 1
                label = " ".join(config)
                print(f"[{done}/{total}] round {round_ + 1}: {label}", flush=True)
                cmd = [
                    sys.executable,
                    __file__,
                    "--one",
                    "--job",
                    job,
                    "--runtime",
                    runtime,
                    "--p",
                    p,
                    "--records",
                    str(args.records),
                    "--cpu-records",
                    str(args.cpu_records),
                    "--tmp",
                    tmp,
                ]
                if job == "kafka":
                    raw_shape, partitions, topic = inputs[shape]
                    cmd += [
                        "--bootstrap",
                        str(bootstrap),
                        "--topic",
                        topic,
                        "--input-partitions",
                        str(partitions),
                        "--shape",
                        raw_shape,
                        "--guarantee",
                        guarantee,
                    ]
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
                line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
                if proc.returncode != 0 or not line:
                    report = {"check": f"WRONG: exit {proc.returncode}: {proc.stderr[-500:]}"}
                else:
                    report = json.loads(line[-1][len("RESULT ") :])
                report["load"] = os.getloadavg()[0]
                results[config].append(report)
                if report.get("check") != "ok":
                    print(f"    {report.get('check')}", flush=True)
    finally:
        if cluster is not None:
            cluster.stop()
    print(_table(configs, results, args), flush=True)
    return 0


def _table(
    configs: list[tuple[str, ...]],
    results: dict[tuple[str, ...], list[dict[str, Any]]],
    args: argparse.Namespace,
) -> str:
    import confluent_kafka

    lines = [
        f"{time.strftime('%Y-%m-%d')}, Python {platform.python_version()}, confluent-kafka "
        f"{confluent_kafka.version()[0]}, {os.cpu_count()} cores shared with the broker; "
        f"{args.runs} interleaved runs per configuration; ratio = median rate / median rate "
        "of threads at parallelism 1 of the same job",
        "",
        "| job | shape | guarantee | runtime | p | records/s median | spread (min-max) | ratio "
        "| steady records/s | steady ratio | first record s | CPU-s per 1M | driver VmHWM MiB "
        "| worker VmHWM MiB | load | check |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    base: dict[tuple[str, ...], float] = {}
    steady_base: dict[tuple[str, ...], float] = {}
    # Median whole-job rate per configuration, for the speed-ups under the table.
    medians: dict[tuple[str, ...], float] = {}
    for config in configs:
        runs = [r for r in results[config] if r.get("check") == "ok"]
        job, shape, guarantee, runtime, p = config
        if not runs:
            lines.append(
                f"| {job} | {shape} | {guarantee} | {runtime} | {p} | - | - | - | - | - | - | - | - "
                "| - | - | WRONG |"
            )
            continue
        rates = [r["records"] / r["elapsed"] for r in runs]
        median = statistics.median(rates)
        medians[config] = median
        # From the first record on: what the runtime does once started, without its start-up.
        steadies = [
            r["records"] / (r["elapsed"] - r["first_record_s"])
            for r in runs
            if r.get("first_record_s") is not None and r["elapsed"] > r["first_record_s"]
        ]
        steady = statistics.median(steadies) if steadies else None
        key = (job, shape, guarantee)
        if runtime == "threads" and p == "1":
            base[key] = median
            if steady is not None:
                steady_base[key] = steady
        ratio = median / base[key] if key in base else None
        steady_ratio = steady / steady_base[key] if steady and key in steady_base else None
        cpu = statistics.median(r["cpu_s"] for r in runs) / runs[0]["records"] * 1e6
        driver = statistics.median(r["driver_hwm_kib"] for r in runs) / 1024
        worker = [r["worker_hwm_kib"] for r in runs if r.get("worker_hwm_kib")]
        worker_text = f"{statistics.median(worker) / 1024:.0f}" if worker else "-"
        load = statistics.median(r["load"] for r in runs)
        wrong = len(results[config]) - len(runs)
        ratio_text = f"{ratio:.2f}" if ratio is not None else "-"
        firsts = [r["first_record_s"] for r in runs if r.get("first_record_s") is not None]
        first_text = f"{statistics.median(firsts):.2f}" if firsts else "-"
        check = "ok" if not wrong else f"{wrong} WRONG"
        lines.append(
            f"| {job} | {shape} | {guarantee} | {runtime} | {p} | {median:,.0f} | "
            f"{min(rates):,.0f}-{max(rates):,.0f} | {ratio_text} | "
            f"{f'{steady:,.0f}' if steady else '-'} | "
            f"{f'{steady_ratio:.2f}' if steady_ratio else '-'} | {first_text} | {cpu:.2f} | "
            f"{driver:.0f} | "
            f"{worker_text} | {load:.1f} | {check} |"
        )
    lines += ["", *_ceilings(configs, medians)]
    return "\n".join(lines)


def _ceilings(configs: list[tuple[str, ...]], medians: dict[tuple[str, ...], float]) -> list[str]:
    """Each runtime's speed-up at p over the same runtime at 1, beside ``plain``'s: the
    speed-up the machine allowed without a framework in the same run. ``medians``: the
    table's median whole-job rate of each configuration with a good run."""
    out = []
    for config in configs:
        *variant, runtime, p = config
        one = medians.get((*variant, runtime, "1"))
        threads_one = medians.get((*variant, "threads", "1"))
        if p == "1" or config not in medians or one is None:
            continue
        text = f"{' '.join(variant)} {runtime} p{p}: {medians[config] / one:.2f}x its own p1"
        if threads_one is not None:
            text += f", {medians[config] / threads_one:.2f}x threads p1"
        out.append(f"- {text}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--cpu-records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--parallelism", default="1,2,4")
    parser.add_argument("--runtimes", default="threads,processes,ray,plain")
    parser.add_argument("--jobs", default="cpu,kafka")
    parser.add_argument("--bootstrap-servers")
    parser.add_argument(
        "--partitions", default="6", help="input partition counts to compare, e.g. 2,6,24"
    )
    parser.add_argument("--shapes", default="value,keyed")
    parser.add_argument("--guarantees", default="at-least-once,exactly-once")
    parser.add_argument("--input-partitions", type=int, default=6, help=argparse.SUPPRESS)
    # One run, in its own process (what --one runs).
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--runtime", help=argparse.SUPPRESS)
    parser.add_argument("--p", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    parser.add_argument("--guarantee", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    return one(args) if args.one else compare(args)


if __name__ == "__main__":
    sys.exit(main())
