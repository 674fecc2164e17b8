"""The records plugins hand to the registration hooks, and what lifecycle hooks receive.

A leaf module: it imports nothing from streamplug, so the hookspecs, the plugin manager,
the runtime and every plugin can depend on it without depending on one another.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

import attrs

__all__ = [
    "CheckpointAck",
    "CommandSpec",
    "ConnectorSpec",
    "EnumeratorSplits",
    "FetchedBatch",
    "JobInfo",
    "OffsetsInitializerSpec",
    "PartitionerSpec",
    "ProducingBatch",
    "ReaderSplits",
    "RuntimeSpec",
    "SourceInfo",
    "SubtaskInfo",
    "WriterOutcome",
]


@attrs.frozen
class ConnectorSpec:
    """A named source or sink.

    ``options`` is the frozen attrs class of its options (see ``streamplug.plugin.options``):
    the core converts the pipeline table into it, reporting a wrong key on its line, and
    calls ``factory(options, host)`` with the instance and the run's ``PluginHost`` (to
    build the formats, partitioners and offsets initializers the options name). A spec
    without ``options`` gets ``factory(**table)``, unchecked.
    """

    name: str
    kind: Literal["source", "sink"]
    factory: Callable[..., Any]
    description: str = ""
    options: type | None = None


@attrs.frozen
class PartitionerSpec:
    """A named sink partitioner. ``factory(**options)`` builds it; ``options`` declares the
    keyword arguments it takes (a frozen attrs class), checked before it is called."""

    name: str
    factory: Callable[..., Any]
    description: str = ""
    options: type | None = None


@attrs.frozen
class OffsetsInitializerSpec:
    """A named offsets initializer. ``factory(**options)`` builds it; ``options`` declares
    the keyword arguments it takes (a frozen attrs class), checked before it is called."""

    name: str
    factory: Callable[..., Any]
    description: str = ""
    options: type | None = None


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


# -- what the source, enumerator, reader, writer and checkpoint hooks receive ---------------
#
# Frozen facts, one per batch or event: the hooks are called per batch, never per record,
# and a plugin keeps what it needs from them. Sequences inside are the runtime's own lists,
# handed over without a copy: read them, never change them.


class _SubtaskFacts(Protocol):
    """What ``SubtaskInfo.from_context`` reads: a ``streamplug.api.context.RuntimeContext``
    has it, named structurally so that this module stays a leaf."""

    @property
    def job_name(self) -> str: ...

    @property
    def subtask_index(self) -> int: ...

    @property
    def parallelism(self) -> int: ...

    @property
    def attempt_number(self) -> int: ...


@attrs.frozen
class SubtaskInfo:
    """Which subtask a reader or writer hook comes from. ``connector`` names the connector
    (``"kafka"``); ``attempt`` is 0 for the first run of the job."""

    job_name: str
    subtask_index: int
    parallelism: int
    attempt: int
    connector: str

    @classmethod
    def from_context(cls, context: _SubtaskFacts, connector: str) -> SubtaskInfo:
        """The subtask whose reader or writer was given ``context`` (its reader or sink
        context), for ``connector``; a connector builds it once, with its reader or writer."""
        return cls(
            context.job_name,
            context.subtask_index,
            context.parallelism,
            context.attempt_number,
            connector,
        )


@attrs.frozen
class SourceInfo:
    """A source that was built and is about to run, in one pipeline of a job attempt.
    ``description`` is the source's own ``describe()`` (never secrets); ``boundedness`` is
    ``"BOUNDED"`` or ``"CONTINUOUS_UNBOUNDED"``."""

    job: JobInfo
    pipeline: str
    description: Mapping[str, Any]
    boundedness: str


@attrs.frozen
class EnumeratorSplits:
    """Splits an enumerator discovered, assigned to reader ``subtask_index``, or took back
    from one (``subtask_index`` None for discovery). ``splits`` are the source's own split
    values (``KafkaPartitionSplit`` for Kafka)."""

    job: JobInfo
    pipeline: str
    splits: Sequence[Any]
    subtask_index: int | None = None


@attrs.frozen
class ReaderSplits:
    """Splits a reader was given (from the enumerator or from a checkpoint) or finished.
    For finished splits only their ids are known: ``splits`` is empty then."""

    subtask: SubtaskInfo
    pipeline: str
    split_ids: Sequence[str]
    splits: Sequence[Any] = ()
    restored: bool = False


@attrs.frozen
class FetchedBatch:
    """A run of records of one split that a reader fetched, before deserialization.

    ``messages`` are the client's record objects in offset order (for Kafka,
    ``confluent_kafka.Message``: ``key()``, ``value()``, ``headers()``, ``timestamp()``,
    ``topic()``, ``partition()``, ``offset()``); read them, never change them. ``group_id``
    is the consumer group, if the source has one."""

    subtask: SubtaskInfo
    split_id: str
    topic: str
    partition: int
    messages: Sequence[Any]
    group_id: str | None = None


@attrs.frozen
class ProducingBatch:
    """Elements a writer is about to serialize and produce, in the order they are produced.

    ``values`` are the elements as the job's last operator emitted them (before
    serialization), ``timestamps`` their event times (or None). ``topic`` is the topic
    every record goes to, or None when the record serializer chooses per record.
    ``transaction`` names the open Kafka transaction they become part of under
    EXACTLY_ONCE (None otherwise); ``delivery_guarantee`` is ``"NONE"``,
    ``"AT_LEAST_ONCE"`` or ``"EXACTLY_ONCE"``. ``same_positions`` is True when the runtime
    knows that the element at position i came from the record at position i of the
    reader's last delivered batch of the same subtask (only maps and timestamp
    assignment between source and sink)."""

    subtask: SubtaskInfo
    topic: str | None
    values: Sequence[Any]
    timestamps: Sequence[int] | None
    delivery_guarantee: str
    transaction: str | None = None
    same_positions: bool = False


@attrs.frozen
class WriterOutcome:
    """How a writer's flush or a transaction ended.

    ``kind`` is ``"flush"`` (NONE / AT_LEAST_ONCE: every record a subtask handed to its
    producer so far was acknowledged, or not) or ``"transaction"`` (EXACTLY_ONCE: one
    transaction per worker slot carries the output of every subtask of the slot).
    ``outcome`` is ``"committed"`` (flushed, or the transaction committed), ``"aborted"``
    (the transaction was aborted or dropped uncommitted: none of its records ever becomes
    visible to a read_committed consumer) or ``"failed"`` (the flush or the commit raised;
    a transaction that failed to commit is settled by recovery, which aborts it unless its
    decision record is in the commit log). ``subtask_index`` is set for a flush,
    ``transaction`` and ``transactional_id`` for a transaction; ``checkpoint_id`` is the
    checkpoint it belonged to, when there is one; ``error`` says what went wrong."""

    job_name: str
    kind: str
    outcome: str
    subtask_index: int | None = None
    transaction: str | None = None
    transactional_id: str | None = None
    checkpoint_id: int | None = None
    error: str | None = None


@attrs.frozen
class CheckpointAck:
    """One subtask's part of checkpoint ``checkpoint_id``: ``state_bytes`` is the size of its
    serialized snapshot (splits, committables, writer states), ``duration_ms`` the time from
    the barrier reaching its slot to its snapshot being taken (the wait for the batch in
    flight included)."""

    job: JobInfo
    checkpoint_id: int
    pipeline: str
    subtask_index: int
    state_bytes: int
    duration_ms: int
