"""The restart loop under failure: what a restart cannot fix fails at once, stop and cancel
work during a restart delay, every way out reports ``streamplug_job_finished``, and the
default strategy gives up."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from streamplug.connectors import CollectionSource, CollectSink
from streamplug.errors import (
    AuthorizationError,
    ConfigError,
    JobCancelledError,
    JobFailedError,
    MissingResourceError,
    StreamplugError,
    UnrecoverableError,
    unrecoverable_cause,
)
from streamplug.plugins import build_plugin_host, hookimpl
from streamplug.runtime import JobStatus, RestartStrategies, StreamExecutionEnvironment
from streamplug.runtime.restart import DEFAULT_RESTART_ATTEMPTS, fresh


class Recorder:
    def __init__(self) -> None:
        self.finished: list[tuple[str, BaseException | None]] = []
        self.restarts = 0

    @hookimpl
    def streamplug_job_finished(self, job: Any, status: str, error: BaseException | None) -> None:
        self.finished.append((status, error))

    @hookimpl
    def streamplug_job_restarting(self, job: Any, error: BaseException, delay_ms: int) -> None:
        self.restarts += 1


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def env(recorder: Recorder) -> StreamExecutionEnvironment:
    host = build_plugin_host(autoload=False, plugins=[recorder])
    return StreamExecutionEnvironment.get_execution_environment(host)


def _failing_with(error: BaseException) -> Any:
    def fn(x: int) -> int:
        raise error

    return fn


class _Wrapped(RuntimeError):
    pass


def _wrapped_auth() -> BaseException:
    try:
        raise AuthorizationError("topic 'orders': TOPIC_AUTHORIZATION_FAILED for User:bob")
    except AuthorizationError as cause:
        wrapper = _Wrapped("reader failed")
        wrapper.__cause__ = cause
        return wrapper


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("No such configuration property: 'fetch.mx.bytes'", option="fetch.mx.bytes"),
        AuthorizationError("topic 'orders': TOPIC_AUTHORIZATION_FAILED"),
        MissingResourceError("topic 'orders' does not exist"),
        _wrapped_auth(),
        ImportError("the processes runtime needs cloudpickle: pip install cloudpickle"),
    ],
    ids=["config", "authorization", "missing-topic", "wrapped", "missing-package"],
)
def test_what_a_restart_cannot_fix_fails_at_once_whatever_the_strategy(
    env: StreamExecutionEnvironment, recorder: Recorder, tmp_path: Path, error: BaseException
) -> None:
    env.enable_checkpointing(50)
    env.get_checkpoint_config().set_checkpoint_storage_dir(tmp_path)
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(100, 1000))
    env.from_collection([1]).map(_failing_with(error)).sink_to(CollectSink())
    started = time.monotonic()
    with pytest.raises(JobFailedError, match="after 1 attempt") as info:
        env.execute("hopeless")
    assert time.monotonic() - started < 5
    assert info.value.__cause__ is error
    assert recorder.restarts == 0
    assert recorder.finished == [("FAILED", error)]


def test_transient_failures_still_restart(
    env: StreamExecutionEnvironment, recorder: Recorder
) -> None:
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(2, 1))
    env.from_collection([1]).map(_failing_with(StreamplugError("broker went away"))).sink_to(
        CollectSink()
    )
    with pytest.raises(JobFailedError, match="after 3 attempt"):
        env.execute("transient")
    assert recorder.restarts == 2
    assert [status for status, _ in recorder.finished] == ["FAILED"]


def test_unrecoverable_cause_walks_the_chain() -> None:
    assert isinstance(ConfigError("x"), UnrecoverableError)
    assert unrecoverable_cause(RuntimeError("plain")) is None
    wrapped = _wrapped_auth()
    assert isinstance(unrecoverable_cause(wrapped), AuthorizationError)


def _restarting_job(env: StreamExecutionEnvironment, delay_ms: int) -> Any:
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(1000, delay_ms))
    env.from_collection([1]).map(_failing_with(RuntimeError("transient"))).sink_to(CollectSink())
    client = env.execute_async("restarting")
    deadline = time.monotonic() + 10
    while client.status is not JobStatus.RESTARTING:
        assert time.monotonic() < deadline, f"never restarting: {client.status}"
        time.sleep(0.01)
    return client


@pytest.mark.parametrize("how", ["stop", "cancel"])
def test_stop_and_cancel_end_a_restart_delay_at_once(
    env: StreamExecutionEnvironment, recorder: Recorder, how: str
) -> None:
    client = _restarting_job(env, delay_ms=60_000)
    started = time.monotonic()
    if how == "stop":
        # No attempt runs, so no final checkpoint: the stop ends it CANCELED.
        with pytest.raises(JobCancelledError):
            client.stop(timeout=5)
    else:
        client.cancel()
        client.wait_quietly(5)
    assert time.monotonic() - started < 2, "the restart delay was waited out"
    assert client.status is JobStatus.CANCELED
    with pytest.raises(JobCancelledError):
        client.wait(0)
    # The hookspec promises job_finished on every path, a cancel in the delay included.
    assert recorder.finished == [("CANCELED", None)]


def test_stop_while_an_attempt_starts_takes_the_final_checkpoint(
    env: StreamExecutionEnvironment, recorder: Recorder, tmp_path: Path
) -> None:
    env.enable_checkpointing(60_000)
    env.get_checkpoint_config().set_checkpoint_storage_dir(tmp_path)
    source = CollectionSource(list(range(1000)), batch_size=10, records_per_second=100)
    env.from_source(source, None, "slow").sink_to(CollectSink())
    client = env.execute_async("stop-at-start")
    client._run.stop_requested.set()
    client.wait(10)
    assert client.status is JobStatus.FINISHED
    assert client.checkpoint_storage.latest_id() >= 1
    assert recorder.finished == [("FINISHED", None)]


def test_the_default_restart_strategy_is_bounded() -> None:
    env = StreamExecutionEnvironment.get_execution_environment(build_plugin_host(autoload=False))
    env.enable_checkpointing(1000)
    strategy = fresh(env.effective_restart_strategy())
    delays = [strategy.next_delay_ms(RuntimeError()) for _ in range(DEFAULT_RESTART_ATTEMPTS + 1)]
    assert all(d is not None for d in delays[:-1])
    assert delays[-1] is None
    assert str(DEFAULT_RESTART_ATTEMPTS) in strategy.describe()
    unbounded = fresh(RestartStrategies.exponential_delay_restart(1, 2, attempts=None))
    assert all(unbounded.next_delay_ms(RuntimeError()) is not None for _ in range(100))


def test_a_long_healthy_run_resets_the_attempt_budget() -> None:
    strategy = fresh(RestartStrategies.exponential_delay_restart(1, 2, 2.0, 50, 0.0, attempts=2))
    assert strategy.next_delay_ms(RuntimeError()) is not None
    assert strategy.next_delay_ms(RuntimeError()) is not None
    assert strategy.next_delay_ms(RuntimeError()) is None
    time.sleep(0.06)
    assert strategy.next_delay_ms(RuntimeError()) == 1
