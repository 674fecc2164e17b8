"""``streamplug broker start``: a local Kafka for development.

Prints the bootstrap servers alone on the first line of stdout (so a script can do
``BOOTSTRAP=$(streamplug broker start | head -1)`` style plumbing or read one line from
a pipe), then human-readable details, and runs until SIGINT/SIGTERM. Progress and
errors go to stderr so they never end up in that first line.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from streamplug_testing.jars import KAFKA_VERSION

__all__ = ["configure", "run"]


def _topic_arg(value: str) -> tuple[str, int, int]:
    parts = value.split(":")
    if not parts[0] or len(parts) > 3:
        raise argparse.ArgumentTypeError(
            f"expected NAME[:PARTITIONS[:REPLICATION]], got {value!r} (e.g. orders:3:1)"
        )
    try:
        partitions = int(parts[1]) if len(parts) > 1 else 1
        replication = int(parts[2]) if len(parts) > 2 else 1
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"partitions and replication must be integers in {value!r} (e.g. orders:3:1)"
        ) from None
    if partitions < 1 or replication < 1:
        raise argparse.ArgumentTypeError(
            f"partitions and replication must be at least 1 in {value!r} (e.g. orders:3:1)"
        )
    return parts[0], partitions, replication


def _count(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if not 1 <= number <= 32:
        raise argparse.ArgumentTypeError(f"expected 1 to 32 nodes, got {number}")
    return number


def _data_dir(value: str) -> str:
    import os
    from pathlib import Path

    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value!r} exists and is not a directory")
    existing = path if path.exists() else next((p for p in path.parents if p.exists()), None)
    if existing is None or not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(
            f"cannot create or write {value!r}: {existing} is not writable by this user"
        )
    return str(path)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``broker`` subcommands (``start``) to ``parser``."""
    sub = parser.add_subparsers(dest="broker_command", metavar="{start}")
    sub.required = True
    start = sub.add_parser(
        "start",
        help="run a local Kafka cluster until Ctrl-C",
        description=(
            f"Start a local Apache Kafka {KAFKA_VERSION} cluster (KRaft, needs Java 17 and "
            "Maven the first time to fetch the jars), or with --embedded librdkafka's "
            "in-process mock cluster (no Java; not suitable for exactly-once tests). "
            "The first line of stdout is the bootstrap servers."
        ),
    )
    start.add_argument(
        "--nodes", type=_count, default=1, metavar="N", help="number of brokers (default 1)"
    )
    start.add_argument(
        "--embedded",
        action="store_true",
        help="use librdkafka's mock cluster instead of real Kafka (no Java needed)",
    )
    start.add_argument(
        "--topic",
        action="append",
        default=[],
        type=_topic_arg,
        metavar="NAME[:PARTITIONS[:REPLICATION]]",
        help="create this topic at startup (repeatable)",
    )
    start.add_argument(
        "--auto-create-topics",
        action="store_true",
        help="let the real broker create topics on first use (off by default, as in tests)",
    )
    start.add_argument(
        "--data-dir",
        default=None,
        type=_data_dir,
        help=(
            "keep broker data in this directory instead of a temporary one; start again "
            "with the same directory to resume (real Kafka only)"
        ),
    )
    start.set_defaults(broker_run=_run_start)


def run(args: argparse.Namespace) -> int:
    """Dispatch ``streamplug broker <subcommand>``; returns the exit status."""
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "broker_run", None)
    if handler is None:
        print("usage: streamplug broker start [--nodes N] [--embedded]", file=sys.stderr)
        return 2
    return handler(args)


class _StopSignal:
    """Turns SIGINT/SIGTERM into an event the main loop waits on."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignal:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signal.Signals(signum).name
        self.event.set()


def _announce(bootstrap: str, details: list[str]) -> None:
    # The bootstrap string must be alone on line 1 and visible immediately, even
    # when stdout is a pipe (block-buffered).
    sys.stdout.write(bootstrap + "\n")
    sys.stdout.flush()
    for line in details:
        sys.stdout.write(line + "\n")
    sys.stdout.write("Press Ctrl-C (or send SIGTERM) to stop.\n")
    sys.stdout.flush()


def _run_start(args: argparse.Namespace) -> int:
    if args.nodes < 1:
        print(f"--nodes must be at least 1, got {args.nodes}", file=sys.stderr)
        return 2
    for name, _, replication in args.topic:
        if replication > args.nodes:
            print(
                f"error: --topic {name}: replication {replication} needs at least "
                f"{replication} nodes, and --nodes is {args.nodes}",
                file=sys.stderr,
            )
            return 2
    with _StopSignal() as stop:
        if args.embedded:
            return _run_embedded(args, stop)
        return _run_kafka(args, stop)


def _run_embedded(args: argparse.Namespace, stop: _StopSignal) -> int:
    from streamplug_testing.mock import MockCluster, MockClusterUnavailable

    try:
        cluster = MockCluster(args.nodes)
    except MockClusterUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        for name, partitions, replication in args.topic:
            cluster.create_topic(name, partitions, replication)
        _announce(
            cluster.bootstrap_servers,
            [
                f"librdkafka mock cluster: {args.nodes} broker(s), ids {cluster.broker_ids}",
                *(f"topic {n}: {p} partition(s), replication {r}" for n, p, r in args.topic),
                "Topics are created on first use. Transactions are only partly emulated: "
                "use real Kafka (without --embedded) to test exactly-once.",
            ],
        )
        stop.event.wait()
        print(f"{stop.received}: stopping the mock cluster", file=sys.stderr)
    finally:
        cluster.close()
    return 0


def _run_kafka(args: argparse.Namespace, stop: _StopSignal) -> int:
    from streamplug_testing.broker import BrokerStartError, KafkaCluster
    from streamplug_testing.jars import KafkaJarsError

    print(
        f"starting Apache Kafka {KAFKA_VERSION} with {args.nodes} node(s)...",
        file=sys.stderr,
        flush=True,
    )
    started = time.monotonic()
    cluster = KafkaCluster(
        args.nodes, auto_create_topics=args.auto_create_topics, data_dir=args.data_dir
    )
    try:
        try:
            cluster.start()
            for name, partitions, replication in args.topic:
                try:
                    cluster.create_topic(name, partitions, replication)
                except Exception as exc:
                    # Started again on its own data directory: the topic is still there.
                    if "TOPIC_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
                        raise
                    print(f"topic {name} exists already: kept as it is", file=sys.stderr)
        except (KafkaJarsError, BrokerStartError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        _announce(
            cluster.bootstrap_servers,
            [
                f"Apache Kafka {KAFKA_VERSION} (KRaft), {args.nodes} node(s) "
                f"ready in {time.monotonic() - started:.1f} s",
                f"cluster id {cluster.cluster_id}, data in {cluster.directory}"
                + ("" if args.data_dir else " (deleted on exit)"),
                *(f"node {nid} log: {path}" for nid, path in cluster.log_files.items()),
                *(f"topic {n}: {p} partition(s), replication {r}" for n, p, r in args.topic),
                "auto.create.topics.enable="
                + ("true" if args.auto_create_topics else "false (create topics explicitly)"),
            ],
        )
        # Wake up now and then to notice a broker that died on its own.
        while not stop.event.wait(1.0):
            dead = [nid for nid in cluster.node_ids if not cluster.node(nid).running]
            if dead:
                print(
                    f"error: Kafka node(s) {dead} exited unexpectedly; see "
                    + ", ".join(str(cluster.log_files[n]) for n in dead),
                    file=sys.stderr,
                )
                return 1
        print(f"{stop.received}: stopping Kafka", file=sys.stderr, flush=True)
    finally:
        cluster.stop()
    return 0
