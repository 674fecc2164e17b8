"""The ``streamplug`` command. Subcommands come from plugins (``streamplug_register_commands``);
this module is itself one of the core's plugins and contributes ``plugins`` and
``checkpoints``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streamplug.errors import ConfigError, StreamplugError
from streamplug.plugin import CommandSpec, PluginHost, build_plugin_host, hookimpl

log = logging.getLogger(__name__)


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("streamplug")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# -- streamplug plugins --------------------------------------------------------------------


def _configure_plugins(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _run_plugins(args: argparse.Namespace) -> int:
    host: PluginHost = args.host
    infos = host.plugin_infos()
    if args.json:
        print(
            json.dumps(
                {
                    "plugins": [
                        {
                            "name": i.name,
                            "distribution": i.distribution,
                            "version": i.version,
                            "registers": i.names,
                        }
                        for i in infos
                    ],
                    "conflicts": [
                        {
                            "kind": c.kind,
                            "name": c.name,
                            "claimed_by": [
                                {"distribution": d, "plugin": p} for d, p in c.claimants
                            ],
                        }
                        for c in host.conflicts()
                    ],
                    "failures": [
                        {
                            "distribution": f.distribution,
                            "entry_point": f.entry_point,
                            "hook": f.hook,
                            "error": f"{type(f.error).__name__}: {f.error}",
                        }
                        for f in host.failures
                    ],
                },
                indent=2,
            )
        )
        return 1 if host.failures or host.conflicts() else 0
    for info in infos:
        print(f"{info.distribution} {info.version}".rstrip() + f"  (plugin {info.name})")
        if not info.names:
            print("    (registers no names; implements lifecycle or configuration hooks)")
        for kind, names in sorted(info.names.items()):
            print(f"    {kind + 's:':<22} {', '.join(names)}")
    conflicts = host.conflicts()
    for conflict in conflicts:
        print(f"CONFLICT: {conflict}")
    for failure in host.failures:
        print(f"FAILED: {failure}")
    return 1 if host.failures or conflicts else 0


# -- streamplug checkpoints ----------------------------------------------------------------


def _configure_checkpoints(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    listing = sub.add_parser("list", help="one line per checkpoint in a checkpoint storage")
    listing.add_argument(
        "directory",
        help="checkpoint storage (a directory or s3://bucket/prefix), or one job's directory in it",
    )
    show = sub.add_parser("show", help="everything one checkpoint holds")
    show.add_argument(
        "path", help="a chk-*.json file or object, or a job's directory (shows the newest)"
    )
    show.add_argument("--json", action="store_true", help="print the raw JSON document")
    for p in (listing, show):
        p.add_argument(
            "--storage-option",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="an fsspec option of an object store, e.g. endpoint_url=http://127.0.0.1:9000 "
            "(repeatable; give credentials through AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
            "rather than here, where other users of the machine can see them)",
        )


def _storage_options(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(
                f"--storage-option {key or pair!r}: write KEY=VALUE, e.g. endpoint_url=http://host:9000",
                option="storage option",
            )
        parsed: Any = value
        if value in ("true", "false"):
            parsed = value == "true"
        elif value.startswith("{"):
            try:
                parsed = json.loads(value)
            except ValueError as exc:
                raise ConfigError(
                    f"--storage-option {key}: the value is not a JSON object ({exc})",
                    option="storage option",
                ) from None
        options[key] = parsed
    return options


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )
    return "\n".join(lines)


def _count_splits(doc: dict[str, Any]) -> int:
    return sum(
        len(r["splits"]) for p in doc.get("pipelines", {}).values() for r in p.get("readers", [])
    )


def _count_committables(doc: dict[str, Any]) -> int:
    return sum(
        len(s.get("committables", []))
        for p in doc.get("pipelines", {}).values()
        for s in p.get("sinks", [])
    )


def _run_checkpoints(args: argparse.Namespace) -> int:
    try:
        return _checkpoints(args)
    except ImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _checkpoints(args: argparse.Namespace) -> int:
    from streamplug.runtime.storage import (
        FileCheckpointStorage,
        ObjectStoreCheckpointStorage,
        job_storages,
        parse_storage_location,
        read_checkpoint,
    )

    options = _storage_options(args.storage_option)
    if args.action == "list":
        storages = job_storages(args.directory, options)
        if not storages:
            print(f"no checkpoints under {args.directory}")
            return 0
        for storage in storages:
            rows = [
                [
                    str(c.checkpoint_id),
                    c.status + (" (final)" if c.is_final else ""),
                    _when(c.document.get("timestamp")),
                    str(c.document.get("parallelism", "?")),
                    str(_count_splits(c.document)),
                    str(_count_committables(c.document)),
                    c.name,
                ]
                for c in storage.list()
            ]
            print(f"job {storage.location.rstrip('/').rsplit('/', 1)[-1]}:")
            print(
                _table(
                    rows,
                    [
                        "id",
                        "status",
                        "taken (UTC)",
                        "parallelism",
                        "splits",
                        "committables",
                        "file",
                    ],
                )
            )
        return 0
    location = parse_storage_location(args.path)
    job_dir: FileCheckpointStorage | ObjectStoreCheckpointStorage | None = None
    if isinstance(location, Path):
        if location.is_dir():
            job_dir = FileCheckpointStorage.at(location)
    elif not location.endswith(".json"):
        job_dir = ObjectStoreCheckpointStorage.at(location, options)
    if job_dir is not None:
        ids = job_dir.ids()
        if not ids:
            print(f"error: no checkpoints in {job_dir.location}", file=sys.stderr)
            return 2
        checkpoint = job_dir.read_checkpoint(ids[0])
    else:
        checkpoint = read_checkpoint(location, options)
    doc = checkpoint.document
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    print(
        f"checkpoint {checkpoint.checkpoint_id} of job {doc.get('job')!r}: {checkpoint.status}"
        + (" (final)" if checkpoint.is_final else "")
    )
    print(
        f"  taken {_when(doc.get('timestamp'))} UTC, attempt {doc.get('attempt')}, parallelism {doc.get('parallelism')}"
    )
    for name, pipeline in doc.get("pipelines", {}).items():
        print(f"\npipeline {name!r}: source {json.dumps(pipeline.get('source', {}))}")
        rows = []
        for reader in pipeline.get("readers", []):
            for split in reader["splits"]:
                rows.append([str(reader["subtask"]), *_split_columns(split)])
        if rows:
            print(_table(rows, ["subtask", "split", "position", "until"]))
        else:
            print("  (no split in progress)")
        unassigned = pipeline.get("enumerator", {}).get("data")
        print(f"  enumerator: {json.dumps(unassigned)[:300]}")
        for sink in pipeline.get("sinks", []):
            state = "awaiting commit" if checkpoint.status == "PENDING" else "committed"
            print(
                f"  sink {sink['name']} ({sink.get('delivery_guarantee')}): {len(sink.get('committables', []))} committable(s), {state}"
            )
            for c in sink.get("committables", []):
                print(f"    - {json.dumps(c)[:200]}")
    return 0


def _split_columns(split: Any) -> list[str]:
    """Readable columns for a split's JSON data, whatever connector wrote it."""
    if not isinstance(split, dict):
        return [json.dumps(split)[:60], "", ""]
    if "topic" in split:
        ident = f"{split['topic']}[{split.get('partition')}]"
    else:
        ident = str(split.get("id", split.get("split_id", "?")))
    position = split.get("starting_offset", split.get("offset", split.get("start", "")))
    until = split.get("stopping_offset", split.get("end", ""))
    return [ident, str(position), "" if until is None else str(until)]


@hookimpl
def streamplug_register_commands(register: Callable[[CommandSpec], None]) -> None:
    register(
        CommandSpec(
            "plugins",
            "list installed plugins, the names they register, and conflicts and failures",
            _configure_plugins,
            _run_plugins,
        )
    )
    register(
        CommandSpec(
            "checkpoints",
            "list or show checkpoints in a checkpoint storage (directory or s3://)",
            _configure_checkpoints,
            _run_checkpoints,
        )
    )


# -- entry point ---------------------------------------------------------------------------


def build_parser(host: PluginHost) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamplug",
        description="Flink's Kafka connector model for Python: run pipelines, brokers and tools.",
    )
    parser.add_argument("--version", action="version", version=f"streamplug {_version()}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for conflict in host.conflicts():
        if conflict.kind == "command":
            log.warning("%s; the command is left out", conflict)
    specs: list[CommandSpec] = [host.lookup("command", name) for name in host.names("command")]
    for spec in specs:
        # Tried on a scratch parser first: a plugin's broken command must not take the other
        # commands (and --help) down with it.
        try:
            spec.configure(argparse.ArgumentParser(prog=f"streamplug {spec.name}"))
        except Exception as exc:
            log.warning(
                "command %r failed to set up its arguments and is left out: %s: %s",
                spec.name,
                type(exc).__name__,
                " ".join(str(exc).split()),
            )
            continue
        p = sub.add_parser(spec.name, help=spec.help, description=spec.help)
        spec.configure(p)
        p.set_defaults(_run=spec.run)
    return parser


def _verbosity(argv: Sequence[str] | None) -> int:
    """``-v`` counted before the full parser exists: plugin loading already logs."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("-v", "--verbose", action="count", default=0)
    known, _ = pre.parse_known_args(argv)
    return int(known.verbose)


def main(argv: Sequence[str] | None = None) -> int:
    level = logging.WARNING - 10 * min(_verbosity(argv), 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # -vv debugs streamplug, not the wire: botocore's debug log of every S3 request carries
    # the access key id in its headers (never the secret) and drowns everything else.
    for wire in ("botocore", "aiobotocore", "s3fs", "fsspec", "urllib3"):
        logging.getLogger(wire).setLevel(max(level, logging.INFO))
    host = build_plugin_host()
    try:
        parser = build_parser(host)
    except StreamplugError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    args.host = host
    try:
        return int(args._run(args) or 0)
    except StreamplugError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
