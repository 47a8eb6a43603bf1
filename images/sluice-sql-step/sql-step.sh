#!/bin/sh
# sluice-sql-step: runs SQL against PostgreSQL for one Sluice partition window, idempotently, and
# writes the step report (rows written, watermark, the output table's schema) to the container's
# termination log, where the operator reads it. POSIX sh: the image's shell is busybox (ash),
# the Dockerfile's is dash. README.md beside this file is the reference for SQL authors.
#
# The connection to the warehouse (the target) comes from libpq's own variables (PGHOST, PGPORT,
# PGDATABASE, PGUSER, PGPASSWORD, PGSSLMODE, ...), typically from a Secret through envFrom.
#   SQL_TABLE        the output table, schema.table (required: the report describes it)
#   SQL_TIME_COLUMN  its event-time column: the window is [start, end) on it; the watermark is
#                    its newest value in the window
#   SQL_FILE         transform: SQL run on the target in one transaction; it must replace the
#                    window's rows (delete the window, then insert it)
#   SQL_SOURCE_URL   extract: a libpq URL or conninfo of the source database
#   SQL_SOURCE_FILE  extract: one SELECT of the window's rows, run on the source and loaded into
#                    SQL_TABLE (created, or widened to the source's columns and types) in one
#                    transaction that first deletes the window
#   SQL_REPORT_FILE  where the report goes (default /dev/termination-log)
# psql variables in both files: :'start', :'end' (SLUICE_PARTITION_START/END), :'run_id',
# :'step', :'attempt'.
set -eu

die() {
  echo "sql-step: $*" >&2
  exit 1
}

# matches <value> <extended regex>
matches() { printf '%s' "$1" | grep -Eq "$2"; }

start="${SLUICE_PARTITION_START:-}"
end="${SLUICE_PARTITION_END:-}"
rfc3339='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$'
matches "$start" "$rfc3339" || die "SLUICE_PARTITION_START is not an RFC 3339 time: '$start'"
matches "$end" "$rfc3339" || die "SLUICE_PARTITION_END is not an RFC 3339 time: '$end'"
table="${SQL_TABLE:-}"
ident='[a-z_][a-z0-9_]*'
matches "$table" "^$ident\\.$ident\$" || die "SQL_TABLE must be schema.table in lower case: '$table'"
schema="${table%%.*}"
relation="${table#*.}"
time_column="${SQL_TIME_COLUMN:-}"
[ -z "$time_column" ] || matches "$time_column" "^$ident\$" || die "SQL_TIME_COLUMN is not a column name: '$time_column'"
report_file="${SQL_REPORT_FILE:-/dev/termination-log}"

# Every session sees times in UTC (the window is UTC; the watermark is printed with a Z), and
# names itself in pg_stat_activity.
export PGTZ=UTC
export PGAPPNAME="sluice-sql-step ${SLUICE_PIPELINE:-}/${SLUICE_STEP:-}"
export PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-10}"

work="$(mktemp -d "${TMPDIR:-/tmp}/sql-step.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# sql <psql arguments...>: psql with the window variables, stopping at the first error.
sql() {
  psql -X -v ON_ERROR_STOP=1 -v start="$start" -v end="$end" -v run_id="${SLUICE_RUN_ID:-}" \
    -v step="${SLUICE_STEP:-}" -v attempt="${SLUICE_ATTEMPT:-0}" -v schema="$schema" \
    -v relation="$relation" "$@"
}

# The type of a column as information_schema spells it, with its length or precision:
# bigint, numeric(12,2), character varying(3), timestamp with time zone. This is also how
# PostgreSQL's format_type (and so psql's \gdesc) prints these types.
column_type="data_type || CASE
  WHEN character_maximum_length IS NOT NULL THEN '(' || character_maximum_length || ')'
  WHEN data_type = 'numeric' AND numeric_precision IS NOT NULL
    THEN '(' || numeric_precision || ',' || numeric_scale || ')'
  ELSE '' END"

# The extract and the report live beside this script (it may be called through a symlink).
here="$(dirname "$(readlink -f "$0")")"
. "$here/sql-step-load.sh"
. "$here/sql-step-report.sh"

if [ -n "${SQL_SOURCE_FILE:-}" ]; then
  [ -n "${SQL_SOURCE_URL:-}" ] || die "SQL_SOURCE_FILE is set but SQL_SOURCE_URL (the source database) is not"
  [ -n "$time_column" ] || die "an extract needs SQL_TIME_COLUMN: the window it replaces"
  extract
else
  file="${SQL_FILE:-/sql/${SLUICE_STEP:-step}.sql}"
  [ -r "$file" ] || die "no SQL file to run: $file (set SQL_FILE)"
  sql --single-transaction -f "$file" >"$work/out"
fi
cat "$work/out"
rows="$(rows_written "$work/out")"
write_report "$rows"
