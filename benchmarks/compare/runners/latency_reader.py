"""Reads a latency run's output as it is written and measures each record's end-to-end
latency: the time this reader got it (read_committed for exactly-once runs, so a record
counts when it became visible) minus the send time the input producer stamped into its
value (the time the rate schedule said it was due, so a producer that fell behind makes
latency worse, not better). Prints ``FIRST`` when the first output record arrives (the
pipeline is flowing), then ``RESULT {...}`` with the percentiles and the output check."""

from __future__ import annotations

import json
from array import array
from typing import Any

import _common
import _kafka


def main() -> None:
    s = _common.spec()
    latencies = array("q")
    skip_below = int(s["measure_from_seq"])
    first = [True]

    def on_batch(batch: list[Any], now: float) -> None:
        if first[0]:
            first[0] = False
            print("FIRST", flush=True)
        now_us = int(now * 1_000_000)
        for m in batch:
            v = m.value()
            if int(v[:12]) >= skip_below:
                latencies.append(now_us - int(v[12:28]))

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
    ordered = sorted(latencies)

    def pct(q: float) -> float | None:
        if not ordered:
            return None
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000

    print(
        "RESULT "
        + json.dumps(
            {
                "p50_ms": pct(0.50),
                "p99_ms": pct(0.99),
                "p999_ms": pct(0.999),
                "max_ms": ordered[-1] / 1000 if ordered else None,
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


if __name__ == "__main__":
    main()
