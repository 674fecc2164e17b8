"""Instructions a record, counted by valgrind's callgrind: the one figure of this benchmark
that the host's noise does not move.

On a 2-core machine shared with the broker, a job's records/s (and even its CPU seconds)
move by a quarter from one round to the next with no change in the work. The
instructions the process executes do not: each side (the job, and the hand loop doing the
same work) runs under callgrind twice, reading an input of N records and one of 2N to its
end, and the difference between the two totals over N is what one more record costs,
every thread of the process included, start-up and shutdown left out. Periodic
checkpoints are left out too (one every 200 s): a run under valgrind takes ~20x longer,
so a 1 s interval would put ~20x more of them into each record's share than a real run
has. For the same reason streamplug's clients report librdkafka statistics every 200 s
there (every 1 s and 5 s by default: a real run of a million records sees about one);
the statistics' per-record cost, which does not depend on the interval, stays counted.
Each run's output is read back and checked as in the measured runs.

The same difference is taken function by function (``callgrind_annotate``, each function's
own instructions, not what it calls), so the comparison also says where a job's extra
instructions go: the functions whose cost a record differs most between the job and its
loop. One caveat: work done on a timer is counted per record at valgrind's speed, ~20x
more often than in a real run; the known ones (checkpoints, statistics) are spaced out
as said above.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import tempfile
import uuid
from pathlib import Path

import _kafka

from compare.configs import Config, by_name
from compare.run import PARTITIONS, create_topic, throughput_run

_TOTALS = re.compile(r"^(?:totals|summary):\s*(\d+)", re.M)
#: A line of ``callgrind_annotate``: instructions, share, ``file:function [object]``.
_FUNCTION = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.+?)(?:\s+\[[^\]]*\])?\s*$")
_RECURSION = re.compile(r"'\d+$")
#: How many functions the comparison lists.
TOP_FUNCTIONS = 15


@dataclasses.dataclass(frozen=True)
class InstructionCount:
    """What one more record costs ``config``, in instructions, and the runs' totals."""

    config: str
    per_record: float
    totals: tuple[int, int]
    records: tuple[int, int]
    #: each function's own instructions a record (``file:function``)
    functions: dict[str, float] = dataclasses.field(default_factory=dict)


_inputs: dict[tuple[str, bool, int], tuple[str, int]] = {}


def _input(bootstrap: str, keyed: bool, records: int) -> dict[bool, tuple[str, int]]:
    """An input topic holding exactly ``records`` records: a consumer fetches ahead of what
    it hands out (up to queued.min.messages), so a run that stopped short of its input's
    end would still fetch and parse records it never used, more or fewer depending on
    the side, and the difference of two runs would not be one more record's cost."""
    key = (bootstrap, keyed, records)
    if key not in _inputs:
        topic = f"bench-instr-{'keyed' if keyed else 'value'}-{records}-{uuid.uuid4().hex[:6]}"
        create_topic(bootstrap, topic, log_append_time=False)
        _kafka.fill(bootstrap, topic, records, PARTITIONS, keyed)
        _inputs[key] = (topic, records)
    return {keyed: _inputs[key]}


def functions_of(callgrind_out: Path) -> dict[str, int]:
    """Each function's own instructions in a callgrind output, by ``file:function`` (the
    file's name only). The object a symbol was found in is left out, so an inline helper
    (``Py_INCREF``) that two extension modules both carry counts as one function."""
    annotated = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--threshold=100", str(callgrind_out)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    costs: dict[str, int] = {}
    for line in annotated.splitlines():
        found = _FUNCTION.match(line)
        if found and "PROGRAM TOTALS" not in found.group(2):
            where, _, function = found.group(2).rpartition(":")
            # callgrind names a function's recursion levels f'2, f'3...: one function here.
            name = f"{Path(where).name}:{_RECURSION.sub('', function)}"
            costs[name] = costs.get(name, 0) + int(found.group(1).replace(",", ""))
    return costs


def _counted_run(
    config: Config, bootstrap: str, records: int, commit_log: str
) -> tuple[int, dict[str, int]]:
    out_file = Path(tempfile.mkdtemp(prefix="bench-callgrind-")) / f"{uuid.uuid4().hex}.out"
    outcome = throughput_run(
        config,
        0,
        bootstrap,
        _input(bootstrap, config.keyed, records),
        records,
        {"checkpoint_ms": 200_000, "statistics_ms": 200_000},
        commit_log=commit_log,
        wrapper=["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}"],
    )
    if outcome.wrong:
        raise SystemExit(f"{config.name} under callgrind, {records:,} records: {outcome.wrong}")
    found = _TOTALS.search(out_file.read_text(errors="replace"))
    if found is None:
        raise SystemExit(f"no instruction total in {out_file}")
    return int(found.group(1)), functions_of(out_file)


def count(config: Config, bootstrap: str, records: int, commit_log: str) -> InstructionCount:
    """Instructions per record of ``config`` between ``records // 2`` and ``records``."""
    half = records // 2
    (small, small_functions), (large, large_functions) = (
        _counted_run(config, bootstrap, half, commit_log),
        _counted_run(config, bootstrap, records, commit_log),
    )
    more = records - half
    functions = {
        name: (large_functions.get(name, 0) - small_functions.get(name, 0)) / more
        for name in small_functions.keys() | large_functions.keys()
    }
    return InstructionCount(
        config.name, (large - small) / more, (small, large), (half, records), functions
    )


def compare(config: Config, bootstrap: str, records: int, commit_log: str) -> str:
    """The job's and its hand loop's instructions a record and their ratio, then the
    functions whose cost a record differs most between the two."""
    job = count(config, bootstrap, records, commit_log)
    loop = count(by_name(config.baseline), bootstrap, records, commit_log)
    lines = [
        f"{config.name}: {job.per_record:,.0f} instructions a record, {config.baseline}: "
        f"{loop.per_record:,.0f}; loop / job {loop.per_record / job.per_record:.3f} "
        f"(between {job.records[0]:,} and {job.records[1]:,} records)",
        f"  {'job':>8} {'loop':>8} {'job-loop':>8}  function (its own instructions a record)",
    ]
    lines += [
        f"  {job_cost:8.1f} {loop_cost:8.1f} {job_cost - loop_cost:+8.1f}  {name}"
        for name, job_cost, loop_cost in largest_differences(job, loop, TOP_FUNCTIONS)
    ]
    return "\n".join(lines)


def largest_differences(
    job: InstructionCount, loop: InstructionCount, top: int
) -> list[tuple[str, float, float]]:
    """(function, job's, loop's instructions a record), largest difference first."""
    names = job.functions.keys() | loop.functions.keys()
    rows = [(n, job.functions.get(n, 0.0), loop.functions.get(n, 0.0)) for n in names]
    rows.sort(key=lambda row: (-abs(row[1] - row[2]), row[0]))
    return rows[:top]
