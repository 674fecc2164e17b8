"""Secrets never reach logs, reprs or error messages."""

from __future__ import annotations

import pytest

from streamplug.secrets import MASK, is_secret_key, redact, redact_text


@pytest.mark.parametrize(
    "key",
    [
        "sasl.password",
        "sasl.jaas.config",
        "ssl.key.password",
        "ssl.keystore.password",
        "ssl.truststore.password",
        "basic.auth.user.info",
        "sasl.oauthbearer.config",
        "SASL.PASSWORD",
    ],
)
def test_secret_keys_are_recognised(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key", ["bootstrap.servers", "group.id", "sasl.mechanism", "security.protocol"]
)
def test_ordinary_keys_are_left_alone(key: str) -> None:
    assert not is_secret_key(key)


def test_redact_masks_values_and_keeps_the_rest() -> None:
    props = {"bootstrap.servers": "b:9092", "sasl.password": "hunter2"}
    assert redact(props) == {"bootstrap.servers": "b:9092", "sasl.password": MASK}
    assert props["sasl.password"] == "hunter2", "redact must not modify its input"


def test_redact_text_removes_echoed_secret_values() -> None:
    props = {"sasl.password": "s3cr3t-value", "group.id": "g"}
    text = "authentication failed for password s3cr3t-value in group g"
    assert redact_text(text, props) == f"authentication failed for password {MASK} in group g"
