#!/usr/bin/env bash
# migrations/modax on a real PostgreSQL, through schemactl.
#
#   SCHEMAD_TEST_PG_DIR=DIR SCHEMACTL=build/default/client/schemactl \
#     bash tests/modax/modax_schema_test.sh
#
# DIR is a cluster started by tests/testing/pg_cluster.sh (it holds `port` and
# `password`); ctest passes it, SCHEMACTL and SCHEMAD_SOURCE_DIR (see
# tests/CMakeLists.txt). Without a cluster, schemactl, pg_dump or the
# SQLAlchemy reference this test FAILS; it never skips.
#
# What it proves (each check prints a line; the first failure ends the run):
#   1. base -> head with `schemactl upgrade heads` on a fresh database.
#   2. The schema after each revision equals the SQLAlchemy reference for that
#      point of the guide's history (tests/modax/sqlalchemy_reference.py), made
#      two independent ways: create_all() of the guide's models extended by the
#      later revisions' model changes (--via models), and create_all() of the
#      guide's models as printed followed by the guide's migration bodies run
#      in a real Alembic environment (--via alembic). Revision 1 is compared with
#      the plain guide models, the head with the fully extended ones.
#   3. Stepping up one revision at a time and back down (`upgrade +1`,
#      `downgrade -1`): each downgrade restores exactly the schema from before
#      its revision, down to the empty database.
#   4. head -> base -> head leaves an identical schema.
#   5. The data migration on real rows (device_type NULL becomes ESP32, other
#      values untouched; its downgrade is a no-op that keeps the rows).
#   6. The offline scripts (`upgrade --sql base:heads`, `downgrade --sql
#      HEAD:base`) run by psql make the same schemas.
#   7. A site that Alembic migrated (a real Alembic environment whose revisions
#      have migrations/modax's ids, stopped at revision 2) is adopted as it
#      is: `current` reads Alembic's alembic_version, `validate` passes,
#      `upgrade heads` reaches the same head schema, the table keeps its
#      definition and the rows survive.
#
# Schemas are compared as `pg_dump --schema-only --no-owner --no-privileges`
# text, normalized: comments, SET/set_config lines, pg_dump's \restrict
# lines and blank lines dropped. schemad's own tables (alembic_version,
# schemad_history with its sequence, schemad_state) are excluded with -T, and
# so are only in the comparison when the check is about them (the version
# rows, read with psql).
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
migrations=$src/migrations/modax
reference=$src/tests/modax/sqlalchemy_reference.py
[ -d "$migrations" ] || fail "no migration directory $migrations"
[ -f "$reference" ] || fail "no reference script $reference"

pgbin=${PGBIN:-/usr/lib/postgresql/15/bin}
if [ -x "$pgbin/psql" ]; then
  export PATH="$pgbin:$PATH"
fi
for tool in psql pg_dump createdb dropdb; do
  command -v "$tool" >/dev/null || fail "$tool not found (in $pgbin or PATH)"
done
# Debian's python3-sqlalchemy/psycopg2/alembic are for the system interpreter,
# not for a pyenv or virtualenv python3 that may come first in PATH.
python=${SCHEMAD_TEST_PYTHON:-/usr/bin/python3}
"$python" -c 'import sqlalchemy, psycopg2, alembic' 2>/dev/null ||
  fail "$python cannot import sqlalchemy, psycopg2 and alembic (apt-get install python3-sqlalchemy python3-psycopg2 python3-alembic)"

export PGHOST=127.0.0.1
PGPORT=$(cat "$SCHEMAD_TEST_PG_DIR/port")
PGPASSWORD=$(cat "$SCHEMAD_TEST_PG_DIR/password")
export PGPORT PGPASSWORD PGUSER=postgres PGDATABASE=postgres
psql -X -q -tAc 'SELECT 1' >/dev/null 2>&1 ||
  fail "PostgreSQL at 127.0.0.1:$PGPORT (from $SCHEMAD_TEST_PG_DIR) does not answer"
export SQLALCHEMY_SILENCE_UBER_WARNING=1
export PYTHONWARNINGS=ignore

# The chain, oldest first. Adding a revision to migrations/modax means adding
# it here and its model change to sqlalchemy_reference.py (--upto).
revs=(8881c85c9009 46da7734804f b2578802cadc 21f8db53a483 413d03294339)
n=${#revs[@]}
head=${revs[$((n - 1))]}

work=$(mktemp -d)
prefix="modax_t$$"
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
# schemactl DB ARGS...: runs schemactl on DB's DSN, output in $work/out.
schemactl() {
  local db=$1
  shift
  "$SCHEMACTL" --dsn "$(dsn "$db")" --dir "$migrations" --no-progress "$@" >"$work/out" 2>&1
}
must() {
  local db=$1
  shift
  local rc=0
  schemactl "$db" "$@" || rc=$?
  if [ "$rc" -ne 0 ]; then
    cat "$work/out" >&2
    fail "schemactl $* on $db exited $rc"
  fi
}
sql() {
  local db=$1
  shift
  psql -X -q -v ON_ERROR_STOP=1 -tA -d "$db" -c "$*"
}
# normalize < pg_dump output: without comments, SET lines, pg_dump's
# \restrict lines (random keys) and blank lines.
normalize() {
  grep -v -E '^(--|SET |SELECT pg_catalog\.set_config|\\restrict |\\unrestrict |$)'
}
# dump DB FILE: the normalized schema of DB, without schemad's tables.
dump() {
  pg_dump --schema-only --no-owner --no-privileges \
    -T alembic_version -T 'schemad_*' "$1" >"$work/raw" || fail "pg_dump $1"
  normalize <"$work/raw" >"$2"
}
# dump_version_table DB FILE: the normalized definition of alembic_version.
dump_version_table() {
  pg_dump --schema-only --no-owner --no-privileges -t alembic_version "$1" >"$work/raw" ||
    fail "pg_dump -t alembic_version $1"
  normalize <"$work/raw" >"$2"
  grep -q 'CREATE TABLE public.alembic_version' "$2" || fail "$1 has no alembic_version table"
}
same() {  # same FILE_A FILE_B WHAT
  diff -u "$1" "$2" >"$work/diff" || {
    cat "$work/diff" >&2
    fail "$3"
  }
}
version_rows() { sql "$1" 'SELECT string_agg(version_num, $$,$$ ORDER BY version_num) FROM alembic_version'; }
expect_version() {  # expect_version DB REV|'' WHAT
  local got
  got=$(version_rows "$1") || fail "reading alembic_version of $1"
  [ "$got" = "$2" ] || fail "$3: alembic_version is '$got', expected '$2'"
}

# --------------------------------------------------- the SQLAlchemy reference
for ((i = 1; i <= n; i++)); do
  for via in models alembic; do
    db=$(newdb "ref_${via}_$i") || exit 1
    "$python" "$reference" "$(dsn "$db")" --upto "$i" --via "$via" >"$work/out" 2>&1 || {
      cat "$work/out" >&2
      fail "sqlalchemy_reference.py --upto $i --via $via"
    }
    dump "$db" "$work/ref_${via}_$i.sql"
  done
  # The two ways to the reference must agree, or the reference is wrong.
  same "$work/ref_models_$i.sql" "$work/ref_alembic_$i.sql" \
    "reference after revision $i: create_all(extended models) differs from the Alembic environment"
done
grep -q 'CREATE TABLE public.sensor_data' "$work/ref_models_1.sql" ||
  fail "the reference schema has no sensor_data table"
pass "SQLAlchemy reference made for revisions 1..$n (models and Alembic agree)"

# ------------------------------------------------- the revision files' graph
db_empty=$(newdb empty) || exit 1
must "$db_empty" heads
grep -q "$head" "$work/out" || fail "schemactl heads does not name $head: $(cat "$work/out")"
[ "$(ls "$migrations"/*.sql | wc -l)" -eq "$n" ] ||
  fail "migrations/modax holds $(ls "$migrations"/*.sql | wc -l) revision files, this test knows $n"
dump "$db_empty" "$work/empty.sql"
pass "migrations/modax loads; one head $head"

# ------------------------------------------------------- 1. base -> head
db_head=$(newdb head) || exit 1
must "$db_head" upgrade heads
expect_version "$db_head" "$head" "after upgrade heads"
must "$db_head" current
grep -q "$head" "$work/out" || fail "schemactl current does not name $head: $(cat "$work/out")"
dump "$db_head" "$work/head.sql"
pass "base -> head on a fresh database"

# ------------------------------------------- 2. head == SQLAlchemy reference
same "$work/ref_models_$n.sql" "$work/head.sql" \
  "head schema differs from create_all() of the guide's models extended by the later revisions"
same "$work/ref_alembic_$n.sql" "$work/head.sql" \
  "head schema differs from the guide's migrations run by Alembic"
pass "head schema identical to the SQLAlchemy reference"

# ------------------------------- 3. step up and down, one revision at a time
db_step=$(newdb steps) || exit 1
cp "$work/empty.sql" "$work/step_0.sql"
for ((i = 1; i <= n; i++)); do
  must "$db_step" upgrade +1
  expect_version "$db_step" "${revs[$((i - 1))]}" "after upgrade +1 number $i"
  dump "$db_step" "$work/step_$i.sql"
  same "$work/ref_models_$i.sql" "$work/step_$i.sql" \
    "schema after ${revs[$((i - 1))]} differs from the SQLAlchemy reference --upto $i"
done
same "$work/head.sql" "$work/step_$n.sql" "stepping up one by one gave another head schema"
pass "each revision's schema equals the SQLAlchemy reference at that point"
for ((i = n; i >= 1; i--)); do
  must "$db_step" downgrade -1
  expected=""
  [ "$i" -gt 1 ] && expected=${revs[$((i - 2))]}
  expect_version "$db_step" "$expected" "after downgrading ${revs[$((i - 1))]}"
  dump "$db_step" "$work/down_$i.sql"
  same "$work/step_$((i - 1)).sql" "$work/down_$i.sql" \
    "downgrading ${revs[$((i - 1))]} does not restore the schema from before it"
done
same "$work/empty.sql" "$work/down_1.sql" "downgrading everything leaves objects behind"
pass "each revision's downgrade restores exactly the schema before it"

# ------------------------------------------------ 4. head -> base -> head
must "$db_head" downgrade base
expect_version "$db_head" "" "after downgrade base"
dump "$db_head" "$work/base.sql"
same "$work/empty.sql" "$work/base.sql" "downgrade base leaves objects behind"
must "$db_head" upgrade heads
expect_version "$db_head" "$head" "after the second upgrade heads"
dump "$db_head" "$work/head2.sql"
same "$work/head.sql" "$work/head2.sql" "head -> base -> head changed the schema"
pass "head -> base -> head leaves an identical schema"

# ------------------------------------------------ 5. the data migration
# revs[3] sets device_type = 'ESP32' where it is NULL. The guide's model
# declares device_type NOT NULL, so the rows it is for come from sites whose
# devices table predates that constraint: the test makes such a site by
# dropping the constraint before the revision and putting it back after.
data_rev=${revs[3]}
db_data=$(newdb data) || exit 1
must "$db_data" upgrade "${revs[2]}"
sql "$db_data" "ALTER TABLE devices ALTER COLUMN device_type DROP NOT NULL;
  INSERT INTO devices (device_id, device_type, location) VALUES
    ('esp-null-1', NULL, 'hall 1'), ('rpi-1', 'RPI4', 'hall 1'),
    ('esp-null-2', NULL, 'hall 2'), ('esp-1', 'ESP32', 'hall 2'), ('plc-1', 'S7-1200', NULL)" \
  >/dev/null || fail "inserting devices before the data migration"
devices() { sql "$1" "SELECT string_agg(device_id || '=' || coalesce(device_type, '<null>'), ' ' ORDER BY device_id) FROM devices"; }
before=$(devices "$db_data")
[ "$before" = "esp-1=ESP32 esp-null-1=<null> esp-null-2=<null> plc-1=S7-1200 rpi-1=RPI4" ] ||
  fail "devices before the data migration: $before"
must "$db_data" upgrade +1
expect_version "$db_data" "$data_rev" "after the data migration"
after=$(devices "$db_data")
want="esp-1=ESP32 esp-null-1=ESP32 esp-null-2=ESP32 plc-1=S7-1200 rpi-1=RPI4"
[ "$after" = "$want" ] || fail "devices after the data migration: '$after', expected '$want'"
pass "data migration: NULL device_type became ESP32, other types untouched"
must "$db_data" downgrade -1
expect_version "$db_data" "${revs[2]}" "after downgrading the data migration"
[ "$(devices "$db_data")" = "$want" ] ||
  fail "the data migration's downgrade changed rows: $(devices "$db_data")"
pass "data migration's downgrade is a no-op (rows kept, version moved back)"
must "$db_data" upgrade +1
sql "$db_data" "ALTER TABLE devices ALTER COLUMN device_type SET NOT NULL" >/dev/null ||
  fail "device_type cannot be NOT NULL again after the data migration"
must "$db_data" upgrade heads
dump "$db_data" "$work/data_head.sql"
same "$work/head.sql" "$work/data_head.sql" "the site with data ends with another head schema"
[ "$(sql "$db_data" 'SELECT count(*) FROM devices')" = 5 ] || fail "devices lost rows on the way to head"
pass "site with legacy NULL device types reaches the reference head schema with its rows"

# -------------------------------------------------------- 6. offline SQL
offline_db=$(newdb offline) || exit 1
"$SCHEMACTL" --dir "$migrations" upgrade --sql base:heads >"$work/offline.sql" 2>"$work/out" || {
  cat "$work/out" >&2
  fail "schemactl upgrade --sql base:heads"
}
psql -X -q -v ON_ERROR_STOP=1 -d "$offline_db" -f "$work/offline.sql" >"$work/out" 2>&1 || {
  cat "$work/out" >&2
  fail "psql could not run the offline upgrade script"
}
expect_version "$offline_db" "$head" "after the offline upgrade script"
dump "$offline_db" "$work/offline_head.sql"
same "$work/head.sql" "$work/offline_head.sql" "the offline upgrade script makes another schema"
"$SCHEMACTL" --dir "$migrations" downgrade --sql "$head:base" >"$work/offline_down.sql" 2>"$work/out" || {
  cat "$work/out" >&2
  fail "schemactl downgrade --sql $head:base"
}
psql -X -q -v ON_ERROR_STOP=1 -d "$offline_db" -f "$work/offline_down.sql" >"$work/out" 2>&1 || {
  cat "$work/out" >&2
  fail "psql could not run the offline downgrade script"
}
# As Alembic's offline downgrade to base, the script ends by dropping the
# version table.
[ "$(psql -X -A -t -d "$offline_db" -c "SELECT to_regclass('public.alembic_version') IS NULL")" = t ] ||
  fail "the offline downgrade script to base left alembic_version behind"
dump "$offline_db" "$work/offline_base.sql"
same "$work/empty.sql" "$work/offline_base.sql" "the offline downgrade script leaves objects behind"
pass "offline scripts (upgrade --sql base:heads, downgrade --sql $head:base) match"

# ------------------------------------- 7. adopting a site Alembic migrated
# The reference --via alembic is a real Alembic environment whose revisions
# carry migrations/modax's ids: a site that Alembic took to revision 2.
db_adopt=$(newdb adopt) || exit 1
"$python" "$reference" "$(dsn "$db_adopt")" --upto 2 --via alembic >"$work/out" 2>&1 || {
  cat "$work/out" >&2
  fail "alembic upgrade ${revs[1]} for the adoption check"
}
expect_version "$db_adopt" "${revs[1]}" "the Alembic-migrated site"
dump_version_table "$db_adopt" "$work/version_table_before.sql"
sql "$db_adopt" "INSERT INTO devices (device_id, device_type) VALUES ('esp-7', 'ESP32')" >/dev/null ||
  fail "inserting a device into the Alembic-migrated site"
must "$db_adopt" current
grep -q "${revs[1]}" "$work/out" ||
  fail "schemactl current on the Alembic site does not name ${revs[1]}: $(cat "$work/out")"
must "$db_adopt" validate
must "$db_adopt" upgrade heads
expect_version "$db_adopt" "$head" "after schemactl upgrade heads on the Alembic site"
dump "$db_adopt" "$work/adopt_head.sql"
same "$work/head.sql" "$work/adopt_head.sql" "the adopted Alembic site ends with another head schema"
dump_version_table "$db_adopt" "$work/version_table_after.sql"
same "$work/version_table_before.sql" "$work/version_table_after.sql" \
  "schemad changed the definition of Alembic's alembic_version table"
[ "$(sql "$db_adopt" "SELECT device_type FROM devices WHERE device_id = 'esp-7'")" = ESP32 ] ||
  fail "the adopted site lost its device row"
pass "a site Alembic took to ${revs[1]} is adopted as is: current, validate, upgrade heads"

# ------------------------------ 8. autogenerate: the guide's first workflow
# Desired states are real `pg_dump --schema-only` outputs of the SQLAlchemy
# reference (create_all() of the guide's models, then each guide pattern);
# schemactl writes the revisions into an empty directory, and upgrading a
# fresh database with them must give exactly the reference schemas. The dev
# server is this cluster (the superuser may create scratch databases).
dev=$(dsn postgres)
autogen=$work/autogen
mkdir -p "$autogen"
desired() {  # desired N FILE: the raw pg_dump of the reference after revision N
  pg_dump --schema-only "${prefix}_ref_models_$1" >"$2" || fail "pg_dump ${prefix}_ref_models_$1"
}
autogenerate() {  # autogenerate MESSAGE DESIRED
  "$SCHEMACTL" --dir "$autogen" revision --autogenerate -m "$1" --schema "$2" --dev-dsn "$dev" \
    >"$work/out" 2>&1 || {
    cat "$work/out" >&2
    fail "schemactl revision --autogenerate -m '$1' --schema $2"
  }
}
newest_revision() { ls -t "$autogen"/*.sql | head -1; }
db_auto=$(newdb auto) || exit 1
# 8a. the initial schema from create_all()
desired 1 "$work/desired_1.sql"
autogenerate "initial modax schema" "$work/desired_1.sql"
grep -q 'CREATE TABLE public.sensor_data' "$(newest_revision)" ||
  fail "the autogenerated initial revision does not create sensor_data: $(cat "$(newest_revision)")"
"$SCHEMACTL" --dsn "$(dsn "$db_auto")" --dir "$autogen" --no-progress upgrade heads >"$work/out" 2>&1 || {
  cat "$work/out" >&2
  fail "upgrading with the autogenerated initial revision"
}
dump "$db_auto" "$work/auto_1.sql"
same "$work/ref_models_1.sql" "$work/auto_1.sql" \
  "the autogenerated initial revision builds another schema than create_all()"
# 8b. "Adding a Column" and "Adding an Index", as desired-state edits
for i in 2 3; do
  desired "$i" "$work/desired_$i.sql"
  autogenerate "guide step $i" "$work/desired_$i.sql"
  "$SCHEMACTL" --dsn "$(dsn "$db_auto")" --dir "$autogen" --no-progress upgrade heads >"$work/out" 2>&1 || {
    cat "$work/out" >&2
    fail "upgrading with the autogenerated revision for guide step $i"
  }
  dump "$db_auto" "$work/auto_$i.sql"
  same "$work/ref_models_$i.sql" "$work/auto_$i.sql" \
    "the autogenerated revision for guide step $i builds another schema than the reference"
done
grep -q 'ADD COLUMN quality_score' "$autogen"/*guide_step_2*.sql ||
  fail "the 'Adding a Column' revision does not add quality_score"
grep -q 'CREATE INDEX ix_device_last_seen' "$autogen"/*guide_step_3*.sql ||
  fail "the 'Adding an Index' revision does not create ix_device_last_seen"
# 8c. "Modifying a Column": the guide changes temperature_mean's nullability
# (its model already has the column nullable, so the edit here is the other
# way: NOT NULL; the revision's downgrade is the guide's nullable=True).
sed 's/temperature_mean double precision,/temperature_mean double precision NOT NULL,/' \
  "$work/desired_3.sql" >"$work/desired_modified.sql"
cmp -s "$work/desired_3.sql" "$work/desired_modified.sql" &&
  fail "the reference has no nullable temperature_mean to modify"
autogenerate "make temperature_mean not null" "$work/desired_modified.sql"
grep -q 'ALTER COLUMN temperature_mean SET NOT NULL' "$(newest_revision)" ||
  fail "the 'Modifying a Column' revision does not set NOT NULL: $(cat "$(newest_revision)")"
grep -q 'ALTER COLUMN temperature_mean DROP NOT NULL' "$(newest_revision)" ||
  fail "the 'Modifying a Column' revision's downgrade does not make the column nullable again"
# 8d. nothing to do: nothing written
count=$(ls "$autogen"/*.sql | wc -l)
autogenerate "no change" "$work/desired_modified.sql"
grep -q 'no changes' "$work/out" || fail "autogenerate without a difference said: $(cat "$work/out")"
[ "$(ls "$autogen"/*.sql | wc -l)" -eq "$count" ] || fail "autogenerate without a difference wrote a file"
pass "autogenerate: create_all(), Adding a Column, Adding an Index, Modifying a Column; nothing when equal"
# 8e. the autogenerated history passes verify (up, down, up of each revision)
"$SCHEMACTL" --dir "$autogen" verify --dev-dsn "$dev" --schema "$work/desired_modified.sql" \
  >"$work/out" 2>&1 || {
  cat "$work/out" >&2
  fail "schemactl verify on the autogenerated revisions"
}
pass "the autogenerated revisions pass verify, head = the desired state"

# ------------------------------------------------------------- 9. verify
"$SCHEMACTL" --dir "$migrations" verify --dev-dsn "$dev" --schema "$work/desired_1.sql" \
  >"$work/out" 2>&1 && fail "verify --schema with the initial schema passed at head: $(cat "$work/out")"
grep -q 'is not the desired state' "$work/out" || fail "verify --schema mismatch said: $(cat "$work/out")"
"$SCHEMACTL" --dir "$migrations" verify --dev-dsn "$dev" >"$work/out" 2>&1 || {
  cat "$work/out" >&2
  fail "schemactl verify on migrations/modax"
}
grep -q "verified $n revisions" "$work/out" || fail "verify on migrations/modax said: $(cat "$work/out")"
broken=$work/broken
cp -r "$migrations" "$broken"
sed -i 's/^DROP INDEX CONCURRENTLY ix_device_last_seen;$/-- forgot the index/' \
  "$broken"/b2578802cadc_*.sql
"$SCHEMACTL" --dir "$broken" verify --dev-dsn "$dev" >"$work/out" 2>&1 && fail "verify passed a downgrade that forgets its index"
grep -q 'revision b2578802cadc' "$work/out" && grep -q 'extra index public.ix_device_last_seen' "$work/out" ||
  fail "verify on a forgotten index said: $(cat "$work/out")"
pass "verify passes migrations/modax and names a downgrade that forgets an index"

# -------------------------------------------------------------- 10. drift
db_drift=$(newdb drift) || exit 1
must "$db_drift" upgrade heads
drift() { "$SCHEMACTL" --dsn "$(dsn "$db_drift")" --dir "$migrations" drift --dev-dsn "$dev" "$@" >"$work/out" 2>&1; }
drift || fail "drift on a freshly migrated site (CONCURRENTLY index, data migration): $(cat "$work/out")"
sql "$db_drift" "CREATE INDEX hand_made_idx ON devices (location);
  ALTER TABLE devices ALTER COLUMN created_at DROP DEFAULT;
  ALTER TABLE devices ALTER COLUMN location TYPE text;
  CREATE TABLE scratch_notes (note text);
  ALTER TABLE safety_status DROP CONSTRAINT pk_safety_status" >/dev/null ||
  fail "making drift by hand"
rc=0
drift || rc=$?
[ "$rc" -eq 7 ] || fail "drift exited $rc, expected 7: $(cat "$work/out")"
for expected in 'extra index public.hand_made_idx' 'changed column public.devices.created_at: default' \
  'changed column public.devices.location: type' 'extra table public.scratch_notes' \
  'missing constraint public.safety_status.pk_safety_status'; do
  grep -qF "$expected" "$work/out" || fail "drift does not name '$expected': $(cat "$work/out")"
done
rc=0
drift --sql || rc=$?
[ "$rc" -eq 7 ] || fail "drift --sql exited $rc, expected 7: $(cat "$work/out")"
sql "$db_drift" "$(cat "$work/out")" >/dev/null || fail "drift --sql does not run: $(cat "$work/out")"
drift || fail "drift remains after running drift --sql: $(cat "$work/out")"
pass "drift: none on a migrated site; a hand-made index, dropped default, changed type, extra table and missing constraint named; drift --sql repairs"

echo "PASS: modax_schema"
