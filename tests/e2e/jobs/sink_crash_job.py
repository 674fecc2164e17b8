"""Kafka -> map -> Kafka, the job the sink's crash tests kill over and over.

    python sink_crash_job.py BOOTSTRAP INPUT OUTPUT GUARANTEE PREFIX CHECKPOINT_DIR [RATE]

Reads INPUT from the earliest offset up to the end it has when the job first starts
(bounded), maps each value ``v`` to ``"v:mapped"``, and writes OUTPUT with the given
delivery guarantee, checkpointing every 500 ms into CHECKPOINT_DIR. Re-running the same
command after a crash resumes from the checkpoints there. RATE (records/s per subtask,
0 = unlimited) slows the map down so a driver has time to kill the job many times.

With STREAMPLUG_TEST_RUNTIME=processes the subtasks run in worker processes; the script
then prints ``WORKERS pid pid`` whenever the set of worker processes changes, so a test
can kill one of them.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

from streamplug.api.serde import DeserializationSchema, SerializationSchema
from streamplug.api.sink import DeliveryGuarantee
from streamplug.runtime import RestartStrategies, StreamExecutionEnvironment
from streamplug_kafka_sink import KafkaRecordSerializationSchema, KafkaSink
from streamplug_kafka_source import KafkaOffsetsInitializer, KafkaSource


class Utf8In(DeserializationSchema[str]):
    def deserialize(self, message: bytes) -> str:
        return message.decode()


class Utf8Out(SerializationSchema[str]):
    def serialize(self, element: str) -> bytes:
        return element.encode()


class Throttle:
    """At most ``rate`` calls per second per thread (0: no limit)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.local = threading.local()

    # Shipped to worker processes (the processes runtime): each starts its own counters.
    def __getstate__(self) -> dict[str, int]:
        return {"rate": self.rate}

    def __setstate__(self, state: dict[str, int]) -> None:
        self.__init__(state["rate"])  # type: ignore[misc]

    def __call__(self, value: str) -> str:
        if self.rate:
            state = self.local.__dict__
            n = state.get("n", 0) + 1
            state["n"] = n
            start = state.setdefault("start", time.monotonic())
            ahead = n / self.rate - (time.monotonic() - start)
            if ahead > 0.01:
                time.sleep(ahead)
        return f"{value}:mapped"


def main() -> int:
    bootstrap, source_topic, sink_topic, guarantee, prefix, checkpoint_dir = sys.argv[1:7]
    rate = int(sys.argv[7]) if len(sys.argv) > 7 else 0
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    logging.getLogger("streamplug_kafka_sink").setLevel(logging.INFO)
    logging.getLogger("streamplug.runtime").setLevel(logging.INFO)

    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    env.enable_checkpointing(500)
    env.get_checkpoint_config().set_checkpoint_storage_dir(checkpoint_dir)
    env.get_checkpoint_config().set_checkpoint_timeout(60_000)
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(3, 200))

    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(bootstrap)
        .set_topics(source_topic)
        .set_group_id(f"{prefix}-reader")
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_bounded(KafkaOffsetsInitializer.latest())
        .set_value_only_deserializer(Utf8In())
        # A barrier waits for the batch in flight. The reader shrinks batches for slow work
        # by itself, but its first batch after each restart (500 records) would still take
        # 0.5 s at RATE; 100-record polls let even a short run reach a checkpoint.
        .set_property("poll.max.records", 100 if rate else 10_000)
        .build()
    )
    sink = (
        KafkaSink.builder()
        .set_bootstrap_servers(bootstrap)
        .set_record_serializer(
            KafkaRecordSerializationSchema.builder()
            .set_topic(sink_topic)
            .set_value_serialization_schema(Utf8Out())
            .build()
        )
        .set_delivery_guarantee(DeliveryGuarantee.parse(guarantee))
        .set_transactional_id_prefix(prefix)
        .build()
    )
    env.from_source(source, None, "input").map(Throttle(rate)).sink_to(sink)
    runtime = os.environ.get("STREAMPLUG_TEST_RUNTIME", "threads")
    env.set_runtime(runtime)
    client = env.execute_async(f"sink-crash-{prefix}")
    shown: list[int] = []
    while not client.wait_quietly(0.05) and runtime != "threads":
        pids = client.worker_pids()
        if pids and pids != shown:
            shown = pids
            print("WORKERS " + " ".join(map(str, pids)), flush=True)
    result = client.wait()
    print(f"JOB FINISHED {result.job_id}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
