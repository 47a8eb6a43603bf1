#!/usr/bin/env bash
# The demo: a local control plane with the operator and the example pipelines running.
#   e2e/demo.sh up     start (or reuse) everything and print what is running
#   e2e/demo.sh down   stop the operator and the control plane
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
namespace="${DEMO_NAMESPACE:-sluice-demo}"
state="${DEMO_DIR:-${TMPDIR:-/tmp}/sluice-demo}"
operator="${SLUICE_OPERATOR_BIN:-${CARGO_TARGET_DIR:-$repo/target}/debug/sluice-operator}"
mkdir -p "$state"

case "${1:-up}" in
  up)
    kubeconfig="$(bash "$repo/e2e/cluster/up.sh" | tail -n 1)"
    bin_dir="$(bash "$repo/e2e/cluster/build.sh" 2>/dev/null | tail -n 1)"
    kubectl() { "$bin_dir/kubectl" --kubeconfig "$kubeconfig" "$@"; }
    kubectl apply --server-side --field-manager=sluice-demo -f "$repo/crds/" >/dev/null
    kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
    if [ -f "$state/operator.pid" ] && kill -0 "$(cat "$state/operator.pid")" 2>/dev/null; then
      echo "operator already running (pid $(cat "$state/operator.pid"))" >&2
    else
      KUBECONFIG="$kubeconfig" nohup "$operator" run --http-addr 127.0.0.1:8080 \
        >"$state/operator.log" 2>&1 &
      echo $! >"$state/operator.pid"
      for _ in $(seq 1 60); do
        curl -sf http://127.0.0.1:8080/readyz >/dev/null 2>&1 && break
        sleep 1
      done
      curl -sf http://127.0.0.1:8080/readyz >/dev/null || { tail -n 50 "$state/operator.log" >&2; exit 1; }
    fi
    kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
    kubectl apply --server-side --field-manager=sluice-demo -n "$namespace" -f "$repo/manifests/examples/" >/dev/null
    kubectl wait --for=condition=Ready -n "$namespace" pipelines,datasets,backfills --all --timeout=60s >/dev/null
    # Start one run of the hourly pipeline now rather than at its next tick.
    kubectl annotate -n "$namespace" pipeline orders-ingest --overwrite "sluice.dev/run-now=demo-$(date +%s)" >/dev/null
    echo "waiting for the first runs (clickstream runs every minute)..." >&2
    for _ in $(seq 1 90); do
      kubectl get datasets -n "$namespace" orders -o jsonpath='{.status.watermark}' 2>/dev/null | grep -q . && break
      sleep 1
    done
    kubectl get sluice -n "$namespace"
    echo
    kubectl get jobs -n "$namespace"
    cat <<MSG

The demo is running.
  export KUBECONFIG=$kubeconfig
  kubectl get sluice -n $namespace              # pipelines, datasets, backfills
  kubectl describe pipeline orders-ingest -n $namespace
  curl -s http://127.0.0.1:8080/metrics | grep ^sluice_
  operator log: $state/operator.log
Stop it with: make demo-down
MSG
    ;;
  down)
    if [ -f "$state/operator.pid" ]; then
      kill "$(cat "$state/operator.pid")" 2>/dev/null || true
      rm -f "$state/operator.pid"
    fi
    bash "$repo/e2e/cluster/down.sh"
    ;;
  *)
    echo "usage: $0 up|down" >&2
    exit 2
    ;;
esac
