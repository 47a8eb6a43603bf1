#!/usr/bin/env bash
# Checks that a cluster started by up.sh behaves as the e2e tests expect: a Job completes, a Job
# whose pod is annotated to fail fails, the termination message annotation reaches the pod status,
# the per-pod duration annotation is honoured, ResourceQuota usage is computed, LimitRanger
# defaults apply, deleting a running Job removes its pods, and a namespace deletes.
#
# Usage: e2e/cluster/smoke.sh   (uses $SLUICE_CLUSTER_DIR/kubeconfig; the cluster must be up)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$here/common.sh"

[ -f "$kubeconfig" ] || { log "no cluster at $cluster_dir; run up.sh first"; exit 1; }
kubectl() { "$bin_dir/kubectl" --kubeconfig "$kubeconfig" "$@"; }
ns="smoke-$$"
fail() { log "FAIL: $*"; kubectl get all,resourcequota -n "$ns" -o wide >&2 || true; exit 1; }
pass() { log "ok: $*"; }
# get <kubectl get arguments...> <jsonpath>
get() { kubectl get -n "$ns" "${@:1:$#-1}" -o jsonpath="${*: -1}"; }

t0=$SECONDS
kubectl create namespace "$ns" >/dev/null
kubectl apply -n "$ns" -f - >/dev/null <<'EOF'
apiVersion: v1
kind: ResourceQuota
metadata: {name: quota}
spec:
  hard: {pods: "20", requests.cpu: "10"}
---
apiVersion: v1
kind: LimitRange
metadata: {name: defaults}
spec:
  limits:
  - type: Container
    defaultRequest: {cpu: 100m, memory: 64Mi}
    default: {cpu: 200m, memory: 128Mi}
---
apiVersion: batch/v1
kind: Job
metadata: {name: succeeds}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers: [{name: main, image: busybox, command: ["true"]}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: fails}
spec:
  backoffLimit: 0
  template:
    metadata:
      annotations:
        kwok.sluice.dev/outcome: fail
        kwok.sluice.dev/termination-message: "step failed: exit 1"
    spec:
      restartPolicy: Never
      containers: [{name: main, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata:
  name: reports
  annotations:
    kwok.sluice.dev/duration: 3s
    kwok.sluice.dev/termination-message: '{"outputs":{"digest":"sha256:abc"}}'
spec:
  restartPolicy: Never
  containers: [{name: main, image: busybox}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: long}
spec:
  completions: 4
  parallelism: 2
  template:
    metadata:
      annotations: {kwok.sluice.dev/duration: 10m}
    spec:
      restartPolicy: Never
      containers: [{name: main, image: busybox}]
EOF

kubectl wait -n "$ns" --for=condition=Complete job/succeeds --timeout=30s >/dev/null \
  || fail "job/succeeds did not complete"
pass "Job completes"

kubectl wait -n "$ns" --for=condition=Failed job/fails --timeout=30s >/dev/null \
  || fail "job/fails did not fail"
term="$(get pods -l job-name=fails '{.items[0].status.containerStatuses[0].state.terminated}')"
case "$term" in
  *'"exitCode":1'*'"message":"step failed: exit 1"'*'"reason":"Error"'*) ;;
  *) fail "unexpected terminated state of the failing pod: $term" ;;
esac
pass "Job with kwok.sluice.dev/outcome=fail fails (exitCode 1, reason Error, message)"

kubectl wait -n "$ns" --for=jsonpath='{.status.phase}'=Succeeded pod/reports --timeout=30s >/dev/null \
  || fail "pod/reports did not succeed"
msg="$(get pod/reports '{.status.containerStatuses[0].state.terminated.message}')"
[ "$msg" = '{"outputs":{"digest":"sha256:abc"}}' ] || fail "termination message is '$msg'"
# Timestamps have a 1 s resolution: a 3 s run shows as 2-4 s.
ran=$(( $(date -d "$(get pod/reports '{.status.containerStatuses[0].state.terminated.finishedAt}')" +%s) \
  - $(date -d "$(get pod/reports '{.status.containerStatuses[0].state.terminated.startedAt}')" +%s) ))
((ran >= 2 && ran <= 4)) || fail "pod/reports ran ${ran}s, want 3s"
pass "kwok.sluice.dev/duration and kwok.sluice.dev/termination-message"

kubectl wait -n "$ns" --for=jsonpath='{.status.active}'=2 job/long --timeout=30s >/dev/null \
  || fail "job/long has not 2 active pods"
req="$(get pods -l job-name=long '{.items[0].spec.containers[0].resources.requests.cpu}')"
[ "$req" = 100m ] || fail "LimitRanger default request not applied (cpu request '$req')"
kubectl wait -n "$ns" --for=jsonpath='{.status.used.pods}'=2 resourcequota/quota --timeout=30s >/dev/null \
  || fail "quota usage is $(get resourcequota/quota '{.status.used}'), want 2 pods"
pass "LimitRanger defaults; ResourceQuota status.used ($(get resourcequota/quota '{.status.used}'))"

kubectl delete -n "$ns" job/long --wait=true --timeout=30s >/dev/null || fail "job/long not deleted"
for ((i = 0; i < 120; i++)); do
  [ -z "$(kubectl get pods -n "$ns" -l job-name=long -o name)" ] && break
  sleep 0.25
done
[ -z "$(kubectl get pods -n "$ns" -l job-name=long -o name)" ] || fail "pods of job/long not deleted"
pass "deleting a running Job removes its pods"

kubectl delete namespace "$ns" --wait=true --timeout=60s >/dev/null || fail "namespace not deleted"
pass "namespace deleted"
log "all checks passed in $((SECONDS - t0))s"
