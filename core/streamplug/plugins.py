"""Former home of the plugin API, kept so existing plugins keep importing from it.

New code imports from ``streamplug.plugin`` (or ``hookimpl`` from ``streamplug``).
"""

from streamplug.plugin import (
    DISABLE_AUTOLOAD_ENV,
    DISABLED_PLUGINS_ENV,
    ENTRY_POINT_GROUP,
    CommandSpec,
    ConnectorSpec,
    JobInfo,
    NameConflict,
    OffsetsInitializerSpec,
    PartitionerSpec,
    PluginHost,
    PluginInfo,
    PluginLoadFailure,
    RuntimeSpec,
    build_plugin_host,
    hookimpl,
)

__all__ = [
    "DISABLED_PLUGINS_ENV",
    "DISABLE_AUTOLOAD_ENV",
    "ENTRY_POINT_GROUP",
    "CommandSpec",
    "ConnectorSpec",
    "JobInfo",
    "NameConflict",
    "OffsetsInitializerSpec",
    "PartitionerSpec",
    "PluginHost",
    "PluginInfo",
    "PluginLoadFailure",
    "RuntimeSpec",
    "build_plugin_host",
    "hookimpl",
]
