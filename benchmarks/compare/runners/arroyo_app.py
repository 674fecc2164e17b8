"""Arroyo (Sentry): ``StreamProcessor`` with ``RunTask(identity)`` -> ``Produce`` ->
``CommitOffsets``: offsets are committed (once a second, Arroyo's default policy) only
after the produced records are acknowledged, i.e. at-least-once. Arroyo streams forever;
a step after Produce counts acknowledged records and asks the processor to shut down (which drains and commits)
once ``records`` records are acknowledged."""

from __future__ import annotations

import uuid
from typing import Any

import _common
from arroyo.backends.kafka import KafkaConsumer, KafkaPayload, KafkaProducer
from arroyo.backends.kafka.configuration import (
    build_kafka_configuration,
    build_kafka_consumer_configuration,
)
from arroyo.processing import StreamProcessor
from arroyo.processing.strategies import CommitOffsets, Produce, RunTask
from arroyo.processing.strategies.abstract import ProcessingStrategy, ProcessingStrategyFactory
from arroyo.types import Commit, Message, Topic


def main() -> None:
    s = _common.spec()
    records = int(s["records"])
    producer = KafkaProducer(build_kafka_configuration({"bootstrap.servers": s["bootstrap"]}))
    consumer = KafkaConsumer(
        build_kafka_consumer_configuration(
            {"bootstrap.servers": s["bootstrap"]},
            group_id=f"bench-arroyo-{uuid.uuid4().hex}",
            auto_offset_reset="earliest",
        )
    )
    seen = [0]
    processor: list[StreamProcessor[KafkaPayload]] = []

    def identity(message: Message[KafkaPayload]) -> KafkaPayload:
        return message.payload

    class Acknowledged(ProcessingStrategy[Any]):
        """Counts records Produce has had acknowledged (RunTask may call the map twice for
        a record that the next step pushed back) and stops the processor after the last."""

        def __init__(self, next_step: ProcessingStrategy[Any]) -> None:
            self.next_step = next_step

        def submit(self, message: Message[Any]) -> None:
            self.next_step.submit(message)
            seen[0] += 1
            if seen[0] == records:
                processor[0].signal_shutdown()

        def poll(self) -> None:
            self.next_step.poll()

        def join(self, timeout: float | None = None) -> None:
            self.next_step.join(timeout)

        def close(self) -> None:
            self.next_step.close()

        def terminate(self) -> None:
            self.next_step.terminate()

    class Factory(ProcessingStrategyFactory[KafkaPayload]):
        def create_with_partitions(
            self, commit: Commit, partitions: Any
        ) -> ProcessingStrategy[KafkaPayload]:
            after = Acknowledged(CommitOffsets(commit))
            return RunTask(identity, Produce(producer, Topic(s["out"]), after))

    processor.append(StreamProcessor(consumer, Topic(s["in"]), Factory()))
    window = _common.Window()
    processor[0].run()
    producer.close().result()
    window.report("sentry-arroyo", processed=seen[0])


if __name__ == "__main__":
    main()
