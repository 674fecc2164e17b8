"""streamplug-otel's options: declared with streamplug's options mechanism, read from
``configure(...)`` or the ``STREAMPLUG_OTEL`` environment variable, every mistake named by
its key; and the per-record sampling draw."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import streamplug_otel
from streamplug.plugin import build_plugin_host
from streamplug.plugin.options import OptionsError, json_schema
from streamplug_otel.options import ENV, OtelOptions
from streamplug_otel.plugin import _sample


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(ENV, raising=False)
    streamplug_otel.configure()
    yield
    streamplug_otel.configure()


def test_defaults_propagate_and_trace_batches_only() -> None:
    opts = streamplug_otel.current()
    assert opts == OtelOptions()
    assert opts.propagate and opts.batch_spans and opts.sampling == 0.0
    assert not opts.root_without_context


def test_the_environment_variable_is_a_toml_table_body(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        ENV, 'sampling = 0.25, root_without_context = true, tracer_provider = "a.b:c"'
    )
    opts = streamplug_otel.current()
    assert opts.sampling == 0.25 and opts.root_without_context
    assert opts.tracer_provider == "a.b:c"


def test_configure_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "sampling = 0.5")
    streamplug_otel.configure(sampling=1.0)
    assert streamplug_otel.current().sampling == 1.0
    streamplug_otel.configure()
    assert streamplug_otel.current().sampling == 0.5


@pytest.mark.parametrize(
    ("raw", "where", "says"),
    [
        ("samplng = 0.1", "STREAMPLUG_OTEL.samplng", "did you mean 'sampling'"),
        ('sampling = "1%"', "STREAMPLUG_OTEL.sampling", "must be a number"),
        # A validator's message names its key itself.
        ("sampling = 2.0", "STREAMPLUG_OTEL", "sampling must be between 0 and 1"),
        ("sampling = ", "STREAMPLUG_OTEL", "not a TOML table body"),
    ],
)
def test_a_wrong_option_is_named_with_its_fix(
    monkeypatch: pytest.MonkeyPatch, raw: str, where: str, says: str
) -> None:
    monkeypatch.setenv(ENV, raw)
    with pytest.raises(OptionsError) as info:
        streamplug_otel.current()
    assert str(info.value).startswith(where + ":"), str(info.value)
    assert says in str(info.value)


def test_the_options_have_a_schema_with_their_descriptions() -> None:
    schema = json_schema(OtelOptions)
    assert set(schema["properties"]) == {
        "propagate",
        "sampling",
        "root_without_context",
        "batch_spans",
        "checkpoint_spans",
        "tracer_provider",
    }
    assert all(p.get("description") for p in schema["properties"].values())


def test_sampling_draws_about_the_share_asked_for() -> None:
    assert list(_sample(1000, 0.0)) == []
    assert list(_sample(1000, 1.0)) == list(range(1000))
    drawn = sum(len(_sample(10_000, 0.01)) for _ in range(20))
    assert 1400 <= drawn <= 2600, drawn  # 2000 expected; ~6 standard deviations either side
    positions = list(_sample(10_000, 0.05))
    assert positions == sorted(set(positions)) and all(0 <= p < 10_000 for p in positions)


def test_the_plugin_loads_from_its_entry_point_with_every_hook_known() -> None:
    host = build_plugin_host()
    assert not host.failures, host.failures
    assert any(info.distribution == "streamplug-otel" for info in host.plugin_infos())
    for hook in (
        "streamplug_reader_batch_fetched",
        "streamplug_writer_batch_producing",
        "streamplug_writer_outcome",
        "streamplug_checkpoint_subtask_acknowledged",
    ):
        assert host.caller(hook) is not None
