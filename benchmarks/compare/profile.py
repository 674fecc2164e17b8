"""Where a job's Python time goes: one run under py-spy (samples of the thread holding the
GIL), summed into the functions that hold the most samples, by themselves (*self*) and with
what they call (*total*). Written to benchmarks/profiles/<job>.txt."""

from __future__ import annotations

import collections
import json
import re
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from compare import envs
from compare.configs import Config
from compare.run import (
    CHECKPOINT_MS,
    PARTITIONS,
    RUNNER_FILE,
    RUNNERS,
    create_topic,
    delete_topic,
    runner_env,
)

PROFILES = Path(__file__).resolve().parent.parent / "profiles"
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")


def _frame_name(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("site-packages/", "plugins/", "core/", "benchmarks/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{m.group('func')} ({path})"


def summarize(raw: str, top: int = 30) -> list[str]:
    self_samples: collections.Counter[str] = collections.Counter()
    total_samples: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    all_samples = frameless = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        if "Window.__init__" in stack or "Window.report" in stack:
            continue  # waiting at the gate before the job; its result after the clock stopped
        frames = stack.split(";")
        thread, frames = frames[0], [_frame_name(f) for f in frames[1:]]
        if not frames:
            frameless += count  # C code holding the GIL with no Python frame (e.g. at exit)
            continue
        all_samples += count
        threads[thread] += count
        self_samples[frames[-1]] += count
        for name in set(frames):
            total_samples[name] += count

    def pct(n: int) -> str:
        return f"{100 * n / max(1, all_samples):5.1f}%"

    out = [
        f"{all_samples} samples of the thread holding the GIL, from the job's start to its end "
        f"({frameless} more without a Python frame left out)",
        "",
        "threads:",
    ]
    out += [f"  {pct(n)}  {t}" for t, n in threads.most_common()]
    out += ["", "self (the function itself, not what it calls):"]
    out += [f"  {pct(n)}  {name}" for name, n in self_samples.most_common(top)]
    out += ["", "total (with what it calls):"]
    out += [f"  {pct(n)}  {name}" for name, n in total_samples.most_common(top)]
    return out


def profile(
    config: Config, bootstrap: str, inputs: dict[bool, tuple[str, int]], records: int
) -> Path:
    if config.framework not in ("hand", "streamplug"):
        raise SystemExit(f"--profile runs py-spy on the project's own runners, not {config.name}")
    py_spy = Path(envs.python_for("profile")).parent / "py-spy"
    topic, _total = inputs[config.keyed]
    out_topic = f"bench-prof-{uuid.uuid4().hex[:10]}"
    workdir = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    spec: dict[str, Any] = {
        "bootstrap": bootstrap,
        "in": topic,
        "mode": (
            "consume"
            if config.framework == "hand" and config.job == "source"
            else ("source" if config.job == "source" else config.guarantee)
        ),
        "keyed": config.keyed,
        "records": records,
        "partitions": PARTITIONS,
        "parallelism": config.parallelism,
        "checkpoint_ms": CHECKPOINT_MS,
        "workdir": str(workdir),
    }
    if config.job == "kafka":
        create_topic(bootstrap, out_topic)
        spec["out"] = out_topic
    raw = workdir / "raw.txt"
    gate = workdir / "gate"
    spec["profile_gate"] = str(gate)
    python = envs.python_for(None)
    job = subprocess.Popen(
        [python, str(RUNNERS / RUNNER_FILE[config.framework]), json.dumps(spec)],
        stdout=subprocess.PIPE,
        text=True,
        env=runner_env(config),
    )
    assert job.stdout is not None
    while job.stdout.readline().strip() != "WINDOW":  # set up, about to start the job
        if job.poll() is not None:
            raise SystemExit(f"{config.name} ended before its job started")
    spy = subprocess.Popen(
        [
            str(py_spy),
            "record",
            "--pid",
            str(job.pid),
            "--format",
            "raw",
            "--threads",
            # Only the thread holding the GIL: Python's own work. Waiting threads drop out
            # (py-spy's idle detection counted a thread waiting on a condition as busy),
            # and so does librdkafka's C work on its own threads.
            "--gil",
            "--rate",
            "500",
            "--output",
            str(raw),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # py-spy attaches
    gate.touch()
    job.communicate()
    spy.wait(timeout=60)
    if config.job == "kafka":
        delete_topic(bootstrap, out_topic)
    PROFILES.mkdir(exist_ok=True)
    target = PROFILES / (config.name.replace("/", "_") + ".txt")
    header = [
        f"py-spy 500 Hz --gil, {config.name}, {records:,} records, one run "
        "(`python benchmarks/compare.py --profile ...`)",
        "",
    ]
    target.write_text("\n".join(header + summarize(raw.read_text())) + "\n")
    return target
