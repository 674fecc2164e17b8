"""Producer, admin and consumer properties for the sink, and the checks on them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streamplug.api.context import RuntimeContext
from streamplug.api.sink import DeliveryGuarantee
from streamplug.errors import ConfigError

# Options the sink reads itself; they never reach librdkafka.
REGISTER_PRODUCER_METRICS = "register.producer.metrics"
COMMIT_LOG_TOPIC = "commit.log.topic"
COMMIT_LOG_REPLICATION = "commit.log.replication.factor"
# The source's option of the same name (the Java client's bound on a blocking call): how
# long the sink waits for any broker at the bootstrap address to answer before the job
# fails naming the address, instead of waiting out message.timeout.ms.
API_TIMEOUT_MS = "default.api.timeout.ms"
DEFAULT_API_TIMEOUT_MS = 30_000
SINK_OPTIONS = frozenset(
    {REGISTER_PRODUCER_METRICS, COMMIT_LOG_TOPIC, COMMIT_LOG_REPLICATION, API_TIMEOUT_MS}
)

# Kafka's broker default for transaction.max.timeout.ms: a producer asking for more is
# refused at init_transactions.
BROKER_MAX_TRANSACTION_TIMEOUT_MS = 900_000
_TRANSACTION_TIMEOUT_MARGIN_MS = 60_000

# Settings every client of a cluster shares (where and how to connect); the commit-log
# admin client and consumer take only these from the user's producer properties, so
# librdkafka does not warn about producer-only settings on them.
_CONNECTION_PREFIXES = (
    "bootstrap.servers",
    "security.protocol",
    "sasl.",
    "ssl.",
    "ssl_",
    "enable.ssl",
    # Flink-style Kerberos (security.kerberos.login.*) and librdkafka's
    # enable.sasl.oauthbearer.unsecure.jwt: without them the commit-log clients cannot
    # authenticate where the producer can.
    "security.kerberos.",
    "enable.sasl.",
    "client.id",
    "client.dns.lookup",
    "client.rack",
    "socket.",
    "broker.",
    "api.version",
    "metadata.",
    "reconnect.",
    "connections.",
    "retry.backoff",
    "oauthbearer",
    "https.",
)


# librdkafka fails an undelivered record after message.timeout.ms (delivery.timeout.ms
# is its alias); a transactional producer caps it at transaction.timeout.ms.
_DEFAULT_MESSAGE_TIMEOUT_MS = 300_000
# Past that bound librdkafka has reported every record; the slack covers the last
# reports' way through the callbacks.
_DELIVERY_WAIT_SLACK_S = 30.0


def delivery_wait_s(props: Mapping[str, Any]) -> float:
    """How long a flush may wait before no delivery report can still come: the
    producer's message timeout plus slack."""
    raw = props.get("message.timeout.ms", props.get("delivery.timeout.ms"))
    timeout_ms = (
        parse_int(raw, "message.timeout.ms") if raw is not None else _DEFAULT_MESSAGE_TIMEOUT_MS
    )
    # 0 means "no limit" to librdkafka; the transaction timeout then still bounds it.
    txn = props.get("transaction.timeout.ms")
    if txn is not None:
        txn_ms = parse_int(txn, "transaction.timeout.ms")
        timeout_ms = txn_ms if timeout_ms <= 0 else min(timeout_ms, txn_ms)
    if timeout_ms <= 0:
        timeout_ms = _DEFAULT_MESSAGE_TIMEOUT_MS
    return timeout_ms / 1000 + _DELIVERY_WAIT_SLACK_S


def api_timeout_ms(props: Mapping[str, Any]) -> int:
    """The sink's bound on reaching its brokers (``default.api.timeout.ms``), in ms."""
    raw = props.get(API_TIMEOUT_MS)
    if raw is None:
        return DEFAULT_API_TIMEOUT_MS
    value = parse_int(raw, API_TIMEOUT_MS)
    if value <= 0:
        raise ConfigError(
            f"{API_TIMEOUT_MS}={raw!r} must be a positive number of milliseconds (default "
            f"{DEFAULT_API_TIMEOUT_MS})",
            option=API_TIMEOUT_MS,
        )
    return value


def api_timeout_setting(timeout_ms: int) -> str:
    """How an unreachable-brokers error names the setting that bounds the wait."""
    return f"the sink property {API_TIMEOUT_MS} (now {timeout_ms})"


def finalize_client_config(props: Mapping[str, str]) -> dict[str, Any]:
    """The configuration dict for a confluent_kafka client: the Python client's own
    options want Python values, librdkafka's take strings."""
    conf: dict[str, Any] = dict(props)
    for key in ("delivery.report.only.error",):
        if key in conf:
            conf[key] = parse_bool(conf[key], key)
    return conf


def parse_bool(value: Any, option: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"{option}={value!r} is not a boolean: use 'true' or 'false'", option=option)


def parse_int(value: Any, option: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{option}={value!r} is not an integer", option=option) from None


def client_properties(properties: Mapping[str, str]) -> dict[str, str]:
    """The user's properties minus the sink's own options."""
    return {k: v for k, v in properties.items() if k not in SINK_OPTIONS}


def connection_properties(properties: Mapping[str, str]) -> dict[str, str]:
    """Only the settings that say where and how to connect (for admin and consumer clients)."""
    return {
        k: v
        for k, v in properties.items()
        if k.startswith(_CONNECTION_PREFIXES) and k not in SINK_OPTIONS
    }


def producer_properties(
    properties: Mapping[str, str], guarantee: DeliveryGuarantee
) -> dict[str, str]:
    """The producer's properties: safe defaults for the guarantee, then the user's."""
    props: dict[str, str] = {
        # Java's default partitioner hashes keys with murmur2; librdkafka's default is
        # CRC32. Match Java so keyed records land where a Flink/Java producer puts them.
        "partitioner": "murmur2_random",
        # Only failures need a Python callback; successes are counted by flush() reaching
        # an empty queue. This removes one Python call per record.
        "delivery.report.only.error": "true",
    }
    if guarantee is not DeliveryGuarantee.NONE:
        props.update({"acks": "all", "enable.idempotence": "true"})
    props.update(client_properties(properties))
    if guarantee is not DeliveryGuarantee.NONE:
        acks = props.get("acks", "all").strip().lower()
        if acks not in ("all", "-1"):
            raise ConfigError(
                f"acks={props['acks']!r} cannot give {guarantee.name}: a record acknowledged "
                "by the leader alone is lost when the leader fails; remove the acks property "
                "(the sink sets acks=all) or use DeliveryGuarantee.NONE",
                option="acks",
            )
        idempotent = parse_bool(props.get("enable.idempotence", "true"), "enable.idempotence")
        if not idempotent and guarantee is DeliveryGuarantee.EXACTLY_ONCE:
            raise ConfigError(
                "enable.idempotence=false cannot be used with EXACTLY_ONCE: Kafka transactions "
                "need the idempotent producer; remove the property",
                option="enable.idempotence",
            )
    return props


def transaction_timeout_ms(
    properties: Mapping[str, str],
    context: RuntimeContext,
    interval_ms: int,
    checkpoint_timeout_ms: int,
) -> int:
    """The transaction timeout to use, checked against the checkpoint cadence.

    A transaction opens with the first record after a checkpoint and commits with the next
    checkpoint, so it may stay open for a checkpoint interval plus a whole checkpoint
    (up to its timeout). If the broker's timeout is shorter, it aborts the transaction
    behind the job's back and the commit fails with a fencing error.
    """
    needed = interval_ms + checkpoint_timeout_ms
    raw = properties.get("transaction.timeout.ms")
    if raw is None:
        chosen = min(
            max(needed + _TRANSACTION_TIMEOUT_MARGIN_MS, 60_000), BROKER_MAX_TRANSACTION_TIMEOUT_MS
        )
        if chosen > needed:
            return chosen
        raise ConfigError(
            f"checkpoint interval ({interval_ms} ms) + checkpoint timeout "
            f"({checkpoint_timeout_ms} ms) = "
            f"{needed} ms is longer than Kafka's default maximum transaction timeout "
            f"({BROKER_MAX_TRANSACTION_TIMEOUT_MS} ms): shorten the checkpoint timeout "
            "(env.get_checkpoint_config().set_checkpoint_timeout(...)), or raise the brokers' "
            "transaction.max.timeout.ms and set_property('transaction.timeout.ms', ...) above "
            f"{needed}",
            option="transaction.timeout.ms",
        )
    value = parse_int(raw, "transaction.timeout.ms")
    if value <= needed:
        suggestion = needed + _TRANSACTION_TIMEOUT_MARGIN_MS
        raise ConfigError(
            f"transaction.timeout.ms={value} is too small for job {context.job_name!r}: a "
            "transaction "
            f"stays open for up to the checkpoint interval ({interval_ms} ms) + the checkpoint "
            "timeout "
            f"({checkpoint_timeout_ms} ms) = {needed} ms, and Kafka aborts it after "
            f"transaction.timeout.ms. Fix: set_property('transaction.timeout.ms', '{suggestion}') "
            "(at most the brokers' transaction.max.timeout.ms, "
            f"{BROKER_MAX_TRANSACTION_TIMEOUT_MS} by "
            "default), or shorten the checkpoint interval/timeout",
            option="transaction.timeout.ms",
        )
    return value
