"""A client ``error_cb`` that keeps the one already configured.

A ``streamplug_configure_client`` hook may put an ``error_cb`` into a client's properties
(the security plugin's turns rejected credentials and untrusted certificates into
``KafkaAuthenticationError``). A connector that needs its own error handling must call it
rather than replace it, or those failures go unnoticed and blocking calls wait for their
own timeouts.

An exception the chained callback raises is kept, never let through librdkafka:
confluent-kafka 2.0.2 serves the next error event with the first exception still pending
and fails with ``SystemError``. The connector raises it from its next blocking call
(``raise_pending()``, or ``failure`` in its own loops).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, MutableMapping
from typing import Any

__all__ = ["ERROR_CB", "ChainedErrorCallback"]

ERROR_CB = "error_cb"


class ChainedErrorCallback:
    """Calls ``own`` and then the ``error_cb`` that was configured before, keeping the first
    exception either raised.

    ``own`` should not raise (it logs, counts or records fatal errors); if it does, the
    exception is kept all the same. Thread-safe: librdkafka serves callbacks on whichever
    thread polls.
    """

    def __init__(
        self,
        own: Callable[[Any], None] | None,
        previous: Callable[[Any], None] | None,
    ) -> None:
        self._own = own
        self._previous = previous
        self._lock = threading.Lock()
        self._failure: BaseException | None = None

    @classmethod
    def install(
        cls, config: MutableMapping[str, Any], own: Callable[[Any], None] | None
    ) -> ChainedErrorCallback:
        """Put a chained callback into ``config``, wrapping whatever ``error_cb`` it holds."""
        callback = cls(own, config.get(ERROR_CB))
        config[ERROR_CB] = callback
        return callback

    @property
    def previous(self) -> Callable[[Any], None] | None:
        return self._previous

    @property
    def failure(self) -> BaseException | None:
        """The first exception a callback raised, or None. It stays set: a client whose
        credentials were rejected does not recover by itself."""
        return self._failure

    def raise_pending(self) -> None:
        failure = self._failure
        if failure is not None:
            raise failure

    def _keep(self, exc: BaseException) -> None:
        with self._lock:
            if self._failure is None:
                self._failure = exc

    def __call__(self, err: Any) -> None:
        for callback in (self._own, self._previous):
            if callback is None:
                continue
            try:
                callback(err)
            except Exception as exc:
                self._keep(exc)

    def __repr__(self) -> str:
        return (
            f"ChainedErrorCallback(own={self._own!r}, previous={self._previous!r}, "
            f"failed={self._failure is not None})"
        )
