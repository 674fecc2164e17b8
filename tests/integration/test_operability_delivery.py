"""Nothing lost on a failure path: output the at-least-once Kafka sink could not deliver
fails the job, also when no checkpoint flushes it (a stop without checkpointing), on a
real broker. The dead-letter counterpart is in test_operability_dead_letter.py."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from kafka_job_support import produce_values, wait_while_running

from streamplug.api import DeliveryGuarantee, WatermarkStrategy
from streamplug.errors import JobFailedError
from streamplug.runtime import JobStatus, RestartStrategies, StreamExecutionEnvironment
from streamplug_kafka_sink import KafkaRecordSerializationSchema, KafkaSink
from streamplug_kafka_source import KafkaOffsetsInitializer, KafkaSource
from streamplug_serde import BytesSchema

pytestmark = pytest.mark.integration


def test_an_undelivered_at_least_once_record_fails_a_stop_without_checkpointing(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    # The output topic refuses the second record (larger than its max.message.bytes).
    # Without checkpointing only the writer's close waits for the acknowledgements; before,
    # it ignored the delivery errors it collected and the job ended FINISHED without it.
    source_topic = topic_factory()
    output = topic_factory(config={"max.message.bytes": "200"})
    produce_values(kafka_bootstrap, source_topic, (b"small", b"x" * 2000))
    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(kafka_bootstrap)
        .set_topics(source_topic)
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_value_only_deserializer(BytesSchema())
        .build()
    )
    sink = (
        KafkaSink.builder()
        .set_bootstrap_servers(kafka_bootstrap)
        .set_record_serializer(
            KafkaRecordSerializationSchema.builder()
            .set_topic(output)
            .set_value_serialization_schema(BytesSchema())
            .build()
        )
        .set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
        .build()
    )
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(3, 200))
    env.from_source(source, WatermarkStrategy.no_watermarks(), "in").sink_to(sink)
    client = env.execute_async("undelivered-on-stop")
    try:
        wait_while_running(client, lambda metrics: metrics.records_out >= 2, 20)
        time.sleep(1.0)  # the broker's answer reaches the producer, not yet the writer
        assert client.status is JobStatus.RUNNING
        with pytest.raises(JobFailedError) as info:
            client.stop(timeout=60)
    finally:
        client.cancel()
        client.wait_quietly(30)
    assert client.status is JobStatus.FAILED
    message = str(info.value)
    # One record or both: the broker refuses a whole batch, and the two may share one.
    assert re.search(
        rf"KafkaDeliveryError: Kafka sink subtask 0 closed with [12] record\(s\) not "
        rf"delivered \({re.escape(output)}\[0\]: Broker: Message size too large[;)]",
        message,
    ), message
    assert (
        "no checkpoint covers them and they are not in the topic, so the job fails instead of "
        "ending without them. Check that the topic exists, takes records of their size "
        "(max.message.bytes) and that the sink may write to it, and that the brokers are "
        "reachable; then run the job again from offsets before them"
    ) in message
