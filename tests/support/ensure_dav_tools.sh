#!/bin/sh
# The WebDAV tests' outside clients (tests/dav): Debian's litmus (the WebDAV
# compliance suite) and rclone, installed only when missing. Without root or
# apt-get it only says so, and those tests skip (under CI=true they fail).
set -eu
have() {
    command -v litmus >/dev/null 2>&1 && command -v rclone >/dev/null 2>&1
}
have && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: litmus/rclone are missing and cannot be installed here (not root, or no apt-get):"
    echo "      the WebDAV compliance and rclone tests will be skipped"
    exit 0
fi
echo "installing litmus and rclone for the WebDAV tests"
export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y -q --no-install-recommends litmus rclone >/dev/null; }
install 2>/dev/null || { apt-get update -q >/dev/null && install; }
have
