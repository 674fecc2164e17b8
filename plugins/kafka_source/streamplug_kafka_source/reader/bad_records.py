"""What happens to a record that fails to deserialize: fail, skip and count, or dead-letter."""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Mapping
from typing import Any

import attrs
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from streamplug.api.serde import DeserializationError
from streamplug.errors import ConfigError, StreamplugError, UnrecoverableError
from streamplug.secrets import redact_text
from streamplug_kafka_common.failures import unrecoverable_kafka_error
from streamplug_kafka_common.logs import install_client_logger

log = logging.getLogger(__name__)

__all__ = ["BadRecordAction", "BadRecordPolicy", "DeadLetterError"]

# Headers a dead-lettered record carries besides its own (values are UTF-8 text).
HEADER_ERROR = "streamplug.error"
HEADER_ERROR_CLASS = "streamplug.error.class"
HEADER_TOPIC = "streamplug.source.topic"
HEADER_PARTITION = "streamplug.source.partition"
HEADER_OFFSET = "streamplug.source.offset"
HEADER_TIMESTAMP = "streamplug.source.timestamp"


class DeadLetterError(StreamplugError):
    """Bad records the dead-letter policy sent to its topic were not acknowledged there.
    They are in neither the output nor that topic, so the job fails rather than drop them
    (a checkpoint never covers them). Retried by the restart strategy: the replay sends
    them again."""


class DeadLetterRefusedError(DeadLetterError, UnrecoverableError):
    """The dead-letter topic refuses the records for a reason a replay cannot change (a
    record larger than the topic takes, a denied ACL, a missing topic): the job fails at
    once."""


# How the message of a DeadLetterError ends: what that means and what to do.
_LOST_AND_FIX = (
    "these records are in neither the output nor the dead-letter topic, and no checkpoint "
    "covers them: fix the topic (it must exist, take records of their size (its "
    "max.message.bytes) and let this client write to it), then run the job again from its "
    "last checkpoint or from offsets before them"
)


class BadRecordAction(enum.Enum):
    FAIL = "fail"
    SKIP = "skip"
    DEAD_LETTER = "dead-letter"


@attrs.frozen
class BadRecordPolicy:
    """The user's choice for records that fail to deserialize.

    >>> BadRecordPolicy.dead_letter("orders.dlq").dead_letter_topic
    'orders.dlq'
    """

    action: BadRecordAction = BadRecordAction.FAIL
    dead_letter_topic: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.action is BadRecordAction.DEAD_LETTER and not self.dead_letter_topic:
            raise ConfigError(
                "the dead-letter policy needs a topic: BadRecordPolicy.dead_letter('my-topic.dlq')",
                option="bad.record.dead.letter.topic",
            )

    @classmethod
    def fail(cls) -> BadRecordPolicy:
        """Fail the job, naming the topic, partition and offset (the default)."""
        return cls(BadRecordAction.FAIL)

    @classmethod
    def skip(cls) -> BadRecordPolicy:
        """Drop the record and count it (``KafkaSourceReader.recordsSkipped``)."""
        return cls(BadRecordAction.SKIP)

    @classmethod
    def dead_letter(cls, topic: str) -> BadRecordPolicy:
        """Write the record's original key, value, timestamp and headers to ``topic``,
        with the error and the record's origin in ``streamplug.*`` headers."""
        return cls(BadRecordAction.DEAD_LETTER, topic)

    @classmethod
    def parse(cls, action: str, dead_letter_topic: str | None) -> BadRecordPolicy:
        try:
            kind = BadRecordAction(action.strip().lower())
        except ValueError:
            valid = ", ".join(a.value for a in BadRecordAction)
            raise ConfigError(
                f"bad.record.policy={action!r} is unknown; use one of {valid}",
                option="bad.record.policy",
            ) from None
        return cls(kind, dead_letter_topic if kind is BadRecordAction.DEAD_LETTER else None)


def locate(error: BaseException, message: Message, format_name: str) -> DeserializationError:
    """A ``DeserializationError`` placed at the message's topic, partition and offset."""
    topic = message.topic() or ""
    partition, offset = message.partition() or 0, message.offset() or 0
    if isinstance(error, DeserializationError):
        located_error = error.located(topic, partition, offset)
        located_error.__cause__ = error.__cause__ or error
        return located_error
    located = DeserializationError(
        f"{type(error).__name__}: {error}",
        format=format_name,
        data=message.value(),
        topic=topic,
        partition=partition,
        offset=offset,
    )
    located.__cause__ = error
    return located


class DeadLetterProducer:
    """Writes bad records to the dead-letter topic. ``flush`` waits for every write and
    raises if one failed, so a checkpoint never covers a record that is in neither the
    output nor the dead-letter topic."""

    def __init__(self, topic: str, properties: Mapping[str, Any]) -> None:
        self.topic = topic
        self._properties = dict(properties)
        install_client_logger(self._properties)
        self._producer = Producer(self._properties)
        self._lock = threading.Lock()
        self._errors: list[str] = []
        self._last_error: KafkaError | None = None
        self._topic_checked = False

    def _check_topic(self) -> None:
        # Once, at the first bad record (no start-up cost for jobs that have none): a
        # missing topic would otherwise show only after librdkafka's 30 s metadata wait.
        self._topic_checked = True
        try:
            metadata = self._producer.list_topics(self.topic, timeout=10.0)
        except KafkaException as exc:
            log.warning("could not check that dead-letter topic %r exists: %s", self.topic, exc)
            return
        found = metadata.topics.get(self.topic)
        if found is not None and found.error is not None:
            hopeless = unrecoverable_kafka_error(
                found.error,
                f"Kafka source writing a bad record to dead-letter topic {self.topic!r}",
            )
            if hopeless is not None:
                raise hopeless

    def send(self, message: Message, error: DeserializationError) -> None:
        if not self._topic_checked:
            self._check_topic()
        original = message.headers() or []
        headers: list[tuple[str, str | bytes | None]] = [
            (k, v) for k, v in (original.items() if isinstance(original, dict) else original)
        ]
        headers += [
            (HEADER_ERROR, error.reason.encode("utf-8", "replace")),
            (HEADER_ERROR_CLASS, type(error.__cause__ or error).__name__.encode()),
            (HEADER_TOPIC, (message.topic() or "").encode()),
            (HEADER_PARTITION, str(message.partition()).encode()),
            (HEADER_OFFSET, str(message.offset()).encode()),
            (HEADER_TIMESTAMP, str(message.timestamp()[1]).encode()),
        ]
        ts = message.timestamp()[1]
        kwargs: dict[str, Any] = {"timestamp": ts} if ts > 0 else {}
        while True:
            try:
                self._producer.produce(
                    self.topic,
                    value=message.value(),
                    key=message.key(),
                    headers=headers,
                    on_delivery=self._on_delivery,
                    **kwargs,
                )
                break
            except BufferError:
                self._producer.poll(0.1)
            except KafkaException as exc:
                # Refused before it left (larger than the producer's message.max.bytes,
                # say): the same record is refused on every replay.
                raise DeadLetterRefusedError(
                    f"writing a bad record ({message.topic()}[{message.partition()}]@"
                    f"{message.offset()}) to dead-letter topic {self.topic!r} failed: "
                    f"{redact_text(str(exc), self._properties)}; {_LOST_AND_FIX}"
                ) from exc
        self._producer.poll(0)

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            with self._lock:
                self._errors.append(err.str())
                self._last_error = err

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait until every bad record sent so far is acknowledged by the dead-letter topic;
        raise ``DeadLetterError`` naming the topic, the records' fate and the fix if one
        was not (refused, or still unsent after ``timeout_s``)."""
        remaining = self._producer.flush(timeout_s)
        with self._lock:
            errors, self._errors = self._errors, []
            last, self._last_error = self._last_error, None
        if remaining:
            errors.append(f"{remaining} record(s) still unsent after {timeout_s:g} s")
        if not errors:
            return
        text = redact_text("; ".join(errors[:5]), self._properties)
        message = (
            f"writing {len(errors)} bad record(s) to dead-letter topic {self.topic!r} failed: "
            f"{text}; {_LOST_AND_FIX}"
        )
        hopeless = last is not None and (
            last.code() == KafkaError.MSG_SIZE_TOO_LARGE
            or unrecoverable_kafka_error(last, "") is not None
        )
        raise (DeadLetterRefusedError if hopeless else DeadLetterError)(message)

    def close(self) -> None:
        """Flush (at most 10 s), release the client, and raise what ``flush`` raised: on a
        graceful end (a stop, the end of a bounded input) the runtime makes that the job's
        outcome, so a bad record nobody acknowledged fails the job instead of vanishing."""
        try:
            self.flush(10.0)
        finally:
            self._release()

    def _release(self) -> None:
        # End librdkafka's threads now, not when the reader is garbage collected: a closed
        # reader's producer kept reconnecting to the cluster (seen once the brokers were
        # gone). Older confluent-kafka releases have no Producer.close(); collection does
        # it there.
        close = getattr(self._producer, "close", None)
        if close is not None:
            try:
                close()
            except Exception as exc:
                log.debug("dead-letter producer for %r: close: %s", self.topic, exc)
        # Without close(), the last reference going away is what destroys the client; the
        # producer's callbacks point back here, so the reader's own reference must go too
        # (confluent-kafka 2.3.0 kept 3 client threads per closed reader otherwise).
        # Nothing is called after close.
        self._producer = None  # type: ignore[assignment]
