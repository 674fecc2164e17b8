"""The ``ray`` runtime on a local Ray cluster the tests start: a head (no CPUs, so no slot
lands there) and three worker nodes of one CPU each, all on this machine.

Run by tox's ``ray`` environment (Ray is not in the other environments' dependencies).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
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
import kafka_job_support  # noqa: E402
from kafka_job_support import (  # noqa: E402
    CHECKPOINT_FAULTS,
    SINK_FAULTS,
    Throttle,
    add_kafka_job,
    check_exact,
    create_topics,
)
from ray.cluster_utils import Cluster  # noqa: E402

from streamplug.connectors import CollectionSource  # noqa: E402
from streamplug.connectors.files import TransactionalFileSink  # noqa: E402
from streamplug.errors import ConfigError, JobFailedError  # noqa: E402
from streamplug.runtime import RestartStrategies, StreamExecutionEnvironment, faults  # noqa: E402
from streamplug_ray.runtime import RayRuntime, _requirements  # noqa: E402

pytestmark = pytest.mark.timeout(600)

# The Ray nodes cannot import this test module (a job script's own functions travel by
# value because they live in __main__); ship its classes and functions by value too.
cloudpickle.register_pickle_by_value(sys.modules[__name__])
cloudpickle.register_pickle_by_value(kafka_job_support)

WORKER_NODES = 3


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
            "_system_config": {
                # A dead node is noticed in ~3 s instead of ~30 s.
                "health_check_initial_delay_ms": 0,
                "health_check_period_ms": 1000,
                "health_check_timeout_ms": 1000,
                "health_check_failure_threshold": 3,
                # A call to a dead actor fails at once instead of after a 1 s wait for
                # the GCS's word (what KubeRay sets for Ray Serve): the coordinator
                # learns of a lost slot ~1 s sooner.
                "timeout_ms_task_wait_for_death_info": 0,
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


class _FakeCall:
    def __init__(self, name: str) -> None:
        self.name = name

    def remote(self, *args: Any) -> tuple[str]:
        return (self.name,)


class _FakeSlotActor:
    """Stands in for a slot actor's handle: ``deliver`` succeeds, ``poll_events`` waits
    until ``killed`` is set and then fails as a call to a dead actor does."""

    def __init__(self) -> None:
        self.deliver = _FakeCall("deliver")
        self.poll_events = _FakeCall("poll_events")
        self.killed = threading.Event()
        self.delivered: list[Any] = []


def test_a_slot_lost_between_two_attempts_fails_the_later_one_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The actor dies after its loss was reported for attempt 0 and before attempt 1
    starts the slot: attempt 1 hears of it as soon as it sends the slot a message, instead
    of waiting for the slot until its first checkpoint times out (a minute, in a crash
    test that killed slots while the job recovered)."""
    from ray.exceptions import RayActorError

    import streamplug_ray.runtime as ray_runtime
    from streamplug.runtime.messages import StartAttempt, WorkerFailed
    from streamplug_ray.actor import SlotFacts

    actor = _FakeSlotActor()

    def fake_get(ref: Any, timeout: float | None = None) -> Any:
        if ref == ("poll_events",):
            actor.killed.wait(10)
            raise RayActorError()
        return None

    monkeypatch.setattr(ray_runtime.ray, "get", fake_get)
    posted: list[Any] = []
    handle = ray_runtime._ActorWorker(actor, 1, [1], posted.append)
    try:
        handle.attach(SlotFacts("node", "127.0.0.1", "host", 1, None), posted.append)
        handle.send(StartAttempt(0, None, {}, {}))
        actor.killed.set()
        _wait_for(lambda: posted, 5, "the loss reported for attempt 0")
        assert [(type(e), e.attempt) for e in posted] == [(WorkerFailed, 0)]
        # The coordinator's next attempt, on the handle it still holds.
        handle.send(StartAttempt(1, None, {}, {}))
        _wait_for(lambda: len(posted) == 2, 5, "the loss reported for attempt 1")
        assert posted[1].attempt == 1 and "is lost" in str(posted[1].error)
        # Told once per attempt.
        handle.send(StartAttempt(1, None, {}, {}))
        time.sleep(0.2)
        assert len(posted) == 2
    finally:
        handle.begin_close()
        handle.join_threads()


def test_a_control_call_that_never_completes_reports_the_slot_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without a cluster: a ``deliver`` that Ray neither completes nor fails (the actor
    stuck, or its node gone without Ray noticing) must not hold the slot's sender for
    good. Within ``call_timeout_s`` the slot is reported lost for the attempt, naming the
    slot, its node and the call, and the actor is ended through Ray (to be restarted)."""
    from ray.exceptions import GetTimeoutError

    import streamplug_ray.runtime as ray_runtime
    from streamplug.runtime.messages import StartAttempt, TriggerBarrier, WorkerFailed
    from streamplug_ray.actor import SlotFacts

    actor = _FakeSlotActor()
    stop = threading.Event()
    killed: list[tuple[Any, bool]] = []

    def fake_get(ref: Any, timeout: float | None = None) -> Any:
        if ref == ("deliver",) and actor.delivered:
            # The second message hangs: answered never, failed never.
            if stop.wait(timeout if timeout is not None else 30):
                return None
            raise GetTimeoutError()
        if ref == ("deliver",):
            actor.delivered.append(ref)
            return None
        stop.wait(1.0)
        return []

    monkeypatch.setattr(ray_runtime.ray, "get", fake_get)
    monkeypatch.setattr(
        ray_runtime.ray, "kill", lambda a, no_restart=True: killed.append((a, no_restart))
    )
    posted: list[Any] = []
    handle = ray_runtime._ActorWorker(actor, 1, [1], posted.append, call_timeout_s=0.5)
    try:
        handle.attach(SlotFacts("n0de1d", "10.1.2.3", "host", 4321, None), posted.append)
        handle.send(StartAttempt(3, None, {}, {}))
        handle.send(TriggerBarrier(3, 7))
        sent = time.monotonic()
        _wait_for(lambda: posted, 5, "the slot reported lost")
        assert time.monotonic() - sent < 3
        [event] = posted
        assert isinstance(event, WorkerFailed) and event.attempt == 3 and event.worker == 1
        text = str(event.error)
        assert "worker slot 1 (Ray actor pid 4321 on node 10.1.2.3" in text, text
        assert "no answer delivering TriggerBarrier within 0.5 s" in text, text
        assert not handle.alive
        # Ray, not streamplug, starts the actor again.
        assert killed == [(actor, False)]
    finally:
        stop.set()
        handle.begin_close()
        handle.join_threads()


def test_a_slot_whose_control_call_hangs_is_reported_lost_within_the_bound(
    ray_cluster: Cluster, tmp_path: Path, caplog: Any
) -> None:
    """Slot 1's actor stops answering: its fifth ``deliver`` hangs (a fault point), while
    Ray still counts the actor alive and fails nothing. Within ``call_timeout_s`` the
    driver reports the slot lost, naming the slot, its node and the call, ends the actor
    through Ray so that Ray starts it afresh, and the restart strategy takes it from
    there; the output is exact. (Before the bound, the driver waited on that call for
    good and the job made no progress.)"""
    out = tmp_path / "published"
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2).enable_checkpointing(200)
    env.set_runtime(
        "ray", call_timeout_s=3, runtime_env={"env_vars": {faults.ENV: "ray.deliver@1:5:hang"}}
    )
    env.get_checkpoint_config().set_checkpoint_storage_dir(tmp_path / "checkpoints")
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(3, 0))
    source = CollectionSource(list(range(4000)), batch_size=100, records_per_second=1000)
    env.from_source(source, None, "n").sink_to(TransactionalFileSink(out))
    caplog.set_level("INFO", logger="streamplug_ray")
    started = time.monotonic()
    client = env.execute_async("hanging-slot")
    try:
        result = client.wait(90)
    except TimeoutError:
        client.cancel()
        raise AssertionError(
            "the job made no progress for 90 s: the hanging call was never given up"
        ) from None
    lost = [r.getMessage() for r in caplog.records if "is lost" in r.getMessage()]
    assert any(
        re.search(
            r"worker slot 1 \(Ray actor pid \d+ on node [\d.]+, node id \w+\) is lost: no "
            r"answer delivering \w+ within 3 s",
            m,
        )
        for m in lost
    ), lost
    assert result.attempts >= 2
    assert sorted(TransactionalFileSink.read_committed(out)) == list(range(4000))
    assert time.monotonic() - started < 90


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


# -- Kafka -> map -> Kafka EXACTLY_ONCE with actors, drivers and a node lost ----------------


def _kafka_env(
    checkpoints: Path, restarts: int, **runtime_options: Any
) -> StreamExecutionEnvironment:
    """Parallelism 2 on Ray, checkpoints every 250 ms, restarts without delay: the time a
    test spends recovering is the runtime's, not a configured wait."""
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2).enable_checkpointing(250).set_runtime("ray", **runtime_options)
    env.get_checkpoint_config().set_checkpoint_storage_dir(checkpoints)
    env.get_checkpoint_config().set_checkpoint_timeout(60_000)
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(restarts, 0))
    return env


def test_a_checkpoint_committed_by_one_slot_only_is_merged_and_output_stays_exact(
    ray_cluster: Cluster, kafka_bootstrap: str, tmp_path: Path, caplog: Any
) -> None:
    """Slot 1's actor dies right before its third commit (a named fault point) while
    slot 0 commits: recovery keeps slot 0's progress and rewinds only slot 1's splits."""
    records = 8_000
    source_topic, sink_topic = create_topics(kafka_bootstrap, records, 6, "ray")
    env = _kafka_env(
        tmp_path / "checkpoints",
        5,
        runtime_env={"env_vars": {faults.ENV: "kafka_sink.before_commit@1:3"}},
    )
    prefix = f"ray-merge-{uuid.uuid4().hex[:8]}"
    add_kafka_job(
        env, kafka_bootstrap, source_topic, sink_topic, prefix, map_function=Throttle(1000)
    )
    caplog.set_level("INFO", logger="streamplug.runtime")
    result = env.execute("ray-merge")
    # Two attempts, or more when an unrelated start-up failure came first.
    assert result.attempts >= 2, "slot 1 was never killed at its commit"
    lost = [r.getMessage() for r in caplog.records if "worker slot 1" in r.getMessage()]
    assert any("is lost" in m for m in lost), lost
    merged = [r.getMessage() for r in caplog.records if "merged checkpoint" in r.getMessage()]
    assert merged and "committed in worker slots [0] and not in [1]" in merged[0], merged
    check_exact(kafka_bootstrap, sink_topic, records)


# The crash test of tests/e2e/test_kafka_sink_crash.py on Ray: the same job (the same
# script for the driver runs), the same 200,000 records, the same fault points.
CRASH_JOB = Path(__file__).parents[1] / "e2e" / "jobs" / "sink_crash_job.py"
CRASH_RECORDS = 200_000
# Records/s per subtask while the test breaks the job; lifted once it is done with that.
CRASH_RATE = 400
SIGKILLS = 20
# Of the actor kills, these go through Ray (ray.kill, which lets Ray restart the actor)
# instead of a signal.
RAY_KILLS = 2
# Every fifth actor kill lands during the recovery from the previous one (0: none; 2:
# every other one, for hunting races in the restart path).
EARLY_EVERY = int(os.environ.get("STREAMPLUG_RAY_CRASH_EARLY_EVERY", "5"))


def _driver_run(args: list[str], plan: str, log_path: Path, address: str) -> tuple[int, str]:
    """One run of the crash job script as a driver of its own on the cluster, with the
    fault plan ``plan`` for it and its actors; returns its exit code and output."""
    env = {k: v for k, v in os.environ.items() if k != faults.ENV}
    env.update({"RAY_ADDRESS": address, "STREAMPLUG_TEST_RUNTIME": "ray", faults.ENV: plan})
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(CRASH_JOB), *args], stdout=log, stderr=subprocess.STDOUT, env=env
        )
        try:
            rc = proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"the driver run with {plan} hung; see {log_path}") from None
    return rc, log_path.read_text()


def _wait_flowing(
    client: Any,
    after_attempt: int,
    records: int,
    timeout: float = 120,
    killed: tuple[Any, int | None] | None = None,
) -> None:
    """Until an attempt later than ``after_attempt`` runs on two slots and wrote
    ``records`` records.

    ``killed``: the slot handle killed in attempt ``after_attempt`` and the pid it had.
    A kill that lands while that attempt is still starting its slots (one of them being
    restarted by Ray) can be absorbed by it: the attempt waits for the victim's actor to
    come back as well, attaches its new process, and never fails. Then records flowing
    in that same attempt on the victim's new process count too."""
    deadline = time.monotonic() + timeout
    base: int | None = None
    while True:
        m = client.metrics()
        recovered = m.attempt > after_attempt
        if killed is not None and m.attempt == after_attempt:
            victim, old_pid = killed
            recovered = victim.alive and victim.pid is not None and victim.pid != old_pid
        if recovered and len(client.worker_pids()) == 2:
            if base is None:
                base = m.records_out
            elif m.records_out >= base + records:
                return
        if client.status.is_terminal:
            client.wait(0)
            raise AssertionError(f"the job ended ({client.status}) while the test broke it")
        if time.monotonic() > deadline:
            runtime = _runtime(client)
            slots = [(h.worker, h.pid, h.alive) for h in runtime.handles]
            raise AssertionError(
                f"records did not flow again within {timeout} s: attempt {m.attempt}, "
                f"{m.records_out} records out, {client.status}; slots (index, pid, alive) {slots}"
            )
        time.sleep(0.02)


def test_exactly_once_survives_killed_actors_drivers_and_a_removed_node(
    ray_cluster: Cluster, kafka_bootstrap: str, tmp_path: Path, caplog: Any
) -> None:
    """200,000 records Kafka -> map -> Kafka EXACTLY_ONCE on two slot actors:

    1. four driver runs, each a process of its own: a slot actor dies at a sink fault point
       (``kafka_sink.before_commit@W`` / ``after_commit@W``, every combination once), the
       driver recovers, then the driver itself dies at a checkpoint fault point (each once);
       Ray ends the driver's actors with it;
    2. one driver run in this process resumes from there: 20 actors SIGKILLed at random
       moments while records flow, two more killed through Ray (every fifth kill lands
       while the job still recovers from the previous one), then the node of a slot
       removed;
    3. the rest of the input at full speed; a read_committed reader sees each record's
       result exactly once."""
    seed = int(os.environ.get("STREAMPLUG_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    started = time.monotonic()
    source_topic, sink_topic = create_topics(kafka_bootstrap, CRASH_RECORDS, 6, "ray-crash")
    prefix = f"ray-crash-{uuid.uuid4().hex[:8]}"
    checkpoints = tmp_path / "checkpoints"
    release = tmp_path / "release"
    log: list[str] = [f"seed {seed}; input ready after {time.monotonic() - started:.1f} s"]

    # 1. Drivers and slots killed at the named fault points.
    slot_faults = [f"{f}@{w}" for f in SINK_FAULTS for w in (0, 1)]
    driver_faults = list(CHECKPOINT_FAULTS)
    rng.shuffle(slot_faults)
    rng.shuffle(driver_faults)
    args = [
        kafka_bootstrap,
        source_topic,
        sink_topic,
        "exactly-once",
        prefix,
        str(checkpoints),
        str(CRASH_RATE),
    ]
    for run, (slot_fault, driver_fault) in enumerate(zip(slot_faults, driver_faults, strict=True)):
        nth = rng.randint(1, 2)
        # The driver's point comes two or more checkpoints after the slot's fault and the
        # recovery from it (the write points are passed twice per checkpoint).
        per_checkpoint = 2 if driver_fault.endswith("_write") else 1
        driver_nth = per_checkpoint * (nth + 2) + rng.randint(0, 2)
        plan = f"{slot_fault}:{nth},{driver_fault}:{driver_nth}"
        run_started = time.monotonic()
        rc, text = _driver_run(args, plan, tmp_path / f"driver-{run}.log", ray_cluster.address)
        slot = slot_fault.rsplit("@", 1)[1]
        assert rc == -signal.SIGKILL, f"driver run {run} ({plan}) ended with {rc}:\n{text[-4000:]}"
        assert f"fault point {driver_fault} reached" in text, text[-4000:]
        assert re.search(rf"worker slot {slot} \(Ray actor .* is lost", text), text[-4000:]
        assert "JOB FINISHED" not in text
        log.append(f"driver run {run}: {plan}: {time.monotonic() - run_started:.1f} s")

    # 2. This process drives the job on: actors and a node lost. (Its recoveries step by
    # step in the report if it fails.)
    caplog.set_level("INFO", logger="streamplug.runtime")
    caplog.set_level("INFO", logger="streamplug_ray")
    # A slot that does not start within 30 s fails the attempt, and the restart strategy
    # tries again, instead of the default two minutes.
    env = _kafka_env(checkpoints, SIGKILLS + RAY_KILLS + 10, start_timeout_s=30)
    add_kafka_job(
        env,
        kafka_bootstrap,
        source_topic,
        sink_topic,
        prefix,
        map_function=Throttle(CRASH_RATE, str(release)),
    )
    client = env.execute_async(f"sink-crash-{prefix}")
    runtime = _runtime(client)
    kills: list[str] = []
    recoveries: list[float] = []
    errors: list[BaseException] = []
    memory: dict[int, dict[str, int]] = {}

    def chaos() -> None:
        try:
            _wait_flowing(client, -1, 200)
            # With Kafka clients (a consumer, a transactional producer) in each slot.
            memory.update(runtime.memory_kb())
            # Before the first kill, records flow in an attempt later than "-1".
            attempt = -1
            killed: tuple[Any, int | None] | None = None
            plan = ["signal"] * SIGKILLS + ["ray"] * RAY_KILLS
            rng.shuffle(plan)
            for n, how in enumerate(plan):
                # A random moment after records flow again; every EARLY_EVERY-th kill
                # lands while the job still recovers from the previous one instead (a
                # slot restarting, the other one rebuilding its subtasks).
                early = EARLY_EVERY > 0 and n % EARLY_EVERY == EARLY_EVERY - 1
                if early:
                    time.sleep(rng.uniform(0.0, 1.0))
                else:
                    waited = time.monotonic()
                    _wait_flowing(client, attempt, 100, killed=killed)
                    if kills:
                        recoveries.append(time.monotonic() - waited)
                    time.sleep(rng.uniform(0.0, 0.6))
                deadline = time.monotonic() + 60
                while not (live := [h for h in runtime.handles if h.alive and h.pid]):
                    assert time.monotonic() < deadline, "no slot actor came back"
                    time.sleep(0.02)
                victim = rng.choice(live)
                attempt = client.metrics().attempt
                killed = (victim, victim.pid)
                if how == "ray":
                    ray.kill(victim.actor, no_restart=False)
                else:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(victim.pid, signal.SIGKILL)
                kills.append(f"{how} slot {victim.worker}{' early' if early else ''}")
                print(f"{time.monotonic() - chaos_started:6.1f} s: {kills[-1]}", flush=True)
            # ...then a node that hosts a slot goes away; Ray moves the slot to the spare
            # node.
            _wait_flowing(client, attempt, 100, killed=killed)
            attempt = client.metrics().attempt
            handle = rng.choice(runtime.handles)
            assert handle.facts is not None
            old_node = handle.facts.node_id
            node = next(n for n in ray_cluster.worker_nodes if n.node_id == old_node)
            ray_cluster.remove_node(node, allow_graceful=False)
            removed = time.monotonic()
            _wait_flowing(client, attempt, 100)
            assert handle.facts is not None and handle.facts.node_id != old_node
            kills.append(f"node of slot {handle.worker}")
            recoveries.append(time.monotonic() - removed)
        except BaseException as exc:
            errors.append(exc)
        finally:
            # 3. The rest at full speed.
            release.touch()

    chaos_started = time.monotonic()
    breaker = threading.Thread(target=chaos, daemon=True)
    breaker.start()
    try:
        result = client.wait(420)
    finally:
        breaker.join(130)
        # Later tests get the cluster back at full size.
        while len(ray_cluster.worker_nodes) < WORKER_NODES:
            ray_cluster.add_node(num_cpus=1)
    assert not errors, errors
    log.append(
        f"in-process run: {len(kills)} kills ({', '.join(kills)}), {result.attempts} attempts, "
        f"{time.monotonic() - chaos_started:.1f} s; records flowed again "
        f"{', '.join(f'{r:.1f}' for r in recoveries)} s after a kill (the last: the node)"
    )
    assert sum(k.startswith("signal") for k in kills) >= SIGKILLS, kills
    assert kills[-1].startswith("node"), kills
    # Each kill that waited for records to flow failed an attempt of its own.
    assert result.attempts > len([k for k in kills if "early" not in k]), (result.attempts, kills)
    check_exact(kafka_bootstrap, sink_topic, CRASH_RECORDS, f"seed {seed}")
    log.append(f"total {time.monotonic() - started:.1f} s; actor memory (kB) {memory}")
    print("\n" + "\n".join(log))
