#!/usr/bin/env bash
# Stop the dockerd that tools/docker/prepare.sh started (by its pidfile), keeping its data root:
# image layers stay cached under ${ION_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ion}/docker/data.
# Containers still running are stopped first. An engine this script did not start (a system
# dockerd, ION_DOCKER_HOST) is never touched.
set -euo pipefail
cache=${ION_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ion}
dir="$cache/docker"
pidfile="$dir/dockerd.pid"
say() { echo "stop.sh: $*" >&2; }

if [ ! -f "$pidfile" ] || ! pid=$(cat "$pidfile") || ! kill -0 "$pid" 2>/dev/null; then
  say "no dockerd of Ion's is running"; rm -f "$pidfile"; exit 0
fi
export DOCKER_HOST="unix://$dir/docker.sock"
running=$(timeout 20 docker ps -q 2>/dev/null || true)
if [ -n "$running" ]; then
  say "stopping containers: $(echo $running)"
  # shellcheck disable=SC2086
  timeout 60 docker stop -t 5 $running >/dev/null 2>&1 || true
fi
kill -TERM "$pid"
for _ in $(seq 1 300); do
  kill -0 "$pid" 2>/dev/null || { say "dockerd $pid stopped (images kept in $dir/data)"; exit 0; }
  sleep 0.1
done
say "dockerd $pid did not stop within 30 s; killing it"
kill -KILL "$pid" 2>/dev/null || true
