#!/usr/bin/env bash
# Builds the local control plane's binaries from the Go module registry into a cache outside the
# repository: ${SLUICE_K8S_CACHE:-$HOME/.cache/sluice}/<kubernetes version>/bin.
#
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  (k8s.io/kubernetes)
#   etcd                                                              (go.etcd.io/etcd/server/v3)
#   kwok                                                              (sigs.k8s.io/kwok)
#   helm                                                              (helm.sh/helm/v3)
#   and for the real node (skipped when SLUICE_REAL_NODE=0):
#   kubelet                                                           (k8s.io/kubernetes)
#   containerd, containerd-shim-runc-v2, ctr                          (github.com/containerd/containerd/v2)
#   runc                                  (github.com/opencontainers/runc, cgo + libseccomp-dev)
#   CNI plugins bridge, host-local, loopback, portmap    (Debian's containernetworking-plugins)
#
# `build.sh <part>` builds one part only (see the usage line at the end).
# A binary that is already in the cache is skipped. Prints what it builds and how long it takes.
set -euo pipefail
log_tag=build
# shellcheck source=../lib/tooling.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/tooling.sh"
use_dirs "$cache_root/$KUBERNETES_VERSION/bin" "$cache_root/$KUBERNETES_VERSION/modules"
go_env "the control plane"

# k8s.io/kubernetes replaces its staging modules (k8s.io/api, k8s.io/apiserver, ...) with local
# paths, so it cannot be `go install`ed. Build it from a throwaway module that requires it and
# replaces every staging module with its published v0.X.Y release. The list of staging modules is
# read from k8s.io/kubernetes's own go.mod.
# build_kubernetes <cmd...>: the commands of k8s.io/kubernetes/cmd/ named.
build_kubernetes() {
  local cmd missing=0 cmds=("$@")
  for cmd in "${cmds[@]}"; do
    have "$cmd" "$KUBERNETES_VERSION" || missing=1
  done
  if [ "$missing" = 0 ]; then
    log "cached ${cmds[*]} $KUBERNETES_VERSION"
    return
  fi
  local dir="$work/kubernetes"
  local staging_version="v0.${KUBERNETES_VERSION#v1.}"
  mkdir -p "$dir"
  (
    cd "$dir"
    go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" >/dev/null
    local gomod
    gomod="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$KUBERNETES_VERSION.mod"
    {
      echo "module sluice.dev/localcluster/kubernetes"
      echo
      echo "go $(awk '$1 == "go" { print $2; exit }' "$gomod")"
      echo
      echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
      echo
      echo "replace ("
      awk -v v="$staging_version" '
        $1 == "replace" && $2 == "(" { inblock = 1; next }
        inblock && $1 == ")" { inblock = 0; next }
        inblock && $2 == "=>" && $3 ~ /^\.\/staging\// { printf "\t%s => %s %s\n", $1, $1, v }
      ' "$gomod"
      echo ")"
    } >go.mod
    # Every command up to kubelet, whichever are asked for now, so that go.sum covers them all.
    cat >tools.go <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
EOF
    go mod tidy >/dev/null
    local ldflags=""
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1"
      ldflags+=" -X $pkg.gitMinor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)"
      ldflags+=" -X $pkg.gitTreeState=clean"
    done
    for cmd in "${cmds[@]}"; do
      if have "$cmd" "$KUBERNETES_VERSION"; then
        log "cached $cmd $KUBERNETES_VERSION"
        continue
      fi
      timed "$cmd $KUBERNETES_VERSION" go build -trimpath -ldflags "-s -w $ldflags" \
        -o "$bin/$cmd" "k8s.io/kubernetes/cmd/$cmd"
      mark "$cmd" "$KUBERNETES_VERSION"
    done
  )
}

# shellcheck source=build-node.sh
source "$(dirname "${BASH_SOURCE[0]}")/build-node.sh"

total_start=$SECONDS
only="${1:-all}"
# The real node's parts, unless opted out (a machine without root or cgroups).
node=1
[ "${SLUICE_REAL_NODE:-1}" = 0 ] && [ "$only" = all ] && node=0
case "$only" in
  all | kubernetes) build_kubernetes kube-apiserver kube-controller-manager kube-scheduler kubectl ;;&
  all | etcd) build_go_module etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3 ;;&
  all | kwok) build_go_module kwok sigs.k8s.io/kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok ;;&
  all | helm) build_go_module helm helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm ;;&
  all | node | kubelet) [ "$node" = 0 ] || build_kubernetes kubelet ;;&
  all | node | containerd) [ "$node" = 0 ] || build_containerd ;;&
  all | node | runc) [ "$node" = 0 ] || build_runc ;;&
  all | node | cni) [ "$node" = 0 ] || install_cni_plugins ;;&
  all | kubernetes | etcd | kwok | helm | node | kubelet | containerd | runc | cni) ;;
  *) echo "usage: $0 [all|kubernetes|etcd|kwok|helm|node|kubelet|containerd|runc|cni]" >&2; exit 2 ;;
esac
log "done in $((SECONDS - total_start))s; binaries in $bin"
echo "$bin"
