"""The sasl.jaas.config parser: grammar, quoting, errors that never quote the text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamplug.errors import ConfigError
from streamplug_kafka_security import parse_jaas_config
from streamplug_kafka_security.jaas import LoginModuleKind

PLAIN = "org.apache.kafka.common.security.plain.PlainLoginModule"
SECRET = "s3cr3t-Value-42"


def test_plain_entry_with_quoted_values() -> None:
    module = parse_jaas_config(f'{PLAIN} required username="alice" password="{SECRET}";')
    assert module.class_name == PLAIN
    assert module.control_flag == "required"
    assert dict(module.options) == {"username": "alice", "password": SECRET}
    assert module.kind == LoginModuleKind.PLAIN


def test_escapes_single_quotes_bare_values_and_comments() -> None:
    text = (
        "/* leading comment */ com.sun.security.auth.module.Krb5LoginModule REQUIRED\n"
        "  useKeyTab=true // a line comment\n"
        "  keyTab='/etc/security/keytabs/kafka client.keytab'\n"
        '  principal="kafka/host@EXAMPLE.COM" note="say \\"hi\\"\\n\\\\done" retries=3 ;  '
    )
    module = parse_jaas_config(text)
    assert module.control_flag == "required"
    assert module.options["useKeyTab"] == "true"
    assert module.options["keyTab"] == "/etc/security/keytabs/kafka client.keytab"
    assert module.options["principal"] == "kafka/host@EXAMPLE.COM"
    assert module.options["note"] == 'say "hi"\n\\done'
    assert module.options["retries"] == "3"
    assert module.kind == LoginModuleKind.KERBEROS
    assert module.flag("useKeyTab") is True
    assert module.flag("storeKey") is False


def test_flink_shaded_class_names_are_recognised() -> None:
    shaded = "org.apache.flink.kafka.shaded.org.apache.kafka.common.security.scram.ScramLoginModule"
    assert parse_jaas_config(f'{shaded} required username="u" password="p";').kind == (
        LoginModuleKind.SCRAM
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f'{PLAIN} required username="alice" password="{SECRET}"', "must end with ';'"),
        (f'{PLAIN} required username="alice" password="{SECRET};', "unterminated quoted value"),
        (f'{PLAIN} mandatory username="alice" password="{SECRET}";', "control flag"),
        (f'{PLAIN} required username="a" username="{SECRET}";', "given twice"),
        (f"{PLAIN} required password {SECRET};", "expected '='"),
        (f"{PLAIN} required password=;", "has no value"),
        ("", "exactly one login module entry, found 0"),
        (f'{PLAIN} required password="{SECRET}"; {PLAIN} required password="x";', "found 2"),
        (f'/* {SECRET} {PLAIN} required password="x";', "unterminated /* comment"),
    ],
)
def test_malformed_text_errors_name_the_problem_but_never_the_secret(
    text: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_jaas_config(text)
    message = str(info.value)
    assert expected in message
    assert "sasl.jaas.config" in message
    assert info.value.option == "sasl.jaas.config"
    assert SECRET not in message and SECRET not in repr(info.value)


def test_unknown_login_module_names_the_module_and_the_alternatives() -> None:
    module = parse_jaas_config(f'com.example.LdapLoginModule required password="{SECRET}";')
    with pytest.raises(ConfigError) as info:
        _ = module.kind
    assert "com.example.LdapLoginModule" in str(info.value)
    assert "PlainLoginModule" in str(info.value)
    assert SECRET not in str(info.value)


def test_repr_masks_option_values() -> None:
    module = parse_jaas_config(f'{PLAIN} required username="alice" password="{SECRET}";')
    assert SECRET not in repr(module)
    assert "'password': '***'" in repr(module)


_values = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=40
)


def _java_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@given(
    st.dictionaries(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,12}", fullmatch=True), _values, max_size=6
    )
)
def test_any_quoted_value_round_trips(options: dict[str, str]) -> None:
    text = (
        f"{PLAIN} required " + " ".join(f"{k}={_java_quote(v)}" for k, v in options.items()) + ";"
    )
    assert dict(parse_jaas_config(text).options) == options
