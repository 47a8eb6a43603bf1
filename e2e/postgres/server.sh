#!/usr/bin/env bash
# A PostgreSQL server of its own for the demo and the SQL step's tests: Debian's package
# (installed with apt-get when missing), a data directory and port chosen by the caller, so it
# never touches a system cluster or another user's server.
#   e2e/postgres/server.sh start <dir> <port> [<extra listen address>]
#       initialises <dir>/data once, starts the server (waiting until it accepts connections) and
#       writes <dir>/env: PGHOST, PGPORT, PGUSER, PGPASSWORD of its superuser, to be sourced
#   e2e/postgres/server.sh stop <dir>
# It listens on 127.0.0.1, and on the extra address when given (the demo's pods on the real
# node reach the host there); connections over TCP need the password (scram-sha-256).
set -euo pipefail
log_tag=postgres
# shellcheck source=../lib/tooling.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/tooling.sh"

# The newest installed server's binaries, or nothing.
server_bin() { find /usr/lib/postgresql -maxdepth 3 -path '*/bin/initdb' 2>/dev/null | sort -V | tail -n 1 | xargs -r dirname; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

install_server() {
  [ -n "$(server_bin)" ] && return
  local start=$SECONDS
  log "installing Debian's postgresql (no server found under /usr/lib/postgresql)"
  as_root apt-get update -qq >&2
  # The package may also create a system cluster ("main", port 5432); nothing here uses it.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    postgresql postgresql-client >&2
  log "installed postgresql in $((SECONDS - start))s"
}

# The server refuses to run as root: then it runs as the package's `postgres` user.
as_server() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

init_data() {
  local dir="$1" bin="$2"
  [ -f "$dir/data/PG_VERSION" ] && return
  mkdir -p "$dir"
  openssl rand -hex 16 >"$dir/password"
  chmod 0644 "$dir/password"
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; chmod 0755 "$dir"; fi
  as_server "$bin/initdb" -D "$dir/data" -U sluice --pwfile="$dir/password" --auth-local=trust \
    --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; exit 1; }
  # Any address may try, only with the password; the server listens only where start says.
  printf 'host all all 0.0.0.0/0 scram-sha-256\n' | as_server tee -a "$dir/data/pg_hba.conf" >/dev/null
}

start_server() {
  local dir="$1" port="$2" extra="${3:-}" bin listen
  with_package_lock install_server
  bin="$(server_bin)"
  init_data "$dir" "$bin"
  listen="127.0.0.1${extra:+,$extra}"
  if ! as_server "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    as_server "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
      -o "-p $port -k $dir/data -c listen_addresses=$listen" >/dev/null ||
      { tail -n 20 "$dir/server.log" >&2; exit 1; }
    log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on $listen port $port ($dir/data)"
  fi
  printf 'PGHOST=127.0.0.1\nPGPORT=%s\nPGDATABASE=postgres\nPGUSER=sluice\nPGPASSWORD=%s\n' "$port" "$(cat "$dir/password")" >"$dir/env"
}

stop_server() {
  local dir="$1" bin
  bin="$(server_bin)"
  [ -n "$bin" ] && [ -f "$dir/data/PG_VERSION" ] || return 0
  as_server "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

case "${1:-}" in
  start) [ $# -ge 3 ] || { echo "usage: $0 start <dir> <port> [<address>]" >&2; exit 2; }; start_server "$2" "$3" "${4:-}" ;;
  stop) [ $# -eq 2 ] || { echo "usage: $0 stop <dir>" >&2; exit 2; }; stop_server "$2" ;;
  *) echo "usage: $0 start <dir> <port> [<address>] | stop <dir>" >&2; exit 2 ;;
esac
