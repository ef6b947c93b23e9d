#!/usr/bin/env bash
# Install the pinned test emulators (Azurite, cosmosdb-server) into tools/emulators/node_modules.
# Idempotent: skipped when node_modules already matches package-lock.json. Needs node >= 20 and npm.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
stamp="node_modules/.ion-lock.sha256"
want="$(sha256sum package-lock.json | cut -d' ' -f1)"

if grep -q '"resolved"' package-lock.json; then
  echo "install.sh: package-lock.json records resolved URLs; run: node strip-resolved.js" >&2
  exit 1
fi

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" \
      && -x node_modules/.bin/azurite-blob && -f node_modules/@vercel/cosmosdb-server/package.json ]]; then
  echo "install.sh: emulators already installed in $here/node_modules"
  exit 0
fi

command -v npm >/dev/null || { echo "install.sh: npm not found; install Node.js >= 20" >&2; exit 1; }
echo "install.sh: npm ci in $here (about a minute)"
npm ci --no-audit --no-fund --loglevel=error
echo "$want" > "$stamp"
echo "install.sh: installed azurite $(node -p 'require("azurite/package.json").version')," \
  "cosmosdb-server $(node -p 'require("@vercel/cosmosdb-server/package.json").version')"
