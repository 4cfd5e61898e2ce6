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
#
# The fleet benchmarks' sites (fleet_bench.sh, fleet_replicas_bench.sh); they
# need $work, $admin and $psql_bin:
# fleet_revisions N     writes N revisions r01..rN (each `CREATE TABLE` +
#                       100-row `INSERT`) to $work/set and the psql floor's
#                       script (per revision BEGIN, statements,
#                       alembic_version statement, COMMIT) to $work/floor.sql;
#                       sets $fleet_revisions and $head_rev
# fleet_sites N         creates databases site_1..site_N (zero-padded) in one
#                       psql session; sets $fleet_base (the DSN without the
#                       database) and $fleet_sites; writes their DSNs to
#                       $work/dsns (one a line)
# fleet_reset           empties every site (DROP SCHEMA public CASCADE), one
#                       psql process visiting them all
# fleet_check WHAT      fails the benchmark (naming WHAT) unless every site
#                       is at $head_rev with all its tables

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
    tail -n 20 "$log" "$log.err" >&2
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

# ensure_head_set WORK DSN: the EnsureHead benchmarks' migration set, five
# revisions r0..r4 (one CREATE TABLE each) in WORK/set, and WORK/dsn holding
# DSN (mode 600: schemad refuses secret files others can read).
ensure_head_set() {
  local work=$1 dsn=$2 parent="" i
  mkdir -p "$work/set"
  for i in 0 1 2 3 4; do
    {
      echo "-- revision: r$i"
      [ -n "$parent" ] && echo "-- revises: $parent"
      printf '\n-- +upgrade\nCREATE TABLE t_r%s (id int);\n\n-- +downgrade\nDROP TABLE t_r%s;\n' "$i" "$i"
    } > "$work/set/r$i.sql"
    parent=r$i
  done
  (umask 077; echo "$dsn" > "$work/dsn")
}

fleet_revisions() {
  local i parent='' create insert version
  fleet_revisions=$1
  mkdir -p "$work/set"
  echo "CREATE TABLE IF NOT EXISTS alembic_version (version_num VARCHAR(32) NOT NULL, CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num));" > "$work/floor.sql"
  for i in $(seq -w 1 "$1"); do
    create="CREATE TABLE t_r$i (id int PRIMARY KEY, v text);"
    insert="INSERT INTO t_r$i SELECT g, md5(g::text) FROM generate_series(1, 100) g;"
    {
      echo "-- revision: r$i"
      [ -n "$parent" ] && echo "-- revises: $parent"
      printf '\n-- +upgrade\n%s\n%s\n\n-- +downgrade\nDROP TABLE t_r%s;\n' "$create" "$insert" "$i"
    } > "$work/set/r$i.sql"
    if [ -z "$parent" ]; then
      version="INSERT INTO alembic_version (version_num) VALUES ('r$i');"
    else
      version="UPDATE alembic_version SET version_num='r$i' WHERE alembic_version.version_num = '$parent';"
    fi
    printf 'BEGIN;\n%s\n%s\n%s\nCOMMIT;\n' "$create" "$insert" "$version" >> "$work/floor.sql"
    parent=r$i
  done
  head_rev=$parent
}

fleet_sites() {
  local i
  fleet_sites=$1
  fleet_base=${admin%/postgres}
  : > "$work/reset.psql"
  : > "$work/check.psql"
  : > "$work/dsns"
  for i in $(seq -w 1 "$1"); do
    echo "CREATE DATABASE site_$i;"
    echo "$fleet_base/site_$i" >> "$work/dsns"
    printf '\\c %s\nDROP SCHEMA public CASCADE; CREATE SCHEMA public;\n' "$fleet_base/site_$i" >> "$work/reset.psql"
    printf '\\c %s\nSELECT current_database() || %s || (SELECT string_agg(version_num, %s) FROM alembic_version) || %s || (SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename LIKE %s);\n' \
      "$fleet_base/site_$i" "' '" "','" "' '" "'public'" "'t\\_%'" >> "$work/check.psql"
  done | "$psql_bin" -X -q -v ON_ERROR_STOP=1 "$admin" >/dev/null
}

fleet_reset() {
  "$psql_bin" -X -q -v ON_ERROR_STOP=1 -f "$work/reset.psql" "$admin" >/dev/null 2>&1 ||
    { echo "bench: FAILED to reset the sites" >&2; exit 1; }
}

fleet_check() {
  local bad
  bad=$("$psql_bin" -X -qAt -v ON_ERROR_STOP=1 -f "$work/check.psql" "$admin" 2>&1 |
        awk -v want="$head_rev $fleet_revisions" -v sites="$fleet_sites" '
          { n++; sub(/^[^ ]+ /, ""); if ($0 != want) bad++ }
          END { if (n != sites || bad) print "sites checked " n ", wrong " bad + 0 }')
  [ -z "$bad" ] || { echo "bench: FAILED: $1: $bad" >&2; exit 1; }
}
