"""A new librdkafka client's first metadata answer: the time from making the client to the
answer of its first topic listing, for the clients a Kafka source starts with, built from
the source's own properties (``KafkaSource.admin_properties`` and
``consumer_properties``), each with librdkafka's sparse broker connections on and off.
The variants alternate, try after try, on the same broker.

The enumerator's admin client lists topics as its first step of partition discovery, so its
first answer is on the path from ``execute()`` to a job's first record. librdkafka 2.16
drops its bootstrap connection when the first metadata answer names the brokers, failing a
request still in flight on it; with sparse connections the request waits for the next
permitted connection (about 10 ms later), without them the learned broker is already
being connected. The source therefore turns sparse connections off for its admin client
(``ADMIN_DEFAULTS``) and leaves them on for its readers' consumers, which would otherwise
keep a connection to every broker of the cluster.

    python benchmarks/bench_client_start.py [--tries 20] [--nodes 1]
                                            [--bootstrap-servers host:port]

Without --bootstrap-servers (or $STREAMPLUG_KAFKA_BOOTSTRAP) a local Apache Kafka of
``--nodes`` brokers is started for the run, with the JVM settings of Kafka's start scripts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from streamplug.testing import reader_context
from streamplug_kafka_common import admin
from streamplug_kafka_source import KafkaSource
from streamplug_serde import BytesSchema

SPARSE = "enable.sparse.connections"
# Spaces the tries: a client's threads and sockets are gone before the next one starts.
PAUSE_S = 0.05


def first_answer_ms(make: Callable[[], Any], list_topics: Callable[[Any], Any]) -> float:
    start = time.perf_counter()
    client = make()
    list_topics(client)
    elapsed = (time.perf_counter() - start) * 1000
    close = getattr(client, "close", None)
    if close is not None:
        close()
    return elapsed


def variants(bootstrap: str, topic: str) -> dict[str, Callable[[], float]]:
    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(bootstrap)
        .set_topics(topic)
        .set_value_only_deserializer(BytesSchema())
        .build()
    )

    def admin_try(props: dict[str, str]) -> Callable[[], float]:
        return lambda: first_answer_ms(
            lambda: AdminClient(props), lambda c: c.list_topics(timeout=10)
        )

    def consumer_try(props: dict[str, str]) -> Callable[[], float]:
        def once() -> float:
            # A group of its own per try, as each job's reader has.
            conf = {**props, "group.id": f"bench-client-start-{uuid.uuid4().hex}"}
            return first_answer_ms(
                lambda: Consumer(conf), lambda c: c.list_topics(topic, timeout=10)
            )

        return once

    shipped_admin = source.admin_properties()
    shipped_consumer = source.consumer_properties(reader_context())
    shipped_consumer.pop("statistics.interval.ms", None)
    return {
        f"admin, as shipped ({SPARSE}={shipped_admin.get(SPARSE, 'true')})": admin_try(
            shipped_admin
        ),
        f"admin, {SPARSE}=true": admin_try({**shipped_admin, SPARSE: "true"}),
        f"consumer, as shipped ({SPARSE}={shipped_consumer.get(SPARSE, 'true')})": (
            consumer_try(shipped_consumer)
        ),
        f"consumer, {SPARSE}=false": consumer_try({**shipped_consumer, SPARSE: "false"}),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--bootstrap-servers", default=os.environ.get("STREAMPLUG_KAFKA_BOOTSTRAP"))
    args = parser.parse_args()

    cluster = None
    bootstrap = args.bootstrap_servers
    if not bootstrap:
        from streamplug_testing.broker import KAFKA_SCRIPT_JVM_OPTIONS, KafkaCluster

        cluster = KafkaCluster(nodes=args.nodes, jvm_defaults=KAFKA_SCRIPT_JVM_OPTIONS).start()
        bootstrap = cluster.bootstrap_servers
    try:
        topic = f"bench-client-start-{uuid.uuid4().hex[:8]}"
        admin.create_topic(bootstrap, topic, 6)
        runs = variants(bootstrap, topic)
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.tries):
            for name, once in runs.items():
                times[name].append(once())
                time.sleep(PAUSE_S)
        print(
            f"first topic listing of a new client, {args.tries} tries each, interleaved; "
            f"load average {os.getloadavg()[0]:.2f} (2 cores shared with the broker here)"
        )
        for name, ms in times.items():
            spread = f"{min(ms):.1f}-{max(ms):.1f}"
            slow = sum(t > 8.0 for t in ms)
            print(
                f"  {name:54s} median {statistics.median(ms):5.1f} ms  "
                f"range {spread:>11s}  over 8 ms: {slow}/{len(ms)}"
            )
        # The client must outlive the request: a collected client fails its futures.
        cleaner = AdminClient({"bootstrap.servers": bootstrap})
        cleaner.delete_topics([topic])[topic].result(30)
    finally:
        if cluster is not None:
            cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
