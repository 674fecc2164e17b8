"""Java key and trust stores (JKS, PKCS12, PEM) turned into files librdkafka reads.

librdkafka reads PEM files (``ssl.ca.location``, ``ssl.certificate.location``,
``ssl.key.location``) and PKCS12 client keystores (``ssl.keystore.location``), but no
JKS and no PKCS12 truststore. Converted material goes to one private directory per
process (mode 0700, files 0600, removed at exit). A converted private key is never
written in clear: it is re-encrypted with a random password that only this process
knows and hands to librdkafka as ``ssl.key.password``.

JKS files are read with pyjks (the ``jks`` extra) rather than by running the JDK's
``keytool``: a Python client must not need a JVM, and pyjks reads JKS and JCEKS in
process, with nothing but the source file ever touching the disk in clear.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from streamplug.errors import ConfigError
from streamplug.secrets import MASK

__all__ = [
    "JKS_INSTALL_HINT",
    "KeyMaterial",
    "PrivateFiles",
    "load_keystore",
    "load_truststore",
    "private_files",
    "sniff_store_type",
]

STORE_TYPES = ("JKS", "PKCS12", "PEM")
_JKS_MAGIC = b"\xfe\xed\xfe\xed"
_JCEKS_MAGIC = b"\xce\xce\xce\xce"

JKS_INSTALL_HINT = (
    "reading JKS stores needs pyjks: pip install 'streamplug-kafka-security[jks]' "
    "(or convert the store once: keytool -importkeystore -srckeystore STORE.jks "
    "-destkeystore STORE.p12 -deststoretype PKCS12, and set the type to PKCS12)"
)


def sniff_store_type(path: str, option: str) -> str:
    """``JKS``, ``PKCS12`` or ``PEM``, judged by the file's first bytes: a store's
    declared type is often missing or stale, its magic number never is."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        raise ConfigError(
            f"{option}={path!r} cannot be read ({exc.strerror}): point it at an existing file",
            option=option,
        ) from None
    if head.startswith((_JKS_MAGIC, _JCEKS_MAGIC)):
        return "JKS"
    if head.lstrip().startswith(b"-----BEGIN") or head.lstrip().startswith(b"Bag Attributes"):
        return "PEM"
    return "PKCS12"


def _read(path: str, option: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{option}={path!r} cannot be read ({exc.strerror}): point it at an existing file",
            option=option,
        ) from None


def _pyjks() -> object:
    try:
        import jks
    except ImportError:
        raise ImportError(JKS_INSTALL_HINT) from None
    return jks


@attrs.frozen
class KeyMaterial:
    """A client private key with its certificate chain (leaf first)."""

    key: object = attrs.field(repr=lambda _: MASK)
    chain: tuple[x509.Certificate, ...]


def _load_jks(data: bytes, path: str, option: str, password: str | None) -> object:
    jks = _pyjks()
    try:
        return jks.KeyStore.loads(data, password, try_decrypt_keys=False)  # type: ignore[attr-defined]
    except jks.util.KeystoreSignatureException:  # type: ignore[attr-defined]
        raise ConfigError(
            f"the password does not open the JKS store {option}={path!r} (integrity check "
            f"failed): check {option.rsplit('.', 1)[0]}.password",
            option=option,
        ) from None
    except jks.util.KeystoreException as exc:  # type: ignore[attr-defined]
        raise ConfigError(
            f"{option}={path!r} is not a readable JKS/JCEKS store ({type(exc).__name__})",
            option=option,
        ) from None


def load_truststore(path: str, store_type: str, password: str | None) -> list[x509.Certificate]:
    """The trusted certificates of ``ssl.truststore.location``."""
    option = "ssl.truststore.location"
    data = _read(path, option)
    certs: list[x509.Certificate] = []
    if store_type == "PEM":
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError:
            certs = []
    elif store_type == "JKS":
        store = _load_jks(data, path, option, password)
        for entry in store.certs.values():  # type: ignore[attr-defined]
            certs.append(x509.load_der_x509_certificate(entry.cert))
    else:
        certs = _pkcs12_certs(data, path, password)
    if not certs:
        raise ConfigError(
            f"{option}={path!r} ({store_type}) holds no trusted certificate: add the CA "
            "certificate that signed the brokers' certificates",
            option=option,
        )
    return certs


def _pkcs12_certs(data: bytes, path: str, password: str | None) -> list[x509.Certificate]:
    option = "ssl.truststore.location"
    # Java opens a PKCS12 truststore without a password (it skips the integrity check);
    # OpenSSL needs one when the file is MAC-protected, so try what we have.
    attempts = [password.encode()] if password else [None, b""]
    for attempt in attempts:
        try:
            loaded = pkcs12.load_pkcs12(data, attempt)
        except ValueError:
            continue
        certs = [c.certificate for c in loaded.additional_certs]
        if loaded.cert is not None:
            certs.insert(0, loaded.cert.certificate)
        return certs
    raise ConfigError(
        f"{option}={path!r} cannot be opened as PKCS12: wrong or missing "
        "ssl.truststore.password, or not a PKCS12 file (set ssl.truststore.type)",
        option=option,
    )


def load_keystore(
    path: str, store_type: str, store_password: str | None, key_password: str | None
) -> KeyMaterial:
    """The single private key entry of ``ssl.keystore.location``."""
    option = "ssl.keystore.location"
    data = _read(path, option)
    if store_type == "JKS":
        return _jks_key(data, path, store_password, key_password)
    if store_type == "PEM":
        return pem_key_material(data, key_password, option=option, where=repr(path))
    password = store_password or key_password
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(
            data, password.encode() if password else None
        )
    except ValueError:
        raise ConfigError(
            f"ssl.keystore.password does not open the PKCS12 keystore {option}={path!r} "
            "(or the file is not PKCS12: set ssl.keystore.type)",
            option="ssl.keystore.password",
        ) from None
    if key is None or cert is None:
        raise ConfigError(
            f"{option}={path!r} holds no private key with a certificate: a client keystore "
            "needs one key entry",
            option=option,
        )
    return KeyMaterial(key, (cert, *extra))


def _jks_key(
    data: bytes, path: str, store_password: str | None, key_password: str | None
) -> KeyMaterial:
    option = "ssl.keystore.location"
    jks = _pyjks()
    store = _load_jks(data, path, option, store_password)
    entries = list(store.private_keys.values())  # type: ignore[attr-defined]
    if len(entries) != 1:
        raise ConfigError(
            f"{option}={path!r} holds {len(entries)} private key entries; librdkafka uses "
            "exactly one: keep one key entry in the client keystore",
            option=option,
        )
    entry = entries[0]
    # Java's default: the key password is the store password unless ssl.key.password says.
    password = key_password or store_password
    try:
        entry.decrypt(password or "")
    except jks.util.DecryptionFailureException:  # type: ignore[attr-defined]
        raise ConfigError(
            f"the key entry {entry.alias!r} of {option}={path!r} cannot be decrypted: "
            "set ssl.key.password to the key's password (it defaults to ssl.keystore.password)",
            option="ssl.key.password",
        ) from None
    key = serialization.load_der_private_key(entry.pkey_pkcs8, None)
    chain = tuple(x509.load_der_x509_certificate(der) for _kind, der in entry.cert_chain)
    return KeyMaterial(key, chain)


def pem_key_material(data: bytes, password: str | None, *, option: str, where: str) -> KeyMaterial:
    """Key and chain from PEM text holding a (possibly encrypted) key and certificates."""
    blocks = _pem_blocks(data)
    keys = [b for b in blocks if b"PRIVATE KEY" in b.split(b"\n", 1)[0]]
    certs = [b for b in blocks if b.startswith(b"-----BEGIN CERTIFICATE")]
    if len(keys) != 1:
        raise ConfigError(
            f"{option} ({where}) must hold exactly one PEM private key, found {len(keys)}",
            option=option,
        )
    try:
        key = serialization.load_pem_private_key(keys[0], password.encode() if password else None)
    except (ValueError, TypeError):
        raise ConfigError(
            f"the private key in {option} ({where}) cannot be read: wrong or missing "
            "ssl.key.password",
            option="ssl.key.password",
        ) from None
    return KeyMaterial(key, tuple(x509.load_pem_x509_certificate(c) for c in certs))


def pem_certificates(data: bytes, *, option: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise ConfigError(f"{option} holds no PEM certificate", option=option)
    return certs


def _pem_blocks(data: bytes) -> list[bytes]:
    blocks: list[bytes] = []
    rest = data
    while True:
        start = rest.find(b"-----BEGIN ")
        if start < 0:
            return blocks
        label_end = rest.find(b"-----", start + 11)
        label = rest[start + 11 : label_end]
        end_marker = b"-----END " + label + b"-----"
        end = rest.find(end_marker, label_end)
        if label_end < 0 or end < 0:
            return blocks
        blocks.append(rest[start : end + len(end_marker)] + b"\n")
        rest = rest[end + len(end_marker) :]


class PrivateFiles:
    """One private directory per process for converted stores, deleted at exit.

    Conversions are cached by source (path, size, mtime and a digest of the passwords),
    so the many clients a job builds from one configuration share one set of files.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dir: Path | None = None
        self._cache: dict[tuple[object, ...], tuple[str, ...]] = {}
        self._written: set[str] = set()

    @property
    def directory(self) -> Path:
        with self._lock:
            if self._dir is None:
                # mkdtemp creates the directory with mode 0700.
                self._dir = Path(tempfile.mkdtemp(prefix="streamplug-security-"))
                atexit.register(self.cleanup)
            return self._dir

    def write(self, name: str, data: bytes) -> str:
        """Write ``data`` to a new 0600 file in the private directory; return its path."""
        path = self.directory / f"{secrets.token_hex(8)}-{name}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        with self._lock:
            self._written.add(str(path))
        return str(path)

    def cached(self, key: tuple[object, ...]) -> tuple[str, ...] | None:
        with self._lock:
            found = self._cache.get(key)
            written = set(self._written)
        # A cached entry may hold a password next to its paths; only paths are checked.
        if found is not None and all(os.path.exists(p) for p in found if p in written):
            return found
        return None

    def remember(self, key: tuple[object, ...], paths: Sequence[str]) -> None:
        with self._lock:
            self._cache[key] = tuple(paths)

    def cleanup(self) -> None:
        with self._lock:
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
            self._cache.clear()
            self._written.clear()


_FILES = PrivateFiles()


def private_files() -> PrivateFiles:
    return _FILES


def source_key(kind: str, path: str, *secrets_: str | None) -> tuple[object, ...]:
    """A cache key for a conversion: the file's identity plus a digest of the passwords
    (so a password change converts again, and no password is kept in the cache)."""
    st = os.stat(path)
    digest = hashlib.sha256("\0".join(s or "" for s in secrets_).encode()).hexdigest()
    return (kind, os.path.realpath(path), st.st_size, st.st_mtime_ns, digest)


def write_ca_bundle(certs: Sequence[x509.Certificate]) -> str:
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    return _FILES.write("ca.pem", pem)


def write_key_material(material: KeyMaterial) -> tuple[str, str, str]:
    """Write the chain and the re-encrypted key; return (cert path, key path, key password)."""
    password = secrets.token_urlsafe(24)
    key_pem = material.key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password.encode()),
    )
    chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in material.chain)
    cert_path = _FILES.write("certificate.pem", chain_pem)
    key_path = _FILES.write("key.pem", key_pem)
    return cert_path, key_path, password
