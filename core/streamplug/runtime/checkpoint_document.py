"""The checkpoint document: what a checkpoint file holds, built from the workers' acks.

Per pipeline: the source and its parallelism, the enumerator's state, every reader's splits
(``readers``), every sink's committables and writer states, and ``base_splits`` -- where
each split stood at the previous COMPLETE checkpoint, or as assigned if it was handed out
since. Top level: ``subtask_workers`` (the worker slot that hosted subtask ``i``) and
``workers`` (how many slots the attempt ran). The last three let recovery rebuild a
checkpoint whose commit took effect in some worker slots and not in others
(``recovery.merge_partially_committed``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from streamplug.api.state import StateSerializer
from streamplug.runtime.messages import BarrierAck, SubtaskSnapshot
from streamplug.runtime.storage import now_ms

FORMAT_FEATURES = ("per-worker-committables", "base-splits")


def decode_list(
    serializer: StateSerializer[Any], doc: Mapping[str, Any] | None, key: str
) -> list[Any]:
    """Items ``doc[key]`` deserialized with the version stored beside them."""
    if not doc:
        return []
    version = int(doc.get(f"{key}_version", serializer.version))
    return [serializer.deserialize(version, item) for item in doc.get(key, [])]


def subtask_workers(document: Mapping[str, Any]) -> list[int]:
    """The worker slot of each subtask; documents from before worker slots had one."""
    parallelism = int(document.get("parallelism", 1))
    return list(document.get("subtask_workers") or [0] * parallelism)


def committables_by_worker(sink_doc: Mapping[str, Any] | None) -> dict[int, list[Any]]:
    """One sink's serialized committables, per worker slot."""
    if not sink_doc:
        return {}
    by_worker = sink_doc.get("committables_by_worker")
    if by_worker is None:
        return {0: list(sink_doc.get("committables", []))}
    return {int(w): list(items) for w, items in by_worker.items()}


def build(
    *,
    job_name: str,
    job_id: str,
    attempt: int,
    final: bool,
    parallelism: int,
    workers: int,
    assignment: Sequence[int],
    pipelines: Sequence[Any],
    sink_names: Mapping[str, Sequence[str]],
    enum_states: Mapping[str, Any],
    acks: Sequence[BarrierAck],
    base: Mapping[str, Any],
) -> dict[str, Any]:
    """The document of one checkpoint; ``base`` is ``BaseSplits.document()``."""
    snapshots: dict[tuple[str, int], tuple[int, SubtaskSnapshot]] = {}
    for ack in acks:
        for snap in ack.snapshots:
            snapshots[snap.subtask] = (ack.worker, snap)
    docs: dict[str, Any] = {}
    for pipeline in pipelines:
        snaps = sorted(
            (key[1], worker, snap)
            for key, (worker, snap) in snapshots.items()
            if key[0] == pipeline.name
        )
        enum_ser = pipeline.source.get_enumerator_checkpoint_serializer()
        sinks_doc = []
        for i, ((sink, _), name) in enumerate(
            zip(pipeline.sinks(), sink_names[pipeline.name], strict=True)
        ):
            by_worker: dict[str, list[Any]] = {}
            for _, worker, snap in snaps:
                by_worker.setdefault(str(worker), []).extend(snap.committables[i])
            sinks_doc.append(
                {
                    "name": name,
                    "describe": dict(sink.describe()),
                    "delivery_guarantee": sink.delivery_guarantee.name,
                    "committables_version": sink.get_committable_serializer().version,
                    "committables": [c for _, _, snap in snaps for c in snap.committables[i]],
                    "committables_by_worker": by_worker,
                    "writer_states_version": sink.get_writer_state_serializer().version,
                    "writer_states": [snap.writer_states[i] for _, _, snap in snaps],
                }
            )
        docs[pipeline.name] = {
            "source": dict(pipeline.source.describe()),
            "parallelism": parallelism,
            "enumerator": {
                "version": enum_ser.version,
                "data": enum_ser.serialize(enum_states[pipeline.name]),
            },
            "readers": [
                {"subtask": index, "version": snap.split_version, "splits": snap.splits}
                for index, _, snap in snaps
            ],
            "sinks": sinks_doc,
            **base.get(pipeline.name, {}),
        }
    return {
        "job": job_name,
        "job_id": job_id,
        "attempt": attempt,
        "timestamp": now_ms(),
        "final": final,
        "parallelism": parallelism,
        "workers": workers,
        "subtask_workers": list(assignment),
        "pipelines": docs,
    }


class BaseSplits:
    """Where every split of the attempt stood at the previous COMPLETE checkpoint, or as
    assigned when it was handed out since: the position recovery gives a split whose
    owner's commit did not take effect. Also the writer states of that checkpoint."""

    def __init__(self) -> None:
        # pipeline -> split id -> (subtask, version, serialized split)
        self._splits: dict[str, dict[str, tuple[int, int, Any]]] = {}
        # pipeline -> per sink -> per subtask -> serialized states
        self._writer_states: dict[str, list[list[list[Any]]]] = {}

    def assigned(self, pipeline: str, subtask: int, split_id: str, version: int, data: Any) -> None:
        self._splits.setdefault(pipeline, {})[split_id] = (subtask, version, data)

    def reset_from(
        self, document: Mapping[str, Any], serializers: Mapping[str, StateSerializer[Any]]
    ) -> None:
        """Positions of a COMPLETE checkpoint (the one restored, or the one just taken);
        ``serializers`` are the pipelines' split serializers, which name each split."""
        self._splits = {}
        self._writer_states = {}
        for name, pipeline_doc in document.get("pipelines", {}).items():
            serializer = serializers.get(name)
            if serializer is None:
                continue
            splits = self._splits.setdefault(name, {})
            for reader in pipeline_doc.get("readers", []):
                version = int(reader["version"])
                for data in reader.get("splits", []):
                    split_id = serializer.deserialize(version, data).split_id
                    splits[split_id] = (int(reader["subtask"]), version, data)
            self._writer_states[name] = [
                list(sink.get("writer_states", [])) for sink in pipeline_doc.get("sinks", [])
            ]

    def document(self) -> dict[str, Any]:
        return {
            name: {
                "base_splits": [
                    {"subtask": subtask, "version": version, "split": data}
                    for _, (subtask, version, data) in sorted(splits.items())
                ],
                "base_writer_states": self._writer_states.get(name, []),
            }
            for name, splits in self._splits.items()
        }
