"""Pipeline files: the schema, and errors that name the line, the key and the fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from streamplug.pipeline import (
    PipelineConfigError,
    load_pipeline,
    parse_duration_ms,
    parse_pipeline,
)
from streamplug.pipeline.locate import KeyLocator, format_path

GOOD = textwrap.dedent(
    """\
    # a comment
    [job]
    name = "orders"
    parallelism = 3
    auto_watermark_interval = "100 ms"

    [checkpointing]
    interval = "5 s"
    timeout = "2 min"
    min_pause = 500
    max_retained = 2
    storage = "file:///tmp/chk"
    tolerable_failures = 1

    [restart_strategy]
    type = "exponential-delay"
    initial_backoff = "1 s"
    max_backoff = "1 min"
    backoff_multiplier = 1.5
    attempts = 4

    [source]
    connector = "collection"
    name = "numbers"
    elements = [1, 2, 3]
    [source.properties]
    "fetch.min.bytes" = 1
    "enable.auto.commit" = false

    [source.watermarks]
    strategy = "bounded"
    max_out_of_orderness = "5s"
    idleness = "30 s"
    timestamp_field = "ts"

    [[transform]]
    map = "mod:double"

    [[transform]]
    filter = "mod:even"
    name = "only-even"

    [[transform]]
    flat_map = "mod:explode"
    options = { times = 2 }

    [[sink]]
    connector = "print"
    prefix = "a"

    [[sink]]
    connector = "discard"
    """
)


# The smallest valid pipeline, four lines long.
MINIMAL = '[source]\nconnector = "collection"\n[sink]\nconnector = "print"\n'


def _error(text: str, environ: dict[str, str] | None = None) -> PipelineConfigError:
    with pytest.raises(PipelineConfigError) as info:
        parse_pipeline(textwrap.dedent(text), file="p.toml", environ=environ or {})
    return info.value


def _error_in(block: str) -> PipelineConfigError:
    """The error for ``MINIMAL`` followed by ``block``, whose first line is line 5."""
    return _error(MINIMAL + textwrap.dedent(block))


def test_a_full_file_reads_into_settings() -> None:
    config = parse_pipeline(GOOD, file="p.toml", environ={})
    assert config.job.name == "orders"
    assert config.job.parallelism == 3
    assert config.job.auto_watermark_interval_ms == 100
    cp = config.checkpointing
    assert cp is not None
    assert (cp.interval_ms, cp.timeout_ms, cp.min_pause_ms, cp.max_retained) == (
        5000,
        120_000,
        500,
        2,
    )
    assert cp.storage == Path("/tmp/chk") and cp.tolerable_failures == 1
    assert config.restart is not None and config.restart.type == "exponential-delay"
    assert config.restart.params == {
        "initial_backoff": 1000,
        "max_backoff": 60_000,
        "backoff_multiplier": 1.5,
        "attempts": 4,
    }
    assert config.source.connector == "collection" and config.source.name == "numbers"
    # Client properties are strings, as librdkafka takes them.
    assert config.source.options == {
        "elements": [1, 2, 3],
        "properties": {"fetch.min.bytes": "1", "enable.auto.commit": "false"},
    }
    wm = config.source.watermarks
    assert (wm.strategy, wm.max_out_of_orderness_ms, wm.idleness_ms, wm.timestamp_field) == (
        "bounded-out-of-orderness",
        5000,
        30_000,
        "ts",
    )
    assert [(t.kind, t.function, t.name, t.options) for t in config.transforms] == [
        ("map", "mod:double", None, None),
        ("filter", "mod:even", "only-even", None),
        ("flat_map", "mod:explode", None, {"times": 2}),
    ]
    assert [(s.connector, s.name, s.options) for s in config.sinks] == [
        ("print", "print", {"prefix": "a"}),
        ("discard", "discard", {}),
    ]


def test_the_job_name_defaults_to_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "clicks-per-minute.toml"
    path.write_text(MINIMAL)
    config = load_pipeline(path)
    assert config.job.name == "clicks-per-minute"
    assert config.job.parallelism == 1
    assert config.checkpointing is None and config.restart is None
    assert config.base_dir == tmp_path.resolve()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (5000, 5000),
        ("250", 250),
        ("250ms", 250),
        ("5 s", 5000),
        ("1.5 min", 90_000),
        ("2h", 7_200_000),
        ("1 d", 86_400_000),
        ("10 seconds", 10_000),
    ],
)
def test_durations_read_like_flinks(text: object, expected: int) -> None:
    assert parse_duration_ms(text) == expected


@pytest.mark.parametrize("bad", ["5 fortnights", "fast", -1, True, "-5s"])
def test_bad_durations_are_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match=r"not a duration|negative"):
        parse_duration_ms(bad)


def test_a_typo_in_a_key_names_line_key_and_the_close_match() -> None:
    err = _error(
        """\
        [job]
        name = "x"
        paralelism = 2

        [source]
        connector = "collection"
        [sink]
        connector = "print"
        """
    )
    assert err.line == 3
    assert err.key == "job.paralelism"
    assert "unknown key 'paralelism'" in err.problem
    assert err.fix is not None and "did you mean 'parallelism'?" in err.fix
    assert str(err).startswith("p.toml:3: job.paralelism: unknown key")


def test_a_wrong_type_names_line_key_and_an_example() -> None:
    err = _error(
        """\
        [source]
        connector = "collection"

        [job]
        parallelism = "two"

        [sink]
        connector = "print"
        """
    )
    assert (err.line, err.key) == (5, "job.parallelism")
    assert "must be an integer >= 1" in err.problem and "'two'" in err.problem
    assert err.fix == "parallelism = 2"


def test_errors_inside_the_nth_transform_point_at_that_block() -> None:
    err = _error(
        """\
        [source]
        connector = "collection"

        [[transform]]
        map = "mod:a"

        [[transform]]
        map = "mod:b"
        filter = "mod:c"

        [[transform]]
        map = "not a reference"

        [sink]
        connector = "print"
        """
    )
    assert (err.line, err.key) == (7, "transform[2]")
    assert "names 2 functions (map, filter)" in err.problem
    assert err.fix is not None and "exactly one of map, filter or flat_map" in err.fix


def test_a_bad_function_reference_is_reported_on_its_line() -> None:
    err = _error(
        """\
        [source]
        connector = "collection"

        [[transform]]
        map = "mod:a"

        [[transform]]
        # the dot should be a colon
        map = "mod.b"

        [sink]
        connector = "print"
        """
    )
    assert (err.line, err.key) == (9, "transform[2].map")
    assert "'module:function'" in err.problem


def test_unknown_restart_strategy_lists_the_valid_ones() -> None:
    err = _error_in(
        """\
        [restart_strategy]
        type = "fixed-dely"
        """
    )
    assert (err.line, err.key) == (6, "restart_strategy.type")
    assert err.fix is not None
    assert "did you mean 'fixed-delay'?" in err.fix
    assert "none, fixed-delay, exponential-delay, failure-rate" in err.fix


def test_options_of_another_restart_strategy_are_rejected() -> None:
    err = _error_in(
        """\
        [restart_strategy]
        type = "fixed-delay"
        initial_backoff = "1 s"
        """
    )
    assert (err.line, err.key) == (7, "restart_strategy.initial_backoff")
    assert err.fix == "valid keys are: attempts, delay"


def test_a_bad_duration_names_the_units() -> None:
    err = _error_in(
        """\
        [checkpointing]
        interval = "10 sec"
        timeout = "soon"
        """
    )
    assert (err.line, err.key) == (7, "checkpointing.timeout")
    assert "ms, s, min, h, d" in err.problem


def test_checkpointing_needs_an_interval_and_a_supported_storage() -> None:
    err = _error_in('[checkpointing]\ntimeout = "1 s"\n')
    assert (err.line, err.key) == (5, "checkpointing")
    assert err.fix is not None and "interval" in err.fix
    err = _error_in('[checkpointing]\ninterval = 1000\nstorage = "ftp://host/chk"\n')
    assert (err.line, err.key) == (7, "checkpointing.storage")
    assert "ftp://host/chk" in err.problem and "s3://" in err.problem
    err = _error_in(
        '[checkpointing]\ninterval = 1000\nstorage = "/var/chk"\n'
        '[checkpointing.storage_options]\nendpoint_url = "http://minio:9000"\n'
    )
    assert err.key == "checkpointing.storage_options"
    assert err.fix is not None and "s3://" in err.fix


def test_checkpointing_to_s3_takes_storage_options_and_masks_credentials() -> None:
    pytest.importorskip("s3fs", reason='needs pip install "streamplug[s3]"')
    config = parse_pipeline(
        MINIMAL
        + '[checkpointing]\ninterval = 1000\nstorage = "s3://bucket/chk/"\n'
        + "[checkpointing.storage_options]\n"
        + 'endpoint_url = "http://minio:9000"\nkey = "AKIDEXAMPLE"\nsecret = "${S3_SECRET}"\n',
        environ={"S3_SECRET": "wJalrXUtnFEMI-example"},
    )
    cp = config.checkpointing
    assert cp is not None and cp.storage == "s3://bucket/chk"
    assert cp.storage_options == {
        "endpoint_url": "http://minio:9000",
        "key": "AKIDEXAMPLE",
        "secret": "wJalrXUtnFEMI-example",
    }
    shown = repr(config)
    assert "http://minio:9000" in shown
    assert "wJalrXUtnFEMI-example" not in shown and "AKIDEXAMPLE" not in shown


def test_missing_source_and_sink_say_what_to_add() -> None:
    err = _error('[job]\nname = "x"\n[sink]\nconnector = "print"\n')
    assert "no [source]" in err.problem and err.fix is not None and 'connector = "kafka"' in err.fix
    err = _error('[source]\nconnector = "collection"\n')
    assert "no [sink]" in err.problem
    err = _error('[source]\ntopics = ["a"]\n[sink]\nconnector = "print"\n')
    assert (err.line, err.key) == (1, "source")
    assert "needs a connector" in err.problem


def test_watermark_settings_are_checked() -> None:
    err = _error(
        """\
        [source]
        connector = "collection"
        [source.watermarks]
        strategy = "bounded-out-of-orderness"
        [sink]
        connector = "print"
        """
    )
    assert (err.line, err.key) == (4, "source.watermarks.strategy")
    assert err.fix == 'add max_out_of_orderness = "5 s"'
    err = _error(
        """\
        [source]
        connector = "collection"
        watermarks = { strategy = "monotonic", timestamp_field = "ts", timestamp_assigner = "m:f" }
        [sink]
        connector = "print"
        """
    )
    # Inside an inline table the error points at the table's line.
    assert err.line == 3
    assert err.key == "source.watermarks.timestamp_assigner"


def test_invalid_toml_reports_the_line_tomllib_found() -> None:
    err = _error('[source]\nconnector = "collection"\ntopics = [orders]\n')
    assert err.line == 3
    assert "not valid TOML" in err.problem


def test_environment_variables_are_substituted_and_missing_ones_reported() -> None:
    text = """\
        [source]
        connector = "collection"
        [source.properties]
        "sasl.password" = "${KAFKA_PASSWORD}"
        "client.id" = "${CLIENT_ID:-demo}"
        "literal" = "$${NOT_A_VAR}"
        [sink]
        connector = "print"
        """
    config = parse_pipeline(textwrap.dedent(text), environ={"KAFKA_PASSWORD": "s3cret"})
    assert config.source.options["properties"] == {
        "sasl.password": "s3cret",
        "client.id": "demo",
        "literal": "${NOT_A_VAR}",
    }
    err = _error(text)
    assert (err.line, err.key) == (4, 'source.properties."sasl.password"')
    assert "KAFKA_PASSWORD is not set" in err.problem
    # The secret's value never appears in an error.
    assert "s3cret" not in str(err)


def test_two_sinks_with_one_name_are_rejected() -> None:
    err = _error(
        """\
        [source]
        connector = "collection"
        [[sink]]
        connector = "print"
        [[sink]]
        connector = "print"
        """
    )
    # The name is implied (the connector's), so the error points at the second block.
    assert (err.line, err.key) == (5, "sink[2].name")
    assert err.fix == "give each [[sink]] its own name"


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(PipelineConfigError, match="does not exist"):
        load_pipeline(tmp_path / "nope.toml")


def test_the_locator_handles_quotes_dotted_keys_arrays_and_multiline_values() -> None:
    text = textwrap.dedent(
        '''\
        title = """
        [not.a.table]
        fake = 1
        """
        [a]
        "quoted.key" = 1
        b.c = 2
        list = [
          "x = 1",
          [1, 2],
        ]
        after = 3  # trailing [comment]

        [[t]]
        x = 1
        [t.sub]
        y = 2
        [[t]]
        x = 3
        [t.sub]
        y = 4
        '''
    )
    loc = KeyLocator(text)
    assert loc.line(("title",)) == 1
    assert loc.line(("not", "a", "table")) is None
    assert loc.line(("a", "quoted.key")) == 6
    assert loc.line(("a", "b", "c")) == 7
    assert loc.line(("a", "list")) == 8
    assert loc.line(("a", "after")) == 12
    assert loc.line(("t", 0, "x")) == 15
    assert loc.line(("t", 0, "sub", "y")) == 17
    assert loc.line(("t", 1, "x")) == 19
    assert loc.line(("t", 1, "sub", "y")) == 21
    # Unknown paths fall back to the nearest enclosing key that has a line.
    assert loc.line(("t", 1, "missing")) == 18
    assert format_path(("source", "properties", "a.b")) == 'source.properties."a.b"'
    assert format_path(("transform", 0, "map")) == "transform[1].map"
