"""The plugin host: finding plugins through entry points, checking them against the
hookspecs, calling hooks through pluggy, and turning registrations into name lookups.

One ``PluginHost`` is built per run by ``build_plugin_host``; there is no module-level
plugin manager, so tests and embedded applications can build isolated ones.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.metadata
import inspect
import logging
import os
import sys
import threading
import types
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import attrs
import pluggy

from streamplug.errors import DuplicateNameError, PluginError, UnknownNameError
from streamplug.plugin import options as _options
from streamplug.plugin import spec
from streamplug.plugin.records import ConnectorSpec

if TYPE_CHECKING:
    from streamplug.api.serde import FormatSpec

__all__ = [
    "CORE_DISTRIBUTION",
    "DISABLED_PLUGINS_ENV",
    "DISABLE_AUTOLOAD_ENV",
    "ENTRY_POINT_GROUP",
    "InstalledPlugin",
    "NameConflict",
    "PluginHost",
    "PluginInfo",
    "PluginLoadFailure",
    "build_plugin_host",
    "installed_plugins",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "streamplug"
DISABLE_AUTOLOAD_ENV = "STREAMPLUG_DISABLE_PLUGIN_AUTOLOAD"
DISABLED_PLUGINS_ENV = "STREAMPLUG_DISABLED_PLUGINS"
CORE_DISTRIBUTION = "streamplug"

# The core's own plugins, imported by name the way pytest loads its default plugins: the
# CLI and the pipeline runner sit above the host (they use it), so the host must not
# import them.
BUILTIN_PLUGINS = ("streamplug.builtin", "streamplug.cli", "streamplug.pipeline.cli")


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


@attrs.frozen
class PluginLoadFailure:
    """A plugin that could not be imported, registered or asked for its names; the other
    plugins still load. ``hook`` names the hook it failed in, if it got that far."""

    distribution: str
    entry_point: str
    error: BaseException
    hook: str | None = None

    def __str__(self) -> str:
        where = f" in {self.hook}" if self.hook else " to load"
        return (
            f"plugin {self.entry_point!r} of distribution {self.distribution!r} failed{where}: "
            f"{_one_line(self.error)}"
        )


@attrs.frozen
class NameConflict:
    """Two or more plugins register one name of one kind; looking it up raises."""

    kind: str
    name: str
    # (distribution, plugin) of each claimant, in pluggy's call order
    claimants: tuple[tuple[str, str], ...]

    def error(self) -> DuplicateNameError:
        return DuplicateNameError(
            self.kind, self.name, *(f"{dist} (plugin {plugin})" for dist, plugin in self.claimants)
        )

    def __str__(self) -> str:
        return str(self.error())


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


def _belongs(kind: str, record: Any) -> bool:
    return kind not in ("source", "sink") or getattr(record, "kind", None) == kind


SpecT = TypeVar("SpecT")


@attrs.define
class _Entry(Generic[SpecT]):
    spec: SpecT
    distribution: str
    plugin: str


@attrs.define
class _Registry:
    entries: dict[str, _Entry[Any]]
    conflicts: dict[str, NameConflict]


def _hook_names() -> list[str]:
    return [
        n for n, _ in inspect.getmembers(spec, inspect.isfunction) if n.startswith("streamplug_")
    ]


class PluginHost:
    """The pluggy ``PluginManager`` of one run, plus the name registries built from it.

    Every hook is called through pluggy (its order, its wrappers). Non-wrapper
    implementations of the registration and lifecycle hooks are guarded when their plugin
    registers: an exception in one is recorded (registration) or logged (lifecycle) and
    the other plugins still run.
    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.failures: list[PluginLoadFailure] = []
        self._dist_of: dict[str, tuple[str, str]] = {}
        self._registries: dict[str, _Registry] = {}
        self._lock = threading.RLock()
        # The plugin whose registration hook is running: names registered meanwhile are its.
        self._registering: str | None = None

    # -- registration --------------------------------------------------------------------

    def register(
        self,
        plugin: object,
        name: str | None = None,
        distribution: str = "<local>",
        version: str = "",
    ) -> str:
        """Register a plugin module or object directly (tests, embedded applications).

        Raises ``PluginError`` naming the plugin and the hook when an implementation names
        a hook no spec defines (with the closest hook name) or an argument its hook does
        not have; nothing of such a plugin stays registered.
        """
        label = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        try:
            registered = self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(self._describe_invalid(label, exc)) from None
        if registered is None:
            raise PluginError(f"plugin {label!r} is blocked or already registered")
        unknown = [
            caller.name
            for caller in self.pm.get_hookcallers(plugin) or []
            if caller.spec is None
            and not any(i.optionalhook for i in caller.get_hookimpls() if i.plugin is plugin)
        ]
        if unknown:
            self.pm.unregister(plugin)
            raise PluginError(
                "; ".join(self._describe_unknown(label, hook) for hook in sorted(unknown))
            )
        self._guard(plugin, registered)
        self._dist_of[registered] = (distribution, version)
        self._registries.clear()
        return registered

    def _describe_unknown(self, plugin: str, hook: str) -> str:
        close = difflib.get_close_matches(hook, _hook_names(), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else "see streamplug.plugin.spec for the hooks"
        return (
            f"plugin {plugin!r} implements {hook}, which is not a streamplug hook; {hint} "
            f"(mark a hook of another project with @hookimpl(optionalhook=True))"
        )

    def _describe_invalid(self, plugin: str, exc: pluggy.PluginValidationError) -> str:
        # pluggy's message spans several lines; say the same in one, with the fix.
        for hook in _hook_names():
            impl = getattr(exc.plugin, hook, None)
            if impl is None or hook not in str(exc):
                continue
            wanted = list(inspect.signature(getattr(spec, hook)).parameters)
            try:
                given = list(inspect.signature(impl).parameters)
            except (TypeError, ValueError):
                break
            extra = [a for a in given if a not in wanted and a not in ("self", "cls")]
            if extra:
                return (
                    f"plugin {plugin!r} implements {hook} with argument(s) {', '.join(extra)} "
                    f"that the hook does not pass; it passes {', '.join(wanted)} "
                    f"(accept any subset of them)"
                )
        return f"plugin {plugin!r} is not a valid streamplug plugin: {' '.join(str(exc).split())}"

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self._dist_of.pop(name, None)
        self._registries.clear()

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Import and register every plugin of the entry-point group.

        A plugin that fails to import or to register (an unknown hook, a bad hook signature)
        is recorded in ``failures`` and logged once, in one line naming its distribution
        and entry point; the others still load.
        """
        self._load(installed_plugins(group))

    def _load(self, installed: Iterable[InstalledPlugin]) -> None:
        disabled = {
            n.strip() for n in os.environ.get(DISABLED_PLUGINS_ENV, "").split(",") if n.strip()
        }
        for found in installed:
            ep = found.entry_point
            if ep.name in disabled or self.pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
                self.register(
                    plugin, name=ep.name, distribution=found.distribution, version=found.version
                )
            except Exception as exc:
                failure = PluginLoadFailure(found.distribution, f"{ep.name} = {ep.value}", exc)
                self.failures.append(failure)
                log.warning("%s", failure)

    # -- calling hooks ---------------------------------------------------------------------

    def _guard(self, plugin: object, plugin_name: str) -> None:
        """Make each of the plugin's registration and lifecycle implementations contain its
        own failure, so one broken plugin does not keep the hook from the others."""
        for caller in self.pm.get_hookcallers(plugin) or []:
            if caller.name not in (
                *spec.REGISTRATION_HOOKS,
                *spec.LIFECYCLE_HOOKS,
                *spec.ROLE_HOOKS,
            ):
                continue
            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin or impl.wrapper or impl.hookwrapper:
                    continue
                # pluggy computed the argument names from the original function already and
                # calls ``function`` positionally with them. (``function`` is typed Final;
                # replacing it right after registration is the one change made to it.)
                setattr(impl, "function", self._guarded(impl.function, plugin_name, caller.name))  # noqa: B010

    def _guarded(
        self, function: Callable[..., Any], plugin_name: str, hook: str
    ) -> Callable[..., Any]:
        registration = hook in spec.REGISTRATION_HOOKS

        if hook in spec.ROLE_HOOKS:
            # Called per batch: a plugin that fails on every batch must not flood the log.
            failures = [0]

            @functools.wraps(function)
            def take_part(*args: Any) -> Any:
                try:
                    return function(*args)
                except Exception:
                    failures[0] += 1
                    if failures[0] == 1 or failures[0] % 1000 == 0:
                        log.exception(
                            "plugin %s failed in %s (%d time(s) so far; the job goes on as "
                            "if it had returned None)",
                            plugin_name,
                            hook,
                            failures[0],
                        )
                    return None

            return take_part

        if not registration:

            @functools.wraps(function)
            def observe(*args: Any) -> Any:
                try:
                    return function(*args)
                except Exception:
                    log.exception("plugin %s failed in %s", plugin_name, hook)
                    return None

            return observe

        @functools.wraps(function)
        def collect(*args: Any) -> Any:
            # Registration runs under the host's lock (see _registry), one hook at a time.
            previous, self._registering = self._registering, plugin_name
            try:
                return function(*args)
            except Exception as exc:
                dist = self._dist_of.get(plugin_name, (plugin_name, ""))[0]
                failure = PluginLoadFailure(dist, plugin_name, exc, hook)
                self.failures.append(failure)
                log.warning("%s", failure)
                return None
            finally:
                self._registering = previous

        return collect

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call a lifecycle hook through pluggy; a failing implementation is logged, never
        propagated, and does not keep the others from running."""
        try:
            getattr(self.pm.hook, hook_name)(**kwargs)
        except Exception:
            # Only a wrapper gets here: plain implementations are guarded at registration.
            log.exception("a wrapper of %s failed", hook_name)

    def caller(self, hook_name: str) -> Callable[..., list[Any]] | None:
        """The pluggy caller of ``hook_name`` if any registered plugin implements it, else
        None. For hooks called per batch: look it up once when a subtask starts, keep the
        result, and skip the call entirely while it is None."""
        caller = getattr(self.pm.hook, hook_name)
        if not caller.get_hookimpls():
            return None
        hook: Callable[..., list[Any]] = caller
        return hook

    def configure_client(
        self, properties: MutableMapping[str, str], *, role: str, connector: str
    ) -> MutableMapping[str, str]:
        self.pm.hook.streamplug_configure_client(
            properties=properties, role=role, connector=connector
        )
        return properties

    # -- lookups -----------------------------------------------------------------------

    def _registry(self, kind: str) -> _Registry:
        with self._lock:
            if kind not in self._registries:
                self._registries[kind] = self._collect(kind)
            return self._registries[kind]

    def _collect(self, kind: str) -> _Registry:
        claims: dict[str, list[_Entry[Any]]] = {}

        def register(record: Any) -> None:
            if not _belongs(kind, record):
                return
            plugin = self._registering or "<unknown plugin>"
            dist = self._dist_of.get(plugin, (plugin, ""))[0]
            claims.setdefault(record.name, []).append(_Entry(record, dist, plugin))

        getattr(self.pm.hook, _KINDS[kind])(register=register)
        registry = _Registry({}, {})
        for name, entries in claims.items():
            if len(entries) == 1:
                registry.entries[name] = entries[0]
            else:
                claimants = tuple((e.distribution, e.plugin) for e in entries)
                registry.conflicts[name] = NameConflict(kind, name, claimants)
        return registry

    def names(self, kind: str) -> list[str]:
        """Every name of ``kind`` that a lookup finds (conflicting names are left out)."""
        return sorted(self._registry(kind).entries)

    def conflicts(self) -> list[NameConflict]:
        """Every name that more than one plugin registers, of every kind."""
        return [c for kind in _KINDS for c in self._registry(kind).conflicts.values()]

    def lookup(self, kind: str, name: str) -> Any:
        """The record registered under ``name``. ``UnknownNameError`` lists the valid
        names; ``DuplicateNameError`` names the distributions that both claim it."""
        registry = self._registry(kind)
        entry = registry.entries.get(name)
        if entry is None:
            if name in registry.conflicts:
                raise registry.conflicts[name].error()
            raise UnknownNameError(kind, name, list(registry.entries))
        return entry.spec

    def connector(self, name: str, kind: Literal["source", "sink"]) -> ConnectorSpec:
        """The source or sink registered under ``name``."""
        record: ConnectorSpec = self.lookup(kind, name)
        return record

    def format(self, name: str) -> FormatSpec:
        record: FormatSpec = self.lookup("format", name)
        return record

    # -- components from options --------------------------------------------------------------

    def options_class(self, kind: str, name: str, direction: str | None = None) -> type | None:
        """The options class the component registered under ``name`` declares (for a
        format, that of its ``direction``: ``"serializer"`` or ``"deserializer"``)."""
        record = self.lookup(kind, name)
        if kind == "format":
            cls: type | None = getattr(record, f"{direction}_options", None)
            return cls
        return getattr(record, "options", None)

    def _reference(
        self, kind: str, ref: Any, path: tuple[Any, ...], direction: str | None = None
    ) -> tuple[str, dict[str, Any], tuple[Any, ...]]:
        """The name and options of a component reference (a name, or a table with ``name``
        and the options), with the name checked: an unknown one raises ``OptionsError``
        with a did-you-mean and the installed names."""
        if isinstance(ref, str):
            name, table, name_path = ref, {}, path
        elif isinstance(ref, Mapping):
            table = dict(ref)
            name = table.pop("name", None)
            name_path = (*path, "name")
            if not isinstance(name, str):
                raise _options.OptionsError(
                    path, f"a {kind} table needs a name", '{ name = "...", <its options> }'
                )
        else:
            raise _options.OptionsError(
                path,
                f"must name a {kind}: a string or a {{ name = ... }} table, got {ref!r}",
                None,
            )
        registry = self._registry(kind)
        if name not in registry.entries and ":" in name and kind != "format":
            # "timestamp:1700000000000": the name and one argument its plugin reads.
            name = name.partition(":")[0]
        if name not in registry.entries:
            if name in registry.conflicts:
                raise _options.OptionsError(name_path, str(registry.conflicts[name]), None)
            raise _options.UnknownComponentError(name_path, kind, name, sorted(registry.entries))
        if kind == "format" and direction is not None:
            record = registry.entries[name].spec
            if getattr(record, direction) is None:
                way = "deserialize (read)" if direction == "deserializer" else "serialize (write)"
                raise _options.OptionsError(
                    name_path,
                    f"format {name!r} cannot {way}",
                    "choose a format that supports this direction",
                )
        return name, table, path

    def check_options(self, cls: type, table: Mapping[str, Any], path: tuple[Any, ...] = ()) -> Any:
        """``table`` converted into the options class ``cls``, with every component it
        names checked too (the name, and that component's own options, at any depth).
        Raises ``OptionsError`` naming the key path of the first problem."""
        instance = _options.structure(cls, table, path)
        for field in attrs.fields(cls):
            meta = field.metadata.get("streamplug", {})
            value = table.get(field.name)
            if "component" in meta and value is not None:
                name, nested, at = self._reference(
                    meta["component"], value, (*path, field.name), meta.get("direction")
                )
                nested_cls = self.options_class(meta["component"], name, meta.get("direction"))
                # "timestamp:<ms>" carries its one argument for the plugin to read.
                shorthand = isinstance(value, str) and value != name
                if nested_cls is not None and not shorthand:
                    self.check_options(nested_cls, nested, at)
            elif "options_of" in meta and value:
                named = table.get(meta["options_of"])
                of = attrs.fields_dict(cls)[meta["options_of"]].metadata["streamplug"]
                if isinstance(named, str):
                    nested_cls = self.options_class(of["component"], named, of.get("direction"))
                    if nested_cls is not None:
                        self.check_options(nested_cls, value, (*path, field.name))
        return instance

    def build_component(self, kind: str, ref: Any, *, path: tuple[Any, ...] = ()) -> Any:
        """A partitioner or offsets initializer from its name or a ``{ name = ..., <its
        options> }`` table, its options checked against the class it declares."""
        name, table, at = self._reference(kind, ref, path)
        record = self.lookup(kind, name)
        cls = self.options_class(kind, name)
        if cls is None:
            return record.factory(**table)
        return record.factory(**_options.given(self.check_options(cls, table, at), table))

    def build_format(
        self,
        name: str,
        options: Mapping[str, Any],
        direction: Literal["serializer", "deserializer"],
        *,
        path: tuple[Any, ...] = (),
    ) -> Any:
        """The serializer or deserializer of format ``name``, built with ``options``
        checked against the class the format declares for that direction."""
        self._reference("format", name, path, direction)
        record = self.format(name)
        factory = getattr(record, direction)
        cls = self.options_class("format", name, direction)
        if cls is None:
            return factory(**options)
        return factory(**_options.given(self.check_options(cls, options, path), options))

    def plugin_infos(self) -> list[PluginInfo]:
        """Every registered plugin with its distribution, version and names by kind,
        including names it shares with another plugin (see ``conflicts``)."""
        by_plugin: dict[str, dict[str, list[str]]] = {}
        for kind in _KINDS:
            registry = self._registry(kind)
            for name, entry in registry.entries.items():
                by_plugin.setdefault(entry.plugin, {}).setdefault(kind, []).append(name)
            for name, conflict in registry.conflicts.items():
                for _dist, plugin in conflict.claimants:
                    by_plugin.setdefault(plugin, {}).setdefault(kind, []).append(name)
        infos = []
        for plugin_name, _plugin in self.pm.list_name_plugin():
            dist, version = self._dist_of.get(plugin_name, (plugin_name, ""))
            names = {k: sorted(v) for k, v in by_plugin.get(plugin_name, {}).items()}
            infos.append(PluginInfo(plugin_name, dist, version, names))
        return sorted(infos, key=lambda i: (i.distribution, i.name))


@attrs.frozen
class InstalledPlugin:
    """An entry point of the plugin group, with the distribution that declares it."""

    entry_point: importlib.metadata.EntryPoint
    distribution: str
    version: str


class _Installation:
    """What was read from one installation: each entry-point group's plugins and the
    core's version. A job builds its host when it starts, and the builders that check
    settings build one before it: the scan reads every installed distribution's entry
    points and parses each plugin's METADATA twice (name, version), about 7 ms of a job's
    start on this project's own install, so it is done once per installation."""

    def __init__(self, key: tuple[tuple[str, int], ...]) -> None:
        self.key = key
        self._plugins: dict[str, tuple[InstalledPlugin, ...]] = {}
        self._core_version: str | None = None

    def plugins(self, group: str) -> tuple[InstalledPlugin, ...]:
        found = self._plugins.get(group)
        if found is None:
            found = tuple(
                InstalledPlugin(
                    ep,
                    ep.dist.name if ep.dist is not None else "<unknown>",
                    ep.dist.version if ep.dist is not None else "",
                )
                for ep in importlib.metadata.entry_points(group=group)
            )
            self._plugins[group] = found
        return found

    def core_version(self) -> str:
        if self._core_version is None:
            try:
                self._core_version = importlib.metadata.version(CORE_DISTRIBUTION)
            except importlib.metadata.PackageNotFoundError:
                self._core_version = ""
        return self._core_version


# Only the newest installation is worth keeping. Two threads that read it at once only
# scan twice: each replaces or fills the whole object, never half of it.
_last_installation: _Installation | None = None


def _current_installation() -> _Installation:
    """sys.path with each entry's modification time names the installation: installing or
    removing a distribution adds or removes its metadata directory in one of them (the
    same signal importlib.metadata's own directory cache goes by), and a changed sys.path
    is a different installation."""
    global _last_installation
    entries = []
    for entry in sys.path:
        try:
            mtime = os.stat(entry or ".").st_mtime_ns
        except OSError:
            mtime = -1
        entries.append((entry, mtime))
    key = tuple(entries)
    last = _last_installation
    if last is None or last.key != key:
        last = _last_installation = _Installation(key)
    return last


def installed_plugins(group: str = ENTRY_POINT_GROUP) -> tuple[InstalledPlugin, ...]:
    """The entry points of ``group``, each with its distribution's name and version;
    scanned again whenever the installation changed since the last scan."""
    return _current_installation().plugins(group)


_HOOKABLE = (types.FunctionType, staticmethod, classmethod, types.MethodType)


class _PluginManager(pluggy.PluginManager):
    """pluggy's manager, with a quicker look at module plugins' names.

    pluggy inspects every name ``dir()`` gives with ``inspect.getattr_static``; a plugin
    module's names are mostly imports and constants, and that inspection was most of a
    host's build, which every ``execute()`` does (2.6 ms with this repository's plugins,
    1.25 ms with this look). A module's own dictionary answers the same question for
    names that are not functions or method wrappers; pluggy still judges every candidate
    itself."""

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        if isinstance(plugin, types.ModuleType):
            value = plugin.__dict__.get(name, _HOOKABLE)
            if value is not _HOOKABLE:
                if not isinstance(value, _HOOKABLE):
                    return None
                # A plain function carries its marker itself (pluggy reads it there).
                if isinstance(value, types.FunctionType) and not hasattr(value, self._marker):
                    return None
        return super().parse_hookimpl_opts(plugin, name)

    @functools.cached_property
    def _marker(self) -> str:
        return self.project_name + "_impl"


def build_plugin_host(
    *, autoload: bool | None = None, plugins: Iterable[object] = ()
) -> PluginHost:
    """Build the plugin host of one run.

    The core's built-in components always register (through the same hooks as any plugin).
    Entry-point plugins load unless ``autoload`` is False or, when ``autoload`` is None,
    the environment sets ``STREAMPLUG_DISABLE_PLUGIN_AUTOLOAD``. ``plugins`` are extra
    plugin objects to register (tests); one that is not valid raises ``PluginError``.
    """
    pm = _PluginManager(spec.PROJECT)
    pm.add_hookspecs(spec)
    host = PluginHost(pm)
    installation = _current_installation()
    version = installation.core_version()
    for module in BUILTIN_PLUGINS:
        host.register(
            importlib.import_module(module),
            name=module,
            distribution=CORE_DISTRIBUTION,
            version=version,
        )
    if autoload is None:
        autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    if autoload:
        host._load(installation.plugins(ENTRY_POINT_GROUP))
    for plugin in plugins:
        host.register(plugin)
    return host
