"""A reader's mutable progress on one split."""

from __future__ import annotations

import attrs

from streamplug_kafka_source.split.split import KafkaPartitionSplit


@attrs.define(slots=True)
class KafkaPartitionSplitState:
    """Where a reader stands in one split: ``current_offset`` is the next offset to read
    (the split's starting offset until the first record arrives)."""

    split: KafkaPartitionSplit
    current_offset: int
    records: int = 0
    """Records emitted from this split by this reader (for metrics and logs)."""
    # Kept: the reader hands it on with every batch, and the split builds it from its
    # topic and partition each time it is asked.
    split_id: str = attrs.field(init=False, eq=False, repr=False)

    @split_id.default
    def _id_of_split(self) -> str:
        return self.split.split_id

    @classmethod
    def of(cls, split: KafkaPartitionSplit) -> KafkaPartitionSplitState:
        return cls(split, split.starting_offset)

    @property
    def stopping_offset(self) -> int | None:
        return self.split.stopping_offset

    @property
    def finished(self) -> bool:
        stop = self.split.stopping_offset
        return stop is not None and self.current_offset >= 0 and self.current_offset >= stop

    def to_split(self) -> KafkaPartitionSplit:
        """The split that resumes exactly where this state stands."""
        if self.current_offset == self.split.starting_offset:
            return self.split
        return attrs.evolve(self.split, starting_offset=self.current_offset)
