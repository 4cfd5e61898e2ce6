#!/usr/bin/env bash
# Schema inspector benchmark (issue 12): inspect_bench on a throwaway cluster,
# InspectSchema of 1,000 tables beside `pg_dump --schema-only` (the real
# binary) in the same run, and DiffSchemas of two such models.
#
#   tests/bench/inspect_bench.sh [BUILD_DIR]     # default build/release
#
# TABLES (default 1000) and RUNS (default 7) are passed on.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/tests/bench/bench_lib.sh"
build=${1:-$root/build/release}
psql_bin=$(bench_psql)
pg_dump_bin=$(dirname "$psql_bin")/pg_dump
bench_cluster inspectbench
echo "# build: $build (CMAKE_BUILD_TYPE=$(bench_build_type "$build"))"
echo "# pg_dump: $pg_dump_bin ($("$pg_dump_bin" --version)); $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$build/tests/inspect_bench" --admin-dsn "$admin" --pg-dump "$pg_dump_bin" \
  --tables "${TABLES:-1000}" --runs "${RUNS:-7}"
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
