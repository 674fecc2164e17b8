"""Finding plugins through entry points and turning their registrations into name lookups.

One ``PluginHost`` is built per run by ``build_plugin_host``; there is no module-level
plugin manager, so tests and embedded applications can build isolated ones.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import warnings
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, Generic, Literal, TypeVar

import attrs
import pluggy

from streamplug import hookspecs
from streamplug.api.serde import FormatSpec
from streamplug.errors import DuplicateNameError, PluginError, UnknownNameError

__all__ = [
    "ENTRY_POINT_GROUP",
    "CommandSpec",
    "ConnectorSpec",
    "JobInfo",
    "OffsetsInitializerSpec",
    "PartitionerSpec",
    "PluginHost",
    "PluginInfo",
    "PluginLoadFailure",
    "RuntimeSpec",
    "build_plugin_host",
    "hookimpl",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "streamplug"
DISABLE_AUTOLOAD_ENV = "STREAMPLUG_DISABLE_PLUGIN_AUTOLOAD"
DISABLED_PLUGINS_ENV = "STREAMPLUG_DISABLED_PLUGINS"
CORE_DISTRIBUTION = "streamplug"

hookimpl = pluggy.HookimplMarker("streamplug")


@attrs.frozen
class ConnectorSpec:
    """A named source or sink. ``factory(**options)`` builds it from pipeline options."""

    name: str
    kind: Literal["source", "sink"]
    factory: Callable[..., Any]
    description: str = ""


@attrs.frozen
class PartitionerSpec:
    """A named sink partitioner. ``factory(**options)`` builds it."""

    name: str
    factory: Callable[..., Any]
    description: str = ""


@attrs.frozen
class OffsetsInitializerSpec:
    """A named offsets initializer. ``factory(**options)`` builds it."""

    name: str
    factory: Callable[..., Any]
    description: str = ""


@attrs.frozen
class CommandSpec:
    """A ``streamplug`` subcommand."""

    name: str
    help: str
    configure: Callable[[Any], None]
    run: Callable[[Any], int]


@attrs.frozen
class RuntimeSpec:
    """A named runtime (where a job's worker slots run): ``factory(**options)`` builds one
    ``streamplug.runtime.runtimes.Runtime`` per job run."""

    name: str
    factory: Callable[..., Any]
    description: str = ""


@attrs.frozen
class JobInfo:
    """What lifecycle hooks learn about a job attempt."""

    name: str
    job_id: str
    parallelism: int
    attempt: int


@attrs.frozen
class PluginLoadFailure:
    """An entry point that could not be imported; the other plugins still load."""

    distribution: str
    entry_point: str
    error: BaseException

    def __str__(self) -> str:
        return (
            f"plugin {self.entry_point!r} of distribution {self.distribution!r} failed to load: "
            f"{type(self.error).__name__}: {self.error}"
        )


@attrs.frozen
class PluginInfo:
    """One registered plugin and the names it contributes, by kind."""

    name: str
    distribution: str
    version: str
    names: dict[str, list[str]]


# Each kind of name and the hook that registers it. Sources and sinks share a hook but not
# a namespace: "kafka" is both a source and a sink.
_KINDS: dict[str, str] = {
    "source": "streamplug_register_connectors",
    "sink": "streamplug_register_connectors",
    "format": "streamplug_register_formats",
    "partitioner": "streamplug_register_partitioners",
    "offsets initializer": "streamplug_register_offsets_initializers",
    "command": "streamplug_register_commands",
    "runtime": "streamplug_register_runtimes",
}


def _belongs(kind: str, spec: Any) -> bool:
    return kind not in ("source", "sink") or getattr(spec, "kind", None) == kind


SpecT = TypeVar("SpecT")


@attrs.define
class _Entry(Generic[SpecT]):
    spec: SpecT
    distribution: str
    plugin: str


class PluginHost:
    """The pluggy ``PluginManager`` of one run, plus the name registries built from it."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.failures: list[PluginLoadFailure] = []
        self._dist_of: dict[str, tuple[str, str]] = {}
        self._registries: dict[str, dict[str, _Entry[Any]]] = {}

    # -- registration --------------------------------------------------------------------

    def register(
        self,
        plugin: object,
        name: str | None = None,
        distribution: str = "<local>",
        version: str = "",
    ) -> str:
        """Register a plugin module or object directly (tests, embedded applications)."""
        registered = self.pm.register(plugin, name=name)
        if registered is None:
            raise PluginError(f"plugin {name or plugin!r} is blocked or already registered")
        self._dist_of[registered] = (distribution, version)
        self._registries.clear()
        return registered

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self._dist_of.pop(name, None)
        self._registries.clear()

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Import every plugin of the entry-point group. A plugin that fails to import is
        recorded in ``failures`` and warned about, naming its distribution and entry point;
        the others still load."""
        disabled = {
            n.strip() for n in os.environ.get(DISABLED_PLUGINS_ENV, "").split(",") if n.strip()
        }
        for ep in importlib.metadata.entry_points(group=group):
            dist = ep.dist.name if ep.dist is not None else "<unknown>"
            version = ep.dist.version if ep.dist is not None else ""
            if ep.name in disabled or self.pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                failure = PluginLoadFailure(dist, f"{ep.name} = {ep.value}", exc)
                self.failures.append(failure)
                warnings.warn(str(failure), RuntimeWarning, stacklevel=2)
                continue
            self.register(plugin, name=ep.name, distribution=dist, version=version)

    # -- lookups -----------------------------------------------------------------------

    def _registry(self, kind: str) -> dict[str, _Entry[Any]]:
        if kind not in self._registries:
            self._registries[kind] = self._collect(kind)
        return self._registries[kind]

    def _collect(self, kind: str) -> dict[str, _Entry[Any]]:
        hook = getattr(self.pm.hook, _KINDS[kind])
        entries: dict[str, _Entry[Any]] = {}
        # Call each implementation by itself, so every name is attributed to its distribution.
        for impl in reversed(hook.get_hookimpls()):
            dist = self._dist_of.get(impl.plugin_name, (impl.plugin_name, ""))[0]

            def register(spec: Any, _dist: str = dist, _plugin: str = impl.plugin_name) -> None:
                if not _belongs(kind, spec):
                    return
                name = spec.name
                if name in entries:
                    raise DuplicateNameError(kind, name, entries[name].distribution, _dist)
                entries[name] = _Entry(spec, _dist, _plugin)

            impl.function(register=register)
        return entries

    def names(self, kind: str) -> list[str]:
        return sorted(self._registry(kind))

    def lookup(self, kind: str, name: str) -> Any:
        """The spec registered under ``name``; ``UnknownNameError`` lists the valid names."""
        entry = self._registry(kind).get(name)
        if entry is None:
            raise UnknownNameError(kind, name, list(self._registry(kind)))
        return entry.spec

    def connector(self, name: str, kind: Literal["source", "sink"]) -> ConnectorSpec:
        """The source or sink registered under ``name``."""
        spec: ConnectorSpec = self.lookup(kind, name)
        return spec

    def runtimes(self) -> list[RuntimeSpec]:
        """Every runtime plugins registered (the built-in ones are the runtime's own)."""
        return [entry.spec for entry in self._registry("runtime").values()]

    def format(self, name: str) -> FormatSpec:
        spec: FormatSpec = self.lookup("format", name)
        return spec

    def plugin_infos(self) -> list[PluginInfo]:
        """Every registered plugin with its distribution, version and names by kind."""
        by_plugin: dict[str, dict[str, list[str]]] = {}
        for kind in _KINDS:
            for name, entry in self._registry(kind).items():
                by_plugin.setdefault(entry.plugin, {}).setdefault(kind, []).append(name)
        infos = []
        for plugin_name, _plugin in self.pm.list_name_plugin():
            dist, version = self._dist_of.get(plugin_name, (plugin_name, ""))
            names = {k: sorted(v) for k, v in by_plugin.get(plugin_name, {}).items()}
            infos.append(PluginInfo(plugin_name, dist, version, names))
        return sorted(infos, key=lambda i: (i.distribution, i.name))

    # -- hooks the runtime and connectors call ---------------------------------------------

    def configure_client(
        self, properties: MutableMapping[str, str], *, role: str, connector: str
    ) -> MutableMapping[str, str]:
        self.pm.hook.streamplug_configure_client(
            properties=properties, role=role, connector=connector
        )
        return properties

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call a lifecycle hook; a failing implementation is logged, never propagated."""
        hook = getattr(self.pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            try:
                impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
            except Exception:
                log.exception("plugin %s failed in %s", impl.plugin_name, hook_name)


def _core_version() -> str:
    try:
        return importlib.metadata.version(CORE_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return ""


def build_plugin_host(
    *, autoload: bool | None = None, plugins: Iterable[object] = ()
) -> PluginHost:
    """Build the plugin host of one run.

    The core's built-in components always register (through the same hooks as any plugin).
    Entry-point plugins load unless ``autoload`` is False or, when ``autoload`` is None,
    the environment sets ``STREAMPLUG_DISABLE_PLUGIN_AUTOLOAD``. ``plugins`` are extra
    plugin objects to register (tests).
    """
    from streamplug import builtin

    pm = pluggy.PluginManager("streamplug")
    pm.add_hookspecs(hookspecs)
    host = PluginHost(pm)
    host.register(
        builtin, name="streamplug.builtin", distribution=CORE_DISTRIBUTION, version=_core_version()
    )
    if autoload is None:
        autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    if autoload:
        host.load_entry_points()
    for plugin in plugins:
        host.register(plugin)
    return host
