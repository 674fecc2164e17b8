"""Reads a latency run's output as it is written and measures each record's end-to-end
latency: the time this reader got it (read_committed for exactly-once runs, so a record
counts when it became visible) minus the send time the input producer stamped into its
value (the time the rate schedule said it was due, so a producer that fell behind makes
latency worse, not better). Prints ``FIRST`` when the first output record arrives (the
pipeline is flowing), then ``RESULT {...}`` with the percentiles and the output check.

The input topic keeps the broker's append time (LogAppendTime). Once the output is read,
the reader reads the input once more for those times and splits each record's latency in
two: *input lag* (schedule stamp to input append: the paced producer and the broker, before
any job could see the record) and *job latency* (input append to this reader: the job and the
output side). On this 2-core machine the input lag can dominate (see benchmarks/RESULTS.md)."""

from __future__ import annotations

import json
from array import array
from typing import Any

import _common
import _kafka


def main() -> None:
    s = _common.spec()
    # Per measured record: its sequence number, stamp and receive time (microseconds).
    seqs, stamps, received = array("q"), array("q"), array("q")
    skip_below = int(s["measure_from_seq"])
    first = [True]

    def on_batch(batch: list[Any], now: float) -> None:
        if first[0]:
            first[0] = False
            print("FIRST", flush=True)
        now_us = int(now * 1_000_000)
        for m in batch:
            v = m.value()
            seq = int(v[:12])
            if seq >= skip_below:
                seqs.append(seq)
                stamps.append(int(v[12:28]))
                received.append(now_us)

    check = _kafka.read_back(
        s["bootstrap"],
        s["out"],
        _kafka.Check(int(s["total"]), int(s["partitions"]), bool(s["keyed"])),
        committed=bool(s["committed"]),
        expect=int(s["total"]),
        timeout=float(s["timeout"]),
        settle=5.0,
        on_batch=on_batch,
        wait_first=float(s["timeout"]),
    )
    ordered = sorted(r - t for t, r in zip(stamps, received, strict=True))

    def pct(q: float, values: list[int] = ordered) -> float | None:
        if not values:
            return None
        return values[min(len(values) - 1, int(q * len(values)))] / 1000

    appended = input_append_times(s["bootstrap"], s["in"], int(s["total"]), int(s["partitions"]))
    input_lag = sorted(appended[q] - t for q, t in zip(seqs, stamps, strict=True) if appended[q])
    job = sorted(r - appended[q] for q, r in zip(seqs, received, strict=True) if appended[q])

    print(
        "RESULT "
        + json.dumps(
            {
                "p50_ms": pct(0.50),
                "p99_ms": pct(0.99),
                "p999_ms": pct(0.999),
                "max_ms": ordered[-1] / 1000 if ordered else None,
                "input_lag_p50_ms": pct(0.50, input_lag),
                "input_lag_p99_ms": pct(0.99, input_lag),
                "job_p50_ms": pct(0.50, job),
                "job_p99_ms": pct(0.99, job),
                "measured": len(ordered),
                "records": check.records,
                "distinct": check.distinct,
                "duplicates": check.duplicates,
                "gaps": check.gaps,
                "invalid": check.invalid,
                "markers": check.markers,
            }
        ),
        flush=True,
    )


def input_append_times(bootstrap: str, topic: str, total: int, partitions: int) -> array[int]:
    """The broker's append time (microseconds, millisecond resolution) of each input record,
    indexed by its sequence number; 0 where none was read."""
    times = array("q", bytes(8 * total))

    def note(batch: list[Any], _now: float) -> None:
        for m in batch:
            times[int(m.value()[:12])] = m.timestamp()[1] * 1000

    _kafka.read_back(
        bootstrap,
        topic,
        _kafka.Check(total, partitions, keyed=False),
        committed=False,
        expect=total,
        on_batch=note,
    )
    return times


if __name__ == "__main__":
    main()
