"""Recovery of a checkpoint that some worker slots committed and others did not: the
per-slot resolution and the merge rule, with fake committers (the real-broker proofs are
the processes-runtime crash tests)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import pytest

from streamplug.api.sink import CommitOutcome, Committer
from streamplug.api.state import StateSerializer
from streamplug.errors import CheckpointError
from streamplug.runtime.checkpoint_document import BaseSplits
from streamplug.runtime.recovery import merge_partially_committed, resolve_workers


@attrs.frozen
class Split:
    name: str
    position: int

    @property
    def split_id(self) -> str:
        return self.name


class SplitSerializer(StateSerializer[Split]):
    @property
    def version(self) -> int:
        return 1

    def serialize(self, value: Split) -> Any:
        return {"name": value.name, "position": value.position}

    def deserialize(self, version: int, data: Any) -> Split:
        return Split(data["name"], data["position"])


class TokenSerializer(StateSerializer[str]):
    @property
    def version(self) -> int:
        return 1

    def serialize(self, value: str) -> Any:
        return value

    def deserialize(self, version: int, data: Any) -> str:
        return str(data)


class FakeCommitter(Committer[str]):
    """Committed are the transactions whose token is in ``committed``."""

    def __init__(self, committed: set[str]) -> None:
        self.committed = committed
        self.resolved: list[list[str]] = []
        self.fenced: list[int] = []

    def fence_workers(self, worker_indices: Sequence[int]) -> None:
        assert not self.resolved, "every slot is fenced before any outcome is read"
        self.fenced.extend(worker_indices)

    def commit(self, checkpoint_id: int, committables: Sequence[str]) -> None:
        raise AssertionError("recovery never commits")

    def resolve(self, checkpoint_id: int, committables: Sequence[str]) -> CommitOutcome:
        self.resolved.append(list(committables))
        if any(c in self.committed for c in committables):
            return CommitOutcome.COMMITTED
        return CommitOutcome.ABORTED


SER = SplitSerializer()


def reader(subtask: int, *splits: Split) -> dict[str, Any]:
    return {"subtask": subtask, "version": 1, "splits": [SER.serialize(s) for s in splits]}


def document(base: BaseSplits) -> dict[str, Any]:
    """Checkpoint 7 of a job at parallelism 3 on 3 worker slots (slot w hosts subtask w).

    Since checkpoint 6: subtask 0 moved p0 from 100 to 150; subtask 1 moved p1 from 200 to
    260 and finished p3 (bounded: gone from its reader at 7); p4 was assigned to subtask 2
    at 0 and read to 40."""
    return {
        "parallelism": 3,
        "workers": 3,
        "subtask_workers": [0, 1, 2],
        "pipelines": {
            "in": {
                "parallelism": 3,
                "readers": [
                    reader(0, Split("p0", 150)),
                    reader(1, Split("p1", 260)),
                    reader(2, Split("p2", 330), Split("p4", 40)),
                ],
                "sinks": [
                    {
                        "committables_version": 1,
                        "committables": ["t0", "t1", "t2"],
                        "committables_by_worker": {"0": ["t0"], "1": ["t1"], "2": ["t2"]},
                        "writer_states_version": 1,
                        "writer_states": [["w0@7"], ["w1@7"], ["w2@7"]],
                    }
                ],
                **base.document()["in"],
            }
        },
    }


def base_at_checkpoint_6() -> BaseSplits:
    base = BaseSplits()
    previous = {
        "pipelines": {
            "in": {
                "readers": [
                    reader(0, Split("p0", 100)),
                    reader(1, Split("p1", 200), Split("p3", 10)),
                    reader(2, Split("p2", 300)),
                ],
                "sinks": [{"writer_states": [["w0@6"], ["w1@6"], ["w2@6"]]}],
            }
        }
    }
    base.reset_from(previous, {"in": SER})
    base.assigned("in", 2, "p4", 1, SER.serialize(Split("p4", 0)))
    return base


def positions(doc: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """split -> (subtask, position) in a document's readers."""
    found = {}
    for r in doc["pipelines"]["in"]["readers"]:
        for data in r["splits"]:
            split = SER.deserialize(r["version"], data)
            found[split.name] = (r["subtask"], split.position)
    return found


def test_each_worker_is_resolved_with_its_own_committables() -> None:
    committer = FakeCommitter({"t0", "t2"})
    outcomes = resolve_workers(
        7, document(base_at_checkpoint_6()), {"in": [(committer, TokenSerializer())]}
    )
    assert outcomes == {
        0: CommitOutcome.COMMITTED,
        1: CommitOutcome.ABORTED,
        2: CommitOutcome.COMMITTED,
    }
    assert sorted(committer.resolved) == [["t0"], ["t1"], ["t2"]]
    assert committer.fenced == [0, 1, 2]


def test_a_split_takes_its_position_from_its_owners_outcome() -> None:
    doc = document(base_at_checkpoint_6())
    merged = merge_partially_committed(7, doc, {0, 2}, {"in": SER})
    assert positions(merged) == {
        "p0": (0, 150),  # committed owner: at checkpoint 7
        "p1": (1, 200),  # aborted owner: back to checkpoint 6
        "p3": (1, 10),  # finished in the aborted interval: read again from checkpoint 6
        "p2": (2, 330),
        "p4": (2, 40),  # assigned since 6, committed owner: at 7
    }
    sink = merged["pipelines"]["in"]["sinks"][0]
    assert sink["writer_states"] == [["w0@7"], ["w1@6"], ["w2@7"]]
    assert sink["committables_by_worker"] == {"0": ["t0"], "2": ["t2"]}
    assert merged["merged"] == {
        "checkpoint_id": 7,
        "committed_workers": [0, 2],
        "aborted_workers": [1],
    }
    # The PENDING document itself is left as it was.
    assert positions(doc)["p1"] == (1, 260)


def test_a_split_assigned_since_the_last_checkpoint_goes_back_to_its_assigned_position() -> None:
    merged = merge_partially_committed(7, document(base_at_checkpoint_6()), {0, 1}, {"in": SER})
    assert positions(merged)["p4"] == (2, 0)
    assert positions(merged)["p2"] == (2, 300)
    assert positions(merged)["p1"] == (1, 260)


def test_a_split_without_a_base_position_is_refused_not_guessed() -> None:
    base = base_at_checkpoint_6()
    doc = document(base)
    doc["pipelines"]["in"]["base_splits"] = [
        b for b in doc["pipelines"]["in"]["base_splits"] if b["split"]["name"] != "p4"
    ]
    with pytest.raises(CheckpointError, match="split p4 of subtask 2"):
        merge_partially_committed(7, doc, {0, 1}, {"in": SER})


def test_a_document_from_before_worker_slots_is_one_slot() -> None:
    doc = document(base_at_checkpoint_6())
    del doc["subtask_workers"]
    sink = doc["pipelines"]["in"]["sinks"][0]
    del sink["committables_by_worker"]
    committer = FakeCommitter({"t1"})
    outcomes = resolve_workers(7, doc, {"in": [(committer, TokenSerializer())]})
    assert outcomes == {0: CommitOutcome.COMMITTED}
    assert committer.resolved == [["t0", "t1", "t2"]]


def test_mixed_outcomes_across_sinks_of_one_worker_fail_clearly() -> None:
    doc = document(base_at_checkpoint_6())
    doc["pipelines"]["in"]["sinks"].append(dict(doc["pipelines"]["in"]["sinks"][0]))
    first, second = FakeCommitter({"t0"}), FakeCommitter(set())
    with pytest.raises(CheckpointError, match="some sinks of worker 0"):
        resolve_workers(7, doc, {"in": [(first, TokenSerializer()), (second, TokenSerializer())]})
