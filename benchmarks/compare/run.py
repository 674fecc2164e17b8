"""One measured run: a fresh output topic, the runner in its own process, its output read
back and checked."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _kafka
from confluent_kafka.admin import AdminClient

from compare import envs
from compare.configs import Config

RUNNERS = Path(__file__).resolve().parent / "runners"
RUNNER_FILE = {
    "hand": "hand.py",
    "streamplug": "streamplug_job.py",
    "quix": "quix_app.py",
    "bytewax": "bytewax_flow.py",
    "arroyo": "arroyo_app.py",
    "faust": "faust_app.py",
}
PARTITIONS = 6
CHECKPOINT_MS = 1000


@dataclasses.dataclass
class Outcome:
    """What one run measured, and whether its output was right (``wrong`` says why not)."""

    config: str
    round: int
    records: int
    #: ``main`` (every selected job) or ``targets`` (the extra rounds of issue 12's targets)
    phase: str = "main"
    wall: float = float("nan")
    steady: float = float("nan")
    cpu: float = float("nan")
    vmhwm_kb: int = -1
    load1: float = float("nan")
    #: seconds spent waiting for a quiet machine before the run (see ``settle``)
    settled_s: float = float("nan")
    version: str = ""
    wrong: str | None = None
    note: str | None = None
    checked: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.records / self.wall

    @property
    def steady_rate(self) -> float:
        return self.records / self.steady


class RunnerFailed(RuntimeError):
    pass


#: A run starts once the machine's CPUs are this idle over one sample...
QUIET_IDLE = 0.85
QUIET_SAMPLE_S = 0.1
#: ...or after this long, whatever is still running.
SETTLE_LIMIT_S = 5.0


def _cpu_times() -> tuple[int, int]:
    """(idle + iowait, total) jiffies of every CPU, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(f) for f in stat.readline().split()[1:]]
    return fields[3] + fields[4], sum(fields)


def settle() -> float:
    """Write the page cache's dirty pages out and wait until the machine is quiet; returns
    the seconds it took.

    The run before left work behind that is nobody's part of the next one: ~100-200 MB of
    output in the page cache, which the kernel writes out up to 30 s later, and the
    broker's own housekeeping after a topic is deleted. On 2 cores that work ran beside
    whichever job came next, in no order, and took CPU from it. Every run, the loops' and
    every framework's, starts after the same wait. Where /proc/stat is missing (not Linux)
    only the sync is done."""
    started = time.monotonic()
    os.sync()
    try:
        idle_before, total_before = _cpu_times()
    except OSError:
        return time.monotonic() - started
    while time.monotonic() - started < SETTLE_LIMIT_S:
        time.sleep(QUIET_SAMPLE_S)
        idle_now, total_now = _cpu_times()
        spent = total_now - total_before
        if spent > 0 and (idle_now - idle_before) / spent >= QUIET_IDLE:
            break
        idle_before, total_before = idle_now, total_now
    return time.monotonic() - started


def runner_command(config: Config, spec: dict[str, Any]) -> list[str]:
    if config.framework == "flink":
        args = {
            "bootstrap": spec["bootstrap"],
            "in": spec["in"],
            "out": spec["out"],
            "guarantee": config.guarantee,
            "keyed": str(config.keyed).lower(),
            "parallelism": config.parallelism,
            "checkpoint_ms": CHECKPOINT_MS,
        }
        if spec.get("stop"):
            args["stop"] = ",".join(f"{p}:{o}" for p, o in spec["stop"].items())
        return [*envs.flink_command(), *(f"{k}={v}" for k, v in args.items())]
    python = envs.python_for(config.env)
    return [python, str(RUNNERS / RUNNER_FILE[config.framework]), json.dumps(spec)]


def jemalloc_library() -> str | None:
    """The jemalloc shared library's path (Debian's ``libjemalloc2``), or None."""
    for directory in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib"):
        path = Path(directory) / "libjemalloc.so.2"
        if path.exists():
            return str(path)
    return None


def runner_env(config: Config) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if config.allocator == "jemalloc":
        library = jemalloc_library()
        if library is None:
            raise RunnerFailed("jemalloc is not installed (Debian: apt install libjemalloc2)")
        env["LD_PRELOAD"] = " ".join(filter(None, [library, env.get("LD_PRELOAD", "")]))
    if config.framework == "streamplug":
        # Installed plugins take part in every job; tracing (streamplug-otel, installed by
        # the README's `pip install . ./plugins/*`) is not part of the job measured here.
        env["STREAMPLUG_DISABLED_PLUGINS"] = ",".join(
            filter(None, [os.environ.get("STREAMPLUG_DISABLED_PLUGINS", ""), "otel"])
        )
    return env


def start_runner(
    config: Config, spec: dict[str, Any], log: Path, wrapper: Sequence[str] = ()
) -> subprocess.Popen[str]:
    """``wrapper``: a command the runner runs under (valgrind, for compare.instructions)."""
    cmd = [*wrapper, *runner_command(config, spec)]
    env = runner_env(config)
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
        env=env,
        start_new_session=True,  # its own process group, so a hung run can be ended whole
    )


def finish_runner(proc: subprocess.Popen[str], timeout: float, log: Path) -> dict[str, Any]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise RunnerFailed(f"did not finish within {timeout:.0f} s (log: {log})") from None
    with log.open("a") as f:
        f.write(out)
    result = None
    # Faust sends its process's stdout through its logging, to stderr (the log).
    for line in [*log.read_text(errors="replace").splitlines(), *out.splitlines()]:
        at = line.find("RESULT {")
        if at >= 0:
            result = json.loads(line[at + len("RESULT ") :].strip())
    if proc.returncode != 0 or result is None:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        last = lines[-1].strip() if lines else "no output"
        raise RunnerFailed(f"exit code {proc.returncode}, no result: {last} (log {log})")
    return result


def create_topic(bootstrap: str, topic: str, log_append_time: bool = True) -> None:
    from streamplug_kafka_common import admin

    config = {"message.timestamp.type": "LogAppendTime"} if log_append_time else None
    admin.create_topic(
        {"bootstrap.servers": bootstrap, "log_level": 4}, topic, PARTITIONS, config=config
    )


def create_commit_log(bootstrap: str, topic: str) -> None:
    """The commit-log topic streamplug's exactly-once sink keeps its decisions in, made as
    the sink makes its own (one partition, delete policy) so that every run finds it."""
    from streamplug_kafka_common import admin

    admin.create_topic(
        {"bootstrap.servers": bootstrap, "log_level": 4},
        topic,
        1,
        config={"cleanup.policy": "delete"},
    )


_admins: dict[str, AdminClient] = {}


def delete_topic(bootstrap: str, topic: str) -> None:
    """Outputs are deleted once checked: 100 runs of 1M records would fill the disk."""
    if bootstrap not in _admins:
        # One client for the whole run (a client per call logs a purge notice as it goes).
        _admins[bootstrap] = AdminClient({"bootstrap.servers": bootstrap, "log_level": 4})
    futures = _admins[bootstrap].delete_topics([topic])
    for future in futures.values():
        # A topic left behind only costs disk space.
        with contextlib.suppress(Exception):
            future.result(30)


def judge(config: Config, records: int, check: _kafka.Check) -> str | None:
    """Why the output is wrong, or None. Everything asked for must be there once, nothing
    else; exactly-once output must have been written in transactions and is read
    read_committed. Duplicates are allowed under NONE and AT_LEAST_ONCE (reported, and
    there should be none in a run without failures)."""
    problems = []
    if check.invalid:
        problems.append(f"{check.invalid} records that are not in the input")
    if check.gaps:
        problems.append(f"{check.gaps} missing between records that are there")
    short = records - check.distinct
    if short > 0:
        problems.append(f"{short} of {records:,} records missing")
    if config.bounded and check.distinct > records:
        problems.append(f"{check.distinct - records} records beyond the input")
    if config.guarantee == "EXACTLY_ONCE":
        if check.duplicates:
            problems.append(f"{check.duplicates} duplicates (read_committed)")
        if check.markers <= 0:
            problems.append("no transaction markers: output not written in transactions")
    return "; ".join(problems) or None


def throughput_run(
    config: Config,
    round_no: int,
    bootstrap: str,
    inputs: dict[bool, tuple[str, int]],
    records: int,
    overrides: dict[str, Any] | None = None,
    commit_log: str | None = None,
    wrapper: Sequence[str] = (),
) -> Outcome:
    """One run of ``config``. ``commit_log``: the exactly-once commit-log topic streamplug's
    jobs name, made once per benchmark run (``create_commit_log``): a job creates
    its own on its very first run (~40 ms: the topic and its leader) and finds it on every
    later one, which is what a run here stands for."""
    topic, total_input = inputs[config.keyed]
    n = config.records(records)
    outcome = Outcome(config.name, round_no, n)
    out_topic = f"bench-out-{uuid.uuid4().hex[:10]}"
    spec: dict[str, Any] = {
        "bootstrap": bootstrap,
        "in": topic,
        "mode": "consume"
        if config.framework == "hand" and config.job == "source"
        else ("source" if config.job == "source" else config.guarantee),
        "keyed": config.keyed,
        "records": n,
        "partitions": PARTITIONS,
        "parallelism": config.parallelism,
        "checkpoint_ms": CHECKPOINT_MS,
        "workdir": tempfile.mkdtemp(prefix="bench-compare-"),
        "timestamps": config.copies_timestamps,
        # The hand loops ask the broker for their input's extent, as the bounded jobs do;
        # a told twin is given it (see Config.told).
        "discover": config.framework == "hand" and not config.told,
    }
    if commit_log is not None and config.framework == "streamplug":
        spec["commit_log"] = commit_log
    spec.update(overrides or {})
    if config.job == "kafka":
        create_topic(bootstrap, out_topic)
        spec["out"] = out_topic
    log = Path(spec["workdir"]) / "runner.log"
    outcome.settled_s = settle()
    outcome.load1 = os.getloadavg()[0]
    try:
        proc = start_runner(config, spec, log, wrapper)
        # Under valgrind a run takes ~20x longer.
        timeout = (60 + n / 2_000) * (20 if wrapper else 1)
        result = finish_runner(proc, timeout=timeout, log=log)
        ran_with = result.get("allocator", "glibc")
        if ran_with != config.allocator:
            raise RunnerFailed(f"ran with {ran_with}, not {config.allocator}")
    except RunnerFailed as e:
        outcome.wrong = f"run failed: {e}"
        if config.job == "kafka":
            delete_topic(bootstrap, out_topic)
        return outcome
    outcome.wall = result["t_end"] - result["t_start"]
    outcome.cpu = result["cpu"]
    outcome.vmhwm_kb = result["vmhwm_kb"]
    outcome.version = result["version"]
    if result.get("keyed_path"):
        outcome.note = f"keyed path: {result['keyed_path']}"
    if config.job == "source":
        processed = int(result.get("processed") or 0)
        if processed != n:
            outcome.wrong = f"read {processed:,} records, expected {n:,}"
        first = result.get("t_first")
        if first:
            outcome.steady = result["t_end"] - first
        outcome.checked = {"records": processed}
        return outcome
    check = _kafka.read_back(
        bootstrap,
        out_topic,
        _kafka.Check(total_input, PARTITIONS, config.keyed),
        committed=config.guarantee == "EXACTLY_ONCE",
        expect=n,
        timeout=120 + n / 20_000,
    )
    delete_topic(bootstrap, out_topic)
    outcome.checked = {
        "records": check.records,
        "distinct": check.distinct,
        "duplicates": check.duplicates,
        "gaps": check.gaps,
        "invalid": check.invalid,
        "markers": check.markers,
    }
    outcome.wrong = judge(config, n, check)
    if check.duplicates and not outcome.wrong:
        outcome.note = "; ".join(filter(None, [outcome.note, f"{check.duplicates} duplicates"]))
    if check.first_append != float("inf"):
        outcome.steady = result["t_end"] - check.first_append
    return outcome
