"""Every hook a streamplug plugin can implement.

A plugin is a module (or object) listed under the ``streamplug`` entry-point group of its
distribution's pyproject.toml::

    [project.entry-points.streamplug]
    msgpack = "streamplug_msgpack.plugin"

and implementing any of the hooks below with ``@streamplug.hookimpl``. Hooks are called
with keyword arguments; an implementation may accept any subset of them, and one that
names an argument the hook does not have, or a hook that does not exist, is refused when
its plugin registers (with the closest hook name when it looks like a typo).

Every hook is called through pluggy, so pluggy's contract holds: implementations run
last-registered first, ``tryfirst=True`` ones before the rest and ``trylast=True`` ones
after; a ``wrapper=True`` (or old-style ``hookwrapper=True``) implementation wraps the
call of all the others.

Registration hooks run lazily, the first time a run looks a name up, once per plugin
manager. Lifecycle hooks run on the thread that drives the job (the checkpoint
coordinator); they must return quickly, and an exception raised by one is logged and
otherwise ignored, so a monitoring plugin can never fail a job or keep the other plugins
from being told.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from streamplug.api.serde import FormatSpec
    from streamplug.plugin.records import (
        CommandSpec,
        ConnectorSpec,
        JobInfo,
        OffsetsInitializerSpec,
        PartitionerSpec,
        RuntimeSpec,
    )

PROJECT = "streamplug"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a plugin's function or method as an implementation of the hook of the same name
(pluggy's options apply: ``tryfirst``, ``trylast``, ``wrapper``, ``hookwrapper``,
``optionalhook``). Import it as ``from streamplug import hookimpl``."""

# The hooks that register names, and the kind of name each one registers.
REGISTRATION_HOOKS = (
    "streamplug_register_connectors",
    "streamplug_register_formats",
    "streamplug_register_partitioners",
    "streamplug_register_offsets_initializers",
    "streamplug_register_commands",
    "streamplug_register_runtimes",
)
# The hooks that only observe a job; the runtime calls them through PluginHost.notify.
LIFECYCLE_HOOKS = (
    "streamplug_job_started",
    "streamplug_job_finished",
    "streamplug_job_restarting",
    "streamplug_checkpoint_started",
    "streamplug_checkpoint_completed",
    "streamplug_checkpoint_aborted",
)


# -- registration -----------------------------------------------------------------------


@hookspec
def streamplug_register_connectors(register: Callable[[ConnectorSpec], None]) -> None:
    """Register named sources and sinks, for config-driven pipelines (``streamplug run``).

    Called once per plugin manager, the first time any connector name is looked up.
    ``register`` takes a ``ConnectorSpec``; its ``options`` is the frozen attrs class the
    pipeline table is converted into (see ``streamplug.plugin.options``), and its factory
    is then called as ``factory(options, host)``. A name another plugin registers too is a
    conflict: looking it up raises ``DuplicateNameError`` naming both, every other name still
    works. Returns nothing.

    Example::

        @hookimpl
        def streamplug_register_connectors(register):
            register(ConnectorSpec(name="kafka", kind="source", factory=kafka_source,
                                   options=KafkaSourceOptions))
    """


@hookspec
def streamplug_register_formats(register: Callable[[FormatSpec], None]) -> None:
    """Register named serialization formats (``json``, ``avro``, ``msgpack``...).

    Called once per plugin manager, the first time a format name is looked up.
    ``register`` takes a ``streamplug.api.serde.FormatSpec`` whose factories receive the
    pipeline's ``format_options`` as keyword arguments, checked first against
    ``serializer_options`` / ``deserializer_options`` (frozen attrs classes). Returns
    nothing.

    Example::

        @hookimpl
        def streamplug_register_formats(register):
            register(FormatSpec(name="msgpack", serializer=MsgpackSerializer,
                                deserializer=MsgpackDeserializer,
                                serializer_options=NoOptions, deserializer_options=ReadOptions))
    """


@hookspec
def streamplug_register_partitioners(register: Callable[[PartitionerSpec], None]) -> None:
    """Register named sink partitioners (``fixed``, ``round-robin``, ``default``...).

    Called once per plugin manager, the first time a partitioner name is looked up.
    ``register`` takes a ``PartitionerSpec`` whose factory receives options as keyword
    arguments, checked first against its ``options`` class, and returns a partitioner
    object. Returns nothing.

    Example::

        @hookimpl
        def streamplug_register_partitioners(register):
            register(PartitionerSpec(name="by-region", factory=RegionPartitioner,
                                     options=RegionOptions))
    """


@hookspec
def streamplug_register_offsets_initializers(
    register: Callable[[OffsetsInitializerSpec], None],
) -> None:
    """Register named offsets initializers (``earliest``, ``committed``, ``timestamp``...).

    Called once per plugin manager, the first time an initializer name is looked up.
    ``register`` takes an ``OffsetsInitializerSpec`` whose factory receives options as
    keyword arguments, checked first against its ``options`` class, and returns an
    initializer. Returns nothing.

    Example::

        @hookimpl
        def streamplug_register_offsets_initializers(register):
            register(OffsetsInitializerSpec(name="one-hour-ago", factory=OneHourAgo,
                                            options=NoOptions))
    """


@hookspec
def streamplug_register_commands(register: Callable[[CommandSpec], None]) -> None:
    """Add subcommands to the ``streamplug`` command line.

    Called once when the CLI starts. ``register`` takes a ``CommandSpec`` with a
    ``configure(parser)`` that adds arguments to an ``argparse`` sub-parser and a
    ``run(args) -> int`` that returns the exit status. Returns nothing.

    Example::

        @hookimpl
        def streamplug_register_commands(register):
            register(CommandSpec(name="broker", help="run a local Kafka",
                                 configure=add_broker_args, run=run_broker))
    """


@hookspec
def streamplug_register_runtimes(register: Callable[[RuntimeSpec], None]) -> None:
    """Add a runtime: where a job's worker slots run (``env.set_runtime(name)``,
    ``[job] runtime = "name"``, ``streamplug run --runtime name``).

    Called the first time a job looks a runtime up. ``register`` takes a ``RuntimeSpec``
    whose ``factory(**options)`` returns a ``streamplug.runtime.runtimes.Runtime``; the
    built-in ``threads`` and ``processes`` need no registration. Returns nothing.

    Example::

        @hookimpl
        def streamplug_register_runtimes(register):
            register(RuntimeSpec(name="ray", factory=RayRuntime,
                                 description="one Ray actor per worker slot"))
    """


# -- client configuration --------------------------------------------------------------


@hookspec
def streamplug_configure_client(
    properties: MutableMapping[str, str], role: str, connector: str
) -> None:
    """Adjust a client's properties before a connector builds the client.

    Called by connectors once per client they create, after the connector applied its own
    settings. ``properties`` is the mutable property dict (edit it in place: translate,
    add, remove); ``role`` is ``"consumer"``, ``"producer"`` or ``"admin"``; ``connector``
    names the connector (``"kafka"``). Raise ``streamplug.errors.ConfigError`` naming the
    option and its fix for a setting that cannot work. Every implementation runs, in
    pluggy's order (use ``tryfirst``/``trylast`` to order them). Returns nothing.

    Example::

        @hookimpl
        def streamplug_configure_client(properties, role, connector):
            if properties.pop("sasl.jaas.config", None): ...
    """


# -- job and checkpoint lifecycle ------------------------------------------------------


@hookspec
def streamplug_job_started(job: JobInfo) -> None:
    """Called when a job attempt started: after its sources and sinks were built and restored,
    before the first record. ``job.attempt`` is 0 for the first attempt. Returns nothing.

    Example::

        @hookimpl
        def streamplug_job_started(job):
            log.info("job %s attempt %d", job.name, job.attempt)
    """


@hookspec
def streamplug_job_finished(job: JobInfo, status: str, error: BaseException | None) -> None:
    """Called when a job ended for good: ``status`` is ``"FINISHED"``, ``"CANCELED"`` or ``"FAILED"``
    (``error`` set when FAILED). Not called for attempts the restart strategy retries; see
    ``streamplug_job_restarting``. Returns nothing.

    Example::

        @hookimpl
        def streamplug_job_finished(job, status, error):
            alert(job.name) if status == "FAILED" else None
    """


@hookspec
def streamplug_job_restarting(job: JobInfo, error: BaseException, delay_ms: int) -> None:
    """Called when an attempt failed with ``error`` and the restart strategy will restart it after
    ``delay_ms``. ``job`` describes the failed attempt. Returns nothing.

    Example::

        @hookimpl
        def streamplug_job_restarting(job, error, delay_ms):
            log.warning("restarting %s in %d ms: %s", job.name, delay_ms, error)
    """


@hookspec
def streamplug_checkpoint_started(job: JobInfo, checkpoint_id: int) -> None:
    """Called when the coordinator triggered checkpoint ``checkpoint_id``, before subtasks
    snapshot. Returns nothing.

    Example::

        @hookimpl
        def streamplug_checkpoint_started(job, checkpoint_id):
            timings[checkpoint_id] = time.monotonic()
    """


@hookspec
def streamplug_checkpoint_completed(job: JobInfo, checkpoint_id: int, location: str) -> None:
    """Called when checkpoint ``checkpoint_id`` is COMPLETE at ``location`` (a file path): its state is
    durable and its sink commits happened. Returns nothing.

    Example::

        @hookimpl
        def streamplug_checkpoint_completed(job, checkpoint_id, location):
            log.info("checkpoint %d at %s", checkpoint_id, location)
    """


@hookspec
def streamplug_checkpoint_aborted(job: JobInfo, checkpoint_id: int, reason: str) -> None:
    """Called when checkpoint ``checkpoint_id`` failed (timeout, snapshot or commit error,
    job failure) and will never be used. Returns nothing.

    Example::

        @hookimpl
        def streamplug_checkpoint_aborted(job, checkpoint_id, reason):
            log.warning("checkpoint %d aborted: %s", checkpoint_id, reason)
    """
