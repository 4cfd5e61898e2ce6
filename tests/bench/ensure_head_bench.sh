#!/usr/bin/env bash
# EnsureHead benchmark (issue 4): the `schemad` binary on a throwaway cluster,
# measured from a separate client process beside the floor in the same run.
#
#   tests/bench/ensure_head_bench.sh [BUILD_DIR]     # default build/release
#
# 1. ensure_head_bench: EnsureHead at head through the SDK on a warm channel,
#    p50/p99 of sequential calls and throughput with $CONCURRENCY callers,
#    beside `SELECT version_num FROM alembic_version` over plain libpq, the two
#    taking turns for $ROUNDS rounds ($CALLS sequential calls in all).
# 2. Whole processes, $RUNS rounds, each running in turn (the order rotating)
#    `psql -c 'select 1'` with the real psql binary (the floor),
#    control_layer_example (a process that connects and calls WaitForHead) and
#    `schemactl --server ... ensure-head`: median and min–max of each, and the
#    ratio to the floor taken round by round. A run that exits non-zero fails
#    the benchmark; the database must still be at head afterwards.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/tests/bench/bench_lib.sh"
build=${1:-$root/build/release}
calls=${CALLS:-10000}
concurrency=${CONCURRENCY:-64}
rounds=${ROUNDS:-5}
runs=${RUNS:-31}
psql_bin=$(bench_psql)
schemad_pid=
bench_before_exit() {
  if [ -n "$schemad_pid" ]; then kill -TERM "$schemad_pid" 2>/dev/null || true; wait "$schemad_pid" 2>/dev/null || true; fi
}
bench_cluster ehbench
dsn=${admin%/postgres}/bench
"$psql_bin" -X "$admin" -qc 'CREATE DATABASE bench'

ensure_head_set "$work" "$dsn"
cat > "$work/schemad.yaml" <<YAML
listen: 127.0.0.1:0
migration_sets: [{name: bench, directory: set}]
databases: [{name: bench, migration_set: bench, dsn_file: dsn}]
YAML
"$build/service/schemad" --config "$work/schemad.yaml" --log-level warn > "$work/out" 2> "$work/err" &
schemad_pid=$!
address=$(schemad_address "$work/out" "$schemad_pid" 5)
[ -n "$address" ] || { echo "bench: schemad did not start:" >&2; cat "$work/err" >&2; exit 1; }

echo "# build: $build (CMAKE_BUILD_TYPE=$(bench_build_type "$build"))"
echo "# psql: $psql_bin; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$build/tests/ensure_head_bench" --server "$address" --database bench --dsn "$dsn" \
  --calls "$calls" --concurrency "$concurrency" --rounds "$rounds"

# Whole processes, interleaved: wall times in microseconds, one line per round.
contenders=(select example schemactl)
for round in $(seq 0 $((runs - 1))); do
  for k in 0 1 2; do
    case ${contenders[$(((round + k) % 3))]} in
      select) timed "$psql_bin" -X -qAt -c 'select 1' "$dsn"
              echo "$BENCH_US" >>"$work/t.select" ;;
      example) timed "$build/client/examples/control_layer_example" --server "$address" --database bench
               echo "$BENCH_US" >>"$work/t.example" ;;
      schemactl) timed "$build/client/schemactl" --server "$address" --database bench ensure-head
                 echo "$BENCH_US" >>"$work/t.schemactl" ;;
    esac
  done
done
expect_eq "alembic_version after the runs" \
  "$("$psql_bin" -X -qAt "$dsn" -c 'SELECT string_agg(version_num, $$,$$) FROM alembic_version')" r4
paste "$work/t.example" "$work/t.select" | awk '{ printf "%.4f\n", $1 / $2 }' >"$work/ratio.example"
paste "$work/t.schemactl" "$work/t.select" | awk '{ printf "%.4f\n", $1 / $2 }' >"$work/ratio.schemactl"
echo
echo "whole process, $runs interleaved rounds, median (min–max):"
echo "  psql -c 'select 1' (floor)                 $(ms_summary "$work/t.select")"
echo "  control_layer_example (WaitForHead)        $(ms_summary "$work/t.example")   $(ratio_summary "$work/ratio.example") the floor"
echo "  schemactl --server ... ensure-head         $(ms_summary "$work/t.schemactl")   $(ratio_summary "$work/ratio.schemactl") the floor"
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
