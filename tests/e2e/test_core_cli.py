"""The ``streamplug`` command as a user runs it: plugins listing and checkpoint inspection."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def _streamplug(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamplug.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_plugins_lists_every_distribution_and_the_example_third_party_format() -> None:
    result = _streamplug("plugins", "--json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert listing["conflicts"] == [] and listing["failures"] == []
    # A distribution may ship several plugins (the core ships three): merge their names.
    plugins: dict[str, dict[str, dict[str, list[str]]]] = {}
    for p in listing["plugins"]:
        registers = plugins.setdefault(p["distribution"], {"registers": {}})["registers"]
        for kind, names in p["registers"].items():
            registers.setdefault(kind, []).extend(names)
    for dist in (
        "streamplug",
        "streamplug-testing",
        "streamplug-kafka-source",
        "streamplug-kafka-sink",
        "streamplug-kafka-security",
        "streamplug-serde",
    ):
        assert dist in plugins, f"{dist} is not listed: {sorted(plugins)}"
    # The example package in examples/ is installed like any third-party plugin and found
    # through its entry point only.
    assert "streamplug-msgpack" in plugins
    assert "msgpack" in plugins["streamplug-msgpack"]["registers"]["format"]
    assert "collection" in plugins["streamplug"]["registers"]["source"]

    text = _streamplug("plugins")
    assert text.returncode == 0, text.stdout + text.stderr
    assert "streamplug-msgpack" in text.stdout and "formats:" in text.stdout


def test_checkpoints_list_and_show_a_real_job(tmp_path: Path) -> None:
    job = Path(__file__).parent / "jobs" / "core_collection_job.py"
    run = subprocess.run(
        [
            sys.executable,
            str(job),
            "--storage",
            str(tmp_path / "chk"),
            "--out",
            str(tmp_path / "out"),
            "--records",
            "2000",
            "--rate",
            "4000",
            "--interval",
            "100",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    listing = _streamplug("checkpoints", "list", str(tmp_path / "chk"))
    assert listing.returncode == 0, listing.stderr
    assert "job crash-test" in listing.stdout and "COMPLETE (final)" in listing.stdout
    shown = _streamplug("checkpoints", "show", str(tmp_path / "chk" / "crash-test"))
    assert shown.returncode == 0, shown.stderr
    assert "pipeline 'numbers'" in shown.stdout
    assert "(no split in progress)" in shown.stdout  # the final checkpoint of a bounded job


def test_help_lists_plugin_commands() -> None:
    result = _streamplug("--help")
    assert result.returncode == 0
    for command in ("plugins", "checkpoints", "broker"):
        assert command in result.stdout
