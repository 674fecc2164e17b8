"""A bad record sent to a dead-letter topic is acknowledged there or fails the job: never
dropped. The dead-letter topic does not exist (auto-creation off on the suite's broker),
with and without checkpointing, and with a restart strategy that would retry."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from streamplug.api import DeserializationError, DeserializationSchema, WatermarkStrategy
from streamplug.connectors import CollectSink
from streamplug.errors import JobFailedError, MissingResourceError
from streamplug.runtime import RestartStrategies, StreamExecutionEnvironment
from streamplug_kafka_source import KafkaOffsetsInitializer, KafkaSource

pytestmark = pytest.mark.integration


class Ints(DeserializationSchema[int]):
    def deserialize(self, message: bytes) -> int:
        try:
            return int(message.decode("ascii"))
        except ValueError as exc:
            raise DeserializationError(str(exc), format="int", data=message) from exc


@pytest.mark.parametrize("checkpointing", [False, True], ids=["no-checkpoints", "checkpoints"])
def test_a_missing_dead_letter_topic_fails_the_job_instead_of_losing_the_record(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path, checkpointing: bool
) -> None:
    topic = topic_factory()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for value in (b"1", b"two", b"3"):
        producer.produce(topic, value)
    assert producer.flush(10) == 0
    dlq = f"ops-no-dlq-{uuid.uuid4().hex[:8]}"
    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(kafka_bootstrap)
        .set_topics(topic)
        .set_bounded(KafkaOffsetsInitializer.latest())
        .set_value_only_deserializer(Ints())
        .set_properties({"bad.record.policy": "dead-letter", "bad.record.dead.letter.topic": dlq})
        .build()
    )
    env = StreamExecutionEnvironment.get_execution_environment()
    if checkpointing:
        env.enable_checkpointing(200)
        env.get_checkpoint_config().set_checkpoint_storage_dir(tmp_path / "chk")
        env.set_restart_strategy(RestartStrategies.fixed_delay_restart(100, 500))
    else:
        env.set_restart_strategy(RestartStrategies.no_restart())
    sink: CollectSink[Any] = CollectSink()
    env.from_source(source, WatermarkStrategy.no_watermarks(), "kafka").sink_to(sink)
    started = time.monotonic()
    with pytest.raises(JobFailedError) as info:
        env.execute("missing-dlq")
    assert time.monotonic() - started < 20
    cause = info.value.__cause__
    assert isinstance(cause, MissingResourceError), repr(cause)
    assert str(cause).startswith(
        f"Kafka source writing a bad record to dead-letter topic '{dlq}': the topic does not "
        "exist ("
    )
    assert "after 1 attempt(s)" in str(info.value)


def test_a_dead_letter_write_the_broker_refuses_fails_a_bounded_job_without_checkpoints(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    # The topic exists, so only the delivery result can tell: the broker refuses a record
    # larger than the topic's max.message.bytes. Before, the job ended FINISHED with the
    # bad record in neither topic.
    topic = topic_factory()
    dlq = topic_factory(config={"max.message.bytes": "200"})
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for value in (b"1", b"x" * 2000, b"3"):
        producer.produce(topic, value)
    assert producer.flush(10) == 0
    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(kafka_bootstrap)
        .set_topics(topic)
        .set_bounded(KafkaOffsetsInitializer.latest())
        .set_value_only_deserializer(Ints())
        .set_properties({"bad.record.policy": "dead-letter", "bad.record.dead.letter.topic": dlq})
        .build()
    )
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_restart_strategy(RestartStrategies.no_restart())
    env.from_source(source, WatermarkStrategy.no_watermarks(), "kafka").sink_to(CollectSink())
    with pytest.raises(JobFailedError) as info:
        env.execute("refused-dlq")
    assert f"writing bad records to dead-letter topic {dlq!r} failed: " in str(info.value)
