#!/usr/bin/env bash
# Fill the wheelhouse Ion's images install from, so `docker build --network none` works offline:
#   <cache>/wheelhouse/           third-party wheels, hash-checked against the lock's pins
#                                 (the union of deployment/docker/requirements/*.txt)
#   <cache>/wheelhouse/ion/       Ion's members, built from this tree (pip wheel --no-deps)
# with <cache> = ${ION_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ion}.
#
# Fast when done: a requirements file whose content was already downloaded (a stamp holds its
# hash) is skipped. Downloads use pip's own configuration (index, proxy) and cache, and are for
# Linux x86_64 CPython 3.11, whatever Python runs this. Needs .venv (tools/bootstrap.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."

cache=${ION_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ion}
house="$cache/wheelhouse"
py=.venv/bin/python
say() { echo "wheelhouse.sh: $*" >&2; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

[ -x "$py" ] || tools/bootstrap.sh
mkdir -p "$house/ion" "$house/.stamps"

# Debian bookworm's glibc is 2.36: every manylinux tag up to it (pip does not widen a --platform).
platforms=(--platform manylinux1_x86_64 --platform manylinux2010_x86_64 --platform manylinux2014_x86_64)
for minor in $(seq 5 36); do platforms+=(--platform "manylinux_2_${minor}_x86_64"); done

start=$EPOCHREALTIME
for req in deployment/docker/requirements/*.txt; do
  stamp="$house/.stamps/$(basename "$req").sha256"
  want=$(sha256sum "$req" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ]; then continue; fi
  say "downloading the wheels of $req (hash-checked) ..."
  "$py" -m pip download --quiet --disable-pip-version-check --require-hashes --no-deps \
    --only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 \
    "${platforms[@]}" -r "$req" -d "$house"
  echo "$want" >"$stamp"
done
say "third-party wheels ready in $(since "$start") s ($(find "$house" -maxdepth 1 -name '*.whl' | wc -l) wheels)"

start=$EPOCHREALTIME
# Rebuilt only when a member's files changed (their content hash is the stamp).
members="core handler dispatcher proto management cli"
sources=$(find $members -path '*/tests' -prune -o -name __pycache__ -prune -o -type f -print \
  | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
if [ "$(cat "$house/.stamps/ion.sha256" 2>/dev/null || true)" = "$sources" ] \
   && [ "$(find "$house/ion" -name '*.whl' | wc -l)" = 6 ]; then
  say "Ion's wheels are up to date"; echo "$house"; exit 0
fi
rm -f "$house"/ion/*.whl
# hatchling builds reproducibly: an unchanged member gives a byte-identical wheel, so image
# layers that copy it stay cached.
"$py" -m pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation --no-index \
  -w "$house/ion" ./core ./handler ./dispatcher ./proto ./management ./cli
echo "$sources" >"$house/.stamps/ion.sha256"
say "Ion's wheels built in $(since "$start") s"
echo "$house"
