"""The SPI connectors implement: sources, sinks, serialization schemas, watermarks."""

from streamplug.api.context import (
    ReaderContext,
    RuntimeContext,
    SinkContext,
    SplitEnumeratorContext,
)
from streamplug.api.serde import (
    DeserializationError,
    DeserializationSchema,
    FormatSpec,
    SerializationError,
    SerializationSchema,
)
from streamplug.api.sink import CommitOutcome, Committer, DeliveryGuarantee, Sink, SinkWriter
from streamplug.api.source import (
    Boundedness,
    InputStatus,
    ReaderOutput,
    Source,
    SourceReader,
    SourceSplit,
    SplitEnumerator,
)
from streamplug.api.state import PickleStateSerializer, StateSerializer
from streamplug.api.watermarks import (
    MAX_WATERMARK,
    MIN_WATERMARK,
    BoundedOutOfOrdernessWatermarks,
    TimestampAssigner,
    WatermarkGenerator,
    WatermarkStrategy,
)

__all__ = [
    "MAX_WATERMARK",
    "MIN_WATERMARK",
    "BoundedOutOfOrdernessWatermarks",
    "Boundedness",
    "CommitOutcome",
    "Committer",
    "DeliveryGuarantee",
    "DeserializationError",
    "DeserializationSchema",
    "FormatSpec",
    "InputStatus",
    "PickleStateSerializer",
    "ReaderContext",
    "ReaderOutput",
    "RuntimeContext",
    "SerializationError",
    "SerializationSchema",
    "Sink",
    "SinkContext",
    "SinkWriter",
    "Source",
    "SourceReader",
    "SourceSplit",
    "SplitEnumerator",
    "SplitEnumeratorContext",
    "StateSerializer",
    "TimestampAssigner",
    "WatermarkGenerator",
    "WatermarkStrategy",
]
