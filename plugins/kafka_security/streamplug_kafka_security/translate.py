"""Flink/Java Kafka security properties -> librdkafka settings.

``translate_security_properties`` edits a client's property dict in place. Properties
librdkafka understands already pass through untouched; Java-only names are replaced by
their librdkafka equivalents; Java options librdkafka has no equivalent for raise
``ConfigError`` naming the option and what to use instead (or are dropped when their
value is the Java default, which changes nothing). Translating twice is harmless: the
output holds only librdkafka settings.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, MutableMapping

from streamplug.errors import ConfigError
from streamplug_kafka_security import stores
from streamplug_kafka_security.capabilities import (
    GSSAPI_BUILD_HINT,
    LibrdkafkaCapabilities,
    librdkafka_capabilities,
)
from streamplug_kafka_security.jaas import JaasLoginModule, LoginModuleKind, parse_jaas_config

__all__ = ["MECHANISMS", "PROTOCOLS", "translate_security_properties"]

log = logging.getLogger(__name__)

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI")

_MECHANISM_FEATURE = {
    "PLAIN": "sasl_plain",
    "SCRAM-SHA-256": "sasl_scram",
    "SCRAM-SHA-512": "sasl_scram",
    "OAUTHBEARER": "sasl_oauthbearer",
    "GSSAPI": "sasl_gssapi",
}

_MODULE_MECHANISMS = {
    LoginModuleKind.PLAIN: ("PLAIN",),
    LoginModuleKind.SCRAM: ("SCRAM-SHA-256", "SCRAM-SHA-512"),
    LoginModuleKind.OAUTHBEARER: ("OAUTHBEARER",),
    LoginModuleKind.KERBEROS: ("GSSAPI",),
}

# librdkafka before 2.6.1 repeats the client nonce in SCRAM's client-final message;
# Kafka 4 compares nonces strictly and rejects it.
_SCRAM_FIXED_IN = (2, 6, 1)

_FLINK_KRB = "security.kerberos.login."
_KAFKA_CLIENT_CONTEXT = "KafkaClient"

# Java client options whose default value changes nothing under librdkafka: dropped when
# set to one of these values, a ConfigError otherwise.
_HARMLESS_DEFAULTS: dict[str, frozenset[str]] = {
    "ssl.keymanager.algorithm": frozenset({"SunX509", "PKIX", "NewSunX509"}),
    "ssl.trustmanager.algorithm": frozenset({"PKIX", "SunX509"}),
    # librdkafka negotiates the highest version OpenSSL allows: TLS 1.3, else 1.2.
    "ssl.protocol": frozenset({"TLS", "TLSv1.2", "TLSv1.3"}),
    "ssl.enabled.protocols": frozenset(
        {"TLSv1.2", "TLSv1.3", "TLSv1.2,TLSv1.3", "TLSv1.3,TLSv1.2"}
    ),
}

# Java client options librdkafka has no equivalent of, with what to do instead.
_NO_EQUIVALENT: dict[str, str] = {
    "ssl.keymanager.algorithm": "librdkafka always uses OpenSSL's key manager: remove it",
    "ssl.trustmanager.algorithm": (
        "librdkafka always verifies with OpenSSL against ssl.ca.location (or the truststore): "
        "remove it"
    ),
    "ssl.protocol": (
        "librdkafka negotiates TLS 1.2 or 1.3 through OpenSSL: remove it, or restrict the "
        "versions with an OpenSSL config (OPENSSL_CONF, MinProtocol)"
    ),
    "ssl.enabled.protocols": (
        "librdkafka negotiates TLS 1.2 or 1.3 through OpenSSL: remove it, or restrict the "
        "versions with an OpenSSL config (OPENSSL_CONF, MinProtocol)"
    ),
    "ssl.provider": "librdkafka uses OpenSSL: remove it, or load OpenSSL 3 providers with ssl.providers",
    "ssl.secure.random.implementation": "librdkafka uses OpenSSL's random generator: remove it",
    "ssl.engine.factory.class": (
        "Java SSL engines cannot be loaded: use ssl.engine.location (OpenSSL engine) or "
        "ssl.providers (OpenSSL 3 providers)"
    ),
    "security.providers": "Java security providers cannot be loaded: remove it",
    "sasl.login.class": "librdkafka has no pluggable login classes: configure the mechanism's own settings",
    "sasl.client.callback.handler.class": (
        "librdkafka has no Java callback handlers: give credentials in sasl.jaas.config "
        "or sasl.username/sasl.password"
    ),
    "sasl.login.callback.handler.class": (
        "librdkafka has no Java callback handlers: for OAuth client credentials set "
        "sasl.oauthbearer.token.endpoint.url and put clientId/clientSecret in sasl.jaas.config"
    ),
    "sasl.kerberos.ticket.renew.window.factor": (
        "librdkafka re-runs kinit on a fixed period: use sasl.kerberos.min.time.before.relogin (ms)"
    ),
    "sasl.kerberos.ticket.renew.jitter": (
        "librdkafka re-runs kinit on a fixed period: use sasl.kerberos.min.time.before.relogin (ms)"
    ),
    "sasl.login.refresh.window.factor": (
        "librdkafka refreshes OAUTHBEARER tokens itself (at 80% of their lifetime): remove it"
    ),
    "sasl.login.refresh.window.jitter": (
        "librdkafka refreshes OAUTHBEARER tokens itself (at 80% of their lifetime): remove it"
    ),
    "sasl.login.refresh.min.period.seconds": (
        "librdkafka refreshes OAUTHBEARER tokens itself (at 80% of their lifetime): remove it"
    ),
    "sasl.login.refresh.buffer.seconds": (
        "librdkafka refreshes OAUTHBEARER tokens itself (at 80% of their lifetime): remove it"
    ),
    "sasl.login.connect.timeout.ms": "librdkafka's OIDC token request has fixed timeouts: remove it",
    "sasl.login.read.timeout.ms": "librdkafka's OIDC token request has fixed timeouts: remove it",
    "sasl.login.retry.backoff.ms": "librdkafka's OIDC token request retries itself: remove it",
    "sasl.login.retry.backoff.max.ms": "librdkafka's OIDC token request retries itself: remove it",
    "sasl.oauthbearer.scope.claim.name": (
        "librdkafka does not parse the token on the client: remove it (for unsecured tokens "
        "use unsecuredLoginScopeClaimName in sasl.jaas.config)"
    ),
    "sasl.oauthbearer.sub.claim.name": (
        "librdkafka does not parse the token on the client: remove it (for unsecured tokens "
        "use unsecuredLoginPrincipalClaimName in sasl.jaas.config)"
    ),
    "sasl.oauthbearer.jwks.endpoint.url": "this is a broker-side setting: remove it from client properties",
    "sasl.oauthbearer.expected.audience": "this is a broker-side setting: remove it from client properties",
    "sasl.oauthbearer.expected.issuer": "this is a broker-side setting: remove it from client properties",
    "security.kerberos.krb5-conf.path": (
        "librdkafka reads the Kerberos configuration of the process: set the KRB5_CONFIG "
        "environment variable to the krb5.conf path"
    ),
}

# The Java login-callback handler librdkafka's OIDC mode replaces (both package names).
_OIDC_HANDLERS = (
    "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler",
    "org.apache.kafka.common.security.oauthbearer.secured.OAuthBearerLoginCallbackHandler",
)

# Krb5LoginModule options that do not change what librdkafka does.
_KRB5_IGNORED = frozenset(
    {
        "storeKey",
        "doNotPrompt",
        "debug",
        "refreshKrb5Config",
        "isInitiator",
        "renewTGT",
        "clearPass",
    }
)


def _error(option: str, message: str) -> ConfigError:
    return ConfigError(f"{option}: {message}", option=option)


def _pop_alias(props: MutableMapping[str, str], java: str, native: str) -> str | None:
    """Take a setting that Java spells ``java`` and librdkafka ``native``; both may be set
    only to the same value."""
    j = props.pop(java, None)
    n = props.pop(native, None)
    if j is not None and n is not None and j.strip().upper() != n.strip().upper():
        raise _error(java, f"conflicts with {native}; set only one of them")
    return j if j is not None else n


def translate_security_properties(
    properties: MutableMapping[str, str],
    *,
    capabilities: LibrdkafkaCapabilities | None = None,
) -> MutableMapping[str, str]:
    """Translate the Flink/Java security settings in ``properties`` in place; return it.

    ``capabilities`` defaults to probing the linked librdkafka; a mechanism or feature it
    lacks raises ``ConfigError`` naming the option and how to get a build that has it.
    """
    caps = capabilities or librdkafka_capabilities()
    _Translation(properties, caps).run()
    return properties


class _Translation:
    def __init__(self, props: MutableMapping[str, str], caps: LibrdkafkaCapabilities) -> None:
        self.props = props
        self.caps = caps

    def run(self) -> None:
        props = self.props
        self._unsupported_options()
        kerberos = self._flink_kerberos()

        protocol = props.get("security.protocol")
        if protocol is not None:
            protocol = protocol.strip().upper()
            if protocol not in PROTOCOLS:
                raise _error(
                    "security.protocol",
                    f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}",
                )
            props["security.protocol"] = protocol

        mechanism = _pop_alias(props, "sasl.mechanism", "sasl.mechanisms")
        if mechanism is not None:
            mechanism = mechanism.strip().upper()
            if mechanism not in MECHANISMS:
                raise _error(
                    "sasl.mechanism",
                    f"unknown SASL mechanism {mechanism!r}; librdkafka supports {', '.join(MECHANISMS)}",
                )

        jaas_text = props.pop("sasl.jaas.config", None)
        module = parse_jaas_config(jaas_text) if jaas_text is not None else None
        if module is not None:
            mechanism = self._mechanism_for_module(module, mechanism)

        uses_sasl = protocol in ("SASL_PLAINTEXT", "SASL_SSL")
        if uses_sasl and mechanism is None:
            # Java's and librdkafka's default alike.
            mechanism = "GSSAPI"
        if mechanism is not None:
            props["sasl.mechanisms"] = mechanism

        if module is not None and module.kind in (LoginModuleKind.PLAIN, LoginModuleKind.SCRAM):
            self._username_password(module)
        elif module is not None and module.kind == LoginModuleKind.OAUTHBEARER:
            self._oauthbearer(module)
        if module is not None and module.kind == LoginModuleKind.KERBEROS:
            self._kerberos_from_jaas(module)
        elif mechanism == "GSSAPI" and uses_sasl:
            self._kerberos_from_flink(kerberos)

        self._ssl()
        if uses_sasl and mechanism is not None:
            self._require_mechanism(mechanism)
        if protocol in ("SSL", "SASL_SSL"):
            self._require("ssl", "security.protocol", f"security.protocol={protocol} needs SSL")

    # -- capability checks -------------------------------------------------------------

    def _require(self, feature: str, option: str, what: str) -> None:
        if self.caps.has(feature):
            return
        raise _error(
            option,
            f"{what}, but librdkafka {self.caps.version} was built without {feature!r} "
            f"(its features: {', '.join(sorted(self.caps.features)) or 'none'})",
        )

    def _require_mechanism(self, mechanism: str) -> None:
        feature = _MECHANISM_FEATURE[mechanism]
        if mechanism == "GSSAPI" and not self.caps.has(feature):
            raise _error(
                "sasl.mechanism", f"GSSAPI (Kerberos) was asked for, but {GSSAPI_BUILD_HINT}"
            )
        self._require(feature, "sasl.mechanism", f"sasl.mechanism={mechanism}")
        if mechanism.startswith("SCRAM") and self.caps.version_tuple < _SCRAM_FIXED_IN:
            log.warning(
                "librdkafka %s sends a SCRAM nonce that Kafka 4.x brokers reject as invalid "
                "credentials (fixed in librdkafka 2.6.1): upgrade confluent-kafka if "
                "SCRAM authentication fails against new brokers",
                self.caps.version,
            )

    # -- options without an equivalent ------------------------------------------------------

    def _unsupported_options(self) -> None:
        props = self.props
        handler = props.get("sasl.login.callback.handler.class")
        if handler is not None and handler.strip() in _OIDC_HANDLERS:
            if not props.get("sasl.oauthbearer.token.endpoint.url"):
                raise _error(
                    "sasl.login.callback.handler.class",
                    "OAuthBearerLoginCallbackHandler needs sasl.oauthbearer.token.endpoint.url",
                )
            # librdkafka's OIDC mode does what this handler does.
            del props["sasl.login.callback.handler.class"]
            props["sasl.oauthbearer.method"] = "oidc"
        for option, fix in _NO_EQUIVALENT.items():
            value = props.get(option)
            if value is None:
                continue
            harmless = _HARMLESS_DEFAULTS.get(option)
            if harmless is not None and value.replace(" ", "") in harmless:
                del props[option]
                log.debug(
                    "dropped %s: its value is the Java default, librdkafka needs none", option
                )
                continue
            raise _error(option, f"has no librdkafka equivalent; {fix}")
        suites = props.get("ssl.cipher.suites")
        if suites is not None and "_WITH_" in suites:
            raise _error(
                "ssl.cipher.suites",
                "holds Java (IANA) cipher suite names; librdkafka takes OpenSSL names, e.g. "
                "ECDHE-RSA-AES128-GCM-SHA256 for TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 "
                "(see `openssl ciphers -stdname`)",
            )

    # -- SASL ----------------------------------------------------------------------------

    def _mechanism_for_module(self, module: JaasLoginModule, mechanism: str | None) -> str:
        kind = module.kind  # raises for a module librdkafka has no equivalent of
        allowed = _MODULE_MECHANISMS[kind]
        if mechanism is None:
            if len(allowed) > 1:
                raise _error(
                    "sasl.mechanism",
                    f"{module.class_name.rsplit('.', 1)[-1]} in sasl.jaas.config needs "
                    f"sasl.mechanism set to one of {', '.join(allowed)}",
                )
            return allowed[0]
        if mechanism not in allowed:
            raise _error(
                "sasl.mechanism",
                f"{mechanism} does not match the login module "
                f"{module.class_name.rsplit('.', 1)[-1]} in sasl.jaas.config "
                f"(it serves {', '.join(allowed)}); fix one of the two",
            )
        return mechanism

    def _set_once(self, native: str, value: str, source: str) -> None:
        existing = self.props.get(native)
        if existing is not None and existing != value:
            # Neither value goes into the message: both may be secrets.
            raise _error(native, f"is set and differs from {source}; set only one of them")
        self.props[native] = value

    def _username_password(self, module: JaasLoginModule) -> None:
        opts = module.options
        if module.kind == LoginModuleKind.SCRAM and module.flag("tokenauth"):
            raise _error(
                "sasl.jaas.config",
                "tokenauth=true (delegation tokens) has no librdkafka equivalent; "
                "authenticate with a SCRAM user instead",
            )
        for required in ("username", "password"):
            if required not in opts:
                raise _error(
                    "sasl.jaas.config", f"the login module needs the option {required}=..."
                )
        unknown = sorted(set(opts) - {"username", "password", "tokenauth"})
        if unknown:
            raise _error(
                "sasl.jaas.config",
                f"option(s) {', '.join(unknown)} of the login module have no librdkafka "
                "equivalent: remove them",
            )
        self._set_once("sasl.username", opts["username"], "the username in sasl.jaas.config")
        self._set_once("sasl.password", opts["password"], "the password in sasl.jaas.config")

    def _oauthbearer(self, module: JaasLoginModule) -> None:
        opts = dict(module.options)
        props = self.props
        if "clientId" in opts or props.get("sasl.oauthbearer.method") == "oidc":
            # Client credentials grant against sasl.oauthbearer.token.endpoint.url.
            self._require("oidc", "sasl.oauthbearer.method", "OAuth client credentials (OIDC)")
            if not props.get("sasl.oauthbearer.token.endpoint.url"):
                raise _error(
                    "sasl.oauthbearer.token.endpoint.url",
                    "is required for OAuth client credentials (clientId in sasl.jaas.config)",
                )
            props["sasl.oauthbearer.method"] = "oidc"
            for java, native in (
                ("clientId", "sasl.oauthbearer.client.id"),
                ("clientSecret", "sasl.oauthbearer.client.secret"),
                ("scope", "sasl.oauthbearer.scope"),
            ):
                if java in opts:
                    self._set_once(native, opts.pop(java), f"{java} in sasl.jaas.config")
            extensions = {k: opts.pop(k) for k in list(opts) if k.startswith("extension_")}
            if extensions:
                value = ",".join(f"{k[len('extension_') :]}={v}" for k, v in extensions.items())
                self._set_once(
                    "sasl.oauthbearer.extensions", value, "extension_* in sasl.jaas.config"
                )
            if opts:
                raise _error(
                    "sasl.jaas.config",
                    f"option(s) {', '.join(sorted(opts))} of OAuthBearerLoginModule have no "
                    "librdkafka equivalent: remove them",
                )
            return
        # Unsecured JWTs (development and tests), which librdkafka builds itself.
        parts: list[str] = []
        for key, value in opts.items():
            if any(ch.isspace() for ch in value) or "=" in value:
                raise _error(
                    "sasl.jaas.config",
                    f"the value of {key} contains whitespace or '=', which librdkafka's "
                    "sasl.oauthbearer.config cannot carry",
                )
            if key == "unsecuredLoginStringClaim_sub":
                parts.append(f"principal={value}")
            elif key == "unsecuredLoginPrincipalClaimName":
                parts.append(f"principalClaimName={value}")
            elif key == "unsecuredLoginScopeClaimName":
                parts.append(f"scopeClaimName={value}")
            elif key == "unsecuredLoginLifetimeSeconds":
                parts.append(f"lifeSeconds={value}")
            elif key == "unsecuredLoginListClaim_scope":
                # Java takes the list with its own first character as separator.
                sep, items = value[:1], value[1:]
                parts.append("scope=" + ",".join(i for i in items.split(sep) if i))
            elif key.startswith("unsecuredLoginExtension_"):
                parts.append(f"extension_{key[len('unsecuredLoginExtension_') :]}={value}")
            else:
                raise _error(
                    "sasl.jaas.config",
                    f"OAuthBearerLoginModule option {key} has no librdkafka equivalent; "
                    "unsecured tokens take unsecuredLoginStringClaim_sub, "
                    "unsecuredLoginPrincipalClaimName, unsecuredLoginScopeClaimName, "
                    "unsecuredLoginLifetimeSeconds, unsecuredLoginListClaim_scope and "
                    "unsecuredLoginExtension_*; for real tokens set clientId/clientSecret and "
                    "sasl.oauthbearer.token.endpoint.url",
                )
        if not any(p.startswith("principal=") for p in parts):
            raise _error(
                "sasl.jaas.config",
                "an unsecured OAUTHBEARER token needs unsecuredLoginStringClaim_sub (its principal)",
            )
        props["enable.sasl.oauthbearer.unsecure.jwt"] = "true"
        self._set_once("sasl.oauthbearer.config", " ".join(parts), "sasl.jaas.config")

    # -- Kerberos --------------------------------------------------------------------------

    def _flink_kerberos(self) -> dict[str, str]:
        """Take every ``security.kerberos.login.*`` option out of the properties."""
        found: dict[str, str] = {}
        for key in [k for k in self.props if k.startswith(_FLINK_KRB)]:
            found[key[len(_FLINK_KRB) :]] = self.props.pop(key)
        known = {"use-ticket-cache", "keytab", "principal", "contexts"}
        unknown = sorted(set(found) - known)
        if unknown:
            raise _error(
                _FLINK_KRB + unknown[0],
                "is not a Flink Kerberos login option the Kafka clients use; known: "
                + ", ".join(_FLINK_KRB + k for k in sorted(known)),
            )
        relogin = self.props.pop("security.kerberos.relogin.period", None)
        if relogin is not None:
            found["relogin.period"] = relogin
        return found

    def _kerberos_from_flink(self, opts: dict[str, str]) -> None:
        contexts = [c.strip() for c in opts.get("contexts", "").split(",") if c.strip()]
        keytab = opts.get("keytab")
        principal = opts.get("principal")
        if (keytab or principal) and _KAFKA_CLIENT_CONTEXT not in contexts:
            raise _error(
                _FLINK_KRB + "contexts",
                f"{_FLINK_KRB}keytab/principal are set, but Flink gives them to Kafka only "
                f"when {_FLINK_KRB}contexts names {_KAFKA_CLIENT_CONTEXT}: add it "
                f"(e.g. 'Client,{_KAFKA_CLIENT_CONTEXT}')",
            )
        use_cache = opts.get("use-ticket-cache", "true").strip().lower() == "true"
        if "relogin.period" in opts:
            self._set_default(
                "sasl.kerberos.min.time.before.relogin", _duration_ms(opts["relogin.period"])
            )
        self._apply_kerberos(
            keytab=keytab,
            principal=principal,
            use_ticket_cache=use_cache,
            source=_FLINK_KRB + "keytab",
        )

    def _kerberos_from_jaas(self, module: JaasLoginModule) -> None:
        opts = module.options
        if "ticketCache" in opts:
            raise _error(
                "sasl.jaas.config",
                "Krb5LoginModule's ticketCache has no per-client librdkafka equivalent: set the "
                "KRB5CCNAME environment variable to the cache instead",
            )
        known = {
            "useKeyTab",
            "keyTab",
            "principal",
            "useTicketCache",
            "serviceName",
        } | _KRB5_IGNORED
        unknown = sorted(set(opts) - known)
        if unknown:
            raise _error(
                "sasl.jaas.config",
                f"Krb5LoginModule option(s) {', '.join(unknown)} have no librdkafka equivalent: "
                "remove them",
            )
        if "serviceName" in opts:
            # Kafka's Java client falls back to the JAAS serviceName the same way.
            self._set_default("sasl.kerberos.service.name", opts["serviceName"])
        keytab = opts.get("keyTab") if module.flag("useKeyTab") else None
        if module.flag("useKeyTab") and not keytab:
            raise _error("sasl.jaas.config", 'useKeyTab=true needs keyTab="/path/to/client.keytab"')
        self._apply_kerberos(
            keytab=keytab,
            principal=opts.get("principal"),
            use_ticket_cache=module.flag("useTicketCache"),
            source="sasl.jaas.config",
        )

    def _apply_kerberos(
        self, *, keytab: str | None, principal: str | None, use_ticket_cache: bool, source: str
    ) -> None:
        self._set_default("sasl.kerberos.service.name", "kafka")
        if keytab:
            if not principal:
                raise _error(
                    source, "a Kerberos keytab needs a principal (e.g. client@EXAMPLE.COM)"
                )
            if not os.access(keytab, os.R_OK):
                raise _error(source, f"the keytab {keytab!r} does not exist or is not readable")
            self._set_once("sasl.kerberos.keytab", keytab, source)
            self._set_once("sasl.kerberos.principal", principal, source)
            return
        if not use_ticket_cache and "sasl.kerberos.keytab" not in self.props:
            raise _error(
                source,
                "Kerberos needs credentials: a keytab and principal, or the ticket cache "
                "(use-ticket-cache / useTicketCache=true, after `kinit`)",
            )
        if principal:
            self._set_once("sasl.kerberos.principal", principal, source)
        if "sasl.kerberos.keytab" not in self.props and "sasl.kerberos.kinit.cmd" not in self.props:
            # Ticket cache: librdkafka must not run kinit (it would need a keytab); 0
            # turns its kinit timer off and GSSAPI reads the cache (KRB5CCNAME).
            self._set_default("sasl.kerberos.min.time.before.relogin", "0")

    def _set_default(self, key: str, value: str) -> None:
        self.props.setdefault(key, value)

    # -- SSL ------------------------------------------------------------------------------

    def _ssl(self) -> None:
        props = self.props
        algorithm = props.get("ssl.endpoint.identification.algorithm")
        if algorithm is not None:
            value = algorithm.strip().lower()
            if value in ("", "none"):
                props["ssl.endpoint.identification.algorithm"] = "none"
            elif value == "https":
                props["ssl.endpoint.identification.algorithm"] = "https"
            else:
                raise _error(
                    "ssl.endpoint.identification.algorithm",
                    f"unknown value {algorithm!r}; use https (verify the broker host name) "
                    "or an empty string (do not)",
                )
        self._truststore()
        self._keystore()

    def _store_type(self, prefix: str, location: str | None) -> str | None:
        option = f"{prefix}.type"
        declared = self.props.pop(option, None)
        if declared is not None:
            declared = declared.strip().upper()
            if declared in ("PKCS#12", "P12"):
                declared = "PKCS12"
            if declared == "JCEKS":
                declared = "JKS"
            if declared not in stores.STORE_TYPES:
                raise _error(option, f"unknown store type {declared!r}; use JKS, PKCS12 or PEM")
        if location is None:
            return declared
        sniffed = stores.sniff_store_type(location, f"{prefix}.location")
        if declared is not None and declared != sniffed:
            raise _error(
                option,
                f"says {declared} but {prefix}.location={location!r} is a {sniffed} file: "
                f"set {option}={sniffed}",
            )
        return sniffed

    def _truststore(self) -> None:
        props = self.props
        location = props.pop("ssl.truststore.location", None)
        password = props.pop("ssl.truststore.password", None)
        inline = props.pop("ssl.truststore.certificates", None)
        store_type = self._store_type("ssl.truststore", location)
        if location is None and inline is None:
            if password is not None:
                raise _error("ssl.truststore.password", "is set without ssl.truststore.location")
            return
        if location is not None and inline is not None:
            raise _error(
                "ssl.truststore.certificates", "conflicts with ssl.truststore.location; set one"
            )
        if "ssl.ca.location" in props or "ssl.ca.pem" in props:
            raise _error(
                "ssl.truststore.location", "conflicts with ssl.ca.location/ssl.ca.pem; set one"
            )
        if inline is not None:
            certs = stores.pem_certificates(inline.encode(), option="ssl.truststore.certificates")
            props["ssl.ca.location"] = self._converted(
                ("inline-ca", inline), lambda: (stores.write_ca_bundle(certs),)
            )[0]
            return
        assert location is not None and store_type is not None
        if store_type == "PEM":
            stores.load_truststore(location, "PEM", None)  # fail now on a file without certs
            props["ssl.ca.location"] = location
            return
        key = stores.source_key("truststore", location, password)
        props["ssl.ca.location"] = self._converted(
            key,
            lambda: (
                stores.write_ca_bundle(stores.load_truststore(location, store_type, password)),
            ),
        )[0]

    def _keystore(self) -> None:
        props = self.props
        location = props.get("ssl.keystore.location")
        inline_key = props.pop("ssl.keystore.key", None)
        inline_chain = props.pop("ssl.keystore.certificate.chain", None)
        store_type = self._store_type("ssl.keystore", location)
        if inline_key is not None or inline_chain is not None:
            if inline_key is None or inline_chain is None or location is not None:
                raise _error(
                    "ssl.keystore.key",
                    "PEM client credentials need both ssl.keystore.key and "
                    "ssl.keystore.certificate.chain, and no ssl.keystore.location",
                )
            key_password = props.pop("ssl.key.password", None)
            chain = stores.pem_certificates(
                inline_chain.encode(), option="ssl.keystore.certificate.chain"
            )
            material = stores.pem_key_material(
                inline_key.encode(), key_password, option="ssl.keystore.key", where="inline"
            )
            material = stores.KeyMaterial(material.key, tuple(chain))
            self._install_key(
                ("inline-key", inline_key, inline_chain, key_password or ""), material
            )
            return
        if location is None:
            return
        store_password = props.get("ssl.keystore.password")
        key_password = props.get("ssl.key.password")
        if store_type == "PKCS12":
            # librdkafka reads PKCS12 client keystores itself; open it here first so a
            # wrong password fails now, with a message that names the option.
            stores.load_keystore(location, "PKCS12", store_password, key_password)
            if (
                key_password is not None
                and store_password is not None
                and key_password != store_password
            ):
                raise _error(
                    "ssl.key.password",
                    "differs from ssl.keystore.password, but a PKCS12 keystore has one "
                    "password for store and key: remove ssl.key.password",
                )
            if (
                key_password is not None
                and "ssl.key.location" not in props
                and "ssl.key.pem" not in props
            ):
                del props["ssl.key.password"]
                if store_password is None:
                    props["ssl.keystore.password"] = key_password
            return
        del props["ssl.keystore.location"]
        props.pop("ssl.keystore.password", None)
        props.pop("ssl.key.password", None)
        assert store_type is not None
        key = stores.source_key("keystore", location, store_password, key_password)
        self._install_key(
            key, lambda: stores.load_keystore(location, store_type, store_password, key_password)
        )

    def _install_key(
        self,
        cache_key: tuple[object, ...],
        material: stores.KeyMaterial | Callable[[], stores.KeyMaterial],
    ) -> None:
        for native in (
            "ssl.certificate.location",
            "ssl.key.location",
            "ssl.certificate.pem",
            "ssl.key.pem",
        ):
            if native in self.props:
                raise _error("ssl.keystore.location", f"conflicts with {native}; set one of them")

        def convert() -> tuple[str, ...]:
            loaded = material() if callable(material) else material
            return stores.write_key_material(loaded)

        cert_path, key_path, password = self._converted(cache_key, convert)
        self.props["ssl.certificate.location"] = cert_path
        self.props["ssl.key.location"] = key_path
        self.props["ssl.key.password"] = password

    def _converted(
        self, key: tuple[object, ...], convert: Callable[[], tuple[str, ...]]
    ) -> tuple[str, ...]:
        files = stores.private_files()
        found = files.cached(key)
        if found is None:
            found = convert()
            files.remember(key, found)
        return found


def _duration_ms(value: str) -> str:
    """A Flink duration (``1 min``, ``30 s``, ``60000``) in milliseconds."""
    text = value.strip().lower().replace(" ", "")
    units = (
        ("ms", 1),
        ("milliseconds", 1),
        ("millisecond", 1),
        ("min", 60_000),
        ("minutes", 60_000),
        ("minute", 60_000),
        ("m", 60_000),
        ("s", 1000),
        ("sec", 1000),
        ("seconds", 1000),
        ("second", 1000),
        ("h", 3_600_000),
        ("hours", 3_600_000),
        ("hour", 3_600_000),
    )
    for suffix, factor in sorted(units, key=lambda u: -len(u[0])):
        if text.endswith(suffix) and text[: -len(suffix)].isdigit():
            return str(int(text[: -len(suffix)]) * factor)
    if text.isdigit():
        return text
    raise _error(
        "security.kerberos.relogin.period",
        f"{value!r} is not a duration; write e.g. '1 min', '30 s' or '60000 ms'",
    )
