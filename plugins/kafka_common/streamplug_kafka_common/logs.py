"""librdkafka's log lines through Python logging, with repeats collapsed.

Without a ``logger``, librdkafka writes straight to stderr: a client retrying an
unreachable broker every few milliseconds writes thousands of identical lines, which no
``-v`` flag or logging configuration can quiet. With ``install_client_logger`` each client
logs to ``streamplug.librdkafka`` instead (confluent-kafka's ``logger`` setting), and a line
that repeats — the same text up to its numbers — is written once per ``window_s`` with a
count of the copies left out.

librdkafka reports connection trouble at ERROR although it retries by itself; failures
that end a job surface as exceptions, so its lines are logged at WARNING at most.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import MutableMapping
from typing import Any

__all__ = ["LOGGER_NAME", "CollapsingClientLogger", "install_client_logger"]

LOGGER_NAME = "streamplug.librdkafka"
_NUMBERS = re.compile(r"\d+")


class CollapsingClientLogger:
    """An object confluent-kafka accepts as ``logger``: it calls ``log(level, fmt, *args)``
    from whichever thread serves the client's log queue. Thread-safe."""

    def __init__(self, window_s: float = 30.0, logger: logging.Logger | None = None) -> None:
        self._window_s = window_s
        self._log = logger or logging.getLogger(LOGGER_NAME)
        self._lock = threading.Lock()
        # Per distinct line (numbers masked): when it was last written, copies since.
        self._seen: dict[tuple[int, str], list[float | int]] = {}

    def log(self, level: int, fmt: str, *args: Any) -> None:
        message = fmt % args if args else fmt
        level = min(level, logging.WARNING)
        if not self._log.isEnabledFor(level):
            return
        key = (level, _NUMBERS.sub("#", message))
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < self._window_s:
                seen[1] += 1
                return
            repeated = int(seen[1]) if seen is not None else 0
            self._seen[key] = [now, 0]
            if len(self._seen) > 1000:
                # Bounded memory: forget lines not seen for a window.
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self._window_s}
        if repeated:
            self._log.log(
                level,
                "%s (and %d more like it in the last %.0f s)",
                message,
                repeated,
                self._window_s,
            )
        else:
            self._log.log(level, "%s", message)

    # confluent-kafka only calls log(); these make the object usable where a Logger is.
    def isEnabledFor(self, level: int) -> bool:
        return self._log.isEnabledFor(level)


def install_client_logger(config: MutableMapping[str, Any]) -> None:
    """Route a client's librdkafka logs to Python logging, unless the user configured a
    ``logger`` of their own."""
    config.setdefault("logger", CollapsingClientLogger())
