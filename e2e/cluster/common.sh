# Shared by up.sh and down.sh (sourced, not run): where the cluster lives and how its processes
# are recognised. Bash, `set -euo pipefail` is set by the caller.

# shellcheck source=../lib/tooling.sh
source "$here/../lib/tooling.sh"

# State directory: pki, etcd data, pid files, logs, kubeconfig.
cluster_dir="${SLUICE_CLUSTER_DIR:-${TMPDIR:-/tmp}/sluice-cluster}"
cluster_dir="${cluster_dir%/}"
case "$cluster_dir" in /*) ;; *) cluster_dir="$PWD/$cluster_dir" ;; esac
# Marks a directory as created by up.sh, so that up.sh / down.sh only ever wipe their own state.
marker="$cluster_dir/.sluice-cluster"
pid_dir="$cluster_dir/pids"
log_dir="$cluster_dir/logs"
kubeconfig="$cluster_dir/kubeconfig"
args_dir="$cluster_dir/args"

# Binaries built by build.sh.
bin_dir="$cache_root/$KUBERNETES_VERSION/bin"

# The real node's names and paths (node-common.sh).
# shellcheck source=node-common.sh
source "$here/node-common.sh"

# Every process up.sh starts, in start order; down.sh stops them in reverse. The real node's
# (containerd, kubelet) when this cluster has one.
components=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
node_enabled && components+=(containerd kubelet)

# The pid recorded for a component, or nothing.
pid_of() {
  local f="$pid_dir/$1.pid"
  [ -s "$f" ] && tr -dc '0-9' <"$f"
  return 0
}

# True when <pid> is alive (not a zombie) and runs the binary <name>. The name check keeps a pid
# that was reused by an unrelated process after ours died from being reported (or killed) as ours.
pid_is() {
  local pid="$1" name="$2" stat args
  [ -n "$pid" ] || return 1
  stat="$(ps -o stat= -p "$pid" 2>/dev/null)" || return 1
  case "$stat" in *Z*) return 1 ;; esac
  args="$(ps -o args= -p "$pid" 2>/dev/null)" || return 1
  args="${args%% *}"
  [ "${args##*/}" = "$name" ]
}

# True when the component's pid file names a live process of that component.
is_alive() { pid_is "$(pid_of "$1")" "$1"; }

# start <name> <args...>: runs $bin_dir/<name> detached in its own session (so a Ctrl-C in the
# caller's terminal or the end of the caller's process group does not reach it), stdin from
# /dev/null, output to logs/<name>.log (stdout must not be inherited: a caller reading up.sh's
# stdout would never see EOF), without the lock's fd 9. The inner shell writes its own pid, then
# execs the binary, so the pid file holds the binary's pid. The arguments are kept in args/<name>
# (NUL-separated), so that restart.sh starts the component again exactly as up.sh did.
start() {
  local name="$1"; shift
  local pidfile="$pid_dir/$name.pid" i
  rm -f "$pidfile"
  mkdir -p "$args_dir"
  printf '%s\0' "$@" >"$args_dir/$name"
  failing="$name"
  setsid -f bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' \
    "$pidfile" "$bin_dir/$name" "$@" </dev/null >>"$log_dir/$name.log" 2>&1 9>&-
  # The pid file appears before the shell execs the binary; until then `ps` shows bash, and
  # is_alive would take the component for dead. Wait for the exec (a few ms, seconds under load).
  local pid
  for ((i = 0; i < 100; i++)); do
    pid="$(pid_of "$name")"
    pid_is "$pid" "$name" && return 0
    if [ -n "$pid" ] && ! ps -p "$pid" >/dev/null 2>&1; then
      break
    fi
    sleep 0.1
  done
  log "$name did not start"
  return 1
}

# Serialises up.sh / down.sh runs on the same directory (e.g. test processes that each call up.sh
# in parallel: the first starts the cluster, the others wait, then find it up). The lock file sits
# next to the state directory, which down.sh removes. Nested calls (up.sh -> down.sh) inherit it.
# Processes started by up.sh must not inherit fd 9, or they would hold the lock forever.
lock_cluster() {
  [ "${SLUICE_CLUSTER_LOCKED:-}" = "$cluster_dir" ] && return 0
  command -v flock >/dev/null || return 0
  mkdir -p "$(dirname "$cluster_dir")"
  exec 9>"$cluster_dir.lock"
  if ! flock -w 300 9; then
    log "timed out waiting for the lock $cluster_dir.lock"
    exit 1
  fi
  export SLUICE_CLUSTER_LOCKED="$cluster_dir"
}
