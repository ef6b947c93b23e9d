#!/usr/bin/env bash
# Create .venv with Python 3.11+ and install every pinned dependency (hash-checked) and Ion's
# workspace members (editable). Re-runs only when requirements/lock.txt or a member changes.
set -euo pipefail
cd "$(dirname "$0")/.."

pick_python() {
  for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11; do
    [ -n "$candidate" ] || continue
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "error: Ion needs Python 3.11 or newer on PATH (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

members="core handler dispatcher proto management cli"
stamp_of() { cat requirements/lock.txt $(for m in $members; do echo "$m/pyproject.toml"; done) | sha256sum | cut -d' ' -f1; }

if [ ! -x .venv/bin/python ]; then
  py=$(pick_python)
  echo "creating .venv with $($py --version)" >&2
  "$py" -m venv .venv
fi
want=$(stamp_of)
if [ "$(cat .venv/.ion-stamp 2>/dev/null || true)" != "$want" ]; then
  echo "installing pinned dependencies (hash-checked) ..." >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements/lock.txt
  editable=()
  for m in $members; do editable+=(-e "$m"); done
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation "${editable[@]}"
  echo "$want" > .venv/.ion-stamp
fi
