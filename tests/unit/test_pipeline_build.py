"""Building pipeline files into jobs: options converted into the classes connectors declare,
names looked up through the plugin host, transforms imported, settings applied — and
build-time errors placed on the right line, at any depth."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from streamplug.api.serde import DeserializationSchema, FormatSpec, SerializationSchema
from streamplug.connectors.collection import CollectSink
from streamplug.errors import ConfigError
from streamplug.pipeline import PipelineConfigError, build_pipeline, parse_pipeline
from streamplug.plugin import (
    ConnectorSpec,
    OffsetsInitializerSpec,
    PartitionerSpec,
    PluginHost,
    build_plugin_host,
    hookimpl,
)
from streamplug.plugin.options import component, component_options, option
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


@attrs.frozen
class _NoOptions:
    """Takes no options."""


@attrs.frozen
class _ReprOptions:
    """How reprs are written."""

    indent: int = option(0, doc="spaces")


@attrs.frozen
class _TimestampOptions:
    """A time."""

    timestamp: int = option(example="timestamp = 1700000000000")


@attrs.frozen
class _RegionOptions:
    """Regions."""

    regions: list[str] = option(factory=list)


@attrs.frozen
class _SourceOptions:
    """The recording source."""

    mode: str = option("good")
    bootstrap_servers: str | None = option(None)
    topics: list[str] = option(factory=list)
    format: str | None = component("format", direction="deserializer")
    format_options: dict[str, Any] = component_options("format")
    starting_offsets: str | dict[str, Any] | None = component("offsets initializer")
    stopping_offsets: str | dict[str, Any] | None = component("offsets initializer")
    properties: dict[str, Any] = option(factory=dict)


@attrs.frozen
class _SinkOptions:
    """The recording sink."""

    topic: str | None = option(None, example='topic = "out"')
    format: str | None = component("format", direction="serializer")
    format_options: dict[str, Any] = component_options("format")
    partitioner: str | dict[str, Any] | None = component("partitioner")


class _Recorder:
    """A test plugin: a ``recording`` source and sink that keep the options they got, a
    connector that declares no options, formats, a partitioner and offsets initializers."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.hosts: list[Any] = []
        self.sink = CollectSink()

    @hookimpl
    def streamplug_register_connectors(self, register: Callable[[ConnectorSpec], None]) -> None:
        def source(options: _SourceOptions, host: PluginHost) -> Any:
            from streamplug.connectors.collection import CollectionSource

            self.hosts.append(host)
            self.calls.append(("source", options))
            if options.mode == "bad":
                raise ConfigError("mode 'bad' is not a mode; use 'good'", option="mode")
            return CollectionSource(list(range(10)), num_splits=2)

        def sink(options: _SinkOptions, host: PluginHost) -> Any:
            self.hosts.append(host)
            self.calls.append(("sink", options))
            return self.sink

        # A connector that declares no options class gets the table as keyword arguments.
        def undeclared_sink(**options: Any) -> Any:
            self.calls.append(("undeclared", options))
            return self.sink

        register(ConnectorSpec("recording", "source", source, options=_SourceOptions))
        register(ConnectorSpec("recording-sink", "sink", sink, options=_SinkOptions))
        register(ConnectorSpec("undeclared", "sink", undeclared_sink))

    @hookimpl
    def streamplug_register_formats(self, register: Callable[[FormatSpec], None]) -> None:
        register(
            FormatSpec(
                "reprs",
                serializer=lambda indent=0: _Json(),
                deserializer=_Json,
                serializer_options=_ReprOptions,
                deserializer_options=_NoOptions,
            )
        )
        register(FormatSpec("write-only", serializer=_Json, serializer_options=_NoOptions))

    @hookimpl
    def streamplug_register_partitioners(self, register: Callable[[PartitionerSpec], None]) -> None:
        register(PartitionerSpec("by-region", lambda **o: o, options=_RegionOptions))

    @hookimpl
    def streamplug_register_offsets_initializers(
        self, register: Callable[[OffsetsInitializerSpec], None]
    ) -> None:
        register(OffsetsInitializerSpec("earliest", lambda **o: o, options=_NoOptions))
        register(OffsetsInitializerSpec("timestamp", lambda **o: o, options=_TimestampOptions))


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


def test_options_reach_the_connector_converted_and_bootstrap_is_overridden(
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
        format = "reprs"
        format_options = { indent = 2 }
        partitioner = { name = "by-region", regions = ["eu"] }
        """,
    )
    build_pipeline(config, host, bootstrap_servers="override:9092")
    (_, source_options), (_, sink_options) = recorder.calls
    assert source_options == _SourceOptions(
        bootstrap_servers="override:9092",
        topics=["a", "b"],
        format="reprs",
        starting_offsets={"name": "timestamp", "timestamp": 1700000000000},
        stopping_offsets="earliest",
        properties={"fetch.min.bytes": "1"},
    )
    # The sink declares no bootstrap_servers: --bootstrap-servers leaves it alone.
    assert sink_options == _SinkOptions(
        topic="out",
        format="reprs",
        format_options={"indent": 2},
        partitioner={"name": "by-region", "regions": ["eu"]},
    )
    # Factories get the run's plugin host, to build the components their options name.
    assert recorder.hosts == [host, host]
    assert host.build_format("reprs", sink_options.format_options, "serializer") is not None
    assert host.build_component("partitioner", sink_options.partitioner) == {"regions": ["eu"]}


def test_a_connector_without_an_options_class_gets_the_table(
    pipeline_dir: Path, host: PluginHost, recorder: _Recorder
) -> None:
    config = _config(
        pipeline_dir,
        """\
        [source]
        connector = "recording"
        [sink]
        connector = "undeclared"
        topic = "t"
        [sink.properties]
        "acks" = "all"
        """,
    )
    build_pipeline(config, host, bootstrap_servers="ignored:1")
    assert recorder.calls[-1] == ("undeclared", {"topic": "t", "properties": {"acks": "all"}})


@pytest.mark.parametrize(
    ("snippet", "line", "key", "problem_part", "fix_part"),
    [
        (
            '[source]\nconnector = "recording"\ntopcs = ["a"]\n',
            3,
            "source.topcs",
            "unknown key 'topcs'",
            "did you mean 'topics'?",
        ),
        (
            '[source]\nconnector = "recording"\ntopics = "a"\n',
            3,
            "source.topics",
            "must be an array, got a string 'a'",
            None,
        ),
        (
            '[source]\nconnector = "recording"\ntopics = ["a", 2]\n',
            3,
            "source.topics[2]",
            "must be a string, got an integer 2",
            None,
        ),
        (
            '[source]\nconnector = "recording"\nformat = "reprs"\n'
            "format_options = { indnet = 2 }\n",
            4,
            "source.format_options.indnet",
            "unknown key 'indnet'",
            "valid keys are: (none)",
        ),
        (
            '[source]\nconnector = "recording"\n\n[source.starting_offsets]\n'
            'name = "timestamp"\ntimestmp = 5\n',
            6,
            "source.starting_offsets.timestmp",
            "unknown key 'timestmp'",
            "did you mean 'timestamp'?",
        ),
        (
            '[source]\nconnector = "recording"\nstarting_offsets = { name = "timestamp" }\n',
            3,
            "source.starting_offsets.timestamp",
            "missing key 'timestamp'",
            "timestamp = 1700000000000",
        ),
    ],
)
def test_a_wrong_key_at_any_depth_is_reported_on_its_line(
    pipeline_dir: Path,
    host: PluginHost,
    snippet: str,
    line: int,
    key: str,
    problem_part: str,
    fix_part: str | None,
) -> None:
    err = _build_error(pipeline_dir, host, snippet + '[sink]\nconnector = "recording-sink"\n')
    assert (err.line, err.key) == (line, key)
    assert problem_part in err.problem
    if fix_part is not None:
        assert err.fix is not None and fix_part in err.fix, err.fix


def test_sink_format_options_are_checked_against_the_serializer(
    pipeline_dir: Path, host: PluginHost
) -> None:
    err = _build_error(
        pipeline_dir,
        host,
        '[source]\nconnector = "recording"\n[sink]\nconnector = "recording-sink"\n'
        'format = "reprs"\n[sink.format_options]\nindent = "two"\n',
    )
    assert (err.line, err.key) == (7, "sink.format_options.indent")
    assert "must be an integer, got a string 'two'" in err.problem


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


def test_the_core_connectors_declare_their_options(pipeline_dir: Path, host: PluginHost) -> None:
    err = _build_error(
        pipeline_dir,
        host,
        '[source]\nconnector = "recording"\n[sink]\nconnector = "print"\nprefx = "a"\n',
    )
    assert (err.line, err.key) == (5, "sink.prefx")
    assert err.fix == "did you mean 'prefix'? valid keys are: prefix"


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
