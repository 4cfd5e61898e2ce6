#!/usr/bin/env bash
# Runs every benchmark on a Release build: planner (no database), migrations
# against the psql floors, the per-revision profile, EnsureHead through the
# service against a libpq floor, the schema inspector against pg_dump, and
# the fleet benchmark against psql to every site. Results: docs/benchmarks.md.
# On a machine other jobs load, BENCH_CHRT=1 runs the benchmarks (not the
# build) under `chrt -f 10`, as the published runs were; say so with the
# results.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
bash deploy/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)"
bin=build/release
prio=()
if [ -n "${BENCH_CHRT:-}" ]; then prio=(chrt -f 10); fi
echo "== planner (tests/bench/planner_bench.cc)"
"${prio[@]}" "$bin/tests/planner_bench" --schemactl "$bin/client/schemactl"
echo "== migrations vs psql (tests/bench/migrate_bench.sh)"
"${prio[@]}" bash tests/bench/migrate_bench.sh "$bin/client/schemactl" 200 1000
echo "== where a revision's time goes (tests/bench/revision_profile.sh)"
"${prio[@]}" bash tests/bench/revision_profile.sh "$bin/client/schemactl" 200
echo "== EnsureHead through schemad (tests/bench/ensure_head_bench.sh)"
"${prio[@]}" bash tests/bench/ensure_head_bench.sh "$bin"
echo "== schema inspector and differ vs pg_dump (tests/bench/inspect_bench.sh)"
"${prio[@]}" bash tests/bench/inspect_bench.sh "$bin"
echo "== drift check vs pg_dump (tests/bench/drift_bench.sh)"
"${prio[@]}" bash tests/bench/drift_bench.sh "$bin"
if [ -f tests/bench/fleet_bench.sh ]; then
  echo "== fleet (tests/bench/fleet_bench.sh)"
  "${prio[@]}" bash tests/bench/fleet_bench.sh "$bin"
fi
