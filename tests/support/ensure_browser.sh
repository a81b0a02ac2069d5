#!/bin/sh
# A real browser for the web interface's end-to-end tests (tests/web): Debian's
# chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver),
# installed only when missing. Without root or apt-get it only says so, and
# those tests skip (under CI=true they fail).
set -eu
have() {
    [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]
}
have && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: chromium/chromium-driver are missing and cannot be installed here (not root, or no apt-get):"
    echo "      the browser tests will be skipped"
    exit 0
fi
echo "installing chromium and chromium-driver for the browser tests"
export DEBIAN_FRONTEND=noninteractive
install() { apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null; }
install 2>/dev/null || { apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null && install; }
have
