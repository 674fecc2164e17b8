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

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

from streamplug.errors import UnrecoverableError
from streamplug.secrets import redact_text

__all__ = ["KafkaAuthenticationError", "install_fail_fast", "verify_credentials"]

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


class KafkaAuthenticationError(UnrecoverableError):
    """The brokers rejected the client's credentials, or TLS verification failed.

    Not retried (an ``UnrecoverableError``): the configuration has to change. ``protocol`` and ``mechanism`` say
    what was attempted; the message never holds a secret.
    """

    def __init__(self, message: str, *, protocol: str | None, mechanism: str | None) -> None:
        self.protocol = protocol
        self.mechanism = mechanism
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only fields: without this a worker process could not send it back intact,
        # and the coordinator would see a generic error and restart.
        return (_rebuild, (str(self), self.protocol, self.mechanism))


def _rebuild(message: str, protocol: str | None, mechanism: str | None) -> KafkaAuthenticationError:
    return KafkaAuthenticationError(message, protocol=protocol, mechanism=mechanism)


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
    if code == KafkaError._TRANSPORT and "alert" in lowered and "certificate" in lowered:
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


_VERIFIED: set[str] = set()
# Error codes after which no authentication verdict will come (librdkafka reports a
# rejected login or certificate before it reports the brokers down).
_UNREACHABLE = frozenset({-187, -193})  # _ALL_BROKERS_DOWN, _RESOLVE
_VERIFIED_LOCK = threading.Lock()


_CONNECTION_KEYS = (
    "bootstrap.servers",
    "security.",
    "sasl.",
    "ssl.",
    "enable.sasl.",
    "enable.ssl.",
    "client.dns.lookup",
    "broker.address.family",
    "socket.",
)


def _fingerprint(properties: Mapping[str, Any]) -> str:
    # Identifies the connection settings without keeping any of them (secrets included).
    relevant = sorted(
        (k, v)
        for k, v in properties.items()
        if isinstance(v, str) and k.startswith(_CONNECTION_KEYS)
    )
    return hashlib.sha256(repr(relevant).encode()).hexdigest()


def verify_credentials(properties: Mapping[str, Any], timeout_s: float = 10.0) -> None:
    """Connect once with ``properties`` and raise ``KafkaAuthenticationError`` if the
    brokers reject the credentials or TLS verification fails.

    Connectors install their own ``error_cb`` over the one ``install_fail_fast`` adds, so
    the hook checks the credentials before handing the properties back: the job then
    fails as it starts, not minutes later. Brokers that cannot be reached within
    ``timeout_s`` are not an error here (the client will keep retrying, as configured).
    A successful check is remembered for the process, so each configuration connects
    once however many clients a job builds.
    """
    from confluent_kafka import KafkaException, Producer

    key = _fingerprint(properties)
    with _VERIFIED_LOCK:
        if key in _VERIFIED:
            return
    # Only the connection settings: the rest may be role-specific, or Python-typed
    # options of the connector's client that a bare probe would reject.
    config = {
        k: v for k, v in properties.items() if isinstance(v, str) and k.startswith(_CONNECTION_KEYS)
    }
    if not config.get("bootstrap.servers"):
        return
    failure: list[KafkaAuthenticationError] = []
    unreachable: list[int] = []
    probe: dict[str, Any] = {**config, "log_level": 0}
    install_fail_fast(probe)
    raising = probe[ERROR_CB]

    def remember_failure(err: Any) -> None:
        try:
            raising(err)
        except KafkaAuthenticationError as exc:
            failure.append(exc)
            return
        if err.code() in _UNREACHABLE:
            unreachable.append(err.code())

    probe[ERROR_CB] = remember_failure
    try:
        client = Producer(probe)
    except (KafkaException, TypeError, ValueError):
        return  # a configuration error: the connector's own client creation reports it
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            try:
                client.list_topics(timeout=0.25)
            except KafkaException:
                client.poll(0.05)
                if failure:
                    raise failure[0] from None
                if unreachable:
                    # Down or unresolvable brokers say nothing about the credentials; give
                    # a rejection reported in the same breath a moment to arrive.
                    grace_end = min(deadline, time.monotonic() + 1.0)
                    while not failure and time.monotonic() < grace_end:
                        client.poll(0.1)
                    if failure:
                        raise failure[0] from None
                    log.debug("Kafka credentials not verified: brokers unreachable")
                    return
                continue
            with _VERIFIED_LOCK:
                _VERIFIED.add(key)
            return
        log.warning(
            "could not verify the Kafka credentials within %.0f s (brokers unreachable?); "
            "the clients will keep retrying",
            timeout_s,
        )
    finally:
        client.flush(0)
