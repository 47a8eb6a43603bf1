# Sourced by sql-step.sh: the extract. The source's SELECT is copied out to a file first, so a
# source that fails half way loads nothing; then one transaction on the target creates or widens
# the output table to the source's columns and types (the raw layer mirrors the source, so a
# changed source type shows in the reported schema), deletes the window and loads the file.

tab="$(printf '\t')"

# source <psql arguments...>: psql on the source database, with the window variables.
source_sql() { sql -d "$SQL_SOURCE_URL" "$@"; }

# The SELECT without trailing semicolons, so that it can be wrapped in COPY ( ... ).
source_query() { sed -e 's/;[[:space:]]*$//' "$SQL_SOURCE_FILE"; }

# "name<TAB>type" of the source query's columns (psql's \gdesc: described, not run), and of the
# target table's columns as they are now (nothing when the table does not exist yet).
describe_source() { { source_query; printf '\n\\gdesc\n'; } | source_sql -q -At -F "$tab" -f -; }
describe_target() {
  sql -q -At -F "$tab" -f - <<SQL
SELECT column_name, $column_type FROM information_schema.columns
WHERE table_schema = :'schema' AND table_name = :'relation' ORDER BY ordinal_position;
SQL
}

# quote <identifier>: a double-quoted SQL identifier.
quote() { printf '"%s"' "$(printf '%s' "$1" | sed 's/"/""/g')"; }

# The target script: create the table if missing, add columns the source has and the table
# lacks, change the type of columns whose source type changed, delete the window, load the rows.
load_script() {
  awk -F "$tab" -v table="$table" -v time_column="$time_column" -v rows="$work/rows" '
    function q(s) { gsub(/"/, "\"\"", s); return "\"" s "\"" }
    FILENAME == ARGV[1] { had[$1] = $2; existed = 1; next }
    { name[++n] = $1; type[n] = $2 }
    END {
      print "SET client_min_messages = warning;"
      for (i = 1; i <= n; i++) defs = defs (i > 1 ? ", " : "") q(name[i]) " " type[i]
      printf "CREATE TABLE IF NOT EXISTS %s (%s);\n", table, defs
      for (i = 1; existed && i <= n; i++) {
        if (!(name[i] in had)) printf "ALTER TABLE %s ADD COLUMN %s %s;\n", table, q(name[i]), type[i]
        else if (had[name[i]] != type[i])
          printf "ALTER TABLE %s ALTER COLUMN %s TYPE %s USING %s::%s;\n", table, q(name[i]), type[i], q(name[i]), type[i]
      }
      printf "DELETE FROM %s WHERE %s >= :'"'"'start'"'"' AND %s < :'"'"'end'"'"';\n", table, q(time_column), q(time_column)
      for (i = 1; i <= n; i++) cols = cols (i > 1 ? ", " : "") q(name[i])
      printf "\\copy %s (%s) from '"'"'%s'"'"'\n", table, cols, rows
    }' "$work/target.cols" "$work/source.cols"
}

extract() {
  describe_source >"$work/source.cols"
  [ -s "$work/source.cols" ] || die "the source query describes no columns: $SQL_SOURCE_FILE"
  grep -q "^$time_column$tab" "$work/source.cols" || die "the source query has no column $time_column (SQL_TIME_COLUMN)"
  { printf 'COPY (\n'; source_query; printf '\n) TO STDOUT\n'; } | source_sql -q -f - >"$work/rows"
  describe_target >"$work/target.cols"
  load_script >"$work/load.sql"
  sql --single-transaction -f "$work/load.sql" >"$work/out"
}
