"""A crash-test job: collection source (parallelism 2) -> map -> file sink, checkpointing.

Run it again after a kill and it resumes from its newest checkpoint. Prints one JSON line
with what it restored and processed when it finishes.
"""

from __future__ import annotations

import argparse
import sys

from crash_job_support import checkpointing_env, run_and_report

from streamplug.connectors import CollectionSource, CollectSink, TransactionalFileSink


def times_ten(x: int) -> int:
    return x * 10


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--storage", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--sink", choices=["at-least-once", "exactly-once"], default="at-least-once"
    )
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=5_000, help="records/s per reader")
    parser.add_argument("--interval", type=int, default=200)
    args = parser.parse_args()

    env = checkpointing_env(args.interval, args.storage)
    source = CollectionSource(
        list(range(args.records)), batch_size=50, records_per_second=args.rate
    )
    sink = (
        CollectSink(args.out) if args.sink == "at-least-once" else TransactionalFileSink(args.out)
    )
    env.from_source(source, None, "numbers").map(times_ten).sink_to(sink)
    run_and_report(env, "crash-test")
    return 0


if __name__ == "__main__":
    sys.exit(main())
