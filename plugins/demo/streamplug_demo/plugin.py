"""streamplug plugin module of ``streamplug-demo`` (entry point ``demo``): the ``demo`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from streamplug.plugins import CommandSpec, hookimpl


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT,...",
        help="use this Kafka instead of the embedded one (topics get a unique suffix and are left in place)",
    )
    parser.add_argument(
        "--events", type=int, default=200_000, help="events to generate (default 200000)"
    )
    parser.add_argument("--parallelism", type=int, default=2, help="parallel subtasks (default 2)")
    parser.add_argument(
        "--partitions",
        type=int,
        help="partitions of each topic (default: 8 on your Kafka; on the embedded one, enough "
        "to keep each under 25k events)",
    )
    parser.add_argument(
        "--checkpoint-interval",
        type=int,
        default=1000,
        metavar="MS",
        help="checkpoint interval (default 1000 ms)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        metavar="EVENTS/S",
        help="generate at this rate (default: as fast as possible)",
    )
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        metavar="DIR",
        help="keep checkpoints here (default: a temporary dir)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no live progress line")


def _run(args: argparse.Namespace) -> int:
    from streamplug.pipeline import ProgressLine
    from streamplug_demo.demo import DemoSettings, describe_check, run_demo

    if args.events < 1 or args.parallelism < 1:
        print("error: --events and --parallelism must be positive", file=sys.stderr)
        return 2
    settings = DemoSettings(
        events=args.events,
        parallelism=args.parallelism,
        partitions=args.partitions,
        checkpoint_interval_ms=args.checkpoint_interval,
        rate=args.rate,
        bootstrap_servers=args.bootstrap_servers,
        checkpoint_dir=args.checkpoint_dir,
    )
    progress = None if args.no_progress else ProgressLine(log_every_s=2.0)
    result = run_demo(settings, args.host, progress=progress)
    print(describe_check(result), flush=True)
    return 0 if result.check.passed else 1


@hookimpl
def streamplug_register_commands(register: Callable[[CommandSpec], None]) -> None:
    register(
        CommandSpec(
            name="demo",
            help="embedded Kafka + exactly-once Kafka -> transform -> Kafka pipeline, with live progress and a closing check",
            configure=_configure,
            run=_run,
        )
    )
