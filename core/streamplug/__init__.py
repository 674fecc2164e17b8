"""streamplug: Apache Flink's Kafka connector model for Python, as a plugin framework."""

from streamplug.api import DeliveryGuarantee, WatermarkStrategy
from streamplug.errors import ConfigError, JobFailedError, StreamplugError, UnrecoverableError

__all__ = [
    "ConfigError",
    "DeliveryGuarantee",
    "JobFailedError",
    "StreamplugError",
    "UnrecoverableError",
    "WatermarkStrategy",
]
