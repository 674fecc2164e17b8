"""KafkaSink and its builder (Flink's ``KafkaSink.builder()``)::

sink = (
    KafkaSink.builder()
    .set_bootstrap_servers("localhost:9092")
    .set_record_serializer(
        KafkaRecordSerializationSchema.builder()
        .set_topic("out")
        .set_value_serialization_schema(SimpleStringSchema())
        .build()
    )
    .set_delivery_guarantee(DeliveryGuarantee.EXACTLY_ONCE)
    .set_transactional_id_prefix("orders-job")
    .build()
)
stream.sink_to(sink)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaException, Producer

from streamplug.api.context import SinkContext
from streamplug.api.sink import Committer, DeliveryGuarantee, Sink, SinkWriter
from streamplug.api.state import StateSerializer
from streamplug.errors import ConfigError
from streamplug.secrets import redact
from streamplug_kafka_common.callbacks import ChainedErrorCallback
from streamplug_kafka_common.failures import client_creation_error
from streamplug_kafka_common.logs import install_client_logger
from streamplug_kafka_sink import _config
from streamplug_kafka_sink._startup import StartupCheck
from streamplug_kafka_sink.committer import KafkaCommitter, KafkaRecoveryCommitter
from streamplug_kafka_sink.metrics import ProducerStatistics, WriterMetrics
from streamplug_kafka_sink.record_serializer import KafkaRecordSerializationSchema
from streamplug_kafka_sink.transaction import (
    ExactlyOnceWriter,
    KafkaCommittable,
    KafkaCommittableSerializer,
    TransactionManager,
)
from streamplug_kafka_sink.writer import DeliveryErrors, KafkaWriter

__all__ = ["KafkaSink", "KafkaSinkBuilder"]

log = logging.getLogger(__name__)

# librdkafka statistics feed currentSendTime and the KafkaProducer gauges; once a second
# costs one small JSON parse.
_DEFAULT_STATISTICS_INTERVAL_MS = "1000"


class KafkaSinkBuilder:
    """Collects the sink's settings; ``build()`` checks them and names the missing call."""

    def __init__(self) -> None:
        self._bootstrap: str | None = None
        self._serializer: KafkaRecordSerializationSchema[Any] | None = None
        self._guarantee = DeliveryGuarantee.NONE
        self._prefix: str | None = None
        self._properties: dict[str, str] = {}

    def set_bootstrap_servers(self, servers: str) -> KafkaSinkBuilder:
        if not isinstance(servers, str) or not servers.strip():
            raise ConfigError(
                "bootstrap servers must be a non-empty 'host:port[,host:port]' string, got "
                f"{servers!r}",
                option="bootstrap.servers",
            )
        self._bootstrap = servers.strip()
        return self

    def set_record_serializer(
        self, serializer: KafkaRecordSerializationSchema[Any]
    ) -> KafkaSinkBuilder:
        if not isinstance(serializer, KafkaRecordSerializationSchema):
            raise ConfigError(
                "set_record_serializer expects a KafkaRecordSerializationSchema, got "
                f"{type(serializer).__name__}; "
                "build one with KafkaRecordSerializationSchema.builder()...build()",
                option="record.serializer",
            )
        self._serializer = serializer
        return self

    def set_delivery_guarantee(self, guarantee: DeliveryGuarantee | str) -> KafkaSinkBuilder:
        self._guarantee = DeliveryGuarantee.parse(guarantee)
        return self

    def set_transactional_id_prefix(self, prefix: str) -> KafkaSinkBuilder:
        """The transactional id of the sink's producer is ``<prefix>-0``. It must be unique
        per job and stable across restarts: a restart fences the previous producer."""
        if not isinstance(prefix, str) or not prefix.strip():
            raise ConfigError(
                f"transactional id prefix must be a non-empty string, got {prefix!r}",
                option="transactional.id.prefix",
            )
        self._prefix = prefix.strip()
        return self

    def set_property(self, key: str, value: Any) -> KafkaSinkBuilder:
        """A librdkafka producer property, or one of the sink's own options
        (``register.producer.metrics``, ``commit.log.topic``, ``commit.log.replication.factor``)."""
        if key == "bootstrap.servers":
            return self.set_bootstrap_servers(str(value))
        if key == "transactional.id":
            raise ConfigError(
                "do not set transactional.id: the sink derives it from "
                "set_transactional_id_prefix(prefix) as '<prefix>-0'",
                option="transactional.id",
            )
        self._properties[key] = str(value).lower() if isinstance(value, bool) else str(value)
        return self

    def set_properties(self, properties: Mapping[str, Any]) -> KafkaSinkBuilder:
        for key, value in properties.items():
            self.set_property(key, value)
        return self

    def build(self) -> KafkaSink:
        if self._bootstrap is None:
            raise ConfigError(
                "no bootstrap servers: call set_bootstrap_servers('host:port')",
                option="bootstrap.servers",
            )
        if self._serializer is None:
            raise ConfigError(
                "no record serializer: call set_record_serializer("
                "KafkaRecordSerializationSchema.builder().set_topic(...)"
                ".set_value_serialization_schema(...).build())",
                option="record.serializer",
            )
        if self._guarantee is DeliveryGuarantee.EXACTLY_ONCE and not self._prefix:
            raise ConfigError(
                "EXACTLY_ONCE needs a transactional id prefix, unique per job and stable across "
                "restarts: call set_transactional_id_prefix('my-job')",
                option="transactional.id.prefix",
            )
        # Fail now, not at job start, on contradictory producer settings.
        _config.producer_properties(self._properties, self._guarantee)
        _config.api_timeout_ms(self._properties)
        _config.parse_bool(
            self._properties.get(_config.REGISTER_PRODUCER_METRICS, "true"),
            _config.REGISTER_PRODUCER_METRICS,
        )
        return KafkaSink(
            bootstrap_servers=self._bootstrap,
            serializer=self._serializer,
            guarantee=self._guarantee,
            transactional_id_prefix=self._prefix,
            properties=dict(self._properties),
        )


class KafkaSink(Sink[KafkaCommittable, Any]):
    """Writes a stream to Kafka with the chosen delivery guarantee.

    NONE and AT_LEAST_ONCE: one idempotent producer per writer subtask. EXACTLY_ONCE: one
    transactional producer per sink per process, shared by the writer subtasks and the
    committer (see ``streamplug_kafka_sink.transaction`` for the protocol).
    """

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        serializer: KafkaRecordSerializationSchema[Any],
        guarantee: DeliveryGuarantee,
        transactional_id_prefix: str | None,
        properties: Mapping[str, str],
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.serializer = serializer
        self.guarantee = guarantee
        self.transactional_id_prefix = transactional_id_prefix
        self.properties = dict(properties)
        self._lock = threading.Lock()
        self._managers: dict[tuple[int, int], TransactionManager] = {}

    @staticmethod
    def builder() -> KafkaSinkBuilder:
        return KafkaSinkBuilder()

    # Sinks may be copied into a job description; producers never travel with them.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_lock"] = None
        state["_managers"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"KafkaSink(bootstrap_servers={self.bootstrap_servers!r}, "
            f"guarantee={self.guarantee.name}, "
            f"serializer={self.serializer!r}, properties={redact(self.properties)!r})"
        )

    @property
    def delivery_guarantee(self) -> DeliveryGuarantee:
        return self.guarantee

    @property
    def transactional_id(self) -> str | None:
        """The transactional id of worker slot 0 (every subtask of the threads runtime)."""
        if self.transactional_id_prefix is None:
            return None
        return self.transactional_id_for(0)

    def transactional_id_for(self, worker: int) -> str:
        """``<prefix>-<slot>``: the id follows the worker slot, wherever the slot runs, so a
        restarted slot fences its zombie."""
        return f"{self.transactional_id_prefix}-{worker}"

    @property
    def commit_log_topic(self) -> str | None:
        if self.transactional_id_prefix is None:
            return None
        return (
            self.properties.get(_config.COMMIT_LOG_TOPIC)
            or f"{self.transactional_id_prefix}.streamplug-commits"
        )

    def describe(self) -> Mapping[str, Any]:
        facts: dict[str, Any] = {
            "type": "KafkaSink",
            "bootstrap_servers": self.bootstrap_servers,
            "delivery_guarantee": self.guarantee.name,
            "serializer": repr(self.serializer),
        }
        if self.guarantee is DeliveryGuarantee.EXACTLY_ONCE:
            facts["transactional_id"] = self.transactional_id
            facts["commit_log_topic"] = self.commit_log_topic
        return facts

    # -- clients ---------------------------------------------------------------------------

    def _register_metrics(self) -> bool:
        return _config.parse_bool(
            self.properties.get(_config.REGISTER_PRODUCER_METRICS, "true"),
            _config.REGISTER_PRODUCER_METRICS,
        )

    def _base_properties(self) -> dict[str, str]:
        props = {"bootstrap.servers": self.bootstrap_servers}
        props.update(self.properties)
        return props

    def _producer_config(
        self, context: SinkContext, extra: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        props = _config.producer_properties(self._base_properties(), self.guarantee)
        props.setdefault("statistics.interval.ms", _DEFAULT_STATISTICS_INTERVAL_MS)
        props.setdefault("client.id", f"streamplug-{context.job_name}-sink-{context.subtask_index}")
        props.update(extra or {})
        context.configure_client(props, role="producer", connector="kafka")
        return props

    def _client_config(self, context: SinkContext, role: str) -> dict[str, str]:
        props = _config.connection_properties(self._base_properties())
        context.configure_client(props, role=role, connector="kafka")
        return props

    def _check_exactly_once(self, context: SinkContext) -> int:
        if not context.checkpointing_enabled or context.checkpoint_interval_ms is None:
            raise ConfigError(
                "DeliveryGuarantee.EXACTLY_ONCE makes output visible only when a checkpoint "
                "completes, and checkpointing is off: call env.enable_checkpointing(interval_ms), "
                "or use DeliveryGuarantee.AT_LEAST_ONCE",
                option="delivery.guarantee",
            )
        return _config.transaction_timeout_ms(
            self.properties, context, context.checkpoint_interval_ms, context.checkpoint_timeout_ms
        )

    def _manager(self, context: SinkContext) -> TransactionManager:
        """The slot's shared transaction manager for this attempt; managers of earlier
        attempts in this process are closed, so only one producer per transactional id is
        alive here."""
        timeout_ms = self._check_exactly_once(context)
        attempt = context.attempt_number
        worker = context.worker_index
        key = (attempt, -1 if worker is None else worker)
        with self._lock:
            manager = self._managers.get(key)
            if manager is not None:
                return manager
            for old in [k for k in self._managers if k[0] < attempt]:
                self._managers.pop(old).close()
            manager = self._new_manager(context, 0 if worker is None else worker, timeout_ms)
            self._managers[key] = manager
            return manager

    def _new_manager(
        self, context: SinkContext, worker: int, timeout_ms: int
    ) -> TransactionManager:
        assert self.transactional_id_prefix is not None and self.commit_log_topic is not None
        transactional_id = self.transactional_id_for(worker)
        extra = {"transactional.id": transactional_id, "transaction.timeout.ms": str(timeout_ms)}
        producer_config = self._producer_config(context, extra)
        producer_config["client.id"] = f"streamplug-{context.job_name}-txn-{worker}"
        raw_rf = self.properties.get(_config.COMMIT_LOG_REPLICATION)
        return TransactionManager(
            transactional_id=transactional_id,
            producer_config=producer_config,
            admin_config=self._client_config(context, "admin"),
            consumer_config=self._client_config(context, "consumer"),
            commit_log_topic=self.commit_log_topic,
            commit_log_replication=(
                _config.parse_int(raw_rf, _config.COMMIT_LOG_REPLICATION)
                if raw_rf is not None
                else None
            ),
            job_name=context.job_name,
            statistics=ProducerStatistics(),
            api_timeout_ms=_config.api_timeout_ms(self.properties),
            on_outcome=context.plugin_hook("streamplug_writer_outcome"),
        )

    def _forget(self, key: tuple[int, int], manager: TransactionManager) -> None:
        with self._lock:
            if self._managers.get(key) is manager:
                del self._managers[key]

    # -- Sink ------------------------------------------------------------------------------

    def create_writer(
        self, context: SinkContext, restored_state: Sequence[Any]
    ) -> SinkWriter[KafkaCommittable, Any]:
        # A scope of its own (streamplug.task.KafkaSinkWriter.*): in the task's scope the
        # writer's numRecordsOut counter clashed with the runtime's numRecordsOut gauge, and
        # an OpenMetrics scrape (what Prometheus asks for first) was rejected.
        group = context.metric_group.add_group("KafkaSinkWriter").add_group(
            "writer", subtask=context.subtask_index
        )
        register = self._register_metrics()
        if self.guarantee is DeliveryGuarantee.EXACTLY_ONCE:
            manager = self._manager(context)
            metrics = WriterMetrics(
                group, manager.statistics, register and context.subtask_index == 0
            )
            return ExactlyOnceWriter(manager, self.serializer, context, metrics)
        statistics = ProducerStatistics()
        errors = DeliveryErrors()
        conf = _config.finalize_client_config(self._producer_config(context))
        conf["on_delivery"] = errors.on_delivery
        install_client_logger(conf)
        conf["stats_cb"] = statistics.on_stats
        # Chained, not replaced: a configure_client hook's error_cb (the security plugin's
        # fails fast on rejected credentials) keeps working.
        client_errors = ChainedErrorCallback.install(conf, _log_client_error)
        metrics = WriterMetrics(group, statistics, register)
        try:
            producer = Producer(conf)
        except (KafkaException, ValueError, TypeError) as exc:
            # Creating a producer does not connect: a restart would fail the same way.
            raise client_creation_error("Kafka sink", exc, conf) from exc
        # Every writer's check gets its own producer a producer id quickly; the first
        # subtask's also judges whether the topic exists.
        topic = getattr(self.serializer, "topic", None)
        check = StartupCheck(
            producer,
            topic if isinstance(topic, str) else None,
            self.bootstrap_servers,
            _config.api_timeout_ms(self.properties),
            judge_topic=context.subtask_index == 0,
        )
        return KafkaWriter(
            producer,
            errors,
            self.serializer,
            self.guarantee,
            context,
            metrics,
            client_errors=client_errors,
            delivery_wait_s=_config.delivery_wait_s(conf),
            startup_check=check,
        )

    def create_committer(self, context: SinkContext) -> Committer[KafkaCommittable] | None:
        if self.guarantee is not DeliveryGuarantee.EXACTLY_ONCE:
            return None
        if context.worker_index is None:
            timeout_ms = self._check_exactly_once(context)
            # Never cached, never started: it only fences and reads the commit log.
            return KafkaRecoveryCommitter(
                self._new_manager(context, 0, timeout_ms), self.transactional_id_for
            )
        manager = self._manager(context)
        key = (context.attempt_number, context.worker_index)
        return KafkaCommitter(manager, on_close=lambda: self._forget(key, manager))

    def get_committable_serializer(self) -> StateSerializer[KafkaCommittable]:
        return KafkaCommittableSerializer()


def _log_client_error(err: Any) -> None:
    # Transient broker trouble is retried by librdkafka; only say so, never fail here.
    if err.fatal():
        log.error("Kafka producer fatal error: %s", err.str())
    else:
        log.debug("Kafka producer: %s", err.str())
