"""Config-driven pipelines: a TOML file names a source, transforms and sinks, and
``streamplug run`` builds and runs it. See ``docs/pipelines.md`` for the file format.

Only ``run_command`` is imported eagerly (the CLI registers it at every start); the rest
loads on first use, so ``streamplug --help`` does not import the runtime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from streamplug.pipeline.cli import run_command

if TYPE_CHECKING:
    from streamplug.pipeline.build import BuiltPipeline, build_pipeline, import_function
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

_HOMES = {
    "BuiltPipeline": "build",
    "build_pipeline": "build",
    "import_function": "build",
    "PipelineConfigError": "errors",
    "ProgressLine": "progress",
}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'streamplug.pipeline' has no attribute {name!r}")
    module = importlib.import_module(f"streamplug.pipeline.{_HOMES.get(name, 'config')}")
    value = getattr(module, name)
    globals()[name] = value
    return value
