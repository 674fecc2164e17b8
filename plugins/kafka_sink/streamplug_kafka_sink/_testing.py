"""A stand-alone SinkContext for driving writers and committers without the runtime
(tests, benchmarks). Private: not part of the public API."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from streamplug.api.context import SinkContext
from streamplug.metrics import MetricGroup


class StandaloneSinkContext(SinkContext):
    def __init__(
        self,
        *,
        subtask_index: int = 0,
        parallelism: int = 1,
        job_name: str = "test-job",
        attempt_number: int = 0,
        checkpoint_interval_ms: int | None = 500,
        checkpoint_timeout_ms: int = 60_000,
        restored_checkpoint_id: int | None = None,
        configure: Any = None,
    ) -> None:
        self._index = subtask_index
        self._parallelism = parallelism
        self._job = job_name
        self._attempt = attempt_number
        self._interval = checkpoint_interval_ms
        self._timeout = checkpoint_timeout_ms
        self._restored = restored_checkpoint_id
        self._configure = configure
        self._group = MetricGroup(("test",), {"subtask": subtask_index})
        self.configured: list[tuple[str, dict[str, str]]] = []

    @property
    def job_name(self) -> str:
        return self._job

    @property
    def subtask_index(self) -> int:
        return self._index

    @property
    def parallelism(self) -> int:
        return self._parallelism

    @property
    def attempt_number(self) -> int:
        return self._attempt

    @property
    def metric_group(self) -> MetricGroup:
        return self._group

    @property
    def checkpointing_enabled(self) -> bool:
        return self._interval is not None

    def configure_client(
        self, properties: MutableMapping[str, str], *, role: str, connector: str
    ) -> MutableMapping[str, str]:
        if self._configure is not None:
            self._configure(properties, role=role, connector=connector)
        self.configured.append((role, dict(properties)))
        return properties

    @property
    def restored_checkpoint_id(self) -> int | None:
        return self._restored

    @property
    def checkpoint_interval_ms(self) -> int | None:
        return self._interval

    @property
    def checkpoint_timeout_ms(self) -> int:
        return self._timeout
