"""``python benchmarks/compare.py``: every job side by side on one real Kafka broker.

Starts a single-node Apache Kafka (streamplug-testing's launcher, with the JVM settings
Kafka's own start scripts use) unless ``--bootstrap-servers`` names one, fills two input
topics (value only; key and value) of ``--records`` records of 100 bytes in 6 partitions,
warms the broker up (consumer offsets, transaction state, producer ids), then runs every
selected job ``--runs`` times, interleaved (A B C C B A A B C ...: each job beside the hand
loop it is compared with, every other round in reverse), each in its own process with a
fresh output topic that is read back and checked before the next run. A full run then gives
issue 12's target jobs 15 more rounds on their own (--target-rounds), each beside its hand
loop and that loop's twin (``ts-now`` or ``told``), and judges the targets over every
round. Then the latency runs, interleaved in one fixed order. A full run (no --only, no --skip-peers) writes the tables into
benchmarks/RESULTS.md, the raw figures into benchmarks/compare-results.json and two PNG
plots beside them; a partial one only prints, unless --write.

Needs the project installed as the README says, Java 17, and for the peers on first use
PyPI (their virtual environments go to ~/.cache/streamplug-bench) and Maven with Maven
Central (Flink's job, benchmarks/flink). With --only, every selected job's hand loop runs
too, for its ratio.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence

import _common
import _kafka
import confluent_kafka

from compare import configs, envs, report
from compare.latency import LatencyOutcome, latency_run
from compare.run import (
    PARTITIONS,
    Outcome,
    create_commit_log,
    create_topic,
    jemalloc_library,
    throughput_run,
)

JOBS = [
    "The jobs (checkpoints / commits every 1 s wherever there is a guarantee):",
    "",
    "- *hand*: the fastest confluent-kafka loops we can write, one consumer (and one "
    "producer), batches of up to 500 taken as fetched (`consume(500, 0)`, a blocking `poll` "
    "only when empty; 500 is the source's `poll.max.records`), streamplug's fetch tuning, "
    "each batch checked for error events (`any(map(Message.error, batch))`: librdkafka "
    "hands consumer errors out as messages in the batch, so a loop that does not look counts "
    "them as records; the source runs the same scan; since 2026-12-06), its clients closed "
    "before its clock stops, as a job's are before `execute()` returns and every peer's are "
    "(a consumer's close takes 5-28 ms here; since 2026-12-06, session 10); "
    "keys hashed to partitions with murmur2 as the Java producer and streamplug's sink do "
    "(since 2026-12-06, session 10; before, the loops used librdkafka's default, CRC32); "
    "each loop finds its input's extent before it reads, as a bounded job's enumerator does "
    "and the way it does (an admin client made beside the consumer: the topic's partitions, "
    "then their first offsets, then their end offsets), and reads to "
    "those end offsets (since 2026-12-07, session 15; before, the loops were told the "
    "partition and record counts, which the jobs are not); "
    "`source` reads every value (and key); `NONE` produces and flushes at the end; `ALO` "
    "idempotent producer, `flush()` + synchronous offset commit every second; `EOS` one "
    "transaction per second with `send_offsets_to_transaction`. No map call. Kafka -> Kafka "
    "loops write each output record with its input record's timestamp, as streamplug's sink "
    "and Flink's `KafkaSink` do (the element's event time): the same output. The `ts-now` "
    "rows let the producer stamp the current time instead -- less work than any of the "
    "frameworks does, shown for what the timestamps cost; they are no one's baseline. The "
    "`told` rows are the source loops given the partition and record counts instead of "
    "asking (the loops as they were until session 15): less work, the source-only target's "
    "noise gauge. The `jemalloc` rows run the value-only source loop and job with jemalloc "
    "preloaded (`LD_PRELOAD`) instead of glibc's malloc, each compared with the other "
    "(see the notes and docs/source.md, Performance).",
    "- *streamplug*: `KafkaSource` -> `map(identity)` -> `KafkaSink`, bounded at the end "
    "offsets; keyed jobs read `(key, value)` with "
    "`KafkaRecordDeserializationSchema.key_value(None, None)` and write them with "
    "`set_key_value_serialization_schemas(None, None)` (bytes as they are); source-only jobs "
    "end in a discarding sink. EXACTLY_ONCE jobs take a fresh transactional id prefix per run "
    "and name one commit-log topic made before the first run (`commit.log.topic`): a job "
    "creates its own on its very first run (~40 ms here) and finds it on every later run, "
    "which is what these runs stand for (since 2026-12-06, session 10).",
    "- *flink*: Flink's own `KafkaSource` -> `map` -> `KafkaSink` (EXACTLY_ONCE, "
    "transactional id prefix per run), bounded, in a local MiniCluster in a fresh JVM per run "
    "(`java -Xmx1g`, built by Maven from benchmarks/flink); its whole-job time includes "
    "starting the MiniCluster and its JIT warm-up, so *steady* is its fairer figure.",
    "- *quix*: `app.dataframe(topic).apply(identity).to_topic(out)`, `processing_guarantee` "
    "at-least-once / exactly-once, `commit_interval=1`, stopped by `app.run(count=N)`. "
    "*bytewax*: `kafka.input(tail=False)` -> `map` -> `kafka.output`, one worker, no recovery "
    "(so no guarantee: compared with the NONE loop). *arroyo*: `RunTask(identity)` -> "
    "`Produce` -> `CommitOffsets` (at-least-once). *faust*: an agent sending each (key, value) "
    "on; its `exactly_once` is kept in to show the check: its sends bypass the transaction. "
    "Peers run with their own default client settings, each in its own virtual environment; "
    "Quix, Arroyo and Faust stream forever and stop after N records, so they read fewer "
    "records (column *records*) and their start-up weighs more in the whole-job rate.",
]


def _progress(step: int, steps: int, started: float, text: str) -> None:
    elapsed = time.monotonic() - started
    left = f", ~{elapsed / (step - 1) * (steps - step + 1) / 60:.1f} min left" if step > 1 else ""
    print(f"[{step:>3}/{steps} {elapsed / 60:4.1f} min{left}] {text}", end="", flush=True)


def _say(wrong: str | None, figures: Callable[[], str]) -> None:
    """The end of a run's progress line: why its output is wrong, or its figures (only
    formatted when right: a failed run has none)."""
    if wrong:
        print(f" WRONG: {wrong.splitlines()[0]}", flush=True)
    else:
        print(f" {figures()}  ok", flush=True)


def _self_test(bootstrap: str, inputs: dict[bool, tuple[str, int]], records: int) -> int:
    cases = [
        (
            "a record dropped",
            configs.Config("hand", "kafka", "AT_LEAST_ONCE"),
            {"sabotage": "drop"},
        ),
        (
            "a record written twice",
            configs.Config("hand", "kafka", "EXACTLY_ONCE"),
            {"sabotage": "dup"},
        ),
        ("no transactions", configs.Config("hand", "kafka", "EXACTLY_ONCE"), {"mode": "NONE"}),
        ("nothing wrong", configs.Config("hand", "kafka", "EXACTLY_ONCE", keyed=True), {}),
    ]
    failures = 0
    for label, config, overrides in cases:
        o = throughput_run(config, 1, bootstrap, inputs, records, overrides)
        expect_wrong = label != "nothing wrong"
        ok = (o.wrong is not None) == expect_wrong
        failures += not ok
        verdict = f"WRONG: {o.wrong}" if o.wrong else "output checked, right"
        print(f"{'PASS' if ok else 'FAIL'}  {config.name} with {label}: {verdict}", flush=True)
    print(f"{len(cases) - failures} passed, {failures} failed")
    return 1 if failures else 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python benchmarks/compare.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--records", type=int, default=1_000_000, help="records per run (slow peers use fewer)"
    )
    p.add_argument("--runs", type=int, default=3, help="runs per job, interleaved")
    p.add_argument(
        "--only",
        help="comma-separated patterns over job names, e.g. 'hand/*,streamplug/*/value/p1,"
        "latency/*' (see --list)",
    )
    p.add_argument(
        "--skip-peers", action="store_true", help="no Quix, Bytewax, Arroyo, Faust, Flink"
    )
    p.add_argument("--bootstrap-servers", help="use this broker instead of starting one")
    p.add_argument(
        "--latency-rate", type=int, default=50_000, help="input records/s in latency runs"
    )
    p.add_argument("--latency-seconds", type=float, default=10.0, help="length of a latency run")
    p.add_argument("--latency-runs", type=int, help="runs per latency job (default: --runs)")
    p.add_argument(
        "--target-rounds",
        type=int,
        help="after the main rounds, this many more rounds of issue 12's target jobs alone, "
        "each beside its hand loop and that loop's twin, ts-now or told (the noise gauge); the "
        "targets are judged over every round (default: 15 in a full run, 0 with --only)",
    )
    p.add_argument("--list", action="store_true", help="list the job names and exit")
    p.add_argument(
        "--profile",
        metavar="PATTERNS",
        help="instead of measuring: run these jobs (and their hand loops) once each under "
        "py-spy and write where the time goes to benchmarks/profiles/",
    )
    p.add_argument(
        "--instructions",
        metavar="PATTERNS",
        help="instead of measuring: run these streamplug jobs and their hand loops under "
        "valgrind's callgrind, at --records / 2 and --records records, and print what one "
        "more record costs each in instructions (a figure the host's noise does not move; "
        "try --records 120000; needs valgrind, Debian's package of that name)",
    )
    p.add_argument(
        "--self-test",
        action="store_true",
        help="check the output check: hand loops whose output is wrong on purpose must be "
        "reported WRONG (a record dropped, one written twice under EXACTLY_ONCE, output "
        "written without transactions but claimed exactly-once)",
    )
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    p.add_argument(
        "--write",
        action="store_true",
        help="write RESULTS.md and the plots after a partial run too",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    throughput = configs.select(
        configs.THROUGHPUT, args.profile or args.instructions or args.only, args.skip_peers
    )
    latency_only = None
    if args.only:
        latency_only = ",".join(
            p.strip()[len("latency/") :]
            for p in args.only.split(",")
            if p.strip().startswith("latency/")
        )
    latency = (
        configs.select(configs.LATENCY, latency_only, args.skip_peers)
        if (latency_only or not args.only) and not (args.profile or args.instructions)
        else []
    )
    if args.list:
        for c in configs.THROUGHPUT:
            print(c.name)
        for c in configs.LATENCY:
            print("latency/" + c.name)
        return 0
    if not throughput and not latency:
        raise SystemExit(f"--only {args.only!r} selects no job; --list shows the names")
    _common.precompile()
    # A ratio needs its hand loop: run it even when --only left it out.
    names = {c.name for c in throughput}
    for c in list(throughput):
        if c.baseline not in names:
            base = configs.by_name(c.baseline)
            throughput.insert(0, base)
            names.add(base.name)
    throughput.sort(key=configs.THROUGHPUT.index)
    latency_runs = args.latency_runs or args.runs
    target_rounds = args.target_rounds
    if target_rounds is None:
        target_rounds = 0 if args.only else 15
    # Only the targets whose jobs this run measures anyway get the extra rounds.
    target_jobs = configs.target_jobs({c.name for c in throughput}) if target_rounds > 0 else []

    # Prepare every environment before the first measured run. One that cannot be made
    # (no Maven, no registry) leaves its jobs out, said in the report, not the whole run.
    not_run: dict[str, str] = {}
    for env in sorted({c.env for c in throughput + latency if c.env}):
        try:
            if env == "maven":
                envs.flink_command()
            else:
                envs.python_for(env)
        except (SystemExit, OSError, subprocess.CalledProcessError) as e:
            not_run[env] = str(e) or type(e).__name__
            print(f"  left out: the jobs that need {env} ({not_run[env]})", flush=True)
    throughput = [c for c in throughput if c.env not in not_run]
    latency = [c for c in latency if c.env not in not_run]
    if any(c.allocator == "jemalloc" for c in throughput) and jemalloc_library() is None:
        not_run["jemalloc"] = "libjemalloc.so.2 not found (Debian: apt install libjemalloc2)"
        print(f"  left out: the jemalloc rows ({not_run['jemalloc']})", flush=True)
        throughput = [c for c in throughput if c.allocator != "jemalloc"]

    started = time.monotonic()
    date = datetime.datetime.now(datetime.UTC)
    command = " ".join(
        ["python benchmarks/compare.py", shlex.join(argv if argv is not None else sys.argv[1:])]
    ).strip()
    cluster = None
    bootstrap = args.bootstrap_servers
    if not bootstrap:
        from streamplug_testing.broker import KAFKA_SCRIPT_JVM_OPTIONS, KafkaCluster

        print("starting a single-node Apache Kafka...", flush=True)
        # Outputs are deleted once checked; a broker deletes a topic's files a minute
        # later by default, which then ran beside whichever job was being measured.
        # The JVM as Kafka's start scripts set it up, not the test suite's small heap, C1
        # compiler and serial collector, which are there to spare CI machines' CPU.
        cluster = KafkaCluster(
            nodes=1,
            server_properties={"log.segment.delete.delay.ms": 0},
            jvm_defaults=KAFKA_SCRIPT_JVM_OPTIONS,
        ).start()
        bootstrap = cluster.bootstrap_servers
    try:
        inputs: dict[bool, tuple[str, int]] = {}
        need = {c.keyed for c in throughput} | ({False, True} if args.self_test else set())
        for keyed in sorted(need):
            topic = f"bench-in-{'keyed' if keyed else 'value'}-{uuid.uuid4().hex[:8]}"
            create_topic(bootstrap, topic, log_append_time=False)
            print(
                f"producing {args.records:,} {'keyed ' if keyed else ''}records into {topic}...",
                flush=True,
            )
            _kafka.fill(bootstrap, topic, args.records, PARTITIONS, keyed)
            inputs[keyed] = (topic, args.records)

        scratch = f"bench-warmup-{uuid.uuid4().hex[:8]}"
        create_topic(bootstrap, scratch, log_append_time=False)
        print("warming the broker up (offsets, transactions, producer ids)...", flush=True)
        _kafka.warm_up(bootstrap, scratch)
        # A job's first run creates its commit log, every later run finds it: the runs
        # here stand for those later runs (see throughput_run).
        commit_log = f"bench-commits-{uuid.uuid4().hex[:8]}"
        create_commit_log(bootstrap, commit_log)

        if args.self_test:
            return _self_test(bootstrap, inputs, args.records)
        if args.instructions:
            from compare import instructions

            for config in throughput:
                if config.framework == "streamplug":
                    print(instructions.compare(config, bootstrap, args.records, commit_log))
            return 0
        if args.profile:
            from compare.profile import profile

            for config in throughput:
                print(
                    f"profiling {config.name}: {profile(config, bootstrap, inputs, args.records)}"
                )
            return 0
        steps = (
            len(throughput) * args.runs
            + len(target_jobs) * target_rounds
            + len(latency) * latency_runs
        )
        step = 0
        outcomes: list[Outcome] = []
        phases = [("main", throughput, 1, args.runs)]
        if target_jobs:
            phases.append(("targets", target_jobs, args.runs + 1, args.runs + target_rounds))
        for phase, jobs, first, last in phases:
            if phase == "targets":
                print(
                    f"issue 12's targets: {target_rounds} more rounds of "
                    f"{', '.join(c.name for c in jobs)}",
                    flush=True,
                )
            for round_no in range(first, last + 1):
                for config in configs.run_order(jobs, round_no):
                    step += 1
                    _progress(step, steps, started, f" run {round_no}/{last}  {config.name:<30}")
                    o = throughput_run(
                        config, round_no, bootstrap, inputs, args.records, commit_log=commit_log
                    )
                    o.phase = phase
                    outcomes.append(o)
                    _say(
                        o.wrong,
                        lambda o=o: (
                            f"{o.rate:>11,.0f} rec/s  cpu {o.cpu:5.2f} s  "
                            f"rss {o.vmhwm_kb / 1024:5.0f} MiB  load {o.load1:.1f}  "
                            f"settled {o.settled_s:.1f} s"
                        ),
                    )
        lat: list[LatencyOutcome] = []
        for round_no in range(1, latency_runs + 1):
            for config in latency:
                step += 1
                _progress(
                    step,
                    steps,
                    started,
                    f" run {round_no}/{latency_runs}  latency/{config.name:<22}",
                )
                lo = latency_run(
                    config, round_no, bootstrap, args.latency_rate, args.latency_seconds
                )
                lat.append(lo)
                _say(
                    lo.wrong,
                    lambda lo=lo: (
                        f"p50 {lo.p50_ms:8.1f} ms  p99 {lo.p99_ms:8.1f} ms  "
                        f"(input lag p50 {lo.input_lag_p50_ms or 0:6.1f}, job p50 "
                        f"{lo.job_p50_ms or 0:6.1f})  "
                        f"input {lo.achieved_rate or 0:,.0f}/s  load {lo.load1:.1f}"
                    ),
                )
    finally:
        if cluster is not None:
            cluster.stop()

    minutes = (time.monotonic() - started) / 60
    summaries = [
        report.summarize(c, [o for o in outcomes if o.config == c.name and o.phase == "main"])
        for c in throughput
    ]
    versions = sorted({s["version"] for s in summaries if s["version"]})
    kafka_version = (
        "Apache Kafka 4.1.1 (streamplug-testing's launcher, 1 node, the JVM settings of "
        "Kafka's start scripts: 1 GiB heap, G1)"
        if cluster
        else (f"external broker {bootstrap}")
    )
    title = (
        f"{date:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores shared with the broker, "
        f"{args.records:,} records x {args.runs} runs"
    )
    lat_summary = []
    for name in dict.fromkeys(o.config for o in lat):
        runs = [o for o in lat if o.config == name]
        good = [o for o in runs if o.wrong is None]

        def med(key: str, good: list[LatencyOutcome] = good) -> float | None:
            vals = sorted(getattr(o, key) for o in good if getattr(o, key) is not None)
            return vals[len(vals) // 2] if vals else None

        lat_summary.append(
            {
                "config": name,
                "wrong": [o.wrong for o in runs if o.wrong],
                "p50_ms": med("p50_ms"),
                "p99_ms": med("p99_ms"),
                "input_lag_p50_ms": med("input_lag_p50_ms"),
                "job_p50_ms": med("job_p50_ms"),
                "job_p99_ms": med("job_p99_ms"),
            }
        )
    payload = {
        "title": title,
        "command": command,
        "date": date.isoformat(),
        "minutes": minutes,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "python": platform.python_version(),
        "librdkafka": confluent_kafka.libversion()[0],
        "java": envs.java_version(),
        "broker": kafka_version,
        "versions": versions,
        "throughput": summaries,
        "runs": [o.__dict__ for o in outcomes],
        "latency_rate": args.latency_rate,
        "latency": [o.__dict__ for o in lat],
        "latency_summary": lat_summary,
        "target_rounds": target_rounds if target_jobs else 0,
    }
    lines = [
        f"Command: `{command}` ({minutes:.0f} min). {title}. Broker: {kafka_version}. "
        f"Python {platform.python_version()}, librdkafka {confluent_kafka.libversion()[0]}, "
        f"{envs.java_version()}. Versions: {'; '.join(versions)}.",
        "",
        "Input: 100-byte values (value only) or 12-byte keys + 100-byte values (keyed), "
        f"{PARTITIONS} partitions. *records/s* = records / (end of the job - its start), the "
        "whole job including start-up and the last commit; *steady* leaves out start-up "
        "(from the first output record's broker append time, or the first batch read for "
        "source-only jobs, to the end). *ratio* = median records/s over that of the hand loop "
        "with the same guarantee and record shape (*CPU ratio*: its CPU-seconds per record "
        "over ours, above 1 = we use less). CPU and peak RSS (VmHWM) are the measured "
        "process's own, every thread. Each run is its own process with a fresh output topic, "
        "read back before the next run: every record once by its sequence number (and key), "
        "none missing, none foreign; read_committed and transaction markers under "
        "EXACTLY_ONCE. A run that fails the check is WRONG and not counted. Before every run "
        "(the loops' and every framework's) the page cache is written out and the run waits, "
        "at most 5 s, until the CPUs are 85% idle over 0.1 s, so that the previous run's "
        "leftovers (its output's writeback, the broker's housekeeping) do not run beside it "
        "(`settled_s` in compare-results.json; since 2026-12-06, session 11).",
        "",
        *report.throughput_table(summaries),
        "",
        "Issue 12's targets: streamplug over the hand loop doing the same work, parallelism 1, "
        f"over every round of this run (the {args.runs} above"
        + (
            f" and {target_rounds} more of these jobs alone, right after them; every other "
            "round runs in reverse order, so a job and its loop take turns at running first"
            if target_jobs
            else ""
        )
        + "). *ratio*: median records/s over the loop's, the verdict's figure; then the "
        "ratio within each round (the job ran beside its loop). The noise gauges are the "
        "loops' `ts-now` and `told` twins over the loops: a twin does strictly less work, so "
        "it must come out at 1 or above; a gauge below 1 says the rounds measured the machine "
        "as much as the loops.",
        "",
        *report.targets_table(outcomes),
        "",
        *JOBS,
    ]
    if lat:
        lines += [
            "",
            f"End-to-end latency, {args.latency_rate:,} records/s for {args.latency_seconds:g} s "
            f"(first 3 s left out), value only, parallelism 1, medians over {latency_runs} runs. "
            "*p50 ... max*: from the time the input producer's schedule stamped into a record "
            "to the reader getting it from the output; *input lag*: stamp to the input's "
            "broker append time (before any job could read the record); *job*: input append "
            "to the reader (the job and the output side; millisecond resolution):",
            "",
            *report.latency_table(lat),
        ]
    if not_run:
        lines += [
            "",
            "Left out of this run: "
            + "; ".join(f"jobs needing {env} ({why})" for env, why in not_run.items())
            + ".",
        ]
    text = "\n".join(lines)
    print()
    print(text)
    if (args.write or not (args.only or args.skip_peers)) and not args.no_write:
        report.write_json(payload)
        try:
            plots = report.plot(
                {
                    "throughput": report.BENCHMARKS / "compare-throughput.png",
                    **({"latency": report.BENCHMARKS / "compare-latency.png"} if lat else {}),
                }
            )
        except (SystemExit, OSError, subprocess.CalledProcessError) as e:
            print(f"no plots: {e}", flush=True)
            plots = []
        if plots:
            text += (
                "\n\nPlots: "
                + ", ".join(f"[{p}]({p})" for p in plots)
                + "; raw figures: [compare-results.json](compare-results.json)."
            )
        report.update_results_md(text)
        print(f"\nwritten: {report.RESULTS_MD}, {report.RESULTS_JSON}, {', '.join(plots)}")
    wrong = sum(1 for o in outcomes if o.wrong) + sum(1 for o in lat if o.wrong)
    print(f"{wrong} wrong runs of {len(outcomes) + len(lat)}")
    return 0
