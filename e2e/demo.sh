#!/usr/bin/env bash
# The demo: a local control plane with the operator and the example pipelines running.
#   e2e/demo.sh up        start (or reuse) everything and print what is running
#   e2e/demo.sh down      stop the operator, the databases and the control plane
#   e2e/demo.sh drift     the shop changes a column type: the contract breaks, a pipeline holds
#   e2e/demo.sh undrift   the type goes back
# With the real node (e2e/cluster starts one unless SLUICE_REAL_NODE=0) the steps run the
# sluice-sql-step image against a PostgreSQL of the demo's own: real ELT. Without it the steps
# run on kwok's fake nodes, as before, and the demo says so.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
namespace="${DEMO_NAMESPACE:-sluice-demo}"
state="${DEMO_DIR:-${TMPDIR:-/tmp}/sluice-demo}"
http="${DEMO_HTTP_ADDR:-127.0.0.1:8080}"
operator="${SLUICE_OPERATOR_BIN:-${CARGO_TARGET_DIR:-$repo/target}/debug/sluice-operator}"
mkdir -p "$state"
# shellcheck source=demo/show.sh
source "$repo/e2e/demo/show.sh"
# shellcheck source=demo/drift.sh
source "$repo/e2e/demo/drift.sh"

cluster() {
  kubeconfig="$(bash "$repo/e2e/cluster/up.sh" | tail -n 1)"
  bin_dir="$(bash "$repo/e2e/cluster/build.sh" 2>/dev/null | tail -n 1)"
}
kubectl() { "$bin_dir/kubectl" --kubeconfig "$kubeconfig" "$@"; }

start_operator() {
  kubectl apply --server-side --field-manager=sluice-demo -f "$repo/crds/" >/dev/null
  kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
  if [ -f "$state/operator.pid" ] && kill -0 "$(cat "$state/operator.pid")" 2>/dev/null; then
    echo "operator already running (pid $(cat "$state/operator.pid"))" >&2
    return
  fi
  KUBECONFIG="$kubeconfig" nohup "$operator" run --http-addr "$http" >"$state/operator.log" 2>&1 &
  echo $! >"$state/operator.pid"
  for _ in $(seq 1 60); do
    curl -sf "http://$http/readyz" >/dev/null 2>&1 && return
    sleep 1
  done
  tail -n 50 "$state/operator.log" >&2
  exit 1
}

# The real node's address, or nothing (with the reason on stderr) when the demo runs on kwok.
real_node() {
  if [ "${SLUICE_REAL_NODE:-1}" = 0 ]; then echo "SLUICE_REAL_NODE=0" >&2; return; fi
  if [ ! -f "$repo/images/build.sh" ]; then echo "no images/build.sh in this checkout" >&2; return; fi
  local ready address
  ready="$(kubectl get nodes -l sluice.dev/real-node -o jsonpath='{.items[0].status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)"
  address="$(kubectl get nodes -l sluice.dev/real-node -o jsonpath='{.items[0].status.addresses[?(@.type=="InternalIP")].address}' 2>/dev/null || true)"
  if [ "$ready" = True ] && [ -n "$address" ]; then echo "$address"; else echo "no Ready node labelled sluice.dev/real-node" >&2; fi
}

# The connection Secrets the example pipelines read. Pods reach PostgreSQL at the real node's
# address: they live in the node's bridge network, where 127.0.0.1 is the pod itself.
secrets() {
  local address="$1" port="${DEMO_PG_PORT:-55432}" dir="$state/postgres"
  kubectl create secret generic warehouse -n "$namespace" --dry-run=client -o yaml \
    --from-literal=PGHOST="$address" --from-literal=PGPORT="$port" --from-literal=PGDATABASE=warehouse \
    --from-literal=PGUSER=elt --from-literal=PGPASSWORD="$(cat "$dir/elt.password")" | kubectl apply -f - >/dev/null
  kubectl create secret generic shop -n "$namespace" --dry-run=client -o yaml \
    --from-literal=url="postgresql://shop_reader:$(cat "$dir/reader.password")@$address:$port/shop" |
    kubectl apply -f - >/dev/null
}

up() {
  local start=$SECONDS address why
  cluster
  start_operator
  kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  address="$(real_node 2>"$state/real-node.why")"
  if [ -n "$address" ]; then
    bash "$repo/images/build.sh" sluice-sql-step >&2
    bash "$repo/e2e/demo/postgres.sh" up "$address"
    secrets "$address"
    kubectl apply --server-side --field-manager=sluice-demo -n "$namespace" -k "$repo/e2e/demo/real-node" >/dev/null
  else
    kubectl apply --server-side --field-manager=sluice-demo -n "$namespace" -k "$repo/e2e/demo/minutely" >/dev/null
  fi
  # kubectl wait fails at once on an object without status.conditions (not reconciled yet).
  wait_for 60 "the pipelines and datasets Ready" \
    kubectl wait --for=condition=Ready -n "$namespace" pipelines,datasets --all --timeout=10s
  # Start one run of the extract now rather than at its next tick.
  kubectl annotate -n "$namespace" pipeline orders-ingest --overwrite "sluice.dev/run-now=demo-$(date +%s)" >/dev/null
  if [ -n "$address" ]; then
    wait_for 150 "the first extract's report (rows in raw.orders)" dataset_has orders '{.status.rowsWritten}' || true
    echo "demo up in $((SECONDS - start))s" >&2
    show_datasets
    echo
    show_mart
    closing_real
  else
    why="$(cat "$state/real-node.why")"
    wait_for 90 "the first run" dataset_has orders '{.status.watermark}' || true
    kubectl get sluice -n "$namespace"
    closing_kwok "$why"
  fi
}

down() {
  if [ -f "$state/operator.pid" ]; then
    kill "$(cat "$state/operator.pid")" 2>/dev/null || true
    rm -f "$state/operator.pid"
  fi
  bash "$repo/e2e/demo/postgres.sh" down
  bash "$repo/e2e/cluster/down.sh"
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  drift) cluster; drift "double precision" False True ;;
  undrift) cluster; drift "numeric(12,2)" True False; backfill_held ;;
  *)
    echo "usage: $0 up|down|drift|undrift" >&2
    exit 2
    ;;
esac
