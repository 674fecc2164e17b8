"""The distributions stay separable: a connector installs no test machinery (no pytest
plugin, no atexit hook, no ctypes load), and each declares what a user needs."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

CONNECTORS = (
    "streamplug-kafka-common",
    "streamplug-kafka-source",
    "streamplug-kafka-sink",
    "streamplug-kafka-security",
    "streamplug-serde",
)


@pytest.mark.parametrize("dist", CONNECTORS)
def test_a_connector_adds_no_pytest_plugin_and_needs_no_test_support(dist: str) -> None:
    distribution = importlib.metadata.distribution(dist)
    assert not [ep for ep in distribution.entry_points if ep.group == "pytest11"]
    # What installing the connector brings: its requirements outside any extra (the
    # security plugin's own `testing` extra may ask for the test support).
    requires = [r for r in distribution.requires or [] if "extra ==" not in r]
    assert not [r for r in requires if r.startswith("streamplug-testing")], requires


def test_the_test_support_distribution_brings_the_fixtures() -> None:
    testing = importlib.metadata.distribution("streamplug-testing")
    assert [ep.value for ep in testing.entry_points if ep.group == "pytest11"] == [
        "streamplug_testing.pytest_plugin"
    ]


# Run in a fresh interpreter: this test process has pytest and the fixtures loaded.
_PROBE = """
import atexit, json, logging, sys  # logging registers its own atexit hook on import
before = atexit._ncallbacks()
from streamplug.plugin import build_plugin_host
host = build_plugin_host(autoload=True)
for kind in ("source", "sink", "format", "partitioner", "offsets initializer"):
    host.names(kind)
host.connector("kafka", "source"); host.connector("kafka", "sink")
import streamplug_kafka_security.plugin, streamplug_kafka_common.callbacks
print(json.dumps({
    "atexit": atexit._ncallbacks() - before,
    "ctypes": "ctypes" in sys.modules,
    "loaded": sorted(m for m in sys.modules if m.startswith(("streamplug_testing", "pytest", "_pytest"))),
}))
"""


def test_loading_every_connector_registers_no_atexit_hook_and_loads_no_ctypes() -> None:
    # The test support plugin itself (the `broker` command) and the demo are left out,
    # as they are when only the connectors are installed.
    env = {"STREAMPLUG_DISABLED_PLUGINS": "testing,demo"}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
        timeout=120,
    )
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    assert facts == {"atexit": 0, "ctypes": False, "loaded": []}, facts


# -- ready for PyPI ------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
PROJECTS = sorted(
    [ROOT, *(p.parent for p in ROOT.glob("plugins/*/pyproject.toml"))],
    key=lambda p: str(p),
)


def _project(path: Path) -> dict[str, Any]:
    with open(path / "pyproject.toml", "rb") as f:
        project: dict[str, Any] = tomllib.load(f)["project"]
    return project


@pytest.mark.parametrize("path", PROJECTS, ids=lambda p: p.name)
def test_every_distribution_carries_pypi_metadata(path: Path) -> None:
    project = _project(path)
    assert project["license"] == "Apache-2.0"  # an SPDX expression, not the old table
    assert project["license-files"] == ["LICENSE"]
    assert (path / "LICENSE").read_text().lstrip().startswith("Apache License")
    assert "Typing :: Typed" in project["classifiers"]
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]
    assert {"Homepage", "Repository", "Issues"} <= set(project["urls"])


def test_the_distributions_pin_each_other_in_lockstep() -> None:
    versions = {_project(p)["name"]: _project(p)["version"] for p in PROJECTS}
    assert len(set(versions.values())) == 1, versions
    for path in PROJECTS:
        project = _project(path)
        requirements = list(project.get("dependencies", []))
        for extra in project.get("optional-dependencies", {}).values():
            requirements += extra
        for requirement in requirements:
            name = re.split(r"[\[=<>!~ ;]", requirement, maxsplit=1)[0]
            if name in versions and name != project["name"]:
                assert re.fullmatch(rf"{name}(\[[\w,-]+\])?=={versions[name]}", requirement), (
                    f"{project['name']} requires {requirement!r}; pin {name}=={versions[name]}"
                )


def test_one_extra_installs_the_whole_kafka_set() -> None:
    kafka = _project(ROOT)["optional-dependencies"]["kafka"]
    names = {re.split(r"[=\[]", r, maxsplit=1)[0] for r in kafka}
    assert names == {
        "streamplug-kafka-source",
        "streamplug-kafka-sink",
        "streamplug-kafka-security",
        "streamplug-serde",
    }
