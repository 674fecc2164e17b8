"""Declared component options with the real plugins installed: every registered component
declares a frozen options class, a pipeline file's wrong key at any depth is reported on its
line with a did-you-mean and TOML's words, and ``streamplug schema`` describes the same
rules, so the docs' and examples' pipeline files validate against it."""

from __future__ import annotations

import json
import re
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import attrs
import jsonschema
import pytest

from streamplug.cli import main
from streamplug.pipeline import PipelineConfigError, build_pipeline, parse_pipeline
from streamplug.pipeline.schema import pipeline_schema
from streamplug.plugin import PluginHost, build_plugin_host

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return build_plugin_host(autoload=True)


@pytest.fixture(scope="module")
def validator(host: PluginHost) -> jsonschema.Draft202012Validator:
    schema = pipeline_schema(host)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_every_installed_component_declares_a_frozen_options_class(host: PluginHost) -> None:
    classes: dict[str, Any] = {}
    for role in ("source", "sink"):
        for name in host.names(role):
            classes[f"{role} {name}"] = host.connector(name, role).options  # type: ignore[arg-type]
    for name in host.names("format"):
        record = host.format(name)
        for direction in ("serializer", "deserializer"):
            if getattr(record, direction) is not None:
                classes[f"format {name} {direction}"] = getattr(record, f"{direction}_options")
    for kind in ("partitioner", "offsets initializer"):
        for name in host.names(kind):
            classes[f"{kind} {name}"] = host.lookup(kind, name).options
    assert {"source kafka", "sink kafka", "format json deserializer", "partitioner fixed"} <= set(
        classes
    )
    undeclared = sorted(k for k, cls in classes.items() if cls is None)
    assert not undeclared, f"no options class: {undeclared}"
    for what, cls in classes.items():
        assert attrs.has(cls), what
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            fields = attrs.fields(cls)
            instance = cls(**{f.name: 0 for f in fields if f.default is attrs.NOTHING})
            setattr(instance, fields[0].name if fields else "x", 1)


def _error(host: PluginHost, text: str) -> PipelineConfigError:
    config = parse_pipeline(textwrap.dedent(text), file="p.toml", base_dir=Path("."), environ={})
    with pytest.raises(PipelineConfigError) as info:
        build_pipeline(config, host)
    return info.value


KAFKA_SOURCE = """\
[source]
connector = "kafka"
bootstrap_servers = "localhost:9092"
topics = ["orders"]
group_id = "g"
format = "csv"
"""
KAFKA_SINK = """\
[sink]
connector = "kafka"
bootstrap_servers = "localhost:9092"
topic = "out"
format = "json"
"""


@pytest.mark.parametrize(
    ("source", "sink", "line", "key", "fix"),
    [
        (
            KAFKA_SOURCE.replace("group_id", "groupid"),
            KAFKA_SINK,
            5,
            "source.groupid",
            "did you mean 'group_id'?",
        ),
        (
            KAFKA_SOURCE + 'format_options = { fields = ["a"], delimter = ";" }\n',
            KAFKA_SINK,
            7,
            "source.format_options.delimter",
            "did you mean 'delimiter'?",
        ),
        (
            KAFKA_SOURCE + '[source.starting_offsets]\nname = "timestamp"\ntimestmp = 5\n',
            KAFKA_SINK,
            9,
            "source.starting_offsets.timestmp",
            "did you mean 'timestamp'?",
        ),
        (
            KAFKA_SOURCE + 'stopping_offsets = "lates"\n',
            KAFKA_SINK,
            7,
            "source.stopping_offsets",
            "did you mean 'latest'?",
        ),
        (
            KAFKA_SOURCE,
            KAFKA_SINK + 'partitioner = "round-robbin"\n',
            12,
            "sink.partitioner",
            "did you mean 'round-robin'?",
        ),
        (
            KAFKA_SOURCE,
            KAFKA_SINK + 'delivery-guarantee = "exactly-once"\n',
            12,
            "sink.delivery-guarantee",
            "did you mean 'delivery_guarantee'?",
        ),
        (
            KAFKA_SOURCE,
            KAFKA_SINK + "[sink.format_options]\nuse_orjsn = true\n",
            13,
            "sink.format_options.use_orjsn",
            "did you mean 'use_orjson'?",
        ),
    ],
)
def test_a_typo_in_any_key_at_any_depth_gets_its_line_and_a_did_you_mean(
    host: PluginHost, source: str, sink: str, line: int, key: str, fix: str
) -> None:
    err = _error(host, source + sink)
    assert (err.line, err.key) == (line, key), str(err)
    assert err.fix is not None and fix in err.fix, str(err)


def test_a_missing_key_is_answered_in_toml(host: PluginHost) -> None:
    err = _error(
        host, KAFKA_SOURCE.replace('bootstrap_servers = "localhost:9092"\n', "") + KAFKA_SINK
    )
    assert (err.line, err.key) == (1, "source.bootstrap_servers")
    assert "missing key 'bootstrap_servers'" in err.problem
    assert err.fix == 'bootstrap_servers = "localhost:9092"'
    assert "set_" not in str(err) and "(" not in (err.fix or "")
    err = _error(
        host, KAFKA_SOURCE.replace('group_id = "g"', 'starting_offsets = "committed"') + KAFKA_SINK
    )
    assert err.key == "source.group_id" and err.fix == 'group_id = "my-job"'
    assert "set_group_id" not in str(err)
    err = _error(host, KAFKA_SOURCE + KAFKA_SINK + 'delivery_guarantee = "exactly-once"\n')
    assert err.key == "sink.transactional_id_prefix" and "set_" not in str(err)
    err = _error(host, KAFKA_SOURCE.replace('["orders"]', "[]") + KAFKA_SINK)
    assert (err.line, err.key) == (4, "source.topics") and "set_" not in str(err)
    err = _error(host, KAFKA_SOURCE + KAFKA_SINK + '[sink.properties]\n"transactional.id" = "x"\n')
    assert (err.line, err.key) == (13, 'sink.properties."transactional.id"')
    assert "set_" not in str(err) and "transactional_id_prefix" in (err.fix or "")


def test_the_source_and_the_sink_share_one_vocabulary(host: PluginHost) -> None:
    source, sink = host.connector("kafka", "source"), host.connector("kafka", "sink")
    assert source.options is not None and sink.options is not None
    shared = set(attrs.fields_dict(source.options)) & set(attrs.fields_dict(sink.options))
    assert {"bootstrap_servers", "format", "format_options", "properties"} <= shared
    every_key = [
        f.name
        for cls in (source.options, sink.options)
        for f in attrs.fields(cls)  # type: ignore[arg-type]
    ]
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", k) for k in every_key), every_key


def _documented_pipelines() -> list[tuple[str, str]]:
    found = [
        (p.name, p.read_text()) for p in sorted((ROOT / "examples" / "pipelines").glob("*.toml"))
    ]
    for page in sorted((ROOT / "docs").glob("*.md")):
        blocks = re.findall(r"```toml\n(.*?)```", page.read_text(), re.S)
        for i, block in enumerate(blocks):
            if re.search(r"^\[source\]", block, re.M):
                found.append((f"{page.name}[{i}]", block))
    return found


DOCUMENTED = _documented_pipelines()


def test_the_docs_show_pipeline_files() -> None:
    names = [n for n, _ in DOCUMENTED]
    assert any(n.startswith("pipelines.md") for n in names)
    assert any(n.startswith("formats.md") for n in names)
    assert len([n for n in names if n.endswith(".toml")]) >= 3


@pytest.mark.parametrize(("where", "text"), DOCUMENTED, ids=[n for n, _ in DOCUMENTED])
def test_documented_pipeline_files_validate_against_the_schema(
    validator: jsonschema.Draft202012Validator, where: str, text: str
) -> None:
    errors = [
        f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(tomllib.loads(text))
    ]
    assert not errors, f"{where}: {errors}"


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (("group_id", "groupid"), ["source"]),
        (
            ('format = "csv"', 'format = "csv"\nformat_options = { delimter = ";" }'),
            ["source", "format_options"],
        ),
        (
            ('topic = "out"', 'topic = "out"\npartitioner = { name = "fixed", x = 1 }'),
            ["sink", "partitioner"],
        ),
        (
            ('connector = "kafka"\nbootstrap', 'connector = "kafak"\nbootstrap'),
            ["source", "connector"],
        ),
    ],
)
def test_the_schema_catches_what_the_builder_catches(
    validator: jsonschema.Draft202012Validator, change: tuple[str, str], path: list[str]
) -> None:
    assert not list(validator.iter_errors(tomllib.loads(KAFKA_SOURCE + KAFKA_SINK)))
    wrong = tomllib.loads((KAFKA_SOURCE + KAFKA_SINK).replace(*change, 1))
    best = jsonschema.exceptions.best_match(validator.iter_errors(wrong))
    assert best is not None
    assert list(best.absolute_path)[: len(path)] == path, (list(best.absolute_path), best.message)


def test_schema_command_prints_the_schema(
    host: PluginHost, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert {"source.kafka", "sink.kafka", "source.collection", "sink.print"} <= set(
        printed["$defs"]
    )
    kafka = printed["$defs"]["source.kafka"]["properties"]
    assert "consumer group" in kafka["group_id"]["description"]
    assert main(["schema", "-o", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text()) == printed


def test_an_options_error_never_quotes_a_secret() -> None:
    from streamplug.plugin.options import OptionsError, option, structure

    @attrs.frozen
    class Login:
        """A connector's login."""

        sasl_password: str = option(example='sasl_password = "${PASSWORD}"')
        settings: dict[str, str] = option(factory=dict)

    with pytest.raises(OptionsError) as info:
        structure(Login, {"sasl_password": 424242})
    assert "424242" not in str(info.value) and "must be a string, got ***" in str(info.value)
    with pytest.raises(OptionsError) as info:
        structure(Login, {"sasl_password": "p", "settings": {"ssl.key.password": 77}})
    assert "77" not in str(info.value)
    with pytest.raises(OptionsError) as info:
        structure(Login, {"sasl_password": "p", "settings": [{"sasl.password": "hunter2"}]})
    assert "hunter2" not in str(info.value) and "'sasl.password': '***'" in str(info.value)
