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

# Every library the binaries load, once.
libs=()
for binary in "$@"; do
  [ -x "$binary" ] || { echo "$0: $binary: not an executable" >&2; exit 1; }
  if ldd "$binary" | grep -q 'not found'; then
    echo "$0: $binary: $(ldd "$binary" | grep 'not found' | head -1)" >&2
    exit 1
  fi
  while read -r lib; do libs+=("$lib"); done \
    < <(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
done
mapfile -t libs < <(printf '%s\n' "${libs[@]}" | sort -u)

# dpkg records the path a package ships (/lib/... or /usr/lib/...); on a
# merged-/usr system ldd may report the other spelling, so each library is
# looked up under every spelling, all in one dpkg-query (one read of its
# database instead of one per library).
spellings() {
  local real
  real=$(readlink -f "$1")
  printf '%s\n' "$1" "$real" "${real#/usr}" "/usr$1" | sort -u
}
owners=$(for lib in "${libs[@]}"; do spellings "$lib"; done | sort -u | xargs dpkg-query -S 2>/dev/null || true)

packages=()
for lib in "${libs[@]}"; do
  pkg=$(spellings "$lib" | awk -v owners="$owners" '
    BEGIN { n = split(owners, lines, "\n")
            for (i = 1; i <= n; i++) { p = index(lines[i], ": "); if (p) owner[substr(lines[i], p + 2)] = substr(lines[i], 1, p - 1) } }
    ($0 in owner) { print owner[$0]; exit }')
  [ -n "$pkg" ] || { echo "$0: $lib belongs to no Debian package" >&2; exit 1; }
  packages+=("${pkg%%:*}")
done
printf '%s\n' "${packages[@]}" | sort -u
