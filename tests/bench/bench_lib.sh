# shellcheck shell=bash disable=SC2034,SC2154  # sets variables for, and reads $root of, the script that sources it
# Shared by the benchmark scripts (sourced, not run).
#
# bench_psql            prints the real psql binary of PostgreSQL 15 (never
#                       Debian's /usr/bin/psql, the Perl pg_wrapper, which
#                       adds ~30 ms to every call), or fails
# bench_cluster NAME    makes $work (/tmp/schemad-NAME.XXXXXX, open to the
#                       postgres user), starts a throwaway PostgreSQL in
#                       $work/pg ($cluster), sets $admin to its superuser DSN
#                       and BENCH_LOG to $work/last.log; at exit it runs the
#                       script's bench_before_exit, if it has one (to stop
#                       what it started), then stops the cluster and removes
#                       $work. Needs $root (the repository).
# bench_build_type DIR  prints CMAKE_BUILD_TYPE of the build tree holding DIR
# timed CMD...          runs CMD once and sets BENCH_US to its wall time in
#                       microseconds; its stdout goes to $BENCH_LOG, its
#                       stderr to $BENCH_LOG.err; a non-zero exit fails the
#                       benchmark (prints CMD, its exit code and its output)
# expect_eq WHAT GOT WANT   fails the benchmark unless GOT == WANT
# summary FILE          prints "median min max" of the numbers in FILE
# ms_summary FILE       the same, microseconds -> "median ms (min–max)"
# ratio_summary FILE    ratios -> "median× (min–max)"

# schemad_address FILE PID SECONDS: tests/testing/schemad_address.sh
source "$(dirname "${BASH_SOURCE[0]}")/../testing/schemad_address.sh"

bench_psql() {
  local candidate
  for candidate in "${PSQL:-}" "$(pg_config --bindir 2>/dev/null)/psql" \
                   /usr/lib/postgresql/15/bin/psql; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] &&
       [ "$(head -c 4 "$candidate" | od -An -c | tr -d ' ')" = '177ELF' ]; then
      echo "$candidate"
      return 0
    fi
  done
  echo "bench: no psql binary found (pg_config --bindir, /usr/lib/postgresql/15/bin)" >&2
  return 1
}

bench_cluster() {
  work=$(mktemp -d "/tmp/schemad-$1.XXXXXX")
  chmod 755 "$work"
  export BENCH_LOG=$work/last.log
  cluster=$work/pg
  trap bench_exit EXIT
  bash "$root/tests/testing/pg_cluster.sh" start "$cluster" >/dev/null
  admin=$(bash "$root/tests/testing/pg_cluster.sh" dsn "$cluster")
}

bench_exit() {
  if declare -F bench_before_exit >/dev/null; then
    bench_before_exit || true
  fi
  bash "$root/tests/testing/pg_cluster.sh" stop "$cluster" >/dev/null 2>&1 || true
  rm -rf "$work"
}

bench_build_type() {
  local dir=$1
  while [ "$dir" != / ] && [ ! -f "$dir/CMakeCache.txt" ]; do dir=$(dirname "$dir"); done
  if [ -f "$dir/CMakeCache.txt" ]; then
    sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$dir/CMakeCache.txt"
  else
    echo unknown
  fi
}

BENCH_US=0
timed() {
  local log=${BENCH_LOG:-/tmp/schemad-bench-last.log} t0 t1 rc=0
  t0=$(date +%s%N)
  "$@" >"$log" 2>"$log.err" || rc=$?
  t1=$(date +%s%N)
  if [ "$rc" -ne 0 ]; then
    echo "bench: FAILED (exit $rc): $*" >&2
    tail -20 "$log" "$log.err" >&2
    exit 1
  fi
  BENCH_US=$(( (t1 - t0) / 1000 ))
}

expect_eq() {
  if [ "$2" != "$3" ]; then
    echo "bench: FAILED: $1: got '$2', want '$3'" >&2
    exit 1
  fi
}

summary() {
  sort -g "$1" | awk '{ v[NR] = $1 }
    END { if (NR == 0) exit 1
          m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
          print m, v[1], v[NR] }'
}

ms_summary() {
  summary "$1" | awk '{ printf "%.1f ms (%.1f–%.1f)", $1 / 1000, $2 / 1000, $3 / 1000 }'
}

ratio_summary() {
  summary "$1" | awk '{ printf "%.2f× (%.2f–%.2f)", $1, $2, $3 }'
}
