"""Which Kafka client failures a restart cannot fix, and how to say so.

librdkafka reports a misspelled property, a denied ACL or a topic that does not exist with
the same ``KafkaException`` it uses for a broker that is briefly away. The runtime restarts
on the latter and must not on the former (``streamplug.errors.UnrecoverableError``): these
helpers turn the first kind into errors that name the setting or resource and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from streamplug.errors import (
    AuthorizationError,
    ConfigError,
    MissingResourceError,
    StreamplugError,
)
from streamplug.secrets import redact_text

__all__ = [
    "CONFIGURATION_DOC",
    "BrokersUnreachableError",
    "client_creation_error",
    "is_unreachable",
    "unrecoverable_kafka_error",
]

# librdkafka's codes for "no broker answered": transport failure, all brokers down, timed
# out, name resolution failed.
_UNREACHABLE_CODES = frozenset({-195, -187, -185, -193})


class BrokersUnreachableError(StreamplugError, RuntimeError):
    """No broker at the bootstrap address answered within the bound. Retryable (brokers
    come back), so the restart strategy decides; the message names the address, what was
    tried and the setting that bounds the wait."""


def is_unreachable(exc: BaseException) -> bool:
    """Whether a ``KafkaException`` says that no broker could be reached."""
    err: Any = exc.args[0] if exc.args else None
    return hasattr(err, "code") and err.code() in _UNREACHABLE_CODES


def unreachable_error(
    component: str, bootstrap: str, timeout_s: float, what: str, detail: str, setting: str
) -> BrokersUnreachableError:
    return BrokersUnreachableError(
        f"{component} could not {what}: no broker at {bootstrap} answered within "
        f"{timeout_s:g} s ({detail}); check the address and port, that the brokers run and "
        f"that this host may connect to them (firewall, advertised.listeners); {setting} "
        "bounds the wait"
    )


CONFIGURATION_DOC = "https://github.com/confluentinc/librdkafka/blob/master/CONFIGURATION.md"

_NO_SUCH_PROPERTY = re.compile(r'No such configuration property: "([^"]+)"')
# 'Invalid value for configuration property "x"', 'Expected bool value for "x": ...'
_INVALID_VALUE = re.compile(
    r'(?:Invalid value|Expected \w+ value) for (?:configuration property )?"([^"]+)"'
)


def _error_text(exc: BaseException) -> str:
    err: Any = exc.args[0] if exc.args else None
    text = err.str() if hasattr(err, "str") else str(exc)
    return str(text)


def client_creation_error(
    component: str, exc: BaseException, properties: Mapping[str, Any]
) -> ConfigError:
    """A ``ConfigError`` for a client librdkafka refused to create: creating one does not
    connect, so its failure is always the configuration's. ``component`` names who made the
    client ("Kafka source", "Kafka sink"); secret values never reach the message."""
    text = redact_text(_error_text(exc), properties)
    missing = _NO_SUCH_PROPERTY.search(text)
    if missing:
        name = missing.group(1)
        return ConfigError(
            f"{component}: librdkafka has no configuration property {name!r}; correct or "
            f"remove it (the properties it knows: {CONFIGURATION_DOC})",
            option=name,
        )
    invalid = _INVALID_VALUE.search(text)
    option = invalid.group(1) if invalid else None
    return ConfigError(
        f"{component}: librdkafka refused its configuration: {text}; fix that property "
        f"(see {CONFIGURATION_DOC})",
        option=option,
    )


def unrecoverable_kafka_error(
    err: Any, what: str
) -> AuthorizationError | MissingResourceError | None:
    """The error a restart cannot fix that the ``KafkaError`` ``err`` stands for, or None
    when retrying may help. ``what`` names the operation and resource ("producing to topic
    'orders'")."""
    from confluent_kafka import KafkaError

    code = err.code()
    text = err.str()
    if code in (
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    ):
        return AuthorizationError(
            f"{what}: the brokers denied it to the client's principal ({text}); grant the "
            "ACL it needs (kafka-acls.sh --add ...) or connect as a principal that has it"
        )
    if code in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC):
        return MissingResourceError(
            f"{what}: the topic does not exist ({text}); create it (kafka-topics.sh --create) "
            "or enable auto.create.topics.enable on the brokers"
        )
    return None
