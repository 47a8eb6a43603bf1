#!/usr/bin/env bash
# The demo's databases: a PostgreSQL of the demo's own (e2e/postgres/server.sh, its data under
# $DEMO_DIR/postgres, port $DEMO_PG_PORT), the `shop` source with the order generator running,
# and the `warehouse` with its raw, staging and mart schemas.
#   e2e/demo/postgres.sh up [<address>]   also listen on <address> (where pods reach the host)
#   e2e/demo/postgres.sh down             stop the generator and the server
# `up` writes $DEMO_DIR/postgres/elt.env (the warehouse role's libpq variables, for psql on the
# host) and prints nothing else on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
state="${DEMO_DIR:-${TMPDIR:-/tmp}/sluice-demo}"
dir="$state/postgres"
port="${DEMO_PG_PORT:-55432}"
server="$repo/e2e/postgres/server.sh"

# A password kept in the demo's directory, made once.
password() {
  [ -s "$dir/$1.password" ] || openssl rand -hex 16 >"$dir/$1.password"
  cat "$dir/$1.password"
}

# superuser <database> <psql arguments...>
superuser() {
  local db="$1"; shift
  (set -a; source "$dir/env"; set +a; psql -X -q -v ON_ERROR_STOP=1 -d "$db" "$@")
}

generator_alive() {
  local pid
  pid="$(cat "$dir/generator.pid" 2>/dev/null || true)"
  [ -n "$pid" ] && [ "$(ps -o comm= -p "$pid" 2>/dev/null)" = psql ]
}

start_generator() {
  generator_alive && return
  # Its own session, so the end of `make demo` does not stop it; only `down` does, by its pid.
  (set -a; source "$dir/env"; set +a
   setsid -f bash -c 'echo $$ >"$0" && exec psql -X -q -d shop -f "$1"' \
     "$dir/generator.pid" "$here/generator.sql" </dev/null >>"$dir/generator.log" 2>&1)
  for _ in $(seq 1 50); do generator_alive && return; sleep 0.1; done
  echo "the order generator did not start: $dir/generator.log" >&2
  exit 1
}

up() {
  local address="${1:-}"
  mkdir -p "$dir"
  bash "$server" start "$dir" "$port" "$address"
  superuser postgres -v elt_password="$(password elt)" -v reader_password="$(password reader)" -f "$here/roles.sql"
  superuser shop -f "$here/shop.sql" -f "$here/seed.sql"
  superuser warehouse -f "$here/warehouse.sql"
  start_generator
  printf 'PGHOST=127.0.0.1\nPGPORT=%s\nPGDATABASE=warehouse\nPGUSER=elt\nPGPASSWORD=%s\n' \
    "$port" "$(password elt)" >"$dir/elt.env"
}

down() {
  if generator_alive; then kill "$(cat "$dir/generator.pid")"; fi
  rm -f "$dir/generator.pid"
  bash "$server" stop "$dir"
}

case "${1:-}" in
  up) up "${2:-}" ;;
  down) down ;;
  *) echo "usage: $0 up [<address>] | down" >&2; exit 2 ;;
esac
