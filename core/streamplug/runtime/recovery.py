"""Recovery of a checkpoint that a crash left PENDING, worker slot by worker slot.

Each worker slot commits its own transaction, and Kafka cannot commit several producers
atomically, so a crash between the commits of one checkpoint can leave some slots
committed and others aborted. Recovery asks each slot's outcome (``resolve_workers``):
every slot committed -> the checkpoint is promoted; none -> it is dropped; some ->
``merge_partially_committed`` writes a checkpoint that is true to what Kafka holds:

* a split owned by a committed slot keeps its position at the checkpoint;
* a split owned by an aborted slot goes back to where it stood at the previous COMPLETE
  checkpoint, or to its as-assigned position if it was handed out since.

This is sound because there is no shuffle between subtasks: a split's records reach only
its owner's writers, so only its owner's transaction holds its output. The merged
checkpoint replays exactly the output that was aborted.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from streamplug.api.sink import CommitOutcome, Committer
from streamplug.api.state import StateSerializer
from streamplug.errors import CheckpointError
from streamplug.runtime.checkpoint_document import committables_by_worker, subtask_workers

log = logging.getLogger(__name__)

SinkCommitters = Mapping[str, Sequence[tuple[Committer[Any] | None, StateSerializer[Any]]]]
"""Per pipeline, per sink in order: the coordinator's committer (None for sinks without a
commit phase) and the sink's committable serializer."""


def resolve_workers(
    checkpoint_id: int, document: Mapping[str, Any], committers: SinkCommitters
) -> dict[int, CommitOutcome]:
    """Each worker slot's outcome for a PENDING checkpoint. A slot with no transactional
    output counts as committed (nothing of it can be lost)."""
    found: dict[int, list[CommitOutcome]] = {}
    pipelines = document.get("pipelines", {})
    # Fence every slot before reading any outcome: a slot that died between writing its
    # decision record and committing holds an open transaction on the commit log, which
    # hides every later record from a read_committed reader until it is aborted.
    slots_of_checkpoint = sorted(set(subtask_workers(document)))
    for slots in committers.values():
        for committer, _ in slots:
            if committer is not None:
                committer.fence_workers(slots_of_checkpoint)
    for name, slots in committers.items():
        sinks_doc = pipelines.get(name, {}).get("sinks", [])
        for i, (committer, serializer) in enumerate(slots):
            if committer is None:
                continue
            sink_doc = sinks_doc[i] if i < len(sinks_doc) else None
            version = int((sink_doc or {}).get("committables_version", serializer.version))
            for worker, items in sorted(committables_by_worker(sink_doc).items()):
                committables = [serializer.deserialize(version, item) for item in items]
                outcome = committer.resolve(checkpoint_id, committables)
                found.setdefault(worker, []).append(outcome)
    outcomes: dict[int, CommitOutcome] = {}
    for worker, results in found.items():
        if CommitOutcome.COMMITTED in results and CommitOutcome.ABORTED in results:
            raise CheckpointError(
                f"checkpoint {checkpoint_id} committed in some sinks of worker {worker} and "
                "aborted in others; a job keeps exactly-once across one transactional sink per "
                "pipeline only"
            )
        outcomes[worker] = results[0]
    for worker in set(subtask_workers(document)) - outcomes.keys():
        outcomes[worker] = CommitOutcome.COMMITTED
    return outcomes


def merge_partially_committed(
    checkpoint_id: int,
    document: Mapping[str, Any],
    committed: set[int],
    split_serializers: Mapping[str, StateSerializer[Any]],
) -> dict[str, Any]:
    """The checkpoint as Kafka holds it when only the slots in ``committed`` committed."""
    merged = copy.deepcopy(dict(document))
    owners = subtask_workers(merged)
    aborted_subtasks = {s for s, worker in enumerate(owners) if worker not in committed}
    for name, pipeline in merged.get("pipelines", {}).items():
        serializer = split_serializers.get(name)
        base = pipeline.get("base_splits")
        if base is None or serializer is None:
            raise CheckpointError(
                f"checkpoint {checkpoint_id} was committed by workers {sorted(committed)} only, "
                f"and pipeline {name!r} has no base positions to rewind the others' splits to"
            )
        readers = [r for r in pipeline.get("readers", []) if r["subtask"] not in aborted_subtasks]
        rewound: dict[int, set[str]] = {}
        for entry in base:
            if entry["subtask"] in aborted_subtasks:
                readers.append(
                    {
                        "subtask": entry["subtask"],
                        "version": entry["version"],
                        "splits": [entry["split"]],
                    }
                )
                split = serializer.deserialize(int(entry["version"]), entry["split"])
                rewound.setdefault(entry["subtask"], set()).add(split.split_id)
        for reader in pipeline.get("readers", []):
            if reader["subtask"] not in aborted_subtasks:
                continue
            for data in reader["splits"]:
                split_id = serializer.deserialize(int(reader["version"]), data).split_id
                if split_id not in rewound.get(reader["subtask"], set()):
                    raise CheckpointError(
                        f"checkpoint {checkpoint_id}: split {split_id} of subtask "
                        f"{reader['subtask']} (an aborted worker's) has no base position; "
                        "refusing to guess where its output ends"
                    )
        pipeline["readers"] = sorted(readers, key=lambda r: int(r["subtask"]))
        base_states = pipeline.get("base_writer_states", [])
        for i, sink in enumerate(pipeline.get("sinks", [])):
            states = sink.get("writer_states", [])
            for s in aborted_subtasks:
                if s < len(states):
                    states[s] = (
                        base_states[i][s]
                        if i < len(base_states) and s < len(base_states[i])
                        else []
                    )
            by_worker = sink.get("committables_by_worker", {})
            sink["committables_by_worker"] = {
                w: items for w, items in by_worker.items() if int(w) in committed
            }
            sink["committables"] = [
                c for items in sink["committables_by_worker"].values() for c in items
            ]
    merged["merged"] = {
        "checkpoint_id": checkpoint_id,
        "committed_workers": sorted(committed),
        "aborted_workers": sorted(set(owners) - committed),
    }
    return merged
