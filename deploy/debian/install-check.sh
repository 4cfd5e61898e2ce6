#!/usr/bin/env bash
# Installs the Debian packages of a build into THIS machine and checks them
# from their installed paths (for CI, on a throwaway machine; as root):
#
#   deploy/debian/install-check.sh build/default
#
# cpack -G DEB, then `apt-get install` of the three .deb files (dpkg -i with
# their dependencies from Debian), then: the schemad user exists,
# /etc/schemad is root:schemad 0750, /usr/bin/schemactl --version, its man
# page and completions in place (bash's completing a verb),
# /usr/bin/schemad --check-config on a small configuration, find_package and
# pkg-config of the SDK from /usr. Leaves the packages installed.
# tests/packaging/deb_test.sh checks the same packages without installing them.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:?usage: install-check.sh BUILD_DIR}" && pwd)
work=$(mktemp -d /tmp/schemad-install-check.XXXXXX)
trap 'rm -rf "$work"' EXIT

cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work/out" >"$work/cpack.log"
apt-get install -y "$work"/out/*.deb
id schemad
[ "$(stat -c '%U:%G %a' /etc/schemad)" = "root:schemad 750" ]
/usr/bin/schemactl --version
# schemactl(1) and the shell completions, where man and the shells look.
[ -s /usr/share/man/man1/schemactl.1.gz ]
[ -s /usr/share/zsh/vendor-completions/_schemactl ]
[ -s /usr/share/fish/vendor_completions.d/schemactl.fish ]
bash -c 'source /usr/share/bash-completion/completions/schemactl
  COMP_WORDS=(schemactl upg); COMP_CWORD=1; _schemactl; [ "${COMPREPLY[*]}" = upgrade ]'
mkdir -p "$work/conf/set"
printf -- '-- revision: r1\n\n-- +upgrade\nCREATE TABLE public.r1 (id int);\n\n-- +downgrade\nDROP TABLE public.r1;\n' >"$work/conf/set/r1.sql"
(umask 077 && echo "postgresql://app@127.0.0.1:1/site" >"$work/conf/dsn")
printf 'listen: 127.0.0.1:50051\nmigration_sets: [{name: app, directory: set}]\ndatabases: [{name: site-a, migration_set: app, dsn_file: dsn}]\n' >"$work/conf/schemad.yaml"
/usr/bin/schemad --config "$work/conf/schemad.yaml" --check-config
cmake -S "$root/tests/consumer" -B "$work/consumer" -DSCHEMAD_EXAMPLES_DIR="$root/client/examples" >/dev/null
cmake --build "$work/consumer"
pkg-config --cflags --libs schemad-client
echo "install-check: schemad, schemactl and libschemad-client-dev installed and working"
