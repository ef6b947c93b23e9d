#!/usr/bin/env bash
# Build (or find in the cache) the Kubernetes test binaries: kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet (v1.34.4) and etcd (3.6.4).
#
#   tools/k8s-testbins/build.sh                # print the binaries' dir, building them if needed
#   tools/k8s-testbins/build.sh --cached-only  # print the dir if already built, else exit 3
#
# The dir is ${ION_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ion}/k8s-testbins/<key>/, where
# key = sha256(go.mod, go.sum, cmd sources, ldflags, `go version`). A cache hit costs a few
# milliseconds. A miss builds all five (4-7 min on 2 cores) with a throwaway GOCACHE (~3 GB,
# deleted afterwards, even on failure) into a temp dir that is then renamed into place.
# Only the dir goes to stdout; progress goes to stderr. The module proxy is whatever the
# environment's GOPROXY says.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cached_only=0
case "${1:-}" in
  --cached-only) cached_only=1 ;;
  "") ;;
  *) echo "usage: $0 [--cached-only]" >&2; exit 2 ;;
esac

K8S_VERSION=v1.34.4
LDFLAGS="-s -w -X k8s.io/component-base/version.gitVersion=${K8S_VERSION}\
 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34\
 -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=${K8S_VERSION}"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet etcd)

cache_root="${ION_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ion}/k8s-testbins"

go_bin=$(command -v go || true)
if [[ -z "$go_bin" && -x /usr/local/go/bin/go ]]; then go_bin=/usr/local/go/bin/go; fi

# Hash of the sources alone (no go version): lets --cached-only find a build without go.
source_key=$(
  cd "$here"
  { cat go.mod go.sum; find cmd -name '*.go' | LC_ALL=C sort | while read -r f; do
      printf '%s\n' "$f"; cat "$f"; done; printf '%s\n' "$LDFLAGS"; } | sha256sum | cut -c1-64
)

have_all() {
  local dir=$1 b
  for b in "${BINARIES[@]}"; do [[ -x "$dir/$b" ]] || return 1; done
}

if [[ -z "$go_bin" ]]; then
  link="$cache_root/by-source/$source_key"
  if [[ -f "$link" ]] && dir=$(<"$link") && have_all "$dir"; then echo "$dir"; exit 0; fi
  echo "k8s-testbins: no 'go' on PATH (nor /usr/local/go/bin/go) and nothing cached for these sources" >&2
  exit 3
fi

export GOTOOLCHAIN=local
go_version=$("$go_bin" version)
key=$(printf '%s\n%s\n' "$source_key" "$go_version" | sha256sum | cut -c1-32)
out="$cache_root/$key"

record_source_link() {
  mkdir -p "$cache_root/by-source"
  printf '%s\n' "$out" >"$cache_root/by-source/$source_key.tmp.$$"
  mv -f "$cache_root/by-source/$source_key.tmp.$$" "$cache_root/by-source/$source_key"
}

if have_all "$out"; then echo "$out"; exit 0; fi
if [[ $cached_only == 1 ]]; then
  echo "k8s-testbins: not built yet for key $key (run tools/k8s-testbins/build.sh)" >&2
  exit 3
fi

mkdir -p "$cache_root"
# One build at a time per cache; a second caller waits and then finds the result.
exec 9>"$cache_root/.build.lock"
flock 9
if have_all "$out"; then record_source_link; echo "$out"; exit 0; fi

tmp=$(mktemp -d "$cache_root/.build.$key.XXXXXX")
gocache=$(mktemp -d "$cache_root/.gocache.XXXXXX")
cleanup() { chmod -R u+w "$gocache" 2>/dev/null || true; rm -rf "$gocache" "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "k8s-testbins: building ${BINARIES[*]} (${K8S_VERSION}, etcd 3.6.4) with $go_version; 4-7 min on 2 cores" >&2
start=$(date +%s)
(
  cd "$here"
  GOCACHE="$gocache" "$go_bin" build -mod=readonly -buildvcs=false -trimpath \
    -ldflags "$LDFLAGS" -o "$tmp/" ./cmd/...
)
have_all "$tmp" || { echo "k8s-testbins: build finished without all binaries" >&2; exit 1; }
chmod 755 "$tmp"
rm -rf "$out"
mv "$tmp" "$out"
record_source_link
echo "k8s-testbins: built in $(($(date +%s) - start)) s into $out" >&2
echo "$out"
