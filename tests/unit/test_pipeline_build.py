"""Building pipeline files into jobs: names looked up through the plugin host, transforms
imported, settings applied — and build-time errors placed on the right line."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streamplug.api.serde import DeserializationSchema, FormatSpec, SerializationSchema
from streamplug.connectors.collection import CollectSink
from streamplug.errors import ConfigError
from streamplug.pipeline import PipelineConfigError, build_pipeline, parse_pipeline
from streamplug.plugins import (
    ConnectorSpec,
    OffsetsInitializerSpec,
    PartitionerSpec,
    PluginHost,
    build_plugin_host,
    hookimpl,
)
from streamplug.runtime.restart import FixedDelayRestart, NoRestart

TRANSFORMS = """\
def double(x):
    return x * 2

def even(x):
    return x % 2 == 0

def explode(x):
    return [x, x]

def times(factor):
    return lambda x: x * factor

def broken_factory(**options):
    raise ValueError("no such mode")

NOT_CALLABLE = 5
"""


class _Json(SerializationSchema[Any], DeserializationSchema[Any]):
    def serialize(self, element: Any) -> bytes:
        return repr(element).encode()

    def deserialize(self, message: bytes) -> Any:
        return message.decode()


class _Recorder:
    """A test plugin: a ``recording`` source and sink that keep the options they got, a
    format, a partitioner and an offsets initializer."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.hosts: list[Any] = []
        self.sink = CollectSink()

    @hookimpl
    def streamplug_register_connectors(self, register: Callable[[ConnectorSpec], None]) -> None:
        def source(**options: Any) -> Any:
            from streamplug.connectors.collection import CollectionSource

            self.hosts.append(options.pop("plugin_host", None))
            self.calls.append(("source", options))
            if options.get("mode") == "bad":
                raise ConfigError("mode 'bad' is not a mode; use 'good'", option="mode")
            return CollectionSource(list(range(10)), num_splits=2)

        def sink(**options: Any) -> Any:
            self.hosts.append(options.pop("plugin_host", None))
            self.calls.append(("sink", options))
            return self.sink

        # A sink that, like Flink SQL's connector, wants properties.<name> options.
        def flat_sink(**options: Any) -> Any:
            self.hosts.append(options.pop("plugin_host", None))
            self.calls.append(("flat", options))
            if "properties" in options:
                raise ConfigError("unknown option properties", option="properties")
            return self.sink

        register(ConnectorSpec("recording", "source", source))
        register(ConnectorSpec("recording-sink", "sink", sink))
        register(ConnectorSpec("flat", "sink", flat_sink))

    @hookimpl
    def streamplug_register_formats(self, register: Callable[[FormatSpec], None]) -> None:
        register(FormatSpec("reprs", serializer=_Json, deserializer=_Json))
        register(FormatSpec("write-only", serializer=_Json))

    @hookimpl
    def streamplug_register_partitioners(self, register: Callable[[PartitionerSpec], None]) -> None:
        register(PartitionerSpec("by-region", lambda **o: o))

    @hookimpl
    def streamplug_register_offsets_initializers(
        self, register: Callable[[OffsetsInitializerSpec], None]
    ) -> None:
        register(OffsetsInitializerSpec("earliest", lambda **o: o))
        register(OffsetsInitializerSpec("timestamp", lambda **o: o))


@pytest.fixture
def recorder() -> _Recorder:
    return _Recorder()


@pytest.fixture
def host(recorder: _Recorder) -> Iterator[PluginHost]:
    h = build_plugin_host(autoload=False)
    name = h.register(recorder, name="recorder")
    try:
        yield h
    finally:
        h.unregister(name)


@pytest.fixture
def pipeline_dir(tmp_path: Path) -> Iterator[Path]:
    # A module name unique to this test, so the import cache cannot mix two tests' files.
    (tmp_path / "pipeline_fns.py").write_text(TRANSFORMS)
    yield tmp_path
    sys.modules.pop("pipeline_fns", None)
    if str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))


def _config(pipeline_dir: Path, text: str) -> Any:
    return parse_pipeline(textwrap.dedent(text), file="p.toml", base_dir=pipeline_dir, environ={})


def _build_error(
    pipeline_dir: Path, host: PluginHost, text: str, **kwargs: Any
) -> PipelineConfigError:
    with pytest.raises(PipelineConfigError) as info:
        build_pipeline(_config(pipeline_dir, text), host, **kwargs)
    return info.value


def test_a_pipeline_runs_with_its_transforms_beside_the_file(
    pipeline_dir: Path, host: PluginHost
) -> None:
    config = _config(
        pipeline_dir,
        """\
        [job]
        name = "numbers"
        parallelism = 2

        [checkpointing]
        interval = "50 ms"

        [source]
        connector = "collection"
        elements = [1, 2, 3, 4, 5]

        [[transform]]
        map = "pipeline_fns:double"
        [[transform]]
        flat_map = "pipeline_fns:explode"
        [[transform]]
        map = "pipeline_fns:times"
        options = { factor = 10 }
        [[transform]]
        filter = "pipeline_fns:even"

        [sink]
        connector = "recording-sink"
        """,
    )
    built = build_pipeline(config, host, restore="none")
    assert built.job_name == "numbers"
    assert built.env.get_parallelism() == 2
    assert built.env.get_checkpoint_config().interval_ms == 50
    result = built.env.execute(built.job_name)
    assert result.records_in == 5
    sink = built.sinks[0]
    assert sorted(sink.results) == sorted([v * 20 for v in (1, 2, 3, 4, 5) for _ in range(2)])


def test_settings_reach_the_environment(
    pipeline_dir: Path, host: PluginHost, tmp_path: Path
) -> None:
    config = _config(
        pipeline_dir,
        f"""\
        [job]
        auto_watermark_interval = "50 ms"
        [checkpointing]
        interval = "2 s"
        timeout = "30 s"
        min_pause = "100 ms"
        max_retained = 5
        tolerable_failures = 2
        storage = "{tmp_path / "chk"}"
        [restart_strategy]
        type = "fixed-delay"
        attempts = 4
        delay = "3 s"
        [source]
        connector = "recording"
        [source.watermarks]
        strategy = "bounded-out-of-orderness"
        max_out_of_orderness = "1 s"
        idleness = "10 s"
        timestamp_field = "ts"
        [sink]
        connector = "recording-sink"
        """,
    )
    built = build_pipeline(config, host)
    cp = built.env.get_checkpoint_config()
    assert (
        cp.interval_ms,
        cp.timeout_ms,
        cp.min_pause_ms,
        cp.max_retained,
        cp.tolerable_failures,
    ) == (
        2000,
        30_000,
        100,
        5,
        2,
    )
    assert cp.storage_dir == tmp_path / "chk"
    assert cp.restore == "latest"
    assert built.env.auto_watermark_interval_ms == 50
    strategy = built.env.effective_restart_strategy()
    assert isinstance(strategy, FixedDelayRestart)
    assert (strategy.attempts, strategy.delay_ms) == (4, 3000)
    wm = built.env.pipelines[0].strategy
    assert wm.idle_timeout_ms == 10_000
    assert wm.timestamp_assigner is not None
    assert wm.timestamp_assigner.extract_timestamp({"ts": 1234}, None) == 1234
    with pytest.raises(ValueError, match="timestamp field 'ts'"):
        wm.timestamp_assigner.extract_timestamp({"other": 1}, None)

    fresh = build_pipeline(config, host, restore="none")
    assert fresh.env.get_checkpoint_config().restore is None
    none = _config(
        pipeline_dir,
        '[restart_strategy]\ntype = "disable"\n[source]\nconnector = "recording"\n[sink]\nconnector = "recording-sink"\n',
    )
    assert isinstance(build_pipeline(none, host).env.effective_restart_strategy(), NoRestart)


def test_options_and_named_components_pass_through_and_bootstrap_is_overridden(
    pipeline_dir: Path, host: PluginHost, recorder: _Recorder
) -> None:
    config = _config(
        pipeline_dir,
        """\
        [source]
        connector = "recording"
        bootstrap_servers = "from-file:9092"
        topics = ["a", "b"]
        format = "reprs"
        starting_offsets = { name = "timestamp", timestamp = 1700000000000 }
        stopping_offsets = "earliest"
        [source.properties]
        "fetch.min.bytes" = 1

        [sink]
        connector = "recording-sink"
        topic = "out"
        value-format = "reprs"
        partitioner = "by-region"
        """,
    )
    build_pipeline(config, host, bootstrap_servers="override:9092")
    (_, source_options), (_, sink_options) = recorder.calls
    assert source_options == {
        "bootstrap_servers": "override:9092",
        "topics": ["a", "b"],
        "format": "reprs",
        "starting_offsets": {"name": "timestamp", "timestamp": 1700000000000},
        "stopping_offsets": "earliest",
        "properties": {"fetch.min.bytes": "1"},
    }
    # A connector without bootstrap servers (not a Kafka one) does not get them.
    assert sink_options == {"topic": "out", "value-format": "reprs", "partitioner": "by-region"}
    # Factories that take **options get the run's plugin host, to look names up in.
    assert recorder.hosts == [host, host]


def test_properties_are_flattened_for_connectors_that_want_dotted_options(
    pipeline_dir: Path, host: PluginHost, recorder: _Recorder
) -> None:
    config = _config(
        pipeline_dir,
        """\
        [source]
        connector = "recording"
        [sink]
        connector = "flat"
        topic = "t"
        [sink.properties]
        "acks" = "all"
        """,
    )
    build_pipeline(config, host)
    assert recorder.calls[-1] == ("flat", {"topic": "t", "properties.acks": "all"})


@pytest.mark.parametrize(
    ("snippet", "line", "key", "fix_part"),
    [
        (
            '[source]\nconnector = "kafak"\n',
            2,
            "source.connector",
            "installed source connectors: collection, recording",
        ),
        (
            '[source]\nconnector = "recording"\nformat = "jsn"\n',
            3,
            "source.format",
            "installed formats: reprs, write-only",
        ),
        (
            '[source]\nconnector = "recording"\nformat = "write-only"\n',
            3,
            "source.format",
            "supports this direction",
        ),
        (
            '[source]\nconnector = "recording"\nstarting_offsets = "earlist"\n',
            3,
            "source.starting_offsets",
            "did you mean 'earliest'?",
        ),
        (
            '[source]\nconnector = "recording"\n\n[source.starting_offsets]\nname = "timestmp"\n',
            5,
            "source.starting_offsets.name",
            "installed offsets initializers: earliest, timestamp",
        ),
    ],
)
def test_unknown_names_are_reported_on_their_line_with_the_installed_ones(
    pipeline_dir: Path, host: PluginHost, snippet: str, line: int, key: str, fix_part: str
) -> None:
    err = _build_error(pipeline_dir, host, snippet + '[sink]\nconnector = "recording-sink"\n')
    assert (err.line, err.key) == (line, key)
    assert err.fix is not None and fix_part in err.fix, err.fix


def test_sink_side_names_are_checked_too(pipeline_dir: Path, host: PluginHost) -> None:
    err = _build_error(
        pipeline_dir,
        host,
        '[source]\nconnector = "recording"\n[sink]\nconnector = "recording-sink"\npartitioner = "by-regoin"\n',
    )
    assert (err.line, err.key) == (5, "sink.partitioner")
    assert err.fix is not None and "did you mean 'by-region'?" in err.fix
    err = _build_error(
        pipeline_dir, host, '[source]\nconnector = "recording"\n[sink]\nconnector = "recording"\n'
    )
    assert (err.line, err.key) == (4, "sink.connector")
    assert "no sink connector named 'recording'" in err.problem


def test_a_connector_config_error_is_placed_on_the_option_it_names(
    pipeline_dir: Path, host: PluginHost
) -> None:
    err = _build_error(
        pipeline_dir,
        host,
        '[source]\nconnector = "recording"\ntopics = ["a"]\nmode = "bad"\n[sink]\nconnector = "recording-sink"\n',
    )
    assert (err.line, err.key) == (4, "source.mode")
    assert "use 'good'" in err.problem


def test_options_a_factory_does_not_take_are_listed(pipeline_dir: Path, host: PluginHost) -> None:
    # The core's print sink takes **options and rejects unknown ones with a TypeError.
    err = _build_error(
        pipeline_dir,
        host,
        '[source]\nconnector = "recording"\n[sink]\nconnector = "print"\nprefx = "a"\n',
    )
    assert (err.line, err.key) == (5, "sink.prefx")


@pytest.mark.parametrize(
    ("reference", "problem_part"),
    [
        ("no_such_module:f", "No module named 'no_such_module'"),
        ("pipeline_fns:doubel", "did you mean 'double'?"),
        ("pipeline_fns:NOT_CALLABLE", "is a int, not a function"),
    ],
)
def test_transform_references_that_do_not_resolve(
    pipeline_dir: Path, host: PluginHost, reference: str, problem_part: str
) -> None:
    err = _build_error(
        pipeline_dir,
        host,
        f'[source]\nconnector = "recording"\n\n[[transform]]\nmap = "pipeline_fns:double"\n\n[[transform]]\nmap = "{reference}"\n[sink]\nconnector = "recording-sink"\n',
    )
    assert (err.line, err.key) == (8, "transform[2].map")
    assert problem_part in err.problem


def test_a_failing_transform_factory_points_at_its_options(
    pipeline_dir: Path, host: PluginHost
) -> None:
    err = _build_error(
        pipeline_dir,
        host,
        '[source]\nconnector = "recording"\n[[transform]]\nmap = "pipeline_fns:broken_factory"\noptions = { mode = "x" }\n[sink]\nconnector = "recording-sink"\n',
    )
    assert (err.line, err.key) == (5, "transform[1].options")
    assert "no such mode" in err.problem


def test_restore_path_must_exist(pipeline_dir: Path, host: PluginHost, tmp_path: Path) -> None:
    config = _config(
        pipeline_dir, '[source]\nconnector = "recording"\n[sink]\nconnector = "recording-sink"\n'
    )
    with pytest.raises(ConfigError, match="no such checkpoint file"):
        build_pipeline(config, host, restore=str(tmp_path / "chk-00000001.json"))
    chk = tmp_path / "chk-00000001.json"
    chk.write_text("{}")
    assert build_pipeline(
        config, host, restore=str(chk)
    ).env.get_checkpoint_config().restore == str(chk)


def test_source_and_sink_sharing_a_name_are_told_apart(pipeline_dir: Path) -> None:
    class SameName:
        @hookimpl
        def streamplug_register_connectors(self, register: Callable[[ConnectorSpec], None]) -> None:
            from streamplug.connectors.collection import CollectionSource

            register(ConnectorSpec("twin", "source", lambda **o: CollectionSource([1, 2])))
            register(ConnectorSpec("twin", "sink", lambda **o: CollectSink()))

    h = build_plugin_host(autoload=False, plugins=[SameName()])
    config = _config(pipeline_dir, '[source]\nconnector = "twin"\n[sink]\nconnector = "twin"\n')
    built = build_pipeline(config, h)
    built.env.execute("twins")
    assert sorted(built.sinks[0].results) == [1, 2]


def test_factories_with_a_signature_get_only_what_they_declare(pipeline_dir: Path) -> None:
    got: dict[str, Any] = {}

    class Declared:
        @hookimpl
        def streamplug_register_connectors(self, register: Callable[[ConnectorSpec], None]) -> None:
            def strict_sink(*, directory: str) -> Any:
                got["strict"] = directory
                return CollectSink()

            def host_aware_sink(*, topic: str, plugin_host: PluginHost) -> Any:
                got["host"] = plugin_host
                return CollectSink()

            register(ConnectorSpec("strict", "sink", strict_sink))
            register(ConnectorSpec("host-aware", "sink", host_aware_sink))

    h = build_plugin_host(autoload=False, plugins=[Declared()])
    config = _config(
        pipeline_dir,
        '[source]\nconnector = "collection"\n[[sink]]\nconnector = "strict"\ndirectory = "/out"\n'
        '[[sink]]\nconnector = "host-aware"\ntopic = "t"\n',
    )
    build_pipeline(config, h)
    assert got == {"strict": "/out", "host": h}
    err = _build_error(
        pipeline_dir,
        h,
        '[source]\nconnector = "collection"\n[sink]\nconnector = "host-aware"\ntopc = "t"\n',
    )
    assert (err.line, err.key) == (5, "sink.topc")
    # plugin_host is the runtime's business, not an option a file can set.
    assert err.fix == "did you mean 'topic'? its options: topic"
