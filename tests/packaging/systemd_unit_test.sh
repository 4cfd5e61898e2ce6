#!/usr/bin/env bash
# Checks deploy/systemd/schemad.service offline (no running systemd needed):
#   1. `systemd-analyze verify` accepts it (ExecStart pointed at the built
#      binary, as the package points it at /usr/bin/schemad);
#   2. it is Type=notify (schemad sends READY=1/STOPPING=1; the notify
#      protocol itself is tested in server_pgtest,
#      ServerTest.TellsSystemdWhenReadyAndWhenStopping), restarts on failure
#      but not on a configuration error (exit 2), names no DSN;
#   3. `systemd-analyze security` rates its exposure at most 2.0 ("OK"):
#      measured 1.2 (what remains: network access, which schemad needs).
# Environment: SCHEMAD_BINARY (the built schemad), SCHEMAD_SOURCE_DIR.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../testing/check.sh"
src=${SCHEMAD_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
unit=$src/deploy/systemd/schemad.service
[ -x "${SCHEMAD_BINARY:-}" ] || fail "SCHEMAD_BINARY ('${SCHEMAD_BINARY:-}') is not an executable"
command -v systemd-analyze >/dev/null || fail "systemd-analyze not installed (deploy/install-deps.sh installs systemd)"
work=$(mktemp -d /tmp/schemad-unit.XXXXXX)
trap 'rm -rf "$work"' EXIT
sed "s|/usr/local/bin/schemad|$SCHEMAD_BINARY|" "$unit" >"$work/schemad.service"

systemd-analyze verify --man=no "$work/schemad.service" >"$work/verify.log" 2>&1 ||
  fail "systemd-analyze verify: $(cat "$work/verify.log")"
echo "ok: systemd-analyze verify"

for line in 'Type=notify' 'NotifyAccess=main' 'Restart=on-failure' 'RestartPreventExitStatus=2' \
  'User=schemad' 'NoNewPrivileges=true' 'ProtectSystem=strict' 'CapabilityBoundingSet=' \
  'SystemCallFilter=@system-service' 'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX'; do
  grep -qx -- "$line" "$unit" || fail "$unit: no line '$line'"
done
if grep -Eiq '^[^#]*postgres(ql)?://' "$unit"; then
  fail "$unit: a DSN in the unit (use LoadCredential or EnvironmentFile)"
fi
echo "ok: Type=notify, restart policy, hardening directives, no DSN"

# --threshold is the exposure level times 10; above it the command fails.
if ! systemd-analyze security --offline=true --threshold=20 "$work/schemad.service" \
  >"$work/security.log" 2>&1; then
  cat "$work/security.log" >&2
  fail "systemd-analyze security: exposure above 2.0"
fi
echo "ok: $(grep 'Overall exposure level' "$work/security.log")"
