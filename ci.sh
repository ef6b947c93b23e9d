#!/usr/bin/env bash
# The same checks CI runs: lint, then the whole test suite, then the demo.
set -euo pipefail
cd "$(dirname "$0")"
make lint
make test
make demo
