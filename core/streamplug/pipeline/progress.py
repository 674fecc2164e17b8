"""A live progress line for long-running commands (``streamplug run``, ``streamplug demo``).

On a terminal the line is redrawn in place a few times a second; when output goes to a
file or a pipe (CI logs, tests) a full line is printed every few seconds instead, so logs
stay readable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO

from streamplug.runtime.job import JobClient, JobMetrics

__all__ = ["ProgressLine", "format_count", "format_watermark", "watch"]


def format_count(n: float) -> str:
    """``1234567`` -> ``1.23M``: short enough for one line."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}" if abs(n) < 10 * size else f"{n / size:.1f}{unit}"
    return f"{int(n)}"


def format_watermark(watermark: int | None) -> str:
    if watermark is None:
        return "-"
    try:
        return datetime.fromtimestamp(watermark / 1000, tz=UTC).strftime("%H:%M:%S.%f")[:-3]
    except (OverflowError, OSError, ValueError):
        return str(watermark)


class ProgressLine:
    """Renders ``JobMetrics`` snapshots as one line: status, records in and out with their
    rate, consumer lag, checkpoints and the watermark.

    The lag is the job's ``pending_records`` unless ``lag`` computes it otherwise. Its
    column appears once a lag is known (from the start with ``lag``) and then stays, as
    ``lag -`` while unknown, so the line does not jump about.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        interactive: bool | None = None,
        log_every_s: float = 5.0,
        lag: Callable[[JobMetrics], int | None] | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.log_every_s = log_every_s
        self.lag = lag
        self._lag_shown = False
        self.started = time.monotonic()
        self._last_t = self.started
        self._last_in = 0
        self._rate = 0.0
        self._last_logged = float("-inf")
        self._width = 0

    def text(self, m: JobMetrics) -> str:
        now = time.monotonic()
        dt = now - self._last_t
        if dt >= 0.5:
            # Smoothed, so a checkpoint pause does not make the rate jump to zero and back.
            current = (m.records_in - self._last_in) / dt
            self._rate = current if self._rate == 0 else 0.5 * self._rate + 0.5 * current
            self._last_t, self._last_in = now, m.records_in
        parts = [
            f"[{now - self.started:5.1f}s] {m.status:<10}",
            f"in {format_count(m.records_in)} ({format_count(self._rate)}/s)",
            f"out {format_count(m.records_out)}",
        ]
        lag = self.lag(m) if self.lag is not None else m.pending_records
        if lag is not None or self.lag is not None or self._lag_shown:
            self._lag_shown = True
            parts.append(f"lag {format_count(lag) if lag is not None else '-'}")
        checkpoints = f"checkpoints {m.checkpoints_completed}"
        if m.checkpoints_failed:
            checkpoints += f" ({m.checkpoints_failed} failed)"
        parts.append(checkpoints)
        parts.append(f"watermark {format_watermark(m.watermark)}")
        if m.attempt:
            parts.append(f"attempt {m.attempt + 1}")
        return "  ".join(parts)

    def update(self, m: JobMetrics, *, force: bool = False) -> None:
        line = self.text(m)
        if self.interactive:
            pad = max(0, self._width - len(line))
            self.stream.write("\r" + line + " " * pad)
            self._width = len(line)
            self.stream.flush()
        else:
            now = time.monotonic()
            if force or now - self._last_logged >= self.log_every_s:
                self._last_logged = now
                self.stream.write(line + "\n")
                self.stream.flush()

    def finish(self, m: JobMetrics) -> None:
        """Draw the final state and end the line."""
        self.update(m, force=True)
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()


def watch(
    client: JobClient,
    progress: ProgressLine | None,
    *,
    refresh_s: float = 0.25,
    until: Callable[[], bool] | None = None,
) -> None:
    """Redraw ``progress`` until the job ends (or ``until()`` turns true)."""
    while not client.status.is_terminal:
        if until is not None and until():
            return
        if progress is not None:
            progress.update(client.metrics())
        client.wait_quietly(refresh_s)
