"""``streamplug run`` without a broker: exit codes, the plan, stopping, and the progress line."""

from __future__ import annotations

import io
import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from streamplug.cli import main
from streamplug.connectors.collection import CollectionSource
from streamplug.pipeline import ProgressLine
from streamplug.pipeline.progress import format_count, format_watermark
from streamplug.plugins import ConnectorSpec, build_plugin_host, hookimpl
from streamplug.runtime import JobMetrics
from streamplug.runtime.storage import FileCheckpointStorage

FUNCTIONS = """\
def square(x):
    return x * x

def explode(x):
    raise RuntimeError(f"cannot handle {x}")
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "cli_fns.py").write_text(FUNCTIONS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STREAMPLUG_DISABLE_PLUGIN_AUTOLOAD", "1")
    return tmp_path


def _pipeline(workdir: Path, body: str) -> Path:
    path = workdir / "job.toml"
    path.write_text(textwrap.dedent(body))
    return path


def test_a_bounded_pipeline_runs_to_the_end(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _pipeline(
        workdir,
        """\
        [job]
        name = "squares"
        [checkpointing]
        interval = "100 ms"
        storage = "chk"
        [source]
        connector = "collection"
        elements = [1, 2, 3]
        [[transform]]
        map = "cli_fns:square"
        [sink]
        connector = "print"
        prefix = "sq"
        """,
    )
    assert main(["run", str(path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert sorted(line for line in out.splitlines() if line.startswith("sq:")) == [
        "sq:1",
        "sq:4",
        "sq:9",
    ]
    assert "job 'squares' FINISHED" in out and "3 records in, 3 out" in out
    final = FileCheckpointStorage(workdir / "chk", "squares").list()[0]
    assert final.status == "COMPLETE" and final.is_final
    # Again: it resumes from that final checkpoint, says so, and reads nothing twice.
    assert main(["run", str(path), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert f"resumed from checkpoint {final.checkpoint_id}" in captured.err
    assert "0 records in" in captured.out and "sq:" not in captured.out
    # --restore none starts over.
    assert main(["run", str(path), "--no-progress", "--restore", "none"]) == 0
    assert "3 records in" in capsys.readouterr().out


def test_dry_run_prints_the_plan_with_secrets_masked(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Secretive:
        @hookimpl
        def streamplug_register_connectors(self, register: Callable[[ConnectorSpec], None]) -> None:
            def source(*, properties: dict[str, str], password: str) -> CollectionSource:
                return CollectionSource([1])

            register(ConnectorSpec("secretive", "source", source))

    monkeypatch.setattr(
        "streamplug.cli.build_plugin_host",
        lambda: build_plugin_host(autoload=False, plugins=[Secretive()]),
    )
    monkeypatch.setenv("SOURCE_PASSWORD", "hunter22")
    path = _pipeline(
        workdir,
        """\
        [source]
        connector = "secretive"
        password = "${SOURCE_PASSWORD}"
        [source.properties]
        "sasl.password" = "${SOURCE_PASSWORD}"
        "client.id" = "me"
        [[transform]]
        map = "cli_fns:square"
        [sink]
        connector = "discard"
        """,
    )
    assert main(["run", str(path), "--dry-run", "--restore", "none"]) == 0
    out = capsys.readouterr().out
    plan = json.loads(out)
    assert plan["job"] == "job"
    assert plan["source"]["options"] == {
        "password": "***",
        "properties": {"sasl.password": "***", "client.id": "me"},
    }
    assert plan["transforms"] == ["map cli_fns:square"]
    assert plan["sinks"] == [{"connector": "discard", "name": "discard", "options": {}}]
    assert plan["checkpointing"] is None
    assert "hunter22" not in out


def test_errors_in_the_file_exit_2_with_the_line(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _pipeline(workdir, '[source]\nconnector = "collection"\n[sink]\nconnector = "prnt"\n')
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "job.toml:4: sink.connector: no sink connector named 'prnt'" in err
    assert "did you mean 'print'?" in err


def test_a_failing_job_exits_1_naming_the_error(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _pipeline(
        workdir,
        """\
        [restart_strategy]
        type = "none"
        [source]
        connector = "collection"
        elements = [7]
        [[transform]]
        map = "cli_fns:explode"
        [sink]
        connector = "discard"
        """,
    )
    assert main(["run", str(path), "--no-progress"]) == 1
    assert "cannot handle 7" in capsys.readouterr().err


def test_stop_after_stops_with_a_final_checkpoint(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _pipeline(
        workdir,
        """\
        [job]
        name = "slow"
        [checkpointing]
        interval = "100 ms"
        storage = "chk"
        [source]
        connector = "collection"
        elements = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
        records_per_second = 2
        [sink]
        connector = "discard"
        """,
    )
    assert main(["run", str(path), "--stop-after", "0.5", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "job 'slow' FINISHED" in out
    newest = FileCheckpointStorage(workdir / "chk", "slow").list()[0]
    assert newest.is_final and newest.status == "COMPLETE"
    # The source had not finished: its final checkpoint still holds splits to resume.
    assert any(r["splits"] for p in newest.document["pipelines"].values() for r in p["readers"])


def test_the_restore_path_must_exist(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _pipeline(workdir, '[source]\nconnector = "collection"\n[sink]\nconnector = "discard"\n')
    assert main(["run", str(path), "--restore", "nowhere/chk-00000001.json"]) == 2
    assert "no such checkpoint file" in capsys.readouterr().err


def test_progress_line_on_a_terminal_redraws_in_place() -> None:
    stream = io.StringIO()
    progress = ProgressLine(stream, interactive=True, lag=lambda m: 1500)
    progress.update(
        JobMetrics(status="RUNNING", records_in=12_345, records_out=12_000, checkpoints_completed=2)
    )
    progress.finish(
        JobMetrics(
            status="FINISHED",
            records_in=20_000,
            records_out=20_000,
            checkpoints_completed=3,
            watermark=0,
        )
    )
    text = stream.getvalue()
    assert text.startswith("\r[") and text.endswith("\n")
    assert text.count("\r") == 2
    first, last = text.strip("\n").split("\r")[1:]
    assert (
        "RUNNING" in first and "in 12.3k" in first and "out 12.0k" in first and "lag 1.50k" in first
    )
    assert "checkpoints 2" in first and "watermark -" in first
    assert "FINISHED" in last and "checkpoints 3" in last and "watermark 00:00:00.000" in last


def test_progress_line_in_a_log_prints_full_lines_now_and_then() -> None:
    stream = io.StringIO()
    progress = ProgressLine(stream, interactive=False, log_every_s=3600)
    metrics = JobMetrics(status="RUNNING", records_in=5, checkpoints_failed=1)
    progress.update(metrics)
    progress.update(metrics)  # within the interval: nothing
    progress.finish(metrics)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert "\r" not in stream.getvalue()
    assert "checkpoints 0 (1 failed)" in lines[0] and "lag" not in lines[0]


def test_number_and_watermark_formats() -> None:
    assert [format_count(n) for n in (0, 999, 1000, 12_345, 2_500_000, 3e9)] == [
        "0",
        "999",
        "1.00k",
        "12.3k",
        "2.50M",
        "3.00G",
    ]
    assert format_watermark(None) == "-"
    assert format_watermark(1_700_000_000_123) == "22:13:20.123"
