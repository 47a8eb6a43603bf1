#!/usr/bin/env bash
# Writes argocd-cm.yaml: the health checks under resource_customizations/ as the argocd-cm keys
# `resource.customizations.health.sluice.dev_<Kind>` that Argo CD reads.
#
#   render-cm.sh           rewrite argocd-cm.yaml
#   render-cm.sh --check   exit 1 (and show the diff) if it is not what this script writes
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/argocd-cm.yaml"

render() {
  cat <<'HEADER'
# The Sluice health checks for Argo CD, generated from resource_customizations/ by render-cm.sh
# (make chart); do not edit. Merge into Argo CD's ConfigMap:
#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file manifests/argocd/argocd-cm.yaml
# (or put the data keys under `configs.cm` of the argo-cd Helm chart).
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/name: argocd-cm
    app.kubernetes.io/part-of: argocd
data:
HEADER
  local kind
  for kind in Pipeline Dataset Backfill; do
    echo "  resource.customizations.health.sluice.dev_$kind: |"
    sed -e 's/^/    /' -e 's/^ *$//' "$here/resource_customizations/sluice.dev/$kind/health.lua"
  done
}

# shellcheck source=../../e2e/lib/generated.sh
source "$here/../../e2e/lib/generated.sh"
write_or_check "$out" "manifests/argocd/argocd-cm.yaml is out of date with the health checks" "$@"
