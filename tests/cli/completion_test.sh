#!/usr/bin/env bash
# schemactl's completion scripts and man page, as the binary prints them
# (client/cli/help_formats.h):
#   1. bash: the script parses, and completing verbs, a verb's flags, flag
#      values (choices, directories) and positional choices gives the
#      expected words, with global options before the verb skipped;
#   2. zsh and fish: the scripts parse (zsh -n, fish -n); fish's `complete
#      -C` completes verbs, flags and choices;
#   3. the man page renders without a warning (groff -ww) and lists every
#      verb of --help, the exit status and the examples.
#   tests/cli/completion_test.sh SCHEMACTL
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../testing/check.sh"
schemactl=${1:?usage: completion_test.sh SCHEMACTL}
work=$(mktemp -d /tmp/schemactl-completion.XXXXXX) || fail "mktemp"
trap 'rm -rf "$work"' EXIT
export SCHEMACTL_CONFIG=none

# ----------------------------------------------------------------- 1. bash
"$schemactl" completion bash >"$work/schemactl.bash" 2>"$work/log" || fail "completion bash"
bash -n "$work/schemactl.bash" 2>"$work/log" || fail "the bash script does not parse"
mkdir -p "$work/tree/migrations" "$work/tree/mine"
expect_bash() { # WANT WORD...: completing the last WORD gives WANT
  local want=$1 got
  shift
  got=$(cd "$work/tree" && bash -c '
    source "$1"; shift
    COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=()
    _schemactl; printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " "' _ "$work/schemactl.bash" "$@")
  [ "${got% }" = "$want" ] || fail "bash: completing '$*' gave '${got% }', want '$want'"
}
expect_bash "upgrade" schemactl upg
expect_bash "upgrade" schemactl --dir /tmp --json upg
expect_bash "dbs diff downgrade drift" schemactl d
expect_bash "--transaction" schemactl upgrade --tra
expect_bash "per-command per-revision" schemactl upgrade --transaction ""
expect_bash "cancel list watch" schemactl --server h:1 ops ""
expect_bash "migrations mine" schemactl --dir ""
expect_bash "--schema" schemactl revision --sch
expect_bash "bash fish zsh" schemactl completion ""
pass "bash: verbs, flags, values and choices complete"

# ------------------------------------------------------------ 2. zsh, fish
"$schemactl" completion zsh >"$work/_schemactl" 2>"$work/log" || fail "completion zsh"
head -1 "$work/_schemactl" | grep -qx '#compdef schemactl' || fail "zsh: no #compdef line"
zsh -n "$work/_schemactl" 2>"$work/log" || fail "the zsh script does not parse"
"$schemactl" completion fish >"$work/schemactl.fish" 2>"$work/log" || fail "completion fish"
fish -n "$work/schemactl.fish" 2>"$work/log" || fail "the fish script does not parse"
expect_fish() { # WANT LINE: fish's completions of LINE (words only)
  local got
  got=$(fish -c "source $work/schemactl.fish; complete -C '$2'" 2>"$work/log" | cut -f1 | sort | tr '\n' ' ')
  [ "${got% }" = "$1" ] || fail "fish: completing '$2' gave '${got% }', want '$1'"
}
expect_fish "upgrade" "schemactl upg"
expect_fish "--transaction" "schemactl upgrade --tra"
expect_fish "cancel list watch" "schemactl ops "
pass "zsh and fish: the scripts parse; fish completes verbs, flags and choices"

# ------------------------------------------------------------- 3. man page
"$schemactl" man >"$work/schemactl.1" 2>"$work/log" || fail "schemactl man"
groff -man -Tutf8 -ww -z "$work/schemactl.1" 2>"$work/warnings"
[ ! -s "$work/warnings" ] || fail "groff warnings: $(head -5 "$work/warnings")"
MANWIDTH=100 man -l "$work/schemactl.1" >"$work/man.txt" 2>"$work/log" || fail "man -l"
verbs=$("$schemactl" --help | awk '/^Subcommands:/ { on = 1; next } on && /^  [a-z]/ { print $1 } on && /^$/ { exit }')
[ "$(wc -w <<<"$verbs")" -ge 20 ] || fail "--help lists too few verbs: $verbs"
for verb in $verbs; do
  grep -Eq "^   $verb$" "$work/man.txt" || fail "the man page has no section for '$verb'"
done
for section in NAME SYNOPSIS OPTIONS COMMANDS "EXIT STATUS" FILES EXAMPLES "SEE ALSO"; do
  grep -q "^$section" "$work/man.txt" || fail "the man page has no $section"
done
grep -q "schemactl.ini" "$work/man.txt" || fail "the man page does not name schemactl.ini"
pass "man page: renders without warnings; every verb of --help ($(wc -w <<<"$verbs")), exit status, files, examples"
