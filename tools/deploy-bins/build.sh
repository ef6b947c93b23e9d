#!/usr/bin/env bash
# Build (or find in the cache) the deployment tools the chart and Terraform tests need:
#   helm v3.22.0, the azurerm Terraform provider (laid out as a filesystem mirror, as 5.2.0),
#   and terraform itself only when the one on PATH is missing or not the pinned version.
#
#   tools/deploy-bins/build.sh                 # all tools: build what is missing, print the env
#   tools/deploy-bins/build.sh helm            # helm alone (3-5 min cold)
#   tools/deploy-bins/build.sh azurerm         # the provider alone (12 min, up to 45 on a busy
#                                              # host; 3.5-5 GB RAM at link: build it alone)
#   tools/deploy-bins/build.sh terraform       # terraform, only if PATH's is not the pinned one
#   tools/deploy-bins/build.sh --cached-only [tools...]   # print the env if built, else exit 3
#
# stdout is the environment the tests read, one VAR=value per line (also written to
# <dir>/env), e.g.:
#   ION_DEPLOY_BINS=~/.cache/ion/deploy-bins/<key>
#   ION_HELM=~/.cache/ion/deploy-bins/<key>/bin/helm
#   ION_TERRAFORM=/usr/local/bin/terraform
#   TF_CLI_CONFIG_FILE=~/.cache/ion/deploy-bins/<key>/terraformrc
# Progress goes to stderr.
#
# Cache: each tool is built once per key = sha256(its pin, ldflags, `go version`) into
# ${ION_CACHE_DIR:-~/.cache/ion}/deploy-bins/store/<tool>-<key>/ (so a helm bump never rebuilds
# the provider), then hard-linked into the assembled dir deploy-bins/<key>/ (key over all pins):
#   bin/helm, bin/terraform (only when built), terraformrc (a filesystem_mirror, no `direct`),
#   mirror/<terraform's default registry host>/hashicorp/azurerm/5.2.0/linux_amd64/terraform-provider-azurerm_v5.2.0
# A cache hit costs milliseconds. Builds use GOTOOLCHAIN=local, -trimpath -ldflags="-s -w", and a
# throwaway GOCACHE and GOMODCACHE (azurerm: 5.6 + 2 GB, deleted afterwards, even on failure).
# GOPROXY is the environment's (`go env GOPROXY`) with a trailing `direct` dropped, so a module
# the proxy refuses is reported as the proxy's answer rather than as a failed git clone.
# Builds run one at a time (a lock in the cache); a second caller waits and then finds the result.
#
# terraform: `go install github.com/hashicorp/terraform@v1.11.4` is refused (its go.mod replaces
# nine nested modules with ./internal/... paths, which module zips leave out). The proxy serves
# those nested modules at the v1.11.4 commit as a pseudo-version, so the fallback copies the
# module source, points the replaces there, drops a `godebug tlskyber` line Go 1.26 rejects, and
# builds it (7.7 min on 2 busy cores; the result passes tests/deploy/test_terraform.py).
#
# The whole script is one block, so bash has read all of it before it runs: editing this file
# while a 12-minute build runs cannot change what the running build does.
{
set -euo pipefail

HELM_VERSION=v3.22.0
HELM_PKG=helm.sh/helm/v3/cmd/helm@${HELM_VERSION}
HELM_LDFLAGS="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
# The proxy serves no azurerm tags: this pseudo-version is main just after 5.2.0 (its CHANGELOG
# starts at 5.2.0), so the mirror presents it as 5.2.0 and deployment/terraform pins "~> 5.2".
AZURERM_PKG=github.com/hashicorp/terraform-provider-azurerm@v1.44.1-0.20260824201233-fae580791926
AZURERM_MIRROR_VERSION=5.2.0
AZURERM_LDFLAGS="-s -w"
TERRAFORM_VERSION=1.11.4
TERRAFORM_PKG=github.com/hashicorp/terraform@v${TERRAFORM_VERSION}
TERRAFORM_LDFLAGS="-s -w -X github.com/hashicorp/terraform/version.dev=no"
# terraform's go.mod replaces nine nested modules with ./internal/... paths, which a module zip
# leaves out, so `go install terraform@v1.11.4` is refused. The proxy serves each nested module
# at the v1.11.4 commit under this pseudo-version; the fallback build points the replaces there.
TERRAFORM_NESTED_VERSION=v0.0.0-20250409131005-35645b8fca68
MIN_FREE_GB=10

usage() {
  echo "usage: $0 [--cached-only] [helm|azurerm|terraform|all]..." >&2
  exit 2
}

cached_only=0
tools=()
for arg in "$@"; do
  case "$arg" in
    --cached-only) cached_only=1 ;;
    helm | azurerm | terraform) tools+=("$arg") ;;
    all) tools+=(helm azurerm terraform) ;;
    *) usage ;;
  esac
done
[[ ${#tools[@]} -gt 0 ]] || tools=(helm azurerm terraform)

cache_root="${ION_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ion}/deploy-bins"
log() { echo "deploy-bins: $*" >&2; }

go_bin=$(command -v go || true)
if [[ -z "$go_bin" && -x /usr/local/go/bin/go ]]; then go_bin=/usr/local/go/bin/go; fi
export GOTOOLCHAIN=local
if [[ -n "$go_bin" ]]; then go_version=$("$go_bin" version); else go_version="no go"; fi

sha() { sha256sum | cut -c1-32; }
tool_key() { # tool -> key of its pin, ldflags and go version
  case "$1" in
    helm) printf '%s\n%s\n%s\n' "$HELM_PKG" "$HELM_LDFLAGS" "$go_version" | sha ;;
    azurerm) printf '%s\n%s\n%s\n' "$AZURERM_PKG" "$AZURERM_LDFLAGS" "$go_version" | sha ;;
    terraform) printf '%s\n%s\n%s\n%s\n' "$TERRAFORM_PKG" "$TERRAFORM_NESTED_VERSION" \
      "$TERRAFORM_LDFLAGS" "$go_version" | sha ;;
  esac
}
tool_bin_name() {
  case "$1" in
    helm) echo helm ;;
    azurerm) echo terraform-provider-azurerm ;;
    terraform) echo terraform ;;
  esac
}
tool_pkg() {
  case "$1" in
    helm) echo "$HELM_PKG" ;;
    azurerm) echo "$AZURERM_PKG" ;;
    terraform) echo "$TERRAFORM_PKG" ;;
  esac
}
tool_ldflags() {
  case "$1" in
    helm) echo "$HELM_LDFLAGS" ;;
    azurerm) echo "$AZURERM_LDFLAGS" ;;
    terraform) echo "$TERRAFORM_LDFLAGS" ;;
  esac
}
store_path() { echo "$cache_root/store/$1-$(tool_key "$1")/$(tool_bin_name "$1")"; }

all_key=$(printf '%s\n' "$(tool_key helm)" "$(tool_key azurerm)" "$(tool_key terraform)" | sha)
out="$cache_root/$all_key"
# A filesystem mirror files providers under the host of their source address; "hashicorp/azurerm"
# means Terraform's default registry host, spelt here from its parts.
tf_registry_host="registry.terraform"
tf_registry_host="$tf_registry_host.io"
mirror_bin="$out/mirror/$tf_registry_host/hashicorp/azurerm/$AZURERM_MIRROR_VERSION/linux_amd64/terraform-provider-azurerm_v$AZURERM_MIRROR_VERSION"

# terraform on PATH counts when it is the pinned version; then nothing is built for it.
path_terraform() {
  local tf v
  tf=$(command -v terraform || true)
  [[ -n "$tf" ]] || return 1
  v=$(TF_CLI_CONFIG_FILE=/dev/null "$tf" version -json 2>/dev/null) || return 1
  [[ "$v" =~ \"terraform_version\":\ *\"$TERRAFORM_VERSION\" ]] || return 1
  echo "$tf"
}

have() { # tool -> 0 if nothing needs building for it
  if [[ $1 == terraform ]] && path_terraform >/dev/null; then return 0; fi
  [[ -x "$(store_path "$1")" ]]
}

check_disk() {
  local free_kb free_gb dir=$cache_root
  mkdir -p "$dir"
  free_kb=$(df -Pk "$dir" | awk 'NR == 2 { print $4 }')
  free_gb=$((free_kb / 1024 / 1024))
  if ((free_gb < MIN_FREE_GB)); then
    log "only ${free_gb} GB free under $dir; building needs at least ${MIN_FREE_GB} GB" \
      "(azurerm alone takes 5.6 GB of GOCACHE and 2 GB of modules while it builds). Free some space" \
      "or point ION_CACHE_DIR at a larger disk."
    exit 4
  fi
}

goproxy() {
  local p
  p=${GOPROXY:-$("$go_bin" env GOPROXY)}
  p=${p%,direct}
  p=${p%|direct}
  if [[ -z "$p" || "$p" == direct || "$p" == off ]]; then
    log "GOPROXY is '${p:-unset}': these tools are fetched from a Go module proxy; set GOPROXY"
    exit 5
  fi
  echo "$p"
}

go_install() { # tool outdir: `go install pkg@version` (a module with no replace directives)
  GOBIN="$2" "$go_bin" install -trimpath -ldflags "$(tool_ldflags "$1")" "$(tool_pkg "$1")"
}

build_terraform() { # outdir: build terraform from its module source with the nested replaces
  # (called in an `||` list, where set -e is off: every step checks its own status)
  local dir src mod
  dir=$("$go_bin" mod download -json "$TERRAFORM_PKG" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -n "$dir" && -f "$dir/go.mod" ]] || { log "could not download $TERRAFORM_PKG"; return 1; }
  src="$1/src"
  cp -r "$dir" "$src" && chmod -R u+w "$src" || return 1
  (
    cd "$src" || exit 1
    for mod in $("$go_bin" mod edit -json | sed -n 's/^[[:space:]]*"Path": "\(github.com\/hashicorp\/terraform\/internal\/[^"]*\)"$/\1/p' | sort -u); do
      "$go_bin" mod edit -replace="$mod=$mod@$TERRAFORM_NESTED_VERSION" || exit 1
    done
    # go.mod has `godebug tlskyber=0`, a setting newer Go no longer knows (and refuses).
    "$go_bin" mod edit -dropgodebug=tlskyber || exit 1
    GOFLAGS="-mod=mod -buildvcs=false" "$go_bin" build -trimpath -ldflags "$TERRAFORM_LDFLAGS" \
      -o "$1/terraform" . || exit 1
  ) || return 1
  rm -rf "$src"
  TF_CLI_CONFIG_FILE=/dev/null "$1/terraform" version | grep -q "^Terraform v$TERRAFORM_VERSION\$" || {
    log "the terraform built does not report v$TERRAFORM_VERSION"
    return 1
  }
}

build_one() { # tool: build into a temp dir, then rename into the store
  local tool=$1 dest tmp gocache gomodcache start rc=0
  dest=$(store_path "$tool")
  tmp=$(mktemp -d "$cache_root/.build.$tool.XXXXXX")
  gocache=$(mktemp -d "$cache_root/.gocache.XXXXXX")
  gomodcache=$(mktemp -d "$cache_root/.gomodcache.XXXXXX")
  # shellcheck disable=SC2064
  trap "chmod -R u+w '$gomodcache' '$gocache' '$tmp' 2>/dev/null || true; rm -rf '$gocache' '$gomodcache' '$tmp'" EXIT
  start=$(date +%s)
  log "building $(tool_pkg "$tool") with $go_version (GOPROXY=$(goproxy))"
  export GOCACHE="$gocache" GOMODCACHE="$gomodcache" GOPROXY="$(goproxy)" GOFLAGS=-buildvcs=false
  if [[ $tool == terraform ]]; then
    log "terraform on PATH is missing or not v$TERRAFORM_VERSION: building it (a few minutes)"
    build_terraform "$tmp" || rc=$?
  else
    go_install "$tool" "$tmp" || rc=$?
  fi
  unset GOCACHE GOMODCACHE GOFLAGS
  if [[ $rc != 0 || ! -x "$tmp/$(tool_bin_name "$tool")" ]]; then
    log "building $tool failed (exit $rc); see the go output above"
    exit 1
  fi
  mkdir -p "$(dirname "$(dirname "$dest")")"
  rm -rf "$(dirname "$dest")"
  mv "$tmp" "$(dirname "$dest")"
  chmod 755 "$(dirname "$dest")"
  chmod -R u+w "$gomodcache" "$gocache" 2>/dev/null || true
  rm -rf "$gocache" "$gomodcache"
  trap - EXIT
  log "built $tool in $(($(date +%s) - start)) s: $dest"
}

link() { # src dest: hard link (same disk), else copy
  mkdir -p "$(dirname "$2")"
  [[ "$2" -ef "$1" ]] && return 0
  ln -f "$1" "$2" 2>/dev/null || cp -f "$1" "$2"
}

assemble() { # hard-link the tools asked for into the assembled dir and print the env
  local tool tf env_tmp
  mkdir -p "$out/bin"
  env_tmp=$(mktemp "$out/.env.XXXXXX")
  echo "ION_DEPLOY_BINS=$out" >>"$env_tmp"
  for tool in "${tools[@]}"; do
    case "$tool" in
      helm)
        link "$(store_path helm)" "$out/bin/helm"
        echo "ION_HELM=$out/bin/helm" >>"$env_tmp"
        ;;
      azurerm)
        link "$(store_path azurerm)" "$mirror_bin"
        cat >"$out/terraformrc.tmp" <<EOF
# Written by tools/deploy-bins/build.sh: providers come from the local mirror only.
provider_installation {
  filesystem_mirror {
    path    = "$out/mirror"
    include = ["hashicorp/*"]
  }
  # no direct {} block: terraform never reaches for a registry
}
disable_checkpoint = true
EOF
        mv -f "$out/terraformrc.tmp" "$out/terraformrc"
        echo "TF_CLI_CONFIG_FILE=$out/terraformrc" >>"$env_tmp"
        ;;
      terraform)
        if tf=$(path_terraform); then
          echo "ION_TERRAFORM=$tf" >>"$env_tmp"
        else
          link "$(store_path terraform)" "$out/bin/terraform"
          echo "ION_TERRAFORM=$out/bin/terraform" >>"$env_tmp"
        fi
        ;;
    esac
  done
  # Merge with what an earlier call (another subset of tools) recorded.
  if [[ -f "$out/env" ]]; then
    grep -v -F -f <(cut -d= -f1 "$env_tmp" | sed 's/$/=/') "$out/env" >>"$env_tmp" || true
  fi
  sort -o "$env_tmp" "$env_tmp"
  mv -f "$env_tmp" "$out/env"
  # stdout: only the variables for the tools asked for
  for tool in ION_DEPLOY_BINS "${tools[@]}"; do
    case "$tool" in
      ION_DEPLOY_BINS) grep '^ION_DEPLOY_BINS=' "$out/env" ;;
      helm) grep '^ION_HELM=' "$out/env" ;;
      azurerm) grep '^TF_CLI_CONFIG_FILE=' "$out/env" ;;
      terraform) grep '^ION_TERRAFORM=' "$out/env" ;;
    esac
  done
}

missing=()
for tool in "${tools[@]}"; do have "$tool" || missing+=("$tool"); done
if [[ ${#missing[@]} -gt 0 ]]; then
  if [[ $cached_only == 1 ]]; then
    log "not built yet: ${missing[*]} (run tools/deploy-bins/build.sh ${missing[*]})"
    exit 3
  fi
  if [[ -z "$go_bin" ]]; then
    log "no 'go' on PATH (nor /usr/local/go/bin/go) to build ${missing[*]}"
    exit 3
  fi
  check_disk
  # One build at a time per cache; a second caller waits and then finds the result.
  exec 9>"$cache_root/.build.lock"
  flock 9
  for tool in "${missing[@]}"; do
    have "$tool" || build_one "$tool"
  done
  exec 9>&-
fi
assemble
exit
}
