#!/usr/bin/env bash
# Prepare this machine to run a one-node Kubernetes test cluster (tests/kube/cluster.py).
# Idempotent; a fast no-op when everything is already there.
#
#  * installs with apt-get, only when missing: containerd, runc, the CNI plugins
#    (containernetworking-plugins, in /usr/lib/cni), iptables, iproute2, busybox-static (the
#    test image's only binary), gcc and libc6-dev (to build the pause binary);
#  * builds the pause image's binary with `gcc -static` from the Kubernetes v1.34.4 sources in
#    the Go module cache, cached by content hash in
#    ${ION_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ion}/pause/<key>/pause, with a `latest`
#    symlink to the current key's dir. Prints that binary's path.
#
# Needs root (the cluster needs root anyway). The Kubernetes binaries are built separately by
# tools/k8s-testbins/build.sh.
set -euo pipefail

K8S_VERSION=v1.34.4
cache_root="${ION_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ion}"

if [[ $(id -u) != 0 ]]; then
  echo "k8s-node/prepare: must run as root (the test cluster's node needs root)" >&2
  exit 1
fi

# --- packages -----------------------------------------------------------------------------
missing=()
need() { # need <package> <test command...>
  local pkg=$1; shift
  "$@" >/dev/null 2>&1 || missing+=("$pkg")
}
need containerd command -v containerd
need containerd command -v ctr
need runc command -v runc
need containernetworking-plugins test -x /usr/lib/cni/bridge -a -x /usr/lib/cni/host-local \
  -a -x /usr/lib/cni/portmap -a -x /usr/lib/cni/loopback
need iptables command -v iptables
need iproute2 command -v ip
need busybox-static dpkg-query -W -f='${Status}' busybox-static
need gcc command -v gcc
need libc6-dev test -f /usr/lib/x86_64-linux-gnu/libc.a -o -f /usr/lib/aarch64-linux-gnu/libc.a

if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "k8s-node/prepare: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # An index fetched today is good enough; refresh it only when the install fails without it.
  if ! apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
    apt-get update >&2
    apt-get install -y --no-install-recommends "${missing[@]}" >&2
  fi
fi
# The distribution starts a system containerd on install on some hosts; the cluster runs its
# own instance with its own socket and state, so a system one is harmless and left alone.

# --- pause binary ---------------------------------------------------------------------------
go_bin=$(command -v go || true)
if [[ -z "$go_bin" && -x /usr/local/go/bin/go ]]; then go_bin=/usr/local/go/bin/go; fi

modcache=""
if [[ -n "$go_bin" ]]; then modcache=$(GOTOOLCHAIN=local "$go_bin" env GOMODCACHE); fi
src="${modcache:-$HOME/go/pkg/mod}/k8s.io/kubernetes@${K8S_VERSION}/build/pause/linux/pause.c"
if [[ ! -f "$src" ]]; then
  if [[ -z "$go_bin" ]]; then
    if [[ -x "$cache_root/pause/latest/pause" ]]; then
      echo "$cache_root/pause/latest/pause"
      exit 0
    fi
    echo "k8s-node/prepare: no go to fetch k8s.io/kubernetes@${K8S_VERSION} (pause.c)" >&2
    exit 1
  fi
  (cd "$(dirname "$0")/../k8s-testbins" &&
    GOTOOLCHAIN=local GOFLAGS=-mod=readonly "$go_bin" mod download k8s.io/kubernetes >&2)
fi

key=$({ cat "$src"; gcc --version | head -1; echo "-Os -static -DVERSION=${K8S_VERSION}-ion"; } |
  sha256sum | cut -c1-32)
dir="$cache_root/pause/$key"
if [[ ! -x "$dir/pause" ]]; then
  mkdir -p "$cache_root/pause"
  tmp=$(mktemp -d "$cache_root/pause/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  gcc -Os -Wall -Werror -static -DVERSION="${K8S_VERSION}-ion" -o "$tmp/pause" "$src"
  strip "$tmp/pause"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  echo "k8s-node/prepare: built $dir/pause" >&2
fi
if [[ "$(readlink "$cache_root/pause/latest" 2>/dev/null)" != "$key" ]]; then
  ln -sfn "$key" "$cache_root/pause/latest.tmp.$$"
  mv -Tf "$cache_root/pause/latest.tmp.$$" "$cache_root/pause/latest"
fi
echo "$dir/pause"
