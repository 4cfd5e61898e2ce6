#!/usr/bin/env bash
# The Debian packages of a build (cmake/SchemadPackaging.cmake), checked
# without installing them into this machine:
#
#   SCHEMAD_BUILD_DIR=build/default bash tests/packaging/deb_test.sh
#
#   1. `cpack -G DEB` makes schemad, schemactl and libschemad-client-dev.
#   2. Their control data: names, dependencies (dpkg-shlibdeps' for the
#      binaries), schemad's conffile and postinst.
#   3. Their files, unpacked (dpkg-deb -x) into a temporary root: the binaries
#      run from there (`schemactl --version`, `schemad --version`, `schemad
#      --check-config` on a small configuration, and on a bad one: exit 2
#      naming the file); the unit runs /usr/bin/schemad as user schemad; the
#      dev package's CMake package configures tests/consumer and its .pc file
#      gives flags inside the unpacked root.
# deploy/debian/install-check.sh is the install path itself (dpkg -i into a
# machine, for CI).
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/../testing/check.sh"

[ -n "${SCHEMAD_BUILD_DIR:-}" ] && [ -f "$SCHEMAD_BUILD_DIR/CPackConfig.cmake" ] ||
  fail "SCHEMAD_BUILD_DIR ('${SCHEMAD_BUILD_DIR:-}') is not a configured schemad build with CPack"
src=${SCHEMAD_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
version=$(sed -n 's/^set(CPACK_PACKAGE_VERSION "\(.*\)")$/\1/p' "$SCHEMAD_BUILD_DIR/CPackConfig.cmake")
[ -n "$version" ] || fail "no CPACK_PACKAGE_VERSION in $SCHEMAD_BUILD_DIR/CPackConfig.cmake"
work=$(mktemp -d /tmp/schemad-deb.XXXXXX) || fail "mktemp"
trap 'rm -rf "$work"' EXIT

# ------------------------------------------------------------- 1. build
start=$(date +%s)
cpack -G DEB --config "$SCHEMAD_BUILD_DIR/CPackConfig.cmake" -B "$work/out" >"$work/log" 2>&1 ||
  fail "cpack -G DEB"
arch=$(dpkg --print-architecture)
schemad_deb=$work/out/schemad_${version}_$arch.deb
schemactl_deb=$work/out/schemactl_${version}_$arch.deb
dev_deb=$work/out/libschemad-client-dev_${version}_$arch.deb
for deb in "$schemad_deb" "$schemactl_deb" "$dev_deb"; do
  [ -f "$deb" ] || fail "cpack did not make $(basename "$deb"): $(ls "$work/out")"
done
pass "cpack made schemad, schemactl and libschemad-client-dev $version ($(($(date +%s) - start)) s)"

# ------------------------------------------------------- 2. control data
field() { dpkg-deb -f "$1" "$2"; }
[ "$(field "$schemad_deb" Package)" = schemad ] || fail "schemad's Package: $(field "$schemad_deb" Package)"
[ "$(field "$dev_deb" Package)" = libschemad-client-dev ] || fail "dev Package: $(field "$dev_deb" Package)"
for deb in "$schemad_deb" "$schemactl_deb"; do
  depends=$(field "$deb" Depends)
  for lib in libc6 libpq5 libssl3; do
    grep -q "$lib" <<<"$depends" || fail "$(basename "$deb") Depends lacks $lib: $depends"
  done
  # SCHEMAD_STATIC_DEPS=1 links these in (cmake/SchemadStaticDeps.cmake).
  for lib in libgrpc++1.51 libprotobuf32 libabsl20220623 libpqxx-6.4 libpg-query1504.0; do
    if [ "${SCHEMAD_STATIC_DEPS:-0}" = 1 ]; then
      ! grep -q "$lib" <<<"$depends" || fail "$(basename "$deb") Depends on $lib, linked in: $depends"
    elif [ "$lib" != libabsl20220623 ] && [ "$lib" != libpqxx-6.4 ]; then
      grep -q "$lib" <<<"$depends" || fail "$(basename "$deb") Depends lacks $lib: $depends"
    fi
  done
done
grep -q "libgrpc++-dev" <<<"$(field "$dev_deb" Depends)" ||
  fail "libschemad-client-dev Depends lacks libgrpc++-dev: $(field "$dev_deb" Depends)"
dpkg-deb -e "$schemad_deb" "$work/control" || fail "dpkg-deb -e schemad"
[ "$(cat "$work/control/conffiles")" = /etc/schemad/schemad.yaml ] ||
  fail "schemad conffiles: $(cat "$work/control/conffiles" 2>&1)"
[ -x "$work/control/postinst" ] && sh -n "$work/control/postinst" ||
  fail "schemad's postinst is missing, not executable or not valid sh"
pass "control data: dependencies, conffile /etc/schemad/schemad.yaml, postinst"

# ------------------------------------------------------------ 3. files
root=$work/root
for deb in "$schemad_deb" "$schemactl_deb" "$dev_deb"; do
  dpkg-deb -x "$deb" "$root" || fail "dpkg-deb -x $(basename "$deb")"
done
for file in usr/bin/schemad usr/bin/schemactl lib/systemd/system/schemad.service \
  usr/lib/sysusers.d/schemad.conf usr/lib/tmpfiles.d/schemad.conf etc/schemad/schemad.yaml \
  usr/include/schemad/client.h usr/include/schemad/mocks/mock_client_connection.h \
  usr/share/man/man1/schemactl.1.gz usr/share/bash-completion/completions/schemactl \
  usr/share/zsh/vendor-completions/_schemactl usr/share/fish/vendor_completions.d/schemactl.fish; do
  [ -f "$root/$file" ] || fail "no /$file in the packages"
done
for binary in schemactl schemad; do
  out=$("$root/usr/bin/$binary" --version 2>&1) && grep -qw "$version" <<<"$out" ||
    fail "$binary --version: $out"
done
mkdir -p "$work/conf/set"
printf -- '-- revision: r1\n\n-- +upgrade\nCREATE TABLE public.r1 (id int);\n\n-- +downgrade\nDROP TABLE public.r1;\n' >"$work/conf/set/r1.sql"
(umask 077 && echo "postgresql://app@127.0.0.1:1/site" >"$work/conf/dsn")
cat >"$work/conf/schemad.yaml" <<YAML
listen: 127.0.0.1:50051
migration_sets: [{name: app, directory: set}]
databases: [{name: site-a, migration_set: app, dsn_file: dsn}]
YAML
"$root/usr/bin/schemad" --config "$work/conf/schemad.yaml" --check-config >"$work/log" 2>&1 ||
  fail "schemad --check-config on a good configuration"
sed -i 's/directory: set/directory: nowhere/' "$work/conf/schemad.yaml"
"$root/usr/bin/schemad" --config "$work/conf/schemad.yaml" --check-config >"$work/log" 2>&1
status=$?
[ "$status" = 2 ] && grep -q nowhere "$work/log" ||
  fail "schemad --check-config on a missing directory: exit $status, $(cat "$work/log")"
grep -qx "ExecStart=/usr/bin/schemad --config /etc/schemad/schemad.yaml" \
  "$root/lib/systemd/system/schemad.service" || fail "the unit does not start /usr/bin/schemad"
grep -qx "User=schemad" "$root/lib/systemd/system/schemad.service" || fail "the unit's User"
grep -q "^u schemad " "$root/usr/lib/sysusers.d/schemad.conf" || fail "sysusers.d has no user schemad"
pass "unpacked: binaries run (--version, --check-config good and bad), unit, sysusers, tmpfiles"

cmake -S "$src/tests/consumer" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$root/usr" \
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DSCHEMAD_EXAMPLES_DIR="$src/client/examples" \
  >"$work/log" 2>&1 || fail "find_package(schemad) against the unpacked libschemad-client-dev"
grep -q "^schemad_DIR:PATH=$root/usr/" "$work/consumer/CMakeCache.txt" ||
  fail "tests/consumer found schemad elsewhere: $(grep schemad_DIR "$work/consumer/CMakeCache.txt")"
pc=$(find "$root" -name schemad-client.pc)
flags=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --cflags --libs schemad-client) ||
  fail "pkg-config schemad-client from the unpacked package"
grep -q -- "-I$root/" <<<"$flags" || fail "pkg-config flags outside the package: $flags"
pass "libschemad-client-dev: find_package and pkg-config work from where it is unpacked"
