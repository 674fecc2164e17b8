"""The plugin system itself: hooks documented and exercised, pluggy's contract (call order,
wrappers, hook validation), loading, conflicts, lookups.

Plugins registered into a shared host are unregistered in ``finally``; most tests build
their own host, which is the isolation the host factory exists for."""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamplug import hookimpl
from streamplug.api.serde import DeserializationSchema, FormatSpec, SerializationSchema
from streamplug.errors import DuplicateNameError, PluginError, UnknownNameError
from streamplug.plugin import (
    CommandSpec,
    ConnectorSpec,
    JobInfo,
    OffsetsInitializerSpec,
    PartitionerSpec,
    RuntimeSpec,
    build_plugin_host,
    spec,
)

HOOK_NAMES = sorted(n for n in dir(spec) if n.startswith("streamplug_"))
BUILTIN_PLUGINS = ["streamplug.builtin", "streamplug.cli", "streamplug.pipeline.cli"]


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_every_hook_is_documented_with_an_example(name: str) -> None:
    doc = inspect.getdoc(getattr(spec, name)) or ""
    assert "Called" in doc or "called" in doc, f"{name} does not say when it is called"
    assert "Return" in doc, f"{name} does not say what it returns"
    assert "Example::" in doc, f"{name} has no example"
    if name in spec.ROLE_HOOKS:
        # They run inside the job: a plugin author must know where, to keep them quick.
        assert "thread" in doc, f"{name} does not say on which thread it runs"


class _Upper(SerializationSchema[str]):
    def serialize(self, element: str) -> bytes:
        return element.upper().encode()


class _Lower(DeserializationSchema[str]):
    def deserialize(self, message: bytes) -> str:
        return message.decode().lower()


class RecordingPlugin:
    """Implements every hook, so a test can prove each one is called, and with what."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.args: dict[str, list[dict[str, Any]]] = {}

    def _record(self, hook: str, **kwargs: Any) -> None:
        self.calls.append(hook)
        self.args.setdefault(hook, []).append(kwargs)

    @hookimpl
    def streamplug_register_connectors(self, register: Any) -> None:
        self._record("streamplug_register_connectors")
        register(ConnectorSpec("rec-source", "source", lambda **o: o))

    @hookimpl
    def streamplug_register_formats(self, register: Any) -> None:
        self._record("streamplug_register_formats")
        register(FormatSpec("shout", serializer=_Upper, deserializer=_Lower))

    @hookimpl
    def streamplug_register_partitioners(self, register: Any) -> None:
        self._record("streamplug_register_partitioners")
        register(PartitionerSpec("rec-partitioner", lambda **o: o))

    @hookimpl
    def streamplug_register_offsets_initializers(self, register: Any) -> None:
        self._record("streamplug_register_offsets_initializers")
        register(OffsetsInitializerSpec("rec-initializer", lambda **o: o))

    @hookimpl
    def streamplug_register_commands(self, register: Any) -> None:
        self._record("streamplug_register_commands")
        register(CommandSpec("rec", "a test command", lambda p: None, lambda a: 0))

    @hookimpl
    def streamplug_register_runtimes(self, register: Any) -> None:
        from streamplug.runtime.runtimes import ThreadsRuntime

        self._record("streamplug_register_runtimes")
        register(RuntimeSpec("rec-runtime", ThreadsRuntime, "threads under another name"))

    @hookimpl
    def streamplug_configure_client(self, properties: Any, role: str, connector: str) -> None:
        self._record("streamplug_configure_client", role=role, connector=connector)
        properties["client.rack"] = f"{connector}-{role}"

    @hookimpl
    def streamplug_job_started(self, job: Any) -> None:
        self._record("streamplug_job_started", job=job)

    @hookimpl
    def streamplug_job_finished(self, job: Any, status: str, error: Any) -> None:
        self._record("streamplug_job_finished", job=job, status=status, error=error)

    @hookimpl
    def streamplug_job_restarting(self, job: Any, error: Any, delay_ms: int) -> None:
        self._record("streamplug_job_restarting", job=job, error=error, delay_ms=delay_ms)

    @hookimpl
    def streamplug_checkpoint_started(self, job: Any, checkpoint_id: int) -> None:
        self._record("streamplug_checkpoint_started", job=job, checkpoint_id=checkpoint_id)

    @hookimpl
    def streamplug_checkpoint_completed(self, job: Any, checkpoint_id: int, location: str) -> None:
        self._record(
            "streamplug_checkpoint_completed",
            job=job,
            checkpoint_id=checkpoint_id,
            location=location,
        )

    @hookimpl
    def streamplug_checkpoint_aborted(self, job: Any, checkpoint_id: int, reason: str) -> None:
        self._record(
            "streamplug_checkpoint_aborted", job=job, checkpoint_id=checkpoint_id, reason=reason
        )


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


def _hookimpls_found(pm: Any, plugin: object) -> dict[str, list[str]]:
    pm.register(plugin)
    return {
        caller.name: sorted(i.function.__name__ for i in caller.get_hookimpls())
        for caller in pm.get_hookcallers(plugin) or []
    }


def test_module_plugins_give_the_same_hooks_as_pluggys_own_scan() -> None:
    """The host's quicker look at module plugins (manager._PluginManager) must find what
    pluggy's getattr_static scan finds: every installed plugin and edge cases a module can
    hold (a marked function under another name, a marked staticmethod object, a class
    whose method is marked, unmarked functions, a module ``__getattr__``)."""
    import types

    import pluggy

    from streamplug.plugin import spec
    from streamplug.plugin.manager import _PluginManager

    odd = types.ModuleType("odd_plugin")
    exec(
        "from streamplug import hookimpl\n"
        "@hookimpl(specname='streamplug_job_started')\n"
        "def started_under_another_name(job): pass\n"
        "def helper(): pass\n"
        "class Holder:\n"
        "    @hookimpl\n"
        "    def streamplug_job_finished(self, job, result): pass\n"
        "marked_static = staticmethod(hookimpl(lambda job: None))\n"
        "def __getattr__(name): raise RuntimeError(name)\n",
        odd.__dict__,
    )
    modules = [odd, *build_plugin_host().pm.get_plugins()]
    assert len(modules) > 5
    for module in modules:
        stock = pluggy.PluginManager(spec.PROJECT)
        quick = _PluginManager(spec.PROJECT)
        for pm in (stock, quick):
            pm.add_hookspecs(spec)
        assert _hookimpls_found(quick, module) == _hookimpls_found(stock, module), module
    # A marked function under another name and a marked staticmethod object are hooks;
    # the helper, the class and the module's __getattr__ are not.
    assert _hookimpls_found(_PluginManager(spec.PROJECT), odd) == {
        "streamplug_job_started": ["started_under_another_name"],
        "marked_static": ["<lambda>"],
    }


def test_disable_autoload_environment_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMPLUG_DISABLE_PLUGIN_AUTOLOAD", "1")
    host = build_plugin_host()
    assert sorted(name for name, _ in host.pm.list_name_plugin()) == BUILTIN_PLUGINS


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


# -- one test per hook ---------------------------------------------------------------------


def test_every_hook_has_a_test_of_its_own() -> None:
    # The role hooks run inside a job reading and writing Kafka: their tests are on the
    # real broker, in tests/integration/test_plugin_role_hooks.py.
    role_tests = (
        Path(__file__).parents[1] / "integration" / "test_plugin_role_hooks.py"
    ).read_text(encoding="utf-8")
    missing = [
        h
        for h in HOOK_NAMES
        if f"test_hook_{h}" not in globals() and f"def test_hook_{h}(" not in role_tests
    ]
    assert not missing, f"no test_hook_<name> exercises {missing}"


def test_hook_streamplug_register_connectors() -> None:
    host = build_plugin_host(autoload=False, plugins=[RecordingPlugin()])
    assert "rec-source" in host.names("source") and "rec-source" not in host.names("sink")
    assert host.connector("rec-source", "source").factory(topic="t") == {"topic": "t"}


def test_hook_streamplug_register_formats() -> None:
    host = build_plugin_host(autoload=False, plugins=[RecordingPlugin()])
    shout = host.format("shout")
    assert shout.serializer is not None and shout.deserializer is not None
    assert shout.serializer().serialize("hi") == b"HI"
    assert shout.deserializer().deserialize(b"HI") == "hi"


def test_hook_streamplug_register_partitioners() -> None:
    host = build_plugin_host(autoload=False, plugins=[RecordingPlugin()])
    assert host.lookup("partitioner", "rec-partitioner").factory(n=2) == {"n": 2}


def test_hook_streamplug_register_offsets_initializers() -> None:
    host = build_plugin_host(autoload=False, plugins=[RecordingPlugin()])
    assert host.lookup("offsets initializer", "rec-initializer").factory(ts=5) == {"ts": 5}


def test_hook_streamplug_register_commands() -> None:
    from streamplug.cli import build_parser

    host = build_plugin_host(autoload=False, plugins=[RecordingPlugin()])
    parser = build_parser(host)
    assert "a test command" in parser.format_help()
    args = parser.parse_args(["rec"])
    assert args._run(args) == 0


def test_hook_streamplug_register_runtimes(tmp_path: Any) -> None:
    from streamplug.connectors import CollectionSource, CollectSink
    from streamplug.runtime import StreamExecutionEnvironment
    from streamplug.runtime.runtimes import ThreadsRuntime, runtime_names

    host = build_plugin_host(autoload=False, plugins=[RecordingPlugin()])
    assert runtime_names(host) == ["processes", "rec-runtime", "threads"]
    env = StreamExecutionEnvironment.get_execution_environment(host)
    env.set_runtime("rec-runtime")
    env.from_source(CollectionSource([1, 2]), None, "n").sink_to(sink := CollectSink())
    client = env.execute_async("on-a-plugin-runtime")
    client.wait(30)
    assert isinstance(env.create_runtime(), ThreadsRuntime)
    assert sorted(sink.results) == [1, 2]


def test_hook_streamplug_configure_client() -> None:
    plugin = RecordingPlugin()
    host = build_plugin_host(autoload=False, plugins=[plugin])
    props = host.configure_client({"a": "b"}, role="producer", connector="kafka")
    assert props == {"a": "b", "client.rack": "kafka-producer"}
    assert plugin.args["streamplug_configure_client"] == [
        {"role": "producer", "connector": "kafka"}
    ]


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory: pytest.TempPathFactory) -> RecordingPlugin:
    """A job that fails once, restarts, checkpoints and finishes; then one whose slow map
    makes a checkpoint time out."""
    from streamplug.connectors import CollectionSource, CollectSink
    from streamplug.runtime import RestartStrategies, StreamExecutionEnvironment

    plugin = RecordingPlugin()
    host = build_plugin_host(autoload=False, plugins=[plugin])
    failed = []

    def fail_once(x: int) -> int:
        if x == 500 and not failed:
            failed.append(x)
            raise RuntimeError("injected")
        return x

    env = StreamExecutionEnvironment.get_execution_environment(host)
    env.set_parallelism(2).enable_checkpointing(50)
    env.get_checkpoint_config().set_checkpoint_storage_dir(tmp_path_factory.mktemp("chk"))
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(2, 10))
    source = CollectionSource(list(range(3000)), batch_size=50, records_per_second=5000)
    env.from_source(source, None, "numbers").map(fail_once).sink_to(CollectSink())
    env.execute("hooks")

    def stall(x: int) -> int:
        import time

        time.sleep(0.2)
        return x

    slow = StreamExecutionEnvironment.get_execution_environment(host)
    slow.enable_checkpointing(20)
    slow.get_checkpoint_config().set_checkpoint_timeout(30).set_tolerable_checkpoint_failure_number(
        100
    )
    slow.from_source(CollectionSource([1, 2], batch_size=1), None, "slow").map(stall).sink_to(
        CollectSink()
    )
    slow.execute("slow")

    # A sink with a committer: its end commits in a final round, with no checkpoint.
    from streamplug.connectors import TransactionalFileSink

    unchecked = StreamExecutionEnvironment.get_execution_environment(host)
    out = tmp_path_factory.mktemp("files")
    unchecked.from_source(CollectionSource([1, 2, 3]), None, "plain").sink_to(
        TransactionalFileSink(out)
    )
    unchecked.execute("unchecked")
    assert sorted(p.read_text() for p in out.iterdir() if p.is_file()), "the final round committed"
    return plugin


def _calls(plugin: RecordingPlugin, hook: str, job: str) -> list[dict[str, Any]]:
    return [a for a in plugin.args.get(hook, []) if a["job"].name == job]


def test_hook_streamplug_job_started(lifecycle: RecordingPlugin) -> None:
    started = _calls(lifecycle, "streamplug_job_started", "hooks")
    assert [a["job"].attempt for a in started] == [0, 1]
    assert all(isinstance(a["job"], JobInfo) and a["job"].parallelism == 2 for a in started)


def test_hook_streamplug_job_finished(lifecycle: RecordingPlugin) -> None:
    for job in ("hooks", "slow"):
        finished = _calls(lifecycle, "streamplug_job_finished", job)
        assert [(a["status"], a["error"]) for a in finished] == [("FINISHED", None)]


def test_hook_streamplug_job_restarting(lifecycle: RecordingPlugin) -> None:
    (restart,) = _calls(lifecycle, "streamplug_job_restarting", "hooks")
    assert restart["job"].attempt == 0 and restart["delay_ms"] == 10
    assert "injected" in str(restart["error"])


def test_hook_streamplug_checkpoint_started(lifecycle: RecordingPlugin) -> None:
    ids = [a["checkpoint_id"] for a in _calls(lifecycle, "streamplug_checkpoint_started", "hooks")]
    assert ids and ids == sorted(set(ids))


def test_hook_streamplug_checkpoint_completed(lifecycle: RecordingPlugin) -> None:
    completed = _calls(lifecycle, "streamplug_checkpoint_completed", "hooks")
    started = {
        a["checkpoint_id"] for a in _calls(lifecycle, "streamplug_checkpoint_started", "hooks")
    }
    assert completed and {a["checkpoint_id"] for a in completed} <= started
    # Older checkpoints are subsumed and deleted; the last one stays.
    assert Path(completed[-1]["location"]).is_file()


def test_checkpoint_hooks_pair_up_and_a_job_without_checkpointing_calls_none(
    lifecycle: RecordingPlugin,
) -> None:
    for job in ("hooks", "slow"):
        started = [
            a["checkpoint_id"] for a in _calls(lifecycle, "streamplug_checkpoint_started", job)
        ]
        ended = [
            a["checkpoint_id"]
            for hook in ("streamplug_checkpoint_completed", "streamplug_checkpoint_aborted")
            for a in _calls(lifecycle, hook, job)
        ]
        assert sorted(started) == sorted(ended), job
    hooks = [h for h in lifecycle.args if h.startswith("streamplug_checkpoint")]
    assert not [h for h in hooks if _calls(lifecycle, h, "unchecked")]
    assert [a["status"] for a in _calls(lifecycle, "streamplug_job_finished", "unchecked")] == [
        "FINISHED"
    ]


def test_hook_streamplug_checkpoint_aborted(lifecycle: RecordingPlugin) -> None:
    aborted = _calls(lifecycle, "streamplug_checkpoint_aborted", "slow")
    assert aborted and all(a["reason"] for a in aborted)
    assert any("timeout" in a["reason"] for a in aborted)


# -- pluggy's contract -----------------------------------------------------------------------

JOB = JobInfo(name="j", job_id="id", parallelism=1, attempt=0)


def _observer(label: str, events: list[str], **opts: Any) -> object:
    class Observer:
        @hookimpl(**opts)
        def streamplug_job_started(self, job: JobInfo) -> None:
            events.append(label)

        @hookimpl(**opts)
        def streamplug_register_formats(self, register: Any) -> None:
            events.append(label)

    Observer.__qualname__ = f"Observer[{label}]"
    return Observer()


def test_notify_calls_implementations_in_pluggys_order() -> None:
    """tryfirst ones first, then the rest last-registered first, trylast ones last."""
    events: list[str] = []
    plugins = [
        _observer("last", events, trylast=True),
        _observer("plain-1", events),
        _observer("first", events, tryfirst=True),
        _observer("plain-2", events),
    ]
    host = build_plugin_host(autoload=False, plugins=plugins)
    host.notify("streamplug_job_started", job=JOB)
    assert events == ["first", "plain-2", "plain-1", "last"]


def test_registration_hooks_run_in_pluggys_order_too() -> None:
    events: list[str] = []
    plugins = [_observer("last", events, trylast=True), _observer("first", events, tryfirst=True)]
    host = build_plugin_host(autoload=False, plugins=plugins)
    host.names("format")
    assert events == ["first", "last"]


def test_wrappers_wrap_the_other_implementations() -> None:
    events: list[str] = []

    class OldStyle:
        @hookimpl(hookwrapper=True)
        def streamplug_job_started(self, job: JobInfo) -> Iterator[None]:
            events.append("old before")
            yield
            events.append("old after")

    class NewStyle:
        @hookimpl(wrapper=True)
        def streamplug_job_started(self, job: JobInfo) -> Iterator[None]:
            events.append("new before")
            result = yield
            events.append("new after")
            return result

        @hookimpl(wrapper=True)
        def streamplug_register_formats(self, register: Any) -> Iterator[None]:
            events.append("formats before")
            result = yield
            events.append("formats after")
            return result

    host = build_plugin_host(
        autoload=False, plugins=[_observer("impl", events), OldStyle(), NewStyle()]
    )
    host.notify("streamplug_job_started", job=JOB)
    # The last registered wrapper is the outermost.
    assert events == ["new before", "old before", "impl", "old after", "new after"]
    events.clear()
    assert host.names("format") == []
    assert events == ["formats before", "impl", "formats after"]


def test_a_failing_lifecycle_implementation_does_not_keep_the_others_from_being_told(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events: list[str] = []

    class Broken:
        @hookimpl(tryfirst=True)
        def streamplug_job_started(self, job: JobInfo) -> None:
            raise RuntimeError("monitoring is down")

    host = build_plugin_host(autoload=False, plugins=[_observer("told", events), Broken()])
    with caplog.at_level(logging.ERROR):
        host.notify("streamplug_job_started", job=JOB)
    assert events == ["told"]
    assert "failed in streamplug_job_started" in caplog.text and "monitoring is down" in caplog.text


def test_a_failing_registration_hook_is_recorded_and_the_others_still_register() -> None:
    class Broken:
        @hookimpl
        def streamplug_register_formats(self, register: Any) -> None:
            raise ImportError("needs libfoo: pip install foo")

    host = build_plugin_host(autoload=False, plugins=[RecordingPlugin(), Broken()])
    assert host.names("format") == ["shout"]
    (failure,) = host.failures
    assert failure.hook == "streamplug_register_formats"
    assert "libfoo" in str(failure) and "\n" not in str(failure)


def test_a_misspelled_hook_is_refused_with_the_plugin_the_hook_and_a_did_you_mean() -> None:
    class Typo:
        @hookimpl
        def streamplug_job_start(self, job: JobInfo) -> None:
            pass

    host = build_plugin_host(autoload=False)
    plugin = Typo()
    with pytest.raises(PluginError) as info:
        host.register(plugin, name="typo-plugin")
    message = str(info.value)
    assert "'typo-plugin'" in message and "streamplug_job_start," in message
    assert "did you mean streamplug_job_started?" in message
    assert not host.pm.is_registered(plugin)


def test_a_hook_of_another_project_may_be_marked_optional() -> None:
    class Optional:
        @hookimpl(optionalhook=True)
        def streamplug_future_hook(self) -> None:
            pass

    host = build_plugin_host(autoload=False, plugins=[Optional()])
    assert any(isinstance(p, Optional) for p in host.pm.get_plugins())


def test_a_hook_with_an_argument_the_spec_lacks_is_refused_naming_it() -> None:
    class BadSignature:
        @hookimpl
        def streamplug_job_started(self, job: JobInfo, attempt: int) -> None:
            pass

    host = build_plugin_host(autoload=False)
    with pytest.raises(PluginError) as info:
        host.register(BadSignature(), name="bad")
    message = str(info.value)
    assert "'bad'" in message and "streamplug_job_started" in message
    assert "attempt" in message and "it passes job" in message
    assert "\n" not in message
    assert not host.pm.has_plugin("bad")


def test_duplicate_names_are_conflicts_the_other_names_still_resolve() -> None:
    class Claim:
        def __init__(self, own: str) -> None:
            self.own = own

        @hookimpl
        def streamplug_register_formats(self, register: Any) -> None:
            register(FormatSpec("dup", serializer=_Upper))
            register(FormatSpec(self.own, serializer=_Upper))

    host = build_plugin_host(autoload=False)
    host.register(Claim("only-a"), name="a", distribution="dist-a")
    host.register(Claim("only-b"), name="b", distribution="dist-b")
    assert host.names("format") == ["only-a", "only-b"]
    assert host.format("only-b").name == "only-b"
    with pytest.raises(DuplicateNameError) as info:
        host.format("dup")
    assert "dist-a (plugin a)" in str(info.value) and "dist-b (plugin b)" in str(info.value)
    (conflict,) = host.conflicts()
    assert (conflict.kind, conflict.name) == ("format", "dup")
    infos = {i.name: i.names for i in host.plugin_infos()}
    assert infos["a"]["format"] == ["dup", "only-a"] and infos["b"]["format"] == ["dup", "only-b"]


# -- real distributions, installed on a path -----------------------------------------------

_DISTRIBUTIONS = {
    # distribution: (entry point name, module name, module source)
    "streamplug-test-broken-import": (
        "broken",
        "sp_test_broken_import",
        "import sp_test_no_such_dependency\n",
    ),
    "streamplug-test-bad-signature": (
        "badsig",
        "sp_test_bad_signature",
        "from streamplug import hookimpl\n\n@hookimpl\n"
        "def streamplug_job_started(job, attempt):\n    pass\n",
    ),
    "streamplug-test-typo": (
        "typo",
        "sp_test_typo",
        "from streamplug import hookimpl\n\n@hookimpl\n"
        "def streamplug_register_format(register):\n    pass\n",
    ),
    "streamplug-test-claim-a": (
        "claim_a",
        "sp_test_claim_a",
        "from streamplug import hookimpl\nfrom streamplug.plugin import FormatSpec\n"
        "from streamplug_serde import SimpleStringSchema\n\n@hookimpl\n"
        "def streamplug_register_formats(register):\n"
        "    register(FormatSpec('claimed', serializer=SimpleStringSchema))\n"
        "    register(FormatSpec('only-a', serializer=SimpleStringSchema))\n",
    ),
    "streamplug-test-claim-b": (
        "claim_b",
        "sp_test_claim_b",
        "from streamplug import hookimpl\nfrom streamplug.plugin import FormatSpec\n"
        "from streamplug_serde import SimpleStringSchema\n\n@hookimpl\n"
        "def streamplug_register_formats(register):\n"
        "    register(FormatSpec('claimed', serializer=SimpleStringSchema))\n",
    ),
}


@pytest.fixture(scope="module")
def bad_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site directory holding five installed plugin distributions, laid out as pip
    installs them (the package, and a dist-info with METADATA, entry_points.txt and RECORD):
    one that fails to import, one with a bad hook signature, one with a misspelled hook,
    and two that claim the same format name. Put it on the path to have them installed."""
    site = tmp_path_factory.mktemp("site")
    for dist, (ep, module, code) in _DISTRIBUTIONS.items():
        _install(site, dist, ep, module, code)
    return site


def _install(site: Path, dist: str, ep: str, module: str, code: str, version: str = "1.0") -> None:
    """Install a one-module plugin distribution into ``site`` as pip lays it out."""
    (site / module).mkdir()
    (site / module / "__init__.py").write_text(code)
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[streamplug]\n{ep} = {module}\n")
    (info / "INSTALLER").write_text("pip\n")
    (info / "RECORD").write_text(
        "".join(f"{p.relative_to(site)},,\n" for p in [*info.iterdir(), site / module])
    )


def _streamplug_with(site: Path, *args: str, cwd: Path | None = None) -> Any:
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPLUG_")}
    env["PYTHONPATH"] = str(site)
    return subprocess.run(
        [sys.executable, "-m", "streamplug.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def test_entry_point_failures_are_recorded_once_and_the_others_load(
    bad_site: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.syspath_prepend(str(bad_site))
    monkeypatch.delenv("STREAMPLUG_DISABLED_PLUGINS", raising=False)
    with caplog.at_level(logging.WARNING, logger="streamplug"):
        host = build_plugin_host(autoload=True)
    failures = {f.distribution: str(f) for f in host.failures}
    assert sorted(failures) == [
        "streamplug-test-bad-signature",
        "streamplug-test-broken-import",
        "streamplug-test-typo",
    ]
    assert "'broken = sp_test_broken_import'" in failures["streamplug-test-broken-import"]
    assert "ModuleNotFoundError" in failures["streamplug-test-broken-import"]
    assert "attempt" in failures["streamplug-test-bad-signature"]
    assert "did you mean streamplug_register_formats?" in failures["streamplug-test-typo"]
    assert [r.getMessage() for r in caplog.records] == [str(f) for f in host.failures]
    # Nothing of a refused plugin stays registered; everything else loaded.
    assert not host.pm.has_plugin("typo") and not host.pm.has_plugin("badsig")
    assert {"only-a", "json", "msgpack"} <= set(host.names("format"))
    assert "kafka" in host.names("source")


def test_help_works_and_reports_each_broken_distribution_in_one_line(bad_site: Path) -> None:
    result = _streamplug_with(bad_site, "--help")
    assert result.returncode == 0, result.stderr
    assert "plugins" in result.stdout and "run" in result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 3, result.stderr
    for dist, (ep, module, _) in _DISTRIBUTIONS.items():
        if "claim" not in dist:
            assert sum(f"'{ep} = {module}'" in line and dist in line for line in lines) == 1
    assert "Traceback" not in result.stderr and "Warning:" not in result.stderr


def test_plugins_lists_everything_and_says_what_conflicts(bad_site: Path) -> None:
    result = _streamplug_with(bad_site, "plugins")
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "streamplug-test-claim-a 1.0  (plugin claim_a)" in out
    assert "streamplug-test-claim-b 1.0  (plugin claim_b)" in out
    assert "formats:               claimed, only-a" in out
    (conflict,) = [line for line in out.splitlines() if line.startswith("CONFLICT: ")]
    assert "format name 'claimed' is registered by both" in conflict
    assert "streamplug-test-claim-a (plugin claim_a)" in conflict
    assert "streamplug-test-claim-b (plugin claim_b)" in conflict
    assert "STREAMPLUG_DISABLED_PLUGINS" in conflict
    assert out.count("FAILED: ") == 3 and "streamplug-test-broken-import" in out
    assert "streamplug-serde" in out and "streamplug-kafka-source" in out
    listing = _streamplug_with(bad_site, "plugins", "--json")
    doc = __import__("json").loads(listing.stdout)
    assert [c["name"] for c in doc["conflicts"]] == ["claimed"]
    assert len(doc["failures"]) == 3


def test_a_pipeline_runs_beside_broken_and_conflicting_distributions(
    bad_site: Path, tmp_path: Path
) -> None:
    (tmp_path / "job.toml").write_text(
        '[source]\nconnector = "collection"\nelements = [1, 2, 3]\n'
        '[sink]\nconnector = "print"\nprefix = "n"\n'
    )
    result = _streamplug_with(bad_site, "run", "job.toml", "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(line for line in result.stdout.splitlines() if line.startswith("n:")) == [
        "n:1",
        "n:2",
        "n:3",
    ]


def test_serialization_and_deserialization_errors_are_streamplug_errors() -> None:
    import streamplug_serde
    from streamplug.api import DeserializationError, SerializationError
    from streamplug.errors import StreamplugError

    for error in (SerializationError, DeserializationError):
        assert issubclass(error, StreamplugError) and issubclass(error, ValueError)
    # The serde plugin raises the core's, so a sink can catch one class for every format.
    assert streamplug_serde.SerializationError is SerializationError
    with pytest.raises(StreamplugError, match="cannot serialize int as string"):
        streamplug_serde.SimpleStringSchema().serialize(5)  # type: ignore[arg-type]


def test_a_command_that_fails_to_configure_is_left_out_and_the_others_stay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from streamplug.cli import build_parser

    def broken(parser: Any) -> None:
        raise TypeError("add_argument() got an unexpected keyword argument 'hepl'")

    class Broken:
        @hookimpl
        def streamplug_register_commands(self, register: Any) -> None:
            register(CommandSpec("broken", "does not build", broken, lambda a: 0))

    class Twin:
        @hookimpl
        def streamplug_register_commands(self, register: Any) -> None:
            register(CommandSpec("twin", "claimed twice", lambda p: None, lambda a: 0))

    host = build_plugin_host(autoload=False, plugins=[Broken(), Twin(), Twin()])
    with caplog.at_level(logging.WARNING):
        text = build_parser(host).format_help()
    assert "broken" not in text and "twin" not in text and "checkpoints" in text
    assert "command 'broken' failed to set up its arguments" in caplog.text
    assert "command name 'twin' is registered by both" in caplog.text


def test_the_entry_point_scan_is_reused_until_the_installation_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each job builds a host (and a source's builder one more); the scan of every
    installed distribution is done once per installation, and a plugin installed into a
    directory already on the path (``pip install`` in a running notebook) is found by the
    next host."""
    import importlib.metadata
    import os

    from streamplug.plugin import manager

    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("STREAMPLUG_DISABLED_PLUGINS", raising=False)
    scans: list[str] = []
    real_scan = importlib.metadata.entry_points

    def counted(**kwargs: Any) -> Any:
        scans.append(kwargs.get("group", ""))
        return real_scan(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", counted)
    first = build_plugin_host(autoload=True)
    second = build_plugin_host(autoload=True)
    assert scans == ["streamplug"]
    assert {p.name for p in first.plugin_infos()} == {p.name for p in second.plugin_infos()}
    assert "late" not in {p.name for p in second.plugin_infos()}

    _install(
        site,
        "streamplug-test-late",
        "late",
        "sp_test_late",
        "from streamplug import hookimpl\nfrom streamplug.plugin import FormatSpec\n"
        "from streamplug_serde import SimpleStringSchema\n\n@hookimpl\n"
        "def streamplug_register_formats(register):\n"
        "    register(FormatSpec('late-format', serializer=SimpleStringSchema))\n",
        version="2.5",
    )
    # Same-second installs: the directory's time must differ from the scanned one.
    stat = site.stat()
    os.utime(site, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    third = build_plugin_host(autoload=True)
    assert scans == ["streamplug", "streamplug"]
    (late,) = [p for p in third.plugin_infos() if p.name == "late"]
    assert (late.distribution, late.version) == ("streamplug-test-late", "2.5")
    assert "late-format" in third.names("format")
    assert manager.installed_plugins() == manager.installed_plugins()
    assert scans == ["streamplug", "streamplug"]
