# Sourced by sql-step.sh: the step report, one JSON object in the operator's format
# (operator/src/report.rs): {"rowsWritten": N, "watermark": "<RFC 3339>", "schema": [{"name",
# "type", "nullable"}]}, written to the termination log after the transaction committed.

# rows_written <psql output>: the sum of the rows the command tags say were written
# (INSERT 0 n, COPY n, UPDATE n, MERGE n). DELETE is not counted: it clears the window.
rows_written() {
  awk '/^(INSERT 0|COPY|UPDATE|MERGE) [0-9]+$/ { n += $NF } END { print n + 0 }' "$1"
}

# report_query <rows> <with schema: 1|0>: the report, built by PostgreSQL. The watermark is the
# newest SQL_TIME_COLUMN value inside the window (none without SQL_TIME_COLUMN or rows); the
# schema comes from information_schema. Nulls are dropped, so an absent part is left out.
report_query() {
  if [ -n "$time_column" ]; then
    col="$(quote "$time_column")"
    watermark="(SELECT to_char(max($col), 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM $table
                WHERE $col >= :'start' AND $col < :'end')"
  else
    watermark=NULL
  fi
  cat <<SQL
SELECT json_strip_nulls(json_build_object(
  'rowsWritten', $1,
  'watermark', $watermark,
  'schema', CASE WHEN $2 = 1 THEN (
    SELECT json_agg(json_build_object('name', column_name, 'type', $column_type,
                                      'nullable', is_nullable = 'YES') ORDER BY ordinal_position)
    FROM information_schema.columns WHERE table_schema = :'schema' AND table_name = :'relation')
  END));
SQL
}

# write_report <rows>: the report to SQL_REPORT_FILE and to the log. The kubelet keeps at most
# 4096 bytes of a termination message: a schema too wide for that is left out, with a warning.
write_report() {
  report="$(report_query "$1" 1 | sql -q -At -f -)"
  if [ "${#report}" -gt 4096 ]; then
    echo "sql-step: the report is ${#report} bytes with the schema, more than 4096: sent without it" >&2
    report="$(report_query "$1" 0 | sql -q -At -f -)"
  fi
  printf '%s' "$report" >"$report_file"
  echo "sql-step: report: $report"
}
