#!/usr/bin/env bash
# EnsureHead benchmark (issue 4): the `schemad` binary on a throwaway cluster,
# measured from a separate client process beside the floor in the same run.
#
#   tests/bench/ensure_head_bench.sh [BUILD_DIR]     # default build/release
#
# 1. ensure_head_bench: EnsureHead at head through the SDK on a warm channel,
#    p50/p99 over $CALLS sequential calls and throughput with $CONCURRENCY
#    callers, beside `SELECT version_num FROM alembic_version` over plain libpq.
# 2. Whole processes, median of $RUNS runs: `psql -c 'select 1'` (the floor),
#    control_layer_example (a process that connects and calls WaitForHead),
#    and `schemactl --server ... ensure-head` when this schemactl has --server.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build/release}
calls=${CALLS:-10000}
concurrency=${CONCURRENCY:-64}
runs=${RUNS:-31}
work=$(mktemp -d /tmp/schemad-ehbench.XXXXXX)
chmod 755 "$work"
cluster=$work/pg
schemad_pid=
cleanup() {
  if [ -n "$schemad_pid" ]; then kill -TERM "$schemad_pid" 2>/dev/null || true; wait "$schemad_pid" 2>/dev/null || true; fi
  bash "$root/tests/testing/pg_cluster.sh" stop "$cluster"
  rm -rf "$work"
}
trap cleanup EXIT

bash "$root/tests/testing/pg_cluster.sh" start "$cluster"
admin=$(bash "$root/tests/testing/pg_cluster.sh" dsn "$cluster")
dsn=${admin%/postgres}/bench
psql "$admin" -qc 'CREATE DATABASE bench'

mkdir -p "$work/set"
parent=
for i in 0 1 2 3 4; do
  {
    echo "-- revision: r$i"
    [ -n "$parent" ] && echo "-- revises: $parent"
    printf '\n-- +upgrade\nCREATE TABLE t_r%s (id int);\n\n-- +downgrade\nDROP TABLE t_r%s;\n' "$i" "$i"
  } > "$work/set/r$i.sql"
  parent=r$i
done
(umask 077; echo "$dsn" > "$work/dsn")  # schemad refuses secret files others can read
cat > "$work/schemad.yaml" <<YAML
listen: 127.0.0.1:0
migration_sets: [{name: bench, directory: set}]
databases: [{name: bench, migration_set: bench, dsn_file: dsn}]
YAML
"$build/service/schemad" --config "$work/schemad.yaml" --log-level warn > "$work/out" 2> "$work/err" &
schemad_pid=$!
for _ in $(seq 100); do grep -q listening "$work/out" && break; sleep 0.05; done
address=$(sed -n 's/^schemad listening on //p' "$work/out")

"$build/tests/ensure_head_bench" --server "$address" --database bench --dsn "$dsn" \
  --calls "$calls" --concurrency "$concurrency"

# Whole processes: median wall time in ms over $runs runs.
median_ms() {
  local times=()
  for _ in $(seq "$runs"); do
    local t0 t1
    t0=$(date +%s%N)
    "$@" >/dev/null 2>&1
    t1=$(date +%s%N)
    times+=($(( (t1 - t0) / 1000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]/1000}'
}
echo
echo "whole process, median of $runs runs (ms):"
echo "  psql -c 'select 1'                         $(median_ms psql "$dsn" -qAtc 'select 1')"
echo "  control_layer_example (WaitForHead)        $(median_ms "$build/client/examples/control_layer_example" --server "$address" --database bench)"
if "$build/client/schemactl" --help 2>&1 | grep -q -- '--server'; then
  echo "  schemactl --server ... ensure-head         $(median_ms "$build/client/schemactl" --server "$address" --database bench ensure-head)"
fi
