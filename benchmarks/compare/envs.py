"""The peers' virtual environments and Flink's Maven build, made on first use.

Each peer gets its own virtual environment under ``~/.cache/streamplug-bench/venvs``
(``$STREAMPLUG_BENCH_CACHE`` moves it), installed from PyPI with pinned versions so a
rerun measures the same code; none of them touches the project's environment. Flink's job
is compiled by Maven (``benchmarks/flink``, dependencies from Maven Central into ~/.m2);
the run then starts ``java`` on the compiled classes and the classpath Maven wrote, so
the measured process is the job's own JVM.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CACHE = Path(os.environ.get("STREAMPLUG_BENCH_CACHE", Path.home() / ".cache" / "streamplug-bench"))
FLINK_PROJECT = Path(__file__).resolve().parent.parent / "flink"

#: pip requirement and the module whose import proves the install, per environment.
PEER_PACKAGES = {
    "quix": ("quixstreams==3.28.1", "quixstreams"),
    "bytewax": ("bytewax[kafka]==0.21.1", "bytewax.connectors.kafka"),
    "arroyo": ("sentry-arroyo==2.48.0", "arroyo"),
    "faust": ("faust-streaming==0.15.3", "faust"),
    "plot": ("matplotlib==3.11.2", "matplotlib"),
    "profile": ("py-spy==0.4.3", "sys"),
}
JVM_OPTIONS = ["-Xmx1g"]


def _python_in(venv: Path) -> Path:
    return venv / "bin" / "python"


def python_for(env: str | None) -> str:
    """The interpreter for ``env``, creating and installing its environment if needed."""
    if env is None:
        return sys.executable
    requirement, module = PEER_PACKAGES[env]
    venv = CACHE / "venvs" / env
    python = _python_in(venv)
    if python.exists() and _imports(python, module):
        return str(python)
    print(f"  creating {venv} with {requirement} (first use)...", flush=True)
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            requirement,
        ],
        check=True,
    )
    if not _imports(python, module):
        raise SystemExit(f"{requirement} installed into {venv}, but `import {module}` fails there")
    return str(python)


def _imports(python: Path, module: str) -> bool:
    probe = subprocess.run(
        [str(python), "-c", f"import {module}"], capture_output=True, text=True, check=False
    )
    return probe.returncode == 0


def flink_command() -> list[str]:
    """``java ... FlinkKafkaBench`` on the Maven build, building it first if needed."""
    classes = FLINK_PROJECT / "target" / "classes"
    classpath_file = FLINK_PROJECT / "target" / "classpath.txt"
    sources = [*(FLINK_PROJECT / "src").rglob("*.java"), FLINK_PROJECT / "pom.xml"]
    stale = not classpath_file.exists() or max(p.stat().st_mtime for p in sources) > (
        classpath_file.stat().st_mtime
    )
    if stale:
        mvn = shutil.which("mvn")
        if mvn is None:
            raise SystemExit(
                "Flink's runs need Maven (`apt-get install maven`, Java 17) or --skip-peers"
            )
        print(f"  building {FLINK_PROJECT} with Maven (first use)...", flush=True)
        subprocess.run([mvn, "-q", "-B", "package", "-DskipTests"], cwd=FLINK_PROJECT, check=True)
    classpath = f"{classes}:{classpath_file.read_text().strip()}"
    return [
        "java",
        *JVM_OPTIONS,
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
        "-cp",
        classpath,
        "streamplug.bench.FlinkKafkaBench",
    ]


def java_version() -> str:
    out = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    first = (out.stderr or out.stdout).splitlines()
    return first[0] if first else "unknown"
