#!/usr/bin/env bash
# Stops and starts one component of the cluster up.sh started, with the arguments up.sh recorded
# (same flags, same port, same etcd data), for the e2e tests of API server and etcd outages.
#
#   restart.sh apiserver|etcd [SECONDS]
#
# SIGTERM (SIGKILL after $SLUICE_STOP_TIMEOUT s, default 10), SECONDS down (default 0), start
# again, wait until kube-apiserver's /readyz is ok. Prints `stopped <unix ms>` once the process
# is gone and `ready <unix ms>` once the API server answers ready again (progress goes to
# stderr). Holds the cluster lock throughout, so an up.sh run meanwhile waits instead of taking
# the stopped component for a dead cluster. Not meant for a cluster in use by others.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$here/common.sh"

usage() { log "usage: restart.sh apiserver|etcd [SECONDS]"; exit 2; }
[ "$#" -ge 1 ] && [ "$#" -le 2 ] || usage
which="$1"
down_for="${2:-0}"
case "$down_for" in '' | *[!0-9.]*) usage ;; esac
case "$which" in
  apiserver | kube-apiserver) name=kube-apiserver ;;
  etcd) name=etcd ;;
  *) usage ;;
esac
stop_timeout="${SLUICE_STOP_TIMEOUT:-10}"
start_timeout="${SLUICE_START_TIMEOUT:-60}"
[ -f "$marker" ] && [ -f "$cluster_dir/env" ] || { log "no cluster started by up.sh at $cluster_dir"; exit 1; }
[ -s "$args_dir/$name" ] || { log "$args_dir/$name missing: the cluster was started by an older up.sh"; exit 1; }
api_url="$(sed -n 's/^SLUICE_APISERVER_URL=//p' "$cluster_dir/env")"
pki="$cluster_dir/pki"

stop() {
  local pid deadline
  pid="$(pid_of "$name")"
  pid_is "$pid" "$name" || { log "$name is not running"; return 0; }
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + stop_timeout))
  while pid_is "$pid" "$name"; do
    if ((SECONDS >= deadline)); then
      log "$name did not exit after ${stop_timeout}s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
      break
    fi
    sleep 0.1
  done
  log "$name stopped"
  echo "stopped $(date +%s%3N)"
}

api_ready() {
  [ "$(curl -sf --max-time 0.5 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "$api_url/readyz" 2>/dev/null)" = ok ]
}

start_again() {
  local args=() deadline
  mapfile -d '' args <"$args_dir/$name"
  failing=""
  start "$name" "${args[@]}"
  deadline=$((SECONDS + start_timeout))
  until api_ready; do
    is_alive "$name" || { log "$name exited; last lines of its log:"; tail -n 20 "$log_dir/$name.log" >&2; exit 1; }
    ((SECONDS < deadline)) || { log "kube-apiserver not ready ${start_timeout}s after starting $name"; exit 1; }
    sleep 0.1
  done
  log "$name started; kube-apiserver ready"
  echo "ready $(date +%s%3N)"
}

lock_cluster
stop
sleep "$down_for"
start_again
