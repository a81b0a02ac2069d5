#!/bin/sh
# FUSE for the power-loss simulation (tests/sim/power.py, tests/support/lazyfs.py):
# Debian's fuse3 and libfuse3-3, installed only when missing. Without root or
# apt-get it only says so, and those tests skip (under CI=true they fail).
set -eu
have() {
    command -v fusermount3 >/dev/null 2>&1 && ldconfig -p 2>/dev/null | grep -q 'libfuse3\.so\.3 '
}
have && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: fuse3/libfuse3-3 are missing and cannot be installed here (not root, or no apt-get):"
    echo "      the power-loss tests will be skipped"
    exit 0
fi
echo "installing fuse3 and libfuse3-3 for the power-loss tests"
export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y -q --no-install-recommends fuse3 libfuse3-3 >/dev/null; }
install 2>/dev/null || { apt-get update -q >/dev/null && install; }
have
