"""Runtime overhead: collection source -> map -> discard at parallelism 1, against a plain
Python loop doing the same map over the same list. Prints records/s of both and the ratio.

    python benchmarks/bench_runtime.py [--records 2000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

from streamplug.connectors import CollectionSource, DiscardingSink
from streamplug.plugins import build_plugin_host
from streamplug.runtime import StreamExecutionEnvironment


def enrich(x: int) -> int:
    return x * 3 + 1


def plain_loop(data: list[int]) -> float:
    # A list comprehension is the fastest plain-Python form of this map; a slower baseline
    # would flatter the runtime.
    start = time.perf_counter()
    out = [enrich(x) for x in data]
    elapsed = time.perf_counter() - start
    assert len(out) == len(data)
    return elapsed


def streamplug_job(data: list[int], batch_size: int, checkpoint_ms: int | None) -> float:
    env = StreamExecutionEnvironment.get_execution_environment(build_plugin_host(autoload=False))
    env.set_parallelism(1)
    if checkpoint_ms:
        env.enable_checkpointing(checkpoint_ms)
    source = CollectionSource(data, num_splits=1, batch_size=batch_size)
    env.from_source(source, None, "bench").map(enrich).sink_to(DiscardingSink())
    start = time.perf_counter()
    result = env.execute("bench")
    elapsed = time.perf_counter() - start
    assert result.records_in == len(data)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()
    data = list(range(args.records))
    print(
        f"python {platform.python_version()}, {args.records:,} records, median of {args.runs} runs",
        flush=True,
    )
    rows = []
    for label, fn in [
        ("plain Python loop", lambda: plain_loop(data)),
        ("streamplug p=1", lambda: streamplug_job(data, args.batch_size, None)),
        ("streamplug p=1, checkpoints 100 ms", lambda: streamplug_job(data, args.batch_size, 100)),
    ]:
        times = []
        for i in range(args.runs):
            times.append(fn())
            print(
                f"  {label}: run {i + 1}/{args.runs} {args.records / times[-1]:,.0f} rec/s",
                flush=True,
            )
        rows.append((label, args.records / statistics.median(times)))
    base = rows[0][1]
    print(f"\n{'pipeline':<38}{'records/s':>14}{'ratio':>8}")
    for label, rate in rows:
        print(f"{label:<38}{rate:>14,.0f}{rate / base:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
