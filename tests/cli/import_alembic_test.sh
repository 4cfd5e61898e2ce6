#!/usr/bin/env bash
# `schemactl import-alembic` against real Alembic, on a real PostgreSQL.
#
#   SCHEMAD_TEST_PG_DIR=DIR SCHEMACTL=build/default/client/schemactl \
#     bash tests/cli/import_alembic_test.sh
#
# DIR is a cluster started by tests/testing/pg_cluster.sh; ctest passes it,
# SCHEMACTL and SCHEMAD_SOURCE_DIR (tests/CMakeLists.txt). Needs Debian's
# python3-alembic, python3-sqlalchemy and python3-psycopg2 under
# /usr/bin/python3 (SCHEMAD_TEST_PYTHON). Without any of them it FAILS; it
# never skips.
#
# Two Alembic projects are imported:
#   (a) a generated one (tests/cli/alembic_project.py): two branches with
#       labels, a merge, depends_on, an irreversible first revision, a data
#       migration that reads rows (captured on the scratch database), COMMIT
#       before CREATE INDEX CONCURRENTLY and an autocommit_block, '%' in SQL;
#   (b) the MODAX guide's (tests/modax/sqlalchemy_reference.py
#       --write-project): the guide's env.py and its five migrations with
#       migrations/modax's ids.
# For each: the report and the files say how every revision was obtained;
# then Alembic on one database and schemactl with the imported files on
# another, the same command at every step (each revision up, then down as
# far as Alembic goes), must leave the same schema (pg_dump --schema-only,
# normalized), the same alembic_version rows and the same data; then
# adoption both ways: a database Alembic took half-way is upgraded to head
# by schemactl, one schemactl took half-way by Alembic, both ending as the
# step-by-step head. Also: without --scratch-dsn, with a broken env.py, a
# step that fails, files already there: clear errors, exit codes, nothing
# written.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/../testing/check.sh"

# ------------------------------------------------------------------ set-up
[ -n "${SCHEMAD_TEST_PG_DIR:-}" ] ||
  fail "SCHEMAD_TEST_PG_DIR is not set (start a cluster: tests/testing/pg_cluster.sh start DIR)"
[ -f "$SCHEMAD_TEST_PG_DIR/port" ] && [ -f "$SCHEMAD_TEST_PG_DIR/password" ] ||
  fail "no cluster in $SCHEMAD_TEST_PG_DIR (no port/password file)"
[ -n "${SCHEMACTL:-}" ] || fail "SCHEMACTL is not set (path of the schemactl binary)"
[ -x "$SCHEMACTL" ] || fail "SCHEMACTL=$SCHEMACTL is not an executable file"
src=${SCHEMAD_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
pgbin=${PGBIN:-/usr/lib/postgresql/15/bin}
[ -x "$pgbin/psql" ] && export PATH="$pgbin:$PATH"
for tool in psql pg_dump createdb dropdb; do
  command -v "$tool" >/dev/null || fail "$tool not found (in $pgbin or PATH)"
done
python=${SCHEMAD_TEST_PYTHON:-/usr/bin/python3}
"$python" -c 'import sqlalchemy, psycopg2, alembic' 2>/dev/null ||
  fail "$python cannot import sqlalchemy, psycopg2 and alembic (apt-get install python3-sqlalchemy python3-psycopg2 python3-alembic)"

export PGHOST=127.0.0.1
PGPORT=$(cat "$SCHEMAD_TEST_PG_DIR/port")
PGPASSWORD=$(cat "$SCHEMAD_TEST_PG_DIR/password")
export PGPORT PGPASSWORD PGUSER=postgres PGDATABASE=postgres
psql -X -q -tAc 'SELECT 1' >/dev/null 2>&1 ||
  fail "PostgreSQL at 127.0.0.1:$PGPORT (from $SCHEMAD_TEST_PG_DIR) does not answer"
export SQLALCHEMY_SILENCE_UBER_WARNING=1 PYTHONWARNINGS=ignore SCHEMACTL_CONFIG=none
unset SCHEMAD_DSN DATABASE_URL SCHEMAD_DIR SCHEMAD_SCRATCH_DSN SCHEMAD_PYTHON ALEMBIC_CONFIG

work=$(mktemp -d)
prefix="imp_t$$"
cleanup() {
  local db
  for db in $(psql -X -tAc "SELECT datname FROM pg_database WHERE datname LIKE '${prefix}\_%'" 2>/dev/null); do
    dropdb --if-exists "$db" >/dev/null 2>&1
  done
  rm -rf "$work"
}
trap cleanup EXIT

dsn() { echo "postgresql://postgres:$PGPASSWORD@127.0.0.1:$PGPORT/$1"; }
newdb() {
  local db="${prefix}_$1"
  dropdb --if-exists "$db" >/dev/null 2>&1
  createdb "$db" || fail "createdb $db"
  echo "$db"
}
sql() {
  local db=$1
  shift
  psql -X -q -v ON_ERROR_STOP=1 -tA -d "$db" -c "$*"
}
# run_import PROJECT OUT ARGS...: schemactl import-alembic, run in PROJECT (so
# that paths in the report are relative), output in $work/out; its exit code.
run_import() {
  local project=$1 out=$2
  shift 2
  (cd "$project" && "$SCHEMACTL" import-alembic --config alembic.ini --out "$out" \
    --python "$python" "$@") >"$work/out" 2>&1
}
# alembic PROJECT DB ARGS...: the real Alembic CLI; its exit code.
alembic() {
  local project=$1 db=$2
  shift 2
  DATABASE_URL=$(dsn "$db") "$python" -B -m alembic -c "$project/alembic.ini" "$@" >"$work/out" 2>&1
}
# sctl DIR DB ARGS...: schemactl with the imported files; its exit code.
sctl() {
  local dir=$1 db=$2
  shift 2
  "$SCHEMACTL" --dsn "$(dsn "$db")" --dir "$dir" --no-progress "$@" >"$work/out" 2>&1
}
must() {  # must alembic|sctl ARGS...
  "$@" || {
    cat "$work/out" >&2
    fail "$1 ${*:4} on $3 exited non-zero"
  }
}
# facts DB FILE: what must be equal: the normalized schema (without
# alembic_version and schemad's tables), the version rows and every table's
# rows.
facts() {
  local db=$1 file=$2 table
  pg_dump --schema-only --no-owner --no-privileges -T alembic_version -T 'schemad_*' "$db" \
    >"$work/raw" || fail "pg_dump $db"
  grep -v -E '^(--|SET |SELECT pg_catalog\.set_config|\\restrict |\\unrestrict |$)' "$work/raw" >"$file"
  echo "version rows: $(sql "$db" 'SELECT string_agg(version_num, $$,$$ ORDER BY version_num) FROM alembic_version' 2>/dev/null)" >>"$file"
  for table in $(sql "$db" "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version' AND tablename NOT LIKE 'schemad\_%' ORDER BY 1"); do
    echo "rows of $table: $(sql "$db" "SELECT count(*) || ' ' || md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM $table t")" >>"$file"
  done
}
same_facts() {  # same_facts DB_A DB_B WHAT
  facts "$1" "$work/facts_a"
  facts "$2" "$work/facts_b"
  diff -u "$work/facts_a" "$work/facts_b" >"$work/diff" || {
    cat "$work/diff" >&2
    fail "$3: Alembic's database ($1) and schemactl's ($2) differ"
  }
}
# step_by_step PROJECT DIR NAME UP... -- DOWN...: Alembic and schemactl,
# command for command; leaves the head facts in $work/NAME_head.
step_by_step() {
  local project=$1 dir=$2 name=$3 target x y
  shift 3
  x=$(newdb "${name}_alembic") || exit 1
  y=$(newdb "${name}_schemactl") || exit 1
  local phase=upgrade
  for target in "$@"; do
    if [ "$target" = -- ]; then
      facts "$y" "$work/${name}_head"
      phase=downgrade
      continue
    fi
    must alembic "$project" "$x" "$phase" "$target"
    must sctl "$dir" "$y" "$phase" "$target"
    same_facts "$x" "$y" "$name: after $phase $target"
  done
  echo "$x $y"
}

# ==================================================== (a) generated project
gen=$work/gen
"$python" "$src/tests/cli/alembic_project.py" "$gen" || fail "alembic_project.py"
up=(0a0000000000 a10000000000 b10000000000 b20000000000 a20000000000 3e0000000000 d10000000000 e10000000000)

# Without --scratch-dsn the data migration cannot be imported: usage, nothing written.
rc=0; run_import "$gen" "$work/gen_out" || rc=$?
[ "$rc" -eq 2 ] || fail "import without --scratch-dsn exited $rc, expected 2: $(cat "$work/out")"
grep -q "d10000000000 (alembic/versions/d10000000000_fill_in_missing_emails.py) upgrade: AttributeError" "$work/out" ||
  fail "the error does not name the data migration: $(cat "$work/out")"
grep -q -- "--scratch-dsn local" "$work/out" || fail "the error does not say what to pass: $(cat "$work/out")"
[ ! -e "$work/gen_out" ] || fail "a failed import wrote $work/gen_out"
pass "without --scratch-dsn: exit 2 naming the data migration, nothing written"

# The import.
must run_import "$gen" "$work/gen_out" --scratch-dsn "$(dsn postgres)"
cp "$work/out" "$work/gen_report"
for line in \
  "Imported 8 revisions from alembic into $work/gen_out (Alembic 1.8.1, $python):" \
  "  0a0000000000_create_users.sql: upgrade offline; no downgrade (downgrade() raises NotImplementedError: the first schema is not taken back" \
  "  a10000000000_users_get_an_email_and_three_rows.sql: offline" \
  "  b20000000000_index_reports_user_id_concurrently.sql: offline; non-transactional (Alembic's step commits)" \
  "  3e0000000000_merge_users_and_reports.sql: offline" \
  "  d10000000000_fill_in_missing_emails.sql: upgrade captured on an empty database: review, downgrade offline" \
  "  e10000000000_index_users_email_concurrently.sql: offline; non-transactional (Alembic's step commits)" \
  "1 revision(s) captured on an empty database: review them"; do
  grep -qF -- "$line" "$work/gen_report" || fail "the report lacks '$line': $(cat "$work/gen_report")"
done
[ "$(ls "$work/gen_out" | wc -l)" -eq 9 ] || fail "import wrote $(ls "$work/gen_out" | wc -l) files, expected 8 revisions and schemad.conf"
grep -qx 'transaction = per-command' "$work/gen_out/schemad.conf" ||
  fail "schemad.conf does not declare env.py's per-command scope: $(cat "$work/gen_out/schemad.conf")"
f() { echo "$work/gen_out/$1"*.sql; }
grep -q -- '-- +downgrade' "$(f 0a0000000000)" && fail "the irreversible revision has a downgrade section"
grep -q -- '-- branch_labels: core' "$(f 0a0000000000)" || fail "0a0000000000 lost its label"
grep -q -- '-- depends_on: a10000000000' "$(f b10000000000)" || fail "b10000000000 lost depends_on"
grep -q -- '-- revises: a20000000000, b20000000000' "$(f 3e0000000000)" || fail "the merge lost a parent"
grep -q -- '-- transactional: false' "$(f b20000000000)" || fail "COMMIT + CONCURRENTLY is transactional"
grep -q -- '-- transactional: false' "$(f e10000000000)" || fail "autocommit_block is transactional"
grep -q -E '^(COMMIT|BEGIN)' "$(f b20000000000)" "$(f e10000000000)" && fail "BEGIN/COMMIT left in the SQL"
grep -q -- '-- created: 2025-11-09T10:00:00' "$(f d10000000000)" || fail "the create date is lost"
grep -qF "COMMENT ON COLUMN users.email IS '100% unique, %(not)s a parameter';" "$(f a10000000000)" ||
  fail "'%' doubled or lost: $(cat "$(f a10000000000)")"
grep -qF "LIKE '%@example.com'" "$(f d10000000000)" || fail "'%' doubled in the downgrade"
grep -q -- '-- captured on an empty database: review' "$(f d10000000000)" || fail "no review mark"
grep -qF "UPDATE users SET email = 'ada@example.com' WHERE id = 1;" "$(f d10000000000)" ||
  fail "the captured data migration lacks its UPDATE: $(cat "$(f d10000000000)")"
grep -q 'alembic_version' "$work/gen_out"/*.sql && fail "alembic_version statements left in the files"
"$SCHEMACTL" --dir "$work/gen_out" heads >"$work/out" 2>&1 || fail "schemactl heads: $(cat "$work/out")"
grep -q '^e10000000000 (core, reports) (head)$' "$work/out" || fail "heads of the imported files: $(cat "$work/out")"
pass "generated project imported: labels, merge, depends_on, irreversible, data migration, CONCURRENTLY, '%'"

# Again into the same directory: refused without --force, same files with it.
cp -r "$work/gen_out" "$work/gen_first"
rc=0; run_import "$gen" "$work/gen_out" --scratch-dsn local || rc=$?
[ "$rc" -eq 2 ] && grep -q 'already holds revision files' "$work/out" ||
  fail "a second import without --force: exit $rc: $(cat "$work/out")"
must run_import "$gen" "$work/gen_out" --scratch-dsn local --force
diff -r "$work/gen_first" "$work/gen_out" >"$work/diff" || {
  cat "$work/diff" >&2
  fail "importing again (--scratch-dsn local, --force) gave other files"
}
pass "existing files need --force; the import is repeatable (also with --scratch-dsn local)"

# Alembic and schemactl, command for command.
read -r gx gy < <(step_by_step "$gen" "$work/gen_out" gen "${up[@]}" -- \
  d10000000000 3e0000000000 b20000000000 a10000000000 0a0000000000) || exit 1
[ -n "${gy:-}" ] || fail "the step-by-step run stopped"
# Below the irreversible first revision neither goes.
alembic "$gen" "$gx" downgrade base && fail "Alembic downgraded past an irreversible revision"
rc=0; sctl "$work/gen_out" "$gy" downgrade base || rc=$?
[ "$rc" -eq 1 ] && grep -q '0a0000000000' "$work/out" ||
  fail "schemactl downgrade base past the irreversible revision: exit $rc: $(cat "$work/out")"
same_facts "$gx" "$gy" "gen: after both refused downgrade base"
pass "generated: Alembic and schemactl agree at every step up (8) and down (5); both refuse the irreversible one"

# Adoption both ways.
za=$(newdb gen_adopt_from_alembic) || exit 1
must alembic "$gen" "$za" upgrade 3e0000000000
must sctl "$work/gen_out" "$za" current
grep -q '^3e0000000000' "$work/out" || fail "schemactl current on Alembic's database: $(cat "$work/out")"
must sctl "$work/gen_out" "$za" upgrade heads
facts "$za" "$work/gen_za"
diff -u "$work/gen_head" "$work/gen_za" >"$work/diff" || {
  cat "$work/diff" >&2
  fail "a database Alembic took to 3e0000000000, upgraded by schemactl, is not the head"
}
zs=$(newdb gen_adopt_from_schemactl) || exit 1
must sctl "$work/gen_out" "$zs" upgrade 3e0000000000
must alembic "$gen" "$zs" current
grep -q '^3e0000000000' "$work/out" || fail "alembic current on schemactl's database: $(cat "$work/out")"
must alembic "$gen" "$zs" upgrade head
facts "$zs" "$work/gen_zs"
diff -u "$work/gen_head" "$work/gen_zs" >"$work/diff" || {
  cat "$work/diff" >&2
  fail "a database schemactl took to 3e0000000000, upgraded by Alembic, is not the head"
}
pass "generated: adoption both ways (Alembic -> schemactl, schemactl -> Alembic) reaches the same head"

# Errors: a broken env.py, a step that fails everywhere. Exit 1, named, nothing written.
broken=$work/broken
cp -r "$gen" "$broken"
printf 'import no_such_module_here\n' >>"$broken/alembic/env.py"
rc=0; run_import "$broken" "$work/broken_out" --scratch-dsn local || rc=$?
[ "$rc" -eq 1 ] && grep -q "env.py (alembic/env.py) failed in offline mode: ModuleNotFoundError: No module named 'no_such_module_here'" "$work/out" ||
  fail "a broken env.py: exit $rc: $(cat "$work/out")"
[ ! -e "$work/broken_out" ] || fail "a failed import wrote files"
cp "$gen/alembic/env.py" "$broken/alembic/env.py"
sed -i 's/    conn = op.get_bind()/    raise RuntimeError("boom")/' "$broken/alembic/versions/d10000000000_fill_in_missing_emails.py"
rc=0; run_import "$broken" "$work/broken_out" --scratch-dsn local || rc=$?
[ "$rc" -eq 1 ] && grep -q "revision d10000000000 (alembic/versions/d10000000000_fill_in_missing_emails.py): upgrade() failed on the scratch database: RuntimeError: boom" "$work/out" ||
  fail "a failing step: exit $rc: $(cat "$work/out")"
[ ! -e "$work/broken_out" ] || fail "a failed import wrote files"
pass "a broken env.py and a failing step: exit 1 naming the file, nothing written"

# ================================================================ (b) MODAX
modax=$work/modax
"$python" "$src/tests/modax/sqlalchemy_reference.py" --write-project "$modax" ||
  fail "sqlalchemy_reference.py --write-project"
revs=(8881c85c9009 46da7734804f b2578802cadc 21f8db53a483 413d03294339)
must run_import "$modax" "$work/modax_out" --scratch-dsn local
cp "$work/out" "$work/modax_report"
for line in \
  "Imported 5 revisions from alembic into $work/modax_out" \
  "  8881c85c9009_initial_modax_schema.sql: offline" \
  "  b2578802cadc_index_devices_last_seen_concurrently.sql: offline; non-transactional (Alembic's step commits)" \
  "  21f8db53a483_set_device_type_to_esp32_where_null.sql: upgrade captured on an empty database: review, downgrade offline"; do
  grep -qF -- "$line" "$work/modax_report" || fail "the MODAX report lacks '$line': $(cat "$work/modax_report")"
done
grep -qF "UPDATE devices SET device_type = 'ESP32' WHERE device_type IS NULL;" "$work/modax_out"/21f8db53a483_*.sql ||
  fail "the guide's data migration was not captured: $(cat "$work/modax_out"/21f8db53a483_*.sql)"
# The same graph and messages as the hand-written migrations/modax.
"$SCHEMACTL" --dir "$work/modax_out" history >"$work/h_imported" 2>&1 || fail "history: $(cat "$work/h_imported")"
"$SCHEMACTL" --dir "$src/migrations/modax" history >"$work/h_modax" 2>&1 || fail "history of migrations/modax"
diff -u "$work/h_modax" "$work/h_imported" >"$work/diff" || {
  cat "$work/diff" >&2
  fail "the imported MODAX history differs from migrations/modax's"
}
pass "MODAX imported: the guide's env.py, the data migration captured, migrations/modax's graph"

read -r _ my < <(step_by_step "$modax" "$work/modax_out" modax "${revs[@]}" -- -1 -1 -1 -1 -1) || exit 1
[ -n "${my:-}" ] || fail "the MODAX step-by-step run stopped"
[ "$(sql "$my" 'SELECT count(*) FROM alembic_version')" = 0 ] || fail "MODAX: not at base after five downgrades"
pass "MODAX: Alembic and schemactl agree at every step up (5) and down to base (5)"

# The imported head builds what the hand-written migrations/modax builds.
hi=$(newdb modax_imported) || exit 1
hm=$(newdb modax_handwritten) || exit 1
must sctl "$work/modax_out" "$hi" upgrade heads
must sctl "$src/migrations/modax" "$hm" upgrade heads
same_facts "$hi" "$hm" "MODAX head: imported files vs migrations/modax"
pass "MODAX: the imported revisions build migrations/modax's head schema"

# Adoption both ways, half-way at the guide's second revision.
za=$(newdb modax_adopt_from_alembic) || exit 1
must alembic "$modax" "$za" upgrade 46da7734804f
sql "$za" "INSERT INTO devices (device_id, device_type) VALUES ('esp-7', 'ESP32')" >/dev/null || fail "insert"
must sctl "$work/modax_out" "$za" upgrade heads
zs=$(newdb modax_adopt_from_schemactl) || exit 1
must sctl "$work/modax_out" "$zs" upgrade 46da7734804f
sql "$zs" "INSERT INTO devices (device_id, device_type) VALUES ('esp-7', 'ESP32')" >/dev/null || fail "insert"
must alembic "$modax" "$zs" upgrade head
# The same schema and rows as the step-by-step head, but for the inserted
# device (whose created_at differs between the two).
facts "$za" "$work/modax_za"
facts "$zs" "$work/modax_zs"
for got in "$work/modax_za" "$work/modax_zs"; do
  diff <(grep -v '^rows of devices' "$work/modax_head") <(grep -v '^rows of devices' "$got") >"$work/diff" || {
    cat "$work/diff" >&2
    fail "MODAX adoption ($got) does not reach the head"
  }
done
for db in "$za" "$zs"; do
  [ "$(sql "$db" "SELECT string_agg(device_id || '=' || device_type, ',') FROM devices")" = esp-7=ESP32 ] ||
    fail "MODAX adoption: $db lost its device row"
done
pass "MODAX: adoption both ways (at 46da7734804f, with a row) reaches the same head"
