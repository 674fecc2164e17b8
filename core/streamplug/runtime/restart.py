"""Restart strategies: what the runtime does when a job attempt fails (Flink's names)."""

from __future__ import annotations

import copy
import random
import time
from abc import ABC, abstractmethod

import attrs

# Unlike Flink's exponential-delay default (attempts-before-reset-backoff unbounded), a job
# that keeps failing ends FAILED after this many restarts in a row: a run that restarts
# forever looks alive to a service manager and never reports its error.
DEFAULT_RESTART_ATTEMPTS = 10


class RestartStrategy(ABC):
    """Decides, after each failure, whether and when to restart. One instance per job run."""

    @abstractmethod
    def next_delay_ms(self, error: BaseException) -> int | None:
        """Milliseconds to wait before restarting, or None to give up."""

    def describe(self) -> str:
        return type(self).__name__


@attrs.define
class NoRestart(RestartStrategy):
    def next_delay_ms(self, error: BaseException) -> int | None:
        return None

    def describe(self) -> str:
        return "no restart"


@attrs.define
class FixedDelayRestart(RestartStrategy):
    attempts: int
    delay_ms: int
    _used: int = 0

    def next_delay_ms(self, error: BaseException) -> int | None:
        if self._used >= self.attempts:
            return None
        self._used += 1
        return self.delay_ms

    def describe(self) -> str:
        return f"fixed delay: {self.attempts} attempts, {self.delay_ms} ms apart"


@attrs.define
class ExponentialDelayRestart(RestartStrategy):
    """Backoff growing by ``multiplier`` up to ``max_backoff_ms``; resets after the job ran
    ``reset_backoff_threshold_ms`` without failing. ``attempts`` bounds the restarts between
    two resets (Flink's ``attempts-before-reset-backoff``; None: no bound)."""

    initial_backoff_ms: int
    max_backoff_ms: int
    multiplier: float
    reset_backoff_threshold_ms: int
    jitter_factor: float
    attempts: int | None = None
    _current: int = 0
    _used: int = 0
    _last_failure: float | None = None

    def next_delay_ms(self, error: BaseException) -> int | None:
        now = time.monotonic()
        if (
            self._last_failure is not None
            and (now - self._last_failure) * 1000 >= self.reset_backoff_threshold_ms
        ):
            self._current = 0
            self._used = 0
        if self.attempts is not None and self._used >= self.attempts:
            return None
        self._last_failure = now
        self._used += 1
        if self._current == 0:
            self._current = self.initial_backoff_ms
        else:
            self._current = min(int(self._current * self.multiplier), self.max_backoff_ms)
        jitter = self._current * self.jitter_factor
        return max(0, int(self._current + random.uniform(-jitter, jitter)))

    def describe(self) -> str:
        bound = "unbounded" if self.attempts is None else f"{self.attempts} attempts"
        return f"exponential delay: {self.initial_backoff_ms}..{self.max_backoff_ms} ms, {bound}"


@attrs.define
class FailureRateRestart(RestartStrategy):
    """Restart unless more than ``max_failures_per_interval`` failures fell in the interval."""

    max_failures_per_interval: int
    failure_interval_ms: int
    delay_ms: int
    _failures: list[float] = attrs.field(factory=list)

    def next_delay_ms(self, error: BaseException) -> int | None:
        now = time.monotonic()
        horizon = now - self.failure_interval_ms / 1000
        self._failures = [t for t in self._failures if t >= horizon]
        self._failures.append(now)
        if len(self._failures) > self.max_failures_per_interval:
            return None
        return self.delay_ms


class RestartStrategies:
    """Factories with PyFlink's names. Each returns a *configuration*: the runtime builds a
    fresh strategy from it for every job run."""

    @staticmethod
    def no_restart() -> RestartStrategy:
        return NoRestart()

    @staticmethod
    def fixed_delay_restart(restart_attempts: int, delay_between_attempts: int) -> RestartStrategy:
        if restart_attempts < 0:
            raise ValueError(f"restart_attempts must be >= 0, got {restart_attempts}")
        return FixedDelayRestart(restart_attempts, int(delay_between_attempts))

    @staticmethod
    def exponential_delay_restart(
        initial_backoff: int = 1000,
        max_backoff: int = 60_000,
        backoff_multiplier: float = 2.0,
        reset_backoff_threshold: int = 3_600_000,
        jitter_factor: float = 0.1,
        attempts: int | None = DEFAULT_RESTART_ATTEMPTS,
    ) -> RestartStrategy:
        """Flink's exponential delay, bounded by default to ``DEFAULT_RESTART_ATTEMPTS``
        restarts in a row; ``attempts=None`` restarts without bound, as Flink does."""
        if attempts is not None and attempts < 0:
            raise ValueError(f"attempts must be >= 0 or None, got {attempts}")
        if backoff_multiplier < 1:
            raise ValueError(f"backoff_multiplier must be >= 1, got {backoff_multiplier}")
        return ExponentialDelayRestart(
            initial_backoff,
            max_backoff,
            backoff_multiplier,
            reset_backoff_threshold,
            jitter_factor,
            attempts,
        )

    @staticmethod
    def failure_rate_restart(
        failure_rate: int, failure_interval: int, delay_interval: int
    ) -> RestartStrategy:
        return FailureRateRestart(failure_rate, failure_interval, delay_interval)


def fresh(strategy: RestartStrategy) -> RestartStrategy:
    """A copy with no failures counted, so each run starts its budget anew."""
    return copy.deepcopy(strategy)
