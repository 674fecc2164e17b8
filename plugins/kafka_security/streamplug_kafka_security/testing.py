"""Test support: a throw-away PKI, an MIT Kerberos KDC and a Kafka cluster secured with
every mechanism the plugin translates, each listener on its own port.

Used by streamplug's own integration tests and usable by anyone who wants to check a
security configuration against a real broker::

    with SecuredKafka.start(tmp_dir) as secured:
        props = secured.java_properties("SCRAM-SHA-512")
        ...

Needs a JDK (``keytool`` makes the Java-side stores, as a Java shop would) and the
Kafka jars of streamplug-kafka-common; the KDC needs MIT krb5's ``krb5kdc``,
``kdb5_util`` and ``kadmin.local`` (Debian: krb5-kdc, krb5-admin-server, krb5-user).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

__all__ = [
    "REALM",
    "MitKdc",
    "PkiFiles",
    "SecuredKafka",
    "kdc_available",
    "make_pki",
]

REALM = "STREAMPLUG.TEST"
HOST = "127.0.0.1"
USER = "alice"
USER_PASSWORD = 'al1ce "secret" \\ pw'  # quotes and a backslash: JAAS escaping is exercised
ADMIN_PASSWORD = "admin-secret"
STORE_PASSWORD = "store-pass-123"
KEY_PASSWORD = "key-pass-456"

_KDC_TOOLS = ("krb5kdc", "kdb5_util", "kadmin.local")
_SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def _which(tool: str) -> str | None:
    return shutil.which(tool) or shutil.which(tool, path=os.pathsep.join(_SBIN))


def kdc_available() -> bool:
    """Whether MIT krb5's KDC and admin tools and ``kinit`` are installed."""
    return all(_which(t) for t in (*_KDC_TOOLS, "kinit"))


# ---------------------------------------------------------------------------- PKI


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name = _name(subject) if issuer is None else issuer[0].subject
    signer = key if issuer is None else issuer[1]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signer, hashes.SHA256())


@attrs.frozen
class PkiFiles:
    """Paths of the generated certificates and stores (passwords are module constants)."""

    directory: Path
    ca_pem: Path
    broker_keystore_p12: Path
    broker_truststore_p12: Path
    client_keystore_p12: Path
    client_keystore_jks: Path
    client_key_pem: Path  # encrypted with KEY_PASSWORD
    client_chain_pem: Path
    client_keystore_pem: Path  # key (encrypted with KEY_PASSWORD) + chain in one file
    truststore_jks: Path
    truststore_p12: Path
    rogue_ca_pem: Path
    rogue_client_keystore_p12: Path


def _keytool(*args: str) -> None:
    keytool = shutil.which("keytool")
    if keytool is None:
        raise RuntimeError("keytool (from a JDK) is needed to build the Java-side test stores")
    subprocess.run([keytool, *args], check=True, capture_output=True, timeout=120)


def make_pki(directory: Path) -> PkiFiles:
    """A CA, a broker certificate for 127.0.0.1/localhost, a client certificate, and an
    unrelated ("rogue") CA with its own client; stores in PEM, PKCS12 and JKS."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("streamplug test CA", ca_key, None, ca=True)
    broker_key = ec.generate_private_key(ec.SECP256R1())
    broker = _cert(
        "broker",
        broker_key,
        (ca, ca_key),
        sans=[x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")],
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert("client", client_key, (ca, ca_key))
    rogue_ca_key = ec.generate_private_key(ec.SECP256R1())
    rogue_ca = _cert("rogue CA", rogue_ca_key, None, ca=True)
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    rogue = _cert("rogue client", rogue_key, (rogue_ca, rogue_ca_key))

    def pem(cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    def p12(
        path: Path, name: str, key: Any, cert: x509.Certificate, chain: list[x509.Certificate]
    ) -> Path:
        path.write_bytes(
            pkcs12.serialize_key_and_certificates(
                name.encode(),
                key,
                cert,
                chain,
                serialization.BestAvailableEncryption(STORE_PASSWORD.encode()),
            )
        )
        return path

    d = directory
    (d / "ca.pem").write_bytes(pem(ca))
    (d / "rogue-ca.pem").write_bytes(pem(rogue_ca))
    p12(d / "broker.p12", "broker", broker_key, broker, [ca])
    p12(d / "client.p12", "client", client_key, client, [ca])
    p12(d / "rogue-client.p12", "rogue", rogue_key, rogue, [rogue_ca])
    encrypted_key = client_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
    )
    (d / "client-key.pem").write_bytes(encrypted_key)
    (d / "client-chain.pem").write_bytes(pem(client) + pem(ca))
    (d / "client-keystore.pem").write_bytes(encrypted_key + pem(client) + pem(ca))
    # The Java-side stores come from keytool itself, so the plugin is proven on files
    # exactly like the ones Java users have.
    for store_type, name in (
        ("PKCS12", "truststore.p12"),
        ("JKS", "truststore.jks"),
        ("PKCS12", "broker-truststore.p12"),
    ):
        _keytool(
            "-importcert",
            "-noprompt",
            "-alias",
            "ca",
            "-file",
            str(d / "ca.pem"),
            "-keystore",
            str(d / name),
            "-storetype",
            store_type,
            "-storepass",
            STORE_PASSWORD,
        )
    # A JKS key entry with a key password different from the store password.
    _keytool(
        "-importkeystore",
        "-noprompt",
        "-srckeystore",
        str(d / "client.p12"),
        "-srcstoretype",
        "PKCS12",
        "-srcstorepass",
        STORE_PASSWORD,
        "-destkeystore",
        str(d / "client.jks"),
        "-deststoretype",
        "JKS",
        "-deststorepass",
        STORE_PASSWORD,
        "-destkeypass",
        KEY_PASSWORD,
        "-srcalias",
        "client",
        "-destalias",
        "client",
    )
    return PkiFiles(
        directory=d,
        ca_pem=d / "ca.pem",
        broker_keystore_p12=d / "broker.p12",
        broker_truststore_p12=d / "broker-truststore.p12",
        client_keystore_p12=d / "client.p12",
        client_keystore_jks=d / "client.jks",
        client_key_pem=d / "client-key.pem",
        client_chain_pem=d / "client-chain.pem",
        client_keystore_pem=d / "client-keystore.pem",
        truststore_jks=d / "truststore.jks",
        truststore_p12=d / "truststore.p12",
        rogue_ca_pem=d / "rogue-ca.pem",
        rogue_client_keystore_p12=d / "rogue-client.p12",
    )


# ---------------------------------------------------------------------------- KDC


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class MitKdc:
    """An MIT Kerberos KDC for realm ``STREAMPLUG.TEST`` on a free loopback port.

    ``krb5_conf`` is the client configuration (for ``KRB5_CONFIG`` and Java's
    ``java.security.krb5.conf``); ``keytab(principal)`` creates a principal with a random
    key and exports it to a keytab file.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = _free_port()
        self.krb5_conf = directory / "krb5.conf"
        self.kdc_conf = directory / "kdc.conf"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        return {"KRB5_CONFIG": str(self.krb5_conf), "KRB5_KDC_PROFILE": str(self.kdc_conf)}

    def _run(self, *cmd: str) -> None:
        tool = _which(cmd[0])
        if tool is None:
            raise RuntimeError(f"{cmd[0]} is not installed (Debian: krb5-kdc krb5-admin-server)")
        result = subprocess.run(
            [tool, *cmd[1:]], env={**os.environ, **self.env}, capture_output=True, timeout=60
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{cmd[0]} failed ({result.returncode}): {result.stderr.decode(errors='replace')}"
            )

    def start(self) -> MitKdc:
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        self.krb5_conf.write_text(
            "[libdefaults]\n"
            f"  default_realm = {REALM}\n"
            "  dns_lookup_realm = false\n  dns_lookup_kdc = false\n"
            "  dns_canonicalize_hostname = false\n  rdns = false\n"
            # TCP only: one listener, and Java and MIT clients agree on it.
            "  udp_preference_limit = 1\n"
            "  ticket_lifetime = 1h\n  forwardable = true\n"
            f"[realms]\n  {REALM} = {{\n    kdc = {HOST}:{self.port}\n  }}\n"
            f"[domain_realm]\n  {HOST} = {REALM}\n  localhost = {REALM}\n"
        )
        self.kdc_conf.write_text(
            f"[kdcdefaults]\n  kdc_listen = {HOST}:{self.port}\n  kdc_tcp_listen = {HOST}:{self.port}\n"
            f"[realms]\n  {REALM} = {{\n"
            f"    database_name = {d}/principal\n    key_stash_file = {d}/stash\n"
            f"    acl_file = {d}/kadm5.acl\n    max_life = 1h\n"
            "    supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal\n"
            "  }\n"
            f"[logging]\n  kdc = FILE:{d}/kdc.log\n"
        )
        (d / "kadm5.acl").write_text("")
        self._run("kdb5_util", "-r", REALM, "create", "-s", "-P", "master-key-pw")
        tool = _which("krb5kdc")
        assert tool is not None
        self._process = subprocess.Popen(
            [tool, "-n", "-r", REALM],
            env={**os.environ, **self.env},
            stdout=subprocess.DEVNULL,
            stderr=open(d / "krb5kdc.out", "wb"),  # noqa: SIM115 - lives as long as the KDC
        )
        deadline = time.monotonic() + 20
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"krb5kdc exited ({self._process.returncode}): "
                    f"{(d / 'krb5kdc.out').read_text(errors='replace')}"
                )
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"krb5kdc did not listen on {HOST}:{self.port}") from None
                time.sleep(0.1)

    def keytab(self, principal: str) -> Path:
        path = self.directory / (principal.replace("/", "_").replace("@", "_") + ".keytab")
        self._run("kadmin.local", "-r", REALM, "-q", f"addprinc -randkey {principal}")
        self._run("kadmin.local", "-r", REALM, "-q", f"ktadd -k {path} {principal}")
        return path

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None


# ---------------------------------------------------------------------------- Kafka

# Listener name -> (protocol, SASL mechanisms). One broker serves them all.
LISTENERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "SCRAM": ("SASL_SSL", ("SCRAM-SHA-256", "SCRAM-SHA-512")),
    "PLAIN": ("SASL_PLAINTEXT", ("PLAIN", "OAUTHBEARER")),
    "MTLS": ("SSL", ()),
    "KERBEROS": ("SASL_PLAINTEXT", ("GSSAPI",)),
}
CLIENT_PRINCIPAL = f"client@{REALM}"
BROKER_PRINCIPAL = f"kafka/{HOST}@{REALM}"


def _jaas_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@attrs.define
class SecuredKafka:
    """A one-node Kafka with a SASL_SSL/SCRAM, a SASL_PLAINTEXT/PLAIN, an SSL
    (client certificates required) and, when a KDC can run, a SASL_PLAINTEXT/GSSAPI
    listener."""

    cluster: Any
    pki: PkiFiles
    kdc: MitKdc | None
    client_keytab: Path | None

    @classmethod
    @contextmanager
    def start(cls, directory: Path, *, kerberos: bool | None = None) -> Iterator[SecuredKafka]:
        from streamplug_testing.broker import KafkaCluster, ListenerSpec, ScramUser

        pki = make_pki(directory / "pki")
        use_kdc = kdc_available() if kerberos is None else kerberos
        kdc: MitKdc | None = None
        try:
            broker_tls = {
                "ssl.keystore.location": str(pki.broker_keystore_p12),
                "ssl.keystore.type": "PKCS12",
                "ssl.keystore.password": STORE_PASSWORD,
                "ssl.key.password": STORE_PASSWORD,
            }
            plain_jaas = (
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'username="admin" password={_jaas_quote(ADMIN_PASSWORD)} '
                f"user_admin={_jaas_quote(ADMIN_PASSWORD)} user_{USER}={_jaas_quote(USER_PASSWORD)};"
            )
            scram_jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            specs = [
                ListenerSpec(
                    "SCRAM",
                    "SASL_SSL",
                    ("SCRAM-SHA-256", "SCRAM-SHA-512"),
                    {
                        **broker_tls,
                        "scram-sha-256.sasl.jaas.config": scram_jaas,
                        "scram-sha-512.sasl.jaas.config": scram_jaas,
                    },
                ),
                ListenerSpec(
                    "PLAIN",
                    "SASL_PLAINTEXT",
                    ("PLAIN", "OAUTHBEARER"),
                    {
                        "plain.sasl.jaas.config": plain_jaas,
                        # Kafka validates unsecured (alg "none") tokens unless told
                        # otherwise: enough to prove the OAUTHBEARER translation.
                        "oauthbearer.sasl.jaas.config": (
                            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule "
                            'required unsecuredLoginStringClaim_sub="admin";'
                        ),
                    },
                ),
                ListenerSpec(
                    "MTLS",
                    "SSL",
                    (),
                    {
                        **broker_tls,
                        "ssl.client.auth": "required",
                        "ssl.truststore.location": str(pki.broker_truststore_p12),
                        "ssl.truststore.type": "PKCS12",
                        "ssl.truststore.password": STORE_PASSWORD,
                    },
                ),
            ]
            jvm_options: list[str] = []
            client_keytab: Path | None = None
            if use_kdc:
                kdc = MitKdc(directory / "kdc").start()
                broker_keytab = kdc.keytab(BROKER_PRINCIPAL)
                client_keytab = kdc.keytab(CLIENT_PRINCIPAL)
                specs.append(
                    ListenerSpec(
                        "KERBEROS",
                        "SASL_PLAINTEXT",
                        ("GSSAPI",),
                        {
                            "gssapi.sasl.jaas.config": (
                                "com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true "
                                f"storeKey=true keyTab={_jaas_quote(str(broker_keytab))} "
                                f"principal={_jaas_quote(BROKER_PRINCIPAL)};"
                            ),
                            "sasl.kerberos.service.name": "kafka",
                        },
                    )
                )
                jvm_options.append(f"-Djava.security.krb5.conf={kdc.krb5_conf}")
            users = [ScramUser(USER, USER_PASSWORD, m) for m in ("SCRAM-SHA-256", "SCRAM-SHA-512")]
            cluster = KafkaCluster(
                listeners=specs,
                scram_users=users,
                jvm_options=jvm_options,
                server_properties={"sasl.kerberos.service.name": "kafka"},
            )
            with cluster:
                yield cls(cluster, pki, kdc, client_keytab)
        finally:
            if kdc is not None:
                kdc.stop()

    def bootstrap(self, listener: str) -> str:
        return str(self.cluster.bootstrap_servers_for(listener))

    # -- Java-style client properties, as a Flink user would write them ----------------

    def scram_properties(
        self, mechanism: str, *, password: str = USER_PASSWORD, truststore: str = "JKS"
    ) -> dict[str, str]:
        trust = {
            "JKS": (self.pki.truststore_jks, "JKS"),
            "PKCS12": (self.pki.truststore_p12, "PKCS12"),
            "PEM": (self.pki.ca_pem, "PEM"),
        }[truststore]
        props = {
            "bootstrap.servers": self.bootstrap("SCRAM"),
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": mechanism,
            "sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f"username={_jaas_quote(USER)} password={_jaas_quote(password)};"
            ),
            "ssl.truststore.location": str(trust[0]),
            "ssl.truststore.type": trust[1],
            "ssl.endpoint.identification.algorithm": "https",
        }
        if trust[1] != "PEM":
            props["ssl.truststore.password"] = STORE_PASSWORD
        return props

    def plain_properties(self, *, password: str = USER_PASSWORD) -> dict[str, str]:
        return {
            "bootstrap.servers": self.bootstrap("PLAIN"),
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "PLAIN",
            "sasl.jaas.config": (
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f"username={_jaas_quote(USER)} password={_jaas_quote(password)};"
            ),
        }

    def oauthbearer_properties(self, principal: str = USER) -> dict[str, str]:
        """OAUTHBEARER with an unsecured token, on the PLAIN listener (which enables both)."""
        return {
            "bootstrap.servers": self.bootstrap("PLAIN"),
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "OAUTHBEARER",
            "sasl.jaas.config": (
                "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
                f"unsecuredLoginStringClaim_sub={_jaas_quote(principal)} "
                'unsecuredLoginLifetimeSeconds="600";'
            ),
        }

    def mtls_properties(self, keystore: str = "JKS") -> dict[str, str]:
        base = {
            "bootstrap.servers": self.bootstrap("MTLS"),
            "security.protocol": "SSL",
            "ssl.truststore.location": str(self.pki.truststore_p12),
            "ssl.truststore.type": "PKCS12",
            "ssl.truststore.password": STORE_PASSWORD,
            "ssl.endpoint.identification.algorithm": "",
        }
        stores: Mapping[str, dict[str, str]] = {
            "JKS": {
                "ssl.keystore.location": str(self.pki.client_keystore_jks),
                "ssl.keystore.type": "JKS",
                "ssl.keystore.password": STORE_PASSWORD,
                "ssl.key.password": KEY_PASSWORD,
            },
            "PKCS12": {
                "ssl.keystore.location": str(self.pki.client_keystore_p12),
                "ssl.keystore.type": "PKCS12",
                "ssl.keystore.password": STORE_PASSWORD,
            },
            "PEM": {
                "ssl.keystore.location": str(self.pki.client_keystore_pem),
                "ssl.keystore.type": "PEM",
                "ssl.key.password": KEY_PASSWORD,
            },
            "ROGUE": {
                "ssl.keystore.location": str(self.pki.rogue_client_keystore_p12),
                "ssl.keystore.type": "PKCS12",
                "ssl.keystore.password": STORE_PASSWORD,
            },
        }
        return {**base, **stores[keystore]}

    def kerberos_properties(self, style: str = "flink") -> dict[str, str]:
        if self.kdc is None or self.client_keytab is None:
            raise RuntimeError("this SecuredKafka runs without a KDC")
        props = {
            "bootstrap.servers": self.bootstrap("KERBEROS"),
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.kerberos.service.name": "kafka",
        }
        if style == "flink":
            props.update(
                {
                    "security.kerberos.login.use-ticket-cache": "false",
                    "security.kerberos.login.keytab": str(self.client_keytab),
                    "security.kerberos.login.principal": CLIENT_PRINCIPAL,
                    "security.kerberos.login.contexts": "Client,KafkaClient",
                }
            )
        else:
            props.update(
                {
                    "sasl.mechanism": "GSSAPI",
                    "sasl.jaas.config": (
                        "com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true "
                        f"storeKey=true keyTab={_jaas_quote(str(self.client_keytab))} "
                        f"principal={_jaas_quote(CLIENT_PRINCIPAL)};"
                    ),
                }
            )
        return props

    def kerberos_env(self, ccache: Path) -> dict[str, str]:
        """Environment a Kerberos client process needs: the realm's krb5.conf and a
        private credential cache."""
        if self.kdc is None:
            raise RuntimeError("this SecuredKafka runs without a KDC")
        return {"KRB5_CONFIG": str(self.kdc.krb5_conf), "KRB5CCNAME": f"FILE:{ccache}"}
