#!/usr/bin/env bash
# Installs the servers and programs the test suite starts for itself, from Debian's packages:
# - PostgreSQL binaries (the job-store tests run their own throwaway server on a free loopback port;
#   no system cluster is used or started);
# - chromium (the Flask example's live page is tested in a real headless browser, driven over the
#   Chrome DevTools protocol: no driver binary is needed).
# Idempotent: installs only what is missing. Without root (or apt), it says so and the tests that
# need what is missing are skipped.
set -euo pipefail
missing=()
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
if ! command -v chromium >/dev/null 2>&1; then
  missing+=(chromium)
fi
if [ "${#missing[@]}" = 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-servers: cannot install Debian's ${missing[*]} here (needs root and apt-get);" \
       "the tests that need it (PostgreSQL job store, browser page) will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
