"""A count of secured clients by protocol and mechanism: never a credential."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from streamplug.metrics import Counter, MetricGroup

__all__ = ["record_configured"]

_GROUP = MetricGroup(("KafkaSecurity",))
_LOCK = threading.Lock()
_COUNTERS: dict[tuple[str, str, str, str], Counter] = {}


def record_configured(properties: Mapping[str, Any], *, role: str, connector: str) -> None:
    """Count one client configured; attributes are non-secret names only."""
    protocol = str(properties.get("security.protocol", "PLAINTEXT"))
    mechanism = str(properties.get("sasl.mechanisms", "")) if "SASL" in protocol else ""
    key = (role, connector, protocol, mechanism or "none")
    with _LOCK:
        counter = _COUNTERS.get(key)
        if counter is None:
            group = _GROUP.add_group(
                "clients", role=role, connector=connector, protocol=protocol, mechanism=key[3]
            )
            counter = group.counter(
                "configured", description="Kafka clients configured with security settings"
            )
            _COUNTERS[key] = counter
    counter.inc()
