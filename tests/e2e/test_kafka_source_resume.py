"""SIGKILL a job reading Kafka, point its consumer group's committed offsets somewhere
else, restart it: it resumes from the checkpointed offsets (recovery never reads the
committed ones), the exactly-once output holds every input record once, and the group's
offsets reach the end when the job finishes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from streamplug.connectors import TransactionalFileSink
from streamplug.runtime import FileCheckpointStorage
from streamplug_kafka_common import admin as kafka_admin
from streamplug_kafka_common.admin import committed_offsets

JOB = Path(__file__).parent / "jobs" / "source_resume_job.py"
PER_PARTITION = 2000

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(180)]


def job_command(bootstrap: str, topic: str, group: str, tmp: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(JOB),
        "--bootstrap-servers",
        bootstrap,
        "--topic",
        topic,
        "--group",
        group,
        "--storage",
        str(tmp / "chk"),
        "--out",
        str(tmp / "out"),
        *extra,
    ]


def run_job(bootstrap: str, topic: str, group: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    cmd = job_command(bootstrap, topic, group, tmp)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def kill_once_committed(bootstrap: str, topic: str, group: str, tmp: Path) -> dict[int, int]:
    """Start the job slowed down (~4 s per partition), SIGKILL it as soon as an admin client
    sees the group's offsets committed for both partitions, and return those offsets.

    Killing on a record count instead raced the asynchronous commit that follows a
    checkpoint: on a loaded machine the job died with checkpoints complete but a
    partition's commit still in flight."""
    cmd = job_command(bootstrap, topic, group, tmp, "--record-delay", "0.002")
    # A consumer of the group asks (kafka_common's committed_offsets says why not the admin
    # client); one for the whole watch, not one per question.
    watcher = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    partitions = [TopicPartition(topic, p) for p in (0, 1)]
    try:
        with subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as job:
            deadline = time.monotonic() + 60
            seen: dict[int, int] = {}
            while job.poll() is None and time.monotonic() < deadline:
                found = committed_offsets(watcher, partitions, timeout_s=10)
                seen = {tp.partition: tp.offset for tp in found}
                if all(seen[p] > 0 for p in (0, 1)):
                    break
                time.sleep(0.05)
            alive = job.poll() is None
            job.kill()
            _, stderr = job.communicate()
    finally:
        watcher.close()
    assert alive, f"the job ended before both partitions had a commit:\n{stderr[-2000:]}"
    assert all(seen[p] > 0 for p in (0, 1)), ("no commit within 60 s", seen)
    return seen


def group_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    return kafka_admin.group_offsets(bootstrap, group, topic, partitions=2)


def test_restart_resumes_from_checkpointed_offsets_not_committed_ones(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory(partitions=2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    for p in range(2):
        for _ in range(PER_PARTITION):
            producer.produce(topic, b"x", partition=p)
    assert producer.flush(10) == 0
    group = f"g-{topic}"

    # Offsets of a completed checkpoint reach the group while the job runs.
    seen = kill_once_committed(kafka_bootstrap, topic, group, tmp_path)

    checkpoints = FileCheckpointStorage(tmp_path / "chk", "kafka-source-resume").list()
    complete = [c for c in checkpoints if c.status == "COMPLETE"]
    assert complete, "the job died before its first checkpoint: slow it down"
    latest = complete[0]
    checkpointed = {
        split["partition"]: split["starting_offset"]
        for reader in latest.document["pipelines"]["kafka"]["readers"]
        for split in reader["splits"]
    }
    assert set(checkpointed) == {0, 1}
    assert all(0 < o < PER_PARTITION for o in checkpointed.values()), checkpointed
    # Commits trail checkpoints: the group never runs ahead of the latest complete one
    # (the newest checkpoint's commit may have been in flight at the kill)...
    committed = group_offsets(kafka_bootstrap, group, topic)
    assert all(seen[p] <= committed[p] <= checkpointed[p] for p in (0, 1)), (
        seen,
        committed,
        checkpointed,
    )

    # ...and now say something else: behind on partition 0, at the end on partition 1.
    liar = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    liar.commit(
        offsets=[TopicPartition(topic, 0, 0), TopicPartition(topic, 1, PER_PARTITION)],
        asynchronous=False,
    )
    liar.close()
    assert group_offsets(kafka_bootstrap, group, topic) == {0: 0, 1: PER_PARTITION}

    resumed = run_job(kafka_bootstrap, topic, group, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    report = json.loads(resumed.stdout.strip().splitlines()[-1])
    # A newer checkpoint the kill left PENDING (state written, commits not all done) is
    # restored if its sink commit took effect, and dropped otherwise.
    pending = [c.checkpoint_id for c in checkpoints if c.checkpoint_id > latest.checkpoint_id]
    assert report["restored_from"] in (latest.checkpoint_id, *pending), (report, checkpoints)

    # Exactly once: resuming at committed offset 0 would duplicate partition 0's prefix,
    # resuming at the end of partition 1 would lose its tail.
    out = TransactionalFileSink.read_committed(tmp_path / "out")
    expected = sorted(f"{p}:{o}" for p in range(2) for o in range(PER_PARTITION))
    assert sorted(out) == expected
    # The resumed run's checkpoints overwrote the misleading commits. (The runtime does not
    # notify readers of the final checkpoint of a bounded job, so the very last offsets
    # are not committed: the group trails by at most one checkpoint interval.)
    final = group_offsets(kafka_bootstrap, group, topic)
    assert all(checkpointed[p] <= final[p] <= PER_PARTITION for p in (0, 1)), final
