"""librdkafka's log lines reach Python logging with repeats collapsed."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import Producer

from streamplug_kafka_common.logs import LOGGER_NAME, CollapsingClientLogger, install_client_logger


def test_a_repeated_line_is_written_once_per_window_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = CollapsingClientLogger(window_s=0.2)
    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        for ms in range(500):
            logger.log(40, "%s [%s] %s", "FAIL", "c#1", f"refused (after {ms}ms)")
        logger.log(20, "%s [%s] %s", "INFO", "c#1", "something else")
        import time

        time.sleep(0.25)
        logger.log(40, "%s [%s] %s", "FAIL", "c#1", "refused (after 7ms)")
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert messages == [
        (logging.WARNING, "FAIL [c#1] refused (after 0ms)"),
        (logging.INFO, "INFO [c#1] something else"),
        (logging.WARNING, "FAIL [c#1] refused (after 7ms) (and 499 more like it in the last 0 s)"),
    ]


def test_a_real_client_logs_through_python_logging(caplog: pytest.LogCaptureFixture) -> None:
    config = {"bootstrap.servers": "127.0.0.1:1", "reconnect.backoff.ms": "10"}
    install_client_logger(config)
    producer = Producer(config)
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        for _ in range(20):
            producer.poll(0.05)
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER_NAME]
    assert lines, "no librdkafka line reached Python logging"
    assert any("127.0.0.1:1" in line for line in lines)
    # One second of reconnects every ~10 ms: collapsed to a line or two.
    assert len(lines) <= 3, lines
    producer.flush(0)
