"""A parser for the ``sasl.jaas.config`` client property.

The property holds one JAAS login-module entry, written the way Kafka's Java client
reads it::

    <LoginModuleClass> <ControlFlag> [<option>=<value> ...];

Values are bare words or quoted strings (``"..."`` or ``'...'`` with backslash
escapes); ``//`` and ``/* */`` comments are allowed; the entry ends with ``;``.

The text is full of secrets, so no error raised here ever quotes it: errors give the
character position and the name of the option involved, never a value.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import attrs

from streamplug.errors import ConfigError
from streamplug.secrets import MASK

__all__ = ["CONTROL_FLAGS", "JaasLoginModule", "LoginModuleKind", "parse_jaas_config"]

OPTION = "sasl.jaas.config"
CONTROL_FLAGS = ("required", "requisite", "sufficient", "optional")

# Characters that may appear in a login-module class name or an option name.
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.$-{}")
# Bare (unquoted) values: anything up to whitespace, ';', '=' or a quote. Looser than
# java.io.StreamTokenizer (which would split paths and numbers), so every value Java
# accepts unquoted is accepted here too.
_BARE_STOP = frozenset(" \t\r\n\f;=\"'")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "\\": "\\", '"': '"', "'": "'"}


class LoginModuleKind:
    """The login modules this plugin can translate, and the SASL mechanism each implies."""

    PLAIN = "plain"
    SCRAM = "scram"
    OAUTHBEARER = "oauthbearer"
    KERBEROS = "kerberos"


# Suffix match, so Flink's shaded class names
# (org.apache.flink.kafka.shaded.org.apache.kafka...) are recognised as well.
_KNOWN_MODULES: dict[str, str] = {
    "org.apache.kafka.common.security.plain.PlainLoginModule": LoginModuleKind.PLAIN,
    "org.apache.kafka.common.security.scram.ScramLoginModule": LoginModuleKind.SCRAM,
    "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule": LoginModuleKind.OAUTHBEARER,
    "com.sun.security.auth.module.Krb5LoginModule": LoginModuleKind.KERBEROS,
    "com.ibm.security.auth.module.Krb5LoginModule": LoginModuleKind.KERBEROS,
}


def _masked_options(options: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{k!r}: {MASK!r}" for k in options) + "}"


@attrs.frozen
class JaasLoginModule:
    """One parsed login-module entry. ``options`` keep their order; their values never
    appear in ``repr``."""

    class_name: str
    control_flag: str
    options: Mapping[str, str] = attrs.field(factory=dict, repr=_masked_options)

    @property
    def kind(self) -> str:
        """One of ``LoginModuleKind``'s values; ``ConfigError`` for a module librdkafka
        has no equivalent of."""
        for known, kind in _KNOWN_MODULES.items():
            if self.class_name == known or self.class_name.endswith("." + known):
                return kind
        names = ", ".join(sorted(_KNOWN_MODULES))
        raise ConfigError(
            f"{OPTION}: login module {self.class_name!r} has no librdkafka equivalent; "
            f"use one of {names} (librdkafka implements only PLAIN, SCRAM, OAUTHBEARER "
            "and GSSAPI)",
            option=OPTION,
        )

    def flag(self, name: str, default: bool = False) -> bool:
        """A boolean option the way JAAS reads it: only ``true`` (any case) is true."""
        value = self.options.get(name)
        return default if value is None else value.strip().lower() == "true"


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, what: str, at: int | None = None) -> ConfigError:
        where = self.pos if at is None else at
        return ConfigError(f"{OPTION}: {what} (at character {where + 1})", option=OPTION)

    def skip_blank(self) -> None:
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch.isspace():
                self.pos += 1
            elif text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end + 1
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    raise self.error("unterminated /* comment")
                self.pos = end + 2
            else:
                return

    def at_end(self) -> bool:
        self.skip_blank()
        return self.pos >= len(self.text)

    def peek(self) -> str:
        self.skip_blank()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def name(self, what: str) -> str:
        self.skip_blank()
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _NAME_CHARS:
            self.pos += 1
        if self.pos == start:
            found = "end of text" if start >= len(self.text) else "an unexpected character"
            raise self.error(f"expected {what}, found {found}")
        return self.text[start : self.pos]

    def value(self, option: str) -> str:
        self.skip_blank()
        if self.pos >= len(self.text):
            raise self.error(f"option {option!r} has no value")
        quote = self.text[self.pos]
        if quote in "\"'":
            return self._quoted(option, quote)
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _BARE_STOP:
            self.pos += 1
        if self.pos == start:
            raise self.error(f"option {option!r} has no value")
        return self.text[start : self.pos]

    def _quoted(self, option: str, quote: str) -> str:
        start = self.pos
        self.pos += 1
        out: list[str] = []
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch == quote:
                self.pos += 1
                return "".join(out)
            if ch == "\\":
                if self.pos + 1 >= len(text):
                    break
                nxt = text[self.pos + 1]
                # An unknown escape keeps the escaped character, as Java's tokenizer does.
                out.append(_ESCAPES.get(nxt, nxt))
                self.pos += 2
                continue
            out.append(ch)
            self.pos += 1
        raise self.error(f"unterminated quoted value of option {option!r}", at=start)


def _entries(scanner: _Scanner) -> Iterator[JaasLoginModule]:
    while not scanner.at_end():
        class_name = scanner.name("a login module class name")
        flag = scanner.name("a control flag (required, requisite, sufficient or optional)")
        if flag.lower() not in CONTROL_FLAGS:
            raise scanner.error(
                f"the control flag of {class_name} is not one of {', '.join(CONTROL_FLAGS)}"
            )
        options: dict[str, str] = {}
        while True:
            nxt = scanner.peek()
            if nxt == ";":
                scanner.pos += 1
                break
            if nxt == "":
                raise scanner.error(
                    f"the entry for {class_name} must end with ';' (add it after the last option)"
                )
            key = scanner.name("an option name or ';'")
            if scanner.peek() != "=":
                # The name is not quoted: a value missing its "name=" would be a secret.
                raise scanner.error("expected '=' after an option name")
            scanner.pos += 1
            if key in options:
                raise scanner.error(f"option {key!r} is given twice")
            options[key] = scanner.value(key)
        yield JaasLoginModule(class_name, flag.lower(), options)


def parse_jaas_config(text: str) -> JaasLoginModule:
    """Parse a ``sasl.jaas.config`` value into its single login-module entry.

    Raises ``ConfigError`` (naming ``sasl.jaas.config``, a position and an option name,
    never a value) for malformed text, and when the text holds no entry or more than one:
    a Kafka client takes exactly one.
    """
    entries = list(_entries(_Scanner(text)))
    if len(entries) != 1:
        raise ConfigError(
            f"{OPTION} must hold exactly one login module entry, found {len(entries)}",
            option=OPTION,
        )
    return entries[0]
