"""Named crash points for fault-injection tests.

``fault_point("checkpoint.during_write")`` does nothing unless the environment variable
``STREAMPLUG_FAULT_POINTS`` names that point, as ``name:N[,name:N...]``: then the Nth time
the point is reached the process kills itself with SIGKILL — no cleanup, no flush, exactly
what a power cut or an OOM kill does. Crash tests set the variable per run.

In a worker process of the ``processes`` runtime, ``name@W`` matches only in worker slot
``W`` (``kafka_sink.before_commit@1:1`` kills slot 1 before its first commit while slot 0
commits), and the plan applies to the first process of each slot only: a slot process
started again after the fault would otherwise die at the same point forever.

``name:N:raise`` raises ``InjectedFault`` there instead of killing the process: the attempt
fails and restarts like after a crash of its worker, but the test process (and what it
records in memory, such as spans) lives on. Use it where the observer must survive; the
plain form for what a real kill leaves behind.

``name:N:hang`` blocks the thread that reaches the point, for good, while the rest of the
process goes on: what a call stuck on a dead peer or a lost lock looks like from outside.
It proves that whoever waits for that thread gives up within its bound.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

ENV = "STREAMPLUG_FAULT_POINTS"
SLOT_ENV = "STREAMPLUG_WORKER_SLOT"

_lock = threading.Lock()
_counts: dict[str, int] = {}
_plan: dict[str, int] | None = None
_raising: set[str] = set()
_hanging: set[str] = set()


class InjectedFault(RuntimeError):
    """Raised at a fault point planned as ``name:N:raise``."""


def _load_plan() -> dict[str, int]:
    plan: dict[str, int] = {}
    _raising.clear()
    _hanging.clear()
    for item in os.environ.get(ENV, "").split(","):
        item = item.strip()
        if not item:
            continue
        name, _, rest = item.partition(":")
        nth, _, mode = rest.partition(":")
        plan[name.strip()] = int(nth or "1")
        if mode.strip() == "raise":
            _raising.add(name.strip())
        elif mode.strip() == "hang":
            _hanging.add(name.strip())
    return plan


def fault_point(name: str) -> None:
    """Crash here if the fault plan says so (see the module docstring)."""
    global _plan
    if _plan is None:
        _plan = _load_plan()
    if not _plan:
        return
    slot = os.environ.get(SLOT_ENV)
    key = f"{name}@{slot}" if slot is not None and f"{name}@{slot}" in _plan else name
    if key not in _plan:
        return
    with _lock:
        _counts[key] = _counts.get(key, 0) + 1
        hit = _counts[key] == _plan[key]
    if hit and key in _raising:
        raise InjectedFault(f"fault point {name} reached (planned: {key}:{_plan[key]}:raise)")
    if hit and key in _hanging:
        sys.stderr.write(
            f"streamplug: fault point {name} reached, thread {threading.current_thread().name} "
            f"of process {os.getpid()} hangs\n"
        )
        sys.stderr.flush()
        threading.Event().wait()
    if hit:
        sys.stderr.write(f"streamplug: fault point {name} reached, killing process {os.getpid()}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def reset() -> None:
    """Re-read the plan from the environment (tests that change it in-process)."""
    global _plan
    with _lock:
        _plan = None
        _counts.clear()
