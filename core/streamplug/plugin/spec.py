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

from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from streamplug.api.serde import FormatSpec
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
        WriterOutcome,
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
# The hooks that take part in what a source, an enumerator, a reader, a writer and a
# checkpoint do. Called per event or per batch, never per record; the runtime and the
# connectors look each one up once when they start (``PluginHost.caller``) and skip it for
# good when no plugin implements it. A failing implementation is logged and ignored.
ROLE_HOOKS = (
    "streamplug_source_starting",
    "streamplug_enumerator_splits_discovered",
    "streamplug_enumerator_splits_assigned",
    "streamplug_enumerator_splits_added_back",
    "streamplug_reader_splits_added",
    "streamplug_reader_batch_fetched",
    "streamplug_reader_splits_finished",
    "streamplug_writer_batch_producing",
    "streamplug_writer_outcome",
    "streamplug_checkpoint_subtask_acknowledged",
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
    snapshot. Every started checkpoint ends in ``streamplug_checkpoint_completed`` or
    ``streamplug_checkpoint_aborted``. A job without checkpointing calls none of the
    checkpoint hooks: its end still commits the sinks, but keeps no state. Returns nothing.

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


# -- sources, enumerators, readers, writers ----------------------------------------------
#
# These hooks run inside the job, on the thread named in each docstring; under the
# ``processes`` and ``ray`` runtimes the subtask ones run in the worker process, whose
# plugin host loads the same entry points. Whether any plugin implements a hook is decided
# once when a subtask (or the enumerator) starts: a job whose plugins implement none of them
# calls nothing per batch. A plugin registered into a host after the job started is not
# seen by that job.


@hookspec
def streamplug_source_starting(source: SourceInfo) -> None:
    """Called once per job attempt and pipeline, on the coordinator thread, when the source
    was built (and its enumerator created or restored) and is about to run: before the
    enumerator starts and before the first record. ``source.description`` is the source's
    ``describe()`` mapping, ``source.boundedness`` ``"BOUNDED"`` or
    ``"CONTINUOUS_UNBOUNDED"``. Observes only. Returns nothing.

    Example::

        @hookimpl
        def streamplug_source_starting(source):
            log.info("%s reads %s (%s)", source.pipeline,
                     source.description.get("subscription"), source.boundedness)
    """


@hookspec
def streamplug_enumerator_splits_discovered(splits: EnumeratorSplits) -> None:
    """Called on the coordinator thread when a source's enumerator found splits it had not
    known before (for Kafka: partitions, at the first discovery and at each periodic one
    that finds new ones), before it assigns them. ``splits.subtask_index`` is None.
    Observes only. Returns nothing.

    Example::

        @hookimpl
        def streamplug_enumerator_splits_discovered(splits):
            new_partitions.add(len(splits.splits))
    """


@hookspec
def streamplug_enumerator_splits_assigned(splits: EnumeratorSplits) -> None:
    """Called on the coordinator thread each time the enumerator hands ``splits.splits`` to
    reader ``splits.subtask_index`` (one call per reader and round), before the reader
    receives them. Observes only. Returns nothing.

    Example::

        @hookimpl
        def streamplug_enumerator_splits_assigned(splits):
            owners.update({s.split_id: splits.subtask_index for s in splits.splits})
    """


@hookspec
def streamplug_enumerator_splits_added_back(splits: EnumeratorSplits) -> None:
    """Called on the coordinator thread when splits go back to the enumerator because the
    reader that had them is gone: after a failure the job restores a checkpoint taken at
    another parallelism and its readers' splits are handed out again.
    ``splits.subtask_index`` is the reader they are added back for. Observes only. Returns
    nothing.

    Example::

        @hookimpl
        def streamplug_enumerator_splits_added_back(splits):
            log.warning("%d splits reassigned", len(splits.splits))
    """


@hookspec
def streamplug_reader_splits_added(splits: ReaderSplits) -> None:
    """Called when a subtask's reader is given splits, before it reads from them: on the
    subtask's thread for splits from the enumerator; for splits from the checkpoint the
    attempt restores (``splits.restored`` True) while the subtask is built, on the thread
    that builds it, before the subtask's thread starts. Observes only. Returns nothing.

    Example::

        @hookimpl
        def streamplug_reader_splits_added(splits):
            reading[splits.subtask.subtask_index] |= set(splits.split_ids)
    """


@hookspec
def streamplug_reader_batch_fetched(batch: FetchedBatch) -> Iterable[int] | None:
    """Called on the subtask's thread for each run of records of one split the reader
    fetched, before they are deserialized, and before a checkpoint barrier can come
    between them and the operators: what happens here and downstream of it happens in the
    same thread, for the same batch, before the next call.

    ``batch.messages`` gives read access to keys, values, headers, timestamps, topic,
    partition and offset. Return None to keep every record, or the positions (indices
    into ``batch.messages``) of records to drop: they are not deserialized and never reach
    the job, their offsets still count as read (a checkpoint does not replay them). Every
    implementation runs; the drops of all of them are applied. Count and sample here; never
    keep ``batch.messages`` past the call when the client reuses them.

    Example::

        @hookimpl
        def streamplug_reader_batch_fetched(batch):
            counts[batch.topic] += len(batch.messages)
            return [i for i, m in enumerate(batch.messages) if m.key() == b"test"]
    """


@hookspec
def streamplug_reader_splits_finished(splits: ReaderSplits) -> None:
    """Called on the subtask's thread when its reader finished splits (reached their
    stopping offsets, in bounded mode): nothing more is read from them.
    ``splits.split_ids`` names them. Observes only. Returns nothing.

    Example::

        @hookimpl
        def streamplug_reader_splits_finished(splits):
            log.info("subtask %d done with %s", splits.subtask.subtask_index, splits.split_ids)
    """


@hookspec
def streamplug_writer_batch_producing(
    batch: ProducingBatch,
) -> Mapping[int, list[tuple[str, bytes]]] | Sequence[list[tuple[str, bytes]] | None] | None:
    """Called on the subtask's thread for each batch a sink writer is about to serialize and
    produce, after the operators emitted it; the records are produced right after the call,
    in the same thread (so a reader hook's state of the same subtask describes the batch
    they came from).

    Return None to produce the batch as it is, or the headers to add: a mapping from
    positions (indices into ``batch.values``) to a list of ``(name, value)`` pairs, or a
    sequence as long as the batch holding such a list or None per position (the cheapest:
    a list is used as the producer's header column as it is). The writer may hand the
    lists to the client as they are: do not change them afterwards. On the
    record serializer's bulk paths (fixed topic, no headers of its own) the pairs are the
    record's headers; otherwise each replaces any header of the same name the serializer
    set, the others are appended. Under EXACTLY_ONCE
    headers are part of the transactional output. Every implementation runs; for one
    position, later implementations' headers of a name replace earlier ones'. Returning
    headers for a batch adds a headers column to the writer's produce calls (and on the
    general serializer path a per-record merge); returning None keeps the bulk path as is.

    Example::

        @hookimpl
        def streamplug_writer_batch_producing(batch):
            stamp = [("x-produced-by", batch.subtask.job_name.encode())]
            return dict.fromkeys(range(len(batch.values)), stamp)
    """


@hookspec
def streamplug_writer_outcome(outcome: WriterOutcome) -> None:
    """Called when a writer's flush or a transaction ended: on the subtask's thread for a
    flush (NONE / AT_LEAST_ONCE, at each checkpoint and at the end of input), on the
    thread that commits for a transaction (EXACTLY_ONCE: the coordinator thread under
    ``threads``, the worker's control loop under ``processes``), and when a transaction is
    dropped uncommitted (the attempt ended or failed: ``outcome.outcome == "aborted"``).
    A worker killed outright reports nothing; its open transaction is aborted by the
    broker when the restarted job fences it. Observes only. Returns nothing.

    Example::

        @hookimpl
        def streamplug_writer_outcome(outcome):
            if outcome.outcome != "committed":
                log.warning("%s %s: %s", outcome.kind, outcome.outcome, outcome.error)
    """


@hookspec
def streamplug_checkpoint_subtask_acknowledged(ack: CheckpointAck) -> None:
    """Called on the coordinator thread (in the driver, whatever the runtime) once per
    subtask and checkpoint, when the subtask's snapshot reached the coordinator, before
    the checkpoint is written and committed: ``ack.state_bytes`` is the size of its
    serialized state, ``ack.duration_ms`` how long the subtask took from the barrier to its
    snapshot. ``streamplug_checkpoint_completed`` or ``_aborted`` follows. Observes only.
    Returns nothing.

    Example::

        @hookimpl
        def streamplug_checkpoint_subtask_acknowledged(ack):
            sizes.record(ack.state_bytes, {"subtask": ack.subtask_index})
    """
