"""Keeping secrets out of logs, reprs, metrics and error messages."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "***"

_SECRET_KEY = re.compile(
    r"(password|passwd|secret|jaas|credential|token|private|\.key$|key\.pem|keystore\.key"
    r"|ssl\.key|sasl\.oauthbearer\.config|api\.key|basic\.auth\.user\.info|user\.info)",
    re.IGNORECASE,
)


def is_secret_key(key: str) -> bool:
    """Whether a property of this name may hold a secret (passwords, JAAS configs, key material)."""
    return bool(_SECRET_KEY.search(key))


def redact(properties: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``properties`` with every secret value replaced by ``***``."""
    return {k: (MASK if is_secret_key(str(k)) else v) for k, v in properties.items()}


def redact_nested(value: Any) -> Any:
    """``value`` with every secret masked at any depth: mappings (a secret key's value
    becomes ``***``), lists and tuples. For reprs of configuration read from files, whose
    secrets sit in nested tables (``[source.properties]``)."""
    if isinstance(value, Mapping):
        return {
            k: (MASK if is_secret_key(str(k)) and v is not None else redact_nested(v))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(redact_nested(v) for v in value)
    return value


def redacted_repr(value: Any) -> str:
    """``repr`` of ``value`` with its secrets masked (``redact_nested``): an attrs field's
    ``repr=``."""
    return repr(redact_nested(value))


def redact_text(text: str, properties: Mapping[str, Any]) -> str:
    """``text`` with every secret value of ``properties`` replaced by ``***``: for error
    messages that quote a client library, which may echo a value back."""
    for key, value in properties.items():
        if is_secret_key(str(key)) and isinstance(value, str) and len(value) >= 3:
            text = text.replace(value, MASK)
    return text
