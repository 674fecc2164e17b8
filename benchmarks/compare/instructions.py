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
has. Each run's output is read back and checked as in the measured runs.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
import uuid
from pathlib import Path

import _kafka

from compare.configs import Config, by_name
from compare.run import PARTITIONS, create_topic, throughput_run

_TOTALS = re.compile(r"^(?:totals|summary):\s*(\d+)", re.M)


@dataclasses.dataclass(frozen=True)
class InstructionCount:
    """What one more record costs ``config``, in instructions, and the runs' totals."""

    config: str
    per_record: float
    totals: tuple[int, int]
    records: tuple[int, int]


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


def _counted_run(config: Config, bootstrap: str, records: int, commit_log: str) -> int:
    out_file = Path(tempfile.mkdtemp(prefix="bench-callgrind-")) / f"{uuid.uuid4().hex}.out"
    outcome = throughput_run(
        config,
        0,
        bootstrap,
        _input(bootstrap, config.keyed, records),
        records,
        {"checkpoint_ms": 200_000},
        commit_log=commit_log,
        wrapper=["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}"],
    )
    if outcome.wrong:
        raise SystemExit(f"{config.name} under callgrind, {records:,} records: {outcome.wrong}")
    found = _TOTALS.search(out_file.read_text(errors="replace"))
    if found is None:
        raise SystemExit(f"no instruction total in {out_file}")
    return int(found.group(1))


def count(config: Config, bootstrap: str, records: int, commit_log: str) -> InstructionCount:
    """Instructions per record of ``config`` between ``records // 2`` and ``records``."""
    half = records // 2
    totals = (
        _counted_run(config, bootstrap, half, commit_log),
        _counted_run(config, bootstrap, records, commit_log),
    )
    return InstructionCount(
        config.name, (totals[1] - totals[0]) / (records - half), totals, (half, records)
    )


def compare(config: Config, bootstrap: str, records: int, commit_log: str) -> str:
    """One line: the job's and its hand loop's instructions a record, and their ratio."""
    job = count(config, bootstrap, records, commit_log)
    loop = count(by_name(config.baseline), bootstrap, records, commit_log)
    return (
        f"{config.name}: {job.per_record:,.0f} instructions a record, {config.baseline}: "
        f"{loop.per_record:,.0f}; loop / job {loop.per_record / job.per_record:.3f} "
        f"(between {job.records[0]:,} and {job.records[1]:,} records)"
    )
