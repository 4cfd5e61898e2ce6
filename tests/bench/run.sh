#!/usr/bin/env bash
# Runs every benchmark on a Release build: planner (no database), migrations
# against the psql floor, EnsureHead through the service against a libpq
# floor, and (when present) the fleet benchmark. Results: docs/benchmarks.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
bash deploy/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)"
bin=build/release
echo "== planner (tests/bench/planner_bench.cc)"
"$bin/tests/planner_bench" --schemactl "$bin/client/schemactl"
echo "== migrations vs psql (tests/bench/migrate_bench.sh)"
bash tests/bench/migrate_bench.sh "$bin/client/schemactl" 200 1000
echo "== EnsureHead through schemad (tests/bench/ensure_head_bench.sh)"
bash tests/bench/ensure_head_bench.sh "$bin"
if [ -f tests/bench/fleet_bench.sh ]; then
  echo "== fleet (tests/bench/fleet_bench.sh)"
  bash tests/bench/fleet_bench.sh "$bin"
fi
