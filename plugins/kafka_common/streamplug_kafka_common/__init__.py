"""Kafka client support shared by the streamplug Kafka plugins: error-callback chaining
(:mod:`streamplug_kafka_common.callbacks`) and admin helpers
(:mod:`streamplug_kafka_common.admin`: create/describe topics, end and committed offsets,
read a topic with a given isolation level).

The broker launcher, librdkafka's mock cluster and the pytest fixtures are test support
and live in the ``streamplug-testing`` distribution (``streamplug_testing``), so that
installing a connector brings none of them.
"""

from __future__ import annotations

from streamplug_kafka_common import admin

__all__ = ["admin"]
