#!/usr/bin/env bash
# Runs schemad's libFuzzer targets (built by the `fuzz` preset, build/fuzz).
#
#   tests/fuzz/run.sh                          # every target, 20 s each
#   tests/fuzz/run.sh --seconds 3600 sql_splitter_fuzz
#   tests/fuzz/run.sh --seeds-only             # each seed once: a regression check
#   tests/fuzz/run.sh --seconds 600 -- -jobs=2 -workers=2   # extra libFuzzer flags
#
# Targets are the tests/fuzz/*_fuzz.cc. Fuzzing reads the seeds in
# tests/fuzz/corpus/TARGET/ (never written) and keeps what it finds in
# BUILD/fuzz-corpus/TARGET/, so a second run continues where the first
# stopped; a crash, leak, timeout (-timeout, 10 s per input) or memory blow-up
# (-rss_limit_mb) saves the input as BUILD/fuzz-artifacts/TARGET-crash-... and
# fails the run. Reproduce one with `BUILD/tests/fuzz/TARGET FILE`. Promote a
# find to a seed by copying it into tests/fuzz/corpus/TARGET/ with the unit
# test that shows its fix.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

build_dir=$root/build/fuzz
seconds=20
seeds_only=0
targets=()
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build_dir=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --seeds-only) seeds_only=1; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [ "${#targets[@]}" -eq 0 ]; then
  for source in "$here"/*_fuzz.cc; do
    targets+=("$(basename "$source" .cc)")
  done
fi

# Leaks fail a run; UBSan stops at the first report with a stack.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

status=0
for target in "${targets[@]}"; do
  binary=$build_dir/tests/fuzz/$target
  seeds=$here/corpus/$target
  if [ ! -x "$binary" ]; then
    echo "run.sh: $binary not built (cmake --preset fuzz && cmake --build --preset fuzz)" >&2
    exit 2
  fi
  if [ ! -d "$seeds" ] || [ -z "$(ls -A "$seeds")" ]; then
    echo "run.sh: no seeds in $seeds" >&2
    exit 2
  fi
  dict=()
  [ -f "$here/$target.dict" ] && dict=(-dict="$here/$target.dict")
  if [ "$seeds_only" -eq 1 ]; then
    # Each file once, no mutation; libFuzzer stops at the first one that fails.
    count=$(find "$seeds" -type f | wc -l)
    log=$(mktemp)
    if find "$seeds" -type f -print0 | sort -z | xargs -0 "$binary" "${extra[@]}" >"$log" 2>&1; then
      echo "== $target: $count seeds pass"
    else
      tail -n 60 "$log" >&2
      echo "FAILED: $target on a seed (the last 'Running:' line above names it)" >&2
      status=1
    fi
    rm -f "$log"
    continue
  fi
  work=$build_dir/fuzz-corpus/$target
  artifacts=$build_dir/fuzz-artifacts
  mkdir -p "$work" "$artifacts"
  echo "== $target: fuzzing for ${seconds}s (corpus $work, seeds $seeds)"
  if ! "$binary" "${dict[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -max_len=16384 -print_final_stats=1 -artifact_prefix="$artifacts/$target-" \
      "${extra[@]}" "$work" "$seeds"; then
    echo "FAILED: $target; inputs in $artifacts/ (reproduce: $binary FILE)" >&2
    status=1
  fi
done
exit "$status"
