"""An exactly-once file sink: staged part files, published by an idempotent rename.

Each writer appends to a staging file; at a checkpoint it fsyncs it and hands its name over
as a committable. The committer publishes every staged file of the checkpoint by renaming
it into the output directory. A rename is atomic and can be repeated harmlessly, so
recovery simply re-commits a PENDING checkpoint (Flink's FileSink works the same way).
Staged data of a checkpoint that never became PENDING is never published.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from streamplug.api.context import SinkContext
from streamplug.api.sink import Committer, DeliveryGuarantee, Sink, SinkWriter
from streamplug.api.state import StateSerializer


@attrs.frozen
class StagedFile:
    """A staged part file, and the name it gets when its checkpoint commits."""

    staged: str
    published: str


class _StagedFileSerializer(StateSerializer[StagedFile]):
    @property
    def version(self) -> int:
        return 1

    def serialize(self, value: StagedFile) -> Any:
        return {"staged": value.staged, "published": value.published}

    def deserialize(self, version: int, data: Any) -> StagedFile:
        if version != 1:
            raise ValueError(f"staged file version {version} is unknown; this release reads 1")
        return StagedFile(data["staged"], data["published"])


class _Writer(SinkWriter[StagedFile, Any]):
    def __init__(self, sink: TransactionalFileSink, subtask: int) -> None:
        self._sink = sink
        self._subtask = subtask
        self._run = uuid.uuid4().hex[:12]
        self._seq = 0
        self._file: Any = None
        self._path: Path | None = None

    def write(self, values: Sequence[Any], timestamps: Sequence[int] | None) -> None:
        if self._file is None:
            self._seq += 1
            self._path = self._sink.staging / f"{self._run}-{self._subtask}-{self._seq}.jsonl"
            self._file = open(self._path, "w", encoding="utf-8")  # noqa: SIM115
        self._file.write("".join(json.dumps(v) + "\n" for v in values))

    def flush(self, end_of_input: bool) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    def prepare_commit(self) -> list[StagedFile]:
        if self._file is None or self._path is None:
            return []
        self._file.close()
        self._file = None
        name = self._path.name
        return [StagedFile(str(self._path), str(self._sink.directory / f"part-{name}"))]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class _Committer(Committer[StagedFile]):
    def commit(self, checkpoint_id: int, committables: Sequence[StagedFile]) -> None:
        for c in committables:
            if os.path.exists(c.staged):
                os.replace(c.staged, c.published)
            elif not os.path.exists(c.published):
                raise FileNotFoundError(
                    f"staged file {c.staged} of checkpoint {checkpoint_id} is gone and was never published"
                )
        if committables:
            fd = os.open(os.path.dirname(committables[0].published), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


class TransactionalFileSink(Sink[StagedFile, Any]):
    """Writes JSON lines into ``directory``; a record appears there only once the checkpoint
    that covers it completed, and exactly once however the process crashes."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.staging = self.directory / ".staging"

    def create_writer(self, context: SinkContext, restored_state: Sequence[Any]) -> _Writer:
        self.staging.mkdir(parents=True, exist_ok=True)
        return _Writer(self, context.subtask_index)

    def create_committer(self, context: SinkContext) -> _Committer:
        self.staging.mkdir(parents=True, exist_ok=True)
        return _Committer()

    def get_committable_serializer(self) -> StateSerializer[StagedFile]:
        return _StagedFileSerializer()

    @property
    def delivery_guarantee(self) -> DeliveryGuarantee:
        return DeliveryGuarantee.EXACTLY_ONCE

    def describe(self) -> dict[str, Any]:
        return {"type": "transactional-file", "directory": str(self.directory)}

    @staticmethod
    def read_committed(directory: str | os.PathLike[str]) -> list[Any]:
        """Every record published in ``directory`` (what a downstream reader sees)."""
        out: list[Any] = []
        for part in sorted(Path(directory).glob("part-*.jsonl")):
            with open(part, encoding="utf-8") as f:
                out.extend(json.loads(line) for line in f)
        return out
