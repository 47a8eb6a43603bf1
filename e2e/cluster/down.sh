#!/usr/bin/env bash
# Stops the local control plane started by up.sh: only the processes named by its pid files (and
# only if they still run the expected binary), SIGTERM first, SIGKILL after a timeout. Then removes
# the state directory, unless SLUICE_KEEP_CLUSTER_DIR=1 (e.g. to read the logs).
#
# Environment:
#   SLUICE_CLUSTER_DIR        state directory (default ${TMPDIR:-/tmp}/sluice-cluster)
#   SLUICE_KEEP_CLUSTER_DIR   1 keeps the state directory (logs, etcd data, pki)
#   SLUICE_STOP_TIMEOUT       seconds to wait after SIGTERM before SIGKILL (default 10)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$here/common.sh"
# shellcheck source=node-down.sh
source "$here/node-down.sh"

stop_timeout="${SLUICE_STOP_TIMEOUT:-10}"
lock_cluster

if [ ! -d "$cluster_dir" ]; then
  log "no cluster at $cluster_dir"
  exit 0
fi
if [ ! -f "$marker" ]; then
  log "$cluster_dir was not created by up.sh; leaving it alone"
  exit 1
fi

# stop_group <name...>: SIGTERM to every live component of the group, wait for all of them up to
# $stop_timeout seconds, SIGKILL the rest.
stop_group() {
  local name pid live=() deadline
  for name in "$@"; do
    pid="$(pid_of "$name")"
    if pid_is "$pid" "$name"; then
      log "stopping $name (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      live+=("$name")
    fi
  done
  [ "${#live[@]}" -gt 0 ] || return 0
  deadline=$((SECONDS + stop_timeout))
  while :; do
    local still=()
    for name in "${live[@]}"; do
      is_alive "$name" && still+=("$name")
    done
    [ "${#still[@]}" -gt 0 ] || break
    if ((SECONDS >= deadline)); then
      for name in "${still[@]}"; do
        pid="$(pid_of "$name")"
        log "$name (pid $pid) did not exit after ${stop_timeout}s; killing it"
        pid_is "$pid" "$name" && kill -KILL "$pid" 2>/dev/null || true
      done
      sleep 0.2
      break
    fi
    sleep 0.1
  done
}

# The real node first (its containers, mounts, bridge and cgroups), then the other clients of the
# apiserver, then the apiserver, then its storage.
node_stop
stop_group kwok kube-scheduler kube-controller-manager
stop_group kube-apiserver
stop_group etcd

for name in "${components[@]}"; do
  if is_alive "$name"; then
    log "$name (pid $(pid_of "$name")) is still running"
    exit 1
  fi
  rm -f "$pid_dir/$name.pid"
done

if [ "${SLUICE_KEEP_CLUSTER_DIR:-0}" = 1 ]; then
  log "stopped; kept $cluster_dir"
else
  rm -rf "$cluster_dir"
  log "stopped; removed $cluster_dir"
fi
