"""The sink's start-up check: do the brokers answer, does the output topic exist."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaException, Producer

from streamplug_kafka_common.failures import (
    is_unreachable,
    unreachable_error,
    unrecoverable_kafka_error,
)
from streamplug_kafka_sink import _config

__all__ = ["StartupCheck", "learned_broker_metadata"]

log = logging.getLogger(__name__)

# One metadata request of the start-up check waits at most this long, so a closing writer
# is never held up for longer.
_CHECK_SLICE_S = 0.5
# How long the check asks again for metadata from a broker learned from metadata (see
# learned_broker_metadata), and how often.
_LEARNED_BROKER_WAIT_S = 2.0
_LEARNED_BROKER_POLL_S = 0.005


class StartupCheck:
    """Whether any broker answers and the sink's fixed topic exists, asked once when a
    writer starts, on a thread of its own: neither the attempt's start nor a stop waits for
    brokers that do not answer. Its metadata requests name ``topic`` (None: every topic);
    ``judge_topic`` false leaves the topic's existence to another writer's check (one is
    enough). ``failure`` is what the writer fails with at its next call:

    * no broker answered within ``default.api.timeout.ms``: ``BrokersUnreachableError``
      naming the address and the setting (retried by the restart strategy), instead of
      records waiting out ``message.timeout.ms`` (5 minutes by default) in silence;
    * the topic does not exist, or the sink may not see it: an unrecoverable error (the
      sink does not create output topics).

    Brokers that answer but are slow to describe the topic are left to the producer's own
    retries.

    It also gets the idempotent producer its producer id without librdkafka's 500 ms
    retry timer: see ``learned_broker_metadata``."""

    def __init__(
        self,
        producer: Producer,
        topic: str | None,
        bootstrap: str,
        timeout_ms: int,
        *,
        judge_topic: bool = True,
    ) -> None:
        self.failure: BaseException | None = None
        self._producer = producer
        self._topic = topic
        self._judge_topic = judge_topic
        self._bootstrap = bootstrap
        self._timeout_ms = timeout_ms
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, on_failure: Callable[[], object]) -> None:
        """Ask on a thread of its own; ``on_failure`` is called there once ``failure`` is
        set (the writer has its subtask raise it, ``SinkContext.run_in_task``)."""
        self._thread = threading.Thread(
            target=self._run, args=(on_failure,), name="kafka-sink-startup-check", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Give up and wait for the request in flight (at most ``_CHECK_SLICE_S``): the
        producer is closed next, and must not be in use on this thread then."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self, on_failure: Callable[[], object]) -> None:
        self._check()
        if self.failure is not None and not self._closed.is_set():
            on_failure()

    def _check(self) -> None:
        timeout_s = self._timeout_ms / 1000
        deadline = time.monotonic() + timeout_s
        while not self._closed.is_set():
            left = deadline - time.monotonic()
            try:
                metadata = self._producer.list_topics(
                    self._topic, timeout=max(0.05, min(_CHECK_SLICE_S, left))
                )
            except KafkaException as exc:
                if not is_unreachable(exc):
                    log.warning(
                        "Kafka sink could not check %s: %s",
                        f"that topic {self._topic!r} exists" if self._topic else "its brokers",
                        exc,
                    )
                    return
                if left <= _CHECK_SLICE_S:
                    what = "look up topic " + repr(self._topic) if self._topic else "list topics"
                    self.failure = unreachable_error(
                        "Kafka sink",
                        self._bootstrap,
                        timeout_s,
                        what,
                        exc.args[0].str(),
                        _config.api_timeout_setting(self._timeout_ms),
                    )
                    return
                # With every broker refusing, the call returns at once: do not spin.
                self._closed.wait(min(0.1, max(0.0, left)))
                continue
            metadata = learned_broker_metadata(
                self._producer,
                self._topic,
                within_s=_LEARNED_BROKER_WAIT_S,
                every_s=_LEARNED_BROKER_POLL_S,
                request_s=_CHECK_SLICE_S,
                answer=metadata,
                stop=self._closed,
            )
            if self._topic is None or not self._judge_topic:
                return
            found = metadata.topics.get(self._topic)
            if found is not None and found.error is not None:
                self.failure = unrecoverable_kafka_error(
                    found.error, f"Kafka sink writing to topic {self._topic!r}"
                )
            return


def learned_broker_metadata(
    producer: Producer,
    topic: str | None,
    *,
    within_s: float,
    every_s: float,
    request_s: float,
    answer: Any = None,
    stop: threading.Event | None = None,
) -> Any:
    """Metadata of ``topic`` answered by a broker learned from metadata (node id >= 0),
    asking every ``every_s`` while only the bootstrap connection (node id -1) has answered.
    After ``within_s``, once ``stop`` is set, or when a later request fails (the producer's
    own retries take it from there), the last answer. ``answer``: one already in hand, else
    the first request's, whose failure is raised. Each request waits at most ``request_s``.

    librdkafka picks the broker for an idempotent producer's id request, and for a
    transactional producer's coordinator query, only among brokers learned from metadata,
    never the bootstrap connection. When none is up it retries from a fixed 500 ms timer,
    not when the connection comes up; a metadata answer received once such a broker is up
    runs the request at once. Measured on a local broker: an idempotent producer whose first
    record was produced at once delivered it 0.50 s after its creation in 6 of 6 tries
    (its queue filled and blocked ~0.25 s of a one-second AT_LEAST_ONCE job), and 0.05-0.06 s
    in 40 of 40 with this asking on a thread of its own, whenever the first record came;
    ``init_transactions`` right after creating the producer took ~505 ms in half the jobs or
    more, 2-3 ms after this wait (the wait itself ~14 ms)."""
    deadline = time.monotonic() + within_s
    if answer is None:
        answer = producer.list_topics(topic, timeout=request_s)
    while getattr(answer, "orig_broker_id", 0) < 0 and time.monotonic() < deadline:
        if stop is None:
            time.sleep(every_s)
        elif stop.wait(every_s):
            break
        try:
            answer = producer.list_topics(topic, timeout=request_s)
        except KafkaException:
            break
    return answer
