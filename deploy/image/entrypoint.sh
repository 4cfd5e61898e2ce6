#!/bin/sh
# The image's entrypoint: `schemad ...` or `schemactl ...` runs that program
# (exec, so it is PID 1 and gets SIGTERM); anything else starting with a dash
# is taken as schemad's flags (`docker run IMAGE --check-config --config F`).
set -eu
case "${1:-}" in
  schemad | schemactl) exec "$@" ;;
  -*) exec schemad "$@" ;;
  "") exec schemad --config /etc/schemad/schemad.yaml ;;
  *) echo "schemad image: expected 'schemad ...', 'schemactl ...' or schemad flags, got '$1'" >&2
     exit 2 ;;
esac
