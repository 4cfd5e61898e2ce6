#!/usr/bin/env bash
# deploy/image/runtime-packages.sh on the built schemad and schemactl: the
# image's runtime package list holds the libraries they link (gRPC, libpq,
# libpqxx, yaml-cpp, libsystemd, libpg_query) and no -dev, test or server package.
#   tests/deploy/runtime_packages_test.sh SCHEMAD SCHEMACTL
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
list=$(bash "$root/deploy/image/runtime-packages.sh" "$@")
status=0
for want in libgrpc++1.51 libprotobuf32 libpq5 libpqxx-6.4 libyaml-cpp0.7 libsystemd0 libabsl20220623 libpg-query1504.0; do
  grep -qx "$want" <<<"$list" || { echo "runtime_packages_test: FAIL: $want not in the list" >&2; status=1; }
done
if bad=$(grep -E -- '-dev$|^postgresql|gtest|benchmark|^sudo$' <<<"$list"); then
  echo "runtime_packages_test: FAIL: build or test packages in the list: $bad" >&2
  status=1
fi
[ "$status" -eq 0 ] && echo "runtime_packages_test: $(wc -l <<<"$list") packages, as expected"
exit "$status"
