#!/usr/bin/env bash
# The installed SDK, used the way another project uses it (issue 11):
#
#   SCHEMAD_BUILD_DIR=build/default SCHEMAD_TEST_PG_DIR=DIR \
#     bash tests/consumer/consumer_test.sh
#
# DIR is a cluster started by tests/testing/pg_cluster.sh; ctest passes it,
# SCHEMAD_BUILD_DIR and SCHEMAD_SOURCE_DIR (tests/CMakeLists.txt). Without a
# cluster or a build this test FAILS; it never skips.
#
#   1. `cmake --install BUILD --prefix TMP` ships the header, the libraries,
#      schemadConfig.cmake (+ version, targets) and schemad-client.pc.
#   2. tests/consumer, a project outside the tree, configures with
#      find_package(schemad CONFIG REQUIRED) against TMP alone and builds
#      every client/examples/*.cc with -Wall -Wextra -Werror.
#      The example's unit test (control_layer_startup_test.cc) uses the
#      installed schemad/mocks/mock_client_connection.h and passes.
#   3. A one-file program builds with `pkg-config --cflags --libs
#      schemad-client` alone.
#   4. Against the installed `schemad` on a fresh database of the cluster:
#      the example brings the database to head (exit 0, version row checked
#      with psql), exits 1 naming an unknown database, and the pkg-config
#      program reads the status (at-head).
# Each line gives the time since the start (the consumer's configure and
# build are cold; with CMAKE_CXX_COMPILER_LAUNCHER=ccache they may hit).
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/../testing/check.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../testing/schemad_address.sh"
start_ns=$(date +%s%N)
elapsed() { # since the start, for the log: "at 4.2 s"
  echo "at $(awk -v ns=$(($(date +%s%N) - start_ns)) 'BEGIN { printf "%.1f", ns / 1e9 }') s"
}

[ -n "${SCHEMAD_TEST_PG_DIR:-}" ] ||
  fail "SCHEMAD_TEST_PG_DIR is not set (start a cluster: tests/testing/pg_cluster.sh start DIR)"
[ -f "$SCHEMAD_TEST_PG_DIR/port" ] && [ -f "$SCHEMAD_TEST_PG_DIR/password" ] ||
  fail "no cluster in $SCHEMAD_TEST_PG_DIR (no port/password file)"
[ -n "${SCHEMAD_BUILD_DIR:-}" ] && [ -f "$SCHEMAD_BUILD_DIR/cmake_install.cmake" ] ||
  fail "SCHEMAD_BUILD_DIR ('${SCHEMAD_BUILD_DIR:-}') is not a configured schemad build"
src=${SCHEMAD_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
psql=/usr/lib/postgresql/15/bin/psql
[ -x "$psql" ] || fail "no $psql"

work=$(mktemp -d /tmp/schemad-consumer.XXXXXX) || fail "mktemp"
schemad_pid=
cleanup() {
  if [ -n "$schemad_pid" ]; then
    kill -TERM "$schemad_pid" 2>/dev/null
    wait "$schemad_pid" 2>/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT
prefix=$work/prefix

# ------------------------------------------------------------ 1. install
cmake --install "$SCHEMAD_BUILD_DIR" --prefix "$prefix" >"$work/log" 2>&1 ||
  fail "cmake --install $SCHEMAD_BUILD_DIR --prefix $prefix"
for file in include/schemad/client.h include/schemad/mocks/mock_client_connection.h bin/schemad bin/schemactl; do
  [ -f "$prefix/$file" ] || fail "cmake --install did not install $file"
done
config=$(find "$prefix" -name schemadConfig.cmake)
pc=$(find "$prefix" -name schemad-client.pc)
[ -n "$config" ] && [ -f "$(dirname "$config")/schemadConfigVersion.cmake" ] ||
  fail "cmake --install did not install schemadConfig.cmake and schemadConfigVersion.cmake"
[ -n "$pc" ] || fail "cmake --install did not install schemad-client.pc"
[ -n "$(find "$prefix" -name libschemad_client.a)" ] || fail "no libschemad_client.a installed"
pass "installed header, libraries, CMake package and pkg-config file ($(elapsed))"

# ------------------------------------------ 2. find_package from outside
# Only the prefix: no package registry, nothing of the source or build tree.
cmake -S "$src/tests/consumer" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
  -DSCHEMAD_EXAMPLES_DIR="$src/client/examples" >"$work/log" 2>&1 ||
  fail "configure of tests/consumer against $prefix"
grep -qx "schemad_DIR:PATH=$(dirname "$config")" "$work/build/CMakeCache.txt" ||
  fail "tests/consumer found schemad elsewhere than $prefix: $(grep schemad_DIR "$work/build/CMakeCache.txt")"
pass "tests/consumer configured with find_package(schemad CONFIG REQUIRED) ($(elapsed))"
cmake --build "$work/build" -j 2 >"$work/log" 2>&1 || fail "build of client/examples against $prefix"
example=$work/build/control_layer_main
[ -x "$example" ] || fail "no control_layer_main built"
pass "client/examples/*.cc built against the installed package ($(elapsed))"
startup_test=$work/build/control_layer_startup_test
[ -x "$startup_test" ] || fail "no control_layer_startup_test built"
"$startup_test" >"$work/log" 2>&1 || fail "control_layer_startup_test: $(tail -20 "$work/log")"
grep -q '^\[  PASSED  \] 2 tests' "$work/log" ||
  fail "control_layer_startup_test did not pass its 2 tests: $(tail -5 "$work/log")"
pass "the example's start-up test ran on the installed mock header (schemad/mocks) ($(elapsed))"

# ----------------------------------------------------------- 3. pkg-config
pc_flags=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --cflags --libs schemad-client 2>"$work/log") ||
  fail "pkg-config --cflags --libs schemad-client"
# shellcheck disable=SC2086  # the flags are words
"${CXX:-c++}" -std=c++17 -Wall -Wextra -Werror "$src/tests/consumer/pkg_config_client.cc" \
  -o "$work/pkg_config_client" $pc_flags >"$work/log" 2>&1 ||
  fail "compiling a one-file program with: $pc_flags"
pass "one-file program built with pkg-config alone ($(elapsed))"

# ------------------------------------------------- 4. against a real schemad
admin=$(bash "$src/tests/testing/pg_cluster.sh" dsn "$SCHEMAD_TEST_PG_DIR")
database=consumer_$$_$RANDOM
dsn=${admin%/postgres}/$database
"$psql" -X -q "$admin" -c "CREATE DATABASE $database" >"$work/log" 2>&1 ||
  fail "CREATE DATABASE $database"
mkdir -p "$work/set"
printf -- '-- revision: r1\n\n-- +upgrade\nCREATE TABLE public.r1 (id int);\n\n-- +downgrade\nDROP TABLE public.r1;\n' >"$work/set/r1.sql"
printf -- '-- revision: r2\n-- revises: r1\n\n-- +upgrade\nCREATE TABLE public.r2 (id int);\n\n-- +downgrade\nDROP TABLE public.r2;\n' >"$work/set/r2.sql"
(umask 077 && echo "$dsn" >"$work/dsn") # schemad refuses secret files others can read
cat >"$work/schemad.yaml" <<YAML
listen: 127.0.0.1:0
migration_sets: [{name: consumer, directory: set}]
databases: [{name: site-a, migration_set: consumer, dsn_file: dsn}]
YAML
"$prefix/bin/schemad" --config "$work/schemad.yaml" --log-level warn >"$work/out" 2>"$work/err" &
schemad_pid=$!
address=$(schemad_address "$work/out" "$schemad_pid" 10)
[ -n "$address" ] || fail "the installed schemad did not start: $(cat "$work/err")"

"$work/pkg_config_client" "$address" site-a >"$work/status" 2>"$work/log" ||
  fail "pkg_config_client $address site-a: $(cat "$work/log")"
[ "$(cat "$work/status")" = behind ] || fail "pkg_config_client before: '$(cat "$work/status")', want behind"
"$example" --server "$address" --database site-a --deadline-seconds 60 >"$work/log" 2>&1 ||
  fail "control_layer_main --database site-a exited $?"
grep -q "database site-a is at head" "$work/log" || fail "control_layer_main printed: $(cat "$work/log")"
rows=$("$psql" -X -qAt "$dsn" -c 'SELECT string_agg(version_num, $$,$$) FROM public.alembic_version')
[ "$rows" = r2 ] || fail "alembic_version after control_layer_main: '$rows', want r2"
"$work/pkg_config_client" "$address" site-a >"$work/status" 2>"$work/log" ||
  fail "pkg_config_client $address site-a: $(cat "$work/log")"
[ "$(cat "$work/status")" = at-head ] || fail "pkg_config_client after: '$(cat "$work/status")', want at-head"
"$example" --server "$address" --database site-x --deadline-seconds 60 >"$work/log" 2>&1
status=$?
[ "$status" = 1 ] || fail "control_layer_main --database site-x exited $status, want 1"
grep -q "NOT_FOUND.*site-x" "$work/log" || fail "control_layer_main --database site-x printed: $(cat "$work/log")"
pass "against the installed schemad: example to head (r2), unknown database refused, status read ($(elapsed))"
