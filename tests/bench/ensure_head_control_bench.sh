#!/usr/bin/env bash
# EnsureHead at head with and without a control database (issue 10): two
# `schemad` processes on one throwaway cluster serving the same database
# `bench` (at head), A without `control_database`, B with one (database
# `control` on the same cluster); `ensure_head_bench --server-b` (a separate
# client process, real gRPC calls through the SDK) measures them in turn,
# $ROUNDS rounds (which goes first alternates), each round $CALLS / $ROUNDS
# sequential calls and $CONCURRENCY callers x $PER_CALLER, beside the libpq
# floor (`SELECT version_num FROM alembic_version`). Prints p50/p99 of each
# and the B/A ratios taken round by round; any failed call fails the
# benchmark.
#
# What B sends to the control database meanwhile: every statement on the
# control database is logged (ALTER DATABASE control SET log_statement =
# 'all', before B starts), and the statements logged while the calls run are
# counted, against the number of EnsureHead calls B answered. The design
# says: none per call, only the lease renewals (every lease / 3).
#
#   tests/bench/ensure_head_control_bench.sh [BUILD_DIR]     # default build/release
#   CALLS=10000 ROUNDS=10 CONCURRENCY=64 PER_CALLER=100
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/tests/bench/bench_lib.sh"
build=${1:-$root/build/release}
calls=${CALLS:-10000}
rounds=${ROUNDS:-10}
concurrency=${CONCURRENCY:-64}
per_caller=${PER_CALLER:-100}
psql_bin=$(bench_psql)
pid_a=
pid_b=
bench_before_exit() {
  local pid
  for pid in $pid_a $pid_b; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
bench_cluster ehcontrol
base=${admin%/postgres}
dsn=$base/bench
"$psql_bin" -X "$admin" -qc 'CREATE DATABASE bench' -c 'CREATE DATABASE control' \
  -c "ALTER DATABASE control SET log_statement = 'all'"

ensure_head_set "$work" "$dsn"
cat > "$work/a.yaml" <<YAML
listen: 127.0.0.1:0
migration_sets: [{name: bench, directory: set}]
databases: [{name: bench, migration_set: bench, dsn_file: dsn}]
YAML
cat "$work/a.yaml" - > "$work/b.yaml" <<YAML
control_database: {dsn_env: BENCH_CONTROL_DSN}
replica_name: bench-b
YAML
"$build/service/schemad" --config "$work/a.yaml" --log-level warn > "$work/out.a" 2> "$work/err.a" &
pid_a=$!
BENCH_CONTROL_DSN=$base/control "$build/service/schemad" --config "$work/b.yaml" --log-level warn \
  > "$work/out.b" 2> "$work/err.b" &
pid_b=$!
address_a=$(schemad_address "$work/out.a" "$pid_a" 10)
[ -n "$address_a" ] || { echo "bench: schemad A did not start:" >&2; cat "$work/err.a" >&2; exit 1; }
address_b=$(schemad_address "$work/out.b" "$pid_b" 10)
[ -n "$address_b" ] || { echo "bench: schemad B did not start:" >&2; cat "$work/err.b" >&2; exit 1; }
# B really uses the control database: it registered there.
expect_eq "replicas registered in the control database" \
  "$("$psql_bin" -X -qAt "$base/control" -c 'SELECT string_agg(name, $$,$$) FROM schemad_control.replicas')" bench-b

log=$cluster/postgres.log
control_statements() { grep -cE 'LOG:  (statement|execute [^:]*):' "$log" || true; }

echo "# build: $build (CMAKE_BUILD_TYPE=$(bench_build_type "$build"))"
echo "# psql: $psql_bin; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
before=$(control_statements)
t0=$(date +%s%N)
"$build/tests/ensure_head_bench" --server "$address_a" --server-b "$address_b" --database bench \
  --dsn "$dsn" --name-a "no control database" --name-b "control database" \
  --calls "$calls" --rounds "$rounds" --concurrency "$concurrency" --per-caller "$per_caller"
t1=$(date +%s%N)
after=$(control_statements)
expect_eq "alembic_version after the runs" \
  "$("$psql_bin" -X -qAt "$dsn" -c 'SELECT string_agg(version_num, $$,$$) FROM alembic_version')" r4
b_calls=$((1 + 500 + rounds * (calls / rounds + concurrency * per_caller)))
echo
echo "statements on the control database while B answered $b_calls EnsureHead calls" \
  "($(( (t1 - t0) / 1000000 )) ms): $((after - before))"
grep -E 'LOG:  (statement|execute [^:]*):' "$log" | tail -n +"$((before + 1))" |
  sed -E 's/^.*LOG:  (statement|execute [^:]*): //' | cut -c1-60 | sort | uniq -c | sort -rn | head -5
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
