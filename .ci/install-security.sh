#!/usr/bin/env bash
# System packages the security plugin's tests need (Debian/Ubuntu, run as root):
# - krb5-kdc, krb5-admin-server, krb5-user: an MIT Kerberos KDC the tests start on a
#   loopback port (krb5kdc, kdb5_util, kadmin.local) and kinit, which librdkafka runs
#   with the client keytab;
# - librdkafka-dev, libsasl2-modules-gssapi-mit, pkg-config: the `gssapi` tox
#   environment compiles confluent-kafka against Debian's librdkafka, which is built
#   with Cyrus SASL (GSSAPI); the PyPI wheels are not.
# Idempotent: does nothing when everything is installed already.
# --check: install nothing; list what is missing and exit 3 if anything is.
set -euo pipefail
check_only=0
[ "${1:-}" = "--check" ] && check_only=1

packages=(
  krb5-kdc
  krb5-admin-server
  krb5-user
  libsasl2-modules-gssapi-mit
  librdkafka-dev
  pkg-config
  gcc
  libc6-dev
)

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "security test packages already installed"
  exit 0
fi

if [ "$check_only" -eq 1 ]; then
  echo "missing Debian packages: ${missing[*]}"
  exit 3
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "missing packages ${missing[*]}: run this script as root (apt-get install)" >&2
  exit 1
fi

echo "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# krb5-config asks for a default realm; the tests bring their own krb5.conf.
apt-get install -y -q --no-install-recommends "${missing[@]}"
