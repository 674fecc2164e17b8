"""Flink/Java style Kafka security settings for streamplug's librdkafka clients.

Installed, the plugin translates every Kafka client's ``security.protocol``,
``sasl.*``, ``ssl.*`` and Flink ``security.kerberos.login.*`` properties through the
``streamplug_configure_client`` hook; the functions below do the same by hand.
"""

from streamplug_kafka_security.capabilities import (
    GSSAPI_BUILD_HINT,
    LibrdkafkaCapabilities,
    librdkafka_capabilities,
)
from streamplug_kafka_security.failfast import KafkaAuthenticationError, install_fail_fast
from streamplug_kafka_security.jaas import JaasLoginModule, parse_jaas_config
from streamplug_kafka_security.translate import translate_security_properties

__all__ = [
    "GSSAPI_BUILD_HINT",
    "JaasLoginModule",
    "KafkaAuthenticationError",
    "LibrdkafkaCapabilities",
    "install_fail_fast",
    "librdkafka_capabilities",
    "parse_jaas_config",
    "translate_security_properties",
]
