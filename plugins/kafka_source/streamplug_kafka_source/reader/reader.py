"""The source reader: all of a subtask's partitions over one consumer, emitted in batches."""

from __future__ import annotations

import logging
import time
from bisect import bisect_left
from collections.abc import Collection, Iterator, Mapping, Sequence
from itertools import groupby
from operator import attrgetter, itemgetter, ne
from typing import Any, cast, overload

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    OFFSET_STORED,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from streamplug.api.context import ReaderContext
from streamplug.api.source import InputStatus, ReaderOutput, SourceReader
from streamplug.plugin.records import FetchedBatch, SubtaskInfo
from streamplug.secrets import redact_text
from streamplug_kafka_common.callbacks import ChainedErrorCallback
from streamplug_kafka_common.failures import client_creation_error, unrecoverable_kafka_error
from streamplug_kafka_common.logs import CollapsingClientLogger, install_client_logger
from streamplug_kafka_source.deserializer import (
    KafkaRecordDeserializationSchema,
    KeyValueDeserializationSchema,
    ValueOnlyDeserializationSchema,
    records_of,
)
from streamplug_kafka_source.metrics import KafkaSourceReaderMetrics
from streamplug_kafka_source.reader.bad_records import (
    BadRecordAction,
    BadRecordPolicy,
    DeadLetterProducer,
    locate,
)
from streamplug_kafka_source.split.split import (
    COMMITTED_OFFSET,
    EARLIEST_OFFSET,
    LATEST_OFFSET,
    KafkaPartitionSplit,
    KafkaTopicPartition,
)
from streamplug_kafka_source.split.state import KafkaPartitionSplitState

log = logging.getLogger(__name__)

_LIBRDKAFKA_OFFSETS = {
    EARLIEST_OFFSET: OFFSET_BEGINNING,
    LATEST_OFFSET: OFFSET_END,
    COMMITTED_OFFSET: OFFSET_STORED,
}

# Consumer errors after which reading cannot go on correctly; the rest (broker down,
# leader moves...) librdkafka retries by itself, so they are only logged.
_FATAL_CODES = frozenset(
    {
        KafkaError._AUTO_OFFSET_RESET,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError._AUTHENTICATION,
        KafkaError._SSL,
        KafkaError._INVALID_ARG,
        KafkaError._FATAL,
    }
)

# librdkafka's own scan for unknown topics runs once a second: waiting longer than that
# for a metadata answer cannot start a partition sooner.
_METADATA_TIMEOUT_S = 1.0
# How long the work downstream of one batch should take (see _fit_batch), and the first
# batch's limit, before the reader has measured anything: Kafka's own max.poll.records.
_BATCH_SECONDS = 0.05
_FIRST_BATCH = 500
# Asking the consumer for its positions costs about as much per partition as reading one
# message's partition costs per 8 records (0.27 us against 32 ns): below that many records
# per split, the batch is scanned instead (see _moved_split).
_RECORDS_PER_PROBED_SPLIT = 8

_message_error = Message.error
_message_partition = Message.partition
_message_timestamp = Message.timestamp
_message_topic = Message.topic
_message_value = Message.value
_second = itemgetter(1)
_position_offset = attrgetter("offset")


class RecordTimestamps(Sequence[int]):
    """The record timestamps of a batch, read from the messages when first asked for.

    Reading a timestamp builds a tuple per record, about 100 ns: as much as the rest of
    the source's work per record. A job that uses no event time (no watermark strategy
    that looks at them, a sink that does not write them) never asks, so the reader
    hands this view on instead of a list. A slice stays lazy; anything else reads the
    whole batch once."""

    __slots__ = ("_messages", "_values")

    def __init__(self, messages: list[Message]) -> None:
        self._messages = messages
        self._values: list[int] | None = None

    def _read(self) -> list[int]:
        values = self._values
        if values is None:
            values = self._values = list(map(_second, map(_message_timestamp, self._messages)))
        return values

    def __len__(self) -> int:
        return len(self._messages)

    @overload
    def __getitem__(self, index: int) -> int: ...
    @overload
    def __getitem__(self, index: slice) -> RecordTimestamps: ...
    def __getitem__(self, index: int | slice) -> int | RecordTimestamps:
        if isinstance(index, slice):
            return RecordTimestamps(self._messages[index])
        if self._values is None:
            # One timestamp (the metrics' last one): no need to read the rest.
            timestamp: int = self._messages[index].timestamp()[1]
            return timestamp
        return self._values[index]

    def __iter__(self) -> Iterator[int]:
        return iter(self._read())

    def __repr__(self) -> str:
        return f"RecordTimestamps({len(self._messages)} records)"


def _offset(message: Message) -> int:
    offset: int = message.offset()  # type: ignore[assignment] # never None for a record
    return offset


class KafkaSourceReader(SourceReader[KafkaPartitionSplit]):
    """Reads every split of one subtask through a single confluent-kafka ``Consumer``.

    Splits are added with ``incremental_assign`` at their starting offsets; each
    ``poll_next`` drains up to ``poll.max.records`` records in one ``consume`` call, cuts
    the batch into per-partition runs (a list slice each, no per-record copy), stops each
    split at its stopping offset and emits each run with one ``collect_batch``. Offsets are
    committed to the group when a checkpoint completes; recovery never reads them back.

    ``splits_can_finish`` is False for an unbounded source without stopping offsets: its
    splits never end, so a reader that never had one (more readers than partitions)
    stays up and idle instead of ending. Ending would publish the end-of-input watermark while
    the other readers may not have received their partitions yet.
    """

    def __init__(
        self,
        context: ReaderContext,
        consumer_properties: Mapping[str, Any],
        deserializer: KafkaRecordDeserializationSchema[Any],
        *,
        bad_record_policy: BadRecordPolicy,
        dead_letter_properties: Mapping[str, Any] | None,
        commit_offsets_on_checkpoint: bool,
        register_consumer_metrics: bool,
        poll_max_records: int,
        poll_timeout_ms: int,
        splits_can_finish: bool = True,
        subscribed_topics: Collection[str] = (),
    ) -> None:
        self._context = context
        self._subscribed_topics = frozenset(subscribed_topics)
        self._splits_can_finish = splits_can_finish
        self._finished_any = False
        self._deserializer = deserializer
        self._value_only = (
            deserializer if isinstance(deserializer, ValueOnlyDeserializationSchema) else None
        )
        self._key_value = (
            deserializer if isinstance(deserializer, KeyValueDeserializationSchema) else None
        )
        self._policy = bad_record_policy
        self._commit_on_checkpoint = commit_offsets_on_checkpoint
        self._max_records = poll_max_records
        self._batch_limit = min(poll_max_records, _FIRST_BATCH)
        self._poll_timeout_s = poll_timeout_ms / 1000.0
        self._metrics = KafkaSourceReaderMetrics(context.metric_group, register_consumer_metrics)
        self._metrics.pending_records = self.pending_records
        self._splits: dict[tuple[str, int], KafkaPartitionSplitState] = {}
        self._single_topic: str | None = None
        # The assigned partitions, their states in the same order, and the consumer's
        # positions in them as last asked (see _moved_split).
        self._probe: list[TopicPartition] = []
        self._probe_states: list[KafkaPartitionSplitState] = []
        self._probed: list[int] | None = None
        self._no_more_splits = False
        self._to_release: list[str] = []
        # Topics whose metadata this consumer has asked for (see _learn_topics).
        self._known_topics: set[str] = set()
        self._finished_offsets: dict[tuple[str, int], int] = {}
        self._offsets_to_commit: dict[int, dict[tuple[str, int], int]] = {}
        # The last commit sent and not yet acknowledged: close() finishes it, so the
        # offsets of a bounded job's final checkpoint reach Kafka before the job ends.
        self._unacknowledged_commit: list[TopicPartition] | None = None
        self._failure: BaseException | None = None
        self._idle = False
        self._opened = False
        self._closed = False
        self._properties = dict(consumer_properties)
        # Asked once: with no plugin implementing the hook, a batch costs one attribute test.
        hook = getattr(context, "plugin_hook", None)
        self._on_fetched = hook("streamplug_reader_batch_fetched") if hook is not None else None
        self._subtask_info = SubtaskInfo.from_context(context, "kafka")
        group = self._properties.get("group.id")
        self._group_id = str(group) if group else None
        config: dict[str, Any] = dict(self._properties)
        config["on_commit"] = self._on_commit
        # Chained, not replaced: an error_cb a client-configuration hook installed (the
        # security plugin's turns authentication failures into KafkaAuthenticationError)
        # still hears every error, and what it raises ends the read.
        self._error_log = CollapsingClientLogger(logger=log)
        self._client_errors = ChainedErrorCallback.install(config, self._on_error)
        if register_consumer_metrics:
            config["stats_cb"] = self._metrics.on_stats
        try:
            install_client_logger(config)
            self._consumer = Consumer(config)
        except (KafkaException, ValueError, TypeError) as exc:
            # Creating a consumer does not connect: its failure is the configuration's,
            # and a restart would fail the same way.
            raise client_creation_error("Kafka source", exc, self._properties) from exc
        self._dead_letter: DeadLetterProducer | None = None
        if bad_record_policy.action is BadRecordAction.DEAD_LETTER:
            assert bad_record_policy.dead_letter_topic is not None
            self._dead_letter = DeadLetterProducer(
                bad_record_policy.dead_letter_topic, dead_letter_properties or {}
            )

    # -- SourceReader --------------------------------------------------------------------

    def start(self) -> None:
        self._open_deserializer()
        # The topics a source names are known before the enumerator has found their
        # partitions: asking for their metadata now, while it discovers, spares the
        # assignment that wait (~15 ms of a job's start on a local broker, see
        # _learn_topics). Not on a thread of its own: confluent-kafka 2.16 lets one thread
        # at a time into a consumer's methods, so the splits' incremental_assign (and a
        # poll) waited for this request anyway (measured: the whole ~14 ms).
        self._learn_topics(self._subscribed_topics)

    def _open_deserializer(self) -> None:
        if not self._opened:
            self._opened = True
            self._deserializer.open()

    def add_splits(self, splits: Sequence[KafkaPartitionSplit]) -> None:
        assign: list[TopicPartition] = []
        for split in splits:
            key = (split.topic, split.partition)
            state = KafkaPartitionSplitState.of(split)
            if state.finished:
                # Nothing between start and stop (an empty partition in bounded mode).
                self._finished_offsets[key] = split.starting_offset
                self._to_release.append(split.split_id)
                self._finished_any = True
                continue
            if key in self._splits:
                log.warning("Kafka source reader already reads %s; ignoring %s", key, split)
                continue
            self._splits[key] = state
            offset = _LIBRDKAFKA_OFFSETS.get(split.starting_offset, split.starting_offset)
            assign.append(TopicPartition(split.topic, split.partition, offset))
            self._metrics.add_partition(split.topic_partition, self._offset_reader(key))
        if assign:
            self._learn_topics({tp.topic for tp in assign})
            self._consumer.incremental_assign(assign)
        topics = {t for t, _ in self._splits}
        self._single_topic = next(iter(topics)) if len(topics) == 1 else None
        self._new_probe()
        log.debug(
            "Kafka source reader %d reads %s",
            self._context.subtask_index,
            ", ".join(str(s.split) for s in self._splits.values()),
        )

    def _new_probe(self) -> None:
        self._probe = [TopicPartition(topic, partition) for topic, partition in self._splits]
        self._probe_states = list(self._splits.values())
        self._probed = None

    def _learn_topics(self, topics: Collection[str]) -> None:
        """Ask for the metadata of topics this consumer has not seen before assigning them.

        librdkafka only asks for an unknown topic's leaders in its first metadata request
        or in a scan for unknown topics it runs once a second; a partition assigned to a
        consumer that is already up but has never seen its topic therefore started fetching
        up to a second late (measured: first record 0.9-1.0 s after the assignment in most
        job starts, ~0.02 s with the metadata known). One metadata request (~1 ms on a
        local broker) removes that wait. If it fails, the assignment still works: the
        once-a-second scan finds the topic as before; a request that gets no answer ends
        the round (the broker is away; asking about the next topic would wait as long). A
        topic the answer does not have yet (not created) is asked for again when it is
        assigned."""
        for topic in sorted(set(topics) - self._known_topics):
            try:
                metadata = self._consumer.list_topics(topic, timeout=_METADATA_TIMEOUT_S)
            except KafkaException as exc:
                log.debug("Kafka source reader could not prefetch metadata of %s: %s", topic, exc)
                return
            found = metadata.topics.get(topic)
            if found is not None and found.error is None and found.partitions:
                self._known_topics.add(topic)

    def notify_no_more_splits(self) -> None:
        self._no_more_splits = True

    def poll_next(self, output: ReaderOutput[Any]) -> InputStatus:
        self._raise_failure()
        if self._to_release:
            for split_id in self._to_release:
                output.release_split(split_id)
            self._to_release.clear()
        if not self._splits:
            if self._no_more_splits and (self._splits_can_finish or self._finished_any):
                return self._end_of_input()
            if not self._idle:
                # No partitions to read (more readers than partitions): never hold back
                # the job's watermark while waiting for an assignment.
                self._idle = True
                output.mark_idle()
            # Serve commit and statistics callbacks, but do not block: the runtime waits
            # for the next control message (new splits, a checkpoint) itself, and wakes
            # up as soon as one arrives.
            self._serve(0)
            return InputStatus.NOTHING_AVAILABLE
        consumer = self._consumer
        limit = self._batch_limit
        messages = consumer.consume(limit, 0)
        if not messages:
            first = consumer.poll(self._poll_timeout_s)
            self._raise_failure()  # from error_cb, which consume/poll served
            if first is None:
                self._check_positions(output)
                return self._status()
            messages = [first]
            if limit > 1:
                messages += consumer.consume(limit - 1, 0)
        drained = len(messages) < limit
        # Error events (a partition that vanished, an offset out of range) come in the
        # batch as messages of their own.
        if any(map(_message_error, messages)):
            messages = self._drop_errors(messages)
        # Event time is the record timestamp, read only if something asks for it.
        timestamps = RecordTimestamps(messages)
        if messages:
            if self._idle:
                self._idle = False
                output.mark_active()
            started = time.perf_counter()
            self._emit_batch(messages, timestamps, output)
            self._fit_batch(len(messages), time.perf_counter() - started)
        if drained:
            self._check_positions(output)
        return self._status()

    def _fit_batch(self, records: int, seconds: float) -> None:
        """Size the next batch so the work downstream of it takes about _BATCH_SECONDS.

        The runtime serves checkpoint barriers between two polls, so a barrier waits for
        the batch in flight: 10,000 records through a map that takes a millisecond each
        would hold every checkpoint for 10 s. Fast pipelines (microseconds per record) keep
        ``poll.max.records``; slow ones get small batches. The limit shrinks at once and
        grows at most twofold per batch, so one quick batch after a slow spell does not
        bring the long barrier wait back."""
        if seconds <= 0:
            fitted = self._max_records
        else:
            fitted = max(1, int(records * _BATCH_SECONDS / seconds))
        self._batch_limit = min(self._max_records, fitted, 2 * self._batch_limit)

    def snapshot_state(self, checkpoint_id: int) -> list[KafkaPartitionSplit]:
        if self._dead_letter is not None:
            # A checkpoint must not cover a bad record that is not yet in its topic.
            self._dead_letter.flush()
        splits = [state.to_split() for state in self._splits.values()]
        if self._commit_on_checkpoint:
            offsets = {
                k: s.current_offset for k, s in self._splits.items() if s.current_offset >= 0
            }
            offsets.update(self._finished_offsets)
            self._finished_offsets = {}
            self._offsets_to_commit[checkpoint_id] = offsets
        return splits

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        offsets = self._offsets_to_commit.pop(checkpoint_id, None)
        # Older pending checkpoints are subsumed by this one.
        for older in [c for c in self._offsets_to_commit if c < checkpoint_id]:
            del self._offsets_to_commit[older]
        if not offsets:
            return
        partitions = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            self._consumer.commit(offsets=partitions, asynchronous=True)
            self._unacknowledged_commit = partitions
        except KafkaException as exc:
            # Committed offsets are for monitoring only: never fail the job over them.
            self._metrics.commits_failed.inc()
            log.warning(
                "Kafka source could not commit offsets of checkpoint %d: %s", checkpoint_id, exc
            )

    def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        self._offsets_to_commit.pop(checkpoint_id, None)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._dead_letter is not None:
                self._dead_letter.close()
        finally:
            self._finish_commit()
            try:
                self._consumer.close()
            except Exception as exc:
                # The reader is going away, and the job's own failure (if any) was raised
                # already.
                log.debug("Kafka source consumer close: %s", exc)
            self._metrics.close()

    # -- batches -------------------------------------------------------------------------

    def _emit_batch(
        self, messages: list[Message], timestamps: Sequence[int], output: ReaderOutput[Any]
    ) -> None:
        splits = self._splits
        first, last = messages[0], messages[-1]
        if len(splits) == 1:
            # librdkafka drops messages of unassigned partitions before handing them out,
            # so with one split every message belongs to it; the ends are a cheap check.
            ((key, state),) = splits.items()
            if (
                first.partition() == key[1] == last.partition()
                and first.topic() == key[0] == last.topic()
            ):
                self._emit_run(state, messages, timestamps, output)
                return
        moved = self._moved_split(len(messages))
        if (
            moved is not None
            and first.partition() == moved.split.partition
            and first.topic() == moved.split.topic
        ):
            self._emit_run(moved, messages, timestamps, output)
            return
        # Runs of one partition are contiguous in a batch (one fetch response each);
        # groupby over the partition numbers finds them at C speed, and slicing cuts them.
        topic = self._single_topic
        if topic is not None:
            partitions = list(map(_message_partition, messages))
            if partitions.count(partitions[0]) == len(partitions):
                self._emit_key(messages, timestamps, (topic, partitions[0]), output)
                return
            keys: list[Any] = partitions
        else:
            keys = list(
                zip(map(_message_topic, messages), map(_message_partition, messages), strict=True)
            )
        start = 0
        for key, run in groupby(keys):
            end = start + len(list(run))
            split_key = (topic, key) if topic is not None else key
            self._emit_key(messages[start:end], timestamps[start:end], split_key, output)
            start = end

    def _moved_split(self, records: int) -> KafkaPartitionSplitState | None:
        """The split of the one partition whose position moved since the consumer was last
        asked, or None.

        librdkafka's position of a partition is the offset after the last message it handed
        to the application; no other call moves it here (the reader never seeks). So when
        only one partition moved since the last ask, every message handed out since,
        this batch among them, is that partition's: most batches are (one fetch response
        each), and one call for the positions of a few partitions costs a tenth of reading
        500 messages' partitions. When more moved (or control records moved one), or the
        positions were never asked, the batch is scanned as before: a stale answer can
        only send a batch to the scan, never a record to the wrong split. Asked only while
        the batch is large next to the number of partitions, where the call is cheaper."""
        probe = self._probe
        if len(probe) * _RECORDS_PER_PROBED_SPLIT > records:
            return None
        try:
            now = list(map(_position_offset, self._consumer.position(probe)))
        except KafkaException:
            self._probed = None
            return None
        before, self._probed = self._probed, now
        if before is None:
            return None
        changed = list(map(ne, before, now))
        if changed.count(True) != 1:
            return None
        return self._probe_states[changed.index(True)]

    def _emit_key(
        self,
        run: list[Message],
        timestamps: Sequence[int],
        key: tuple[str | None, int | None],
        output: ReaderOutput[Any],
    ) -> None:
        state = self._splits.get(key)  # type: ignore[arg-type]
        if state is None:
            return  # a split that finished while its records were already queued
        self._emit_run(state, run, timestamps, output)

    def _emit_run(
        self,
        state: KafkaPartitionSplitState,
        run: list[Message],
        timestamps: Sequence[int],
        output: ReaderOutput[Any],
    ) -> None:
        stop = state.split.stopping_offset
        last_offset = _offset(run[-1])
        finished = False
        if stop is not None and last_offset >= stop:
            cut = bisect_left(run, stop, key=_offset)
            run, timestamps = run[:cut], timestamps[:cut]
            finished = True
            if run:
                last_offset = _offset(run[-1])
        if run:
            if self._on_fetched is None:
                self._deliver(state, run, timestamps, output)
            else:
                kept, kept_timestamps = self._offer(state, run, timestamps)
                if kept:
                    self._deliver(state, kept, kept_timestamps, output)
            # Records a plugin dropped count as read: a checkpoint does not replay them.
            state.current_offset = last_offset + 1
            state.records += len(run)
        if finished or state.finished:
            self._finish(state, output)

    def _offer(
        self, state: KafkaPartitionSplitState, run: list[Message], timestamps: Sequence[int]
    ) -> tuple[list[Message], Sequence[int]]:
        """The run and its timestamps without the records streamplug_reader_batch_fetched
        implementations asked to drop."""
        assert self._on_fetched is not None
        split = state.split
        batch = FetchedBatch(
            self._subtask_info, state.split_id, split.topic, split.partition, run, self._group_id
        )
        drops: set[int] = set()
        for result in self._on_fetched(batch=batch):
            drops.update(result)
        if not drops:
            return run, timestamps
        kept = [message for i, message in enumerate(run) if i not in drops]
        return kept, RecordTimestamps(kept)

    def _deliver(
        self,
        state: KafkaPartitionSplitState,
        run: list[Message],
        timestamps: Sequence[int],
        output: ReaderOutput[Any],
    ) -> None:
        topic = state.split.topic
        value_only = self._value_only
        if value_only is not None:
            raw = list(map(_message_value, run))
            # all() is a C-speed scan; it is False for a null (tombstone) or empty value,
            # which then take the per-record path.
            if all(raw):
                try:
                    values = value_only.deserialize_values(topic, cast(list[bytes], raw))
                except Exception:
                    values = None
                if values is not None:
                    self._collect(state, values, timestamps, output)
                    return
            self._deliver_each_value(value_only, topic, run, timestamps, raw, state, output)
            return
        key_value = self._key_value
        if key_value is not None:
            try:
                elements = key_value.elements(topic, run, timestamps)
            except Exception:
                # A bad key or value somewhere in the run: read it record by record, so
                # only the bad ones meet the bad-record policy.
                self._deliver_each_key_value(key_value, topic, run, timestamps, state, output)
                return
            self._collect(state, elements, timestamps, output)
            return
        self._deliver_each_record(state, run, timestamps, output)

    def _deliver_each_value(
        self,
        value_only: ValueOnlyDeserializationSchema[Any],
        topic: str,
        run: list[Message],
        timestamps: Sequence[int],
        raw: list[bytes | None],
        state: KafkaPartitionSplitState,
        output: ReaderOutput[Any],
    ) -> None:
        values_out: list[Any] = []
        kept: list[int] = []
        for message, value, timestamp in zip(run, raw, timestamps, strict=True):
            if value is None:
                continue
            try:
                element = value_only.deserialize_value(topic, value)
            except Exception as exc:
                self._bad_record(message, exc)
                continue
            if element is None:
                continue
            values_out.append(element)
            kept.append(timestamp)
        if values_out:
            self._collect(state, values_out, kept, output)

    def _deliver_each_key_value(
        self,
        key_value: KeyValueDeserializationSchema,
        topic: str,
        run: list[Message],
        timestamps: Sequence[int],
        state: KafkaPartitionSplitState,
        output: ReaderOutput[Any],
    ) -> None:
        values_out: list[Any] = []
        kept: list[int] = []
        element_of = key_value.element
        for message, timestamp in zip(run, timestamps, strict=True):
            try:
                element = element_of(
                    topic, message.key(), message.value(), timestamp, message.headers()
                )
            except Exception as exc:
                self._bad_record(message, exc)
                continue
            values_out.append(element)
            kept.append(timestamp)
        if values_out:
            self._collect(state, values_out, kept, output)

    def _deliver_each_record(
        self,
        state: KafkaPartitionSplitState,
        run: list[Message],
        timestamps: Sequence[int],
        output: ReaderOutput[Any],
    ) -> None:
        """Whole records: one ``KafkaRecord`` (a named tuple, built in one comprehension)
        and one ``deserialize`` call each; the schema is called once per record, never
        again on a retry, so a function with side effects sees each record once."""
        values_out: list[Any] = []
        kept: list[int] = []
        deserialize = self._deserializer.deserialize
        split = state.split
        records = records_of(split.topic, split.partition, run)
        for record, message, timestamp in zip(records, run, timestamps, strict=True):
            try:
                element = deserialize(record)
            except Exception as exc:
                self._bad_record(message, exc)
                continue
            if element is None:
                continue
            values_out.append(element)
            kept.append(timestamp)
        if values_out:
            self._collect(state, values_out, kept, output)

    def _collect(
        self,
        state: KafkaPartitionSplitState,
        values: list[Any],
        timestamps: Sequence[int],
        output: ReaderOutput[Any],
    ) -> None:
        output.collect_batch(values, timestamps, state.split_id)
        self._metrics.record_emitted(len(values), timestamps[-1])

    def _bad_record(self, message: Message, exc: BaseException) -> None:
        error = locate(exc, message, self._deserializer.format_name)
        self._metrics.num_records_in_errors.inc()
        self._metrics.deserialization_errors.inc()
        action = self._policy.action
        if action is BadRecordAction.FAIL:
            raise error from exc
        if action is BadRecordAction.SKIP:
            self._metrics.records_skipped.inc()
            log.warning("skipping bad record (bad.record.policy=skip): %s", error)
            return
        assert self._dead_letter is not None
        self._dead_letter.send(message, error)
        self._metrics.records_dead_lettered.inc()
        log.warning("bad record sent to dead-letter topic %r: %s", self._dead_letter.topic, error)

    def _finish(self, state: KafkaPartitionSplitState, output: ReaderOutput[Any]) -> None:
        split = state.split
        key = (split.topic, split.partition)
        self._splits.pop(key, None)
        self._finished_any = True
        self._finished_offsets[key] = state.current_offset
        try:
            self._consumer.incremental_unassign([TopicPartition(split.topic, split.partition)])
        except KafkaException as exc:
            log.debug("unassigning finished split %s: %s", split, exc)
        self._metrics.remove_partition(split.topic_partition)
        self._new_probe()
        output.release_split(split.split_id)
        log.info(
            "Kafka source reader %d finished split %s after %d records",
            self._context.subtask_index,
            split,
            state.records,
        )

    def _finish_commit(self) -> None:
        pending = self._unacknowledged_commit
        if not pending:
            return
        try:
            self._consumer.commit(offsets=pending, asynchronous=False)
            self._metrics.commits_succeeded.inc()
        except KafkaException as exc:
            self._metrics.commits_failed.inc()
            log.warning("Kafka source could not commit its last offsets on close: %s", exc)

    def _check_positions(self, output: ReaderOutput[Any]) -> None:
        """Finish bounded splits whose remaining offsets hold no records for us (transaction
        markers, aborted or compacted records): the consumer's position passes the
        stopping offset without a record at it."""
        bounded = [s for s in self._splits.values() if s.split.stopping_offset is not None]
        if not bounded:
            return
        try:
            positions = self._consumer.position(
                [TopicPartition(s.split.topic, s.split.partition) for s in bounded]
            )
        except KafkaException:
            return
        for state, tp in zip(bounded, positions, strict=True):
            stop = state.split.stopping_offset
            assert stop is not None
            if tp.offset >= 0 and tp.offset >= stop:
                state.current_offset = max(state.current_offset, stop)
                self._finish(state, output)

    def _end_of_input(self) -> InputStatus:
        if self._dead_letter is not None:
            # The last word on bad records: without a checkpoint after it (none configured,
            # or a bounded end), close() could only log a failed write; raising here fails
            # the job instead, so a bad record is never in neither topic.
            self._dead_letter.flush()
        return InputStatus.END_OF_INPUT

    def _status(self) -> InputStatus:
        if (
            not self._splits
            and self._no_more_splits
            and (self._splits_can_finish or self._finished_any)
        ):
            return self._end_of_input()
        return InputStatus.MORE_AVAILABLE

    def _drop_errors(self, messages: list[Message]) -> list[Message]:
        kept = []
        for message in messages:
            err = message.error()
            if err is None:
                kept.append(message)
            elif err.code() == KafkaError._PARTITION_EOF:
                continue
            elif err.fatal() or err.code() in _FATAL_CODES:
                what = f"Kafka source reading topic {message.topic()!r}"
                raise unrecoverable_kafka_error(err, what) or KafkaException(err)
            else:
                log.warning(
                    "Kafka source consumer error on %s-%s (librdkafka retries): %s",
                    message.topic(),
                    message.partition(),
                    redact_text(str(err), self._properties),
                )
        return kept

    def _serve(self, timeout_s: float) -> None:
        message = self._consumer.poll(timeout_s)
        if message is not None and message.error() is not None:
            self._drop_errors([message])

    # -- callbacks (reader thread, from consume/poll) ------------------------------------

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        self._unacknowledged_commit = None
        if err is not None and err.code() != KafkaError._NO_OFFSET:
            self._metrics.commits_failed.inc()
            log.warning("Kafka source offset commit failed: %s", err)
            return
        failed = [tp for tp in partitions if tp.error is not None]
        if failed:
            self._metrics.commits_failed.inc()
            log.warning("Kafka source offset commit failed for %s", [str(tp) for tp in failed])
        else:
            self._metrics.commits_succeeded.inc()
        for tp in partitions:
            if tp.error is None and tp.offset >= 0:
                self._metrics.committed(KafkaTopicPartition(tp.topic, tp.partition), tp.offset)

    def _on_error(self, err: KafkaError) -> None:
        """Ours, ahead of a hook's in the chain: it records, never raises."""
        if err.fatal():
            if self._failure is None:
                self._failure = KafkaException(err)
        else:
            # INFO and collapsed: librdkafka's own log line (streamplug.librdkafka) already
            # says it at WARNING, and a broker away is reported at every reconnect.
            self._error_log.log(
                logging.INFO,
                "Kafka source consumer: %s",
                redact_text(str(err), self._properties),
            )

    def _raise_failure(self) -> None:
        """Raise what error_cb reported: a fatal consumer error, else what a hook's
        chained error_cb raised (kept there, never let through librdkafka)."""
        if self._failure is not None:
            raise self._failure
        self._client_errors.raise_pending()

    # -- metrics -------------------------------------------------------------------------

    def _offset_reader(self, key: tuple[str, int]) -> Any:
        def read() -> int | None:
            state = self._splits.get(key)
            if state is None or state.current_offset < 0:
                return None
            return state.current_offset

        return read

    def pending_records(self) -> int | None:
        """Records left in this reader's splits, from librdkafka's last statistics (every
        ``statistics.interval.ms``): each partition's end, or the split's stopping offset if
        that comes first, minus the offset the consumer had handed out by then. None until
        statistics name the end of a split, and always with ``register.consumer.metrics``
        false.

        End and position come from the same statistics on purpose: the lag as it was up to
        an interval ago. The reader's own, newer position against an older end would say
        0 while a fast reader is still far behind.

        Safe from any thread, and never waits: it calls no consumer method and reads only
        values this reader's thread replaces or updates as plain attributes; ``list``
        copies the split table in one step no other Python thread can interleave with.
        """
        if self._closed:
            return None
        partition_stat = self._metrics.partition_stat
        total: int | None = None
        for key, state in list(self._splits.items()):
            end = partition_stat(key, "hi_offset")
            if end is None:
                continue
            stop = state.split.stopping_offset
            if stop is not None:
                end = min(end, stop)
            # Nothing handed out since the split was added: it still starts where it did.
            position = partition_stat(key, "app_offset")
            if position is None:
                position = state.current_offset
                if position < 0:
                    continue  # a symbolic start (earliest, latest, committed) not resolved yet
            total = (total or 0) + max(0, end - position)
        return total

    # -- for tests and diagnostics -------------------------------------------------------

    @property
    def split_states(self) -> dict[KafkaTopicPartition, KafkaPartitionSplitState]:
        return {KafkaTopicPartition(t, p): s for (t, p), s in self._splits.items()}

    @property
    def metrics(self) -> KafkaSourceReaderMetrics:
        return self._metrics
