#!/usr/bin/env bash
# Builds the checkers the install tests run, from the Go module registry, into a cache outside
# the repository: ${SLUICE_K8S_CACHE:-$HOME/.cache/sluice}/tools/bin.
#
#   argocd-health  e2e/tools/argocd-health over github.com/argoproj/argo-cd/v3 (what `argocd
#                  admin settings resource-overrides health` does: health checks with Argo CD's
#                  own settings parsing and Lua VM)
#   kube-score     github.com/zegl/kube-score
#   kueue          sigs.k8s.io/kueue's manager (cmd/kueue), which the Kueue e2e test runs on the
#                  host against the local API server (e2e/src/kueue.rs)
#
#   build.sh [all|argocd-health|kube-score|kueue]   prints the bin directory last
#
# A binary already in the cache at the pinned version is skipped. Prints how long each build
# takes. Versions are pinned in versions.env beside this script.
set -euo pipefail
log_tag=tools
# shellcheck source=../lib/tooling.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/tooling.sh"
here="$sluice_root/e2e/tools"
use_dirs "$cache_root/tools/bin" "$cache_root/tools/modules"
go_env "the checkers"

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
  local version
  version="$ARGOCD_VERSION $ARGOCD_GO_TOOLCHAIN $(source_hash "$src")"
  if have argocd-health "$version"; then
    log "cached argocd-health ($version)"
    return
  fi
  (
    cd "$src"
    timed "argocd-health ($version)" env GOTOOLCHAIN="$ARGOCD_GO_TOOLCHAIN" \
      go build -mod=readonly -trimpath -ldflags "-s -w" -o "$bin/argocd-health.tmp.$$" .
  )
  mv "$bin/argocd-health.tmp.$$" "$bin/argocd-health"
  mark argocd-health "$version"
}

case "${1:-all}" in
  all | argocd-health) locked "$work/.argocd-health.lock" build_argocd_health ;;&
  all | kube-score)
    locked "$work/.kube-score.lock" build_go_module kube-score github.com/zegl/kube-score "$KUBE_SCORE_VERSION" \
      github.com/zegl/kube-score/cmd/kube-score
    ;;&
  all | kueue)
    locked "$work/.kueue.lock" build_go_module kueue sigs.k8s.io/kueue "$KUEUE_VERSION" sigs.k8s.io/kueue/cmd/kueue
    ;;&
  all | argocd-health | kube-score | kueue) ;;
  *) echo "usage: $0 [all|argocd-health|kube-score|kueue]" >&2; exit 2 ;;
esac
echo "$bin"
