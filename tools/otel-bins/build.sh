#!/usr/bin/env bash
# Build (or find in the cache) the trace collector the telemetry test sends spans to:
# Jaeger v1.76.0 (github.com/jaegertracing/jaeger/cmd/jaeger, the all-in-one binary that takes
# OTLP and serves the query API).
#
#   tools/otel-bins/build.sh                # print ION_JAEGER=<path>, building it if needed
#   tools/otel-bins/build.sh --cached-only  # print it if already built, else exit 3
#
# The binary is ${ION_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ion}/otel-bins/jaeger-<key>/jaeger,
# key = sha256(pin, ldflags, `go version`). A cache hit costs milliseconds. A miss builds the
# module source's ./cmd/jaeger with GOTOOLCHAIN=local, -trimpath -ldflags="-s -w", a throwaway GOCACHE and
# GOMODCACHE (deleted afterwards, even on failure), into a temp dir renamed into place.
# GOPROXY is the environment's (`go env GOPROXY`) with a trailing `direct` dropped.
# Only ION_JAEGER=... goes to stdout; progress goes to stderr. One build at a time (a lock).
{
set -euo pipefail

JAEGER_VERSION=v1.76.0
JAEGER_MODULE=github.com/jaegertracing/jaeger@${JAEGER_VERSION}
JAEGER_PKG=github.com/jaegertracing/jaeger/cmd/jaeger@${JAEGER_VERSION}
JAEGER_LDFLAGS="-s -w"

cached_only=0
case "${1:-}" in
  --cached-only) cached_only=1 ;;
  "") ;;
  *) echo "usage: $0 [--cached-only]" >&2; exit 2 ;;
esac

cache_root="${ION_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ion}/otel-bins"
log() { echo "otel-bins: $*" >&2; }

go_bin=$(command -v go || true)
if [[ -z "$go_bin" && -x /usr/local/go/bin/go ]]; then go_bin=/usr/local/go/bin/go; fi
export GOTOOLCHAIN=local

# Without go, the newest build of this pin (any go version) still counts.
source_key=$(printf '%s\n%s\n' "$JAEGER_PKG" "$JAEGER_LDFLAGS" | sha256sum | cut -c1-32)
if [[ -z "$go_bin" ]]; then
  link="$cache_root/by-source/$source_key"
  if [[ -f "$link" ]] && bin=$(<"$link") && [[ -x "$bin" ]]; then echo "ION_JAEGER=$bin"; exit 0; fi
  log "no 'go' on PATH (nor /usr/local/go/bin/go) and no jaeger cached for $JAEGER_VERSION"
  exit 3
fi

go_version=$("$go_bin" version)
key=$(printf '%s\n%s\n' "$source_key" "$go_version" | sha256sum | cut -c1-32)
dest_dir="$cache_root/jaeger-$key"
bin="$dest_dir/jaeger"

record_source_link() {
  mkdir -p "$cache_root/by-source"
  printf '%s\n' "$bin" >"$cache_root/by-source/$source_key.tmp.$$"
  mv -f "$cache_root/by-source/$source_key.tmp.$$" "$cache_root/by-source/$source_key"
}

if [[ -x "$bin" ]]; then echo "ION_JAEGER=$bin"; exit 0; fi
if [[ $cached_only == 1 ]]; then
  log "jaeger $JAEGER_VERSION not built yet (run tools/otel-bins/build.sh)"
  exit 3
fi

proxy=${GOPROXY:-$("$go_bin" env GOPROXY)}
proxy=${proxy%,direct}
proxy=${proxy%|direct}
if [[ -z "$proxy" || "$proxy" == direct || "$proxy" == off ]]; then
  log "GOPROXY is '${proxy:-unset}': jaeger is fetched from a Go module proxy; set GOPROXY"
  exit 5
fi

mkdir -p "$cache_root"
exec 9>"$cache_root/.build.lock"
flock 9
if [[ -x "$bin" ]]; then record_source_link; echo "ION_JAEGER=$bin"; exit 0; fi

tmp=$(mktemp -d "$cache_root/.build.XXXXXX")
gocache=$(mktemp -d "$cache_root/.gocache.XXXXXX")
gomodcache=$(mktemp -d "$cache_root/.gomodcache.XXXXXX")
cleanup() {
  chmod -R u+w "$gomodcache" "$gocache" "$tmp" 2>/dev/null || true
  rm -rf "$gocache" "$gomodcache" "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$(date +%s)
log "building $JAEGER_PKG with $go_version (GOPROXY=$proxy); 37 min measured on 2 busy cores"
# `go install jaeger@v1.76.0` is refused (its go.mod has a replace directive), so the module
# source is downloaded, copied and built as the main module, where its replace applies.
export GOCACHE="$gocache" GOMODCACHE="$gomodcache" GOPROXY="$proxy" GOFLAGS="-mod=mod -buildvcs=false"
src=$("$go_bin" mod download -json "$JAEGER_MODULE" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p') || true
[[ -n "$src" && -f "$src/go.mod" ]] || {
  log "could not download $JAEGER_MODULE (go mod download -json $JAEGER_MODULE says why)"
  exit 1
}
cp -r "$src" "$tmp/src"
chmod -R u+w "$tmp/src"
(cd "$tmp/src" && "$go_bin" build -trimpath -ldflags "$JAEGER_LDFLAGS" -o "$tmp/jaeger" ./cmd/jaeger)
rm -rf "$tmp/src"
[[ -x "$tmp/jaeger" ]] || { log "go install finished without a jaeger binary"; exit 1; }
chmod 755 "$tmp"
rm -rf "$dest_dir"
mv "$tmp" "$dest_dir"
record_source_link
log "built jaeger in $(($(date +%s) - start)) s: $bin"
echo "ION_JAEGER=$bin"
exit
}
