"""Config-driven pipelines: a TOML file names a source, transforms and sinks, and
``streamplug run`` builds and runs it. See ``docs/pipelines.md`` for the file format."""

from streamplug.pipeline.build import BuiltPipeline, build_pipeline, import_function
from streamplug.pipeline.cli import run_command
from streamplug.pipeline.config import (
    CheckpointSettings,
    JobSettings,
    PipelineConfig,
    RestartSettings,
    SinkSettings,
    SourceSettings,
    TransformSettings,
    WatermarkSettings,
    load_pipeline,
    parse_duration_ms,
    parse_pipeline,
    pipeline_from_dict,
)
from streamplug.pipeline.errors import PipelineConfigError
from streamplug.pipeline.progress import ProgressLine

__all__ = [
    "BuiltPipeline",
    "CheckpointSettings",
    "JobSettings",
    "PipelineConfig",
    "PipelineConfigError",
    "ProgressLine",
    "RestartSettings",
    "SinkSettings",
    "SourceSettings",
    "TransformSettings",
    "WatermarkSettings",
    "build_pipeline",
    "import_function",
    "load_pipeline",
    "parse_duration_ms",
    "parse_pipeline",
    "pipeline_from_dict",
    "run_command",
]
