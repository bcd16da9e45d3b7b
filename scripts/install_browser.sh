#!/usr/bin/env bash
# Installs Debian's Chromium and ChromeDriver for the browser tests (tests/test_web_browser.py), if missing.
# Never fails the install: without apt (or without rights), the browser test skips and says why.
set -u
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_browser: no apt-get here; the browser test will be skipped (install chromium yourself to run it)" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "install_browser: not root and no passwordless sudo; the browser test will be skipped" >&2
    exit 0
  fi
fi
echo "install_browser: installing Debian's chromium and chromium-driver (a few minutes)" >&2
if $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null \
  && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null; then
  echo "install_browser: $(/usr/bin/chromium --version 2>/dev/null || echo chromium installed)" >&2
else
  echo "install_browser: apt-get could not install chromium; the browser test will be skipped" >&2
fi
exit 0
