#!/usr/bin/env bash
# deploy/image/runtime-packages.sh on the built schemad and schemactl: the
# image's runtime package list holds the libraries they load (libpq, OpenSSL,
# yaml-cpp, libsystemd; and gRPC, protobuf, abseil, libpqxx, libpg_query
# unless SCHEMAD_STATIC_DEPS=1 linked those in, when it must not hold them)
# and no -dev, test or server package; with static dependencies, schemactl
# loads no shared libstdc++.
#   SCHEMAD_STATIC_DEPS=0|1 tests/deploy/runtime_packages_test.sh SCHEMAD SCHEMACTL
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
list=$(bash "$root/deploy/image/runtime-packages.sh" "$@")
status=0
linked_in=(libgrpc++1.51 libgrpc29 libprotobuf32 libpqxx-6.4 libabsl20220623 libpg-query1504.0)
wanted=(libpq5 libssl3 libyaml-cpp0.7 libsystemd0)
unwanted=()
if [ "${SCHEMAD_STATIC_DEPS:-0}" = 1 ]; then
  unwanted=("${linked_in[@]}")
else
  wanted+=(libgrpc++1.51 libprotobuf32 libpqxx-6.4 libabsl20220623 libpg-query1504.0)
fi
for want in "${wanted[@]}"; do
  grep -qx "$want" <<<"$list" || { echo "runtime_packages_test: FAIL: $want not in the list" >&2; status=1; }
done
for unwanted in "${unwanted[@]}"; do
  if grep -qx "$unwanted" <<<"$list"; then
    echo "runtime_packages_test: FAIL: $unwanted in the list, but SCHEMAD_STATIC_DEPS linked it in" >&2
    status=1
  fi
done
# With static dependencies schemactl links libstdc++ in as well (client/
# CMakeLists.txt): then nothing it loads may need the shared one, or two
# copies of the C++ runtime would meet in one process.
if [ "${SCHEMAD_STATIC_DEPS:-0}" = 1 ] && ldd "$2" | grep -q 'libstdc++'; then
  echo "runtime_packages_test: FAIL: $2 loads the shared libstdc++ although it links it in: $(ldd "$2" | grep 'libstdc++')" >&2
  status=1
fi
if bad=$(grep -E -- '-dev$|^postgresql|gtest|benchmark|^sudo$' <<<"$list"); then
  echo "runtime_packages_test: FAIL: build or test packages in the list: $bad" >&2
  status=1
fi
[ "$status" -eq 0 ] && echo "runtime_packages_test: $(wc -l <<<"$list") packages, as expected"
exit "$status"
