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
    CommandSpec,
    ConnectorSpec,
    JobInfo,
    OffsetsInitializerSpec,
    PartitionerSpec,
    RuntimeSpec,
)
from streamplug.plugin.spec import hookimpl

__all__ = [
    "DISABLED_PLUGINS_ENV",
    "DISABLE_AUTOLOAD_ENV",
    "ENTRY_POINT_GROUP",
    "CommandSpec",
    "ConnectorSpec",
    "FormatSpec",
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
