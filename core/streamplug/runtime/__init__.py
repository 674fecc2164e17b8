"""The embedded engine: environment, job execution, checkpoints, restarts."""

from streamplug.runtime.config import CheckpointConfig
from streamplug.runtime.environment import DataStream, StreamExecutionEnvironment
from streamplug.runtime.job import JobClient, JobExecutionResult, JobMetrics, JobStatus
from streamplug.runtime.restart import RestartStrategies, RestartStrategy
from streamplug.runtime.storage import (
    CheckpointFile,
    CheckpointStorage,
    FileCheckpointStorage,
    ObjectStoreCheckpointStorage,
    open_checkpoint_storage,
)

__all__ = [
    "CheckpointConfig",
    "CheckpointFile",
    "CheckpointStorage",
    "DataStream",
    "FileCheckpointStorage",
    "JobClient",
    "JobExecutionResult",
    "JobMetrics",
    "JobStatus",
    "ObjectStoreCheckpointStorage",
    "RestartStrategies",
    "RestartStrategy",
    "StreamExecutionEnvironment",
    "open_checkpoint_storage",
]
