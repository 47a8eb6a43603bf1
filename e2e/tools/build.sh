#!/usr/bin/env bash
# Builds the checkers the install tests run, from the Go module registry, into a cache outside
# the repository: ${SLUICE_K8S_CACHE:-$HOME/.cache/sluice}/tools/bin.
#
#   argocd      github.com/argoproj/argo-cd/v3 (the CLI: `argocd admin settings
#               resource-overrides health` runs health checks with Argo CD's own Lua VM)
#   kube-score  github.com/zegl/kube-score
#
#   build.sh [all|argocd|kube-score]   prints the bin directory last
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

# Argo CD's go.mod replaces its nested gitops-engine module with a local path (./gitops-engine),
# so the CLI cannot be `go install`ed. Build it from a throwaway module that requires the tagged
# release and carries Argo CD's own replace block, less that local replace: the gitops-engine
# version then comes from the proxy, at the tag Argo CD's go.mod requires. Argo CD asks for a
# newer Go than the machine's; GOTOOLCHAIN fetches it through the module proxy.
build_argocd() {
  if have argocd "$ARGOCD_VERSION"; then
    log "cached argocd $ARGOCD_VERSION"
    return
  fi
  local dir="$work/argocd" start=$SECONDS
  mkdir -p "$dir"
  (
    cd "$dir"
    export GOTOOLCHAIN="$ARGOCD_GO_TOOLCHAIN"
    log "resolving github.com/argoproj/argo-cd/v3 $ARGOCD_VERSION (Go $GOTOOLCHAIN)"
    local gomod
    gomod="$(go mod download -json "github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION" |
      awk -F'"' '$2 == "GoMod" { print $4 }')"
    [ -f "$gomod" ] || { echo "no go.mod for argo-cd $ARGOCD_VERSION" >&2; exit 1; }
    {
      echo "module sluice.dev/tools/argocd"
      echo
      echo "go $(awk '$1 == "go" { print $2; exit }' "$gomod")"
      echo
      echo "require github.com/argoproj/argo-cd/v3 $ARGOCD_VERSION"
      echo
      awk '
        $1 == "replace" && $2 == "(" { inblock = 1; print; next }
        inblock && $1 == ")" { inblock = 0; print; next }
        inblock && $3 !~ /^\.\.?\// { print }
      ' "$gomod"
    } >go.mod
    printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/argoproj/argo-cd/v3/cmd"\n' >tools.go
    go mod tidy >/dev/null
    log "building argocd $ARGOCD_VERSION"
    go build -trimpath -ldflags "-s -w -X github.com/argoproj/argo-cd/v3/common.version=${ARGOCD_VERSION#v}" \
      -o "$bin/argocd" github.com/argoproj/argo-cd/v3/cmd
  )
  mark argocd "$ARGOCD_VERSION"
  log "built argocd $ARGOCD_VERSION in $((SECONDS - start))s"
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
  all | argocd) locked argocd build_argocd ;;&
  all | kube-score)
    locked kube-score build_plain kube-score github.com/zegl/kube-score "$KUBE_SCORE_VERSION" \
      github.com/zegl/kube-score/cmd/kube-score
    ;;&
  all | argocd | kube-score) ;;
  *) echo "usage: $0 [all|argocd|kube-score]" >&2; exit 2 ;;
esac
echo "$bin"
