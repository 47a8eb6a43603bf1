# Sourced by e2e/demo.sh: what the demo prints. Needs kubectl(), $namespace, $state.

# The Datasets with what their producing steps reported: rows, watermark, schema, conformance.
show_datasets() {
  kubectl get datasets -n "$namespace" -o custom-columns='DATASET:.metadata.name,LAYER:.spec.layer,ROWS:.status.rowsWritten,WATERMARK:.status.watermark,FRESHNESS:.status.freshness.state,CONFORMS:.status.conditions[?(@.type=="SchemaConformant")].status,SCHEMA:.status.observedSchema[*].type'
}

# The mart as the warehouse holds it, newest hours first.
show_mart() {
  (set -a; source "$state/postgres/elt.env"; set +a
   if [ "$(psql -X -At -c "SELECT to_regclass('mart.hourly_revenue') IS NOT NULL")" = t ]; then
     psql -X -c "SELECT hour, currency, orders, revenue, last_order_at FROM mart.hourly_revenue ORDER BY hour DESC, currency LIMIT 9"
   else
     echo "(no mart.hourly_revenue yet: orders-transform builds it a minute or two after the first extract)"
   fi)
}

# wait_for <seconds> <what> <command...>: runs the command every 2 s until it succeeds.
wait_for() {
  local seconds="$1" what="$2" i; shift 2
  echo "waiting for $what..." >&2
  for ((i = 0; i < seconds; i += 2)); do "$@" >/dev/null 2>&1 && return 0; sleep 2; done
  echo "still no $what after ${seconds}s (see $state/operator.log)" >&2
  return 1
}

# dataset_has <dataset> <jsonpath>: the Dataset's field is set.
dataset_has() { kubectl get dataset -n "$namespace" "$1" -o jsonpath="$2" | grep -q .; }

closing_real() {
  local env="$state/postgres/elt.env"
  cat <<MSG

The demo is running: orders are placed in the shop every second; every minute orders-ingest
extracts the last minute into raw.orders on the real node, and orders-transform builds
staging.orders and mart.hourly_revenue from the minute before.
  export KUBECONFIG=$kubeconfig
  kubectl get datasets -n $namespace                # rows written, watermarks, freshness, contract
  kubectl get datasets -n $namespace -o custom-columns='NAME:.metadata.name,ROWS:.status.rowsWritten,WATERMARK:.status.watermark,SCHEMA:.status.observedSchema[*].type'
  kubectl get pipelines,jobs,pods -n $namespace -o wide
  (set -a; . $env; psql -c 'SELECT * FROM mart.hourly_revenue ORDER BY hour DESC')   # the mart filling
  make demo-drift     # the shop changes a column type: the orders contract breaks, orders-transform holds
  make demo-undrift   # the type goes back: orders-transform runs again, a Backfill runs the skipped windows
  operator log: $state/operator.log; database log: $state/postgres/server.log
Stop it with: make demo-down
MSG
}

closing_kwok() {
  cat <<MSG

The demo is running ON KWOK FAKE NODES ($1): the step pods are completed by kwok
without running, so Jobs succeed and Datasets advance to their window ends, but no data moves
(no rows, no reported schema). With a real node (Linux, root; see the README) it does real ELT.
  export KUBECONFIG=$kubeconfig
  kubectl get sluice -n $namespace              # pipelines, datasets, backfills
  kubectl describe pipeline orders-ingest -n $namespace
  curl -s http://$http/metrics | grep ^sluice_
  operator log: $state/operator.log
Stop it with: make demo-down
MSG
}
