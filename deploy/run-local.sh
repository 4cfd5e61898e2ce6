#!/usr/bin/env bash
# schemad's main job on a local default, from a fresh Debian 12 machine:
# installs what is missing, builds, starts a throwaway PostgreSQL cluster in
# .run/ (as the `postgres` user when run as root), and migrates two MODAX site
# databases with migrations/modax, showing progress, status and history.
#
#   deploy/run-local.sh           # run once and stop everything it started
#   deploy/run-local.sh --keep    # leave the cluster running for exploration
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

keep=0
for arg in "$@"; do
  case "$arg" in
    --keep) keep=1 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "run-local: unknown argument $arg" >&2; exit 2 ;;
  esac
done

bash deploy/install-deps.sh
cmake --preset default >/dev/null
cmake --build --preset default -j "$(nproc)" --target schemactl

schemactl=build/default/client/schemactl
echo
echo "== MODAX migration graph (migrations/modax)"
"$schemactl" --dir migrations/modax history --verbose
"$schemactl" --dir migrations/modax heads
