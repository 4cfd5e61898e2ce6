#!/usr/bin/env bash
# Drift check benchmark (issue 12): `schemactl drift` on a MODAX site at head
# (migrations/modax), whole processes, beside `pg_dump --schema-only` of the
# same site (the real binary: reading a schema, the least a drift check must
# do) in the same run, interleaved round by round:
#   cold   the expected schema built on the dev server (empty cache): a
#          scratch database created, every revision applied, inspected, dropped
#   warm   the expected schema from the disk cache (the fleet case: every
#          site at the same revisions after the first)
#   local  `--dev-dsn local`, cold: a throwaway cluster (initdb + pg_ctl) too
# Every run must exit 0 (no drift); a failed run fails the benchmark.
#
#   tests/bench/drift_bench.sh [BUILD_DIR]     # default build/release; RUNS (default 5)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/tests/bench/bench_lib.sh"
build=${1:-$root/build/release}
schemactl=$build/client/schemactl
runs=${RUNS:-5}
psql_bin=$(bench_psql)
pg_dump_bin=$(dirname "$psql_bin")/pg_dump
bench_cluster driftbench
site=${admin%/postgres}/drift_site
"$psql_bin" "$admin" -qc "CREATE DATABASE drift_site" >/dev/null
"$schemactl" --dsn "$site" --dir "$root/migrations/modax" --no-progress upgrade heads >/dev/null 2>&1
echo "# build: $build (CMAKE_BUILD_TYPE=$(bench_build_type "$build"))"
echo "# $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $runs interleaved rounds"

drift() {  # drift CACHE_DIR DEV_DSN
  XDG_CACHE_HOME=$1 "$schemactl" --dsn "$site" --dir "$root/migrations/modax" drift --dev-dsn "$2"
}
for f in dump cold warm local r_cold r_warm r_local; do : >"$work/$f"; done
for ((i = 0; i < runs; i++)); do
  timed "$pg_dump_bin" --schema-only "$site"
  dump=$BENCH_US
  echo "$dump" >>"$work/dump"
  timed drift "$work/cache_$i" "$admin"
  echo "$BENCH_US" >>"$work/cold"
  echo "$BENCH_US $dump" | awk '{ print $1 / $2 }' >>"$work/r_cold"
  expect_eq "cache entries after a cold run" "$(ls "$work/cache_$i/schemad" | wc -l)" 1
  timed drift "$work/cache_$i" "$admin"
  echo "$BENCH_US" >>"$work/warm"
  echo "$BENCH_US $dump" | awk '{ print $1 / $2 }' >>"$work/r_warm"
  timed drift "$work/local_cache_$i" local
  echo "$BENCH_US" >>"$work/local"
  echo "$BENCH_US $dump" | awk '{ print $1 / $2 }' >>"$work/r_local"
done
echo "| what (whole process) | median (min–max) | ratio to pg_dump, pair by pair |"
echo "|---|---|---|"
echo "| \`pg_dump --schema-only\` of the site | $(ms_summary "$work/dump") | 1 |"
echo "| \`schemactl drift\`, cold (build on a DSN dev server) | $(ms_summary "$work/cold") | $(ratio_summary "$work/r_cold") |"
echo "| \`schemactl drift\`, warm (disk cache) | $(ms_summary "$work/warm") | $(ratio_summary "$work/r_warm") |"
echo "| \`schemactl drift --dev-dsn local\`, cold | $(ms_summary "$work/local") | $(ratio_summary "$work/r_local") |"
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
