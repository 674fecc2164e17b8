"""The real Apache Kafka launcher: round trips, transactions, node failure and restart."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from streamplug_kafka_common import admin
from streamplug_testing.broker import (
    KAFKA_SCRIPT_JVM_OPTIONS,
    KafkaCluster,
    ListenerSpec,
    ScramUser,
)

pytestmark = pytest.mark.integration


def _producer(bootstrap: str, **conf: object) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "log_level": 0, **conf})


def _produce_all(producer: Producer, topic: str, values: list[bytes]) -> None:
    errors: list[KafkaError] = []
    for value in values:
        producer.produce(
            topic, value=value, on_delivery=lambda err, _m: errors.append(err) if err else None
        )
    assert producer.flush(30) == 0
    assert errors == []


def _wait_for_new_leader(bootstrap: str, topic: str, old_leader: int) -> int:
    deadline = time.monotonic() + 30
    while True:
        leader = admin.wait_for_topic(bootstrap, topic, 1, timeout=30)[0].leader
        if leader != old_leader:
            return leader
        assert time.monotonic() < deadline, f"partition leader still {old_leader} after 30 s"
        time.sleep(0.2)


def test_round_trip(kafka_bootstrap: str, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory(partitions=3)
    values = [f"v{i}".encode() for i in range(200)]
    _produce_all(_producer(kafka_bootstrap, acks="all"), topic, values)

    assert sum(admin.end_offsets(kafka_bootstrap, topic).values()) == 200
    records = admin.read_all(kafka_bootstrap, topic, isolation_level="read_uncommitted")
    assert sorted(m.value() or b"" for m in records) == sorted(values)


def test_transactions_are_isolated(kafka_bootstrap: str, new_topic: str) -> None:
    producer = _producer(kafka_bootstrap, **{"transactional.id": f"tx-{uuid.uuid4().hex}"})
    producer.init_transactions(30)

    producer.begin_transaction()
    for i in range(10):
        producer.produce(new_topic, value=f"committed-{i}".encode())
    producer.commit_transaction(30)

    producer.begin_transaction()
    for i in range(5):
        producer.produce(new_topic, value=f"aborted-{i}".encode())
    producer.flush(30)
    producer.abort_transaction(30)

    producer.begin_transaction()
    producer.produce(new_topic, value=b"open")
    producer.flush(30)  # written, not yet committed

    committed = admin.read_all(kafka_bootstrap, new_topic, isolation_level="read_committed")
    assert [m.value() for m in committed] == [f"committed-{i}".encode() for i in range(10)]
    everything = admin.read_all(kafka_bootstrap, new_topic, isolation_level="read_uncommitted")
    assert len(everything) == 16  # 10 + 5 aborted + 1 open (markers are not records)

    producer.commit_transaction(30)
    committed = admin.read_all(kafka_bootstrap, new_topic, isolation_level="read_committed")
    assert [m.value() for m in committed][-1] == b"open"


def test_auto_create_is_off_and_describe(
    kafka_cluster: KafkaCluster, kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=2, config={"cleanup.policy": "compact"})
    infos = admin.describe_partitions(kafka_bootstrap, topic)
    assert [p.partition for p in infos] == [0, 1]
    assert all(p.leader in kafka_cluster.node_ids for p in infos)

    with pytest.raises(KafkaException):
        admin.create_topic(kafka_bootstrap, topic, partitions=2)
    admin.create_topic(kafka_bootstrap, topic, partitions=2, exist_ok=True)

    if not isinstance(kafka_cluster, KafkaCluster):
        return  # an external cluster may well auto-create topics
    errors: list[KafkaError | None] = []
    producer = _producer(kafka_bootstrap, **{"message.timeout.ms": 3000})
    producer.produce(
        f"missing-{uuid.uuid4().hex}", b"x", on_delivery=lambda e, _m: errors.append(e)
    )
    producer.flush(10)
    assert errors and errors[0] is not None  # topic was not auto-created


def test_restarted_node_keeps_data(kafka_cluster: KafkaCluster, new_topic: str) -> None:
    if not isinstance(kafka_cluster, KafkaCluster):
        pytest.skip("needs a cluster started by the suite")
    bootstrap = kafka_cluster.bootstrap_servers
    _produce_all(_producer(bootstrap, acks="all"), new_topic, [b"a", b"b", b"c"])
    (node_id,) = kafka_cluster.node_ids
    kafka_cluster.kill_node(node_id)  # SIGKILL: no clean shutdown, log recovery on start
    assert kafka_cluster.running_node_ids() == []
    kafka_cluster.start_node(node_id)
    assert bootstrap == kafka_cluster.bootstrap_servers  # same ports after restart
    admin.wait_for_topic(bootstrap, new_topic, 1)
    records = admin.read_all(bootstrap, new_topic, isolation_level="read_uncommitted")
    assert [m.value() for m in records] == [b"a", b"b", b"c"]


@pytest.mark.slow
def test_a_broker_can_run_the_jvm_kafkas_start_scripts_set_up() -> None:
    """The benchmark's broker: the test suite's small serial-collector heap replaced, not
    merely followed by flags the JVM might refuse or ignore. Asked of the running JVM."""
    jcmd = shutil.which("jcmd")
    if jcmd is None:
        pytest.skip("jcmd (the JDK's) is not on PATH")
    with KafkaCluster(nodes=1, jvm_defaults=KAFKA_SCRIPT_JVM_OPTIONS) as cluster:
        pid = cluster.node(1).pid
        assert pid is not None
        flags = subprocess.run(
            [jcmd, str(pid), "VM.flags"], capture_output=True, text=True, check=True, timeout=30
        ).stdout
        assert "-XX:+UseG1GC" in flags and "UseSerialGC" not in flags
        assert f"-XX:MaxHeapSize={1 << 30}" in flags
        topic = f"shipped-jvm-{uuid.uuid4().hex[:8]}"
        cluster.create_topic(topic, partitions=1)
        _produce_all(_producer(cluster.bootstrap_servers, acks="all"), topic, [b"a", b"b"])
        records = admin.read_all(cluster.bootstrap_servers, topic)
        assert [m.value() for m in records] == [b"a", b"b"]


@pytest.mark.slow
def test_three_nodes_survive_kill_and_restart(
    kafka_cluster_3: KafkaCluster, topic_factory: Callable[..., str]
) -> None:
    cluster = kafka_cluster_3
    assert cluster.node_ids == [1, 2, 3]
    topic = f"replicated-{uuid.uuid4().hex[:8]}"
    cluster.create_topic(
        topic, partitions=1, replication_factor=3, config={"min.insync.replicas": "2"}
    )
    admin.wait_for_topic(cluster.bootstrap_servers, topic, 1, full_isr=True)
    producer = _producer(cluster.bootstrap_servers, acks="all")
    _produce_all(producer, topic, [f"before-{i}".encode() for i in range(50)])

    leader = admin.describe_partitions(cluster.bootstrap_servers, topic)[0].leader
    cluster.kill_node(leader)
    assert leader not in cluster.running_node_ids()

    # Leadership moves to a survivor once the controller notices the dead node.
    bootstrap_alive = cluster.bootstrap_servers_for("PLAINTEXT", running_only=True)
    new_leader = _wait_for_new_leader(bootstrap_alive, topic, old_leader=leader)
    _produce_all(producer, topic, [f"during-{i}".encode() for i in range(50)])

    cluster.start_node(leader)
    admin.wait_for_topic(cluster.bootstrap_servers, topic, 1, full_isr=True, timeout=60)

    # The restarted node is a full replica again: stop the third node and the two
    # left (quorum 2 of 3) still serve every record.
    survivor = next(n for n in cluster.node_ids if n not in (leader, new_leader))
    cluster.stop_node(survivor)
    records = admin.read_all(
        cluster.bootstrap_servers_for("PLAINTEXT", running_only=True),
        topic,
        isolation_level="read_uncommitted",
    )
    values = [m.value() for m in records]
    assert values == [f"before-{i}".encode() for i in range(50)] + [
        f"during-{i}".encode() for i in range(50)
    ]


@pytest.mark.slow
def test_sasl_scram_listener_with_authorizer() -> None:
    """A secured listener beside the plain one, SCRAM users created at format time and
    at run time, and an authorizer that does not lock the cluster out of itself."""
    spec = ListenerSpec(
        "SASL_PLAINTEXT",
        "SASL_PLAINTEXT",
        sasl_mechanisms=("SCRAM-SHA-256",),
        properties={
            "scram-sha-256.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            )
        },
    )
    assert "secret" not in repr(ScramUser("alice", "alice-secret"))
    with KafkaCluster(
        listeners=[ListenerSpec("PLAINTEXT"), spec],
        scram_users=[ScramUser("alice", "alice-secret")],
        server_properties={
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
        },
    ) as cluster:
        cluster.create_topic("secured")
        sasl = cluster.bootstrap_servers_for("SASL_PLAINTEXT")
        assert sasl != cluster.bootstrap_servers
        _allow_all(cluster, "User:alice")

        alice = {
            "bootstrap.servers": sasl,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": "alice",
            "sasl.password": "alice-secret",
            "log_level": 0,
        }
        _produce_all(Producer(alice), "secured", [b"hello"])
        assert [m.value() for m in admin.read_all(alice, "secured")] == [b"hello"]

        # bob authenticates (user added at run time) but has no ACLs.
        cluster.scram_user("bob", "bob-secret")
        bob = {**alice, "sasl.username": "bob", "sasl.password": "bob-secret"}
        with pytest.raises(KafkaException, match="AUTHORIZATION"):
            admin.read_all(bob, "secured", timeout=10)

        errors: list[KafkaError] = []
        bad = Producer({**alice, "sasl.password": "wrong", "error_cb": errors.append})
        deadline = time.monotonic() + 15
        while not errors and time.monotonic() < deadline:
            bad.poll(0.1)
        assert errors and errors[0].code() == KafkaError._AUTHENTICATION


def _allow_all(cluster: KafkaCluster, principal: str) -> None:
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
        ResourceType,
    )

    client = AdminClient(cluster.admin_config())
    bindings = [
        AclBinding(
            kind,
            "*",
            ResourcePatternType.LITERAL,
            principal,
            "*",
            AclOperation.ALL,
            AclPermissionType.ALLOW,
        )
        for kind in (ResourceType.TOPIC, ResourceType.GROUP)
    ]
    for future in client.create_acls(bindings).values():
        future.result(30)


@pytest.mark.slow
def test_broker_start_command(broker_command: Callable[..., Any]) -> None:
    """`streamplug broker start`: real Kafka, bootstrap alone on line 1, clean SIGTERM."""
    with broker_command("--topic", "cli:2", stop_within_s=30) as broker:
        # A failure here shows the command's stderr (added by the fixture).
        assert broker.bootstrap.startswith("127.0.0.1:")
        assert len(admin.describe_partitions(broker.bootstrap, "cli")) == 2
    assert broker.returncode == 0, broker.err
    assert "Apache Kafka" in broker.out


def test_missing_tools_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Maven or Java the error says which tool, which version and how to fix."""
    from streamplug_testing import jars

    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv(jars.LIBS_ENV, str(tmp_path / "libs"))
    with pytest.raises(jars.KafkaJarsError, match=r"'mvn'.*Java 17"):
        jars.ensure_kafka_jars()
    with pytest.raises(jars.KafkaJarsError, match="Java 17 or newer"):
        jars.find_java()
    # A non-empty directory that is not a classpath is never deleted or overwritten.
    (tmp_path / "libs").mkdir()
    (tmp_path / "libs" / "notes.txt").write_text("mine")
    with pytest.raises(jars.KafkaJarsError, match="not empty"):
        jars.ensure_kafka_jars()
    assert (tmp_path / "libs" / "notes.txt").read_text() == "mine"
