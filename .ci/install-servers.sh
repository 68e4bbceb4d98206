#!/usr/bin/env bash
# Installs what the job-store tests need: Debian's PostgreSQL server binaries (the tests start their
# own throwaway server on a free loopback port; no system cluster is used) and the Python packages
# for the PostgreSQL store and the Flask/Django/gunicorn examples. Idempotent; call from .ci/run.
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
python -m pip install -q 'psycopg[binary]>=3.2' 'django>=4.2' 'gunicorn>=21' 'flask>=2.2'
