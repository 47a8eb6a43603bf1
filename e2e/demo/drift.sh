# Sourced by e2e/demo.sh: scripted schema drift. The shop changes orders.amount from
# numeric(12,2) to double precision (or back); the next extract mirrors the new type into
# raw.orders and reports it; the `orders` Dataset's contract (policy Block) flips
# SchemaConformant, and orders-transform, which reads `orders`, holds (InputsHeld) or resumes.

condition() {
  kubectl get "$1" -n "$namespace" "$2" -o jsonpath="{.status.conditions[?(@.type==\"$3\")].status}"
}

# condition_is <kind> <name> <type> <status>
condition_is() { [ "$(condition "$1" "$2" "$3")" = "$4" ]; }

# A window of orders-transform was recorded Skipped because its input broke its contract.
held_window() {
  kubectl get pipeline orders-transform -n "$namespace" -o jsonpath='{.status.skippedRuns[*].reason}' |
    grep -q InputContractViolated
}

# drift <type> <expected SchemaConformant> <expected InputsHeld>
drift() {
  local type="$1" conformant="$2" held="$3"
  if [ ! -f "$state/postgres/env" ]; then
    echo "the demo's PostgreSQL is not running: it runs with the real node only (make demo)" >&2
    exit 1
  fi
  (set -a; source "$state/postgres/env"; set +a
   psql -X -q -v ON_ERROR_STOP=1 -d shop -c "ALTER TABLE orders ALTER COLUMN amount TYPE $type")
  echo "shop: orders.amount is now $type; the next extract (within a minute) reports it" >&2
  wait_for 180 "Dataset orders SchemaConformant=$conformant" condition_is dataset orders SchemaConformant "$conformant"
  wait_for 120 "Pipeline orders-transform InputsHeld=$held" condition_is pipeline orders-transform InputsHeld "$held"
  [ "$held" = False ] || wait_for 90 "a window of orders-transform skipped while held" held_window
  show_datasets
  echo
  kubectl get dataset orders -n "$namespace" \
    -o jsonpath='{range .status.conditions[?(@.type=="SchemaConformant")]}SchemaConformant={.status} {.reason}: {.message}{"\n"}{end}'
  kubectl get pipeline orders-transform -n "$namespace" \
    -o jsonpath='{range .status.conditions[?(@.type=="InputsHeld")]}InputsHeld={.status} {.reason}: {.message}{"\n"}{end}'
  kubectl get pipeline orders-transform -n "$namespace" \
    -o jsonpath='{range .status.skippedRuns[*]}skipped {.id}: {.reason}{"\n"}{end}' | tail -n 3
}

# After undrift: the windows orders-transform skipped while held, as one Backfill over their
# range (reprocess Missing, the default: only windows without a successful run), then the mart.
backfill_held() {
  local range name
  range="$(kubectl get pipeline orders-transform -n "$namespace" -o json | python3 -c '
import json, sys
runs = [r for r in json.load(sys.stdin)["status"].get("skippedRuns", []) if r.get("reason") == "InputContractViolated"]
if runs:
    print(min(r["window"]["start"] for r in runs), max(r["window"]["end"] for r in runs))')"
  [ -n "$range" ] || return 0
  name="after-drift-$(date +%s)"
  kubectl apply -n "$namespace" -f - >/dev/null <<YAML
apiVersion: sluice.dev/v1alpha1
kind: Backfill
metadata:
  name: $name
spec:
  pipelineRef: {name: orders-transform}
  range: {start: "${range% *}", end: "${range#* }"}
YAML
  echo "Backfill $name runs the windows skipped while held: [${range% *}, ${range#* })" >&2
  wait_for 180 "Backfill $name Complete" condition_is backfill "$name" Complete True || true
  kubectl get backfill -n "$namespace" "$name"
  show_mart
}
