"""The plugin API: the hook marker, the records registration hooks take, and the host.

``streamplug.plugin.spec`` holds every hookspec; ``streamplug.plugin.records`` the records
(a leaf module); ``streamplug.plugin.manager`` the host that loads and calls plugins.
"""

from streamplug.api.serde import FormatSpec
from streamplug.plugin.manager import (
    DISABLE_AUTOLOAD_ENV,
    DISABLED_PLUGINS_ENV,
    ENTRY_POINT_GROUP,
    NameConflict,
    PluginHost,
    PluginInfo,
    PluginLoadFailure,
    build_plugin_host,
)
from streamplug.plugin.records import (
    CheckpointAck,
    CommandSpec,
    ConnectorSpec,
    EnumeratorSplits,
    FetchedBatch,
    JobInfo,
    OffsetsInitializerSpec,
    PartitionerSpec,
    ProducingBatch,
    ReaderSplits,
    RuntimeSpec,
    SourceInfo,
    SubtaskInfo,
    WriterOutcome,
)
from streamplug.plugin.spec import hookimpl

__all__ = [
    "DISABLED_PLUGINS_ENV",
    "DISABLE_AUTOLOAD_ENV",
    "ENTRY_POINT_GROUP",
    "CheckpointAck",
    "CommandSpec",
    "ConnectorSpec",
    "EnumeratorSplits",
    "FetchedBatch",
    "FormatSpec",
    "JobInfo",
    "NameConflict",
    "OffsetsInitializerSpec",
    "PartitionerSpec",
    "PluginHost",
    "PluginInfo",
    "PluginLoadFailure",
    "ProducingBatch",
    "ReaderSplits",
    "RuntimeSpec",
    "SourceInfo",
    "SubtaskInfo",
    "WriterOutcome",
    "build_plugin_host",
    "hookimpl",
]
