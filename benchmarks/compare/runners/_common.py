"""What every runner shares. Standard library only: the peers' runners import this module
from their own virtual environments.

A runner is started as ``python <runner>.py '<json spec>'``. It builds its pipeline, notes
the wall clock and its own CPU time right before the pipeline starts, runs it to the end
(bounded input, or ``records`` processed for the peers that only stream), and prints one
line ``RESULT {...}`` with ``t_start``/``t_end`` (epoch seconds), ``cpu`` (CPU seconds of
this process, every thread, in that window), ``vmhwm_kb`` (this process's own peak
resident set, from /proc/self/status) and ``version``.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from typing import Any

#: Record layout shared by the producer, the runners and the checker: a 12-digit sequence
#: number, a 16-digit send time in microseconds (0 outside latency runs), padding to 100
#: bytes. Keyed records carry ``k`` + the 11-digit sequence number as key.
SEQ_DIGITS = 12
STAMP_DIGITS = 16
VALUE_BYTES = 100


_SPEC: dict[str, Any] = {}


def spec() -> dict[str, Any]:
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} '<json spec>'")
    _SPEC.update(json.loads(sys.argv[1]))
    return dict(_SPEC)


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def rusage_cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    """User + system CPU seconds of this process, every thread (``RUSAGE_SELF``), or of
    its ended and reaped children (``RUSAGE_CHILDREN``), to the microsecond."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def vmhwm_kb() -> int:
    """This process's peak resident set in KiB (-1 where /proc has none)."""
    found = vmhwm_kb_of("self")
    return -1 if found is None else found


def vmhwm_kb_of(pid: int | str) -> int | None:
    """Peak resident set of process ``pid`` in KiB, or None once it has ended."""
    return status_kb(pid, "VmHWM")


def status_kb(pid: int | str, field: str) -> int | None:
    """A KiB figure of ``/proc/<pid>/status`` (``VmHWM``, ``VmRSS``...), or None once the
    process has ended."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds_of(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far, or None once it has ended: how
    a sampler learns the CPU of processes that are not this one's children."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # After the command name in parentheses, utime and stime are fields 12 and 13.
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Window:
    """The measured window: wall clock and this process's CPU time.

    Under ``--profile`` the spec names a gate file: the runner says so and waits for the
    file before the window opens, so the profiler attached meanwhile sees only the job."""

    def __init__(self) -> None:
        gate = _SPEC.get("profile_gate")
        if gate:
            print("WINDOW", flush=True)
            while not os.path.exists(gate):
                time.sleep(0.01)
        self.t_start = time.time()
        self.cpu_start = cpu_seconds()

    def report(self, *distributions: str, **extra: Any) -> None:
        """Close the window and print the result; the versions of ``distributions`` are
        looked up after the clock stopped (a metadata lookup takes tens of milliseconds)."""
        t_end = time.time()
        cpu = cpu_seconds() - self.cpu_start
        fields = {
            "t_start": self.t_start,
            "t_end": t_end,
            "cpu": cpu,
            "vmhwm_kb": vmhwm_kb(),
            "allocator": allocator(),
            "version": ", ".join(dist_version(d) for d in distributions),
            **extra,
        }
        print("RESULT " + json.dumps(fields), flush=True)


def allocator() -> str:
    """``jemalloc`` when this process has jemalloc mapped (preloaded), else ``glibc``: what
    the run really ran with, whatever its configuration asked for."""
    try:
        with open("/proc/self/maps") as maps:
            return "jemalloc" if "libjemalloc" in maps.read() else "glibc"
    except OSError:
        return "glibc"


def dist_version(name: str) -> str:
    from importlib.metadata import version

    return f"{name} {version(name)}"


def precompile(prefix: str = "streamplug") -> int:
    """Writes the bytecode of every installed ``prefix*`` package, as ``pip install`` does
    for a regular install. Editable installs (this repository's venvs) and machines that set
    ``PYTHONDONTWRITEBYTECODE`` (this one does) would otherwise compile the sources in every
    process, every run: ~0.1 s more start-up per worker process than a user's install pays.
    Returns how many packages were compiled."""
    import compileall
    import importlib.metadata
    import importlib.util

    done = 0
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if not name.startswith(prefix):
            continue
        tops = (dist.read_text("top_level.txt") or "").split() or [name.replace("-", "_")]
        for module in tops:
            spec = importlib.util.find_spec(module)
            for path in (spec.submodule_search_locations or []) if spec else []:
                compileall.compile_dir(path, quiet=1)
                done += 1
    return done
