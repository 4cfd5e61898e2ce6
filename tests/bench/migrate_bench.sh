#!/usr/bin/env bash
# Migration benchmark (issues 3 and 15): schemactl against two floors running
# the same SQL on the same database state, interleaved round by round, on one
# throwaway cluster.
#
#   tests/bench/migrate_bench.sh [SCHEMACTL] [N ...]    # default build/release, N 200 1000
#   ROUNDS=5 NOOP_ROUNDS=15 tests/bench/migrate_bench.sh ...
#   BEFORE=/path/to/old/schemactl tests/bench/migrate_bench.sh ...   # before/after
#   NOOP_ONLY=1 NOOP_ROUNDS=31 tests/bench/migrate_bench.sh SCHEMACTL 200   # start-up only
#
# Workload per revision i: CREATE TABLE t_i (...); CREATE INDEX ix_t_i_dev_ts
# (downgrade: DROP TABLE t_i). Three contenders, each run in every round, the
# order rotating from round to round (A B C, B C A, C A B, ...):
#   schemactl   `schemactl --dsn D --dir M upgrade heads` / `downgrade base`
#   psql -f     the real psql binary (not /usr/bin/psql, Debian's Perl
#               wrapper) running a script: per revision BEGIN, its statements
#               and its alembic_version statement, COMMIT, one line each, so
#               one round trip per statement as schemactl sends them
#   1-RT        the floor a migration tool can reach: the same psql sending
#               each revision as ONE simple query (`BEGIN\; body\;
#               version-row statement\; COMMIT` on one line), one round trip
#               per revision
#   1-RT 1-tx   the same one round trip per revision, all revisions in ONE
#               transaction (BEGIN, then `body\; version-row statement` a
#               line, COMMIT): the floor of schemactl's default scope,
#               per-command, which runs a whole upgrade in one transaction as
#               Alembic does; PostgreSQL itself pays more for a transaction of
#               thousands of DDL statements than for as many small ones
# With BEFORE set, a fourth contender `before` (that schemactl binary, e.g.
# one built from the parent commit) runs in the same rotation, and its rows
# are printed beside schemactl's, for a before/after comparison under the
# same conditions.
# Upgrades start from a fresh database; downgrades from a fresh database that
# `schemactl upgrade heads` brought to head (untimed). No-ops at head:
# `schemactl ensure-head` and `current` against `psql -c 'select 1'`, and the
# process start alone: `schemactl --version` against `psql --version` (issue
# 11); with BEFORE set, the before binary's ensure-head and --version too.
# NOOP_ONLY=1 skips the upgrades and downgrades.
#
# Every timed run must exit 0 and leave the expected alembic_version (head
# after upgrade, no row after downgrade) and the expected number of t_ tables;
# otherwise the benchmark fails. Prints, per measurement, the median wall time
# with its min–max over the rounds, and the ratios schemactl/floor taken round
# by round (median and min–max of the per-round ratios).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/tests/bench/bench_lib.sh"
schemactl=${1:-$root/build/release/client/schemactl}
shift || true
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(200 1000)
rounds=${ROUNDS:-5}
noop_rounds=${NOOP_ROUNDS:-15}
psql_bin=$(bench_psql)
bench_cluster bench
base=${admin%/postgres}
echo "# schemactl: $schemactl (CMAKE_BUILD_TYPE=$(bench_build_type "$(dirname "$schemactl")"))"
echo "# psql: $psql_bin ($("$psql_bin" --version))"
echo "# $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); rounds=$rounds noop_rounds=$noop_rounds"

fresh_db() {
  "$psql_bin" -X -qAt "$admin" -c "SET client_min_messages = warning" \
    -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" \
    -c "CREATE DATABASE $1" >/dev/null
}
# state DSN: "<alembic_version rows>/<number of t_ tables>"
state() {
  "$psql_bin" -X -qAt "$1" -c "SELECT coalesce(string_agg(version_num, ','), '') || '/' ||
    (SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 't\_%')
    FROM alembic_version"
}

gen() {  # gen N DIR: revision files in DIR, floor scripts beside them
  local n=$1 dir=$2 prev="" i id below create index version
  mkdir -p "$dir"
  local up=$dir.up.sql up1=$dir.up1.sql down=$dir.down.sql down1=$dir.down1.sql
  local up1tx=$dir.up1tx.sql down1tx=$dir.down1tx.sql
  local table_ddl="CREATE TABLE IF NOT EXISTS alembic_version (version_num VARCHAR(32) NOT NULL, CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num));"
  echo "$table_ddl" >"$up"
  echo "$table_ddl" >"$up1"
  printf '%s\nBEGIN;\n' "$table_ddl" >"$up1tx"
  : >"$down"; : >"$down1"; echo 'BEGIN;' >"$down1tx"
  for i in $(seq 1 "$n"); do
    id=$(printf 'b%011x' "$i")
    create="CREATE TABLE t_$i (id bigserial primary key, device_id varchar(50) not null, ts timestamptz not null, v double precision[]);"
    index="CREATE INDEX ix_t_${i}_dev_ts ON t_$i(device_id, ts);"
    {
      echo "-- revision: $id"
      [ -n "$prev" ] && echo "-- revises: $prev"
      echo "-- message: table $i"
      echo
      echo "-- +upgrade"
      echo "$create"
      echo "$index"
      echo
      echo "-- +downgrade"
      echo "DROP TABLE t_$i;"
    } >"$dir/${id}_table_$i.sql"
    if [ -z "$prev" ]; then
      version="INSERT INTO alembic_version (version_num) VALUES ('$id');"
    else
      version="UPDATE alembic_version SET version_num='$id' WHERE alembic_version.version_num = '$prev';"
    fi
    printf 'BEGIN;\n%s\n%s\n%s\nCOMMIT;\n' "$create" "$index" "$version" >>"$up"
    echo "BEGIN\\; ${create%;}\\; ${index%;}\\; ${version%;}\\; COMMIT;" >>"$up1"
    echo "${create%;}\\; ${index%;}\\; $version" >>"$up1tx"
    prev=$id
  done
  echo 'COMMIT;' >>"$up1tx"
  for i in $(seq "$n" -1 1); do  # children first
    id=$(printf 'b%011x' "$i")
    below=""; [ "$i" -gt 1 ] && below=$(printf 'b%011x' $((i - 1)))
    if [ -z "$below" ]; then
      version="DELETE FROM alembic_version WHERE alembic_version.version_num = '$id';"
    else
      version="UPDATE alembic_version SET version_num='$below' WHERE alembic_version.version_num = '$id';"
    fi
    printf 'BEGIN;\nDROP TABLE t_%s;\n%s\nCOMMIT;\n' "$i" "$version" >>"$down"
    echo "BEGIN\\; DROP TABLE t_$i\\; ${version%;}\\; COMMIT;" >>"$down1"
    echo "DROP TABLE t_$i\\; $version" >>"$down1tx"
  done
  echo 'COMMIT;' >>"$down1tx"
  head_id=$prev
}

# run_tool TOOL DIRECTION: the timed command of one contender
run_tool() {
  local tool=$1 direction=$2
  case "$tool/$direction" in
    schemactl/up) timed "$schemactl" --quiet --no-progress --dsn "$dsn" --dir "$dir" upgrade heads ;;
    schemactl/down) timed "$schemactl" --quiet --no-progress --dsn "$dsn" --dir "$dir" downgrade base ;;
    before/up) timed "$BEFORE" --quiet --no-progress --dsn "$dsn" --dir "$dir" upgrade heads ;;
    before/down) timed "$BEFORE" --quiet --no-progress --dsn "$dsn" --dir "$dir" downgrade base ;;
    psqlf/*) timed "$psql_bin" -X -q -v ON_ERROR_STOP=1 -f "$dir.$direction.sql" "$dsn" ;;
    onert/*) timed "$psql_bin" -X -q -v ON_ERROR_STOP=1 -f "$dir.${direction}1.sql" "$dsn" ;;
    onetx/*) timed "$psql_bin" -X -q -v ON_ERROR_STOP=1 -f "$dir.${direction}1tx.sql" "$dsn" ;;
  esac
}

# pair_ratios A B OUT: OUT gets A[i] / B[i] for each round i
pair_ratios() { paste "$1" "$2" | awk '{ printf "%.4f\n", $1 / $2 }' >"$3"; }

tools=(schemactl psqlf onert onetx)
[ -z "${BEFORE:-}" ] || tools=(schemactl before psqlf onert onetx)
ntools=${#tools[@]}
printf '\n| N | measurement | schemactl | psql -f floor | ratio | one-round-trip floor | ratio | 1-RT, one transaction | ratio |\n'
printf '|---|---|---|---|---|---|---|---|---|\n'
for n in "${sizes[@]}"; do
  dir=$work/m$n
  gen "$n" "$dir"
  db=bench_$n
  dsn="$base/$db"
  r=$work/r$n
  mkdir -p "$r"
  for round in $(seq 0 $((rounds - 1))); do
    [ -z "${NOOP_ONLY:-}" ] || break
    for k in $(seq 0 $((ntools - 1))); do
      tool=${tools[$(((round + k) % ntools))]}
      fresh_db "$db"
      run_tool "$tool" up
      echo "$BENCH_US" >>"$r/up.$tool"
      expect_eq "$tool upgrade N=$n round $round" "$(state "$dsn")" "$head_id/$n"
    done
    for k in $(seq 0 $((ntools - 1))); do
      tool=${tools[$(((round + k) % ntools))]}
      fresh_db "$db"
      "$schemactl" --quiet --no-progress --dsn "$dsn" --dir "$dir" upgrade heads >/dev/null
      expect_eq "prepare downgrade N=$n" "$(state "$dsn")" "$head_id/$n"
      run_tool "$tool" down
      echo "$BENCH_US" >>"$r/down.$tool"
      expect_eq "$tool downgrade N=$n round $round" "$(state "$dsn")" "/0"
    done
  done
  for direction in up down; do
    [ -z "${NOOP_ONLY:-}" ] || break
    pair_ratios "$r/$direction.schemactl" "$r/$direction.psqlf" "$r/$direction.ratio_f"
    pair_ratios "$r/$direction.schemactl" "$r/$direction.onert" "$r/$direction.ratio_1"
    pair_ratios "$r/$direction.schemactl" "$r/$direction.onetx" "$r/$direction.ratio_t"
    if [ -n "${BEFORE:-}" ]; then
      pair_ratios "$r/$direction.before" "$r/$direction.psqlf" "$r/$direction.bratio_f"
      pair_ratios "$r/$direction.before" "$r/$direction.onert" "$r/$direction.bratio_1"
      pair_ratios "$r/$direction.before" "$r/$direction.onetx" "$r/$direction.bratio_t"
    fi
  done

  # No-ops at head, interleaved with the floor.
  fresh_db "$db"
  "$schemactl" --quiet --no-progress --dsn "$dsn" --dir "$dir" upgrade heads >/dev/null
  noops=(ensure current select version psql_version)
  [ -z "${BEFORE:-}" ] || noops+=(before_ensure before_version)
  for round in $(seq 0 $((noop_rounds - 1))); do
    for k in $(seq 0 $((${#noops[@]} - 1))); do
      case ${noops[$(((round + k) % ${#noops[@]}))]} in
        before_ensure) timed "$BEFORE" --quiet --no-progress --dsn "$dsn" --dir "$dir" ensure-head
                       echo "$BENCH_US" >>"$r/noop.before_ensure" ;;
        version) timed "$schemactl" --version
                 echo "$BENCH_US" >>"$r/noop.version" ;;
        before_version) timed "$BEFORE" --version
                        echo "$BENCH_US" >>"$r/noop.before_version" ;;
        psql_version) timed "$psql_bin" --version
                      echo "$BENCH_US" >>"$r/noop.psql_version" ;;
        ensure) timed "$schemactl" --quiet --no-progress --dsn "$dsn" --dir "$dir" ensure-head
                echo "$BENCH_US" >>"$r/noop.ensure" ;;
        current) timed "$schemactl" --quiet --no-progress --dsn "$dsn" --dir "$dir" current
                 grep -q "$head_id" "$BENCH_LOG" || { echo "bench: FAILED: current did not print $head_id" >&2; exit 1; }
                 echo "$BENCH_US" >>"$r/noop.current" ;;
        select) timed "$psql_bin" -X -qAt -c 'select 1' "$dsn"
                echo "$BENCH_US" >>"$r/noop.select" ;;
      esac
    done
  done
  expect_eq "ensure-head at head N=$n" "$(state "$dsn")" "$head_id/$n"
  pair_ratios "$r/noop.ensure" "$r/noop.select" "$r/noop.ratio_e"
  pair_ratios "$r/noop.current" "$r/noop.select" "$r/noop.ratio_c"
  pair_ratios "$r/noop.version" "$r/noop.psql_version" "$r/noop.ratio_v"
  if [ -n "${BEFORE:-}" ]; then
    pair_ratios "$r/noop.before_ensure" "$r/noop.select" "$r/noop.bratio_e"
    pair_ratios "$r/noop.before_version" "$r/noop.psql_version" "$r/noop.bratio_v"
  fi

  [ -n "${NOOP_ONLY:-}" ] ||
  printf '| %s | upgrade base → head | %s | %s | %s | %s | %s | %s | %s |\n' "$n" \
    "$(ms_summary "$r/up.schemactl")" "$(ms_summary "$r/up.psqlf")" "$(ratio_summary "$r/up.ratio_f")" \
    "$(ms_summary "$r/up.onert")" "$(ratio_summary "$r/up.ratio_1")" \
    "$(ms_summary "$r/up.onetx")" "$(ratio_summary "$r/up.ratio_t")"
  [ -n "${NOOP_ONLY:-}" ] ||
  printf '| %s | downgrade head → base | %s | %s | %s | %s | %s | %s | %s |\n' "$n" \
    "$(ms_summary "$r/down.schemactl")" "$(ms_summary "$r/down.psqlf")" "$(ratio_summary "$r/down.ratio_f")" \
    "$(ms_summary "$r/down.onert")" "$(ratio_summary "$r/down.ratio_1")" \
    "$(ms_summary "$r/down.onetx")" "$(ratio_summary "$r/down.ratio_t")"
  if [ -n "${BEFORE:-}" ] && [ -z "${NOOP_ONLY:-}" ]; then
    for direction in up down; do
      printf '| %s | %s (before) | %s | %s | %s | %s | %s | %s | %s |\n' "$n" "$direction" \
        "$(ms_summary "$r/$direction.before")" "$(ms_summary "$r/$direction.psqlf")" \
        "$(ratio_summary "$r/$direction.bratio_f")" "$(ms_summary "$r/$direction.onert")" \
        "$(ratio_summary "$r/$direction.bratio_1")" "$(ms_summary "$r/$direction.onetx")" \
        "$(ratio_summary "$r/$direction.bratio_t")"
    done
  fi
  printf '| %s | `ensure-head` at head | %s | %s (`select 1`) | %s | | | | |\n' "$n" \
    "$(ms_summary "$r/noop.ensure")" "$(ms_summary "$r/noop.select")" "$(ratio_summary "$r/noop.ratio_e")"
  printf '| %s | `current` | %s | %s (`select 1`) | %s | | | | |\n' "$n" \
    "$(ms_summary "$r/noop.current")" "$(ms_summary "$r/noop.select")" "$(ratio_summary "$r/noop.ratio_c")"
  printf '| %s | `--version` (process start) | %s | %s (`psql --version`) | %s | | | | |\n' "$n" \
    "$(ms_summary "$r/noop.version")" "$(ms_summary "$r/noop.psql_version")" "$(ratio_summary "$r/noop.ratio_v")"
  if [ -n "${BEFORE:-}" ]; then
    printf '| %s | `ensure-head` at head (before) | %s | %s (`select 1`) | %s | | | | |\n' "$n" \
      "$(ms_summary "$r/noop.before_ensure")" "$(ms_summary "$r/noop.select")" "$(ratio_summary "$r/noop.bratio_e")"
    printf '| %s | `--version` (before) | %s | %s (`psql --version`) | %s | | | | |\n' "$n" \
      "$(ms_summary "$r/noop.before_version")" "$(ms_summary "$r/noop.psql_version")" "$(ratio_summary "$r/noop.bratio_v")"
  fi
done
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
