#!/bin/sh
# Make a Chromium available for the PayShack portal sync (Playwright drives it via executable_path).
# Uses PAYOPS_CHROMIUM_PATH when set, else /usr/bin/chromium. Installs Debian/Ubuntu's package when
# missing and we are root; otherwise says what to install. Never fails the build: the browser tests
# skip with a clear reason when no Chromium exists.
set -u
CHROMIUM="${PAYOPS_CHROMIUM_PATH:-/usr/bin/chromium}"

if [ -x "$CHROMIUM" ]; then
    exit 0
fi
for candidate in /usr/bin/chromium /usr/bin/chromium-browser; do
    if [ -x "$candidate" ] && [ "$candidate" != "$CHROMIUM" ]; then
        echo "ensure_chromium: found $candidate; set PAYOPS_CHROMIUM_PATH=$candidate to use it" >&2
        exit 0
    fi
done

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium: installing Debian's chromium (apt-get)…" >&2
    if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; then
        [ -x /usr/bin/chromium ] && exit 0
    fi
    echo "ensure_chromium: apt-get could not install chromium" >&2
fi

cat >&2 <<MSG
ensure_chromium: no Chromium at $CHROMIUM; the PayShack browser tests will be skipped.
  Debian/Ubuntu (as root):  apt-get install -y chromium
  Fedora:                   dnf install -y chromium
  macOS:                    brew install --cask chromium, then
                            export PAYOPS_CHROMIUM_PATH="/Applications/Chromium.app/Contents/MacOS/Chromium"
  or any Chromium/Chrome:   export PAYOPS_CHROMIUM_PATH=/path/to/chrome
MSG
exit 0
