"""What the librdkafka linked into confluent-kafka can do.

The confluent-kafka wheels on PyPI bundle a librdkafka built without Cyrus SASL, so
they cannot speak GSSAPI (Kerberos). Rather than let a client fail on its first
connection, the plugin asks librdkafka up front: ``builtin.features`` accepts only
features compiled in, so setting it on a throw-away client (no brokers, no
connections) answers "is this feature here?" precisely, whatever the version.
"""

from __future__ import annotations

import functools
import logging

import attrs

__all__ = ["GSSAPI_BUILD_HINT", "LibrdkafkaCapabilities", "librdkafka_capabilities"]

# Every feature name this plugin may need, as librdkafka spells them.
PROBED_FEATURES = (
    "ssl",
    "sasl",
    "sasl_plain",
    "sasl_scram",
    "sasl_gssapi",
    "sasl_oauthbearer",
    "oidc",
)

# Debian's librdkafka-dev is built with Cyrus SASL (GSSAPI); confluent-kafka 2.0.2 is
# the release whose C sources match Debian bookworm's librdkafka 2.0.2.
GSSAPI_BUILD_HINT = (
    "the librdkafka inside the installed confluent-kafka has no SASL/GSSAPI (Kerberos) "
    "support, as is the case for every confluent-kafka wheel on PyPI. Build confluent-kafka "
    "from source against a librdkafka that has it: on Debian/Ubuntu run "
    "`apt-get install librdkafka-dev libsasl2-modules-gssapi-mit krb5-user` and then "
    "`pip install --force-reinstall --no-binary confluent-kafka "
    "'confluent-kafka==<the version of librdkafka-dev, e.g. 2.0.2>'` "
    "(in the streamplug repository: `tox -e gssapi`)"
)


@attrs.frozen
class LibrdkafkaCapabilities:
    """The linked librdkafka's version and compiled-in features."""

    version: str
    features: frozenset[str]

    def has(self, feature: str) -> bool:
        return feature in self.features

    @property
    def gssapi(self) -> bool:
        return "sasl_gssapi" in self.features

    @property
    def version_tuple(self) -> tuple[int, ...]:
        parts: list[int] = []
        for piece in self.version.split("-", 1)[0].split("."):
            if not piece.isdigit():
                break
            parts.append(int(piece))
        return tuple(parts)


def _probe(feature: str) -> bool:
    from confluent_kafka import KafkaException, Producer

    try:
        # log_level 0: the probe has no brokers and must not warn about it.
        Producer({"builtin.features": feature, "log_level": 0})
    except KafkaException:
        return False
    return True


@functools.cache
def librdkafka_capabilities() -> LibrdkafkaCapabilities:
    """Probe the linked librdkafka once per process (about a millisecond per feature)."""
    import confluent_kafka

    features = frozenset(f for f in PROBED_FEATURES if _probe(f))
    caps = LibrdkafkaCapabilities(confluent_kafka.libversion()[0], features)
    logging.getLogger(__name__).debug(
        "librdkafka %s features: %s", caps.version, ",".join(sorted(caps.features))
    )
    return caps
