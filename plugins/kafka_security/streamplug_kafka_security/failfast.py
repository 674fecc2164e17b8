"""Turn authentication and TLS verification failures into exceptions, at once.

librdkafka treats a rejected password or an untrusted broker certificate like any
connection problem: it logs, retries with backoff and lets ``flush()`` or ``consume()``
wait until their own timeouts. A job then looks stuck rather than misconfigured. The
Java client instead fails with a non-retriable ``SaslAuthenticationException`` /
``SslAuthenticationException``; this module gives librdkafka clients the same
behaviour through their ``error_cb``: confluent-kafka re-raises an exception raised in
that callback from the ``poll``/``consume``/``flush`` call that served it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

from streamplug.errors import StreamplugError
from streamplug.secrets import redact_text

__all__ = ["KafkaAuthenticationError", "install_fail_fast"]

log = logging.getLogger(__name__)

ERROR_CB = "error_cb"

# Phrases librdkafka uses when TLS verification fails (as opposed to a dropped
# connection, which also surfaces as an SSL error but is worth retrying).
_TLS_VERIFY_FAILURES = (
    "certificate verify failed",
    "unknown ca",
    "bad certificate",
    "certificate required",
    "broker certificate could not be verified",
    "hostname mismatch",
    "handshake failure",
)


class KafkaAuthenticationError(StreamplugError):
    """The brokers rejected the client's credentials, or TLS verification failed.

    Not retried: the configuration has to change. ``protocol`` and ``mechanism`` say
    what was attempted; the message never holds a secret.
    """

    def __init__(self, message: str, *, protocol: str | None, mechanism: str | None) -> None:
        self.protocol = protocol
        self.mechanism = mechanism
        super().__init__(message)


def _hint(kind: str, protocol: str | None, mechanism: str | None) -> str:
    if kind == "sasl":
        return (
            f"SASL {mechanism or ''} authentication failed: check the credentials "
            "(sasl.jaas.config or sasl.username/sasl.password, or the Kerberos keytab and "
            "principal) and that the brokers enable this mechanism on this listener"
        )
    return (
        f"TLS ({protocol}) verification failed: check that ssl.truststore.* (or "
        "ssl.ca.location) holds the CA that signed the brokers' certificates, that the "
        "broker host name matches its certificate (or set "
        "ssl.endpoint.identification.algorithm to an empty string), and, when the brokers "
        "require client certificates, that ssl.keystore.* holds one they trust"
    )


def classify(code: int, text: str) -> str | None:
    """``"sasl"``, ``"tls"`` or None for an error librdkafka reported to ``error_cb``."""
    from confluent_kafka import KafkaError

    lowered = text.lower()
    if code == KafkaError._AUTHENTICATION:
        if "ssl" in lowered and "sasl" not in lowered:
            return "tls"
        return "sasl"
    if code == KafkaError._SSL and any(p in lowered for p in _TLS_VERIFY_FAILURES):
        return "tls"
    # A broker that rejects the client certificate answers with a TLS alert, which
    # librdkafka reports as a receive failure after the handshake (TLS 1.3).
    if (
        code == KafkaError._TRANSPORT
        and "alert" in lowered
        and any(p in lowered for p in _TLS_VERIFY_FAILURES)
    ):
        return "tls"
    return None


def install_fail_fast(properties: MutableMapping[str, Any]) -> None:
    """Install an ``error_cb`` that raises ``KafkaAuthenticationError`` on authentication
    and TLS verification failures, chaining to any ``error_cb`` already configured."""
    previous: Callable[[Any], None] | None = properties.get(ERROR_CB)
    if getattr(previous, "_streamplug_fail_fast", False):
        return
    protocol = properties.get("security.protocol")
    mechanism = properties.get("sasl.mechanisms") if protocol and "SASL" in protocol else None
    # Only secret values are kept, to scrub them from librdkafka's text should it ever
    # echo one; they are never formatted into anything.
    secrets: Mapping[str, Any] = {
        k: v for k, v in properties.items() if isinstance(v, str) and k != ERROR_CB
    }

    def error_cb(err: Any) -> None:
        if previous is not None:
            previous(err)
        kind = classify(err.code(), err.str())
        if kind is None:
            return
        detail = redact_text(err.str(), secrets)
        raise KafkaAuthenticationError(
            f"{_hint(kind, protocol, mechanism)} (librdkafka: {detail})",
            protocol=protocol,
            mechanism=mechanism,
        )

    error_cb._streamplug_fail_fast = True  # type: ignore[attr-defined]
    properties[ERROR_CB] = error_cb
