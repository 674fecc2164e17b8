"""streamplug: Apache Flink's Kafka connector model for Python, as a plugin framework."""

from streamplug.api import DeliveryGuarantee, WatermarkStrategy
from streamplug.errors import ConfigError, JobFailedError, StreamplugError, UnrecoverableError
from streamplug.plugin.spec import hookimpl

__all__ = [
    "ConfigError",
    "DeliveryGuarantee",
    "JobFailedError",
    "StreamplugError",
    "UnrecoverableError",
    "WatermarkStrategy",
    "hookimpl",
]
