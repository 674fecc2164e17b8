"""JKS / PKCS12 / PEM key and trust stores turned into files librdkafka loads."""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest
from confluent_kafka import Producer
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from streamplug.errors import ConfigError
from streamplug_kafka_security import translate_security_properties
from streamplug_kafka_security.testing import KEY_PASSWORD, STORE_PASSWORD, PkiFiles, make_pki

pytestmark = pytest.mark.skipif(shutil.which("keytool") is None, reason="needs keytool (a JDK)")
needs_pyjks = pytest.mark.skipif(
    importlib.util.find_spec("jks") is None,
    reason="pyjks is not installed: pip install 'streamplug-kafka-security[jks]'",
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiFiles:
    return make_pki(tmp_path_factory.mktemp("pki"))


def translated(props: dict[str, str]) -> dict[str, str]:
    out = dict(props)
    translate_security_properties(out)
    return out


def _ca_subjects(path: str) -> list[str]:
    return [
        c.subject.rfc4514_string() for c in x509.load_pem_x509_certificates(Path(path).read_bytes())
    ]


def _assert_private(path: str) -> None:
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700


def _librdkafka_accepts(props: dict[str, str]) -> None:
    # Creating a client makes librdkafka load every certificate and decrypt the key now.
    Producer({**props, "bootstrap.servers": "127.0.0.1:1", "log_level": 0}).flush(0)


@pytest.mark.parametrize(
    ("attr", "store_type"),
    [pytest.param("truststore_jks", "JKS", marks=needs_pyjks), ("truststore_p12", "PKCS12")],
)
def test_java_truststores_become_a_private_ca_bundle(
    pki: PkiFiles, attr: str, store_type: str
) -> None:
    out = translated(
        {
            "security.protocol": "SSL",
            "ssl.truststore.location": str(getattr(pki, attr)),
            "ssl.truststore.type": store_type,
            "ssl.truststore.password": STORE_PASSWORD,
        }
    )
    assert set(out) == {"security.protocol", "ssl.ca.location"}
    assert _ca_subjects(out["ssl.ca.location"]) == ["CN=streamplug test CA"]
    _assert_private(out["ssl.ca.location"])
    _librdkafka_accepts(out)


@needs_pyjks
def test_truststore_type_is_sniffed_when_missing_and_a_stale_type_is_named(pki: PkiFiles) -> None:
    out = translated(
        {
            "ssl.truststore.location": str(pki.truststore_jks),
            "ssl.truststore.password": STORE_PASSWORD,
        }
    )
    assert _ca_subjects(out["ssl.ca.location"]) == ["CN=streamplug test CA"]
    with pytest.raises(ConfigError) as info:
        translated(
            {"ssl.truststore.location": str(pki.truststore_jks), "ssl.truststore.type": "PKCS12"}
        )
    assert info.value.option == "ssl.truststore.type" and "JKS" in str(info.value)


def test_pkcs12_truststore_opens_without_a_password_like_java(pki: PkiFiles) -> None:
    # keytool protects the MAC with the password; Java skips the check without one.
    with pytest.raises(ConfigError) as info:
        translated(
            {"ssl.truststore.location": str(pki.truststore_p12), "ssl.truststore.type": "PKCS12"}
        )
    assert info.value.option == "ssl.truststore.location"


def test_pem_truststore_is_used_in_place(pki: PkiFiles) -> None:
    out = translated({"ssl.truststore.location": str(pki.ca_pem), "ssl.truststore.type": "PEM"})
    assert out == {"ssl.ca.location": str(pki.ca_pem)}


def test_inline_pem_truststore(pki: PkiFiles) -> None:
    out = translated(
        {"ssl.truststore.type": "PEM", "ssl.truststore.certificates": pki.ca_pem.read_text()}
    )
    assert _ca_subjects(out["ssl.ca.location"]) == ["CN=streamplug test CA"]


@needs_pyjks
def test_wrong_jks_password_names_the_option_not_the_password(pki: PkiFiles) -> None:
    with pytest.raises(ConfigError) as info:
        translated(
            {
                "ssl.truststore.location": str(pki.truststore_jks),
                "ssl.truststore.password": "wrong-pw-77",
            }
        )
    assert "ssl.truststore.password" in str(info.value)
    assert "wrong-pw-77" not in str(info.value)


@needs_pyjks
def test_jks_keystore_with_its_own_key_password(pki: PkiFiles) -> None:
    out = translated(
        {
            "security.protocol": "SSL",
            "ssl.keystore.location": str(pki.client_keystore_jks),
            "ssl.keystore.type": "JKS",
            "ssl.keystore.password": STORE_PASSWORD,
            "ssl.key.password": KEY_PASSWORD,
        }
    )
    assert set(out) == {
        "security.protocol",
        "ssl.certificate.location",
        "ssl.key.location",
        "ssl.key.password",
    }
    for key in ("ssl.certificate.location", "ssl.key.location"):
        _assert_private(out[key])
    key_pem = Path(out["ssl.key.location"]).read_bytes()
    # Never in clear on disk: the key is re-encrypted with a fresh password.
    assert b"ENCRYPTED PRIVATE KEY" in key_pem
    assert out["ssl.key.password"] not in (STORE_PASSWORD, KEY_PASSWORD)
    serialization.load_pem_private_key(key_pem, out["ssl.key.password"].encode())
    chain = x509.load_pem_x509_certificates(Path(out["ssl.certificate.location"]).read_bytes())
    assert chain[0].subject.rfc4514_string() == "CN=client"
    _librdkafka_accepts(out)


@needs_pyjks
def test_jks_key_password_defaults_to_the_store_password_like_java(pki: PkiFiles) -> None:
    with pytest.raises(ConfigError) as info:
        translated(
            {
                "ssl.keystore.location": str(pki.client_keystore_jks),
                "ssl.keystore.password": STORE_PASSWORD,
            }
        )
    assert info.value.option == "ssl.key.password"


@needs_pyjks
def test_conversions_are_cached_per_source(pki: PkiFiles) -> None:
    props = {
        "ssl.keystore.location": str(pki.client_keystore_jks),
        "ssl.keystore.password": STORE_PASSWORD,
        "ssl.key.password": KEY_PASSWORD,
    }
    assert translated(props) == translated(props)


def test_pkcs12_keystore_is_left_to_librdkafka_after_a_password_check(pki: PkiFiles) -> None:
    props = {
        "security.protocol": "SSL",
        "ssl.keystore.location": str(pki.client_keystore_p12),
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.password": STORE_PASSWORD,
    }
    out = translated(props)
    assert out == {k: v for k, v in props.items() if k != "ssl.keystore.type"}
    _librdkafka_accepts(out)
    with pytest.raises(ConfigError) as info:
        translated({**props, "ssl.keystore.password": "not-it-99"})
    assert info.value.option == "ssl.keystore.password" and "not-it-99" not in str(info.value)


def test_pem_keystore_file(pki: PkiFiles) -> None:
    out = translated(
        {
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(pki.client_keystore_pem),
            "ssl.key.password": KEY_PASSWORD,
        }
    )
    assert {"ssl.certificate.location", "ssl.key.location", "ssl.key.password"} == set(out)
    _librdkafka_accepts(out)


def test_inline_pem_keystore(pki: PkiFiles) -> None:
    out = translated(
        {
            "ssl.keystore.type": "PEM",
            "ssl.keystore.key": pki.client_key_pem.read_text(),
            "ssl.keystore.certificate.chain": pki.client_chain_pem.read_text(),
            "ssl.key.password": KEY_PASSWORD,
        }
    )
    assert {"ssl.certificate.location", "ssl.key.location", "ssl.key.password"} == set(out)
    _librdkafka_accepts(out)


def test_unreadable_store_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        translated({"ssl.truststore.location": str(tmp_path / "missing.jks")})
    assert "missing.jks" in str(info.value) and info.value.option == "ssl.truststore.location"


def test_without_pyjks_the_error_says_how_to_install_it(
    pki: PkiFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "jks", None)
    with pytest.raises(ImportError) as info:
        translated(
            {
                "ssl.truststore.location": str(pki.truststore_jks),
                "ssl.truststore.password": STORE_PASSWORD + "!",
            }
        )
    assert "pip install 'streamplug-kafka-security[jks]'" in str(info.value)
