"""SIGINT and SIGTERM, handled the same way by ``streamplug run`` and ``env.execute()``.

The first signal stops the job the way ``JobClient.stop()`` does (sources stop, a final
checkpoint is taken and committed, the job ends FINISHED); a second one cancels at once.
A service manager's SIGTERM and a user's Ctrl-C so both end with nothing left
uncommitted, and neither leaves a traceback behind.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any

from streamplug.errors import JobCancelledError, StreamplugError

if TYPE_CHECKING:
    from streamplug.runtime.job import JobClient, JobExecutionResult

__all__ = ["SignalStop", "stop_on_signals"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# After a cancel, how long the process waits for the job's threads before it leaves them
# behind: a transform stuck in user code cannot be interrupted, and "cancel" must not hang.
CANCEL_GRACE_S = 2.0


class SignalStop:
    """What the handlers saw: ``received`` names the first signal (``"SIGTERM"``) or is
    None; ``cancelled`` tells whether a second one cancelled the job."""

    def __init__(self, client: JobClient, say: Callable[[str], None]) -> None:
        self._client = client
        self._say = say
        self.received: str | None = None
        self.cancelled = False
        self._cancelled_at = 0.0
        self.installed = False
        self._stopper: threading.Thread | None = None

    def exit_code(self, finished: bool) -> int:
        """The process exit code after a signal: 0 when the job ``finished`` (its final
        checkpoint taken), else 128 + the signal's number, the shell's convention."""
        if finished or self.received is None:
            return 0
        return 128 + int(signal.Signals[self.received])

    def handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is None:
            self.received = name
            self._say(f"{name}: stopping: taking a final checkpoint ({name} again cancels)")
            self.request_stop()
        elif not self.cancelled:
            self.cancelled = True
            self._cancelled_at = time.monotonic()
            self._say(f"{name} again: cancelling; output since the last checkpoint is discarded")
            self._client.cancel()

    def give_up_waiting(self) -> bool:
        """True once a cancel has waited ``CANCEL_GRACE_S`` for the job's threads: the
        caller should end the process anyway."""
        return self.cancelled and time.monotonic() - self._cancelled_at > CANCEL_GRACE_S

    def wait(self) -> JobExecutionResult:
        """``client.wait()``, except that after a cancel it waits at most
        ``CANCEL_GRACE_S`` and then raises ``JobCancelledError`` itself."""
        while True:
            try:
                return self._client.wait(0.1)
            except TimeoutError:
                if self.give_up_waiting():
                    raise JobCancelledError(
                        f"the job was cancelled; its threads still busy after "
                        f"{CANCEL_GRACE_S:.0f} s were left behind"
                    ) from None

    def request_stop(self) -> None:
        """Ask the job to stop with a final checkpoint, without blocking the caller (a
        signal handler must not wait for the checkpoint)."""
        if self._stopper is not None:
            return

        def stop() -> None:
            # The job's outcome (failed, cancelled) is the waiting thread's to report.
            with contextlib.suppress(StreamplugError):
                self._client.stop()

        self._stopper = threading.Thread(target=stop, name="streamplug-stop", daemon=True)
        self._stopper.start()


def _stderr(message: str) -> None:
    print(f"\n{message}", file=sys.stderr, flush=True)


@contextmanager
def stop_on_signals(
    client: JobClient, say: Callable[[str], None] = _stderr
) -> Iterator[SignalStop]:
    """Handle SIGINT and SIGTERM for the block (stop, then cancel), restoring the previous
    handlers after it. Handlers can only be installed from the main thread; elsewhere the
    block runs without them (``installed`` is False)."""
    state = SignalStop(client, say)
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in _SIGNALS:
            previous[sig] = signal.signal(sig, state.handle)
        state.installed = True
    try:
        yield state
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
