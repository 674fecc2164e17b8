"""The Confluent Schema Registry: client settings, subject names and the wire format.

A record in the Confluent wire format is ``0x00`` (the magic byte), the schema id as a
4-byte big-endian integer, then the payload (Avro binary; for Protobuf, the message
indexes as zigzag varints and then the message). The schema behind an id is fetched once
through ``confluent_kafka.schema_registry.SchemaRegistryClient`` and cached.

Client construction is lazy (on first use, on the thread that serializes), so a schema
object can be built, copied and pickled before it ever talks to the registry.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import attrs

from streamplug.api.serde import DeserializationError
from streamplug.errors import ConfigError
from streamplug.secrets import MASK, redact
from streamplug_serde._util import missing_dependency

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient

__all__ = [
    "MAGIC_BYTE",
    "SUBJECT_NAME_STRATEGIES",
    "RegistrySettings",
    "decode_message_indexes",
    "encode_header",
    "encode_message_indexes",
    "read_header",
    "subject_name",
]

MAGIC_BYTE = 0
HEADER_SIZE = 5


def _import_client_module() -> Any:
    try:
        import confluent_kafka.schema_registry as sr
    except ImportError as exc:
        raise missing_dependency(
            "the Schema Registry formats", "confluent_kafka.schema_registry", "registry"
        ) from exc
    return sr


# -- subject names -------------------------------------------------------------------------


def _topic_strategy(topic: str | None, is_key: bool, record: str | None) -> str:
    if not topic:
        raise ConfigError(
            "subject_name_strategy='topic' needs the topic: set topic, or set subject directly",
            option="topic",
        )
    return f"{topic}-{'key' if is_key else 'value'}"


def _record_strategy(topic: str | None, is_key: bool, record: str | None) -> str:
    if not record:
        raise ConfigError(
            "subject_name_strategy='record' needs a named schema (an Avro record/enum/fixed or "
            "a Protobuf message); use subject_name_strategy='topic' for other schemas",
            option="subject_name_strategy",
        )
    return record


def _topic_record_strategy(topic: str | None, is_key: bool, record: str | None) -> str:
    if not topic:
        raise ConfigError(
            "subject_name_strategy='topic-record' needs the topic: set topic",
            option="topic",
        )
    return f"{topic}-{_record_strategy(topic, is_key, record)}"


SUBJECT_NAME_STRATEGIES: dict[str, Callable[[str | None, bool, str | None], str]] = {
    "topic": _topic_strategy,
    "record": _record_strategy,
    "topic-record": _topic_record_strategy,
}
"""Confluent's three strategies by name: ``TopicNameStrategy`` (``<topic>-key|value``),
``RecordNameStrategy`` (the record's full name) and ``TopicRecordNameStrategy``
(``<topic>-<record full name>``)."""


def subject_name(
    strategy: str | Callable[[str | None, bool, str | None], str],
    *,
    topic: str | None,
    is_key: bool,
    record_name: str | None,
) -> str:
    """The subject a schema is registered under, by strategy name or callable
    ``(topic, is_key, record_name) -> subject``."""
    if callable(strategy):
        return strategy(topic, is_key, record_name)
    try:
        fn = SUBJECT_NAME_STRATEGIES[strategy.replace("_", "-").lower()]
    except KeyError:
        raise ConfigError(
            f"subject_name_strategy={strategy!r} is unknown; use one of "
            f"{', '.join(SUBJECT_NAME_STRATEGIES)} or a callable",
            option="subject_name_strategy",
        ) from None
    return fn(topic, is_key, record_name)


# -- wire format ---------------------------------------------------------------------------


def encode_header(schema_id: int) -> bytes:
    return bytes((MAGIC_BYTE,)) + schema_id.to_bytes(4, "big")


def read_header(fmt: str, message: bytes) -> int:
    """The schema id of a wire-format record; ``DeserializationError`` if it has none."""
    if len(message) < HEADER_SIZE:
        raise DeserializationError(
            f"too short for the Schema Registry wire format ({len(message)} bytes, need at "
            "least 5: magic byte and schema id); was it written without a registry?",
            format=fmt,
            data=message,
        )
    if message[0] != MAGIC_BYTE:
        raise DeserializationError(
            f"unknown magic byte {message[0]} (expected {MAGIC_BYTE}); the record was not "
            "written in the Confluent wire format",
            format=fmt,
            data=message,
        )
    return int.from_bytes(message[1:5], "big")


def encode_message_indexes(indexes: list[int]) -> bytes:
    """Protobuf message indexes: the path from the file to the message type. ``[0]`` (the
    first message of the file) is written as a single 0, as Confluent's serializers do."""
    if indexes == [0]:
        return b"\x00"
    out = bytearray()
    for value in [len(indexes), *indexes]:
        zigzag = (value << 1) ^ (value >> 63)
        while zigzag > 0x7F:
            out.append((zigzag & 0x7F) | 0x80)
            zigzag >>= 7
        out.append(zigzag)
    return bytes(out)


def _read_varint(fmt: str, message: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(message):
            raise DeserializationError(
                "truncated Protobuf message indexes", format=fmt, data=message
            )
        byte = message[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift > 63:
            raise DeserializationError(
                "malformed varint in Protobuf message indexes", format=fmt, data=message
            )
    return (result >> 1) ^ -(result & 1), pos


def decode_message_indexes(fmt: str, message: bytes, pos: int) -> tuple[list[int], int]:
    """Read the message indexes at ``pos``; returns them and the payload's start."""
    count, pos = _read_varint(fmt, message, pos)
    if count == 0:
        return [0], pos
    if count < 0 or count > 64:
        raise DeserializationError(
            f"implausible Protobuf message index count {count}", format=fmt, data=message
        )
    indexes = []
    for _ in range(count):
        index, pos = _read_varint(fmt, message, pos)
        if index < 0:
            raise DeserializationError(
                f"negative Protobuf message index {index}", format=fmt, data=message
            )
        indexes.append(index)
    return indexes, pos


# -- client settings -----------------------------------------------------------------------


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{MASK}@{host}"))


# Registry client properties that hold credentials but that streamplug.secrets does not
# recognise by name (it knows Kafka's property names).
_REGISTRY_SECRETS = ("basic.auth.user.info", "bearer.auth.credentials", "bearer.auth.client.secret")


def _redact_properties(properties: Mapping[str, Any]) -> dict[str, Any]:
    masked = redact(properties)
    for key in masked:
        if str(key).startswith(_REGISTRY_SECRETS):
            masked[key] = MASK
    return masked


_CLIENTS: dict[tuple[Any, ...], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def _shared_client(conf: Mapping[str, Any]) -> SchemaRegistryClient:
    # One client per distinct configuration and process: schemas of one pipeline (key and
    # value, source and sink) then share the client's schema cache and HTTP connections,
    # and ``mock://`` URLs name one in-memory registry, as in confluent_kafka itself.
    key = tuple(sorted((k, repr(v)) for k, v in conf.items()))
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            sr = _import_client_module()
            if str(conf.get("url", "")).startswith("mock://"):
                client = _mock_client(sr, dict(conf))
            else:
                client = sr.SchemaRegistryClient(dict(conf))
            _CLIENTS[key] = client
        return client


def _mock_client(sr: Any, conf: dict[str, Any]) -> Any:
    cls = mock_client_class()
    if cls is None:
        raise ConfigError(
            f"schema_registry_url={conf.get('url')!r}: mock:// URLs need the in-memory registry "
            "client of a newer confluent-kafka; upgrade it (pip install -U confluent-kafka) or "
            "use a real registry URL",
            option="schema_registry_url",
        )
    return cls(conf)


def mock_client_class() -> Any:
    """confluent_kafka's in-memory ``MockSchemaRegistryClient`` class, or None where the
    installed confluent-kafka has none (older releases)."""
    for module in (
        "confluent_kafka.schema_registry._sync.mock_schema_registry_client",
        "confluent_kafka.schema_registry.mock_schema_registry_client",
    ):
        try:
            return importlib.import_module(module).MockSchemaRegistryClient
        except (ImportError, AttributeError):
            continue
    return None


@attrs.frozen(repr=False)
class RegistrySettings:
    """How to reach a Schema Registry: ``url`` plus any ``SchemaRegistryClient`` property
    (``basic.auth.user.info``, ``ssl.ca.location``...) in ``properties``, or a ready
    ``client`` object (which wins). Secrets never appear in ``repr``."""

    url: str | None = None
    properties: Mapping[str, Any] = attrs.field(factory=dict)
    client: Any = attrs.field(default=None, eq=False)

    def __attrs_post_init__(self) -> None:
        if self.client is None and not self.url:
            raise ConfigError(
                "a Schema Registry format needs schema_registry_url (e.g. "
                "'http://localhost:8081') or a schema_registry_client object",
                option="schema_registry_url",
            )

    @classmethod
    def from_options(
        cls,
        schema_registry_url: str | None,
        schema_registry_conf: Mapping[str, Any] | None,
        schema_registry_client: Any,
    ) -> RegistrySettings:
        conf = dict(schema_registry_conf or {})
        url = schema_registry_url or conf.pop("url", None)
        conf.pop("url", None)
        return cls(url=url, properties=conf, client=schema_registry_client)

    def get_client(self) -> SchemaRegistryClient:
        if self.client is not None:
            return self.client
        return _shared_client({"url": self.url, **self.properties})

    def __repr__(self) -> str:
        if self.client is not None:
            return f"RegistrySettings(client={type(self.client).__name__})"
        return (
            f"RegistrySettings(url={_redact_url(self.url or '')!r}, "
            f"properties={_redact_properties(self.properties)!r})"
        )


def registered_schema_id(
    client: Any, subject: str, schema: Any, *, auto_register: bool, normalize: bool
) -> int:
    """The id of ``schema`` under ``subject``: registered with ``auto_register`` (a no-op
    when it already is), else looked up, so it must already be registered."""
    schema_id: int | None
    if auto_register:
        schema_id = client.register_schema(subject, schema, normalize_schemas=normalize)
    else:
        schema_id = client.lookup_schema(subject, schema, normalize_schemas=normalize).schema_id
    return int(schema_id or 0)


class RegisteredHeader:
    """The serializer side of the registry formats: the header that starts every record
    (magic byte, schema id and, for Protobuf, the message indexes), made by ``_register``
    on first use. Sinks share one schema object between their parallel writers, so that
    runs once, under a lock; a pickled copy keeps the header and gets a lock of its own."""

    _header: bytes | None
    _lock: threading.Lock

    def _init_header(self) -> None:
        self._header = None
        self._lock = threading.Lock()

    def _register(self) -> bytes:
        """Register (or look up) the schema and return the header; runs under the lock."""
        raise NotImplementedError

    def open(self) -> None:
        self._resolve()

    def _resolve(self) -> bytes:
        with self._lock:
            if self._header is None:
                self._header = self._register()
            return self._header

    @property
    def schema_id(self) -> int:
        return int.from_bytes(self._resolve()[1:HEADER_SIZE], "big")

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


class SchemaCache:
    """Schema id -> parsed schema, fetched from the registry once per id. A pickled cache
    (one inside a pickled deserializer) starts empty and fetches again."""

    def __init__(self, fmt: str, settings: RegistrySettings, parse: Callable[[Any, Any], Any]):
        self._fmt = fmt
        self._settings = settings
        self._parse = parse
        self._parsed: dict[int, Any] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_parsed"] = {}
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def get(self, schema_id: int, message: bytes) -> Any:
        parsed = self._parsed.get(schema_id)
        if parsed is not None:
            return parsed
        with self._lock:
            parsed = self._parsed.get(schema_id)
            if parsed is None:
                parsed = self._fetch(schema_id, message)
                self._parsed[schema_id] = parsed
        return parsed

    def _fetch(self, schema_id: int, message: bytes) -> Any:
        sr = _import_client_module()
        client = self._settings.get_client()
        try:
            schema = client.get_schema(schema_id)
        except sr.SchemaRegistryError as exc:
            if getattr(exc, "http_status_code", None) == 404:
                raise DeserializationError(
                    f"schema id {schema_id} is not in the Schema Registry at "
                    f"{_redact_url(self._settings.url or '<client>')}: the record was written "
                    "against another registry, or is not in the wire format",
                    format=self._fmt,
                    data=message,
                ) from exc
            raise
        try:
            return self._parse(client, schema)
        except ConfigError as exc:
            raise DeserializationError(
                f"schema id {schema_id} cannot be used: {exc}", format=self._fmt, data=message
            ) from exc
