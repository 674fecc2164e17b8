"""A crash-test job: KafkaSource (bounded, parallelism 2) -> throttled map -> exactly-once
file sink, checkpointing every 200 ms and committing offsets to a group.

Each output line is "partition:offset" of an input record. Run it again after a kill and
it resumes from its newest checkpoint; the test kills it mid-stream (``--record-delay``
sets how long a record takes). Prints one JSON line with what it restored and read when
it finishes.
"""

from __future__ import annotations

import argparse
import sys
import time

from crash_job_support import checkpointing_env, run_and_report

from streamplug.api import WatermarkStrategy
from streamplug.connectors import TransactionalFileSink
from streamplug_kafka_source import (
    KafkaOffsetsInitializer,
    KafkaRecord,
    KafkaRecordDeserializationSchema,
    KafkaSource,
)


def position(record: KafkaRecord) -> str:
    return f"{record.partition}:{record.offset}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--storage", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--interval", type=int, default=200)
    parser.add_argument("--record-delay", type=float, default=0.0005, help="seconds per record")
    args = parser.parse_args()

    def throttle(value: str) -> str:
        time.sleep(args.record_delay)
        return value

    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(args.bootstrap_servers)
        .set_topics(args.topic)
        .set_group_id(args.group)
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_bounded(KafkaOffsetsInitializer.latest())
        .set_deserializer(KafkaRecordDeserializationSchema.of(position))
        .set_property("poll.max.records", "100")
        .build()
    )
    env = checkpointing_env(args.interval, args.storage)
    env.from_source(source, WatermarkStrategy.no_watermarks(), "kafka").map(throttle).sink_to(
        TransactionalFileSink(args.out)
    )
    run_and_report(env, "kafka-source-resume")
    return 0


if __name__ == "__main__":
    sys.exit(main())
