"""A bad record sent to a dead-letter topic is acknowledged there or fails the job: never
dropped. The dead-letter topic does not exist (auto-creation off on the suite's broker),
with and without checkpointing, and with a restart strategy that would retry."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from kafka_job_support import produce_values, wait_while_running

from streamplug.api import DeserializationError, DeserializationSchema, WatermarkStrategy
from streamplug.connectors import CollectSink, DiscardingSink
from streamplug.errors import JobFailedError, MissingResourceError
from streamplug.runtime import JobStatus, RestartStrategies, StreamExecutionEnvironment
from streamplug_kafka_common import admin
from streamplug_kafka_source import KafkaOffsetsInitializer, KafkaSource

pytestmark = pytest.mark.integration


class Ints(DeserializationSchema[int]):
    def deserialize(self, message: bytes) -> int:
        try:
            return int(message.decode("ascii"))
        except ValueError as exc:
            raise DeserializationError(str(exc), format="int", data=message) from exc


def _dead_lettering_source(
    bootstrap: str, topic: str, dlq: str, *, bounded: bool, extra: Mapping[str, str] = {}
) -> KafkaSource:
    """Ints from ``topic`` (from the earliest offset; ``bounded``: up to its end at the
    start), bad records to dead-letter topic ``dlq``; ``extra`` client properties."""
    builder = (
        KafkaSource.builder()
        .set_bootstrap_servers(bootstrap)
        .set_topics(topic)
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_value_only_deserializer(Ints())
        .set_properties(
            {"bad.record.policy": "dead-letter", "bad.record.dead.letter.topic": dlq, **extra}
        )
    )
    if bounded:
        builder.set_bounded(KafkaOffsetsInitializer.latest())
    return builder.build()


@pytest.mark.parametrize("checkpointing", [False, True], ids=["no-checkpoints", "checkpoints"])
def test_a_missing_dead_letter_topic_fails_the_job_instead_of_losing_the_record(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path, checkpointing: bool
) -> None:
    topic = topic_factory()
    produce_values(kafka_bootstrap, topic, (b"1", b"two", b"3"))
    dlq = f"ops-no-dlq-{uuid.uuid4().hex[:8]}"
    source = _dead_lettering_source(kafka_bootstrap, topic, dlq, bounded=True)
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
    produce_values(kafka_bootstrap, topic, (b"1", b"x" * 2000, b"3"))
    source = _dead_lettering_source(kafka_bootstrap, topic, dlq, bounded=True)
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_restart_strategy(RestartStrategies.no_restart())
    env.from_source(source, WatermarkStrategy.no_watermarks(), "kafka").sink_to(CollectSink())
    with pytest.raises(JobFailedError) as info:
        env.execute("refused-dlq")
    assert (
        f"writing 1 bad record(s) to dead-letter topic {dlq!r} failed: Broker: Message size "
        "too large; these records are in neither the output nor the dead-letter topic"
    ) in str(info.value)


@pytest.mark.parametrize("checkpointing", [False, True], ids=["no-checkpoints", "checkpoints"])
@pytest.mark.parametrize("ending", ["stop", "bounded"])
def test_a_refused_dead_letter_write_fails_the_job_on_a_stop_and_at_the_end(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    tmp_path: Path,
    checkpointing: bool,
    ending: str,
) -> None:
    # The broker refuses the dead-lettered record (larger than the topic's
    # max.message.bytes), and nothing flushes the dead-letter producer before the job
    # ends: no checkpoint in between (none configured, or one far off). Before, a stop
    # without checkpointing ended FINISHED with only an ERROR line, and the bad record
    # was in neither topic.
    topic = topic_factory()
    dlq = topic_factory(config={"max.message.bytes": "200"})
    produce_values(kafka_bootstrap, topic, (b"1", b"x" * 2000, b"3"))
    source = _dead_lettering_source(kafka_bootstrap, topic, dlq, bounded=ending == "bounded")
    env = StreamExecutionEnvironment.get_execution_environment()
    if checkpointing:
        env.enable_checkpointing(600_000)  # only the final checkpoint of the stop or the end
        env.get_checkpoint_config().set_checkpoint_storage_dir(tmp_path / "chk")
    # A strategy that would retry: the stop must not restart the job, and a record the
    # topic refuses is refused again on every replay.
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(1, 200))
    sink: CollectSink[Any] = CollectSink()
    env.from_source(source, WatermarkStrategy.no_watermarks(), "kafka").sink_to(sink)
    client = env.execute_async(f"refused-dlq-{ending}")
    try:
        if ending == "stop":
            deadline = time.monotonic() + 20
            while sorted(sink.results) != [1, 3]:
                assert time.monotonic() < deadline, sink.results
                assert not client.status.is_terminal, client.status
                time.sleep(0.05)
        with pytest.raises(JobFailedError) as info:
            client.stop(timeout=30) if ending == "stop" else client.wait(30)
    finally:
        client.cancel()
        client.wait_quietly(30)
    assert client.status is JobStatus.FAILED
    message = str(info.value)
    assert (
        f"DeadLetterRefusedError: writing 1 bad record(s) to dead-letter topic {dlq!r} "
        "failed: Broker: Message size too large; "
    ) in message
    assert (
        "these records are in neither the output nor the dead-letter topic, and no "
        "checkpoint covers them: fix the topic (it must exist, take records of their size "
        "(its max.message.bytes) and let this client write to it), then run the job again "
        "from its last checkpoint or from offsets before them"
    ) in message
    assert admin.read_all(kafka_bootstrap, dlq) == []


def test_a_refused_dead_letter_write_fails_a_stop_on_the_processes_runtime(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    # The failure of a worker process's reader close travels to the driver as any other
    # failure does, ahead of the end of the attempt, and keeps its class (not retried).
    topic = topic_factory()
    dlq = topic_factory(config={"max.message.bytes": "200"})
    produce_values(kafka_bootstrap, topic, (b"1", b"x" * 2000, b"3"))
    source = _dead_lettering_source(kafka_bootstrap, topic, dlq, bounded=False)
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_runtime("processes").set_restart_strategy(RestartStrategies.fixed_delay_restart(3, 200))
    env.from_source(source, WatermarkStrategy.no_watermarks(), "kafka").sink_to(DiscardingSink())
    client = env.execute_async("refused-dlq-processes")
    try:
        wait_while_running(client, lambda metrics: metrics.records_in >= 2, 60)
        time.sleep(1.0)  # the broker's refusal reaches the dead-letter producer
        with pytest.raises(JobFailedError) as info:
            client.stop(timeout=60)
    finally:
        client.cancel()
        client.wait_quietly(30)
    assert client.status is JobStatus.FAILED
    assert (
        f"failed after 1 attempt(s): DeadLetterRefusedError: writing 1 bad record(s) to "
        f"dead-letter topic {dlq!r} failed: Broker: Message size too large; "
    ) in str(info.value)


def test_a_bad_record_larger_than_the_dead_letter_producer_takes_fails_the_job(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    # Refused before it leaves the client (larger than the producer's message.max.bytes):
    # produce() itself raises, and the job fails naming the record and the topic at once.
    topic = topic_factory()
    dlq = topic_factory()
    produce_values(kafka_bootstrap, topic, (b"1", b"x" * 5000, b"3"))
    source = _dead_lettering_source(
        kafka_bootstrap, topic, dlq, bounded=True, extra={"message.max.bytes": "2000"}
    )
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(3, 100))
    env.from_source(source, WatermarkStrategy.no_watermarks(), "kafka").sink_to(CollectSink())
    with pytest.raises(JobFailedError) as info:
        env.execute("too-large-for-dlq")
    message = str(info.value)
    assert (
        f"failed after 1 attempt(s): DeadLetterRefusedError: writing a bad record ({topic}[0]@1) "
        f"to dead-letter topic {dlq!r} failed: "
    ) in message, message
    assert "these records are in neither the output nor the dead-letter topic" in message
