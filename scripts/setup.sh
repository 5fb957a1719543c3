#!/usr/bin/env bash
# Installs what the test suite needs beyond a fresh machine: pytest, the C
# compiler with its static C library (for the static-program test), the
# programs the tests run in the view (git, sqlite3, GNU patch, vim, inotifywait,
# a static busybox), Go
# (to build a Go program the preload cannot follow), and Wine (64-bit) with the
# MinGW-w64 cross compiler for the Windows-program tests (tests/test_wine.py),
# and gcc-multilib to build a 32-bit program (x86_64 only).
set -euo pipefail
if ! python3 -c 'import pytest' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check pytest
fi
# The Python package's wheel and type checks (make wheel, make typecheck).
for mod in maturin mypy; do
    python3 -c "import $mod" 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check "$mod"
done
missing=()
packages=()
need() { # need PACKAGE WHAT: install PACKAGE, which provides WHAT
    missing+=("$2")
    packages+=("$1")
}
command -v gcc >/dev/null || need gcc gcc
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || [ -e /usr/lib/aarch64-linux-gnu/libc.a ] || need libc6-dev libc6-dev
command -v tar >/dev/null || need tar tar
command -v find >/dev/null || need findutils find
command -v du >/dev/null || need coreutils du
command -v setpriv >/dev/null || need util-linux setpriv
command -v git >/dev/null || need git git
command -v sqlite3 >/dev/null || need sqlite3 sqlite3
command -v patch >/dev/null || need patch patch
command -v diff >/dev/null || need diffutils diff
command -v inotifywait >/dev/null || need inotify-tools inotifywait
command -v go >/dev/null || need golang go
command -v vim >/dev/null || need vim vim
command -v bwrap >/dev/null || need bubblewrap bwrap
# A static program for the mount engine's tests (tests/test_mount_engine.py).
[ -x /bin/busybox ] || need busybox-static busybox
# io_uring for the mount engine's io_uring test (tests/c/uring.c).
[ -e /usr/include/liburing.h ] || need liburing-dev liburing.h
if [ "$(uname -m)" = x86_64 ]; then
    # wine64 brings the loader (/usr/lib/wine/wine64) and wineserver; the
    # `wine` package the `wine`, `wineboot` and `wineserver` commands.
    { [ -x /usr/lib/wine/wine64 ] || command -v wine64 >/dev/null; } || need wine64 wine64
    { command -v wine >/dev/null && command -v wineboot >/dev/null && command -v wineserver >/dev/null; } || need wine wine
    command -v x86_64-w64-mingw32-gcc >/dev/null || need gcc-mingw-w64-x86-64 x86_64-w64-mingw32-gcc
    # A 32-bit C program for the 32-bit tests (tests/test_containers.py).
    echo 'int main(void){return 0;}' | gcc -m32 -x c -o /dev/null - 2>/dev/null || need gcc-multilib "gcc -m32"
fi
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
    else
        echo "setup: please install: ${missing[*]}" >&2
        exit 1
    fi
fi
