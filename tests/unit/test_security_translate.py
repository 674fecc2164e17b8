"""Flink/Java security properties -> librdkafka settings, without a broker."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from streamplug.errors import ConfigError
from streamplug_kafka_security import LibrdkafkaCapabilities, translate_security_properties
from streamplug_kafka_security.translate import _NO_EQUIVALENT

ALL = frozenset(
    {"ssl", "sasl", "sasl_plain", "sasl_scram", "sasl_oauthbearer", "oidc", "sasl_gssapi"}
)
WITH_GSSAPI = LibrdkafkaCapabilities("2.16.0", ALL)
WHEEL = LibrdkafkaCapabilities("2.16.0", ALL - {"sasl_gssapi"})
SECRET = "pa55-W0rd-xyz"
PLAIN = "org.apache.kafka.common.security.plain.PlainLoginModule"
SCRAM = "org.apache.kafka.common.security.scram.ScramLoginModule"
OAUTH = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule"
KRB5 = "com.sun.security.auth.module.Krb5LoginModule"


def translate(props: dict[str, str], caps: LibrdkafkaCapabilities = WITH_GSSAPI) -> dict[str, str]:
    out = dict(props)
    translate_security_properties(out, capabilities=caps)
    return out


def error_for(props: dict[str, str], caps: LibrdkafkaCapabilities = WITH_GSSAPI) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        translate(props, caps)
    assert SECRET not in str(info.value), "an error message leaked a secret"
    return info.value


# -- SASL ------------------------------------------------------------------------------


def test_plain_jaas_becomes_username_and_password() -> None:
    out = translate(
        {
            "bootstrap.servers": "b:9092",
            "security.protocol": "sasl_plaintext",
            "sasl.mechanism": "PLAIN",
            "sasl.jaas.config": f'{PLAIN} required username="alice" password="{SECRET}";',
        }
    )
    assert out == {
        "bootstrap.servers": "b:9092",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "PLAIN",
        "sasl.username": "alice",
        "sasl.password": SECRET,
    }


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_mechanisms(mechanism: str) -> None:
    out = translate(
        {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": mechanism,
            "sasl.jaas.config": f"{SCRAM} required username=bob password='{SECRET}';",
        }
    )
    assert out["sasl.mechanisms"] == mechanism
    assert (out["sasl.username"], out["sasl.password"]) == ("bob", SECRET)
    assert "sasl.jaas.config" not in out and "sasl.mechanism" not in out


def test_mechanism_is_inferred_from_an_unambiguous_module_only() -> None:
    jaas = f'{PLAIN} required username="a" password="{SECRET}";'
    assert (
        translate({"security.protocol": "SASL_SSL", "sasl.jaas.config": jaas})["sasl.mechanisms"]
        == "PLAIN"
    )
    err = error_for(
        {
            "security.protocol": "SASL_SSL",
            "sasl.jaas.config": f'{SCRAM} required username="a" password="{SECRET}";',
        }
    )
    assert err.option == "sasl.mechanism" and "SCRAM-SHA-256" in str(err)


@pytest.mark.parametrize(
    ("props", "option", "fragment"),
    [
        ({"security.protocol": "SASL_TLS"}, "security.protocol", "SASL_TLS"),
        ({"sasl.mechanism": "DIGEST-MD5"}, "sasl.mechanism", "DIGEST-MD5"),
        ({"sasl.mechanism": "PLAIN", "sasl.mechanisms": "GSSAPI"}, "sasl.mechanism", "conflicts"),
        (
            {
                "sasl.mechanism": "SCRAM-SHA-256",
                "sasl.jaas.config": f'{PLAIN} required username="a" password="{SECRET}";',
            },
            "sasl.mechanism",
            "does not match",
        ),
        (
            {"sasl.mechanism": "PLAIN", "sasl.jaas.config": f'{PLAIN} required username="a";'},
            "sasl.jaas.config",
            "password",
        ),
        (
            {
                "sasl.mechanism": "PLAIN",
                "sasl.username": "other",
                "sasl.jaas.config": f'{PLAIN} required username="a" password="{SECRET}";',
            },
            "sasl.username",
            "differs",
        ),
        (
            {
                "sasl.mechanism": "SCRAM-SHA-256",
                "sasl.jaas.config": f'{SCRAM} required username="a" password="{SECRET}" tokenauth=true;',
            },
            "sasl.jaas.config",
            "delegation tokens",
        ),
        (
            {"sasl.jaas.config": f'org.example.Custom required password="{SECRET}";'},
            "sasl.jaas.config",
            "org.example.Custom",
        ),
    ],
)
def test_sasl_errors_name_the_option(props: dict[str, str], option: str, fragment: str) -> None:
    err = error_for(props)
    assert err.option == option
    assert fragment in str(err)


def test_unsecured_oauthbearer_maps_to_librdkafka_unsecure_jwt() -> None:
    out = translate(
        {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "OAUTHBEARER",
            "sasl.jaas.config": (
                f'{OAUTH} required unsecuredLoginStringClaim_sub="svc-1" '
                'unsecuredLoginListClaim_scope=",read,write" unsecuredLoginLifetimeSeconds=600 '
                'unsecuredLoginExtension_traceId="abc";'
            ),
        }
    )
    assert out["enable.sasl.oauthbearer.unsecure.jwt"] == "true"
    assert out["sasl.oauthbearer.config"] == (
        "principal=svc-1 scope=read,write lifeSeconds=600 extension_traceId=abc"
    )


def test_oauth_client_credentials_map_to_oidc() -> None:
    out = translate(
        {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "OAUTHBEARER",
            "sasl.login.callback.handler.class": (
                "org.apache.kafka.common.security.oauthbearer.secured.OAuthBearerLoginCallbackHandler"
            ),
            "sasl.oauthbearer.token.endpoint.url": "https://idp.example/token",
            "sasl.jaas.config": f'{OAUTH} required clientId="app" clientSecret="{SECRET}" scope="kafka";',
        }
    )
    assert out["sasl.oauthbearer.method"] == "oidc"
    assert out["sasl.oauthbearer.client.id"] == "app"
    assert out["sasl.oauthbearer.client.secret"] == SECRET
    assert out["sasl.oauthbearer.scope"] == "kafka"
    assert "sasl.login.callback.handler.class" not in out


def test_oauth_client_credentials_need_the_token_endpoint() -> None:
    err = error_for(
        {
            "sasl.mechanism": "OAUTHBEARER",
            "sasl.jaas.config": f'{OAUTH} required clientId="a" clientSecret="{SECRET}";',
        }
    )
    assert err.option == "sasl.oauthbearer.token.endpoint.url"


# -- Kerberos ----------------------------------------------------------------------------


@pytest.fixture
def keytab(tmp_path: Path) -> str:
    path = tmp_path / "client.keytab"
    path.write_bytes(b"\x05\x02")
    return str(path)


def test_flink_kerberos_options_with_a_keytab(keytab: str) -> None:
    out = translate(
        {
            "security.protocol": "SASL_PLAINTEXT",
            "security.kerberos.login.use-ticket-cache": "false",
            "security.kerberos.login.keytab": keytab,
            "security.kerberos.login.principal": "client@EXAMPLE.COM",
            "security.kerberos.login.contexts": "Client, KafkaClient",
            "security.kerberos.relogin.period": "2 min",
        }
    )
    assert out == {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "GSSAPI",  # Java's default mechanism
        "sasl.kerberos.service.name": "kafka",
        "sasl.kerberos.keytab": keytab,
        "sasl.kerberos.principal": "client@EXAMPLE.COM",
        "sasl.kerberos.min.time.before.relogin": "120000",
    }


def test_flink_keytab_needs_the_kafka_client_context(keytab: str) -> None:
    err = error_for(
        {
            "security.protocol": "SASL_PLAINTEXT",
            "security.kerberos.login.keytab": keytab,
            "security.kerberos.login.principal": "client@EXAMPLE.COM",
            "security.kerberos.login.contexts": "Client",
        }
    )
    assert err.option == "security.kerberos.login.contexts" and "KafkaClient" in str(err)


def test_flink_kerberos_options_are_dropped_for_non_kerberos_clients(keytab: str) -> None:
    out = translate({"security.protocol": "SSL", "security.kerberos.login.keytab": keytab})
    assert out == {"security.protocol": "SSL"}


def test_ticket_cache_turns_librdkafka_kinit_off() -> None:
    out = translate(
        {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "GSSAPI",
            "sasl.kerberos.service.name": "kfk",
        }
    )
    assert out["sasl.kerberos.min.time.before.relogin"] == "0"
    assert out["sasl.kerberos.service.name"] == "kfk"


def test_no_ticket_cache_and_no_keytab_is_an_error() -> None:
    err = error_for(
        {"security.protocol": "SASL_PLAINTEXT", "security.kerberos.login.use-ticket-cache": "false"}
    )
    assert "keytab" in str(err)


def test_missing_keytab_file_fails_at_build_time(tmp_path: Path) -> None:
    err = error_for(
        {
            "security.protocol": "SASL_PLAINTEXT",
            "security.kerberos.login.keytab": str(tmp_path / "nope.keytab"),
            "security.kerberos.login.principal": "c@R",
            "security.kerberos.login.contexts": "KafkaClient",
        }
    )
    assert "nope.keytab" in str(err)


def test_krb5_login_module_in_jaas(keytab: str) -> None:
    out = translate(
        {
            "security.protocol": "SASL_SSL",
            "sasl.jaas.config": (
                f'{KRB5} required useKeyTab=true storeKey=true keyTab="{keytab}" '
                'principal="svc/host@EXAMPLE.COM" serviceName="kafka-prod";'
            ),
        }
    )
    assert out["sasl.mechanisms"] == "GSSAPI"
    assert out["sasl.kerberos.keytab"] == keytab
    assert out["sasl.kerberos.principal"] == "svc/host@EXAMPLE.COM"
    assert out["sasl.kerberos.service.name"] == "kafka-prod"


def test_krb5_ticket_cache_path_has_no_per_client_equivalent() -> None:
    err = error_for(
        {
            "security.protocol": "SASL_SSL",
            "sasl.jaas.config": f'{KRB5} required useTicketCache=true ticketCache="/tmp/cc";',
        }
    )
    assert "KRB5CCNAME" in str(err)


def test_gssapi_without_a_capable_librdkafka_says_how_to_get_one(keytab: str) -> None:
    err = error_for(
        {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "GSSAPI",
            "sasl.kerberos.keytab": keytab,
            "sasl.kerberos.principal": "c@R",
        },
        caps=WHEEL,
    )
    message = str(err)
    assert err.option == "sasl.mechanism"
    assert "--no-binary confluent-kafka" in message
    assert "librdkafka-dev" in message
    assert "tox -e gssapi" in message


def test_missing_ssl_support_is_named() -> None:
    caps = LibrdkafkaCapabilities("2.16.0", frozenset({"sasl", "sasl_plain"}))
    err = error_for({"security.protocol": "SSL"}, caps=caps)
    assert "'ssl'" in str(err) and err.option == "security.protocol"


def test_old_librdkafka_scram_bug_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    old = LibrdkafkaCapabilities("2.0.2", ALL)
    translate(
        {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.jaas.config": f'{SCRAM} required username="a" password="{SECRET}";',
        },
        caps=old,
    )
    assert "2.6.1" in caplog.text and SECRET not in caplog.text


# -- options without an equivalent, pass-through, idempotence ---------------------------


@pytest.mark.parametrize("option", sorted(_NO_EQUIVALENT))
def test_every_option_without_an_equivalent_is_named_with_a_fix(option: str) -> None:
    err = error_for({option: "com.example.Custom"})
    assert err.option == option
    assert option in str(err) and "no librdkafka equivalent" in str(err)
    assert len(str(err)) > len(option) + 40  # it says what to do instead


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("ssl.protocol", "TLSv1.3"),
        ("ssl.enabled.protocols", "TLSv1.2, TLSv1.3"),
        ("ssl.keymanager.algorithm", "SunX509"),
        ("ssl.trustmanager.algorithm", "PKIX"),
    ],
)
def test_java_defaults_that_change_nothing_are_dropped(option: str, value: str) -> None:
    assert translate({"bootstrap.servers": "b:1", option: value}) == {"bootstrap.servers": "b:1"}


def test_java_cipher_suite_names_are_rejected_with_the_openssl_spelling() -> None:
    err = error_for({"ssl.cipher.suites": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"})
    assert "ECDHE-RSA-AES128-GCM-SHA256" in str(err)
    ok = {"ssl.cipher.suites": "ECDHE-RSA-AES128-GCM-SHA256"}
    assert translate(ok) == ok


def test_librdkafka_native_settings_pass_through_untouched(tmp_path: Path) -> None:
    native = {
        "bootstrap.servers": "b:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "alice",
        "sasl.password": SECRET,
        "ssl.ca.location": "/etc/ssl/certs/ca.pem",
        "ssl.certificate.location": "/etc/kafka/client.pem",
        "ssl.key.location": "/etc/kafka/client.key",
        "ssl.key.password": SECRET,
        "ssl.endpoint.identification.algorithm": "https",
        "enable.ssl.certificate.verification": "true",
        "ssl.cipher.suites": "ECDHE-ECDSA-AES256-GCM-SHA384",
        "sasl.kerberos.kinit.cmd": "kinit -k",
        "client.id": "x",
        "linger.ms": "5",
    }
    assert translate(copy.deepcopy(native)) == native


@pytest.mark.parametrize(
    ("value", "expected"), [("", "none"), ("HTTPS", "https"), ("none", "none")]
)
def test_endpoint_identification(value: str, expected: str) -> None:
    out = translate({"ssl.endpoint.identification.algorithm": value})
    assert out == {"ssl.endpoint.identification.algorithm": expected}


def test_unknown_endpoint_identification_is_an_error() -> None:
    assert error_for({"ssl.endpoint.identification.algorithm": "ldaps"}).option == (
        "ssl.endpoint.identification.algorithm"
    )


def test_translation_is_idempotent(keytab: str) -> None:
    once = translate(
        {
            "security.protocol": "SASL_PLAINTEXT",
            "security.kerberos.login.keytab": keytab,
            "security.kerberos.login.principal": "c@R",
            "security.kerberos.login.contexts": "KafkaClient",
        }
    )
    assert translate(once) == once
    plain = translate(
        {
            "security.protocol": "SASL_SSL",
            "sasl.jaas.config": f'{PLAIN} required username="a" password="{SECRET}";',
        }
    )
    assert translate(plain) == plain
