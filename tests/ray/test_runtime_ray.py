"""The ``ray`` runtime on a local Ray cluster the tests start: a head (no CPUs, so no slot
lands there) and three worker nodes of one CPU each, all on this machine.

Run by tox's ``ray`` environment (Ray is not in the other environments' dependencies).
"""

from __future__ import annotations

import collections
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason="the ray runtime tests need Ray: tox -e ray")

import cloudpickle  # noqa: E402
from confluent_kafka import Producer  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from streamplug.api.serde import DeserializationSchema, SerializationSchema  # noqa: E402
from streamplug.api.sink import DeliveryGuarantee  # noqa: E402
from streamplug.connectors import CollectionSource  # noqa: E402
from streamplug.connectors.files import TransactionalFileSink  # noqa: E402
from streamplug.errors import ConfigError, JobFailedError  # noqa: E402
from streamplug.runtime import RestartStrategies, StreamExecutionEnvironment, faults  # noqa: E402
from streamplug_kafka_common.admin import create_topic, read_all  # noqa: E402
from streamplug_kafka_sink import KafkaRecordSerializationSchema, KafkaSink  # noqa: E402
from streamplug_kafka_source import KafkaOffsetsInitializer, KafkaSource  # noqa: E402
from streamplug_ray.runtime import RayRuntime, _requirements  # noqa: E402

pytestmark = pytest.mark.timeout(600)

# The Ray nodes cannot import this test module (a job script's own functions travel by
# value because they live in __main__); ship its classes and functions by value too.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

WORKER_NODES = 3
KILLS = 6


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Cluster]:
    # Ray's socket paths must stay short, and Cluster() wants its temp folder to exist.
    temp = tempfile.mkdtemp(prefix="sp-ray-", dir="/tmp")
    # Cluster() records its address in $RAY_TMPDIR/ray, which must exist; a folder of our
    # own keeps a Ray that someone else runs on this machine out of the tests' way.
    os.makedirs(os.path.join(temp, "ray"))
    previous = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = temp
    # A submitted job's entrypoint runs on the head node with the head's PATH: give it
    # this environment's commands (streamplug), as an installation on the head would.
    bin_dir = str(Path(sys.executable).parent)
    previous_path = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{previous_path}"
    started = time.monotonic()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            # The job submission server (ray job submit) lives in the dashboard.
            "include_dashboard": True,
            "dashboard_port": 0,
            "temp_dir": temp,
            # A dead node is noticed in ~3 s instead of ~30 s.
            "_system_config": {
                "health_check_initial_delay_ms": 0,
                "health_check_period_ms": 1000,
                "health_check_timeout_ms": 1000,
                "health_check_failure_threshold": 3,
            },
        },
    )
    for _ in range(WORKER_NODES):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    print(
        f"\nlocal Ray cluster (head + {WORKER_NODES} nodes) up in {time.monotonic() - started:.1f} s"
    )
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        os.environ["PATH"] = previous_path
        if previous is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = previous
        shutil.rmtree(temp, ignore_errors=True)


def _runtime(client: Any) -> RayRuntime:
    runtime = client._run.runtime
    assert isinstance(runtime, RayRuntime)
    return runtime


def _wait_for(predicate: Any, timeout: float, what: str, client: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if client is not None and client.status.is_terminal:
            client.wait(0)
            raise AssertionError(f"the job ended ({client.status}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _session_logs(cluster: Cluster) -> str:
    text = []
    logs = Path(cluster.head_node.get_session_dir_path()) / "logs"
    for path in logs.rglob("*"):
        if path.is_file():
            text.append(path.read_text(errors="replace"))
    return "\n".join(text)


def test_options_are_checked_when_the_runtime_is_chosen() -> None:
    """Without starting Ray: a wrong option fails at set_runtime, naming it and the fix."""
    connected = ray.is_initialized()
    env = StreamExecutionEnvironment.get_execution_environment()
    assert "ray" in env.plugin_host.names("runtime")  # registered through the entry point
    with pytest.raises(ConfigError, match=r"unknown option 'adress'.*did you mean 'address'\?"):
        env.set_runtime("ray", adress="10.0.0.5:6379")
    with pytest.raises(ConfigError, match="placement must be one of SPREAD, PACK"):
        env.set_runtime("ray", placement="everywhere")
    with pytest.raises(ConfigError, match="cpus_per_worker must be a positive number"):
        env.set_runtime("ray", cpus_per_worker=0)
    env.set_runtime("ray", placement="pack", runtime_env={"env_vars": {"A": "b"}})
    runtime = env.create_runtime()
    assert isinstance(runtime, RayRuntime) and runtime.placement == "PACK"
    assert runtime.worker_count(4) == 4
    assert RayRuntime(workers=2).worker_count(4) == 2
    # Choosing the runtime neither starts nor joins Ray.
    assert ray.is_initialized() == connected
    # What the slots check on their nodes: plugins a slot uses, not driver-only ones
    # (CLI commands, runtimes).
    needs = {n.entry_point: n for n in _requirements(env.plugin_host).plugins}
    assert {"kafka_source", "kafka_sink", "serde"} <= set(needs)
    assert not {"testing", "demo", "ray"} & set(needs)
    assert needs["kafka_sink"].distribution == "streamplug-kafka-sink"
    assert "env_vars" not in repr(runtime)


class Keyed:
    """``x`` -> ``x * 1000 + k`` where ``k`` comes from a secret: the output proves the
    secret reached the actors, and the test then looks for it where it must not be."""

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def __call__(self, x: int) -> int:
        return x * 1000 + int(self.secret[-3:], 16) % 1000


def test_a_job_runs_on_actors_spread_over_the_nodes(
    ray_cluster: Cluster, tmp_path: Path, caplog: Any
) -> None:
    secret = secrets.token_hex(16)
    out = tmp_path / "published"
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2).enable_checkpointing(200).set_runtime("ray")
    env.get_checkpoint_config().set_checkpoint_storage_dir(tmp_path / "checkpoints")
    source = CollectionSource(list(range(6000)), batch_size=100, records_per_second=3000)
    env.from_source(source, None, "n").map(Keyed(secret)).sink_to(TransactionalFileSink(out))
    caplog.set_level("DEBUG")
    client = env.execute_async("on-ray")
    _wait_for(lambda: len(client.worker_pids()) == 2, 120, "two slot actors", client)
    runtime = _runtime(client)
    pids = client.worker_pids()
    nodes = {h.facts.node_id for h in runtime.handles if h.facts}
    memory = runtime.memory_kb()
    result = client.wait(120)
    assert client.runtime == "ray"
    assert len(set(pids)) == 2 and os.getpid() not in pids
    # SPREAD: one slot per node while there are nodes enough.
    assert len(nodes) == 2 and ray_cluster.head_node.node_id not in nodes
    k = int(secret[-3:], 16) % 1000
    published = TransactionalFileSink.read_committed(out)
    assert sorted(published) == [x * 1000 + k for x in range(6000)]
    assert result.records_in == 6000 and result.checkpoints_completed >= 1
    # Each actor holds the job: a Python process with streamplug, Ray's core worker and
    # the job's subtasks. Printed for the docs' figures.
    print(f"\nRay timings {runtime.timings}, actor memory (kB) {memory}")
    assert all(m["VmHWM"] > 0 for m in memory.values())
    # The actors end with the job run, and the placement group with them.
    _wait_for(lambda: all(not _pid_alive(p) for p in pids), 30, "the slot actors' processes to end")
    assert secret not in repr(runtime)
    assert secret not in caplog.text
    assert secret not in _session_logs(ray_cluster)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_plugin_missing_on_a_node_fails_the_job_naming_it_and_the_node(
    ray_cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A streamplug plugin installed where the driver runs but not on the nodes."""
    site = tmp_path / "driver-only"
    (site / "needed_plugin").mkdir(parents=True)
    # It adjusts Kafka clients: a slot without it would run with other client settings.
    (site / "needed_plugin" / "__init__.py").write_text(
        "from streamplug.plugins import hookimpl\n"
        "@hookimpl\n"
        "def streamplug_configure_client(properties, role, connector):\n"
        "    pass\n"
        "def shift(x):\n"
        "    return x + 1\n"
    )
    info = site / "streamplug_needed-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: streamplug-needed\nVersion: 1.2\n")
    (info / "top_level.txt").write_text("needed_plugin\n")
    (info / "entry_points.txt").write_text("[streamplug]\nneeded = needed_plugin\n")
    # Only this process sees it: Ray gives its workers the driver's working directory and
    # script directory, not the rest of its sys.path.
    monkeypatch.syspath_prepend(str(site))
    import needed_plugin

    env = StreamExecutionEnvironment.get_execution_environment()
    assert "needed" in {p.name for p in env.plugin_host.plugin_infos()}
    env.set_parallelism(2).set_runtime("ray")
    env.get_checkpoint_config().set_checkpoint_storage_dir(tmp_path / "checkpoints")
    env.from_source(CollectionSource([1, 2, 3]), None, "n").map(needed_plugin.shift).sink_to(
        TransactionalFileSink(tmp_path / "out")
    )
    started = time.monotonic()
    with pytest.raises(JobFailedError) as failed:
        env.execute("missing-plugin")
    assert isinstance(failed.value.__cause__, ConfigError), "a missing plugin is not retried"
    message = str(failed.value)
    assert "'needed'" in message and "streamplug-needed 1.2" in message, message
    assert "needed_plugin" in message
    node_ids = {n.node_id for n in ray_cluster.worker_nodes}
    assert any(node_id in message for node_id in node_ids), message
    assert "pip install" in message or "install streamplug-needed==1.2" in message
    assert time.monotonic() - started < 60
    del sys.modules["needed_plugin"]


def test_killing_the_driver_ends_its_actors(ray_cluster: Cluster, tmp_path: Path) -> None:
    """Ray ends the actors a driver owns when the driver dies, so a slot can never go on
    writing (or commit) without its coordinator."""
    script = tmp_path / "job.py"
    script.write_text(
        "import sys, time\n"
        "import ray\n"
        "from streamplug.connectors import CollectionSource\n"
        "from streamplug.connectors.files import TransactionalFileSink\n"
        "from streamplug.runtime import StreamExecutionEnvironment\n"
        "ray.init(address=sys.argv[1])\n"
        "env = StreamExecutionEnvironment.get_execution_environment()\n"
        "env.set_parallelism(2).set_runtime('ray')\n"
        "source = CollectionSource(list(range(10**6)), records_per_second=100)\n"
        f"env.from_source(source, None, 'n').sink_to(TransactionalFileSink({str(tmp_path / 'out')!r}))\n"
        "client = env.execute_async('forever')\n"
        "while len(client.worker_pids()) < 2:\n"
        "    time.sleep(0.05)\n"
        "print(' '.join(map(str, client.worker_pids())), flush=True)\n"
        "time.sleep(600)\n"
    )
    driver = subprocess.Popen(
        [sys.executable, str(script), ray_cluster.address],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert driver.stdout is not None
        pids = [int(p) for p in driver.stdout.readline().split()]
        assert len(pids) == 2 and all(_pid_alive(p) for p in pids)
        driver.kill()
        driver.wait(10)
        killed = time.monotonic()
        _wait_for(lambda: not any(_pid_alive(p) for p in pids), 60, "the actors to end")
        print(f"\nactors gone {time.monotonic() - killed:.1f} s after their driver was killed")
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()


def test_ray_job_submit_runs_streamplug_run_on_the_cluster(
    ray_cluster: Cluster, tmp_path: Path
) -> None:
    """The documented command: ``ray job submit --working-dir . -- streamplug run job.toml
    --runtime ray``. Ray runs the CLI on the head node with RAY_ADDRESS set, the runtime
    joins that cluster, and the job's own module travels in the working directory."""
    seen = tmp_path / "seen"
    work = tmp_path / "job"
    work.mkdir()
    (work / "stamp.py").write_text(
        "import os, ray\n"
        "def record(x):\n"
        "    node = ray.get_runtime_context().get_node_id()\n"
        f"    with open({str(seen)!r}, 'a') as f:\n"
        "        f.write(f'{node} {os.getpid()} {x}\\n')\n"
        "    return x\n"
    )
    (work / "job.toml").write_text(
        '[job]\nname = "numbers"\nparallelism = 2\n\n'
        '[checkpointing]\ninterval = "200 ms"\n\n'
        '[source]\nconnector = "collection"\nelements = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]\n\n'
        '[[transform]]\nmap = "stamp:record"\n\n'
        '[sink]\nconnector = "discard"\n'
    )
    ray_cli = shutil.which("ray", path=str(Path(sys.executable).parent))
    assert ray_cli is not None, "the ray command is not installed (pip install 'ray[default]')"
    done = subprocess.run(
        [
            ray_cli,
            "job",
            "submit",
            "--address",
            f"http://{ray_cluster.webui_url}",
            "--working-dir",
            str(work),
            "--",
            "streamplug",
            "run",
            "job.toml",
            "--runtime",
            "ray",
            "--restore",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "job 'numbers' FINISHED" in done.stdout, done.stdout[-3000:]
    rows = [line.split() for line in seen.read_text().splitlines()]
    assert sorted(int(value) for _, _, value in rows) == list(range(1, 13))
    # Two slot actors on two of the cluster's worker nodes.
    assert len({pid for _, pid, _ in rows}) == 2
    nodes = {node for node, _, _ in rows}
    assert len(nodes) == 2 and nodes <= {n.node_id for n in ray_cluster.worker_nodes}


# -- Kafka -> map -> Kafka EXACTLY_ONCE with actors and a node lost ----------------------------


class Utf8In(DeserializationSchema[str]):
    def deserialize(self, message: bytes) -> str:
        return message.decode()


class Utf8Out(SerializationSchema[str]):
    def serialize(self, element: str) -> bytes:
        return element.encode()


class Slow:
    """``v`` -> ``"v:mapped"`` at most ``rate`` records a second per subtask, so the job
    runs long enough to be broken several times."""

    def __init__(self, rate: int) -> None:
        self.rate = rate

    def __call__(self, value: str) -> str:
        time.sleep(1 / self.rate)
        return f"{value}:mapped"


def _topics(bootstrap: str, records: int, partitions: int) -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    source, sink = f"ray-in-{tag}", f"ray-out-{tag}"
    create_topic(bootstrap, source, partitions, 1)
    create_topic(bootstrap, sink, partitions, 1)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i in range(records):
        producer.produce(source, str(i).encode(), partition=i % partitions)
        if i % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    return source, sink


def _kafka_job(
    bootstrap: str,
    source_topic: str,
    sink_topic: str,
    tmp_path: Path,
    rate: int,
    **runtime_options: Any,
) -> StreamExecutionEnvironment:
    prefix = f"ray-eos-{uuid.uuid4().hex[:8]}"
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2).enable_checkpointing(300).set_runtime("ray", **runtime_options)
    env.get_checkpoint_config().set_checkpoint_storage_dir(tmp_path / "checkpoints")
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(20, 200))
    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(bootstrap)
        .set_topics(source_topic)
        .set_group_id(f"{prefix}-reader")
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_bounded(KafkaOffsetsInitializer.latest())
        .set_value_only_deserializer(Utf8In())
        .set_property("poll.max.records", 100)
        .build()
    )
    sink = (
        KafkaSink.builder()
        .set_bootstrap_servers(bootstrap)
        .set_record_serializer(
            KafkaRecordSerializationSchema.builder()
            .set_topic(sink_topic)
            .set_value_serialization_schema(Utf8Out())
            .build()
        )
        .set_delivery_guarantee(DeliveryGuarantee.EXACTLY_ONCE)
        .set_transactional_id_prefix(prefix)
        .build()
    )
    env.from_source(source, None, "in").map(Slow(rate)).sink_to(sink)
    return env


def _check_exact(bootstrap: str, sink_topic: str, records: int) -> None:
    got = [
        m.value().decode() for m in read_all(bootstrap, sink_topic, "read_committed", timeout=120)
    ]
    counts = collections.Counter(got)
    duplicates = sum(c - 1 for c in counts.values() if c > 1)
    missing = records - len(counts)
    assert (missing, duplicates) == (0, 0), f"{missing} missing, {duplicates} duplicated"
    assert set(got) == {f"{i}:mapped" for i in range(records)}


def test_a_checkpoint_committed_by_one_slot_only_is_merged_and_output_stays_exact(
    ray_cluster: Cluster, kafka_bootstrap: str, tmp_path: Path, caplog: Any
) -> None:
    """Slot 1's actor dies right before its third commit (a named fault point) while
    slot 0 commits: recovery keeps slot 0's progress and rewinds only slot 1's splits."""
    records = 8_000
    source_topic, sink_topic = _topics(kafka_bootstrap, records, 6)
    env = _kafka_job(
        kafka_bootstrap,
        source_topic,
        sink_topic,
        tmp_path,
        1000,
        runtime_env={"env_vars": {faults.ENV: "kafka_sink.before_commit@1:3"}},
    )
    caplog.set_level("INFO", logger="streamplug.runtime")
    result = env.execute("ray-merge")
    # Two attempts, or more when an unrelated start-up failure came first.
    assert result.attempts >= 2, "slot 1 was never killed at its commit"
    lost = [r.getMessage() for r in caplog.records if "worker slot 1" in r.getMessage()]
    assert any("is lost" in m for m in lost), lost
    merged = [r.getMessage() for r in caplog.records if "merged checkpoint" in r.getMessage()]
    assert merged and "committed in worker slots [0] and not in [1]" in merged[0], merged
    _check_exact(kafka_bootstrap, sink_topic, records)


def test_exactly_once_with_actors_killed_and_a_node_removed(
    ray_cluster: Cluster, kafka_bootstrap: str, tmp_path: Path
) -> None:
    records = 40_000
    source_topic, sink_topic = _topics(kafka_bootstrap, records, 6)
    env = _kafka_job(kafka_bootstrap, source_topic, sink_topic, tmp_path, 700)
    client = env.execute_async("ray-eos")
    rng = random.Random(11)
    kills: list[int] = []
    moves: list[tuple[str, str]] = []
    errors: list[BaseException] = []
    recoveries: list[float] = []
    memory: dict[int, dict[str, int]] = {}

    def chaos() -> None:
        try:
            runtime = _runtime(client)
            _wait_for(
                lambda: len(client.worker_pids()) == 2 and client.metrics().records_out > 500,
                120,
                "the job to start",
                client,
            )
            # With Kafka clients (a consumer, a transactional producer) in each slot.
            memory.update(runtime.memory_kb())
            # Slot actors killed at random moments once the job made progress, by SIGKILL
            # and by Ray (ray.kill, which lets Ray restart the actor)...
            for kill in range(KILLS):
                seen = client.metrics().records_out
                _wait_for(
                    lambda seen=seen: (
                        len(client.worker_pids()) == 2
                        and client.metrics().records_out > seen + 1000
                    ),
                    120,
                    "the job to make progress",
                )
                time.sleep(rng.uniform(0.0, 0.8))
                victim = rng.choice([h for h in runtime.handles if h.alive])
                pid = victim.pid
                assert pid is not None
                if kill % 2:
                    ray.kill(victim.actor, no_restart=False)
                else:
                    os.kill(pid, signal.SIGKILL)
                killed_at = time.monotonic()
                kills.append(pid)
                _wait_for(
                    lambda pid=pid: (
                        len(client.worker_pids()) == 2 and pid not in client.worker_pids()
                    ),
                    60,
                    "the killed slot to be back",
                )
                recoveries.append(time.monotonic() - killed_at)
            # ...then a node that hosts a slot goes away; Ray moves that slot to the
            # spare node.
            seen = client.metrics().records_out
            _wait_for(
                lambda: (
                    len(client.worker_pids()) == 2 and client.metrics().records_out > seen + 1500
                ),
                120,
                "the job to make progress",
            )
            handle = runtime.handles[1]
            assert handle.facts is not None
            old_node = handle.facts.node_id
            node = next(n for n in ray_cluster.worker_nodes if n.node_id == old_node)
            ray_cluster.remove_node(node, allow_graceful=False)
            removed_at = time.monotonic()
            _wait_for(
                lambda: (
                    handle.alive and handle.facts is not None and handle.facts.node_id != old_node
                ),
                120,
                "the slot to come back on another node",
            )
            moves.append((old_node, handle.facts.node_id))
            recoveries.append(time.monotonic() - removed_at)
        except BaseException as exc:
            errors.append(exc)

    started = time.monotonic()
    breaker = threading.Thread(target=chaos, daemon=True)
    breaker.start()
    try:
        result = client.wait(420)
    finally:
        breaker.join(130)
        # Later tests get the cluster back at full size.
        while len(ray_cluster.worker_nodes) < WORKER_NODES:
            ray_cluster.add_node(num_cpus=1)
    elapsed = time.monotonic() - started
    assert not errors, errors
    assert len(kills) == KILLS and len(moves) == 1, (kills, moves)
    assert result.attempts >= KILLS + 2, result.attempts
    _check_exact(kafka_bootstrap, sink_topic, records)
    print(
        f"\n{records} records, {len(kills)} actor kills and a node removed, "
        f"{result.attempts} attempts, {elapsed:.1f} s; slot back after "
        f"{', '.join(f'{r:.1f}' for r in recoveries)} s; actor memory (kB) {memory}"
    )
