#!/usr/bin/env bash
# Migration benchmark (issue 3): schemactl against the floor, plain psql
# running the same SQL, in the same run, on fresh databases of one throwaway
# cluster.
#
#   tests/bench/migrate_bench.sh [SCHEMACTL] [N ...]      # default N: 200 1000
#
# Workload per revision i: CREATE TABLE t_i (...); CREATE INDEX ix_t_i_dev_ts
# (downgrade: DROP TABLE t_i). Floors: `psql -f` with BEGIN/COMMIT around each
# revision plus its version-row statement; `psql -c 'select 1'` for the no-op.
# Each timing is the best of $RUNS runs (default 3). Prints a table of
# milliseconds and ratios to the floor.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
schemactl=${1:-$root/build/release/client/schemactl}
shift || true
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(200 1000)
runs=${RUNS:-3}
work=$(mktemp -d /tmp/schemad-bench.XXXXXX)
chmod 755 "$work"
cluster=$work/pg
trap 'bash "$root/tests/testing/pg_cluster.sh" stop "$cluster"; rm -rf "$work"' EXIT

bash "$root/tests/testing/pg_cluster.sh" start "$cluster"
admin=$(bash "$root/tests/testing/pg_cluster.sh" dsn "$cluster")
base=${admin%/postgres}
psql_bin=$(command -v psql)

now_ms() { date +%s%N | awk '{printf "%.1f", $1/1000000}'; }
# best_of CMD...: best wall time in ms over $runs runs; `prepare` (if set) runs before each.
best_of() {
  local best=
  for _ in $(seq "$runs"); do
    if [ -n "${prepare:-}" ]; then eval "$prepare"; fi
    local t0 t1
    t0=$(date +%s%N)
    "$@" >/dev/null
    t1=$(date +%s%N)
    local ms=$(( (t1 - t0) / 1000 ))
    if [ -z "$best" ] || [ "$ms" -lt "$best" ]; then best=$ms; fi
  done
  awk -v us="$best" 'BEGIN { printf "%.1f", us / 1000 }'
}
fresh_db() { psql -qAt "$admin" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" >/dev/null; }

gen() {  # gen N DIR UPSQL DOWNSQL
  local n=$1 dir=$2 up=$3 down=$4 prev=""
  mkdir -p "$dir"
  : >"$up"; : >"$down"
  echo "CREATE TABLE IF NOT EXISTS alembic_version (version_num VARCHAR(32) NOT NULL, CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num));" >>"$up"
  for i in $(seq 1 "$n"); do
    local id; id=$(printf 'b%011x' "$i")
    {
      echo "-- revision: $id"
      [ -n "$prev" ] && echo "-- revises: $prev"
      echo "-- message: table $i"
      echo
      echo "-- +upgrade"
      echo "CREATE TABLE t_$i (id bigserial primary key, device_id varchar(50) not null, ts timestamptz not null, v double precision[]);"
      echo "CREATE INDEX ix_t_${i}_dev_ts ON t_$i(device_id, ts);"
      echo
      echo "-- +downgrade"
      echo "DROP TABLE t_$i;"
    } >"$dir/${id}_table_$i.sql"
    {
      echo "BEGIN;"
      echo "CREATE TABLE t_$i (id bigserial primary key, device_id varchar(50) not null, ts timestamptz not null, v double precision[]);"
      echo "CREATE INDEX ix_t_${i}_dev_ts ON t_$i(device_id, ts);"
      if [ -z "$prev" ]; then
        echo "INSERT INTO alembic_version (version_num) VALUES ('$id');"
      else
        echo "UPDATE alembic_version SET version_num='$id' WHERE alembic_version.version_num = '$prev';"
      fi
      echo "COMMIT;"
    } >>"$up"
    prev=$id
  done
  # Downgrade floor: children first.
  local cur=$prev
  for i in $(seq "$n" -1 1); do
    local id; id=$(printf 'b%011x' "$i")
    local below=""; [ "$i" -gt 1 ] && below=$(printf 'b%011x' $((i - 1)))
    {
      echo "BEGIN;"
      echo "DROP TABLE t_$i;"
      if [ -z "$below" ]; then
        echo "DELETE FROM alembic_version WHERE alembic_version.version_num = '$id';"
      else
        echo "UPDATE alembic_version SET version_num='$below' WHERE alembic_version.version_num = '$id';"
      fi
      echo "COMMIT;"
    } >>"$down"
  done
}

printf '%-6s %-28s %10s %10s %8s\n' N measurement schemactl_ms floor_ms ratio
for n in "${sizes[@]}"; do
  dir=$work/m$n
  gen "$n" "$dir" "$work/up$n.sql" "$work/down$n.sql"
  db=bench_$n
  dsn="$base/$db"

  # Upgrade from empty.
  prepare="fresh_db $db"
  up_ms=$(best_of "$schemactl" --quiet --no-progress --dsn "$dsn" --dir "$dir" upgrade heads)
  up_floor=$(best_of "$psql_bin" -q -X -v ON_ERROR_STOP=1 -f "$work/up$n.sql" "$dsn")
  # Downgrade to base (from a database at head).
  prepare="fresh_db $db; \"$schemactl\" --quiet --no-progress --dsn \"$dsn\" --dir \"$dir\" upgrade heads >/dev/null"
  down_ms=$(best_of "$schemactl" --quiet --no-progress --dsn "$dsn" --dir "$dir" downgrade base)
  prepare="fresh_db $db; \"$psql_bin\" -q -X -v ON_ERROR_STOP=1 -f \"$work/up$n.sql\" \"$dsn\" >/dev/null"
  down_floor=$(best_of "$psql_bin" -q -X -v ON_ERROR_STOP=1 -f "$work/down$n.sql" "$dsn")
  # At head: ensure-head and current against `psql -c 'select 1'`.
  fresh_db "$db"; "$schemactl" --quiet --no-progress --dsn "$dsn" --dir "$dir" upgrade heads >/dev/null
  prepare=""
  runs_saved=$runs; runs=$((runs * 5))
  eh_ms=$(best_of "$schemactl" --quiet --no-progress --dsn "$dsn" --dir "$dir" ensure-head)
  cur_ms=$(best_of "$schemactl" --quiet --no-progress --dsn "$dsn" --dir "$dir" current)
  sel_floor=$(best_of "$psql_bin" -X -qAt -c 'select 1' "$dsn")
  runs=$runs_saved
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
  printf '%-6s %-28s %10s %10s %8s\n' "$n" "upgrade base->head" "$up_ms" "$up_floor" "$(ratio "$up_ms" "$up_floor")"
  printf '%-6s %-28s %10s %10s %8s\n' "$n" "downgrade head->base" "$down_ms" "$down_floor" "$(ratio "$down_ms" "$down_floor")"
  printf '%-6s %-28s %10s %10s %8s\n' "$n" "ensure-head at head" "$eh_ms" "$sel_floor" "$(ratio "$eh_ms" "$sel_floor")"
  printf '%-6s %-28s %10s %10s %8s\n' "$n" "current" "$cur_ms" "$sel_floor" "$(ratio "$cur_ms" "$sel_floor")"
done
