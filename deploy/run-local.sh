#!/usr/bin/env bash
# schemad's main job on a local default, from a fresh Debian 12 machine:
#   1. installs what is missing (deploy/install-deps.sh) and builds;
#   2. starts a throwaway PostgreSQL 15 cluster in .run/pg (as the `postgres`
#      user when run as root) and creates two MODAX site databases;
#   3. starts schemad on 127.0.0.1 with a generated configuration;
#   4. has the example control layer call EnsureHead for site_a (it blocks until
#      the database is at head, then "starts");
#   5. streams one upgrade of site_b through the server, with its progress;
#   6. prints each site's status and history.
# Running it twice works (the databases are recreated). Ctrl-C stops
# everything it started.
#
#   deploy/run-local.sh           # run once, then stop everything
#   deploy/run-local.sh --keep    # keep PostgreSQL and schemad running to explore
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source tests/testing/schemad_address.sh

keep=0
for arg in "$@"; do
  case "$arg" in
    --keep) keep=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "run-local: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Installing what is missing and building"
bash deploy/install-deps.sh
cmake --preset default >/dev/null
targets=(schemactl)
server_built=0
if grep -q 'add_executable(schemad ' service/CMakeLists.txt 2>/dev/null; then
  targets+=(schemad control_layer_example)
  server_built=1
fi
cmake --build --preset default -j "$(nproc)" --target "${targets[@]}"
bin=$root/build/default
schemactl=$bin/client/schemactl

# The cluster lives in the repository (.run/pg) when the postgres user can
# reach it there; otherwise (a checkout under /root, say) in /tmp.
run_dir=$root/.run
mkdir -p "$run_dir"
pg_dir=$run_dir/pg
if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$run_dir" 2>/dev/null; then
  pg_dir=/tmp/schemad-run-local-pg
fi

pids=()
cleanup() {
  local code=$?
  for pid in "${pids[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  bash tests/testing/pg_cluster.sh stop "$pg_dir"
  exit "$code"
}
if [ "$keep" -eq 0 ]; then
  trap cleanup EXIT
fi
trap 'echo; echo "run-local: interrupted, stopping"; exit 130' INT TERM

say "Starting a throwaway PostgreSQL cluster in $pg_dir"
bash tests/testing/pg_cluster.sh start "$pg_dir"
admin=$(bash tests/testing/pg_cluster.sh dsn "$pg_dir")
base=${admin%/postgres}
for site in site_a site_b; do
  psql -X -q "$admin" -c "DROP DATABASE IF EXISTS $site WITH (FORCE)" -c "CREATE DATABASE $site"
done
export SITE_A_DSN=$base/site_a
export SITE_B_DSN=$base/site_b
echo "databases: site_a, site_b on $(echo "$base" | sed -E 's#//([^:]+):[^@]*@#//\1:***@#')"

if [ "$server_built" -eq 1 ]; then
  say "Starting schemad"
  config=$run_dir/schemad.yaml
  cat >"$config" <<YAML
listen: 127.0.0.1:0
reflection: true
migration_sets:
  - name: modax
    directory: $root/migrations/modax
databases:
  - name: site-a
    migration_set: modax
    dsn_env: SITE_A_DSN
    labels: {region: eu, env: dev}
  - name: site-b
    migration_set: modax
    dsn_env: SITE_B_DSN
    labels: {region: us, env: dev}
YAML
  log=$run_dir/schemad.log
  "$bin/service/schemad" --config "$config" >"$log" 2>&1 &
  pids+=($!)
  addr=$(schemad_address "$log" "${pids[-1]}" 10)
  [ -n "$addr" ] || { echo "run-local: schemad did not start" >&2; cat "$log" >&2; exit 1; }
  echo "schemad listening on $addr (log: $log)"

  say "Control layer for site-a: EnsureHead before starting"
  "$bin/client/examples/control_layer_example" --server "$addr" --database site-a --deadline-seconds 60

  say "Fleet view"
  "$schemactl" --server "$addr" dbs

  say "Upgrading site-b through schemad, streaming progress"
  "$schemactl" --server "$addr" --database site-b upgrade heads

  for site in site-a site-b; do
    say "Status and history of $site"
    "$schemactl" --server "$addr" --database "$site" current --verbose
    "$schemactl" --server "$addr" --database "$site" history
  done
else
  say "Upgrading site_a and site_b with schemactl (direct mode)"
  for dsn in "$SITE_A_DSN" "$SITE_B_DSN"; do
    "$schemactl" --dsn "$dsn" --dir migrations/modax upgrade heads
  done
  for dsn in "$SITE_A_DSN" "$SITE_B_DSN"; do
    say "Status and history"
    "$schemactl" --dsn "$dsn" --dir migrations/modax current --verbose
    "$schemactl" --dsn "$dsn" --dir migrations/modax history
  done
fi

if [ "$keep" -eq 1 ]; then
  say "Still running (--keep)"
  echo "PostgreSQL: $(echo "$base" | sed -E 's#//([^:]+):[^@]*@#//\1:***@#')  (password in $pg_dir/password)"
  [ "$server_built" -eq 1 ] && echo "schemad:    $addr   e.g. $schemactl --server $addr dbs"
  echo "stop with:  bash tests/testing/pg_cluster.sh stop $pg_dir; kill ${pids[*]:-}"
fi
