# The real node, for up.sh (sourced after common.sh and node-common.sh; uses up.sh's start,
# wait_for, kubectl, $pki, $kubeconfig): containerd (state in the cluster dir), a kubelet with the
# cgroupfs driver, pod networking through Debian's bridge CNI plugin on a bridge of its own.
#
#   node_prepare          picks the node's index, makes its bridge and cgroup root, writes configs
#   node_start_containerd starts containerd and waits for its socket
#   node_import_images    imports the pause (sandbox) and busybox images (images/build.sh)
#   node_start_kubelet    starts the kubelet, registered with a label and a NoSchedule taint
#   node_wait_ready       waits for the Node to be Ready

# node_pick_index: the first index 1..250 no other cluster (or anything else) uses: no bridge of
# that name, no address or route in its subnet, no cgroup root left. Held under a machine-wide
# lock until the bridge exists, so two up.sh runs cannot pick the same one.
node_pick_index() {
  local i used
  used="$(ip -o addr; ip route; ip -o link)"
  for ((i = 1; i <= 250; i++)); do
    node_names "$i"
    grep -q "10\.200\.$i\.\|$bridge[:@ ]" <<<"$used" && continue
    [ -e "/sys/fs/cgroup/cpu/$cgroup_root" ] && continue
    echo "$i"
    return 0
  done
  log "no free real-node index (10.200.1-250.0/24 all in use)"
  return 1
}

# node_claim: picks the index and makes the bridge with the node's address (the CNI bridge
# plugin reuses an existing bridge and its gateway address). The bridge's address is the node's
# InternalIP: this kernel has no dummy interfaces, and a loopback node IP is refused in node
# status (then `kubectl logs` fails with "no preferred addresses found").
node_claim() {
  local index
  index="$(node_pick_index)"
  node_names "$index"
  ip link add "$bridge" type bridge
  ip addr add "$node_ip/24" dev "$bridge"
  ip link set "$bridge" up
  echo "$index" >"$node_dir/index"
}

node_preconditions() {
  local b
  [ "$(id -u)" = 0 ] || { log "the real node needs root (set SLUICE_REAL_NODE=0 for kwok nodes only)"; exit 1; }
  [ "$(uname -s)" = Linux ] || { log "the real node needs Linux (set SLUICE_REAL_NODE=0)"; exit 1; }
  for b in kubelet containerd containerd-shim-runc-v2 ctr runc cni/bridge cni/host-local cni/loopback; do
    [ -x "$bin_dir/$b" ] || { log "missing $bin_dir/$b; build it first: bash $here/build.sh node"; exit 1; }
  done
  command -v ip >/dev/null || { log "ip (iproute2) is required for the real node"; exit 1; }
  [ -d /sys/fs/cgroup/cpu ] || [ -f /sys/fs/cgroup/cgroup.controllers ] ||
    { log "no cgroup hierarchy under /sys/fs/cgroup (set SLUICE_REAL_NODE=0)"; exit 1; }
  # The containerd socket path must fit a unix socket address (108 bytes).
  [ "${#containerd_sock}" -lt 100 ] || { log "$containerd_sock is too long for a unix socket; use a shorter SLUICE_CLUSTER_DIR"; exit 1; }
}

# node_cgroups: the kubelet's cgroup root in every hierarchy (the kubelet refuses a root that
# does not exist); cpuset needs its cpus and mems filled before children can hold tasks.
node_cgroups() {
  local h
  for h in $(cgroup_hierarchies); do
    mkdir -p "$h/$cgroup_root"
    if [ -f "$h/cpuset.cpus" ] && [ -f "$h/$cgroup_root/cpuset.cpus" ]; then
      cat "$h/cpuset.cpus" >"$h/$cgroup_root/cpuset.cpus"
      cat "$h/cpuset.mems" >"$h/$cgroup_root/cpuset.mems"
    fi
  done
}

node_prepare() {
  node_preconditions
  mkdir -p "$node_dir"/{run,containerd,cni/net.d,cni/ipam,kubelet,pod-logs}
  locked "${TMPDIR:-/tmp}/sluice-real-node.lock" node_claim
  node_names "$(cat "$node_dir/index")"
  node_cgroups
  node_write_cni_config
  node_write_containerd_config
  node_write_kubelet_config
}

# One bridge network, no masquerading and no portmap (both need iptables, which this machine
# lacks; the pods only talk to the node). host-local keeps its leases in the cluster dir.
node_write_cni_config() {
  cat >"$node_dir/cni/net.d/10-sluice.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "sluice-$bridge",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$pod_subnet", "gateway": "$node_ip" }]],
        "routes": [{ "dst": "0.0.0.0/0" }],
        "dataDir": "$node_dir/cni/ipam"
      }
    }
  ]
}
EOF
}

# containerd 2.x (config version 3): root, state, sockets, runc's state and the pods' network
# namespaces in the cluster dir; no NRI (its socket is machine-wide); the sandbox image is the
# locally built pause image; restrict_oom_score_adj because this machine refuses a negative
# oom_score_adj even to root.
node_write_containerd_config() {
  local c="$node_dir/containerd"
  cat >"$c/config.toml" <<EOF
version = 3
root = "$c/root"
state = "$c/state"
temp = "$c/tmp"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.internal.v1.opt"]

[grpc]
  address = "$containerd_sock"
[ttrpc]
  address = "$containerd_sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$bin_dir/runc"
        Root = "$c/runc"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["$bin_dir/cni"]
    conf_dir = "$node_dir/cni/net.d"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "localhost/pause:dev"

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
EOF
}

# The kubelet: cgroupfs driver under a cgroup root of its own (cgroup v1 here, hence
# failCgroupV1: false), serving on the node's address at a free port, client certificates from
# the cluster CA (the API server calls it with the admin certificate), no eviction, no image
# garbage collection (the images are imported, they cannot be pulled again), pod logs in the
# cluster dir. Local storage capacity isolation stays on: without it the node reports no
# ephemeral-storage and pods that request some (the chart's operator) never schedule.
node_write_kubelet_config() {
  cat >"$node_dir/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $node_ip
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $kubelet_healthz_port
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
cgroupRoot: /$cgroup_root
cgroupsPerQOS: true
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$containerd_sock
evictionHard: {}
enforceNodeAllocatable: []
localStorageCapacityIsolation: true
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
podLogsDir: $node_dir/pod-logs
oomScoreAdj: 0
maxPods: 30
serializeImagePulls: false
registerWithTaints:
- key: $node_label
  value: "true"
  effect: NoSchedule
EOF
}

node_start_containerd() {
  start containerd --config "$node_dir/containerd/config.toml"
  wait_for containerd "containerd serving" node_ctr version
}

# The sandbox (pause) image and the test image, built from images/ (cached) and imported.
node_import_images() {
  failing=containerd
  SLUICE_IMAGE_IMPORT=1 bash "$sluice_root/images/build.sh" pause busybox >&2
}

node_start_kubelet() {
  start kubelet \
    --config="$node_dir/kubelet/config.yaml" \
    --kubeconfig="$kubeconfig" \
    --root-dir="$node_dir/kubelet/root" \
    --cert-dir="$node_dir/kubelet/pki" \
    --hostname-override="$node_name" \
    --node-ip="$node_ip" \
    --node-labels="$node_label=true"
}

node_ready() {
  [ "$(kubectl get node "$node_name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

node_wait_ready() {
  wait_for kubelet "real node $node_name Ready ($node_ip)" node_ready
}
