# Shared by the shell tests (sourced): one result line per check.
#   fail MESSAGE  "FAIL: MESSAGE" on stderr, then the last 40 lines of
#                 $work/log when the test keeps one, and exit 1
#   pass MESSAGE  "ok: MESSAGE"
fail() {
  echo "FAIL: $*" >&2
  [ -n "${work:-}" ] && [ -f "$work/log" ] && tail -n 40 "$work/log" >&2
  exit 1
}
pass() {
  echo "ok: $*"
}
