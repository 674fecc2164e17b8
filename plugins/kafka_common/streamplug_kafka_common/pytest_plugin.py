"""The pytest fixtures moved to the ``streamplug-testing`` distribution
(``streamplug_testing.pytest_plugin``); this distribution no longer registers them.

This module is only reached from an environment installed before the move, whose metadata
still names it as a ``pytest11`` plugin: it hands over to the new home, or says how to
reinstall."""

from __future__ import annotations

try:
    from streamplug_testing.pytest_plugin import *  # noqa: F403
except ImportError as exc:
    raise ImportError(
        "streamplug's Kafka test fixtures moved from streamplug-kafka-common to the "
        "streamplug-testing distribution: reinstall both, e.g. "
        "pip install -e ./plugins/kafka_common -e ./plugins/testing"
    ) from exc
