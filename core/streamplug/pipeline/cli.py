"""``streamplug run PIPELINE.toml``: build a pipeline file into a job and run it.

The ``streamplug`` command registers this at every start, so the runtime and the pipeline
machinery are imported only when ``run`` actually runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from streamplug.errors import ConfigError, JobCancelledError, JobFailedError
from streamplug.plugin.records import CommandSpec
from streamplug.plugin.spec import hookimpl
from streamplug.runtime.signals import stop_on_signals
from streamplug.runtime.storage import redact_storage_options
from streamplug.secrets import redact

if TYPE_CHECKING:
    from streamplug.pipeline.build import BuiltPipeline
    from streamplug.pipeline.config import SinkSettings, SourceSettings
    from streamplug.pipeline.locate import PathElement

__all__ = ["run_command"]


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pipeline", metavar="PIPELINE.toml", help="the pipeline file")
    parser.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT,...",
        help="Kafka to use instead of the bootstrap_servers in the file (every source and sink that takes it)",
    )
    parser.add_argument(
        "--restore",
        default="latest",
        metavar="latest|none|PATH",
        help="resume from this job's newest usable checkpoint (latest, the default), start fresh "
        "(none), or restore a chk-*.json file",
    )
    parser.add_argument(
        "--checkpoint-dir",
        metavar="DIR|URL",
        help="checkpoint storage (a directory, or s3://bucket/prefix), instead of [checkpointing] storage",
    )
    parser.add_argument(
        "--runtime",
        metavar="NAME",
        help="where the worker slots run, instead of [job] runtime: threads, processes, or a "
        "runtime a plugin registers (ray with streamplug-ray)",
    )
    parser.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help="serve metrics for Prometheus at http://HOST:PORT/metrics during the run "
        "(needs pip install 'streamplug[metrics]'; 0 picks a free port)",
    )
    parser.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="address the metrics endpoint binds (default 127.0.0.1)",
    )
    parser.add_argument(
        "--stop-after",
        type=float,
        metavar="SECONDS",
        help="stop gracefully after this long (final checkpoint, commits), as on Ctrl-C",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check and build the pipeline, print its plan, and exit",
    )
    parser.add_argument("--no-progress", action="store_true", help="no live progress line")


def _describe(built: BuiltPipeline) -> dict[str, Any]:
    config = built.config
    env = built.env
    cp = env.get_checkpoint_config()

    def options(raw: dict[str, Any]) -> dict[str, Any]:
        shown = redact(raw)
        if isinstance(raw.get("properties"), dict):
            shown["properties"] = redact(raw["properties"])
        return shown

    return {
        "job": built.job_name,
        "parallelism": env.get_parallelism(),
        "runtime": env.get_runtime(),
        "checkpointing": (
            {
                "interval_ms": cp.interval_ms,
                "timeout_ms": cp.timeout_ms,
                "storage": str(cp.storage_dir) if cp.storage_dir else None,
                "storage_options": redact_storage_options(cp.storage_options),
                "restore": cp.restore,
            }
            if cp.enabled
            else None
        ),
        "restart_strategy": env.effective_restart_strategy().describe(),
        "source": {
            "connector": config.source.connector,
            "name": config.source.name,
            "options": options(config.source.options),
            "watermarks": config.source.watermarks.strategy,
        },
        "transforms": [f"{t.kind} {t.function}" for t in config.transforms],
        "sinks": [
            {"connector": s.connector, "name": s.name, "options": options(s.options)}
            for s in config.sinks
        ],
    }


def _run(args: argparse.Namespace) -> int:
    from streamplug.pipeline.build import build_pipeline
    from streamplug.pipeline.config import load_pipeline

    config = load_pipeline(args.pipeline)
    endpoint = None
    if args.metrics_port is not None:
        from streamplug.metrics_export import start_prometheus_exporter

        try:
            endpoint = start_prometheus_exporter(args.metrics_port, args.metrics_host)
        except ImportError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            print(
                f"error: cannot serve metrics on {args.metrics_host}:{args.metrics_port}: {exc}",
                file=sys.stderr,
            )
            return 2
        print(f"metrics: {endpoint.url}", flush=True)
    try:
        built = build_pipeline(
            config,
            args.host,
            bootstrap_servers=args.bootstrap_servers,
            restore=args.restore,
            checkpoint_storage=args.checkpoint_dir,
            runtime=args.runtime,
        )
        if args.dry_run:
            print(json.dumps(_describe(built), indent=2, default=str))
            return 0
        return _execute(built, args)
    finally:
        if endpoint is not None:
            endpoint.close()


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1 to 65535 (0 picks a free one), got {port}")
    return port


def _execute(built: BuiltPipeline, args: argparse.Namespace) -> int:
    from streamplug.pipeline.progress import ProgressLine, format_count

    client = built.env.execute_async(built.job_name)
    print(
        f"job {built.job_name!r} started (id {client.job_id}); Ctrl-C or SIGTERM stops it with "
        "a final checkpoint",
        flush=True,
    )
    progress = None if args.no_progress else ProgressLine()
    deadline = time.monotonic() + args.stop_after if args.stop_after is not None else None
    announced_restore = False
    with stop_on_signals(client) as signals:
        while not client.status.is_terminal and not signals.give_up_waiting():
            if deadline is not None and time.monotonic() >= deadline:
                signals.request_stop()
            metrics = client.metrics()
            restored = getattr(metrics, "restored_checkpoint_id", None)
            if restored is not None and not announced_restore:
                # Say so: a resumed job that reads nothing new is otherwise puzzling.
                announced_restore = True
                print(f"resumed from checkpoint {restored}", file=sys.stderr, flush=True)
            if progress is not None:
                progress.update(metrics)
            client.wait_quietly(0.25)
        final_metrics = client.metrics()
        restored = getattr(final_metrics, "restored_checkpoint_id", None)
        if restored is not None and not announced_restore:
            print(f"resumed from checkpoint {restored}", file=sys.stderr, flush=True)
        if progress is not None:
            progress.finish(final_metrics)
        try:
            result = signals.wait()
        except JobFailedError as exc:
            print(f"error: {exc}", file=sys.stderr)
            where = _locate_failure(built, exc)
            if where:
                print(f"  the setting is at {where}", file=sys.stderr)
            return 1
        except JobCancelledError as exc:
            print(f"{exc}", file=sys.stderr)
            return signals.exit_code(finished=False) or 130
    print(
        f"job {result.job_name!r} FINISHED in {result.net_runtime_ms / 1000:.1f} s: "
        f"{format_count(result.records_in)} records in, {format_count(result.records_out)} out, "
        f"{result.checkpoints_completed} checkpoint(s), {result.attempts} attempt(s)"
        + (f"; last checkpoint {result.last_checkpoint}" if result.last_checkpoint else ""),
        flush=True,
    )
    return 0


def _norm(key: str) -> str:
    return key.replace("-", "_").replace(".", "_").lower()


def _locate_failure(built: BuiltPipeline, exc: BaseException) -> str | None:
    """Where in the pipeline file the option a job's ConfigError names is set, if it is:
    connectors validate some settings only when the job starts (transaction timeouts)."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ConfigError):
        cause = cause.__cause__
    if cause is None or not cause.option:
        return None
    from streamplug.pipeline.locate import format_path

    wanted = _norm(cause.option)
    config = built.config
    candidates: list[tuple[PathElement, ...]] = []
    sections: list[SourceSettings | SinkSettings] = [config.source, *config.sinks]
    for settings in sections:
        for key, value in settings.options.items():
            candidates.append((*settings.path, key))
            if key == "properties" and isinstance(value, dict):
                candidates.extend((*settings.path, key, name) for name in value)
    for path in candidates:
        if _norm(".".join(str(p) for p in path[-1:])) == wanted or wanted.endswith(
            _norm(str(path[-1]))
        ):
            line = config.line_of(path)
            return f"{config.file}:{line}: {format_path(path)}" if line else format_path(path)
    return None


def run_command() -> CommandSpec:
    """The ``run`` subcommand, which this module registers as one of the core's plugins."""
    return CommandSpec(
        "run",
        "run a pipeline file (TOML): source, transforms and sinks by registered name",
        _configure,
        _run,
    )


def _configure_schema(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output", "-o", metavar="FILE", help="write the schema to FILE instead of stdout"
    )


def _run_schema(args: argparse.Namespace) -> int:
    from streamplug.pipeline.schema import pipeline_schema

    text = json.dumps(pipeline_schema(args.host), indent=2) + "\n"
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


@hookimpl
def streamplug_register_commands(register: Callable[[CommandSpec], None]) -> None:
    register(run_command())
    register(
        CommandSpec(
            "schema",
            "print the JSON Schema of pipeline files, with every installed component's options",
            _configure_schema,
            _run_schema,
        )
    )
