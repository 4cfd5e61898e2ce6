# shellcheck shell=bash
# Sourced by the scripts that start a schemad on 127.0.0.1:0 and need its
# address (tests, benchmarks, deploy/run-local.sh, deploy/image/build.sh).
#
# schemad_address FILE PID SECONDS
#   Waits until FILE (schemad's stdout) holds the line "schemad listening on
#   HOST:PORT" and prints HOST:PORT. Prints nothing when process PID exits
#   first or SECONDS pass: the caller checks for "" and says what failed.
schemad_address() {
  local file=$1 pid=$2 deadline=$((SECONDS + $3)) address
  while :; do
    address=$(sed -n 's/^schemad listening on //p' "$file" 2>/dev/null | head -n1)
    if [ -n "$address" ]; then
      echo "$address"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 0
    [ "$SECONDS" -lt "$deadline" ] || return 0
    sleep 0.05
  done
}
