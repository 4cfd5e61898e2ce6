#!/usr/bin/env bash
# Writes the secrets deploy/compose.yaml mounts, with fresh random tokens:
#   deploy/.secrets/schemad.tokens   schemad's tokens_file (format: compose.tokens.example)
#   deploy/.secrets/migrator.token   the `migrate` service's token (role migrator)
#   deploy/.secrets/reader.token     healthcheck and control layer (role reader)
# Mode 0600, owned by uid/gid 10001 (the image's user), so schemad accepts
# them; chown needs root (run with sudo otherwise). Refuses to overwrite.
set -euo pipefail
dir=$(cd "$(dirname "$0")" && pwd)/.secrets
[ ! -e "$dir" ] || { echo "compose-secrets: $dir exists; remove it to make new tokens" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "compose-secrets: run as root (sudo): the files must belong to uid 10001" >&2; exit 1; }
umask 077
mkdir -p "$dir"
migrator=$(openssl rand -hex 24)
reader=$(openssl rand -hex 24)
printf '# token role name (made by compose-secrets.sh)\n%s migrator compose-migrate\n%s reader compose-control-layer\n' \
  "$migrator" "$reader" > "$dir/schemad.tokens"
printf '%s\n' "$migrator" > "$dir/migrator.token"
printf '%s\n' "$reader" > "$dir/reader.token"
chown -R 10001:10001 "$dir"
chmod 0700 "$dir"
chmod 0600 "$dir"/*
echo "compose-secrets: wrote $dir (mode 0600, uid 10001)"
