#!/usr/bin/env bash
# Starts a local Kubernetes control plane on 127.0.0.1 for the e2e tests, with fake kwok nodes:
#
#   etcd -> kube-apiserver -> kube-controller-manager, kube-scheduler, kwok (+ N fake Nodes)
#
# Binaries come from build.sh (${SLUICE_K8S_CACHE:-$HOME/.cache/sluice}/<version>/bin). Every
# port is chosen free at start. State (pki, etcd data, pid files, logs, kubeconfig) lives in
# ${SLUICE_CLUSTER_DIR:-${TMPDIR:-/tmp}/sluice-cluster}. Returns once /readyz is ok, the nodes are
# Ready and schedulable and the default ServiceAccount exists; the last line of stdout is the
# kubeconfig path (progress goes to stderr). If the cluster is already up, only prints that path.
#
# Environment:
#   SLUICE_CLUSTER_DIR        state directory (default ${TMPDIR:-/tmp}/sluice-cluster)
#   SLUICE_K8S_CACHE          build.sh's cache root (default $HOME/.cache/sluice)
#   SLUICE_KWOK_NODES         number of fake nodes (default 3)
#   SLUICE_KWOK_POD_DURATION  how long a pod runs before it completes, Go duration (default 1s);
#                             per pod: annotation kwok.sluice.dev/duration
#   SLUICE_START_TIMEOUT      seconds to wait for each component (default 60)
#   SLUICE_REAL_NODE          1 (default): also one real node (containerd + kubelet, root and
#                             Linux cgroups needed; see node-up.sh); 0: kwok nodes only
#
# On failure: exits non-zero after printing the tail of the failing component's log, stops what
# it started and keeps the state directory (logs) for inspection.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$here/common.sh"
# shellcheck source=node-up.sh
source "$here/node-up.sh"

nodes="${SLUICE_KWOK_NODES:-3}"
pod_duration="${SLUICE_KWOK_POD_DURATION:-1s}"
start_timeout="${SLUICE_START_TIMEOUT:-60}"
real_node="${SLUICE_REAL_NODE:-1}"

pki="$cluster_dir/pki"
curl_api=(curl -sf --max-time 2 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key")
kubectl() { "$bin_dir/kubectl" --kubeconfig "$kubeconfig" --request-timeout=5s "$@"; }

lock_cluster

# ---------------------------------------------------------------------------------------------
# Already up? Then this is a no-op.

saved_api_url() { [ -f "$cluster_dir/env" ] && sed -n 's/^SLUICE_APISERVER_URL=//p' "$cluster_dir/env"; }

all_alive() {
  local c
  for c in "${components[@]}"; do is_alive "$c" || return 1; done
}

if [ -f "$marker" ] && [ -f "$kubeconfig" ] && all_alive \
  && [ "$("${curl_api[@]}" "$(saved_api_url)/readyz" 2>/dev/null)" = ok ]; then
  log "already up ($cluster_dir)"
  echo "$kubeconfig"
  exit 0
fi

# Leftovers of a cluster that is partly dead (or was stopped with SLUICE_KEEP_CLUSTER_DIR=1):
# stop whatever still runs and start from scratch.
if [ -f "$marker" ]; then
  log "stale cluster state in $cluster_dir; cleaning it up"
  SLUICE_KEEP_CLUSTER_DIR=0 "$here/down.sh" >&2
elif [ -d "$cluster_dir" ] && [ -n "$(ls -A "$cluster_dir")" ]; then
  log "$cluster_dir exists, is not empty and was not created by up.sh; refusing to use it"
  exit 1
fi

# ---------------------------------------------------------------------------------------------
# Preconditions.

for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok; do
  if [ ! -x "$bin_dir/$b" ]; then
    log "missing $bin_dir/$b; build the binaries first: bash $here/build.sh"
    exit 1
  fi
done
for tool in openssl curl python3; do
  command -v "$tool" >/dev/null || { log "$tool is required"; exit 1; }
done
case "$nodes" in '' | *[!0-9]* | 0) log "SLUICE_KWOK_NODES must be a positive integer"; exit 1 ;; esac

# Go duration ("1s", "1.5s", "250ms", "1m30s") -> integer milliseconds for the kwok stages.
pod_duration_ms="$(python3 - "$pod_duration" <<'EOF'
import re, sys
s = sys.argv[1]
units = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1, "s": 1e3, "m": 60e3, "h": 3600e3}
parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", s)
if s != "0" and (not parts or "".join(n + u for n, u in parts) != s):
    sys.exit(f"SLUICE_KWOK_POD_DURATION={s!r} is not a Go duration such as 1s or 500ms")
print(round(sum(float(n) * units[u] for n, u in parts)))
EOF
)"

# ---------------------------------------------------------------------------------------------
# Failure handling: on any error or interrupt before the cluster is up, show the relevant log,
# stop what was started, keep the directory.

failing=""   # component whose log is most relevant right now
ok=0
on_exit() {
  local rc=$?
  [ "$ok" = 1 ] && return
  [ "$rc" = 0 ] && rc=1
  if [ -n "$failing" ] && [ -f "$log_dir/$failing.log" ]; then
    log "$failing failed to start; last lines of $log_dir/$failing.log:"
    tail -n 40 "$log_dir/$failing.log" >&2 || true
  fi
  log "stopping what was started; logs kept in $log_dir"
  SLUICE_KEEP_CLUSTER_DIR=1 "$here/down.sh" >&2 || true
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

t0=$SECONDS
mkdir -p "$cluster_dir"
touch "$marker"
mkdir -p "$pki" "$pid_dir" "$log_dir" "$cluster_dir/etcd" "$cluster_dir/kwok"

# ---------------------------------------------------------------------------------------------
# Ports: distinct ports free on every address (the API server may listen on all of them, below),
# below the ephemeral range (so an outgoing connection
# of one component cannot take a port before the component meant to listen on it binds it).

read -r etcd_port etcd_peer_port api_port kcm_port sched_port kubelet_port kubelet_healthz_port < <(python3 - <<'EOF'
import random, socket
ports = []
while len(ports) < 7:
    p = random.randint(20000, 32000)
    if p in ports:
        continue
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", p))
        except OSError:
            continue
    ports.append(p)
print(*ports)
EOF
)
[ -n "$kubelet_healthz_port" ] || { log "could not pick free ports"; exit 1; }
api_url="https://127.0.0.1:$api_port"

# ---------------------------------------------------------------------------------------------
# The real node's bridge, address, cgroup root and configs (node-up.sh), first: its address goes
# into the API server's certificate.

node_t0=$SECONDS
node_san=""
api_bind=127.0.0.1
api_advertise=127.0.0.1
if [ "$real_node" != 0 ]; then
  node_prepare
  # Pods on the node's bridge reach the API server at the node's address (there is no
  # kube-proxy: in-cluster clients are pointed there with KUBERNETES_SERVICE_HOST/PORT), so it
  # listens on every address and its certificate names that one.
  node_san=", IP:$node_ip"
  api_bind=0.0.0.0
  api_advertise="$node_ip"
fi

# ---------------------------------------------------------------------------------------------
# PKI: a CA; the apiserver's serving cert; an admin client cert (O=system:masters) used by
# kubectl, the tests and every component; a front-proxy client cert (aggregation layer; without
# it the controller-manager and scheduler log errors about the requestheader CA every few
# seconds); a service-account signing key. ECDSA P-256 keys: fast to generate, supported by Go
# and rustls.

log "generating certificates"
cat >"$pki/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
authorityKeyIdentifier = keyid
subjectAltName = IP:127.0.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local, IP:10.96.0.1__NODE_SAN__
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
EOF
sed -i "s/__NODE_SAN__/$node_san/" "$pki/openssl.cnf"
(
  cd "$pki"
  exec 2>openssl.log
  newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
  newkey ca.key
  openssl req -x509 -new -config openssl.cnf -extensions ca -key ca.key -subj "/CN=sluice-e2e-ca" \
    -days 3650 -out ca.crt
  sign() { # name subject extensions
    newkey "$1.key"
    openssl req -new -config openssl.cnf -key "$1.key" -subj "$2" -out "$1.csr"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile openssl.cnf -extensions "$3" -out "$1.crt"
  }
  sign apiserver "/CN=kube-apiserver" server
  sign admin "/O=system:masters/CN=sluice-admin" client
  sign front-proxy-client "/CN=front-proxy-client" client
  newkey sa.key
  openssl pkey -in sa.key -pubout -out sa.pub
  chmod 600 ./*.key
) || { log "openssl failed:"; cat "$pki/openssl.log" >&2; exit 1; }

b64() { base64 <"$1" | tr -d '\n'; }
cat >"$kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: sluice
  cluster:
    server: $api_url
    certificate-authority-data: $(b64 "$pki/ca.crt")
users:
- name: sluice-admin
  user:
    client-certificate-data: $(b64 "$pki/admin.crt")
    client-key-data: $(b64 "$pki/admin.key")
contexts:
- name: sluice
  context:
    cluster: sluice
    user: sluice-admin
current-context: sluice
EOF
chmod 600 "$kubeconfig"

# ---------------------------------------------------------------------------------------------
# Process management.

# start <name> <args...>: see common.sh (it also records the arguments, for restart.sh).

# wait_for <name> <description> <command...>: polls the command until it succeeds; fails early
# if the component died, or after $start_timeout seconds.
wait_for() {
  local name="$1" what="$2"; shift 2
  local deadline=$((SECONDS + start_timeout))
  failing="$name"
  until "$@" >/dev/null 2>&1; do
    if ! is_alive "$name"; then
      log "$name exited while waiting for $what"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      log "timed out after ${start_timeout}s waiting for $what"
      return 1
    fi
    sleep 0.25
  done
  log "$what ($((SECONDS - t0))s)"
}

# ---------------------------------------------------------------------------------------------
# etcd: single member, no fsync (test data only).

start etcd \
  --name=sluice \
  --data-dir="$cluster_dir/etcd" \
  --listen-client-urls="http://127.0.0.1:$etcd_port" \
  --advertise-client-urls="http://127.0.0.1:$etcd_port" \
  --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" \
  --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
  --initial-cluster="sluice=http://127.0.0.1:$etcd_peer_port" \
  --unsafe-no-fsync=true
etcd_healthy() { curl -sf --max-time 2 "http://127.0.0.1:$etcd_port/health" | grep -q '"health":"true"'; }
wait_for etcd "etcd healthy" etcd_healthy

# ---------------------------------------------------------------------------------------------
# kube-apiserver, with an audit log (logs/audit.log, JSON lines) of what the e2e tests count:
# Job creates and deletes, status writes of Pipelines, Backfills, Datasets and CronJobs, Event
# writes, and Lease writes outside kube-node-lease (leader election). Metadata level (no
# bodies), nothing else: cheap.

cat >"$cluster_dir/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  namespaces: [kube-node-lease]
- level: Metadata
  verbs: [create, delete]
  resources:
  - group: batch
    resources: [jobs]
- level: Metadata
  verbs: [update, patch]
  resources:
  - group: sluice.dev
    resources: [pipelines/status, backfills/status, datasets/status]
  - group: batch
    resources: [cronjobs/status]
- level: Metadata
  verbs: [create, update, patch]
  resources:
  - group: ""
    resources: [events]
  - group: events.k8s.io
    resources: [events]
- level: Metadata
  verbs: [create, update, patch]
  resources:
  - group: coordination.k8s.io
    resources: [leases]
- level: None
EOF

start kube-apiserver \
  --audit-policy-file="$cluster_dir/audit-policy.yaml" \
  --audit-log-path="$log_dir/audit.log" \
  --audit-log-format=json \
  --audit-log-maxsize=0 \
  --etcd-servers="http://127.0.0.1:$etcd_port" \
  --bind-address="$api_bind" \
  --advertise-address="$api_advertise" \
  --secure-port="$api_port" \
  --cert-dir="$pki" \
  --tls-cert-file="$pki/apiserver.crt" \
  --tls-private-key-file="$pki/apiserver.key" \
  --client-ca-file="$pki/ca.crt" \
  --requestheader-client-ca-file="$pki/ca.crt" \
  --requestheader-allowed-names=front-proxy-client \
  --requestheader-username-headers=X-Remote-User \
  --requestheader-group-headers=X-Remote-Group \
  --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --proxy-client-cert-file="$pki/front-proxy-client.crt" \
  --proxy-client-key-file="$pki/front-proxy-client.key" \
  --kubelet-client-certificate="$pki/admin.crt" \
  --kubelet-client-key="$pki/admin.key" \
  --kubelet-preferred-address-types=InternalIP,Hostname \
  --service-account-key-file="$pki/sa.pub" \
  --service-account-signing-key-file="$pki/sa.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-cluster-ip-range=10.96.0.0/16 \
  --authorization-mode=Node,RBAC \
  --enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,ResourceQuota \
  --allow-privileged=true \
  --endpoint-reconciler-type=none \
  --profiling=false
# containerd meanwhile (it needs nothing from the API server), and the images it runs.
if [ "$real_node" != 0 ]; then
  node_start_containerd
  node_import_images
fi
api_ready() { [ "$("${curl_api[@]}" "$api_url/readyz")" = ok ]; }
wait_for kube-apiserver "kube-apiserver /readyz ok" api_ready

# ---------------------------------------------------------------------------------------------
# kube-controller-manager, kube-scheduler, kwok: all only need the apiserver, so start together.
# The CronJob controller is left out: the benchmarks (e2e/bench) run it in a process of its own,
# to read its CPU and memory beside the operator's; no test relies on it.

start kube-controller-manager \
  --kubeconfig="$kubeconfig" \
  --authentication-kubeconfig="$kubeconfig" \
  --authorization-kubeconfig="$kubeconfig" \
  --bind-address=127.0.0.1 \
  --secure-port="$kcm_port" \
  --leader-elect=false \
  --controllers='*,-cronjob-controller' \
  --use-service-account-credentials=false \
  --service-account-private-key-file="$pki/sa.key" \
  --root-ca-file="$pki/ca.crt" \
  --cluster-signing-cert-file="$pki/ca.crt" \
  --cluster-signing-key-file="$pki/ca.key" \
  --service-cluster-ip-range=10.96.0.0/16 \
  --concurrent-job-syncs=10 \
  --resource-quota-sync-period=10s \
  --node-monitor-period=2s \
  --kube-api-qps=200 \
  --kube-api-burst=400 \
  --profiling=false

start kube-scheduler \
  --kubeconfig="$kubeconfig" \
  --authentication-kubeconfig="$kubeconfig" \
  --authorization-kubeconfig="$kubeconfig" \
  --bind-address=127.0.0.1 \
  --secure-port="$sched_port" \
  --leader-elect=false \
  --profiling=false

# kwok stages (see kwok/*.yaml), with the default pod run time filled in.
stage_files=()
for f in "$here"/kwok/*.yaml; do
  sed "s/__SLUICE_KWOK_POD_DURATION_MS__/$pod_duration_ms/g" "$f" >"$cluster_dir/kwok/${f##*/}"
  stage_files+=("$cluster_dir/kwok/${f##*/}")
done
stage_list="$(IFS=,; echo "${stage_files[*]}")"

start kwok \
  --kubeconfig="$kubeconfig" \
  --config="$stage_list" \
  --manage-all-nodes=false \
  --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
  --node-lease-duration-seconds=40 \
  --cidr=10.244.0.0/16 \
  --node-ip=10.0.0.1

# Fake nodes: kwok's annotation, no taint (ordinary pods schedule without tolerations), their own
# pod CIDR and InternalIP, realistic allocatable.
failing=kube-apiserver
{
  for ((i = 1; i <= nodes; i++)); do
    cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/arch: amd64
    kubernetes.io/os: linux
    kubernetes.io/hostname: kwok-node-$i
    node-role.kubernetes.io/agent: ""
spec:
  podCIDR: 10.244.$i.0/24
  podCIDRs:
  - 10.244.$i.0/24
status:
  addresses:
  - type: InternalIP
    address: 10.0.0.$((i + 1))
  - type: Hostname
    address: kwok-node-$i
  allocatable:
    cpu: "8"
    memory: 32Gi
    pods: "110"
    ephemeral-storage: 100Gi
  capacity:
    cpu: "8"
    memory: 32Gi
    pods: "110"
    ephemeral-storage: 100Gi
  nodeInfo:
    architecture: amd64
    operatingSystem: linux
    kubeletVersion: $KUBERNETES_VERSION
    kubeProxyVersion: $KUBERNETES_VERSION
    containerRuntimeVersion: kwok://$KWOK_VERSION
    kernelVersion: kwok
    osImage: kwok
    bootID: ""
    machineID: ""
    systemUUID: ""
EOF
  done
} >"$cluster_dir/nodes.yaml"
kubectl create -f "$cluster_dir/nodes.yaml" >/dev/null
[ "$real_node" = 0 ] || node_start_kubelet

kcm_healthy() { [ "$(curl -skf --max-time 2 "https://127.0.0.1:$kcm_port/healthz")" = ok ]; }
sched_healthy() { [ "$(curl -skf --max-time 2 "https://127.0.0.1:$sched_port/healthz")" = ok ]; }
wait_for kube-controller-manager "kube-controller-manager /healthz ok" kcm_healthy
wait_for kube-scheduler "kube-scheduler /healthz ok" sched_healthy

# Ready and without taints (the node-lifecycle controller removes node.kubernetes.io/not-ready
# once kwok has reported the node Ready).
nodes_ready() {
  local n
  n="$(kubectl get nodes -l type=kwok -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}/{.spec.taints}{"\n"}{end}' | grep -c '^True/$')"
  [ "$n" -ge "$nodes" ]
}
wait_for kwok "$nodes kwok nodes Ready and untainted" nodes_ready
if [ "$real_node" != 0 ]; then
  node_wait_ready
  log "real node Ready $((SECONDS - node_t0))s after its set-up began"
fi

# The serviceaccount controller has created the default ServiceAccount (ServiceAccount admission
# rejects pods until it exists).
wait_for kube-controller-manager "default ServiceAccount created" kubectl get serviceaccount default -n default

cat >"$cluster_dir/env" <<EOF
KUBECONFIG=$kubeconfig
SLUICE_APISERVER_URL=$api_url
SLUICE_ETCD_URL=http://127.0.0.1:$etcd_port
SLUICE_KCM_PORT=$kcm_port
SLUICE_SCHEDULER_PORT=$sched_port
SLUICE_K8S_BIN=$bin_dir
EOF
if [ "$real_node" = 0 ]; then
  echo "SLUICE_REAL_NODE=0" >>"$cluster_dir/env"
else
  cat >>"$cluster_dir/env" <<EOF
SLUICE_REAL_NODE=1
SLUICE_NODE_NAME=$node_name
SLUICE_NODE_IP=$node_ip
SLUICE_NODE_APISERVER_HOST=$node_ip
SLUICE_NODE_APISERVER_PORT=$api_port
SLUICE_NODE_LABEL=$node_label
SLUICE_NODE_TAINT=$node_label=true:NoSchedule
SLUICE_NODE_BRIDGE=$bridge
SLUICE_POD_SUBNET=$pod_subnet
SLUICE_CONTAINERD_SOCK=$containerd_sock
EOF
fi

ok=1
log "cluster up in $((SECONDS - t0))s: $api_url, logs in $log_dir"
echo "$kubeconfig"
