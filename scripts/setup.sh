#!/usr/bin/env bash
# Installs what the test suite needs beyond a fresh machine: pytest, the C
# compiler with its static C library (for the static-program test), and the
# programs the tests run in the view (git, sqlite3).
set -euo pipefail
if ! python3 -c 'import pytest' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check pytest
fi
missing=()
command -v gcc >/dev/null || missing+=(gcc)
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || [ -e /usr/lib/aarch64-linux-gnu/libc.a ] || missing+=(libc6-dev)
for tool in tar find du setpriv git sqlite3; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev tar findutils coreutils util-linux git sqlite3 >/dev/null
    else
        echo "setup: please install: ${missing[*]}" >&2
        exit 1
    fi
fi
