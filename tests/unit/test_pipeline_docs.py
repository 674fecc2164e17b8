"""The docs keep up with the code: every hook, pipeline key and core command is documented,
every example pipeline file validates, and the nav names only pages that exist or that
other parts of the project provide."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from streamplug.pipeline import config as pipeline_config
from streamplug.pipeline import load_pipeline
from streamplug.plugin import spec as hookspecs

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def test_every_hook_is_documented_in_the_plugin_guide() -> None:
    guide = _read("plugins.md")
    hooks = [
        n
        for n, f in inspect.getmembers(hookspecs, inspect.isfunction)
        if n.startswith("streamplug_")
    ]
    assert len(hooks) >= 12
    # With its full signature: every argument, in the hookspec's order.
    signatures = [
        f"`{h}({', '.join(inspect.signature(getattr(hookspecs, h)).parameters)})`" for h in hooks
    ]
    missing = [s for s in signatures if s not in guide]
    assert not missing, f"docs/plugins.md does not document {missing}"


def test_every_pipeline_key_is_documented() -> None:
    reference = _read("pipelines.md")
    keys = {
        *pipeline_config.TOP_LEVEL_KEYS,
        *pipeline_config.JOB_KEYS,
        *pipeline_config.CHECKPOINT_KEYS,
        *pipeline_config.WATERMARK_KEYS,
        *pipeline_config.TRANSFORM_KEYS,
        *pipeline_config.WATERMARK_STRATEGIES,
        *pipeline_config.RESTART_KEYS,
        *(k for keys in pipeline_config.RESTART_KEYS.values() for k in keys),
    }
    spellings = ("`{}`", "{} =", "[{}]")
    missing = sorted(k for k in keys if not any(s.format(k) in reference for s in spellings))
    assert not missing, f"docs/pipelines.md does not mention {missing}"


def test_the_core_commands_and_run_options_are_documented() -> None:
    cli = _read("cli.md")
    for command in ("run", "checkpoints", "plugins", "demo", "broker"):
        assert f"streamplug {command}" in cli
    import argparse

    from streamplug.pipeline.cli import _configure

    parser = argparse.ArgumentParser()
    _configure(parser)
    options = [o for action in parser._actions for o in action.option_strings if o.startswith("--")]
    pipelines = _read("pipelines.md")
    missing = [o for o in options if o != "--help" and o not in pipelines]
    assert not missing, f"docs/pipelines.md does not describe {missing}"


@pytest.mark.parametrize(
    "path", sorted((ROOT / "examples" / "pipelines").glob("*.toml")), ids=lambda p: p.name
)
def test_example_pipeline_files_validate(path: Path) -> None:
    config = load_pipeline(path, environ={})
    assert config.sinks and config.source.connector


def test_the_nav_lists_every_page_and_links_resolve() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = set(re.findall(r":\s*([\w-]+\.md)\s*$", nav, re.M))
    written_elsewhere = {"source.md", "sink.md", "security.md", "formats.md"}
    for page in sorted(DOCS.glob("*.md")):
        assert page.name in pages, f"{page.name} is not in the mkdocs nav"
    for page in pages - written_elsewhere:
        assert (DOCS / page).is_file(), f"nav names {page}, which does not exist"
    assert written_elsewhere <= pages
    for page in DOCS.glob("*.md"):
        for target in re.findall(
            r"\]\(([\w-]+\.md)(?:#[\w-]+)?\)", page.read_text(encoding="utf-8")
        ):
            assert target in pages, f"{page.name} links to {target}, which is not in the nav"
