"""The pluggy hooks of streamplug-kafka-security (entry point ``kafka_security``)."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from streamplug.plugins import hookimpl
from streamplug.secrets import redact
from streamplug_kafka_security.failfast import install_fail_fast, verify_credentials
from streamplug_kafka_security.metrics import record_configured
from streamplug_kafka_security.translate import translate_security_properties

log = logging.getLogger(__name__)

_SECURITY_PREFIXES = ("security.", "sasl.", "ssl.", "enable.sasl.", "streamplug.security.")
# Set to "false" to skip the one-time credential check the hook makes per configuration.
VERIFY_OPTION = "streamplug.security.verify-credentials"


def _is_kafka(connector: str) -> bool:
    return connector == "kafka" or connector.startswith("kafka")


# trylast: plugins that inject credentials (vaults, environment) may write Java-style
# settings, so the translation runs after them.
@hookimpl(trylast=True)
def streamplug_configure_client(
    properties: MutableMapping[str, Any], role: str, connector: str
) -> None:
    """Translate Flink/Java security settings of a Kafka client into librdkafka's."""
    if not _is_kafka(connector):
        return
    if not any(str(k).startswith(_SECURITY_PREFIXES) for k in properties):
        return
    verify = str(properties.pop(VERIFY_OPTION, "true")).strip().lower() != "false"
    translate_security_properties(properties)
    protocol = properties.get("security.protocol")
    if protocol in ("SSL", "SASL_SSL", "SASL_PLAINTEXT"):
        install_fail_fast(properties)
        if verify:
            verify_credentials(properties)
    record_configured(properties, role=role, connector=connector)
    if log.isEnabledFor(logging.DEBUG):
        shown = {
            k: v for k, v in redact(properties).items() if str(k).startswith(_SECURITY_PREFIXES)
        }
        log.debug("%s %s client security settings: %s", connector, role, shown)
