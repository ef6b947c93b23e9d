#!/usr/bin/env bash
# Build Ion's local base image, localhost/ion-base:bookworm-py311: Debian bookworm (minbase)
# with its python3 (3.11), venv and CA certificates, trimmed like the official slim image.
# No image can be pulled here, so this stands in for python:3.11-slim (pass it as BASE_IMAGE).
#
#   DOCKER_HOST=$(tools/docker/prepare.sh) tools/docker/base-image.sh
#
# Cached: skipped when the image exists with the label org.ionproject.base.recipe equal to this
# script's hash (editing the script rebuilds it). ION_BASE_REBUILD=1 forces a rebuild. Packages
# come from the Debian mirror apt is configured with on this machine (read at run time from
# /etc/apt/sources.list*, or ION_DEBIAN_MIRROR), never from a host named in this file.
set -euo pipefail
cd "$(dirname "$0")/../.."

image=${ION_BASE_IMAGE_TAG:-localhost/ion-base:bookworm-py311}
suite=bookworm
packages=python3,python3-venv,ca-certificates,python-is-python3,tzdata,netbase
cache=${ION_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ion}
recipe=$(sha256sum "$0" | cut -c1-16)
say() { echo "base-image.sh: $*" >&2; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# One build at a time (two test sessions may ask at once); the second then finds it done.
mkdir -p "$cache"
exec 9>"$cache/base-image.lock"
flock 9

have=$(docker image inspect --format '{{index .Config.Labels "org.ionproject.base.recipe"}}' "$image" 2>/dev/null || true)
if [ "$have" = "$recipe" ] && [ "${ION_BASE_REBUILD:-0}" != 1 ]; then
  say "$image is up to date (recipe $recipe)"; echo "$image"; exit 0
fi

# The Debian mirror apt already uses (deb822 .sources or one-line .list), read at run time.
mirror=${ION_DEBIAN_MIRROR:-$(python3 - "$suite" <<'PY'
import glob, sys
suite = sys.argv[1]
found = []
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in open(path).read().split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            if ":" in line and not line.startswith(("#", " ")):
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.split()
        if "deb" in fields.get("types", []) and suite in fields.get("suites", []) \
                and "main" in fields.get("components", []) and fields.get("enabled", ["yes"]) != ["no"]:
            found += fields.get("uris", [])
for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        words = [w for w in line.split("#", 1)[0].split() if not w.startswith("[")]
        if len(words) >= 4 and words[0] == "deb" and words[2] == suite and "main" in words[3:]:
            found.append(words[1])
print(found[0] if found else "")
PY
)}
if [ -z "$mirror" ]; then
  say "no Debian $suite mirror in /etc/apt/sources.list*; set ION_DEBIAN_MIRROR"; exit 1
fi

command -v debootstrap >/dev/null 2>&1 || { say "debootstrap is missing (tools/docker/prepare.sh installs it)"; exit 1; }
work="$cache/base"
# A finished rootfs is kept (named by what went into it) until its import succeeds, so a failed
# import does not debootstrap again.
rootfs="$work/rootfs-$(echo "$suite $packages $mirror" | sha256sum | cut -c1-12)"
mkdir -p "$work"
if [ ! -f "$rootfs/.ion-complete" ]; then
  rm -rf "$work"/rootfs*
  start=$EPOCHREALTIME
  say "debootstrap --variant=minbase $suite (python3, venv, CA certificates) from apt's mirror ..."
  if ! debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs.tmp" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 30 "$work/debootstrap.log" >&2; exit 1
  fi
  say "debootstrap took $(since "$start") s"
  r="$rootfs.tmp"
  # Slim it: what the official slim image leaves out (apt lists, docs, man pages, locales, caches).
  rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/* "$r"/var/cache/debconf/*-old \
         "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* \
         "$r"/usr/share/lintian "$r"/usr/share/linda "$r"/var/log/*.log \
         "$r"/var/log/apt/* "$r"/tmp/* "$r"/root/.cache
  find "$r"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
  # The host's mirror stays out of the image: images install Python wheels, not Debian packages.
  rm -f "$r"/etc/apt/sources.list "$r"/etc/apt/sources.list.d/* "$r"/etc/machine-id
  : >"$r"/etc/machine-id
  # dpkg: no docs or man pages on later installs either (as the slim image configures).
  mkdir -p "$r"/etc/dpkg/dpkg.cfg.d
  printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\n' \
    >"$r"/etc/dpkg/dpkg.cfg.d/docker-slim
  touch "$r/.ion-complete"
  mv "$r" "$rootfs"
fi
python_version=$(chroot "$rootfs" python3 -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
size=$(du -sm "$rootfs" | cut -f1)

start=$EPOCHREALTIME
tar --numeric-owner --exclude=./.ion-complete -C "$rootfs" -c . | docker import \
  --change "LABEL org.ionproject.base.recipe=$recipe" \
  --change "LABEL org.opencontainers.image.title=ion-base" \
  --change "LABEL org.opencontainers.image.description=\"Debian $suite minbase, python3 $python_version\"" \
  --change "ENV LANG=C.UTF-8" \
  --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change "ENV PYTHON_VERSION=$python_version" \
  --change 'CMD ["python3"]' \
  - "$image" >/dev/null
say "imported $image (python $python_version, ${size} MB rootfs) in $(since "$start") s"
rm -rf "$rootfs"
echo "$image"
