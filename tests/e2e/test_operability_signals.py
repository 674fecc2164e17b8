"""Hopeless jobs fail fast and every job stops on a signal: real ``streamplug run`` and
``env.execute()`` processes against a real Kafka broker with a SASL/PLAIN listener.

- a wrong password and a misspelled librdkafka property fail in under 15 s with
  checkpointing on and a restart strategy that would retry for minutes;
- SIGTERM during a restart loop ends the process in under 5 s;
- SIGINT and SIGTERM stop a healthy job with a final checkpoint and exit 0, the same way
  for ``streamplug run`` and for a script calling ``env.execute()``;
- no thread traceback on the way out.
"""

from __future__ import annotations

import signal
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from operability_support import Process

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PASSWORD = "app-secret-7c1d"
WRONG = "not-the-password-93ab"
FAIL_FAST_S = 15.0
STOP_WITHIN_S = 5.0


class Cluster:
    def __init__(self, cluster: object, plain: str, sasl: str) -> None:
        self.cluster = cluster
        self.plain = plain
        self.sasl = sasl

    def topic(self, records: int = 0) -> str:
        from confluent_kafka import Producer

        name = f"ops-{uuid.uuid4().hex[:10]}"
        self.cluster.create_topic(name, partitions=1)  # type: ignore[attr-defined]
        if records:
            producer = Producer({"bootstrap.servers": self.plain})
            for i in range(records):
                producer.produce(name, value=str(i).encode())
            assert producer.flush(30) == 0
        return name


@pytest.fixture(scope="module")
def kafka() -> Iterator[Cluster]:
    from streamplug_testing.broker import KafkaCluster, ListenerSpec

    jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="admin" password="admin-pw" user_admin="admin-pw" user_app="{PASSWORD}";'
    )
    listeners = [
        ListenerSpec("CLIENT"),
        ListenerSpec("SASL", "SASL_PLAINTEXT", ("PLAIN",), {"plain.sasl.jaas.config": jaas}),
    ]
    with KafkaCluster(listeners=listeners) as cluster:
        yield Cluster(
            cluster,
            cluster.bootstrap_servers_for("CLIENT"),
            cluster.bootstrap_servers_for("SASL"),
        )


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.kill()


def _pipeline(
    tmp_path: Path,
    bootstrap: str,
    topic: str,
    *,
    source_properties: str = "",
    transform: str | None = None,
    restart_delay: str = "30 s",
) -> Path:
    """A checkpointed Kafka -> discard pipeline whose restart strategy would retry for
    minutes: only a classified failure or a signal ends it sooner."""
    transform_table = f'\n[[transform]]\nmap = "{transform}"\n' if transform else ""
    text = textwrap.dedent(
        f"""\
        [job]
        name = "ops-{uuid.uuid4().hex[:8]}"

        [checkpointing]
        interval = "500 ms"
        storage = "{tmp_path / "chk"}"

        [restart_strategy]
        type = "fixed-delay"
        attempts = 100
        delay = "{restart_delay}"

        [source]
        connector = "kafka"
        bootstrap_servers = "{bootstrap}"
        topics = ["{topic}"]
        starting_offsets = "earliest"
        format = "string"

        [source.properties]
        {source_properties}
        {transform_table}
        [sink]
        connector = "discard"
        """
    )
    path = tmp_path / "pipeline.toml"
    path.write_text(text)
    return path


def _run(processes: list[Process], pipeline: Path, env: dict[str, str] | None = None) -> Process:
    process = Process(
        [sys.executable, "-m", "streamplug.cli", "run", str(pipeline), "--no-progress"],
        pipeline.parent,
        env,
    )
    processes.append(process)
    return process


def _no_traceback(process: Process) -> None:
    assert "Traceback" not in process.stderr, process.stderr
    assert "Exception in thread" not in process.stderr, process.stderr


# -- hopeless failures fail fast ---------------------------------------------------------


def test_a_wrong_password_fails_a_checkpointed_run_fast(
    kafka: Cluster, tmp_path: Path, processes: list[Process]
) -> None:
    jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        'username=\\"app\\" password=\\"${KAFKA_PASSWORD}\\";'
    )
    pipeline = _pipeline(
        tmp_path,
        kafka.sasl,
        kafka.topic(records=3),
        source_properties=(
            '"security.protocol" = "SASL_PLAINTEXT"\n'
            '"sasl.mechanism" = "PLAIN"\n'
            f'"sasl.jaas.config" = "{jaas}"'
        ),
    )
    process = _run(processes, pipeline, {"KAFKA_PASSWORD": WRONG})
    took = process.wait(60)
    assert took < FAIL_FAST_S, f"took {took:.1f} s:\n{process.stderr}"
    assert process.proc.returncode == 1, process.stderr
    assert (
        "failed after 1 attempt(s): KafkaAuthenticationError: SASL PLAIN authentication "
        "failed: check the credentials (sasl.jaas.config or sasl.username/sasl.password, or the "
        "Kerberos keytab and principal) and that the brokers enable this mechanism on this "
        "listener"
    ) in process.stderr
    assert WRONG not in process.stderr + process.stdout
    assert "restarting in" not in process.stderr
    _no_traceback(process)


def test_a_misspelled_property_fails_a_checkpointed_run_fast(
    kafka: Cluster, tmp_path: Path, processes: list[Process]
) -> None:
    pipeline = _pipeline(
        tmp_path,
        kafka.plain,
        kafka.topic(records=3),
        source_properties='"fetch.mx.bytes" = "1048576"',
    )
    process = _run(processes, pipeline)
    took = process.wait(60)
    assert took < FAIL_FAST_S, f"took {took:.1f} s:\n{process.stderr}"
    assert process.proc.returncode == 1, process.stderr
    assert (
        "failed after 1 attempt(s): ConfigError: Kafka source: librdkafka has no configuration "
        "property 'fetch.mx.bytes'; correct or remove it (the properties it knows: "
        "https://github.com/confluentinc/librdkafka/blob/master/CONFIGURATION.md)"
    ) in process.stderr
    assert "the setting is at" in process.stderr and "fetch.mx.bytes" in process.stderr
    _no_traceback(process)


# -- signals -----------------------------------------------------------------------------


def _always_failing_transform(tmp_path: Path) -> str:
    (tmp_path / "ops_transforms.py").write_text(
        "def explode(value):\n    raise RuntimeError(f'transient trouble with {value!r}')\n"
    )
    return "ops_transforms:explode"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_a_restart_loop_ends_the_run_at_once(
    kafka: Cluster, tmp_path: Path, processes: list[Process], sig: signal.Signals
) -> None:
    transform = _always_failing_transform(tmp_path)
    pipeline = _pipeline(tmp_path, kafka.plain, kafka.topic(records=3), transform=transform)
    process = _run(processes, pipeline)
    process.wait_for("restarting in 30000 ms", timeout=60)
    process.proc.send_signal(sig)
    took = process.wait(30)
    assert took < STOP_WITHIN_S, f"took {took:.1f} s:\n{process.stderr}"
    # No attempt runs, so no final checkpoint: the exit code says it was not a clean stop.
    assert process.proc.returncode == 128 + sig, process.stderr
    assert "stopped during its restart delay, without a final checkpoint" in process.stderr
    assert "transient trouble with '0'" in process.stderr
    _no_traceback(process)


_SCRIPT = """\
import sys
from streamplug.runtime import RestartStrategies, StreamExecutionEnvironment
from streamplug_kafka_source import KafkaOffsetsInitializer, KafkaSource
from streamplug.connectors import CollectSink
from streamplug_serde import SimpleStringSchema

bootstrap, topic, storage, fail = sys.argv[1:5]
env = StreamExecutionEnvironment.get_execution_environment()
env.enable_checkpointing(500)
env.get_checkpoint_config().set_checkpoint_storage_dir(storage)
env.set_restart_strategy(RestartStrategies.fixed_delay_restart(100, 30_000))
source = (
    KafkaSource.builder()
    .set_bootstrap_servers(bootstrap)
    .set_topics(topic)
    .set_value_only_deserializer(SimpleStringSchema())
    .set_starting_offsets(KafkaOffsetsInitializer.earliest())
    .build()
)

def explode(value):
    raise RuntimeError(f"transient trouble with {value!r}")

stream = env.from_source(source, None, "in")
if fail == "fail":
    stream = stream.map(explode)
stream.map(lambda v: print(f"record {v}", flush=True) or v).sink_to(CollectSink())
env.execute("script-job")
print("after execute", flush=True)
"""


def _script(processes: list[Process], tmp_path: Path, kafka: Cluster, fail: bool) -> Process:
    script = tmp_path / "job.py"
    script.write_text(_SCRIPT)
    topic = kafka.topic(records=3)
    process = Process(
        [
            sys.executable,
            str(script),
            kafka.plain,
            topic,
            str(tmp_path / "chk"),
            "fail" if fail else "run",
        ],
        tmp_path,
    )
    processes.append(process)
    return process


def test_sigterm_during_a_restart_loop_ends_an_execute_script_at_once(
    kafka: Cluster, tmp_path: Path, processes: list[Process]
) -> None:
    process = _script(processes, tmp_path, kafka, fail=True)
    process.wait_for("restarting in 30000 ms", timeout=60)
    process.proc.send_signal(signal.SIGTERM)
    took = process.wait(30)
    assert took < STOP_WITHIN_S, f"took {took:.1f} s:\n{process.stderr}"
    assert process.proc.returncode == 128 + signal.SIGTERM, process.stderr
    assert "after execute" not in process.stdout
    _no_traceback(process)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("how", ["run", "execute"])
def test_a_signal_stops_a_running_job_with_a_final_checkpoint_and_exit_0(
    kafka: Cluster, tmp_path: Path, processes: list[Process], sig: signal.Signals, how: str
) -> None:
    if how == "run":
        (tmp_path / "ops_transforms.py").write_text(
            "def show(value):\n    print(f'record {value}', flush=True)\n    return value\n"
        )
        pipeline = _pipeline(
            tmp_path, kafka.plain, kafka.topic(records=3), transform="ops_transforms:show"
        )
        process = _run(processes, pipeline)
    else:
        process = _script(processes, tmp_path, kafka, fail=False)
    process.wait_for("record 2", timeout=60)
    process.proc.send_signal(sig)
    took = process.wait(30)
    assert process.proc.returncode == 0, process.stderr
    assert took < STOP_WITHIN_S, f"took {took:.1f} s:\n{process.stderr}"
    assert f"{sig.name}: stopping: taking a final checkpoint" in process.stderr
    checkpoints = sorted((tmp_path / "chk").rglob("chk-*.json"))
    assert checkpoints, f"no checkpoint in {tmp_path / 'chk'}"
    if how == "run":
        assert "FINISHED" in process.stdout
    else:
        assert "stopped by" in process.stderr and "last checkpoint" in process.stderr
    _no_traceback(process)


def test_a_second_signal_cancels_at_once(
    kafka: Cluster, tmp_path: Path, processes: list[Process]
) -> None:
    # A checkpoint that cannot complete (a blocked map) keeps the first signal's stop busy.
    (tmp_path / "ops_transforms.py").write_text(
        "import time\n"
        "def stall(value):\n    print(f'record {value}', flush=True)\n    time.sleep(600)\n"
    )
    pipeline = _pipeline(
        tmp_path, kafka.plain, kafka.topic(records=3), transform="ops_transforms:stall"
    )
    process = _run(processes, pipeline)
    process.wait_for("record 0", timeout=60)
    process.proc.send_signal(signal.SIGTERM)
    process.wait_for("stopping: taking a final checkpoint", timeout=10)
    time.sleep(0.5)
    process.proc.send_signal(signal.SIGTERM)
    took = process.wait(30)
    assert took < STOP_WITHIN_S, f"took {took:.1f} s:\n{process.stderr}"
    assert process.proc.returncode == 128 + signal.SIGTERM, process.stderr
    assert "SIGTERM again: cancelling" in process.stderr
    _no_traceback(process)
