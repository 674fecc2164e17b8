#!/usr/bin/env bash
# Pre-fetch the Apache Kafka broker jars the integration tests launch (KRaft, Java 17).
# Maven resolves org.apache.kafka:kafka_2.13 and its runtime dependencies from Maven
# Central into ~/.m2 and the launcher's flat classpath directory
# (~/.cache/streamplug/kafka-<version>/lib, or $STREAMPLUG_KAFKA_LIBS). Idempotent:
# a second run only checks the directory. Uses jars.py directly (standard library
# only) so it works before any Python package is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${STREAMPLUG_KAFKA_BOOTSTRAP:-}" ]; then
  echo "STREAMPLUG_KAFKA_BOOTSTRAP is set: tests use that cluster; fetching the jars anyway for the 3-node tests"
fi
for tool in java mvn; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "error: '$tool' not found; install a Java 17 JDK and Maven (Debian: apt-get install openjdk-17-jdk-headless maven)" >&2
    exit 1
  fi
done
python3 plugins/testing/streamplug_testing/jars.py "$@"
