#!/usr/bin/env bash
# Builds the container image from deploy/Dockerfile with buildah (no Docker
# daemon needed) and checks it by running it (docs/deploy.md). Run as root
# from anywhere; CI runs it after tests/run (.ci/run).
#
#   apt-get install -y buildah debootstrap
#   deploy/image/build.sh                  # build and check schemad:VERSION
#   deploy/image/build.sh --check-only     # check the image built before
#   SCHEMAD_IMAGE_ARCHIVE=/tmp/schemad.tar deploy/image/build.sh
#                                          # ... and write a docker-archive
#                                          # (`docker load -i /tmp/schemad.tar`)
#
# The Dockerfile starts FROM debian:12. When that image cannot be pulled
# (no registry reachable, as on CI's machines), the base is made here the
# way Debian's official image is: debootstrap --variant=minbase bookworm
# from the Debian mirror ($SCHEMAD_DEBIAN_MIRROR, default deb.debian.org),
# with bookworm, bookworm-updates and bookworm-security as apt sources, and
# committed locally as docker.io/library/debian:12.
#
# The check, on the image as built (buildah run, as the image's own user):
#   - `schemactl --version` and `schemad --version` through the entrypoint;
#   - `schemad --check-config` on a configuration that serves the shipped
#     MODAX revisions (/migrations/modax), and a broken one refused;
#   - the image's metadata: user 10001:10001, the entrypoint, port 50051,
#     the HEALTHCHECK (schemactl ... health), the default command;
#   - the runtime stage holds no compiler, no sudo, no PostgreSQL server,
#     no sources and no build tree;
#   - the entrypoint refuses an unknown command (exit 2);
#   - against a throwaway PostgreSQL on this host: `schemactl upgrade heads`
#     from the image brings a MODAX database to head (the one-shot migration
#     service), then schemad serves from the image's default command, answers
#     its HEALTHCHECK and reports the database at head, and stops cleanly on
#     SIGTERM.
# Each step prints "ok: ..." or stops with "FAIL: ..." and exit 1.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
ok() { echo "ok: $*"; }
[ "$(id -u)" -eq 0 ] || fail "deploy/image/build.sh runs buildah as root (chroot isolation)"
for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || fail "needs $tool: apt-get install -y buildah debootstrap"
done

version=$(sed -n 's/^project(schemad VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
[ -n "$version" ] || fail "no version in CMakeLists.txt's project()"
image=localhost/schemad:$version
base=docker.io/library/debian:12
mirror=${SCHEMAD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# chroot isolation: no user namespace or runc needed, which a CI container
# or VM may not offer; the storage driver stays buildah's default.
export BUILDAH_ISOLATION=chroot
work=$(mktemp -d /var/tmp/schemad-image.XXXXXX)
chmod 711 "$work" # the throwaway PostgreSQL below runs as `postgres` in $work/pg
containers=()
cleanup() {
  for c in "${containers[@]}"; do buildah rm "$c" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
start=$(date +%s)
elapsed() { echo "$(($(date +%s) - start)) s"; }

# buildah's default storage (overlay) where the kernel allows it, else vfs.
if ! probe=$(buildah from scratch 2>"$work/probe.log"); then
  export STORAGE_DRIVER=vfs
  probe=$(buildah from scratch 2>>"$work/probe.log") ||
    fail "buildah cannot make a container here (overlay, then vfs): $(tail -2 "$work/probe.log")"
  echo "(overlay storage refused: $(head -1 "$work/probe.log"); using vfs)"
fi
buildah rm "$probe" >/dev/null

# ------------------------------------------------------------ 1. base image
if buildah inspect --type image "$base" >/dev/null 2>&1; then
  ok "base $base present ($(elapsed))"
elif timeout 60 buildah pull --quiet "$base" >"$work/pull.log" 2>&1; then
  ok "base $base pulled ($(elapsed))"
else
  echo "($base cannot be pulled: $(tail -1 "$work/pull.log"); making it with debootstrap)"
  rootfs=$work/rootfs
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    fail "debootstrap bookworm from $mirror: $(tail -5 "$work/debootstrap.log")"
  # Debian's official image: deb822 sources with updates and security, no
  # package lists or caches kept.
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${SCHEMAD_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
  c=$(buildah from scratch)
  containers+=("$c")
  buildah copy --quiet "$c" "$rootfs" / >/dev/null || fail "buildah copy of the debootstrap rootfs"
  buildah config --cmd '["bash"]' --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --label "org.opencontainers.image.description=debian bookworm minbase (debootstrap, $mirror)" "$c"
  buildah commit --quiet --rm "$c" "$base" >/dev/null || fail "buildah commit $base"
  containers=()
  rm -rf "$rootfs"
  ok "base $base made with debootstrap from $mirror ($(elapsed))"
fi

# ------------------------------------------------------------ 2. the image
if [ "${1:-}" = --check-only ]; then
  buildah inspect --type image "$image" >/dev/null 2>&1 || fail "--check-only: no image $image yet"
  ok "checking the image built before ($image)"
else
  # --format docker keeps the HEALTHCHECK (the OCI format has no such field).
  if ! buildah bud --pull=never --format docker --layers=false -f deploy/Dockerfile -t "$image" . \
    >"$work/bud.log" 2>&1; then
    tail -40 "$work/bud.log" >&2
    fail "buildah bud -f deploy/Dockerfile (last lines above)"
  fi
  ok "built $image from deploy/Dockerfile ($(elapsed))"
fi

# ------------------------------------------------------------ 3. the check
buildah inspect --type image "$image" >"$work/inspect.json" || fail "buildah inspect $image"
problems=$(python3 - "$work/inspect.json" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))["Docker"]["config"]
want = {
    "User": "10001:10001",
    "Entrypoint": ["/usr/local/bin/schemad-entrypoint"],
    "Cmd": ["schemad", "--config", "/etc/schemad/schemad.yaml"],
}
for key, value in want.items():
    if config.get(key) != value:
        print(f"{key} is {config.get(key)!r}, want {value!r}")
if "50051/tcp" not in (config.get("ExposedPorts") or {}):
    print(f"port 50051 not exposed: {config.get('ExposedPorts')!r}")
test = (config.get("Healthcheck") or {}).get("Test") or []
if test[:2] != ["CMD", "schemactl"] or test[-1] != "health":
    print(f"HEALTHCHECK is {test!r}, want schemactl ... health")
PY
) || fail "reading $image's metadata"
[ -z "$problems" ] || fail "image metadata: $problems"
ok "metadata: user 10001:10001, entrypoint, default command, port 50051, HEALTHCHECK schemactl health"

c=$(buildah from --pull=never "$image")
containers+=("$c")
# Runs the image's entrypoint with arguments, as `docker run IMAGE ARGS` would.
run_image() { buildah run --isolation chroot "$c" -- /usr/local/bin/schemad-entrypoint "$@"; }

out=$(run_image schemactl --version 2>&1) || fail "schemactl --version in the image: $out"
[ "$out" = "schemactl $version" ] || fail "schemactl --version in the image printed '$out'"
out=$(run_image schemad --version 2>&1) || fail "schemad --version in the image: $out"
[[ "$out" == *"$version"* ]] || fail "schemad --version in the image printed '$out'"
out=$(buildah run --isolation chroot "$c" -- id -u 2>&1)
[ "$out" = 10001 ] || fail "the image runs as uid '$out', want 10001"
ok "schemactl --version and schemad --version run in the image, as uid 10001"

mnt=$(buildah mount "$c")
mkdir -p "$mnt/etc/schemad"
cat >"$mnt/etc/schemad/schemad.yaml" <<'YAML'
listen: 127.0.0.1:50051
migration_sets: [{name: modax, directory: /migrations/modax}]
databases: [{name: site-a, migration_set: modax, dsn_env: SITE_A_DSN}]
YAML
sed 's/directory: \/migrations\/modax/directory: \/migrations\/nowhere/' \
  "$mnt/etc/schemad/schemad.yaml" >"$mnt/etc/schemad/broken.yaml"
out=$(buildah run --isolation chroot --env SITE_A_DSN=postgresql://u@db/site_a "$c" -- \
  /usr/local/bin/schemad-entrypoint --check-config --config /etc/schemad/schemad.yaml 2>&1) ||
  fail "schemad --check-config in the image: $out"
[[ "$out" == *"configuration OK"* ]] || fail "schemad --check-config printed '$out'"
if out=$(buildah run --isolation chroot --env SITE_A_DSN=postgresql://u@db/site_a "$c" -- \
  /usr/local/bin/schemad-entrypoint --check-config --config /etc/schemad/broken.yaml 2>&1); then
  fail "schemad --check-config accepted a migration set directory that does not exist"
fi
[[ "$out" == *"/migrations/nowhere"* ]] || fail "the broken configuration's error does not name the directory: $out"
ok "schemad --check-config accepts the shipped MODAX set and refuses a broken configuration, naming it"

for absent in usr/bin/c++ usr/bin/gcc usr/bin/cmake usr/bin/sudo usr/lib/postgresql/15/bin/postgres \
  src usr/include/pqxx; do
  [ ! -e "$mnt/$absent" ] || fail "the runtime image holds /$absent"
done
[ -d "$mnt/migrations/modax" ] || fail "no /migrations/modax in the image"
# Build files, and keys or certificates other than the CA bundle's.
stray=$(find "$mnt" -xdev \( -path "$mnt/etc/ssl/certs" -o -path "$mnt/usr/share/ca-certificates" \
  -o -path "$mnt/usr/share/doc" \) -prune -o -type f \( -name CMakeCache.txt -o -name '*.o' \
  -o -name '*.pem' -o -name '*.key' -o -name '*.crt' \) -print | head -3)
[ -z "$stray" ] || fail "build or key files in the image: ${stray//$mnt/}"
ok "runtime stage: no compiler, cmake, sudo, PostgreSQL server, sources, build tree or keys"
buildah umount "$c" >/dev/null

set +e
out=$(run_image psql 2>&1)
status=$?
set -e
[ "$status" = 2 ] && [[ "$out" == *"expected 'schemad ...', 'schemactl ...'"* ]] ||
  fail "the entrypoint ran 'psql' (exit $status): $out"
ok "the entrypoint refuses a command other than schemad or schemactl (exit 2)"

# ------------------------------------------- 4. the image does its job
# Against a throwaway PostgreSQL on this host (chroot isolation shares the
# host's network): the guide's one-shot migration service (`schemactl
# upgrade heads` on the shipped MODAX revisions), then schemad serving from
# the image's default command, answering its own HEALTHCHECK and reporting
# the database at head.
pg=$work/pg
bash tests/testing/pg_cluster.sh start "$pg" >"$work/pg.log" 2>&1 ||
  fail "throwaway PostgreSQL: $(tail -5 "$work/pg.log")"
stop_pg() { bash tests/testing/pg_cluster.sh stop "$pg" >/dev/null 2>&1 || true; }
trap 'stop_pg; cleanup' EXIT
admin=$(bash tests/testing/pg_cluster.sh dsn "$pg")
site_dsn=${admin%/postgres}/image_check
/usr/lib/postgresql/15/bin/psql -X -q "$admin" -c "CREATE DATABASE image_check" >/dev/null ||
  fail "CREATE DATABASE image_check"
out=$(buildah run --isolation chroot --env SCHEMAD_DSN="$site_dsn" "$c" -- \
  /usr/local/bin/schemad-entrypoint schemactl --dir /migrations/modax upgrade heads 2>&1) ||
  fail "schemactl upgrade heads from the image: $out"
heads=$(buildah run --isolation chroot "$c" -- schemactl --dir /migrations/modax heads 2>&1 |
  awk '{print $1}')
rows=$(/usr/lib/postgresql/15/bin/psql -X -qAt "$site_dsn" -c 'SELECT version_num FROM public.alembic_version')
[ -n "$rows" ] && [ "$rows" = "$heads" ] ||
  fail "after the image's schemactl upgrade heads: alembic_version '$rows', heads '$heads'"
ok "one-shot migration from the image: MODAX site at head ($rows)"

mnt=$(buildah mount "$c")
printf 'listen: 127.0.0.1:0\nmigration_sets: [{name: modax, directory: /migrations/modax}]\ndatabases: [{name: site-a, migration_set: modax, dsn_env: SITE_A_DSN}]\n' \
  >"$mnt/etc/schemad/schemad.yaml"
buildah umount "$c" >/dev/null
buildah run --isolation chroot --env SITE_A_DSN="$site_dsn" "$c" -- /usr/local/bin/schemad-entrypoint \
  >"$work/serve.out" 2>"$work/serve.err" &
serve_pid=$!
source "$root/tests/testing/schemad_address.sh"
address=$(schemad_address "$work/serve.out" "$serve_pid" 30)
[ -n "$address" ] || fail "schemad from the image's default command did not serve: $(tail -5 "$work/serve.err")"
# The first process below PID whose command name is NAME.
descendant_named() {
  local child
  for child in $(pgrep -P "$1"); do
    if [ "$(cat "/proc/$child/comm" 2>/dev/null)" = "$2" ]; then
      echo "$child"
      return 0
    fi
    descendant_named "$child" "$2" && return 0
  done
  return 1
}
# SIGTERM to schemad itself, as a container runtime sends it to PID 1
# (buildah run does not pass its own signals on).
stop_serving() {
  local schemad_pid
  schemad_pid=$(descendant_named "$serve_pid" schemad) && kill -TERM "$schemad_pid" 2>/dev/null
  wait "$serve_pid" 2>/dev/null || true
}
trap 'stop_serving; stop_pg; cleanup' EXIT
out=$(buildah run --isolation chroot "$c" -- schemactl --server "$address" --timeout 5s health 2>&1) ||
  fail "the HEALTHCHECK command against the image's schemad: $out"
[ "$out" = SERVING ] || fail "health printed '$out'"
out=$(buildah run --isolation chroot "$c" -- schemactl --server "$address" --timeout 10s dbs 2>&1) ||
  fail "schemactl dbs through the image's schemad: $out"
[[ "$out" == "site-a  at head"* ]] || fail "schemactl dbs printed: $out"
stop_serving
grep -q "shut down clean=true" "$work/serve.err" ||
  fail "schemad did not shut down cleanly on SIGTERM: $(tail -3 "$work/serve.err")"
ok "schemad serves from the default command: HEALTHCHECK SERVING, site-a at head, clean SIGTERM"

if [ -n "${SCHEMAD_IMAGE_ARCHIVE:-}" ]; then
  buildah push --quiet "$image" "docker-archive:$SCHEMAD_IMAGE_ARCHIVE:schemad:$version" ||
    fail "buildah push to $SCHEMAD_IMAGE_ARCHIVE"
  ok "wrote $SCHEMAD_IMAGE_ARCHIVE (docker load -i $SCHEMAD_IMAGE_ARCHIVE)"
fi
size=$(buildah images --format '{{.Size}}' "$image" 2>/dev/null | head -1 || true)
echo "image-check: $image${size:+ ($size)} built and checked in $(elapsed)"
