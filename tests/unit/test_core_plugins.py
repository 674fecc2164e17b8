"""The plugin system itself: hooks documented and exercised, loading, conflicts, lookups."""

from __future__ import annotations

import importlib.metadata
import inspect
import sys
import types
from typing import Any

import pytest

from streamplug import hookspecs
from streamplug.api.serde import DeserializationSchema, FormatSpec, SerializationSchema
from streamplug.errors import DuplicateNameError, UnknownNameError
from streamplug.plugins import (
    CommandSpec,
    ConnectorSpec,
    OffsetsInitializerSpec,
    PartitionerSpec,
    RuntimeSpec,
    build_plugin_host,
    hookimpl,
)

HOOK_NAMES = sorted(n for n in dir(hookspecs) if n.startswith("streamplug_"))


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_every_hook_is_documented_with_an_example(name: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    assert "Called" in doc or "called" in doc, f"{name} does not say when it is called"
    assert "Return" in doc, f"{name} does not say what it returns"
    assert "Example::" in doc, f"{name} has no example"


class _Upper(SerializationSchema[str]):
    def serialize(self, element: str) -> bytes:
        return element.upper().encode()


class _Lower(DeserializationSchema[str]):
    def deserialize(self, message: bytes) -> str:
        return message.decode().lower()


class RecordingPlugin:
    """Implements every hook, so a test can prove each one is called."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def streamplug_register_connectors(self, register: Any) -> None:
        self.calls.append("streamplug_register_connectors")
        register(ConnectorSpec("rec-source", "source", lambda **o: o))

    @hookimpl
    def streamplug_register_formats(self, register: Any) -> None:
        self.calls.append("streamplug_register_formats")
        register(FormatSpec("shout", serializer=_Upper, deserializer=_Lower))

    @hookimpl
    def streamplug_register_partitioners(self, register: Any) -> None:
        self.calls.append("streamplug_register_partitioners")
        register(PartitionerSpec("rec-partitioner", lambda **o: o))

    @hookimpl
    def streamplug_register_offsets_initializers(self, register: Any) -> None:
        self.calls.append("streamplug_register_offsets_initializers")
        register(OffsetsInitializerSpec("rec-initializer", lambda **o: o))

    @hookimpl
    def streamplug_register_commands(self, register: Any) -> None:
        self.calls.append("streamplug_register_commands")
        register(CommandSpec("rec", "a test command", lambda p: None, lambda a: 0))

    @hookimpl
    def streamplug_register_runtimes(self, register: Any) -> None:
        from streamplug.runtime.runtimes import ThreadsRuntime

        self.calls.append("streamplug_register_runtimes")
        register(RuntimeSpec("rec-runtime", ThreadsRuntime, "threads under another name"))

    @hookimpl
    def streamplug_configure_client(self, properties: Any, role: str, connector: str) -> None:
        self.calls.append("streamplug_configure_client")
        properties["client.rack"] = f"{connector}-{role}"

    @hookimpl
    def streamplug_job_started(self, job: Any) -> None:
        self.calls.append("streamplug_job_started")

    @hookimpl
    def streamplug_job_finished(self, job: Any, status: str, error: Any) -> None:
        self.calls.append("streamplug_job_finished")

    @hookimpl
    def streamplug_job_restarting(self, job: Any, error: Any, delay_ms: int) -> None:
        self.calls.append("streamplug_job_restarting")

    @hookimpl
    def streamplug_checkpoint_started(self, job: Any, checkpoint_id: int) -> None:
        self.calls.append("streamplug_checkpoint_started")

    @hookimpl
    def streamplug_checkpoint_completed(self, job: Any, checkpoint_id: int, location: str) -> None:
        self.calls.append("streamplug_checkpoint_completed")

    @hookimpl
    def streamplug_checkpoint_aborted(self, job: Any, checkpoint_id: int, reason: str) -> None:
        self.calls.append("streamplug_checkpoint_aborted")


def test_every_hook_is_exercised(tmp_path: Any) -> None:
    """Registration hooks through lookups, lifecycle hooks through a job that fails once,
    restarts, checkpoints and finishes; a checkpoint timeout aborts one checkpoint."""
    from streamplug.cli import build_parser
    from streamplug.connectors import CollectionSource, CollectSink
    from streamplug.runtime import RestartStrategies, StreamExecutionEnvironment

    plugin = RecordingPlugin()
    host = build_plugin_host(autoload=False, plugins=[plugin])
    assert host.connector("rec-source", "source").name == "rec-source"
    assert host.format("shout").serializer is _Upper
    assert host.lookup("partitioner", "rec-partitioner").name == "rec-partitioner"
    assert host.lookup("offsets initializer", "rec-initializer").name == "rec-initializer"
    assert "rec" in build_parser(host).format_help()
    props: dict[str, str] = {}
    host.configure_client(props, role="consumer", connector="kafka")
    assert props == {"client.rack": "kafka-consumer"}

    failed = []

    def fail_once(x: int) -> int:
        if x == 500 and not failed:
            failed.append(x)
            raise RuntimeError("injected")
        return x

    env = StreamExecutionEnvironment.get_execution_environment(host)
    env.set_parallelism(2).enable_checkpointing(50).set_runtime("rec-runtime")
    env.get_checkpoint_config().set_checkpoint_storage_dir(tmp_path)
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(2, 10))
    source = CollectionSource(list(range(3000)), batch_size=50, records_per_second=5000)
    env.from_source(source, None, "numbers").map(fail_once).sink_to(CollectSink())
    env.execute("hooks")
    slow = StreamExecutionEnvironment.get_execution_environment(host)
    slow.enable_checkpointing(20)
    slow.get_checkpoint_config().set_checkpoint_timeout(30).set_tolerable_checkpoint_failure_number(
        100
    )

    def stall(x: int) -> int:
        import time

        time.sleep(0.2)
        return x

    slow.from_source(CollectionSource([1, 2], batch_size=1), None, "slow").map(stall).sink_to(
        CollectSink()
    )
    slow.execute("slow")
    assert sorted(set(plugin.calls)) == HOOK_NAMES


def test_duplicate_name_names_both_distributions() -> None:
    class A:
        @hookimpl
        def streamplug_register_formats(self, register: Any) -> None:
            register(FormatSpec("dup", serializer=_Upper))

    host = build_plugin_host(autoload=False)
    host.register(A(), name="a", distribution="dist-a")
    host.register(A(), name="b", distribution="dist-b")
    with pytest.raises(DuplicateNameError) as info:
        host.format("dup")
    assert "dist-a" in str(info.value) and "dist-b" in str(info.value)


def test_unknown_name_lists_valid_names() -> None:
    host = build_plugin_host(autoload=False)
    with pytest.raises(UnknownNameError) as info:
        host.connector("kafak", "source")
    assert "collection" in str(info.value)
    assert "kafak" in str(info.value)


def test_a_source_and_a_sink_may_share_a_name() -> None:
    class Both:
        @hookimpl
        def streamplug_register_connectors(self, register: Any) -> None:
            register(ConnectorSpec("same", "source", lambda **o: "source"))
            register(ConnectorSpec("same", "sink", lambda **o: "sink"))

    host = build_plugin_host(autoload=False, plugins=[Both()])
    assert host.connector("same", "source").factory() == "source"
    assert host.connector("same", "sink").factory() == "sink"


def test_sink_name_is_not_a_source() -> None:
    host = build_plugin_host(autoload=False)
    with pytest.raises(UnknownNameError, match="no source named 'print'"):
        host.connector("print", "source")


def test_builtin_components_register_even_without_autoload() -> None:
    host = build_plugin_host(autoload=False)
    assert host.names("source") == ["collection"]
    assert {"print", "discard"} <= set(host.names("sink"))
    assert {"plugins", "checkpoints"} <= set(host.names("command"))


def test_disable_autoload_environment_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMPLUG_DISABLE_PLUGIN_AUTOLOAD", "1")
    host = build_plugin_host()
    assert [name for name, _ in host.pm.list_name_plugin()] == ["streamplug.builtin"]


def test_a_plugin_that_fails_to_load_is_named_and_others_still_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    good = types.ModuleType("streamplug_test_good")

    class _Good:
        @hookimpl
        def streamplug_register_partitioners(self, register: Any) -> None:
            register(PartitionerSpec("good-one", lambda **o: o))

    good.plugin = _Good()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "streamplug_test_good", good)

    dist = importlib.metadata.PathDistribution.__new__(importlib.metadata.PathDistribution)

    class FakeDist:
        name = "broken-dist"
        version = "9.9"

    broken = importlib.metadata.EntryPoint("broken", "streamplug_no_such_module", "streamplug")
    fine = importlib.metadata.EntryPoint("fine", "streamplug_test_good:plugin", "streamplug")
    broken = broken._for(FakeDist())  # type: ignore[attr-defined]
    fine = fine._for(FakeDist())  # type: ignore[attr-defined]
    del dist
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [broken, fine])
    with pytest.warns(RuntimeWarning, match="broken-dist"):
        host = build_plugin_host(autoload=True)
    assert len(host.failures) == 1
    failure = str(host.failures[0])
    assert (
        "broken-dist" in failure
        and "streamplug_no_such_module" in failure
        and "ModuleNotFoundError" in failure
    )
    assert host.names("partitioner") == ["good-one"]


def test_plugin_infos_group_names_by_kind() -> None:
    host = build_plugin_host(autoload=False, plugins=[RecordingPlugin()])
    infos = {i.name: i for i in host.plugin_infos()}
    builtin = infos["streamplug.builtin"]
    assert builtin.distribution == "streamplug"
    assert builtin.names["source"] == ["collection"]
    assert builtin.names["sink"] == ["discard", "print"]


def test_lifecycle_hook_failure_never_fails_the_job(tmp_path: Any) -> None:
    from streamplug.connectors import CollectSink
    from streamplug.runtime import StreamExecutionEnvironment

    class Broken:
        @hookimpl
        def streamplug_job_started(self, job: Any) -> None:
            raise RuntimeError("monitoring is down")

    env = StreamExecutionEnvironment.get_execution_environment(
        build_plugin_host(autoload=False, plugins=[Broken()])
    )
    sink = CollectSink()
    env.from_collection([1, 2, 3]).sink_to(sink)
    env.execute("robust")
    assert sorted(sink.results) == [1, 2, 3]


def test_testing_contexts_run_the_configure_client_hooks() -> None:
    from streamplug.testing import reader_context, sink_context

    plugin = RecordingPlugin()
    reader = reader_context(subtask_index=1, parallelism=2, plugins=[plugin])
    assert (reader.subtask_index, reader.parallelism, reader.checkpointing_enabled) == (1, 2, True)
    assert reader.configure_client({}, role="consumer", connector="kafka") == {
        "client.rack": "kafka-consumer"
    }
    sink = sink_context(checkpoint_interval_ms=None, restored_checkpoint_id=7)
    assert not sink.checkpointing_enabled
    assert sink.restored_checkpoint_id == 7
    assert sink.configure_client({"a": "b"}, role="producer", connector="kafka") == {"a": "b"}
