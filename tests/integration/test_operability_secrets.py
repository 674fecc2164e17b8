"""Secrets from a pipeline file and from environment variables never show: not in the
repr of the loaded pipeline or the built job, not in log lines, not in error texts, not in
checkpoint files. A real job runs on the suite's broker with the secrets in client
settings that librdkafka accepts and a PLAINTEXT listener leaves unused."""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Producer

from streamplug.errors import JobFailedError
from streamplug.pipeline.build import build_pipeline
from streamplug.pipeline.config import load_pipeline
from streamplug.plugins import build_plugin_host

pytestmark = pytest.mark.integration

FILE_SECRET = "file-secret-4f1e9a"
ENV_SECRET = "env-secret-b7c2d0"
JAAS_SECRET = "jaas-secret-0a9d3e"
SECRETS = (FILE_SECRET, ENV_SECRET, JAAS_SECRET)


def _pipeline(tmp_path: Path, bootstrap: str, topic: str, out_topic: str) -> Path:
    path = tmp_path / "secret.toml"
    path.write_text(
        textwrap.dedent(
            f"""\
            [job]
            name = "secrets"

            [checkpointing]
            interval = "200 ms"
            storage = "{tmp_path / "chk"}"

            [source]
            connector = "kafka"
            bootstrap_servers = "{bootstrap}"
            topics = ["{topic}"]
            starting_offsets = "earliest"
            stopping_offsets = "latest"
            format = "string"

            [source.properties]
            "ssl.key.password" = "{FILE_SECRET}"
            "sasl.jaas.config" = "org.apache.kafka.common.security.plain.PlainLoginModule required username='u' password='${{JAAS_PASSWORD}}';"

            [sink]
            connector = "kafka"
            bootstrap_servers = "{bootstrap}"
            topic = "{out_topic}"
            format = "string"
            delivery_guarantee = "at-least-once"

            [sink.properties]
            "sasl.password" = "${{KAFKA_PASSWORD}}"
            "ssl.key.password" = "{FILE_SECRET}"
            """
        )
    )
    return path


def _assert_clean(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} in {where}: {text[:2000]}"


def test_secrets_never_show_in_reprs_logs_errors_or_checkpoints(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("KAFKA_PASSWORD", ENV_SECRET)
    monkeypatch.setenv("JAAS_PASSWORD", JAAS_SECRET)
    topic, out_topic = topic_factory(), topic_factory()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(5):
        producer.produce(topic, str(i).encode())
    assert producer.flush(10) == 0
    path = _pipeline(tmp_path, kafka_bootstrap, topic, out_topic)
    config = load_pipeline(path)
    # The secrets did reach the configuration (else this test proves nothing).
    assert config.sinks[0].options["properties"]["sasl.password"] == ENV_SECRET
    assert JAAS_SECRET in config.source.options["properties"]["sasl.jaas.config"]
    _assert_clean(repr(config), "repr(load_pipeline(...))")
    _assert_clean(str(config), "str(load_pipeline(...))")
    _assert_clean(repr(config.source), "repr(config.source)")
    _assert_clean(repr(config.sinks), "repr(config.sinks)")

    with caplog.at_level(logging.DEBUG):
        built = build_pipeline(config, build_plugin_host(autoload=True))
        _assert_clean(repr(built), "repr(BuiltPipeline)")
        _assert_clean(repr(built.source), "repr(source)")
        _assert_clean(repr(built.sinks), "repr(sinks)")
        result = built.env.execute(built.job_name)
    assert result.records_in == 5
    _assert_clean("\n".join(r.getMessage() for r in caplog.records), "log lines")
    for file in (tmp_path / "chk").rglob("*"):
        if file.is_file():
            _assert_clean(file.read_text(errors="replace"), f"checkpoint file {file}")

    # An error that quotes the client's settings: a typo beside the secrets.
    bad = path.read_text().replace('"ssl.key.password"', '"ssl.key.pasword"', 1)
    path.write_text(bad)
    with caplog.at_level(logging.DEBUG):
        broken = build_pipeline(load_pipeline(path), build_plugin_host(autoload=True))
        with pytest.raises(JobFailedError) as info:
            broken.env.execute(broken.job_name)
    error = info.value
    texts = []
    while error is not None:
        texts.append(f"{type(error).__name__}: {error} {error!r}")
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    _assert_clean("\n".join(texts), "error texts")
    _assert_clean("\n".join(r.getMessage() for r in caplog.records), "log lines of the failure")
