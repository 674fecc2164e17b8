"""The sink's start-up check (``streamplug_kafka_sink._startup``) against scripted metadata
answers: it keeps asking until a broker learned from metadata answers (so librdkafka runs
the idempotent producer's id request at once instead of from its 500 ms timer), within a
bound, and still judges the topic by the last answer. Its behaviour on real brokers that do
not answer, or lack the topic, is in tests/e2e/test_operability_connectivity.py."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError

from streamplug.errors import StreamplugError
from streamplug_kafka_sink import _startup
from streamplug_kafka_sink._startup import StartupCheck


def _metadata(broker_id: int, topic: str | None = None, error: Any = None) -> Any:
    topics = {} if topic is None else {topic: SimpleNamespace(error=error)}
    return SimpleNamespace(orig_broker_id=broker_id, topics=topics)


class ScriptedProducer:
    """Answers ``list_topics`` from a script, repeating its last answer."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.asked: list[str | None] = []

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        self.asked.append(topic)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def _run(check: StartupCheck) -> list[str]:
    failures: list[str] = []
    check.start(lambda: failures.append("called"))
    assert check._thread is not None
    check._thread.join(5)  # to its own end: close() would cut the asking short
    check.close()
    return failures


def test_the_check_asks_until_a_learned_broker_answers() -> None:
    producer = ScriptedProducer(_metadata(-1, "out"), _metadata(-1, "out"), _metadata(1, "out"))
    check = StartupCheck(producer, "out", "localhost:9092", 30_000)  # type: ignore[arg-type]
    check._check()
    assert producer.asked == ["out", "out", "out"]
    assert check.failure is None


def test_a_broker_with_a_node_id_answering_at_once_is_asked_once() -> None:
    producer = ScriptedProducer(_metadata(1))
    check = StartupCheck(producer, None, "localhost:9092", 30_000)  # type: ignore[arg-type]
    check._check()
    assert producer.asked == [None]


def test_the_topic_is_judged_by_the_learned_brokers_answer() -> None:
    missing = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
    producer = ScriptedProducer(_metadata(-1, "out"), _metadata(1, "out", missing))
    check = StartupCheck(producer, "out", "localhost:9092", 30_000)  # type: ignore[arg-type]
    assert _run(check) == ["called"]
    assert isinstance(check.failure, StreamplugError)
    assert "out" in str(check.failure)


def test_only_the_bootstrap_answering_ends_the_asking_after_its_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_startup, "_LEARNED_BROKER_WAIT_S", 0.05)
    producer = ScriptedProducer(_metadata(-1, "out"))
    check = StartupCheck(producer, "out", "localhost:9092", 30_000)  # type: ignore[arg-type]
    assert _run(check) == []
    assert check.failure is None
    assert 2 <= len(producer.asked) <= 0.05 / _startup._LEARNED_BROKER_POLL_S + 2


def test_a_close_ends_the_asking_at_once() -> None:
    asked = threading.Event()

    class Bootstrap(ScriptedProducer):
        def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
            asked.set()
            return super().list_topics(topic, timeout)

    producer = Bootstrap(_metadata(-1, "out"))
    check = StartupCheck(producer, "out", "localhost:9092", 30_000)  # type: ignore[arg-type]
    check.start(lambda: None)
    assert asked.wait(5)
    check.close()  # joins the thread: returns only once the asking stopped
    count = len(producer.asked)
    assert count < _startup._LEARNED_BROKER_WAIT_S / _startup._LEARNED_BROKER_POLL_S


def test_a_check_that_does_not_judge_the_topic_asks_for_it_and_reports_nothing() -> None:
    missing = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
    producer = ScriptedProducer(_metadata(-1, "out"), _metadata(1, "out", missing))
    check = StartupCheck(producer, "out", "localhost:9092", 30_000, judge_topic=False)  # type: ignore[arg-type]
    assert _run(check) == []
    assert check.failure is None
    assert producer.asked == ["out", "out"]
