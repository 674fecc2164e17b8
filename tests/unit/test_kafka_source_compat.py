"""The source on older confluent-kafka releases and next to other plugins' callbacks:

- offsets resolved through a consumer (the path for confluent-kafka < 2.3, which has no
  ``AdminClient.list_offsets``) agree with the admin path on librdkafka's mock cluster
  (which cannot look up timestamps: tests/integration/test_kafka_source_compat.py does);
- an ``error_cb`` a client-configuration hook installed (the security plugin's fail-fast
  one) is called by the reader's own, and an exception it raises ends the read;
- ``build()`` runs the client-configuration hooks, so a setting a hook refuses fails there.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

import pytest
from confluent_kafka import KafkaError, Producer

from streamplug.api import DeserializationSchema
from streamplug.api.source import InputStatus
from streamplug.errors import ConfigError
from streamplug.plugins import hookimpl
from streamplug.testing import RecordingOutput, reader_context
from streamplug_kafka_source import (
    KafkaOffsetsInitializer,
    KafkaPartitionSplit,
    KafkaSource,
    KafkaTopicPartition,
    _compat,
)
from streamplug_kafka_source.enumerator import _admin
from streamplug_kafka_source.enumerator._admin import AdminOffsetsRetriever
from streamplug_kafka_source.reader.bad_records import DeadLetterProducer
from streamplug_testing.mock import MockCluster

BASE_TS = 1_600_000_000_000
RECORDS = 40
# Nothing listens on port 1: librdkafka reports the refused connection to error_cb at once.
UNREACHABLE = "127.0.0.1:1"


class Utf8(DeserializationSchema[str]):
    def deserialize(self, message: bytes) -> str:
        return message.decode()


class InstallsErrorCb:
    """What the security plugin's client-configuration hook does: install an error_cb on
    every client."""

    def __init__(self, error_cb: Any) -> None:
        self.error_cb = error_cb

    @hookimpl
    def streamplug_configure_client(
        self, properties: MutableMapping[str, Any], role: str, connector: str
    ) -> None:
        properties["error_cb"] = self.error_cb


# -- offsets without AdminClient.list_offsets ----------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Any:
    with MockCluster(1) as mock:
        mock.create_topic("t", partitions=2)
        producer = Producer({"bootstrap.servers": mock.bootstrap_servers})
        for p in range(2):
            for i in range(RECORDS):
                producer.produce("t", f"{p}:{i}".encode(), partition=p, timestamp=BASE_TS + i)
        assert producer.flush(10) == 0
        del producer
        yield mock


def _offsets(retriever: AdminOffsetsRetriever) -> dict[str, Any]:
    partitions = [KafkaTopicPartition("t", p) for p in range(2)]
    return {
        "beginning": retriever.beginning_offsets(partitions),
        "end": retriever.end_offsets(partitions),
    }


def test_consumer_fallback_resolves_the_same_offsets(
    cluster: MockCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    props = {"bootstrap.servers": cluster.bootstrap_servers}
    monkeypatch.setattr(_admin, "HAS_ADMIN_LIST_OFFSETS", False)
    fallback = _offsets(AdminOffsetsRetriever(props, None, read_committed=True))
    p0, p1 = KafkaTopicPartition("t", 0), KafkaTopicPartition("t", 1)
    assert fallback == {
        "beginning": {p0: 0, p1: 0},
        "end": {p0: RECORDS, p1: RECORDS},
    }
    if _compat.HAS_ADMIN_LIST_OFFSETS:
        monkeypatch.setattr(_admin, "HAS_ADMIN_LIST_OFFSETS", True)
        assert _offsets(AdminOffsetsRetriever(props, None, read_committed=True)) == fallback


def test_consumer_fallback_failure_names_what_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_admin, "HAS_ADMIN_LIST_OFFSETS", False)
    retriever = AdminOffsetsRetriever(
        {"bootstrap.servers": UNREACHABLE, "log_level": 0}, None, False, timeout_s=0.5
    )
    with pytest.raises(RuntimeError, match="could not list end offsets"):
        retriever.end_offsets([KafkaTopicPartition("t", 0)])


def test_fetch_queue_backoff_default_only_where_librdkafka_has_it() -> None:
    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(UNREACHABLE)
        .set_topics("t")
        .set_value_only_deserializer(Utf8())
        .build()
    )
    props = source.consumer_properties(reader_context())
    assert ("fetch.queue.backoff.ms" in props) is _compat.HAS_FETCH_QUEUE_BACKOFF


# -- a hook's error_cb is chained, not replaced ---------------------------------------------


class HookFailure(Exception):
    pass


def _reader(error_cb: Any) -> Any:
    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(UNREACHABLE)
        .set_topics("t")
        .set_group_id("g")
        .set_value_only_deserializer(Utf8())
        .set_property("log_level", "0")
        .build()
    )
    reader = source.create_reader(reader_context(plugins=[InstallsErrorCb(error_cb)]))
    split = KafkaPartitionSplit("t", 0, 0)
    reader.add_splits([split])
    return reader


def test_reader_calls_the_error_cb_a_hook_installed() -> None:
    seen: list[KafkaError] = []
    reader = _reader(seen.append)
    try:
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            assert reader.poll_next(RecordingOutput()) is InputStatus.MORE_AVAILABLE
        assert seen, "the hook's error_cb never heard of the refused connection"
        assert all(isinstance(e, KafkaError) for e in seen)
    finally:
        reader.close()


def test_an_exception_from_the_hooks_error_cb_ends_the_read() -> None:
    def raising(err: KafkaError) -> None:
        raise HookFailure(err.str())

    reader = _reader(raising)
    try:
        deadline = time.monotonic() + 10
        with pytest.raises(HookFailure):
            while time.monotonic() < deadline:
                reader.poll_next(RecordingOutput())
    finally:
        reader.close()


def test_admin_client_keeps_the_error_cb_a_hook_installed() -> None:
    seen: list[KafkaError] = []
    retriever = AdminOffsetsRetriever(
        {"bootstrap.servers": UNREACHABLE, "error_cb": seen.append, "log_level": 0},
        None,
        False,
        timeout_s=1.0,
    )
    with pytest.raises(RuntimeError, match="could not list topics"):
        retriever.list_topics()
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        retriever._admin.poll(0.1)
    assert seen


def test_dead_letter_producer_keeps_the_error_cb_a_hook_installed() -> None:
    seen: list[KafkaError] = []
    dlq = DeadLetterProducer(
        "dlq", {"bootstrap.servers": UNREACHABLE, "error_cb": seen.append, "log_level": 0}
    )
    try:
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            dlq._producer.poll(0.1)
        assert seen
    finally:
        dlq.close()


# -- build() runs the client-configuration hooks --------------------------------------------


class Refuse:
    @hookimpl
    def streamplug_configure_client(
        self, properties: MutableMapping[str, Any], role: str, connector: str
    ) -> None:
        if properties.get("test.refuse") == "yes":
            raise ConfigError("test.refuse=yes cannot work: remove it", option="test.refuse")


def test_build_fails_when_a_hook_refuses_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import streamplug.plugins

    real = streamplug.plugins.build_plugin_host
    monkeypatch.setattr(
        streamplug.plugins,
        "build_plugin_host",
        lambda **kw: real(autoload=False, plugins=[Refuse()]),
    )
    builder = (
        KafkaSource.builder()
        .set_bootstrap_servers(UNREACHABLE)
        .set_topics("t")
        .set_value_only_deserializer(Utf8())
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
    )
    builder.build()
    with pytest.raises(ConfigError, match=r"test\.refuse=yes"):
        builder.set_property("test.refuse", "yes").build()


def test_the_kafka_connector_checks_settings_with_the_runs_host_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pipeline's kafka source is checked with the host of the run, which is passed to it;
    the plugin builds no second host behind the user's back."""
    import streamplug.plugins
    from streamplug.plugin import FormatSpec, build_plugin_host
    from streamplug_kafka_source import plugin as source_plugin

    class Text:
        @hookimpl
        def streamplug_register_formats(self, register: Any) -> None:
            register(FormatSpec("string", deserializer=Utf8))

    def no_second_host(**kw: Any) -> Any:
        raise AssertionError("the kafka source built a second plugin host")

    host = build_plugin_host(autoload=False, plugins=[source_plugin, Text(), Refuse()])
    monkeypatch.setattr(streamplug.plugins, "build_plugin_host", no_second_host)
    options = {"bootstrap_servers": UNREACHABLE, "topics": ["t"], "format": "string"}
    spec = host.connector("kafka", "source")
    assert spec.options is not None
    spec.factory(host.check_options(spec.options, options), host)
    refused = {**options, "properties": {"test.refuse": "yes"}}
    with pytest.raises(ConfigError, match=r"test\.refuse=yes"):
        spec.factory(host.check_options(spec.options, refused), host)
