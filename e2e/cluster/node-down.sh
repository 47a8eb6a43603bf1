# Stops the real node, for down.sh (sourced after common.sh and node-common.sh; uses down.sh's
# stop_group): kubelet, then every container and sandbox, then containerd and the shims it left,
# then whatever is still mounted under the cluster dir, the bridge, the cgroup root and the
# kubelet's log symlinks. Leaves no mount, interface, cgroup or container behind.

# The shims of this cluster's containerd: their command line names its socket. Only those pids
# are killed (never by name: other clusters run shims too).
node_shim_pids() {
  local p
  for p in /proc/[0-9]*; do
    { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -q "containerd-shim-runc-v2 .*-address $containerd_sock " &&
      echo "${p#/proc/}"
  done
  return 0
}

# Every task killed and deleted, every container removed, while containerd still runs. Pods'
# network namespaces go with their sandboxes; CNI teardown is not needed beyond that (the veths
# die with the namespaces, the leases live in the cluster dir).
node_remove_containers() {
  is_alive containerd || return 0
  local id
  for id in $(node_ctr tasks ls -q 2>/dev/null); do
    node_ctr tasks kill --all -s SIGKILL "$id" >/dev/null 2>&1 || true
  done
  for id in $(node_ctr tasks ls -q 2>/dev/null); do
    node_ctr tasks delete --force "$id" >/dev/null 2>&1 || true
  done
  for id in $(node_ctr containers ls -q 2>/dev/null); do
    node_ctr containers delete "$id" >/dev/null 2>&1 || true
  done
}

# Mounts under the cluster dir (overlay rootfs, network namespaces, shm, the kubelet's volume
# tmpfs), deepest first; lazily when one is still busy.
node_unmount_all() {
  local m
  awk -v d="$cluster_dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
    done
}

# The kubelet's cgroup root in every hierarchy, children first. Empty once no task is left.
node_remove_cgroups() {
  local h d
  for h in $(cgroup_hierarchies); do
    [ -d "$h/$cgroup_root" ] || continue
    find "$h/$cgroup_root" -depth -type d 2>/dev/null | while read -r d; do
      rmdir "$d" 2>/dev/null || log "could not remove cgroup $d"
    done
  done
}

node_stop() {
  node_enabled || return 0
  node_names "$(cat "$node_dir/index")"
  stop_group kubelet
  node_remove_containers
  stop_group containerd
  local pid
  for pid in $(node_shim_pids); do
    log "killing leftover shim $pid"
    kill -KILL "$pid" 2>/dev/null || true
  done
  node_unmount_all
  ip link del "$bridge" 2>/dev/null || true
  node_remove_cgroups
  # The kubelet links every container's log into /var/log/containers (a fixed path): remove the
  # links that point into this cluster's pod logs.
  find /var/log/containers -maxdepth 1 -type l -lname "$node_dir/*" -delete 2>/dev/null || true
  rm -f "$node_dir/index"
}
