#!/usr/bin/env bash
# System packages the integration suite needs beyond Java and Maven (Debian/Ubuntu):
# - prometheus: a real Prometheus server scrapes a running job's /metrics endpoint
#   (tests/e2e/test_operability_prometheus.py); without it that test skips, naming the
#   command below.
# tox runs this before the integration environment. As root it installs what is
# missing; otherwise it prints the command to run and exits 0 (the test then skips).
# Idempotent. --check: install nothing; list what is missing and exit 3 if anything is.
set -euo pipefail
check_only=0
[ "${1:-}" = "--check" ] && check_only=1

packages=(prometheus)
install_command="sudo apt-get install -y --no-install-recommends ${packages[*]}"

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "system test packages already installed: ${packages[*]}"
  exit 0
fi
if [ "$check_only" -eq 1 ]; then
  echo "missing Debian packages: ${missing[*]} (install: $install_command)"
  exit 3
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "missing Debian packages ${missing[*]}: the tests that need them skip; install them with: $install_command" >&2
  exit 0
fi

echo "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Debian's package would start its own server through the init system: the tests start
# the one they need, so nothing is started here.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod +x "$policy"
  created_policy=1
fi
trap '[ "$created_policy" -eq 1 ] && rm -f "$policy"' EXIT
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
