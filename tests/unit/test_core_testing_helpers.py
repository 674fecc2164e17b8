"""streamplug.testing's recording helpers behave as the runtime does where a connector
could tell the difference."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import pytest

from streamplug.plugins import hookimpl
from streamplug.testing import RecordingOutput, enumerator_context


class Tags:
    @hookimpl
    def streamplug_configure_client(
        self, properties: MutableMapping[str, str], role: str, connector: str
    ) -> None:
        properties["client.id"] = f"{connector}-{role}"


def test_enumerator_context_runs_one_shot_calls_once_and_periodic_ones_every_round() -> None:
    ctx = enumerator_context(parallelism=2)
    runs: list[str] = []
    ctx.call_async(lambda: "once", lambda result, error: runs.append(result))
    ctx.call_async(lambda: "every", lambda result, error: runs.append(result), period_ms=100)
    assert [call.period_ms for call in ctx.async_calls] == [0, 100]
    assert runs == []  # nothing runs until the test says so
    ctx.run_async_calls()
    ctx.run_async_calls()
    assert runs == ["once", "every", "every"]
    assert [call.period_ms for call in ctx.async_calls] == [100]


def test_enumerator_context_hands_errors_to_the_handler_and_propagates_the_handlers() -> None:
    ctx = enumerator_context()
    seen: list[BaseException | None] = []

    def fail() -> None:
        raise RuntimeError("unreachable")

    def handler(result: Any, error: BaseException | None) -> None:
        seen.append(error)
        raise ValueError("the job fails")

    ctx.call_async(fail, handler)
    with pytest.raises(ValueError, match="the job fails"):
        ctx.run_async_calls()
    assert len(seen) == 1 and isinstance(seen[0], RuntimeError)


def test_enumerator_context_records_assignments_and_refuses_unknown_readers() -> None:
    ctx = enumerator_context(parallelism=2, registered_readers=[1], plugins=[Tags()])
    assert ctx.registered_readers() == [1]
    ctx.assign_splits({1: ["a"], 0: []})
    ctx.assign_splits({1: ["b"]})
    ctx.signal_no_more_splits(1)
    assert ctx.assigned == {0: [], 1: ["a", "b"]} and ctx.no_more_splits == [1]
    with pytest.raises(ValueError, match="subtask 2: parallelism is 2"):
        ctx.assign_splits({2: ["c"]})
    props = ctx.configure_client({}, role="admin", connector="kafka")
    assert props == {"client.id": "kafka-admin"}


def test_recording_output_keeps_both_paths_apart_and_checks_timestamps() -> None:
    output = RecordingOutput()
    output.collect_batch(["a", "b"], [1, 2], split_id="s")
    output.collect("c")
    output.release_split("s")
    output.mark_idle()
    output.mark_active()
    assert output.values == ["a", "b", "c"]
    assert output.batches == [("s", ["a", "b"], [1, 2])]
    assert output.collected == [(None, ["c"], None)]
    assert (output.released, output.idle_marks, output.active_marks) == (["s"], 1, 1)
    with pytest.raises(AssertionError, match="1 timestamps for 2 values"):
        output.collect_batch(["x", "y"], [1])
