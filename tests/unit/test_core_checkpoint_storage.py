"""Checkpoint storage on both back ends: a directory (local or shared) and an object store
through fsspec -- moto's S3 server over HTTP, and fsspec's in-process memory store. The
same contract on each: atomic documents, listing, latest, prune, discard, mark, the
primitives a job lock uses, and credentials that never show."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from streamplug.cli import main as streamplug_main
from streamplug.connectors import CollectionSource, TransactionalFileSink
from streamplug.errors import (
    AuthorizationError,
    CheckpointError,
    ConfigError,
    JobFailedError,
    MissingResourceError,
)
from streamplug.plugins import build_plugin_host
from streamplug.runtime import RestartStrategies, StreamExecutionEnvironment
from streamplug.runtime.storage import (
    COMPLETE,
    PENDING,
    CheckpointStorage,
    CheckpointStorageDeniedError,
    CheckpointStorageMissingError,
    FileCheckpointStorage,
    ObjectStoreCheckpointStorage,
    job_storages,
    open_checkpoint_storage,
    parse_storage_location,
    read_checkpoint,
)

if TYPE_CHECKING:
    from tests.conftest import S3Server

BACKENDS = ("directory", "memory", "s3")


@pytest.fixture(params=BACKENDS)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    """A storage location of each back end, with the options that reach it."""
    if request.param == "directory":
        return str(tmp_path / "chk"), {}
    if request.param == "memory":
        pytest.importorskip("fsspec", reason='needs pip install "streamplug[s3]"')
        return f"memory://streamplug-{uuid.uuid4().hex[:8]}/chk", {}
    server: S3Server = request.getfixturevalue("s3_server")
    return f"s3://{server.new_bucket()}/prefix/chk", server.options


@pytest.fixture
def storage(location: tuple[str, dict[str, Any]]) -> CheckpointStorage:
    return open_checkpoint_storage(location[0], "orders job", location[1])


def test_checkpoints_are_listed_newest_first_and_marked_pruned_discarded(
    storage: CheckpointStorage,
) -> None:
    assert (storage.ids(), storage.list(), storage.latest_id()) == ([], [], 0)
    for cid in range(1, 6):
        storage.write(cid, COMPLETE, {"pipelines": {"p": {"n": cid}}, "timestamp": cid})
    pending_at = storage.write(6, PENDING, {"pipelines": {}})
    assert storage.ids() == [6, 5, 4, 3, 2, 1]
    assert storage.latest_id() == 6
    newest = storage.list()[0]
    assert (newest.checkpoint_id, newest.status, newest.path) == (6, PENDING, pending_at)
    assert newest.name == "chk-00000006.json"
    assert str(pending_at).endswith("/orders_job/chk-00000006.json")
    promoted = storage.mark(newest, COMPLETE)
    assert promoted.status == COMPLETE
    assert storage.read_checkpoint(6).status == COMPLETE
    assert storage.read_checkpoint(5).document["pipelines"] == {"p": {"n": 5}}
    assert storage.prune(3) == [3, 2, 1]
    assert storage.ids() == [6, 5, 4]
    storage.discard(6)
    storage.discard(6)  # gone already: nothing to do
    assert [c.checkpoint_id for c in storage] == [5, 4]
    assert read_checkpoint(storage.path_for(5), _options(storage)).checkpoint_id == 5


def _options(storage: CheckpointStorage) -> dict[str, Any]:
    return storage.storage_options if isinstance(storage, ObjectStoreCheckpointStorage) else {}


def test_an_unreadable_checkpoint_is_skipped_with_a_warning(
    storage: CheckpointStorage, caplog: pytest.LogCaptureFixture
) -> None:
    storage.write(1, COMPLETE, {})
    storage.write_bytes("chk-00000002.json", b'{"format": 1, "checkp')
    storage.write_bytes("chk-00000003.json", json.dumps({"format": 99}).encode())
    with caplog.at_level(logging.WARNING, logger="streamplug.runtime.storage"):
        assert [c.checkpoint_id for c in storage.list()] == [1]
    assert "chk-00000002.json" in caplog.text and "format 99" in caplog.text


def test_document_primitives_for_a_lock_beside_the_checkpoints(
    storage: CheckpointStorage,
) -> None:
    assert not storage.exists("job.lock")
    with pytest.raises(FileNotFoundError):
        storage.read_bytes("job.lock")
    assert storage.create_bytes("job.lock", b"owner-1")
    assert not storage.create_bytes("job.lock", b"owner-2"), "a second create must lose"
    assert storage.read_bytes("job.lock") == b"owner-1"
    storage.write_bytes("job.lock", b"owner-1 renewed")
    assert storage.read_bytes("job.lock") == b"owner-1 renewed"
    assert storage.exists("job.lock")
    storage.write(1, COMPLETE, {})
    assert sorted(storage.names()) == ["chk-00000001.json", "job.lock"]
    assert storage.ids() == [1], "documents of the job are not checkpoints"
    assert storage.delete("job.lock")
    assert not storage.delete("job.lock")
    assert not storage.exists("job.lock")
    assert storage.create_bytes("job.lock", b"owner-3")
    for bad in ("../escape", "a/b", ".hidden", ""):
        with pytest.raises(ValueError, match="plain file name"):
            storage.write_bytes(bad, b"x")


def test_another_driver_sees_what_this_one_wrote_and_the_reverse(
    location: tuple[str, dict[str, Any]],
) -> None:
    url, options = location
    first = open_checkpoint_storage(url, "job", options)
    second = open_checkpoint_storage(url, "job", options)
    assert first.ids() == []  # a listing now, which must not be remembered
    second.write(1, PENDING, {})
    assert first.ids() == [1]
    first.discard(1)
    assert second.ids() == []
    assert not second.exists("chk-00000001.json")


def test_an_s3_listing_is_never_served_from_a_cache(s3_server: S3Server) -> None:
    import s3fs

    bucket = s3_server.new_bucket()
    storage = open_checkpoint_storage(f"s3://{bucket}/chk", "job", s3_server.options)
    storage.write(1, COMPLETE, {})
    assert storage.ids() == [1]
    assert storage.exists("chk-00000001.json")
    # A driver on another node: its own client, its own connection.
    other = s3fs.S3FileSystem(skip_instance_cache=True, **s3_server.options)
    other.pipe_file(f"{bucket}/chk/job/chk-00000002.json", b"{}")
    other.rm_file(f"{bucket}/chk/job/chk-00000001.json")
    assert storage.ids() == [2]
    assert not storage.exists("chk-00000001.json")
    assert storage.exists("chk-00000002.json")


def test_jobs_under_a_storage_are_found_by_the_listing(
    location: tuple[str, dict[str, Any]],
) -> None:
    url, options = location
    open_checkpoint_storage(url, "alpha", options).write(1, COMPLETE, {})
    open_checkpoint_storage(url, "beta", options).write(7, COMPLETE, {})
    found = job_storages(url, options)
    assert [s.location.rsplit("/", 1)[-1] for s in found] == ["alpha", "beta"]
    only = job_storages(found[1].location, options)
    assert [s.ids() for s in only] == [[7]]


def test_a_stored_checkpoint_holds_no_storage_credential(
    location: tuple[str, dict[str, Any]],
) -> None:
    url, options = location
    storage = open_checkpoint_storage(url, "job", options)
    path = storage.write(1, COMPLETE, {"pipelines": {}})
    raw = storage.read_bytes("chk-00000001.json").decode()
    for secret in (v for k, v in options.items() if k in ("key", "secret")):
        assert secret not in raw and secret not in repr(storage) and secret not in str(path)


# -- the directory back end --------------------------------------------------------------


def test_directory_writes_leave_no_temporary_and_torn_ones_are_cleaned(tmp_path: Path) -> None:
    storage = FileCheckpointStorage(tmp_path, "job")
    storage.write(1, COMPLETE, {})
    storage.write_bytes("job.lock", b"x")
    assert sorted(p.name for p in storage.directory.iterdir()) == ["chk-00000001.json", "job.lock"]
    torn_checkpoint = storage.directory / ".chk-00000002.json.abc.tmp"
    torn_checkpoint.write_text('{"format": 1')
    fresh_lock = storage.directory / ".job.lock.def.tmp"
    old_lock = storage.directory / ".job.lock.ghi.tmp"
    fresh_lock.write_text("y")
    old_lock.write_text("z")
    two_hours_ago = time.time() - 7200
    os.utime(old_lock, (two_hours_ago, two_hours_ago))
    storage.remove_temporaries()
    # A lock's temporary may belong to a write in progress; only an old one is a crash's.
    assert sorted(p.name for p in storage.directory.iterdir()) == [
        ".job.lock.def.tmp",
        "chk-00000001.json",
        "job.lock",
    ]


def test_create_without_hard_links_still_refuses_an_existing_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(src: Any, dst: Any) -> None:
        raise PermissionError(1, "Operation not permitted")  # what some FUSE mounts answer

    monkeypatch.setattr(os, "link", no_links)
    storage = FileCheckpointStorage(tmp_path, "job")
    assert storage.create_bytes("job.lock", b"one")
    assert not storage.create_bytes("job.lock", b"two")
    assert storage.read_bytes("job.lock") == b"one"
    assert [p.name for p in storage.directory.iterdir()] == ["job.lock"]


def test_local_locations_keep_their_meaning(tmp_path: Path) -> None:
    assert parse_storage_location(f"file://{tmp_path}") == tmp_path
    assert parse_storage_location("~/chk") == Path.home() / "chk"
    assert parse_storage_location(tmp_path) == tmp_path
    with pytest.raises(ConfigError, match="apply to object stores"):
        open_checkpoint_storage(tmp_path, "job", {"endpoint_url": "http://x"})
    env = StreamExecutionEnvironment.get_execution_environment(build_plugin_host(autoload=False))
    with pytest.raises(ConfigError, match="apply to object stores"):
        env.get_checkpoint_config().set_checkpoint_storage_dir(tmp_path, {"key": "k"})


# -- the object store back end -----------------------------------------------------------


def test_every_s3_write_is_one_put_of_the_final_object(s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket()
    storage = open_checkpoint_storage(f"s3://{bucket}/chk", "job", s3_server.options)
    document = {"pipelines": {"p": {"blob": "x" * 200_000}}}
    storage.write(1, PENDING, document)
    storage.mark(storage.list()[0], COMPLETE)
    storage.write(2, PENDING, document)
    puts = [path for method, path in s3_server.requests(bucket) if method == "PUT"]
    assert puts == [
        f"/{bucket}",  # the bucket itself, made by the fixture
        f"/{bucket}/chk/job/chk-00000001.json",
        f"/{bucket}/chk/job/chk-00000001.json",
        f"/{bucket}/chk/job/chk-00000002.json",
    ]
    assert not [m for m, _ in s3_server.requests(bucket) if m == "POST"], "no multipart upload"
    storage.remove_temporaries()  # nothing to remove, and nothing fails
    assert storage.ids() == [2, 1]


def test_s3_credentials_from_the_environment(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    bucket = s3_server.new_bucket()
    storage = open_checkpoint_storage(f"s3://{bucket}/chk", "job")
    storage.write(1, COMPLETE, {})
    assert storage.ids() == [1]


def test_s3_errors_name_the_object_and_never_the_secret(s3_server: S3Server) -> None:
    storage = open_checkpoint_storage("s3://no-such-bucket/chk", "job", s3_server.options)
    with pytest.raises(CheckpointStorageMissingError) as info:
        storage.write(1, COMPLETE, {})
    message = str(info.value)
    assert "s3://no-such-bucket/chk/job/chk-00000001.json" in message
    assert "bucket does not exist" in message and "create the bucket" in message
    assert s3_server.secret not in message and s3_server.key not in message
    assert "'secret': '***'" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    # Listing a missing bucket is not "no checkpoints yet": it says what is wrong.
    with pytest.raises(CheckpointStorageMissingError, match="cannot list s3://no-such-bucket"):
        storage.ids()


def test_a_job_whose_bucket_is_missing_fails_at_once(s3_server: S3Server) -> None:
    env = StreamExecutionEnvironment.get_execution_environment(build_plugin_host(autoload=False))
    env.enable_checkpointing(100).set_restart_strategy(RestartStrategies.fixed_delay_restart(5, 10))
    env.get_checkpoint_config().set_checkpoint_storage_dir(
        "s3://no-such-bucket/chk", s3_server.options
    )
    env.from_collection([1, 2]).print()
    with pytest.raises(MissingResourceError, match=r"no-such-bucket.*create the bucket"):
        env.execute("nowhere")


def test_a_store_that_refuses_the_credentials_fails_the_job_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory_fs = pytest.importorskip(
        "fsspec.implementations.memory", reason='needs pip install "streamplug[s3]"'
    )
    # What s3fs raises for AccessDenied, InvalidAccessKeyId or SignatureDoesNotMatch (moto
    # accepts any credentials, so the refusal is played by the store here).
    memory = memory_fs.MemoryFileSystem

    def refuse(self: Any, path: str, *args: Any, **kwargs: Any) -> None:
        raise PermissionError("Access Denied")

    monkeypatch.setattr(memory, "pipe_file", refuse)
    storage = open_checkpoint_storage(f"memory://denied-{uuid.uuid4().hex[:8]}/chk", "job")
    with pytest.raises(CheckpointStorageDeniedError, match=r"refused these credentials"):
        storage.write(1, PENDING, {})
    assert isinstance(CheckpointStorageDeniedError("x"), AuthorizationError)
    env = StreamExecutionEnvironment.get_execution_environment(build_plugin_host(autoload=False))
    env.enable_checkpointing(50).set_restart_strategy(RestartStrategies.fixed_delay_restart(5, 10))
    env.get_checkpoint_config().set_checkpoint_storage_dir(storage.location.rsplit("/", 1)[0])
    source = CollectionSource(list(range(2000)), batch_size=50, records_per_second=2000)
    env.from_source(source, None, "n").sink_to(TransactionalFileSink(tmp_path / "out"))
    with pytest.raises(JobFailedError, match="1 attempt") as info:
        env.execute("job")
    assert isinstance(info.value.__cause__, CheckpointStorageDeniedError)
    assert TransactionalFileSink.read_committed(tmp_path / "out") == []


def test_storage_options_are_masked_everywhere_they_could_show(s3_server: S3Server) -> None:
    options = dict(
        s3_server.options,
        client_kwargs={"aws_session_token": "tok-123456", "region_name": "us-east-1"},
    )
    env = StreamExecutionEnvironment.get_execution_environment(build_plugin_host(autoload=False))
    config = env.get_checkpoint_config().set_checkpoint_storage_dir("s3://b/chk", options)
    storage = open_checkpoint_storage("s3://b/chk", "job", options)
    for shown in (repr(config), repr(storage)):
        assert s3_server.endpoint_url in shown and "us-east-1" in shown
        for secret in (s3_server.key, s3_server.secret, "tok-123456"):
            assert secret not in shown
    assert config.storage_options == options, "the code that opens the store gets them whole"


def test_an_unsupported_scheme_and_a_missing_extra_say_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigError, match=r"ftp://.*use s3://"):
        parse_storage_location("ftp://host/chk")
    with pytest.raises(ConfigError, match="names no bucket"):
        parse_storage_location("s3://")
    import importlib.util

    real = importlib.util.find_spec

    def without_s3fs(name: str, *args: Any) -> Any:
        return None if name == "s3fs" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_s3fs)
    with pytest.raises(
        ImportError, match=r'needs the Python package s3fs.*pip install "streamplug\[s3\]"'
    ):
        parse_storage_location("s3://bucket/chk")
    env = StreamExecutionEnvironment.get_execution_environment(build_plugin_host(autoload=False))
    with pytest.raises(ImportError, match=r'pip install "streamplug\[s3\]"'):
        env.get_checkpoint_config().set_checkpoint_storage_dir("s3://bucket/chk")


@pytest.mark.parametrize("runtime", ["threads", "processes"])
def test_a_job_checkpoints_to_s3_and_a_new_run_resumes_there(
    s3_server: S3Server, tmp_path: Path, runtime: str
) -> None:
    url = f"s3://{s3_server.new_bucket()}/checkpoints"

    def build() -> StreamExecutionEnvironment:
        env = StreamExecutionEnvironment.get_execution_environment(
            build_plugin_host(autoload=False)
        )
        # Under "processes" the workers are other processes; the driver alone writes S3.
        env.set_parallelism(2).enable_checkpointing(50).set_runtime(runtime)
        env.get_checkpoint_config().set_checkpoint_storage_dir(url, s3_server.options)
        # 3000 records per subtask at 2000/s: the stop below lands mid-run.
        source = CollectionSource(list(range(6000)), batch_size=50, records_per_second=2000)
        env.from_source(source, None, "n").sink_to(TransactionalFileSink(tmp_path / "out"))
        return env

    client = build().execute_async("to-s3")
    # Stop once records flow, not after a fixed time: "processes" spends ~0.5 s starting its
    # workers (more on a busy machine), and a stop before the first record commits nothing.
    deadline = time.monotonic() + 30
    while client.metrics().records_in < 500 and time.monotonic() < deadline:
        time.sleep(0.02)
    final = client.stop(timeout=60)
    assert final is not None and final.startswith(f"{url}/to-s3/chk-")
    first = TransactionalFileSink.read_committed(tmp_path / "out")
    assert 0 < len(first) < 6000
    second = build().execute_async("to-s3")
    second.wait(60)
    assert second.metrics().restored_checkpoint_id is not None
    assert sorted(TransactionalFileSink.read_committed(tmp_path / "out")) == list(range(6000))
    storage = open_checkpoint_storage(url, "to-s3", s3_server.options)
    assert storage.list()[0].status == COMPLETE and storage.list()[0].is_final
    for checkpoint in storage.list():
        assert s3_server.secret not in json.dumps(checkpoint.document)


# -- streamplug checkpoints list|show on s3:// --------------------------------------------


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[..., tuple[int, str, str]]]:
    def run(*argv: str) -> tuple[int, str, str]:
        code = streamplug_main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    yield run


def test_checkpoints_command_lists_and_shows_an_s3_storage(
    s3_server: S3Server,
    monkeypatch: pytest.MonkeyPatch,
    cli: Callable[..., tuple[int, str, str]],
) -> None:
    bucket = s3_server.new_bucket()
    url = f"s3://{bucket}/chk"
    storage = open_checkpoint_storage(url, "orders", s3_server.options)
    storage.write(1, COMPLETE, {"pipelines": {}, "parallelism": 2, "job": "orders"})
    storage.write(2, PENDING, {"pipelines": {}, "parallelism": 2, "job": "orders"})
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret)
    endpoint = f"--storage-option=endpoint_url={s3_server.endpoint_url}"
    code, out, err = cli("checkpoints", "list", url, endpoint)
    assert code == 0, err
    assert "job orders:" in out and "chk-00000002.json" in out and "PENDING" in out
    code, out, err = cli("checkpoints", "show", f"{url}/orders", endpoint)
    assert code == 0, err
    assert "checkpoint 2 of job 'orders': PENDING" in out
    code, out, err = cli("checkpoints", "show", f"{url}/orders/chk-00000001.json", endpoint)
    assert code == 0, err
    assert "checkpoint 1 of job 'orders': COMPLETE" in out
    code, out, err = cli("checkpoints", "show", f"{url}/orders/chk-00000009.json", endpoint)
    assert code == 2 and "chk-00000009.json" in err
    code, out, err = cli("checkpoints", "list", f"s3://{bucket}/nothing", endpoint)
    assert (code, out.strip()) == (0, f"no checkpoints under s3://{bucket}/nothing")
    # As a user runs it, with -vv: debug logs of streamplug, none of the S3 wire.
    run = subprocess.run(
        [sys.executable, "-m", "streamplug.cli", "-vv", "checkpoints", "list", url, endpoint],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, **s3_server.env),
    )
    assert run.returncode == 0 and "job orders:" in run.stdout, run.stderr
    assert "DEBUG" in run.stderr, "-vv shows streamplug's debug log"
    assert s3_server.key not in run.stdout + run.stderr
    assert s3_server.secret not in run.stdout + run.stderr
    code, out, err = cli("checkpoints", "list", url, "--storage-option", "endpoint_url")
    assert code == 2 and "KEY=VALUE" in err


def test_streamplug_run_checkpoints_to_s3_from_the_pipeline_file(
    s3_server: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli: Callable[..., tuple[int, str, str]],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STREAMPLUG_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("S3_SECRET", s3_server.secret)
    bucket = s3_server.new_bucket()
    job = tmp_path / "job.toml"
    job.write_text(
        '[job]\nname = "squares"\n'
        '[checkpointing]\ninterval = "100 ms"\n'
        f'storage = "s3://{bucket}/chk"\n'
        "[checkpointing.storage_options]\n"
        f'endpoint_url = "{s3_server.endpoint_url}"\n'
        f'key = "{s3_server.key}"\n'
        'secret = "${S3_SECRET}"\n'
        '[source]\nconnector = "collection"\nelements = [1, 2, 3]\n'
        '[sink]\nconnector = "print"\nprefix = "sq"\n'
    )
    code, out, err = cli("run", str(job), "--dry-run")
    assert code == 0, err
    plan = json.loads(out)["checkpointing"]
    assert plan["storage"] == f"s3://{bucket}/chk"
    assert plan["storage_options"] == {
        "endpoint_url": s3_server.endpoint_url,
        "key": "***",
        "secret": "***",
    }
    assert s3_server.secret not in out + err
    code, out, err = cli("run", str(job), "--no-progress")
    assert code == 0, err
    assert sorted(line for line in out.splitlines() if line.startswith("sq:")) == [
        "sq:1",
        "sq:2",
        "sq:3",
    ]
    storage = open_checkpoint_storage(f"s3://{bucket}/chk", "squares", s3_server.options)
    final = storage.list()[0]
    assert final.status == COMPLETE and final.is_final
    assert f"last checkpoint {final.path}" in out
    # A new run resumes from it, through the same storage options.
    code, out, err = cli("run", str(job), "--no-progress")
    assert code == 0, err
    assert f"resumed from checkpoint {final.checkpoint_id}" in err and "sq:" not in out
    # An explicit checkpoint object to restore, and another prefix given on the command line.
    code, out, err = cli(
        "run",
        str(job),
        "--no-progress",
        "--restore",
        str(final.path),
        "--checkpoint-dir",
        f"s3://{bucket}/other",
    )
    assert code == 0, err
    assert f"resumed from checkpoint {final.checkpoint_id}" in err
    moved = open_checkpoint_storage(f"s3://{bucket}/other", "squares", s3_server.options)
    assert moved.ids(), "the run checkpointed under the prefix of --checkpoint-dir"
    assert not (tmp_path / "s3:").exists()
    assert s3_server.secret not in out + err


def test_streamplug_run_without_the_s3_extra_names_the_line_and_the_install(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli: Callable[..., tuple[int, str, str]],
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "s3fs" else real(name, *args),
    )
    monkeypatch.setenv("STREAMPLUG_DISABLE_PLUGIN_AUTOLOAD", "1")
    job = tmp_path / "job.toml"
    job.write_text(
        '[checkpointing]\ninterval = "1 s"\nstorage = "s3://bucket/chk"\n'
        '[source]\nconnector = "collection"\nelements = [1]\n[sink]\nconnector = "discard"\n'
    )
    code, _, err = cli("run", str(job), "--dry-run")
    assert code == 2
    assert "job.toml:3: checkpointing.storage" in err
    assert 'pip install "streamplug[s3]"' in err and "Traceback" not in err
    job.write_text(
        '[source]\nconnector = "collection"\nelements = [1]\n[sink]\nconnector = "discard"\n'
    )
    code, _, err = cli("run", str(job), "--dry-run", "--checkpoint-dir", "s3://bucket/chk")
    assert code == 2
    assert "--checkpoint-dir" in err and 'pip install "streamplug[s3]"' in err


def test_a_memory_storage_warns_that_it_dies_with_the_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pytest.importorskip("fsspec", reason='needs pip install "streamplug[s3]"')
    storage = open_checkpoint_storage("memory://warned/chk", "job")
    with caplog.at_level(logging.WARNING, logger="streamplug.runtime.storage"):
        storage.ids()
    assert "memory://warned/chk/job lives in this process only" in caplog.text


def test_the_checkpoint_dir_variable_takes_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("s3fs", reason='needs pip install "streamplug[s3]"')
    monkeypatch.setenv("STREAMPLUG_CHECKPOINT_DIR", "s3://bucket/chk/")
    env = StreamExecutionEnvironment.get_execution_environment(build_plugin_host(autoload=False))
    assert env.get_checkpoint_config().storage_dir == "s3://bucket/chk"


def test_an_s3_storage_survives_pickling(s3_server: S3Server) -> None:
    import pickle

    storage = open_checkpoint_storage(
        f"s3://{s3_server.new_bucket()}/chk", "job", s3_server.options
    )
    storage.write(1, COMPLETE, {})
    copy = pickle.loads(pickle.dumps(storage))
    assert copy.ids() == [1] and copy.location == storage.location


def test_a_failed_complete_write_does_not_hold_the_subtasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A store that refuses one write (S3 answering 503, say) after the commits took effect.
    real = FileCheckpointStorage.write
    refused: list[int] = []

    def refuse_first_complete(
        self: FileCheckpointStorage, cid: int, status: str, doc: dict[str, Any]
    ) -> Path:
        if status == COMPLETE and not refused:
            refused.append(cid)
            raise CheckpointError(f"injected: cannot write COMPLETE {cid}")
        return real(self, cid, status, doc)

    monkeypatch.setattr(FileCheckpointStorage, "write", refuse_first_complete)
    env = StreamExecutionEnvironment.get_execution_environment(build_plugin_host(autoload=False))
    env.set_parallelism(2).enable_checkpointing(100)
    cp = env.get_checkpoint_config().set_checkpoint_storage_dir(tmp_path / "chk")
    cp.set_tolerable_checkpoint_failure_number(1).set_checkpoint_timeout(60_000)
    source = CollectionSource(list(range(4000)), batch_size=50, records_per_second=2000)
    env.from_source(source, None, "n").sink_to(TransactionalFileSink(tmp_path / "out"))
    started = time.monotonic()
    result = env.execute("refused-once")
    # Before: the subtasks waited at the barrier until the next checkpoint timed out (60 s)
    # and the attempt restarted.
    assert result.attempts == 1 and time.monotonic() - started < 30
    assert refused and result.checkpoints_completed >= 2
    assert sorted(TransactionalFileSink.read_committed(tmp_path / "out")) == list(range(4000))


def test_storage_credentials_stay_in_the_driver(s3_server: S3Server) -> None:
    import pickle

    cloudpickle = pytest.importorskip("cloudpickle")
    from streamplug.runtime.worker import JobGraph

    env = StreamExecutionEnvironment.get_execution_environment(build_plugin_host(autoload=False))
    config = env.get_checkpoint_config().set_checkpoint_storage_dir("s3://b/chk", s3_server.options)
    env.from_collection([1, 2]).map(str).print()
    # What the processes runtime ships to every worker (and Ray to every actor).
    graph = JobGraph("job", "id", 2, list(env.pipelines), config, 200)
    for payload in (cloudpickle.dumps(graph), pickle.dumps(config)):
        assert s3_server.secret.encode() not in payload
        assert s3_server.key.encode() not in payload
    shipped = pickle.loads(pickle.dumps(config))
    assert (shipped.storage_dir, shipped.storage_options) == ("s3://b/chk", {})
    assert config.storage_options == s3_server.options, "the driver keeps them"
    import copy

    assert copy.deepcopy(config).storage_options == s3_server.options, "a copy in the driver too"
    assert copy.copy(config).storage_options == s3_server.options
