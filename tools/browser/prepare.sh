#!/usr/bin/env bash
# Headless Chromium for the web console's browser test (tests/console): Debian's `chromium`
# package (Playwright cannot download its own browser here) and a font for its text.
# Idempotent: a fast no-op when it is installed. Prints the browser's path.
#
# Installs with apt-get, so it needs root; the test reads the path from ION_CHROMIUM.
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
dpkg-query -W -f='${Status}' fonts-dejavu-core 2>/dev/null | grep -q "ok installed" ||
  missing+=(fonts-dejavu-core)

if ((${#missing[@]})); then
  if [[ $(id -u) != 0 ]]; then
    echo "browser/prepare: ${missing[*]} missing and not root: install with" \
      "'apt-get install ${missing[*]}'" >&2
    exit 1
  fi
  echo "browser/prepare: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # An index fetched today is good enough; refresh it only when the install fails without it.
  if ! apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
    apt-get update >&2
    apt-get install -y --no-install-recommends "${missing[@]}" >&2
  fi
fi
command -v chromium
