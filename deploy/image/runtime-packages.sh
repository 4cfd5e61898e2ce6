#!/usr/bin/env bash
# Prints the Debian packages that hold the shared libraries the given
# binaries load (ldd), one a line, sorted: the container image's runtime
# stage installs exactly these (deploy/Dockerfile), so the list follows the
# link lines in CMake instead of a hand-kept copy. Fails naming the library
# when one belongs to no package (a library built by hand would be missing
# from the image).
#   deploy/image/runtime-packages.sh build/release/service/schemad build/release/client/schemactl
set -euo pipefail
[ "$#" -gt 0 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }

owner() {
  # dpkg records the path a package ships (/lib/... or /usr/lib/...); on a
  # merged-/usr system ldd may report the other spelling, so try both.
  local path=$1 real candidate
  real=$(readlink -f "$path")
  for candidate in "$path" "$real" "${real#/usr}" "/usr${path}"; do
    if out=$(dpkg-query -S "$candidate" 2>/dev/null); then
      echo "${out%%:*}"
      return 0
    fi
  done
  return 1
}

packages=()
for binary in "$@"; do
  [ -x "$binary" ] || { echo "$0: $binary: not an executable" >&2; exit 1; }
  if ldd "$binary" | grep -q 'not found'; then
    echo "$0: $binary: $(ldd "$binary" | grep 'not found' | head -1)" >&2
    exit 1
  fi
  while read -r lib; do
    pkg=$(owner "$lib") || { echo "$0: $binary: $lib belongs to no Debian package" >&2; exit 1; }
    packages+=("$pkg")
  done < <(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
done
printf '%s\n' "${packages[@]}" | sort -u
