#!/usr/bin/env bash
# Where a revision's time goes beyond its own SQL (issue 15): the profile
# behind docs/benchmarks.md, "Profile at N=200".
#
#   tests/bench/revision_profile.sh [SCHEMACTL] [N]     # default build/release, 200
#   ROUNDS=5 tests/bench/revision_profile.sh ...
#
# Same workload as migrate_bench.sh (upgrade from a fresh database, N
# revisions of CREATE TABLE + CREATE INDEX). In every round, order rotating:
#   schemactl      `schemactl upgrade heads`
#   1-RT           the one-round-trip floor: psql sends each revision as one
#                  simple query (BEGIN\; body\; version row\; COMMIT)
#   1-RT+bk        the same, with schemactl's own bookkeeping statement (the
#                  version row and the history row in one statement, as
#                  schemactl sends it) in place of the bare version row, on a
#                  database whose schemad tables the script creates: what a
#                  schemactl that sent each revision in one round trip would
#                  still pay per revision
# and the same three for a single revision (N=1), whose difference is the
# fixed cost of a run (two logins, table checks, lock, state reads).
# Then one run of schemactl under `strace -f -c` counts its round trips
# (sendto calls). Every run must exit 0 and leave the expected version.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/tests/bench/bench_lib.sh"
schemactl=${1:-$root/build/release/client/schemactl}
n=${2:-200}
rounds=${ROUNDS:-5}
psql_bin=$(bench_psql)
bench_cluster profile
dsn=${admin%/postgres}/prof
echo "# schemactl: $schemactl (CMAKE_BUILD_TYPE=$(bench_build_type "$(dirname "$schemactl")"))"
echo "# $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); N=$n rounds=$rounds"

version_ddl="CREATE TABLE IF NOT EXISTS alembic_version (version_num VARCHAR(32) NOT NULL, CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
# schemad's tables as the store creates them (service/store/pq/pq_database.cc).
schemad_ddl="CREATE TABLE IF NOT EXISTS schemad_history (id bigserial PRIMARY KEY, revision text NOT NULL, direction text NOT NULL, rows_before text[] NOT NULL, rows_after text[] NOT NULL, checksum text, started timestamptz, duration_ms double precision, outcome text NOT NULL, error text, who text, operation_id text, schemad_version text, version_table text NOT NULL)\\; CREATE TABLE IF NOT EXISTS schemad_state (version_table text PRIMARY KEY, revision text NOT NULL, direction text NOT NULL, statements_done int NOT NULL, statements_total int NOT NULL, error text, operation_id text, started timestamptz)"

gen() {  # gen N DIR: revision files, DIR.1rt.sql and DIR.1rtbk.sql
  local count=$1 dir=$2 prev="" i id create index version change history
  mkdir -p "$dir"
  echo "$version_ddl;" >"$dir.1rt.sql"
  echo "$version_ddl\\; $schemad_ddl;" >"$dir.1rtbk.sql"
  for i in $(seq 1 "$count"); do
    id=$(printf 'b%011x' "$i")
    create="CREATE TABLE t_$i (id bigserial primary key, device_id varchar(50) not null, ts timestamptz not null, v double precision[])"
    index="CREATE INDEX ix_t_${i}_dev_ts ON t_$i(device_id, ts)"
    printf -- '-- revision: %s\n%s-- message: table %s\n\n-- +upgrade\n%s;\n%s;\n\n-- +downgrade\nDROP TABLE t_%s;\n' \
      "$id" "${prev:+-- revises: $prev
}" "$i" "$create" "$index" "$i" >"$dir/${id}_table_$i.sql"
    if [ -z "$prev" ]; then
      version="INSERT INTO alembic_version (version_num) VALUES ('$id')"
      change="INSERT INTO \"alembic_version\" (version_num) VALUES ('$id') RETURNING 1"
      history="'{}'::text[], '{\"$id\"}'::text[]"
    else
      version="UPDATE alembic_version SET version_num='$id' WHERE alembic_version.version_num = '$prev'"
      change="UPDATE \"alembic_version\" SET version_num = '$id' WHERE version_num = '$prev' RETURNING 1"
      history="'{\"$prev\"}'::text[], '{\"$id\"}'::text[]"
    fi
    echo "BEGIN\\; $create\\; $index\\; $version\\; COMMIT;" >>"$dir.1rt.sql"
    echo "BEGIN\\; $create\\; $index\\; WITH v0 AS ($change), h AS (INSERT INTO \"schemad_history\" (revision, direction, rows_before, rows_after, checksum, started, duration_ms, outcome, error, who, operation_id, schemad_version, version_table) VALUES ('$id', 'up', $history, '$(printf '%064d' "$i")', now(), 1.5, 'success', NULL, 'profile@bench', 'op-0000000000000001', '0.1.0', 'alembic_version') RETURNING 1) SELECT (SELECT count(*) FROM v0)\\; COMMIT;" >>"$dir.1rtbk.sql"
    prev=$id
  done
  head_id=$prev
}

fresh_db() {
  "$psql_bin" -X -qAt "$admin" -c "SET client_min_messages = warning" \
    -c "DROP DATABASE IF EXISTS prof WITH (FORCE)" -c "CREATE DATABASE prof" >/dev/null
}
version() { "$psql_bin" -X -qAt "$dsn" -c "SELECT string_agg(version_num, ',') FROM alembic_version"; }

pair_ratios() { paste "$1" "$2" | awk '{ printf "%.4f\n", $1 / $2 }' >"$3"; }
tools=(schemactl onert onertbk)
for size in "$n" 1; do
  dir=$work/m$size
  gen "$size" "$dir"
  for round in $(seq 0 $((rounds - 1))); do
    for k in 0 1 2; do
      tool=${tools[$(((round + k) % 3))]}
      fresh_db
      case $tool in
        schemactl) timed "$schemactl" --quiet --no-progress --dsn "$dsn" --dir "$dir" upgrade heads ;;
        onert) timed "$psql_bin" -X -q -v ON_ERROR_STOP=1 -f "$dir.1rt.sql" "$dsn" ;;
        onertbk) timed "$psql_bin" -X -q -v ON_ERROR_STOP=1 -f "$dir.1rtbk.sql" "$dsn" ;;
      esac
      echo "$BENCH_US" >>"$work/t.$size.$tool"
      expect_eq "$tool N=$size round $round" "$(version)" "$head_id"
    done
  done
done

fresh_db
strace -f -c -e trace=sendto -o "$work/strace" \
  "$schemactl" --quiet --no-progress --dsn "$dsn" --dir "$work/m$n" upgrade heads >/dev/null
sends=$(awk '$NF == "sendto" { print $4 }' "$work/strace")

med() { summary "$1" | awk '{ printf "%.1f", $1 / 1000 }'; }
pair_ratios "$work/t.$n.schemactl" "$work/t.$n.onert" "$work/r.s_1"
pair_ratios "$work/t.$n.onertbk" "$work/t.$n.onert" "$work/r.bk_1"
pair_ratios "$work/t.$n.schemactl" "$work/t.$n.onertbk" "$work/r.s_bk"
printf '\n| N | schemactl | 1-RT floor | 1-RT + bookkeeping |\n|---|---|---|---|\n'
for size in "$n" 1; do
  printf '| %s | %s | %s | %s |\n' "$size" "$(ms_summary "$work/t.$size.schemactl")" \
    "$(ms_summary "$work/t.$size.onert")" "$(ms_summary "$work/t.$size.onertbk")"
done
echo
echo "ratios at N=$n, round by round: schemactl / 1-RT $(ratio_summary "$work/r.s_1");" \
  "1-RT+bookkeeping / 1-RT $(ratio_summary "$work/r.bk_1"); schemactl / 1-RT+bookkeeping $(ratio_summary "$work/r.s_bk")"
awk -v n="$n" -v s="$(med "$work/t.$n.schemactl")" -v o="$(med "$work/t.$n.onert")" \
    -v b="$(med "$work/t.$n.onertbk")" -v s1="$(med "$work/t.1.schemactl")" \
    -v b1="$(med "$work/t.1.onertbk")" -v sends="$sends" 'BEGIN {
  fixed = s1 - b1
  printf "per revision (medians): schemactl %.2f ms, 1-RT %.2f ms, 1-RT+bookkeeping %.2f ms\n", s / n, o / n, b / n
  printf "  the bookkeeping statement (history row) in one round trip: %+.2f ms a revision\n", (b - o) / n
  printf "  fixed cost of a schemactl run (N=1: schemactl - 1-RT+bookkeeping): %.1f ms\n", fixed
  printf "  left for the extra round trips: %+.2f ms a revision\n", (s - b - fixed) / n
  printf "round trips (sendto) of one schemactl run at N=%d: %d (%.2f a revision)\n", n, sends, sends / n
}'
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
