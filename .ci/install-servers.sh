#!/usr/bin/env bash
# Installs the servers the test suite starts for itself: Debian's PostgreSQL binaries (the job-store
# tests run their own throwaway server on a free loopback port; no system cluster is used or started).
# Idempotent. Without root (or apt), it says so and the PostgreSQL store tests are skipped.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-servers: cannot install Debian's postgresql here (needs root and apt-get);" \
       "the PostgreSQL job-store tests will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql >/dev/null
