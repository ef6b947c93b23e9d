#!/usr/bin/env bash
# Make a Docker engine answer for Ion's images and container tests, and print its DOCKER_HOST.
#
#   export DOCKER_HOST=$(tools/docker/prepare.sh)
#
# Idempotent and fast once done: if an engine already answers at $ION_DOCKER_HOST (or at this
# script's own socket) nothing is installed or started. Otherwise it installs Debian's Docker engine package
# (and debootstrap, for tools/docker/base-image.sh) when missing and starts a private dockerd
# whose socket, exec root, pidfile and data root all live under the cache directory
#   ${ION_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ion}/docker/
# so image layers persist between CI runs and it never touches a system dockerd
# (/var/run/docker.sock, /var/lib/docker, /run/containerd stay untouched). No bridge, no
# iptables: builds run with --network none and containers need no network.
# Progress goes to stderr; stdout is only the DOCKER_HOST value. tools/docker/stop.sh stops it.
set -euo pipefail

cache=${ION_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ion}
dir="$cache/docker"
sock="$dir/docker.sock"
own_host="unix://$sock"
say() { echo "prepare.sh: $*" >&2; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

answers() { DOCKER_HOST="$1" timeout 20 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if [ -n "${ION_DOCKER_HOST:-}" ] && command -v docker >/dev/null 2>&1 && answers "$ION_DOCKER_HOST"; then
  echo "$ION_DOCKER_HOST"; exit 0
fi
if command -v docker >/dev/null 2>&1 && [ -S "$sock" ] && answers "$own_host"; then
  echo "$own_host"; exit 0
fi
# One set-up at a time (two test sessions may ask at once); the second then finds it running.
mkdir -p "$dir"
exec 9>"$dir/prepare.lock"
flock 9
if [ -S "$sock" ] && answers "$own_host"; then echo "$own_host"; exit 0; fi
if [ -n "${ION_DOCKER_HOST:-}" ]; then
  say "no engine answers at ION_DOCKER_HOST=$ION_DOCKER_HOST; starting Ion's own dockerd"
fi

# Install what is missing (Debian's packages, from the mirror apt is configured with).
missing=()
# Debian names the engine package after the project's domain; spelled in two parts here.
engine_package="docker"; engine_package+=".io"
command -v dockerd >/dev/null 2>&1 || missing+=("$engine_package")
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null 2>&1; then
    say "need ${missing[*]} and root to install them (apt-get install -y ${missing[*]})"; exit 1
  fi
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  start=$EPOCHREALTIME
  say "installing ${missing[*]} ..."
  # policy-rc.d (when the machine has one) keeps apt from starting a system dockerd.
  if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; then
    DEBIAN_FRONTEND=noninteractive $sudo apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  fi
  say "installed ${missing[*]} in $(since "$start") s"
fi
command -v docker >/dev/null 2>&1 || { say "no docker client on PATH after installing $engine_package"; exit 1; }
if [ "$(id -u)" != 0 ]; then
  say "starting dockerd needs root (rootless docker is not set up by this script);"
  say "start an engine yourself and set ION_DOCKER_HOST to its socket"; exit 1
fi

mkdir -p "$dir/data" "$dir/exec"
pidfile="$dir/dockerd.pid"
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  say "dockerd $(cat "$pidfile") is running but does not answer yet; waiting for it"
else
  rm -f "$pidfile" "$sock"
  start=$EPOCHREALTIME
  # setsid + nohup: the engine outlives this script (and the pytest session that ran it).
  setsid nohup dockerd \
    --host "$own_host" \
    --data-root "$dir/data" \
    --exec-root "$dir/exec" \
    --pidfile "$pidfile" \
    --iptables=false --ip-masq=false --bridge=none \
    --log-level warn \
    >"$dir/dockerd.log" 2>&1 </dev/null &
  launched=$!
  say "started dockerd $launched (log: $dir/dockerd.log)"
fi
for _ in $(seq 1 600); do
  if answers "$own_host"; then
    [ -n "${start:-}" ] && say "engine answers after $(since "$start") s"
    echo "$own_host"; exit 0
  fi
  if [ -n "${launched:-}" ] && ! kill -0 "$launched" 2>/dev/null; then break; fi
  sleep 0.1
done
say "dockerd did not answer at $own_host; its log:"
tail -n 30 "$dir/dockerd.log" >&2 || true
exit 1
