#!/usr/bin/env bash
# Builds the checkers the install tests run, from the Go module registry, into a cache outside
# the repository: ${SLUICE_K8S_CACHE:-$HOME/.cache/sluice}/tools/bin.
#
#   argocd-health  e2e/tools/argocd-health over github.com/argoproj/argo-cd/v3 (what `argocd
#                  admin settings resource-overrides health` does: health checks with Argo CD's
#                  own settings parsing and Lua VM)
#   kube-score     github.com/zegl/kube-score
#
#   build.sh [all|argocd-health|kube-score]   prints the bin directory last
#
# A binary already in the cache at the pinned version is skipped. Prints how long each build
# takes. Versions are pinned in versions.env beside this script.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache_root="${SLUICE_K8S_CACHE:-$HOME/.cache/sluice}"
bin="$cache_root/tools/bin"
work="$cache_root/tools/modules"
mkdir -p "$bin" "$work"

export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export CGO_ENABLED=0

log() { printf '[tools %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

command -v go >/dev/null || { echo "go is required to build the checkers" >&2; exit 1; }

have() { [ -x "$bin/$1" ] && [ -f "$bin/.$1.version" ] && [ "$(cat "$bin/.$1.version")" = "$2" ]; }
mark() { echo "$2" >"$bin/.$1.version"; }

# Holds an exclusive lock on the tool's work directory while building it, so that tests started
# side by side do not build the same tool twice into the same place.
locked() {
  local name="$1"; shift
  exec {fd}>"$work/.$name.lock"
  flock "$fd"
  "$@"
  exec {fd}>&-
}

# Argo CD's health assessment, e2e/tools/argocd-health: a small program over Argo CD's own
# util/settings, util/lua and gitops-engine health packages doing what `argocd admin settings
# resource-overrides health` does, without the rest of the CLI (a cold build of the whole CLI
# took 27 minutes). Its go.mod requires Argo CD at ARGOCD_VERSION and carries Argo CD's replace
# block; Argo CD asks for a newer Go than the machine's, which GOTOOLCHAIN fetches through the
# module proxy. The cached binary is keyed by ARGOCD_VERSION, the toolchain and a hash of the
# program's sources.
build_argocd_health() {
  local src="$here/argocd-health"
  grep -Eq "^(require)?[[:space:]]*github.com/argoproj/argo-cd/v3 $ARGOCD_VERSION([[:space:]]|\$)" "$src/go.mod" ||
    { echo "$src/go.mod does not require argo-cd $ARGOCD_VERSION (versions.env)" >&2; exit 1; }
  local hash version
  hash="$(cd "$src" && find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) | LC_ALL=C sort |
    xargs sha256sum | sha256sum | cut -c1-16)"
  version="$ARGOCD_VERSION $ARGOCD_GO_TOOLCHAIN $hash"
  if have argocd-health "$version"; then
    log "cached argocd-health ($version)"
    return
  fi
  local start=$SECONDS
  log "building argocd-health ($version)"
  (
    cd "$src"
    GOTOOLCHAIN="$ARGOCD_GO_TOOLCHAIN" go build -mod=readonly -trimpath -ldflags "-s -w" \
      -o "$bin/argocd-health.tmp.$$" .
  )
  mv "$bin/argocd-health.tmp.$$" "$bin/argocd-health"
  mark argocd-health "$version"
  log "built argocd-health in $((SECONDS - start))s"
}

# A tool whose module builds with plain `go build` from a throwaway module: name, module,
# version, package.
build_plain() {
  local name="$1" module="$2" version="$3" pkg="$4"
  if have "$name" "$version"; then
    log "cached $name $version"
    return
  fi
  local dir="$work/$name" start=$SECONDS
  mkdir -p "$dir"
  (
    cd "$dir"
    printf 'module sluice.dev/tools/%s\n\ngo 1.26.0\n\nrequire %s %s\n' "$name" "$module" "$version" >go.mod
    printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$pkg" >tools.go
    go mod tidy >/dev/null
    log "building $name $version"
    go build -trimpath -ldflags "-s -w" -o "$bin/$name" "$pkg"
  )
  mark "$name" "$version"
  log "built $name $version in $((SECONDS - start))s"
}

case "${1:-all}" in
  all | argocd-health) locked argocd-health build_argocd_health ;;&
  all | kube-score)
    locked kube-score build_plain kube-score github.com/zegl/kube-score "$KUBE_SCORE_VERSION" \
      github.com/zegl/kube-score/cmd/kube-score
    ;;&
  all | argocd-health | kube-score) ;;
  *) echo "usage: $0 [all|argocd-health|kube-score]" >&2; exit 2 ;;
esac
echo "$bin"
