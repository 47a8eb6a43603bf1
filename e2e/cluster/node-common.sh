# The real node's names and paths, shared by up.sh, down.sh and images/build.sh (sourced after
# common.sh; Bash, `set -euo pipefail` is set by the caller).
#
# Several clusters run on one machine at once (CI, helpers, the demo), so everything host-global
# is per cluster: an index picked free at start (node-index.sh) names the bridge, the pod subnet,
# the node's address and the kubelet's cgroup root; sockets and state live in the cluster dir.

node_dir="$cluster_dir/node"
node_name=sluice-real-node
# The label and taint that keep ordinary pods off the node: only pods that select and tolerate
# them land there.
node_label=sluice.dev/real-node
containerd_sock="$node_dir/run/containerd.sock"

# node_enabled: this cluster runs a real node (up.sh recorded its index).
node_enabled() { [ -s "$node_dir/index" ]; }

# node_names <index>: sets bridge, node_ip, pod_subnet and cgroup_root for that index.
node_names() {
  bridge="sluice-br$1"
  pod_subnet="10.200.$1.0/24"
  node_ip="10.200.$1.1"
  cgroup_root="sluice-node-$1"
}

# The cgroup v1 hierarchies (one folder per mounted controller set, and the unified one of a
# hybrid layout), where the kubelet's cgroup root is made and removed.
cgroup_hierarchies() {
  awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/self/mounts | sort -u
}

# ctr against this cluster's containerd, in the namespace the CRI uses.
node_ctr() { "$bin_dir/ctr" --address "$containerd_sock" --namespace k8s.io "$@"; }
