"""EXACTLY_ONCE: one Kafka transaction per checkpoint, with a durable decision record.

Why not Flink's recipe: Flink commits a prepared transaction after the checkpoint is
complete and, after a crash, re-commits it by resuming the old producer id and epoch.
librdkafka cannot resume a transaction: ``init_transactions()`` with the same
transactional.id aborts whatever the previous incarnation left open. So the commit has to
happen while the checkpoint is still PENDING, and recovery has to find out whether it
happened. The protocol (the runtime's side is in ``streamplug.api.sink``):

1. All writer subtasks of the process share ONE transactional producer
   (``transactional.id = <prefix>-0``, stable across restarts). Between two checkpoints
   every record goes into its open transaction.
2. At a checkpoint every subtask stops at the barrier and flushes; the runtime writes the
   checkpoint PENDING; ``KafkaCommitter.commit`` then produces a *decision record* (job,
   checkpoint id and the transaction's unique token) into the commit-log topic inside the
   same transaction and commits it. Records and decision become visible atomically.
3. After a crash, ``KafkaCommitter.resolve`` runs for a PENDING checkpoint before any
   writer starts: ``init_transactions`` with the same id aborts a transaction the crash
   left open (or waits for one whose commit was already under way to finish), then a
   ``read_committed`` scan of the commit log says whether the decision record of that
   checkpoint's transaction is there: COMMITTED (promote) or ABORTED (drop and replay).

The token matters: checkpoint ids are reused after a dropped checkpoint (the next attempt
counts on from the restored one), so "a decision for checkpoint 7 exists" could describe
an earlier, different transaction. The token is fresh per transaction and stored in the
checkpoint's committables, so resolve asks about exactly the transaction in question.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streamplug.api.context import SinkContext
from streamplug.api.sink import CommitOutcome, DeliveryGuarantee, SinkWriter
from streamplug.api.state import StateSerializer
from streamplug.errors import CheckpointError, ConfigError
from streamplug.plugin.records import WriterOutcome
from streamplug.secrets import redact_text
from streamplug_kafka_common.callbacks import ChainedErrorCallback
from streamplug_kafka_common.failures import (
    client_creation_error,
    is_unreachable,
    unreachable_error,
)
from streamplug_kafka_common.logs import install_client_logger
from streamplug_kafka_sink._config import (
    DEFAULT_API_TIMEOUT_MS,
    api_timeout_setting,
    delivery_wait_s,
    finalize_client_config,
)
from streamplug_kafka_sink._startup import learned_broker_metadata
from streamplug_kafka_sink.metrics import ProducerStatistics, WriterMetrics
from streamplug_kafka_sink.record_serializer import KafkaRecordSerializationSchema
from streamplug_kafka_sink.writer import (
    DeliveryErrors,
    KafkaDeliveryError,
    RecordEmitter,
    flush_producer,
)

try:
    from streamplug.runtime.faults import fault_point
except ImportError:  # pragma: no cover - a core without the embedded runtime

    def fault_point(name: str) -> None:
        return None


__all__ = [
    "ExactlyOnceWriter",
    "KafkaCommittable",
    "KafkaCommittableSerializer",
    "TransactionManager",
    "TransactionState",
]

log = logging.getLogger(__name__)

_DECISION_VERSION = 1
_FENCED_CODES = (
    KafkaError._FENCED,
    KafkaError.PRODUCER_FENCED,
    KafkaError.INVALID_PRODUCER_EPOCH,
)


@attrs.frozen
class KafkaCommittable:
    """Names the transaction that carries a checkpoint's output.

    ``commit_log_offset`` is the commit log's end offset when this producer started, so
    resolve scans only what this producer can have written.
    """

    transactional_id: str = attrs.field()
    token: str = attrs.field()
    commit_log_topic: str = attrs.field()
    commit_log_offset: int = attrs.field()

    @transactional_id.validator
    def _check_id(self, _attr: Any, value: str) -> None:
        if not value:
            raise ValueError("a KafkaCommittable needs a transactional id")

    @token.validator
    def _check_token(self, _attr: Any, value: str) -> None:
        if not value:
            raise ValueError("a KafkaCommittable needs a transaction token")

    @commit_log_offset.validator
    def _check_offset(self, _attr: Any, value: int) -> None:
        if value < 0:
            raise ValueError(f"commit_log_offset must be >= 0, got {value}")


class KafkaCommittableSerializer(StateSerializer[KafkaCommittable]):
    """Committables as readable JSON in the checkpoint file."""

    @property
    def version(self) -> int:
        return 1

    def serialize(self, value: KafkaCommittable) -> Any:
        return attrs.asdict(value)

    def deserialize(self, version: int, data: Any) -> KafkaCommittable:
        if version != 1:
            raise ValueError(
                f"Kafka committable version {version} is unknown; this release reads version 1"
            )
        return KafkaCommittable(**data)


class TransactionState:
    NEW = "NEW"
    IN_TRANSACTION = "IN_TRANSACTION"
    FAILED = "FAILED"
    CLOSED = "CLOSED"


def _kafka_error(exc: KafkaException) -> KafkaError | None:
    err = exc.args[0] if exc.args else None
    return err if isinstance(err, KafkaError) else None


def _release_frames(exc: BaseException) -> None:
    """Clear the locals of the finished frames on the traceback of a producer's failure.

    After a fatal error confluent-kafka keeps a reference to that traceback for good (seen
    with the fatal KafkaException of 2.3.0 and the bare SystemError of 2.16.1, see
    ``_recover_lost_fatal_error``), and the frames on it keep their locals: the producer
    among them, whose four threads then never stop (measured: 4 threads left per fenced
    writer, even after gc; none with the frames cleared). A frame still running (the
    caller's) cannot be cleared and is skipped."""
    tb = exc.__traceback__
    while tb is not None:
        with contextlib.suppress(RuntimeError):
            tb.tb_frame.clear()
        tb = tb.tb_next


# Start-up of an exactly-once writer opens three clients one after another (admin, the
# transactional producer, a consumer for the commit log's end). librdkafka waits
# reconnect.backoff.ms / 2 (50 ms by default) before opening the connection to a broker it
# has just learned from the bootstrap metadata, and each of these clients does that once:
# 10 ms keeps the start quick (the backoff still doubles on every failure, up to
# reconnect.backoff.max.ms). A value the user set wins.
_START_UP_DEFAULTS = {"reconnect.backoff.ms": "10"}
# How long to wait for the producer's first connection to a broker learned from metadata,
# and how often to look; past it init_transactions goes on without (see
# TransactionManager._connect). The list_topics request is for the commit log, which exists
# by then, so it can never create a topic.
_CONNECT_TIMEOUT_S = 1.0
_CONNECT_POLL_S = 0.002


def _with_start_up_defaults(config: Mapping[str, Any]) -> dict[str, Any]:
    result = {**_START_UP_DEFAULTS, **config}
    # The helper clients' librdkafka lines go through Python logging too, not to stderr.
    install_client_logger(result)
    return result


def _drop(producer: Any) -> None:
    """End a producer that never began its work (its start-up failed)."""
    with contextlib.suppress(Exception):
        producer.purge()
    close = getattr(producer, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()


class _CommitLogPreparation:
    """Makes sure the commit-log topic exists, then reads its end offset, on a thread of
    its own; the transactional producer starts meanwhile (see ``ensure_ready``)."""

    def __init__(self, manager: TransactionManager) -> None:
        self._manager = manager
        self._present = threading.Event()
        self._done = threading.Event()
        self._failure: BaseException | None = None
        self._offset = 0
        threading.Thread(
            target=self._run, name=f"commit-log-{manager.transactional_id}", daemon=True
        ).start()

    def _run(self) -> None:
        try:
            self._offset = self._manager._prepare_commit_log(self._present)
        except BaseException as exc:
            self._failure = exc
        finally:
            self._present.set()
            self._done.set()

    def wait_until_present(self) -> None:
        self._present.wait()
        if self._failure is not None:
            self._done.wait()
            raise self._failure

    def end_offset(self) -> int:
        self._done.wait()
        if self._failure is not None:
            raise self._failure
        return self._offset


class TransactionManager:
    """The shared transactional producer of one sink in one process, for one job attempt.

    Thread-safety: ``ensure_ready`` may race between writer subtasks (a lock makes the
    first one initialise); ``commit`` and ``resolve`` run on the coordinator thread while
    every subtask is stopped, so no record is produced concurrently with a commit.
    """

    def __init__(
        self,
        *,
        transactional_id: str,
        producer_config: Mapping[str, str],
        admin_config: Mapping[str, str],
        consumer_config: Mapping[str, str],
        commit_log_topic: str,
        commit_log_replication: int | None,
        job_name: str,
        statistics: ProducerStatistics,
        init_timeout_s: float = 60.0,
        producer_factory: Callable[[dict[str, Any]], Producer] = Producer,
        api_timeout_ms: int = DEFAULT_API_TIMEOUT_MS,
        on_outcome: Callable[..., Any] | None = None,
    ) -> None:
        self.transactional_id = transactional_id
        # streamplug_writer_outcome, when a plugin implements it.
        self._on_outcome = on_outcome
        self.commit_log_topic = commit_log_topic
        self.job_name = job_name
        self.statistics = statistics
        self.errors = DeliveryErrors()
        self._producer_config = dict(producer_config)
        self._admin_config = dict(admin_config)
        self._consumer_config = dict(consumer_config)
        self._replication = commit_log_replication
        self._init_timeout_s = init_timeout_s
        self._api_timeout_ms = api_timeout_ms
        self._producer_factory = producer_factory
        self._lock = threading.RLock()
        self._producer: Producer | None = None
        self._client_errors: ChainedErrorCallback | None = None
        self.delivery_wait_s = delivery_wait_s(self._producer_config)
        self._state = TransactionState.NEW
        self._token = ""
        self._log_offset = 0
        self._users = 0
        self.commits = 0
        self.fatal_error: KafkaError | None = None
        self._began = time.monotonic()
        # The background start (``start``): its own lock, as ``ensure_ready`` holds the
        # manager's for the whole start and a second writer must not wait on it here.
        self._start_lock = threading.Lock()
        self._start_state = "none"  # none -> running -> done | failed
        self._start_failure: BaseException | None = None
        self._start_listeners: list[Callable[[], object]] = []

    def __repr__(self) -> str:
        return (
            f"TransactionManager(transactional_id={self.transactional_id!r}, state={self._state}, "
            f"commit_log={self.commit_log_topic!r})"
        )

    # -- lifecycle -------------------------------------------------------------------------

    def acquire(self) -> None:
        with self._lock:
            self._users += 1

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users <= 0:
                self.close()

    def _report(
        self, outcome: str, token: str, checkpoint_id: int | None, error: str | None = None
    ) -> None:
        if self._on_outcome is not None:
            self._on_outcome(
                outcome=WriterOutcome(
                    self.job_name,
                    "transaction",
                    outcome,
                    transaction=token,
                    transactional_id=self.transactional_id,
                    checkpoint_id=checkpoint_id,
                    error=error,
                )
            )

    @property
    def token(self) -> str | None:
        """The open transaction's token (it names the transaction in committables), or None
        when none is open."""
        return self._token if self._state == TransactionState.IN_TRANSACTION else None

    def close(self) -> None:
        """Drop the producer without committing: an open transaction is aborted by the
        broker when the next producer with this id initialises (or when it times out)."""
        with self._lock:
            if self._state == TransactionState.CLOSED:
                return
            if self._state == TransactionState.IN_TRANSACTION:
                self._report(
                    "aborted",
                    self._token,
                    None,
                    "dropped uncommitted when the attempt ended; the broker aborts it",
                )
            self._state = TransactionState.CLOSED
            producer, self._producer = self._producer, None
        if producer is not None:
            # No flush: records of an uncommitted transaction are worthless, and a flush
            # against a dead broker would block the restart.
            producer.purge()
            producer.poll(0)
            del producer

    @property
    def state(self) -> str:
        return self._state

    @property
    def client_failure(self) -> BaseException | None:
        """What the producer's chained ``error_cb`` raised (a configure_client hook's, such
        as the security plugin's on rejected credentials), or None."""
        return self._client_errors.failure if self._client_errors is not None else None

    def raise_client_failure(self) -> None:
        failure = self.client_failure
        if failure is not None:
            # The producer cannot recover by itself: no later call may use it.
            self._state = TransactionState.FAILED
            raise failure

    @property
    def producer(self) -> Producer:
        self.ensure_ready()
        assert self._producer is not None
        return self._producer

    def start(self, on_failure: Callable[[], object]) -> None:
        """Begin ``ensure_ready`` on a thread of its own and return at once. The producer's
        start (~55 ms on a local broker: the commit log's checks, init_transactions) then
        overlaps the source's (split discovery, the consumer's first fetch) instead of
        coming before it; the writer's first use waits for it and raises what it raised.
        ``on_failure`` is called (on that thread) if the start fails, so that a job whose
        input is idle learns it at once rather than at its first checkpoint."""
        with self._start_lock:
            state = self._start_state
            if state in ("none", "running"):
                self._start_listeners.append(on_failure)
            if state == "none":
                self._start_state = "running"
                threading.Thread(
                    target=self._start_in_background,
                    name=f"transaction-start-{self.transactional_id}",
                    daemon=True,
                ).start()
        if state == "failed":
            on_failure()

    def _start_in_background(self) -> None:
        failure: BaseException | None = None
        # Under the manager's lock until the failure is kept: a writer's ensure_ready
        # waiting on it then raises this failure, not "failed earlier".
        with self._lock:
            try:
                self.ensure_ready()
            except BaseException as exc:
                # Finished frames would keep a failed producer (and its threads) alive for
                # as long as the failure is kept.
                _release_frames(exc)
                failure = self._start_failure = exc
        with self._start_lock:
            self._start_state = "done" if failure is None else "failed"
            listeners, self._start_listeners = self._start_listeners, []
        if failure is not None:
            for notify in listeners:
                notify()

    def ensure_ready(self) -> None:
        """Create the producer, fence every earlier producer with this transactional id
        (aborting its open transaction), and open the first transaction."""
        with self._lock:
            if self._state == TransactionState.IN_TRANSACTION:
                return
            if self._start_failure is not None:
                # The start begun by ``start`` failed: its own error says why, which the
                # generic "failed earlier" below would not.
                raise self._start_failure
            if self._state == TransactionState.FAILED:
                self.raise_client_failure()
                if self.fatal_error is not None:
                    failure = self.producer_failure(KafkaException(self.fatal_error), "producer")
                    raise CheckpointError(str(failure))
                raise CheckpointError(
                    f"the transactional producer {self.transactional_id!r} failed earlier in this "
                    "attempt; the job must restart"
                )
            if self._state == TransactionState.CLOSED:
                raise CheckpointError(
                    f"the transactional producer {self.transactional_id!r} is closed"
                )
            # The commit-log steps (an admin check, a consumer asking for the log's end) run
            # on a helper thread while the producer is created and connects: they wait on
            # the network, not on each other, and a writer's start-up waits for all of it
            # (~45 ms one after another on a local broker, the largest part of an
            # exactly-once job's time to its first record).
            commit_log = _CommitLogPreparation(self)
            conf = finalize_client_config(_with_start_up_defaults(self._producer_config))
            # Chained, not replaced: a configure_client hook's error_cb keeps working.
            client_errors = ChainedErrorCallback.install(conf, self._on_error)
            self._client_errors = client_errors
            conf["on_delivery"] = self.errors.on_delivery
            install_client_logger(conf)
            conf["stats_cb"] = self.statistics.on_stats
            try:
                producer = self._producer_factory(conf)
            except (KafkaException, ValueError, TypeError) as exc:
                self._state = TransactionState.FAILED
                raise client_creation_error("Kafka sink", exc, self._producer_config) from exc
            started = time.monotonic()
            try:
                # The producer's metadata request below names the commit log, which must
                # exist by then (a producer's request for a missing topic may create it
                # with the broker's defaults).
                commit_log.wait_until_present()
            except BaseException:
                _drop(producer)
                raise
            try:
                self._connect(producer)
                producer.init_transactions(self._init_timeout_s)
            except KafkaException as exc:
                self._state = TransactionState.FAILED
                if client_errors.failure is not None:
                    raise client_errors.failure from exc
                raise self._init_error(exc) from exc
            log.info(
                "transactional producer %s initialised in %.0f ms (earlier producers fenced)",
                self.transactional_id,
                (time.monotonic() - started) * 1000,
            )
            self._producer = producer
            # Read while init_transactions ran, so possibly before it aborted an earlier
            # producer's open transaction: then it is that transaction's start (the last
            # stable offset), never past anything this producer will write, and resolve
            # only reads a little more of the log.
            self._log_offset = commit_log.end_offset()
            self._begin()

    def _connect(self, producer: Producer) -> None:
        """Have a broker connection that librdkafka's transactions may use up before
        ``init_transactions`` (``learned_broker_metadata`` says why). Bounded: past
        _CONNECT_TIMEOUT_S ``init_transactions`` goes on as before."""
        try:
            learned_broker_metadata(
                producer,
                self.commit_log_topic,
                within_s=_CONNECT_TIMEOUT_S,
                every_s=_CONNECT_POLL_S,
                request_s=_CONNECT_TIMEOUT_S,
            )
        except (KafkaException, AttributeError) as exc:
            log.debug(
                "transactional producer %s: metadata before init: %s",
                self.transactional_id,
                exc,
            )

    def _init_error(self, exc: KafkaException) -> Exception:
        err = _kafka_error(exc)
        text = redact_text(str(exc), self._producer_config)
        if err is not None and err.code() == KafkaError.INVALID_TRANSACTION_TIMEOUT:
            return ConfigError(
                "the brokers refused "
                f"transaction.timeout.ms={self._producer_config.get('transaction.timeout.ms')}: "
                "it exceeds their transaction.max.timeout.ms (900000 by default). Lower "
                "transaction.timeout.ms (it must still exceed checkpoint interval + timeout) or "
                "raise "
                "transaction.max.timeout.ms on the brokers",
                option="transaction.timeout.ms",
            )
        if err is not None and err.code() in (
            KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        ):
            return ConfigError(
                f"not authorised to use transactional id {self.transactional_id!r}: grant the "
                "sink's "
                "principal WRITE and DESCRIBE on that TransactionalId (prefix ACL on the "
                f"transactional id prefix) and IDEMPOTENT_WRITE on the cluster ({text})",
                option="transactional.id",
            )
        return CheckpointError(f"init_transactions for {self.transactional_id!r} failed: {text}")

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self.fatal_error = err
            self._state = TransactionState.FAILED
            log.error("transactional producer %s: fatal error %s", self.transactional_id, err.str())
        else:
            log.debug("transactional producer %s: %s", self.transactional_id, err.str())

    def _begin(self) -> None:
        assert self._producer is not None
        self._producer.begin_transaction()
        self._began = time.monotonic()
        self._token = uuid.uuid4().hex
        self._state = TransactionState.IN_TRANSACTION

    def committable(self) -> KafkaCommittable:
        with self._lock:
            self.ensure_ready()
            return KafkaCommittable(
                self.transactional_id, self._token, self.commit_log_topic, self._log_offset
            )

    # -- commit log ------------------------------------------------------------------------

    def _ensure_commit_log(self) -> None:
        admin = AdminClient(_with_start_up_defaults(self._admin_config))
        timeout_s = self._api_timeout_ms / 1000
        try:
            metadata = admin.list_topics(timeout=timeout_s)
        except KafkaException as exc:
            if not is_unreachable(exc):
                raise
            raise unreachable_error(
                "Kafka sink",
                str(self._admin_config.get("bootstrap.servers")),
                timeout_s,
                f"look up its exactly-once commit-log topic {self.commit_log_topic!r}",
                redact_text(str(exc.args[0].str()), self._admin_config),
                api_timeout_setting(self._api_timeout_ms),
            ) from exc
        topic = metadata.topics.get(self.commit_log_topic)
        if topic is not None and topic.error is None:
            return
        replication = self._replication or min(3, max(1, len(metadata.brokers)))
        config = {"cleanup.policy": "delete", "min.insync.replicas": str(min(2, replication))}
        futures = admin.create_topics(
            [
                NewTopic(
                    self.commit_log_topic,
                    num_partitions=1,
                    replication_factor=replication,
                    config=config,
                )
            ],
            operation_timeout=30,
            request_timeout=30,
        )
        try:
            futures[self.commit_log_topic].result(30)
            log.info(
                "created commit-log topic %s (replication %d)", self.commit_log_topic, replication
            )
        except KafkaException as exc:
            err = _kafka_error(exc)
            if err is not None and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                return
            raise ConfigError(
                f"cannot create the exactly-once commit-log topic {self.commit_log_topic!r}: "
                f"{redact_text(str(exc), self._admin_config)}. Create it yourself (1 partition, "
                "cleanup.policy=delete, replicated like your output topics) or name an existing "
                "one with set_property('commit.log.topic', ...)",
                option="commit.log.topic",
            ) from exc
        # The producer's first send would otherwise race the new topic's leader election.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            tmeta = admin.list_topics(self.commit_log_topic, timeout=10).topics.get(
                self.commit_log_topic
            )
            if (
                tmeta is not None
                and tmeta.error is None
                and all(p.leader >= 0 for p in tmeta.partitions.values())
            ):
                return
            time.sleep(0.1)

    def _consumer(self, isolation: str = "read_committed") -> tuple[Consumer, ChainedErrorCallback]:
        conf: dict[str, Any] = _with_start_up_defaults(self._consumer_config)
        conf.update(
            {
                "group.id": f"streamplug-commit-log-{uuid.uuid4().hex}",
                "isolation.level": isolation,
                "enable.auto.commit": "false",
                "enable.partition.eof": "true",
                "auto.offset.reset": "earliest",
                "fetch.queue.backoff.ms": "10",
            }
        )
        errors = ChainedErrorCallback.install(conf, None)
        return Consumer(conf), errors

    def _prepare_commit_log(self, present: threading.Event) -> int:
        """Make sure the commit log exists (setting ``present`` then) and return its end
        offset (see ``_CommitLogPreparation``).

        The consumer that reads the end asks for the topic's metadata first: a new
        consumer's first end-offset query without it occasionally took ~700 ms (about
        1 in 100 on a local broker, none in 60 with the metadata asked for first), which
        put that exactly-once job's first record 0.7 s late. The same metadata says
        whether the log exists, so the admin client is created only to create it."""
        consumer, errors = self._consumer()
        try:
            # A consumer's metadata request never creates a topic (librdkafka's
            # allow.auto.create.topics is false for consumers), so it can tell whether the
            # log exists; the admin client is only needed to create it (or to explain why
            # it cannot be used).
            if not self._commit_log_ready(consumer):
                self._ensure_commit_log()
                # Another worker slot may have created it a moment ago (our create then
                # said TOPIC_ALREADY_EXISTS and waited for nothing): reading its end before
                # it has a leader fails with "Unknown partition".
                deadline = time.monotonic() + 30
                while not self._commit_log_ready(consumer):
                    if time.monotonic() > deadline:
                        raise CheckpointError(
                            f"the commit log {self.commit_log_topic!r} exists but has no "
                            "leader after 30 s; check the brokers"
                        )
                    time.sleep(0.05)
            present.set()
            return max(0, self._log_end(consumer, errors))
        finally:
            consumer.close()

    def _commit_log_ready(self, consumer: Consumer) -> bool:
        """True when ``consumer``'s metadata shows the commit log with a leader."""
        try:
            metadata = consumer.list_topics(self.commit_log_topic, timeout=_CONNECT_TIMEOUT_S)
        except KafkaException as exc:
            log.debug("commit log %s: metadata: %s", self.commit_log_topic, exc)
            return False
        topic = metadata.topics.get(self.commit_log_topic)
        return (
            topic is not None
            and topic.error is None
            and bool(topic.partitions)
            and all(p.leader >= 0 for p in topic.partitions.values())
        )

    def _log_end(self, consumer: Consumer, errors: ChainedErrorCallback) -> int:
        """The commit log's end as ``consumer``'s isolation level sees it. A failure a
        chained error_cb reported (rejected credentials) is raised rather than the
        lookup's own timeout."""
        try:
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(self.commit_log_topic, 0), timeout=30, cached=False
            )
        except KafkaException:
            errors.raise_pending()
            raise
        return int(high)

    def _wait_until_stable(
        self, consumer: Consumer, errors: ChainedErrorCallback, deadline: float
    ) -> int:
        """Wait until no open transaction hides part of the commit log and return its end.

        Our own producer's transactions are all decided once ``init_transactions``
        returned, but a read_committed reader stops at the first *open* transaction (the
        last stable offset); if another producer shares this commit log, a decision record
        of ours behind its open transaction would look absent and a committed checkpoint
        would be dropped (duplicates). So: wait for the stable offset to reach the end."""
        raw, raw_errors = self._consumer("read_uncommitted")
        try:
            end = self._log_end(raw, raw_errors)
        finally:
            raw.close()
        while True:
            stable = self._log_end(consumer, errors)
            if stable >= end:
                return end
            if time.monotonic() > deadline:
                raise CheckpointError(
                    f"the commit log {self.commit_log_topic!r} holds a transaction another "
                    f"producer left open (stable up to offset {stable}, end {end}), so this "
                    "checkpoint's decision cannot be read yet; give each job its own "
                    "commit.log.topic, and retry after the other transaction ends"
                )
            time.sleep(0.2)

    def find_decision(
        self, token: str, from_offset: int, timeout_s: float = 60.0
    ) -> dict[str, Any] | None:
        """The committed decision record carrying ``token``, scanning the commit log from
        ``from_offset`` to its end as a read_committed consumer sees it."""
        deadline = time.monotonic() + timeout_s
        consumer, errors = self._consumer()
        try:
            high = self._wait_until_stable(consumer, errors, deadline)
            if high <= from_offset:
                return None
            consumer.assign([TopicPartition(self.commit_log_topic, 0, from_offset)])
            while time.monotonic() < deadline:
                messages = consumer.consume(1000, timeout=0.5)
                errors.raise_pending()
                for msg in messages:
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            return None
                        if not err.retriable():
                            raise KafkaException(err)
                        continue
                    try:
                        decision = json.loads(msg.value() or b"{}")
                    except ValueError:
                        continue
                    if decision.get("token") == token:
                        return dict(decision)
            raise CheckpointError(
                f"could not read the commit log {self.commit_log_topic!r} to its end within "
                f"{timeout_s:.0f} s to resolve a pending checkpoint"
            )
        finally:
            consumer.close()

    # -- commit and resolve ------------------------------------------------------------------

    def commit(self, checkpoint_id: int, committables: Sequence[KafkaCommittable]) -> None:
        with self._lock:
            self.ensure_ready()
            assert self._producer is not None
            self.raise_client_failure()
            stale = {c.token for c in committables if c.token != self._token}
            if stale:
                raise CheckpointError(
                    f"checkpoint {checkpoint_id}: committables name transaction(s) "
                    f"{sorted(stale)} but "
                    f"the open transaction of {self.transactional_id!r} is {self._token}; "
                    "refusing to "
                    "commit output that does not belong to this checkpoint"
                )
            if self.fatal_error is not None:
                raise CheckpointError(
                    str(
                        self.producer_failure(
                            KafkaException(self.fatal_error), f"checkpoint {checkpoint_id}"
                        )
                    )
                )
            self.errors.raise_if_any(f"in the transaction of checkpoint {checkpoint_id}")
            decision = {
                "v": _DECISION_VERSION,
                "job": self.job_name,
                "checkpoint_id": checkpoint_id,
                "token": self._token,
                "transactional_id": self.transactional_id,
                "time_ms": int(time.time() * 1000),
            }
            self._producer.produce(
                self.commit_log_topic,
                json.dumps(decision, separators=(",", ":")).encode(),
                self.transactional_id.encode(),
                0,
            )
            fault_point("kafka_sink.before_commit")
            token = self._token
            try:
                self._commit_transaction(checkpoint_id)
            except BaseException as exc:
                if self._token == token and self._state != TransactionState.IN_TRANSACTION:
                    # Not aborted here (that path opened the next transaction already and
                    # reported it): undecided until recovery reads the commit log.
                    self._report("failed", token, checkpoint_id, f"{type(exc).__name__}: {exc}")
                raise
            self._report("committed", token, checkpoint_id)
            fault_point("kafka_sink.after_commit")
            self.commits += 1
            self._begin()

    def _commit_transaction(self, checkpoint_id: int) -> None:
        assert self._producer is not None
        # Past the transaction timeout the broker has aborted the transaction anyway; stop
        # retrying then instead of holding every subtask at the barrier forever.
        timeout_s = int(self._producer_config.get("transaction.timeout.ms", "60000")) / 1000
        deadline = self._began + timeout_s
        while True:
            try:
                self._producer.commit_transaction(max(1.0, min(60.0, deadline - time.monotonic())))
                return
            except KafkaException as exc:
                if self.client_failure is not None:
                    self._state = TransactionState.FAILED
                    raise self.client_failure from exc
                err = _kafka_error(exc)
                if err is not None and err.retriable() and time.monotonic() < deadline:
                    # A timed-out commit may be retried: librdkafka resumes the same
                    # EndTxn, it never commits twice.
                    log.warning("commit of checkpoint %d is retried: %s", checkpoint_id, err.str())
                    continue
                if err is not None and err.retriable():
                    # Undecided: whether the EndTxn reached the coordinator is unknown. The
                    # checkpoint stays PENDING and the next attempt's resolve finds out.
                    self._state = TransactionState.FAILED
                    raise CheckpointError(
                        f"the commit of checkpoint {checkpoint_id} did not complete within "
                        f"transaction.timeout.ms ({timeout_s * 1000:.0f} ms): {err.str()}; the job "
                        "restarts and recovery decides from the commit log whether it took effect"
                    ) from exc
                if err is not None and err.txn_requires_abort():
                    aborted = self._token
                    try:
                        self._producer.abort_transaction(60.0)
                        self._report("aborted", aborted, checkpoint_id, err.str())
                        self._begin()
                    except KafkaException:
                        self._state = TransactionState.FAILED
                    raise CheckpointError(
                        f"the transaction of checkpoint {checkpoint_id} had to be aborted "
                        f"({err.str()}); its records are replayed from the previous checkpoint"
                    ) from exc
                self._state = TransactionState.FAILED
                raise CheckpointError(self._fatal_message(checkpoint_id, exc)) from exc

    def producer_failure(self, exc: BaseException, what: str) -> KafkaDeliveryError:
        """The error to raise when a producer call failed: a fatal producer error (fencing
        above all) explains itself; confluent-kafka may then raise a bare SystemError."""
        _release_frames(exc)
        self._recover_lost_fatal_error()
        err = self.fatal_error or self.errors.last
        if err is None:
            # A SystemError ("returned a result with an exception set") carries the
            # producer's own KafkaException as its cause.
            cause: BaseException | None = exc
            while cause is not None and err is None:
                if isinstance(cause, KafkaException):
                    err = _kafka_error(cause)
                cause = cause.__cause__ or cause.__context__
        text = redact_text(str(err.str() if err is not None else exc), self._producer_config)
        if err is not None and err.code() in _FENCED_CODES:
            return KafkaDeliveryError(f"{what}: {self._fenced_reason()} ({text})")
        return KafkaDeliveryError(f"{what}: transactional producer failed: {text}")

    def _recover_lost_fatal_error(self) -> None:
        """Find the fatal error confluent-kafka lost. It never passes a fatal error to
        ``error_cb``: ``poll`` and ``flush`` raise it. But when the same call then serves
        delivery reports (the records a fenced producer purges), the exception is still
        pending while those callbacks run, and ``flush`` ends in a bare SystemError
        (confluent-kafka 2.16.1, error_cb in confluent_kafka.c). The reports say only
        "Purged in queue" if the fencing came before the record was sent. librdkafka still
        knows: in its fatal state every transactional call fails with the fatal error.
        ``begin_transaction`` is asked because inside an open transaction it can only fail,
        so asking changes nothing."""
        with self._lock:
            producer = self._producer
            if (
                self.fatal_error is not None
                or producer is None
                or self._state != TransactionState.IN_TRANSACTION
            ):
                return
            try:
                producer.begin_transaction()
            except KafkaException as exc:
                err = _kafka_error(exc)
                if err is not None and err.fatal():
                    self.fatal_error = err
                    self._state = TransactionState.FAILED
            except SystemError:
                pass

    def _fenced_reason(self) -> str:
        """Explains a fencing error. Since KIP-890 (Kafka 4) a broker that aborts a
        transaction on timeout bumps the producer epoch, so a timeout looks like fencing."""
        timeout_ms = int(self._producer_config.get("transaction.timeout.ms", "60000"))
        open_ms = int((time.monotonic() - self._began) * 1000)
        fenced = (
            f"producer {self.transactional_id!r} was fenced: the broker no longer accepts its "
            "epoch, its open transaction is aborted and its records never become visible"
        )
        if open_ms >= timeout_ms:
            return (
                f"{fenced}. The transaction had been open for {open_ms} ms, longer than "
                f"transaction.timeout.ms={timeout_ms}, so the broker aborted it: make checkpoints "
                "complete sooner or raise transaction.timeout.ms (at most the brokers' "
                "transaction.max.timeout.ms)"
            )
        return (
            f"{fenced}. A newer producer initialised the same transactional id: a restarted job "
            "replaced this process, or a second job uses the same set_transactional_id_prefix "
            "(give each job its own)"
        )

    def _fatal_message(self, checkpoint_id: int, exc: KafkaException) -> str:
        err = _kafka_error(exc)
        text = redact_text(str(exc), self._producer_config)
        if err is not None and err.code() in _FENCED_CODES:
            return f"checkpoint {checkpoint_id}: {self._fenced_reason()}"
        if err is not None and err.code() == KafkaError.INVALID_TXN_STATE:
            return (
                f"the transaction of checkpoint {checkpoint_id} was aborted by the broker, most "
                "likely because it stayed open longer than transaction.timeout.ms "
                f"({self._producer_config.get('transaction.timeout.ms')} ms): raise it, or make "
                f"checkpoints complete sooner ({text})"
            )
        return f"committing the transaction of checkpoint {checkpoint_id} failed: {text}"

    def resolve(
        self, checkpoint_id: int, committables: Sequence[KafkaCommittable]
    ) -> CommitOutcome:
        """This process's own producer fences the crashed one (aborting its open
        transaction, or completing a commit already under way), then the commit log says
        whether the checkpoint's decision record is there."""
        if not committables:
            # No writer took part, so nothing of this checkpoint is in Kafka either way.
            return CommitOutcome.COMMITTED
        self.ensure_ready()
        return self.decide(checkpoint_id, committables)

    def fence(self, transactional_id: str) -> None:
        """Fence every producer with ``transactional_id``: a short-lived producer with that
        id initialises (the broker aborts an open transaction of the old one, or finishes
        a commit it had already asked for) and is dropped again. The coordinator does this
        for worker slots it does not run itself."""
        conf = finalize_client_config(self._producer_config)
        conf["transactional.id"] = transactional_id
        conf["client.id"] = f"streamplug-{self.job_name}-fence"
        for key in ("on_delivery", "stats_cb", "statistics.interval.ms"):
            conf.pop(key, None)
        client_errors = ChainedErrorCallback.install(conf, None)
        producer = self._producer_factory(conf)
        started = time.monotonic()
        try:
            producer.init_transactions(self._init_timeout_s)
        except KafkaException as exc:
            if client_errors.failure is not None:
                raise client_errors.failure from exc
            raise self._init_error(exc) from exc
        finally:
            del producer
        log.info(
            "fenced transactional id %s in %.0f ms",
            transactional_id,
            (time.monotonic() - started) * 1000,
        )

    def decide(self, checkpoint_id: int, committables: Sequence[KafkaCommittable]) -> CommitOutcome:
        """COMMITTED if the decision record of one of ``committables`` is in the commit log.
        Every producer that wrote them must be fenced first."""
        tokens = {(c.token, c.commit_log_topic, c.commit_log_offset) for c in committables}
        if not tokens:
            return CommitOutcome.COMMITTED
        outcome = CommitOutcome.ABORTED
        for token, topic, offset in sorted(tokens):
            if topic != self.commit_log_topic:
                raise CheckpointError(
                    f"checkpoint {checkpoint_id} recorded its decision in commit log {topic!r} "
                    "but the "
                    f"sink now uses {self.commit_log_topic!r}: restore with the commit.log.topic "
                    "it "
                    "was taken with"
                )
            decision = self.find_decision(token, offset)
            self._report(
                "committed" if decision else "aborted",
                token,
                checkpoint_id,
                None if decision else "recovery found no decision record: the broker aborted it",
            )
            log.info(
                "checkpoint %d (transaction %s): decision record %s",
                checkpoint_id,
                token,
                "found -> COMMITTED" if decision else "absent -> ABORTED",
            )
            if decision is not None:
                outcome = CommitOutcome.COMMITTED
        return outcome


class ExactlyOnceWriter(SinkWriter[KafkaCommittable, Any]):
    """One subtask's writer on the process's shared transactional producer."""

    def __init__(
        self,
        manager: TransactionManager,
        schema: KafkaRecordSerializationSchema[Any],
        context: SinkContext,
        metrics: WriterMetrics,
    ) -> None:
        self._manager = manager
        self._subtask = context.subtask_index
        self._metrics = metrics
        self._schema = schema
        self._context = context
        manager.acquire()
        self._closed = False
        self._emitter: RecordEmitter | None = None
        # The producer starts while the job's source does; ``_ready_emitter`` waits for it,
        # and a failed start is raised on the subtask's thread as soon as it is known.
        manager.start(lambda: context.run_in_task(manager.ensure_ready))

    def _ready_emitter(self) -> RecordEmitter:
        if self._closed:
            raise RuntimeError(f"subtask {self._subtask}: write to a closed Kafka sink writer")
        manager = self._manager
        manager.ensure_ready()
        self._emitter = RecordEmitter(
            manager.producer,
            self._schema,
            self._context,
            self._metrics,
            delivery_wait_s=manager.delivery_wait_s,
            failure=lambda: manager.client_failure,
            guarantee=DeliveryGuarantee.EXACTLY_ONCE,
            transaction=lambda: manager.token,
        )
        return self._emitter

    def write(self, values: Sequence[Any], timestamps: Sequence[int] | None) -> None:
        self._manager.raise_client_failure()
        emitter = self._emitter or self._ready_emitter()
        try:
            emitter.emit(values, timestamps)
        except (KafkaException, SystemError) as exc:
            raise self._manager.producer_failure(exc, f"subtask {self._subtask}") from exc

    def flush(self, end_of_input: bool) -> None:
        try:
            flush_producer(
                self._manager.producer,
                f"of subtask {self._subtask} to be acknowledged",
                timeout_s=self._manager.delivery_wait_s,
                failure=lambda: self._manager.client_failure,
            )
        except (KafkaException, SystemError) as exc:
            raise self._manager.producer_failure(exc, f"subtask {self._subtask}") from exc
        if self._manager.fatal_error is not None:
            raise self._manager.producer_failure(
                KafkaException(self._manager.fatal_error), f"subtask {self._subtask}"
            )
        count = self._manager.errors.count
        if count:
            self._metrics.errors.inc(count)
        self._manager.errors.raise_if_any(f"in the open transaction (subtask {self._subtask})")

    @property
    def metrics(self) -> WriterMetrics:
        return self._metrics

    def prepare_commit(self) -> list[KafkaCommittable]:
        return [self._manager.committable()]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # The emitter holds the shared producer: dropping it lets the manager's close end
        # the client now, not when a garbage collection finds this writer.
        self._emitter = None
        self._metrics.close()
        self._manager.release()
