"""What the ``ray`` runtime costs before the first record: connecting to (or starting) Ray,
placing the slots, starting the actors; and the memory of each slot actor and of Ray itself.

Each run is a fresh process that runs one small job (a collection source throttled to last
about two seconds -> a map -> a transactional file sink) and reports:

* the job's wall time from ``execute_async`` to the end, for ``threads``, ``processes``
  ``ray`` (each run starts its own local Ray, as ``streamplug run --runtime ray`` on a
  laptop does) and ``ray-cluster`` (each run connects to a Ray already running, as on a
  cluster; started once by this command);
* for ``ray``: ``ray.init``, placement group and actor start times (``RayRuntime.timings``),
  each slot actor's peak resident memory (VmHWM, from /proc), and the resident memory of
  Ray's own processes (GCS, raylet, monitors, idle workers: every descendant of the
  driver that is not a slot actor).

    python benchmarks/bench_ray_startup.py [--parallelism 1,2,4] [--runs 3]
                                           [--runtimes threads,processes,ray,ray-cluster]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from compare.runners._common import status_kb


def shift(x: int) -> int:
    return x + 1


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def _descendants(pid: int) -> list[int]:
    tree = _children()
    found, todo = [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _rss_kb(pid: int) -> int:
    return status_kb(pid, "VmRSS") or 0


def _start_cluster() -> Any:
    """A running Ray (head with 4 CPUs) that the ``ray-cluster`` runs connect to, so
    their figures are a connection's, not a start's. Its own temp folder: a Ray someone
    else runs on this machine is left alone."""
    from ray.cluster_utils import Cluster

    temp = tempfile.mkdtemp(prefix="bench-ray-", dir="/tmp")
    os.makedirs(os.path.join(temp, "ray"))
    previous = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = temp
    try:
        return Cluster(
            initialize_head=True,
            connect=False,
            head_node_args={"num_cpus": 4, "include_dashboard": False, "temp_dir": temp},
        )
    finally:
        # Only the ray-cluster runs get to see it (RAY_ADDRESS); a ray run starts its own.
        if previous is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = previous


def one(runtime: str, parallelism: int) -> dict[str, Any]:
    from streamplug.connectors import CollectionSource
    from streamplug.connectors.files import TransactionalFileSink
    from streamplug.runtime import StreamExecutionEnvironment

    out = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(parallelism).enable_checkpointing(500)
    env.set_runtime("ray" if runtime == "ray-cluster" else runtime)
    env.get_checkpoint_config().set_checkpoint_storage_dir(out / "checkpoints")
    # About three seconds of records once running, whatever the parallelism (the
    # throttle is per reader).
    records = 3000 * parallelism
    source = CollectionSource(
        list(range(records)), num_splits=parallelism, batch_size=50, records_per_second=1000
    )
    env.from_source(source, None, "n").map(shift).sink_to(TransactionalFileSink(out / "out"))
    started = time.monotonic()
    client = env.execute_async("startup")
    report: dict[str, Any] = {"runtime": runtime, "p": parallelism}
    while len(client.worker_pids()) < (parallelism if runtime != "threads" else 0):
        if client.status.is_terminal:
            break
        time.sleep(0.01)
    report["workers_up_s"] = time.monotonic() - started
    if runtime.startswith("ray"):
        runtime_obj = client._run.runtime
        time.sleep(1.0)  # the actors' subtasks run: their memory is a running slot's
        assert not client.status.is_terminal, "the job ended before its memory was read"
        actors = runtime_obj.memory_kb()
        report["actor_vmhwm_kb"] = [m["VmHWM"] for m in actors.values()]
        actor_pids = set(client.worker_pids())
        ray_pids = [p for p in _descendants(os.getpid()) if p not in actor_pids]
        report["ray_processes"] = len(ray_pids)
        report["ray_rss_kb"] = sum(_rss_kb(p) for p in ray_pids)
        report["timings"] = dict(runtime_obj.timings)
    result = client.wait(300)
    report["job_s"] = time.monotonic() - started
    assert result.records_in == records, result
    return report


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parallelism", default="1,2,4")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--runtimes", default="threads,processes,ray,ray-cluster")
    parser.add_argument("--one", nargs=2, metavar=("RUNTIME", "P"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]))))
        return 0
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        flush=True,
    )
    results: dict[tuple[str, int], list[dict[str, Any]]] = {}
    runtimes = args.runtimes.split(",")
    cluster = _start_cluster() if "ray-cluster" in runtimes else None
    try:
        for _ in range(args.runs):
            for p in (int(x) for x in args.parallelism.split(",")):
                for runtime in runtimes:
                    environ = dict(os.environ)
                    if runtime == "ray-cluster":
                        assert cluster is not None
                        environ["RAY_ADDRESS"] = cluster.address
                    done = subprocess.run(
                        [sys.executable, __file__, "--one", runtime, str(p)],
                        capture_output=True,
                        text=True,
                        check=True,
                        env=environ,
                        timeout=300,
                    )
                    report = json.loads(done.stdout.strip().splitlines()[-1])
                    report["runtime"] = runtime
                    results.setdefault((runtime, p), []).append(report)
                    print(json.dumps(report), flush=True)
    finally:
        if cluster is not None:
            cluster.shutdown()
    print(
        "\n| runtime | p | job wall time (s) | slots up (s) | ray.init (s) | actors ready (s) "
        "| VmHWM per actor (MiB) | Ray's own processes (count, RSS MiB) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (runtime, p), reports in results.items():
        job = statistics.median(r["job_s"] for r in reports)
        up = statistics.median(r["workers_up_s"] for r in reports)
        if runtime.startswith("ray"):
            init = statistics.median(r["timings"].get("ray_init_s", 0) for r in reports)
            ready = statistics.median(r["timings"].get("actors_ready_s", 0) for r in reports)
            hwm = statistics.median(h for r in reports for h in r["actor_vmhwm_kb"]) / 1024
            procs = statistics.median(r["ray_processes"] for r in reports)
            rss = statistics.median(r["ray_rss_kb"] for r in reports) / 1024
            print(
                f"| {runtime} | {p} | {job:.1f} | {up:.1f} | {init:.1f} | {ready:.1f} | {hwm:.0f} "
                f"| {procs:.0f}, {rss:.0f} |"
            )
        else:
            print(f"| {runtime} | {p} | {job:.1f} | {up:.2f} | | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
