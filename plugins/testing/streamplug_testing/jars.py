"""Resolve the classpath of a real Apache Kafka broker.

Apache Kafka is not packaged for pip, so the broker jars come from Maven Central
through Maven itself (``org.apache.kafka:kafka_2.13`` pulls the broker and all its
runtime dependencies). Maven caches the artifacts in ``~/.m2``; we additionally copy
the resolved jars into one flat directory so that building the classpath is a
``glob`` and starting a broker never touches Maven again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "KAFKA_VERSION",
    "SCALA_VERSION",
    "KafkaJarsError",
    "ensure_kafka_jars",
    "find_java",
    "kafka_classpath",
    "kafka_libs_dir",
]

KAFKA_VERSION = "4.1.1"
SCALA_VERSION = "2.13"
# Kafka logs through slf4j; without a binding the broker log is silent, which makes
# a failed start impossible to debug. reload4j is the binding Kafka 3.x shipped.
_SLF4J_BINDING = ("org.slf4j", "slf4j-reload4j", "1.7.36")
_MIN_JAVA = 17  # Kafka 4.x brokers require Java 17.

LIBS_ENV = "STREAMPLUG_KAFKA_LIBS"
_COMPLETE_MARKER = ".streamplug-complete"

_POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.streamplug</groupId>
  <artifactId>kafka-broker-libs</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>{b_group}</groupId>
      <artifactId>{b_artifact}</artifactId>
      <version>{b_version}</version>
    </dependency>
  </dependencies>
</project>
"""


class KafkaJarsError(RuntimeError):
    """The Kafka broker jars or the Java runtime to run them are not available."""


def kafka_libs_dir() -> Path:
    """Return the directory holding the flat broker classpath.

    ``$STREAMPLUG_KAFKA_LIBS`` wins (point it at an unpacked Kafka distribution's
    ``libs/`` to skip Maven entirely); otherwise a per-version directory under the
    XDG cache, so two Kafka versions never mix jars.
    """
    override = os.environ.get(LIBS_ENV)
    if override:
        return Path(override).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "streamplug" / f"kafka-{KAFKA_VERSION}" / "lib"


def _is_complete(libs: Path) -> bool:
    if (libs / _COMPLETE_MARKER).is_file():
        return True
    # A user-provided directory (e.g. a Kafka distribution's libs/) has no marker;
    # accept it when it contains the broker jar.
    return bool(os.environ.get(LIBS_ENV)) and any(libs.glob(f"kafka_{SCALA_VERSION}-*.jar"))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # Several pytest processes (other developers, xdist workers) may resolve the jars
    # at the same moment; one runs Maven, the others wait and reuse its result.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run_maven(dest: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaJarsError(
            "Maven ('mvn') is not on PATH, so the Apache Kafka "
            f"{KAFKA_VERSION} broker jars cannot be fetched from Maven Central. "
            "Install Maven and a Java 17+ JDK (Debian/Ubuntu: "
            "'apt-get install maven openjdk-17-jdk-headless'), or set "
            f"{LIBS_ENV} to the libs/ directory of an unpacked Kafka {KAFKA_VERSION} "
            "distribution, or set STREAMPLUG_KAFKA_BOOTSTRAP to use an external cluster."
        )
    find_java()  # Maven needs Java too; fail with the clearer message first.
    with tempfile.TemporaryDirectory(prefix="streamplug-kafka-pom-") as tmp:
        pom = Path(tmp) / "pom.xml"
        group, artifact, version = _SLF4J_BINDING
        pom.write_text(
            _POM.format(
                kafka=KAFKA_VERSION,
                scala=SCALA_VERSION,
                b_group=group,
                b_artifact=artifact,
                b_version=version,
            )
        )
        cmd = [
            mvn,
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={dest}",
            "-DincludeScope=runtime",
        ]
        _run_with_progress(cmd)


# Maven's batch-mode line for each file it fetched, e.g.
# "Downloaded from central: https://.../kafka_2.13-4.1.1.jar (6.6 MB at 2.1 MB/s)".
_DOWNLOADED = re.compile(r"Downloaded from \S+: \S+ \(([\d.]+) (B|kB|KB|MB|GB)")
_UNITS = {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9}
_UNREACHABLE = (
    "Could not transfer",
    "Connection refused",
    "UnknownHostException",
    "Connect to",
    "timed out",
    "Network is unreachable",
    "No route to host",
)
MAVEN_TIMEOUT_ENV = "STREAMPLUG_MAVEN_TIMEOUT_S"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _run_with_progress(cmd: list[str]) -> None:
    """Run Maven, saying what it fetched every few seconds, within a time bound: a
    registry that cannot be reached fails with a message, never a silent hang."""
    timeout_s = float(os.environ.get(MAVEN_TIMEOUT_ENV, "900"))
    _say(
        f"fetching the Apache Kafka {KAFKA_VERSION} broker jars (about 100 MB, once) from "
        f"Maven Central with Maven; set {LIBS_ENV} to an unpacked Kafka's libs/ to skip this"
    )
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    )
    assert proc.stdout is not None
    tail: list[str] = []
    files, size = 0, 0.0
    started = time.monotonic()
    last_report = started
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, name="maven-output", daemon=True).start()
    try:
        while True:
            left = started + timeout_s - time.monotonic()
            if left <= 0:
                proc.kill()
                raise KafkaJarsError(
                    f"Maven did not finish fetching the Kafka {KAFKA_VERSION} jars within "
                    f"{timeout_s:.0f} s ({files} files, {size / 1e6:.1f} MB so far): it cannot "
                    "reach its repository fast enough. Check the network and any proxy in "
                    f"~/.m2/settings.xml, raise {MAVEN_TIMEOUT_ENV}, or set {LIBS_ENV}"
                )
            try:
                line = lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                line = ""
            if line is None:
                break
            if line:
                tail = [*tail[-40:], line.rstrip()]
                found = _DOWNLOADED.search(line)
                if found:
                    files += 1
                    size += float(found.group(1)) * _UNITS[found.group(2)]
            now = time.monotonic()
            if now - last_report >= 5 and files:
                last_report = now
                _say(f"  ... {files} files, {size / 1e6:.1f} MB")
        code = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if code != 0:
        output = "\n".join(tail)[-4000:]
        reason = next((ln for ln in tail if any(k in ln for k in _UNREACHABLE)), None)
        if reason is not None:
            raise KafkaJarsError(
                f"Maven cannot reach its repository to fetch the Kafka {KAFKA_VERSION} jars "
                f"({reason.strip()[:300]}): check the network and any proxy or mirror in "
                f"~/.m2/settings.xml, or set {LIBS_ENV} to the libs/ directory of an unpacked "
                f"Kafka {KAFKA_VERSION} distribution"
            )
        raise KafkaJarsError(
            f"Maven failed (exit {code}) to resolve "
            f"org.apache.kafka:kafka_{SCALA_VERSION}:{KAFKA_VERSION} from Maven "
            f"Central. Command: {' '.join(cmd)}\n{output}"
        )
    _say(f"fetched {files} files ({size / 1e6:.1f} MB) in {time.monotonic() - started:.0f} s")


def ensure_kafka_jars(libs_dir: Path | None = None) -> list[Path]:
    """Make sure the broker jars are present and return them.

    Runs Maven only when the directory is missing or incomplete (~11 s with a cold
    ``~/.m2``-to-directory copy, ~2 s when ``~/.m2`` is warm). The copy goes to a
    sibling temp directory and is renamed into place, so an interrupted run never
    leaves a half-filled classpath behind.
    """
    libs = libs_dir if libs_dir is not None else kafka_libs_dir()
    if not _is_complete(libs):
        with _locked(libs.parent / f".{libs.name}.lock"):
            if not _is_complete(libs):
                if libs.exists() and any(libs.iterdir()):
                    # Never delete a directory we did not fill (a mistyped
                    # STREAMPLUG_KAFKA_LIBS could point anywhere).
                    raise KafkaJarsError(
                        f"{libs} is not empty but holds no complete Kafka {KAFKA_VERSION} "
                        f"classpath; empty it or point {LIBS_ENV} elsewhere"
                    )
                staging = Path(tempfile.mkdtemp(prefix=f".{libs.name}-", dir=libs.parent))
                try:
                    _run_maven(staging)
                    jars = sorted(p.name for p in staging.glob("*.jar"))
                    if not any(j.startswith(f"kafka_{SCALA_VERSION}-") for j in jars):
                        raise KafkaJarsError(
                            f"Maven ran but produced no kafka_{SCALA_VERSION} jar in {staging}"
                        )
                    (staging / _COMPLETE_MARKER).write_text("\n".join(jars) + "\n")
                    if libs.exists():
                        libs.rmdir()
                    staging.rename(libs)
                finally:
                    if staging.exists():
                        shutil.rmtree(staging, ignore_errors=True)
    jars_found = sorted(libs.glob("*.jar"))
    if not jars_found:
        raise KafkaJarsError(f"no jars in {libs}; delete it and retry, or unset {LIBS_ENV}")
    return jars_found


def kafka_classpath(libs_dir: Path | None = None) -> str:
    """Return the ``java -cp`` value for the broker, fetching the jars if needed."""
    return os.pathsep.join(str(p) for p in ensure_kafka_jars(libs_dir))


def _java_major(java: str) -> int | None:
    try:
        proc = subprocess.run(
            [java, "-version"], capture_output=True, text=True, check=False, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    # `java -version` prints to stderr, e.g. 'openjdk version "17.0.15" 2025-04-15'
    # or, for Java 8, 'java version "1.8.0_392"'.
    match = re.search(r'version "(\d+)(?:\.(\d+))?', proc.stderr + proc.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):
        major = int(match.group(2))
    return major


def find_java() -> str:
    """Return the path of a Java 17+ ``java`` executable (``$JAVA_HOME`` first)."""
    candidates: list[str] = []
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidates.append(str(Path(java_home) / "bin" / "java"))
    on_path = shutil.which("java")
    if on_path:
        candidates.append(on_path)
    seen: list[str] = []
    for java in candidates:
        major = _java_major(java)
        if major is not None and major >= _MIN_JAVA:
            return java
        seen.append(f"{java} (version {major if major is not None else 'unknown'})")
    found = "; found: " + ", ".join(seen) if seen else "; no 'java' on PATH and JAVA_HOME unset"
    raise KafkaJarsError(
        f"Apache Kafka {KAFKA_VERSION} needs Java {_MIN_JAVA} or newer{found}. "
        "Install a JDK (Debian/Ubuntu: 'apt-get install openjdk-17-jdk-headless') and "
        "put it on PATH or set JAVA_HOME, or set STREAMPLUG_KAFKA_BOOTSTRAP to use an "
        "external cluster."
    )


def main(argv: list[str] | None = None) -> int:
    """Pre-fetch the jars: ``python3 path/to/jars.py [LIBS_DIR]`` (stdlib only, so CI
    can run it before any package is installed). Prints the directory."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else None
    try:
        jars = ensure_kafka_jars(target)
        find_java()
    except KafkaJarsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    where = target if target is not None else kafka_libs_dir()
    print(f"Apache Kafka {KAFKA_VERSION}: {len(jars)} jars in {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
