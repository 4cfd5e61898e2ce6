// The schema inspector (pq_schema_inspector.h, PqSession::InspectSchema) on
// a real server: every object kind with its exact model fields, what is left
// out, independence from the session's settings, and errors.
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/schema/schema_model.h"
#include "service/store/pq/pq_database.h"
#include "service/store/pq/pq_schema_inspector.h"
#include "service/store/store.h"
#include "tests/testing/pg_fixture.h"

namespace schemad::store {
namespace {

using schema::DatabaseSchema;
using testing::Exec;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::Query;
using testing::Rows;
using testing::TestDatabase;

// Every field of the model, one line per object, for exact comparisons with
// readable failures.
std::string Dump(const DatabaseSchema& s) {
  std::vector<std::string> lines;
  for (const auto& n : s.schemas) lines.push_back(absl::StrCat("schema ", n.name, " #", n.comment));
  for (const auto& e : s.extensions) {
    lines.push_back(absl::StrCat("extension ", e.name, " in ", e.schema, " v", e.version));
  }
  for (const auto& e : s.enums) {
    lines.push_back(
        absl::StrCat("enum ", e.Key(), " (", absl::StrJoin(e.labels, ","), ") #", e.comment));
  }
  for (const auto& d : s.domains) {
    std::string line =
        absl::StrCat("domain ", d.Key(), " ", d.base_type, " default=", d.default_expr,
                     " notnull=", d.not_null, " collation=", d.collation, " #", d.comment);
    for (const auto& c : d.constraints) absl::StrAppend(&line, " | ", c.name, " ", c.definition);
    lines.push_back(line);
  }
  for (const auto& t : s.composite_types) {
    std::string line = absl::StrCat("type ", t.Key(), " #", t.comment);
    for (const auto& a : t.attributes) {
      absl::StrAppend(&line, " | ", a.name, " ", a.type, " collation=", a.collation);
    }
    lines.push_back(line);
  }
  for (const auto& q : s.sequences) {
    lines.push_back(absl::StrCat(
        "sequence ", q.Key(), " ", q.data_type, " start=", q.start, " inc=", q.increment,
        " min=", q.min_value, " max=", q.max_value, " cache=", q.cache, " cycle=", q.cycle,
        " owned=", q.owned_by_table, ".", q.owned_by_column, " #", q.comment));
  }
  for (const auto& t : s.tables) {
    lines.push_back(absl::StrCat("table ", t.Key(), " unlogged=", t.unlogged,
                                 " key=", t.partition_key, " of=", t.partition_of,
                                 " bound=", t.partition_bound, " #", t.comment));
    for (const auto& c : t.columns) {
      lines.push_back(absl::StrCat(
          "  column ", c.name, " ", c.type, " default=", c.default_expr, " notnull=", c.not_null,
          " identity=", c.identity == '\0' ? std::string() : std::string(1, c.identity),
          " generated=", c.generated_expr, " collation=", c.collation, " #", c.comment));
    }
  }
  for (const auto& c : s.constraints) {
    lines.push_back(absl::StrCat("constraint ", c.Key(), " ", std::string(1, c.kind), " ",
                                 c.definition, " #", c.comment));
  }
  for (const auto& i : s.indexes) {
    lines.push_back(
        absl::StrCat("index ", i.Key(), " on ", i.table, " ", i.definition, " #", i.comment));
  }
  for (const auto& v : s.views) {
    lines.push_back(absl::StrCat(v.materialized ? "matview " : "view ", v.Key(), " reads ",
                                 absl::StrJoin(v.depends_on, ","), " #", v.comment, "\n",
                                 v.definition));
  }
  for (const auto& f : s.functions) {
    lines.push_back(absl::StrCat(f.procedure ? "procedure " : "function ", f.Key(), " #", f.comment,
                                 "\n", f.definition));
  }
  for (const auto& t : s.triggers) {
    lines.push_back(absl::StrCat("trigger ", t.Key(), " ", t.definition, " #", t.comment));
  }
  return absl::StrCat(absl::StrJoin(lines, "\n"), "\n");
}

absl::StatusOr<DatabaseSchema> Inspect(const std::string& dsn, const PqOptions& options = {}) {
  absl::StatusOr<std::unique_ptr<Database>> database = OpenPqDatabase(dsn, options);
  if (!database.ok()) return database.status();
  absl::StatusOr<std::unique_ptr<Session>> session = (*database)->Connect();
  if (!session.ok()) return session.status();
  return (*session)->InspectSchema();
}

// The schema every fresh database has: public and plpgsql.
constexpr char kEmpty[] =
    "schema public #standard public schema\n"
    "extension plpgsql in pg_catalog v1.0\n";

TEST(PqSchemaInspectorTest, EmptyDatabaseHasPublicAndPlpgsql) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  absl::StatusOr<DatabaseSchema> schema = Inspect(db.dsn());
  ASSERT_TRUE(schema.ok()) << schema.status();
  EXPECT_EQ(Dump(*schema), kEmpty);
}

constexpr char kEveryKindSql[] = R"sql(
CREATE SCHEMA app;
COMMENT ON SCHEMA app IS 'the app';
CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy');
ALTER TYPE app.mood ADD VALUE 'meh' BEFORE 'ok';
COMMENT ON TYPE app.mood IS 'feelings';
CREATE DOMAIN app.code AS varchar(8) COLLATE "C" DEFAULT 'x' NOT NULL
  CONSTRAINT code_upper CHECK (VALUE = upper(VALUE)) CONSTRAINT code_long CHECK (length(VALUE) > 0);
CREATE TYPE app.pair AS (a integer, b text COLLATE "C");
COMMENT ON TYPE app.pair IS 'two';
CREATE SEQUENCE app.counter AS integer START 10 INCREMENT 2 MINVALUE 5 MAXVALUE 1000 CACHE 3 CYCLE;
COMMENT ON SEQUENCE app.counter IS 'counts';
CREATE TABLE app.items (
  id bigserial PRIMARY KEY,
  label text COLLATE "C" NOT NULL DEFAULT 'none',
  n integer GENERATED BY DEFAULT AS IDENTITY,
  twice bigint GENERATED ALWAYS AS (id * 2) STORED,
  mood app.mood DEFAULT 'ok',
  code app.code,
  at timestamptz DEFAULT '2026-01-01 12:00+02',
  ratio double precision DEFAULT 0.1);
COMMENT ON TABLE app.items IS 'things';
COMMENT ON COLUMN app.items.label IS 'shown';
ALTER TABLE app.items ADD CONSTRAINT items_label_check CHECK (label <> '') NOT VALID;
COMMENT ON CONSTRAINT items_label_check ON app.items IS 'not empty';
CREATE UNLOGGED TABLE app.scratch (k integer);
CREATE TABLE app.children (
  item_id bigint REFERENCES app.items (id) ON DELETE CASCADE,
  during tsrange,
  EXCLUDE USING gist (during WITH &&),
  UNIQUE (item_id));
CREATE INDEX items_label_idx ON app.items (lower(label)) WHERE n > 0;
COMMENT ON INDEX app.items_label_idx IS 'by label';
CREATE VIEW app.item_labels AS SELECT id, label FROM app.items;
COMMENT ON VIEW app.item_labels IS 'labels';
CREATE MATERIALIZED VIEW app.item_count AS SELECT count(*) AS n FROM app.item_labels, app.scratch;
CREATE FUNCTION app.add(a integer, b integer DEFAULT 1) RETURNS integer
  LANGUAGE sql IMMUTABLE AS 'SELECT a + b';
COMMENT ON FUNCTION app.add(integer, integer) IS 'adds';
CREATE PROCEDURE app.touch_all() LANGUAGE sql AS 'UPDATE app.items SET label = label';
CREATE FUNCTION app.trg() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
CREATE TRIGGER items_trg AFTER INSERT ON app.items FOR EACH ROW EXECUTE FUNCTION app.trg();
COMMENT ON TRIGGER items_trg ON app.items IS 'fires';
CREATE AGGREGATE app.total(integer) (sfunc = int4pl, stype = integer);
)sql";

constexpr char kEveryKindModel[] = R"model(schema app #the app
schema public #standard public schema
extension plpgsql in pg_catalog v1.0
enum app.mood (sad,meh,ok,happy) #feelings
domain app.code character varying(8) default='x'::character varying notnull=1 collation=pg_catalog."C" # | code_long CHECK ((length((VALUE)::text) > 0)) | code_upper CHECK (((VALUE)::text = upper((VALUE)::text)))
type app.pair #two | a integer collation= | b text collation=pg_catalog."C"
sequence app.counter integer start=10 inc=2 min=5 max=1000 cache=3 cycle=1 owned=. #counts
sequence app.items_id_seq bigint start=1 inc=1 min=1 max=9223372036854775807 cache=1 cycle=0 owned=app.items.id #
table app.children unlogged=0 key= of= bound= #
  column item_id bigint default= notnull=0 identity= generated= collation= #
  column during tsrange default= notnull=0 identity= generated= collation= #
table app.items unlogged=0 key= of= bound= #things
  column id bigint default=nextval('app.items_id_seq'::regclass) notnull=1 identity= generated= collation= #
  column label text default='none'::text notnull=1 identity= generated= collation=pg_catalog."C" #shown
  column n integer default= notnull=1 identity=d generated= collation= #
  column twice bigint default= notnull=0 identity= generated=(id * 2) collation= #
  column mood app.mood default='ok'::app.mood notnull=0 identity= generated= collation= #
  column code app.code default= notnull=0 identity= generated= collation= #
  column at timestamp with time zone default='2026-01-01 10:00:00+00'::timestamp with time zone notnull=0 identity= generated= collation= #
  column ratio double precision default=0.1 notnull=0 identity= generated= collation= #
table app.scratch unlogged=1 key= of= bound= #
  column k integer default= notnull=0 identity= generated= collation= #
constraint app.children.children_during_excl x EXCLUDE USING gist (during WITH &&) #
constraint app.children.children_item_id_fkey f FOREIGN KEY (item_id) REFERENCES app.items(id) ON DELETE CASCADE #
constraint app.children.children_item_id_key u UNIQUE (item_id) #
constraint app.items.items_label_check c CHECK ((label <> ''::text)) NOT VALID #not empty
constraint app.items.items_pkey p PRIMARY KEY (id) #
index app.items_label_idx on items CREATE INDEX items_label_idx ON app.items USING btree (lower(label)) WHERE (n > 0) #by label
matview app.item_count reads app.item_labels,app.scratch #
 SELECT count(*) AS n
   FROM app.item_labels,
    app.scratch;
view app.item_labels reads app.items #labels
 SELECT items.id,
    items.label
   FROM app.items;
function app.add(a integer, b integer) #adds
CREATE OR REPLACE FUNCTION app.add(a integer, b integer DEFAULT 1)
 RETURNS integer
 LANGUAGE sql
 IMMUTABLE
AS $function$SELECT a + b$function$

procedure app.touch_all() #
CREATE OR REPLACE PROCEDURE app.touch_all()
 LANGUAGE sql
AS $procedure$UPDATE app.items SET label = label$procedure$

function app.trg() #
CREATE OR REPLACE FUNCTION app.trg()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$BEGIN RETURN NEW; END$function$

trigger app.items.items_trg CREATE TRIGGER items_trg AFTER INSERT ON app.items FOR EACH ROW EXECUTE FUNCTION app.trg() #fires
)model";

TEST(PqSchemaInspectorTest, EveryObjectKindWithItsFields) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  Exec(db.dsn(), kEveryKindSql);
  absl::StatusOr<DatabaseSchema> schema = Inspect(db.dsn());
  ASSERT_TRUE(schema.ok()) << schema.status();
  EXPECT_EQ(Dump(*schema), kEveryKindModel);
}

TEST(PqSchemaInspectorTest, SameModelWhateverTheSessionSettings) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  Exec(db.dsn(), kEveryKindSql);
  absl::StatusOr<DatabaseSchema> plain = Inspect(db.dsn());
  ASSERT_TRUE(plain.ok()) << plain.status();
  // New sessions find app first on their search_path, other date, time
  // zone, interval and float settings.
  Exec(db.dsn(),
       absl::StrCat("ALTER DATABASE ", db.name(), " SET search_path = app, public; ALTER DATABASE ",
                    db.name(), " SET TimeZone = 'Asia/Kolkata'; ALTER DATABASE ", db.name(),
                    " SET DateStyle = 'SQL, DMY'; ALTER DATABASE ", db.name(),
                    " SET IntervalStyle = 'sql_standard'; ALTER DATABASE ", db.name(),
                    " SET extra_float_digits = -3"));
  EXPECT_EQ(Query(db.dsn(), "SHOW search_path"), (Rows{{"app, public"}}));
  absl::StatusOr<DatabaseSchema> shifted = Inspect(db.dsn());
  ASSERT_TRUE(shifted.ok()) << shifted.status();
  EXPECT_EQ(Dump(*shifted), Dump(*plain));
  EXPECT_TRUE(*shifted == *plain);
}

TEST(PqSchemaInspectorTest, SessionSettingsAreUnchangedAfterwards) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  Exec(db.dsn(), kEveryKindSql);
  pqxx::connection connection(db.dsn());
  {
    pqxx::nontransaction tx(connection);
    tx.exec(
        "SET search_path = app; SET TimeZone = 'Asia/Kolkata'; SET DateStyle = 'SQL, DMY'; "
        "SET IntervalStyle = 'sql_standard'; SET extra_float_digits = -3");
  }
  absl::StatusOr<DatabaseSchema> schema = InspectPqSchema(connection, InspectOptions{});
  ASSERT_TRUE(schema.ok()) << schema.status();
  EXPECT_EQ(schema->tables.size(), 3u);
  pqxx::nontransaction tx(connection);
  const pqxx::row row = tx.exec1(
      "SELECT current_setting('search_path'), current_setting('TimeZone'), "
      "current_setting('DateStyle'), current_setting('IntervalStyle'), "
      "current_setting('extra_float_digits'), current_setting('transaction_read_only'), "
      "current_setting('transaction_isolation')");
  EXPECT_EQ(row[0].as<std::string>(), "app");
  EXPECT_EQ(row[1].as<std::string>(), "Asia/Kolkata");
  EXPECT_EQ(row[2].as<std::string>(), "SQL, DMY");
  EXPECT_EQ(row[3].as<std::string>(), "sql_standard");
  EXPECT_EQ(row[4].as<std::string>(), "-3");
  EXPECT_EQ(row[5].as<std::string>(), "off");
  EXPECT_EQ(row[6].as<std::string>(), "read committed");
}

TEST(PqSchemaInspectorTest, BookkeepingTablesAreLeftOutInEverySchema) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  {
    absl::StatusOr<std::unique_ptr<Database>> database = OpenPqDatabase(db.dsn(), {});
    ASSERT_TRUE(database.ok()) << database.status();
    absl::StatusOr<std::unique_ptr<Session>> session = (*database)->Connect();
    ASSERT_TRUE(session.ok()) << session.status();
    ASSERT_TRUE((*session)->EnsureTables().ok());
  }
  Exec(db.dsn(),
       "CREATE SCHEMA ops; CREATE TABLE ops.alembic_version (version_num varchar(32) PRIMARY "
       "KEY); CREATE TABLE ops.my_history (id bigserial PRIMARY KEY, note text); "
       "CREATE INDEX my_history_note ON ops.my_history (note); CREATE TABLE public.kept (a int)");
  EXPECT_EQ(Query(db.dsn(),
                  "SELECT count(*) FROM pg_tables WHERE tablename IN ('alembic_version', "
                  "'schemad_history', 'schemad_state', 'schemad_run')"),
            (Rows{{"5"}}));
  absl::StatusOr<DatabaseSchema> schema = Inspect(db.dsn());
  ASSERT_TRUE(schema.ok()) << schema.status();
  const std::string kept =
      "table public.kept unlogged=0 key= of= bound= #\n"
      "  column a integer default= notnull=0 identity= generated= collation= #\n";
  EXPECT_EQ(Dump(*schema),
            absl::StrCat("schema ops #\n"
                         "schema public #standard public schema\n"
                         "extension plpgsql in pg_catalog v1.0\n"
                         "sequence ops.my_history_id_seq bigint start=1 inc=1 min=1 "
                         "max=9223372036854775807 cache=1 cycle=0 owned=ops.my_history.id #\n"
                         "table ops.my_history unlogged=0 key= of= bound= #\n"
                         "  column id bigint default=nextval('ops.my_history_id_seq'::regclass) "
                         "notnull=1 identity= generated= collation= #\n"
                         "  column note text default= notnull=0 identity= generated= collation= "
                         "#\n",
                         kept,
                         "constraint ops.my_history.my_history_pkey p PRIMARY KEY (id) #\n"
                         "index ops.my_history_note on my_history CREATE INDEX my_history_note ON "
                         "ops.my_history USING btree (note) #\n"));
  // The names the session is configured with are the ones left out, with
  // their sequences, constraints and indexes.
  PqOptions options;
  options.tables.schema = "ops";
  options.tables.history_table = "my_history";
  schema = Inspect(db.dsn(), options);
  ASSERT_TRUE(schema.ok()) << schema.status();
  EXPECT_THAT(Dump(*schema), Not(HasSubstr("my_history")));
  EXPECT_THAT(Dump(*schema), HasSubstr("table public.schemad_history "));
  EXPECT_THAT(Dump(*schema), Not(HasSubstr("alembic_version")));
  EXPECT_THAT(Dump(*schema), Not(HasSubstr("schemad_state")));
  // The schema made for the bookkeeping alone is bookkeeping too (a site
  // with `version_table: ops.alembic_version` has no drift for it)...
  EXPECT_THAT(Dump(*schema), Not(HasSubstr("schema ops")));
  // ... until something of the model lives there.
  Exec(db.dsn(), "CREATE TABLE ops.settings (k text)");
  schema = Inspect(db.dsn(), options);
  ASSERT_TRUE(schema.ok()) << schema.status();
  EXPECT_THAT(Dump(*schema), HasSubstr("schema ops #"));
  EXPECT_THAT(Dump(*schema), HasSubstr("table ops.settings "));
}

TEST(PqSchemaInspectorTest, ExtensionObjectsAreLeftOut) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  Exec(db.dsn(),
       "CREATE EXTENSION citext; CREATE EXTENSION pg_trgm; CREATE TABLE t (name public.citext)");
  absl::StatusOr<DatabaseSchema> schema = Inspect(db.dsn());
  ASSERT_TRUE(schema.ok()) << schema.status();
  const Rows versions =
      Query(db.dsn(),
            "SELECT extversion FROM pg_extension WHERE extname IN ('citext', 'pg_trgm') "
            "ORDER BY extname");
  ASSERT_EQ(versions.size(), 2u);
  // citext's type, functions, operators and casts; pg_trgm's functions.
  EXPECT_EQ(
      Dump(*schema),
      absl::StrCat("schema public #standard public schema\n"
                   "extension citext in public v",
                   versions[0][0],
                   "\n"
                   "extension pg_trgm in public v",
                   versions[1][0],
                   "\n"
                   "extension plpgsql in pg_catalog v1.0\n"
                   "table public.t unlogged=0 key= of= bound= #\n"
                   "  column name public.citext default= notnull=0 identity= generated= collation= "
                   "#\n"));
}

TEST(PqSchemaInspectorTest, PartitionsAndChildrenLeaveOutWhatTheyInherit) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  Exec(db.dsn(), R"sql(
CREATE TABLE events (id bigint NOT NULL, at timestamptz NOT NULL, kind text,
  PRIMARY KEY (id, at), CHECK (id > 0)) PARTITION BY RANGE (at);
CREATE INDEX events_kind_idx ON events (kind);
CREATE FUNCTION trg() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
CREATE TRIGGER events_trg AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION trg();
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01 00:00+00') TO ('2027-01-01 00:00+00');
CREATE TABLE events_old (id bigint NOT NULL, at timestamptz NOT NULL, kind text,
  CONSTRAINT events_id_check CHECK (id > 0));
ALTER TABLE events ATTACH PARTITION events_old DEFAULT;
CREATE TABLE refs (id bigint, at timestamptz, FOREIGN KEY (id, at) REFERENCES events);
CREATE TABLE parent (a int, b text);
CREATE TABLE child (c int) INHERITS (parent);
)sql");
  absl::StatusOr<DatabaseSchema> schema = Inspect(db.dsn());
  ASSERT_TRUE(schema.ok()) << schema.status();
  std::string dump = Dump(*schema);
  const size_t trg = dump.find("function public.trg()");
  ASSERT_NE(trg, std::string::npos) << dump;
  dump.erase(trg, dump.find("trigger ", trg) - trg);
  EXPECT_EQ(dump,
            "schema public #standard public schema\n"
            "extension plpgsql in pg_catalog v1.0\n"
            "table public.child unlogged=0 key= of= bound= #\n"
            "  column c integer default= notnull=0 identity= generated= collation= #\n"
            "table public.events unlogged=0 key=RANGE (at) of= bound= #\n"
            "  column id bigint default= notnull=1 identity= generated= collation= #\n"
            "  column at timestamp with time zone default= notnull=1 identity= generated= "
            "collation= #\n"
            "  column kind text default= notnull=0 identity= generated= collation= #\n"
            "table public.events_2026 unlogged=0 key= of=public.events bound=FOR VALUES FROM "
            "('2026-01-01 00:00:00+00') TO ('2027-01-01 00:00:00+00') #\n"
            "table public.events_old unlogged=0 key= of=public.events bound=DEFAULT #\n"
            "table public.parent unlogged=0 key= of= bound= #\n"
            "  column a integer default= notnull=0 identity= generated= collation= #\n"
            "  column b text default= notnull=0 identity= generated= collation= #\n"
            "table public.refs unlogged=0 key= of= bound= #\n"
            "  column id bigint default= notnull=0 identity= generated= collation= #\n"
            "  column at timestamp with time zone default= notnull=0 identity= generated= "
            "collation= #\n"
            "constraint public.events.events_id_check c CHECK ((id > 0)) #\n"
            "constraint public.events.events_pkey p PRIMARY KEY (id, at) #\n"
            "constraint public.refs.refs_id_at_fkey f FOREIGN KEY (id, at) REFERENCES "
            "public.events(id, at) #\n"
            "index public.events_kind_idx on events CREATE INDEX events_kind_idx ON ONLY "
            "public.events USING btree (kind) #\n"
            "trigger public.events.events_trg CREATE TRIGGER events_trg AFTER INSERT ON "
            "public.events FOR EACH ROW EXECUTE FUNCTION public.trg() #\n");
}

TEST(PqSchemaInspectorTest, ClosedConnectionIsAnErrorStatus) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  pqxx::connection connection(db.dsn());
  connection.disconnect();
  absl::StatusOr<DatabaseSchema> schema = InspectPqSchema(connection, InspectOptions{});
  ASSERT_FALSE(schema.ok());
  EXPECT_EQ(schema.status().code(), absl::StatusCode::kUnavailable) << schema.status();
  EXPECT_THAT(schema.status().message(), HasSubstr("connection"));
}

TEST(PqSchemaInspectorTest, LostSessionIsUnavailableWithoutThePassword) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  absl::StatusOr<std::unique_ptr<Database>> database = OpenPqDatabase(db.dsn(), {});
  ASSERT_TRUE(database.ok()) << database.status();
  absl::StatusOr<std::unique_ptr<Session>> session = (*database)->Connect();
  ASSERT_TRUE(session.ok()) << session.status();
  ASSERT_TRUE((*session)->InspectSchema().ok());
  Exec(db.dsn(), absl::StrCat("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                              "datname = '",
                              db.name(), "' AND pid <> pg_backend_pid()"));
  absl::StatusOr<DatabaseSchema> schema = (*session)->InspectSchema();
  ASSERT_FALSE(schema.ok());
  EXPECT_EQ(schema.status().code(), absl::StatusCode::kUnavailable) << schema.status();
  EXPECT_THAT(schema.status().message(), HasSubstr("inspecting the schema"));
  EXPECT_THAT(schema.status().message(), Not(HasSubstr(db.cluster().password)));
  // And stays so, without another round trip.
  schema = (*session)->InspectSchema();
  EXPECT_EQ(schema.status().code(), absl::StatusCode::kUnavailable) << schema.status();
}

TEST(PqSchemaInspectorTest, OpenTransactionIsRefused) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  absl::StatusOr<std::unique_ptr<Database>> database = OpenPqDatabase(db.dsn(), {});
  ASSERT_TRUE(database.ok()) << database.status();
  absl::StatusOr<std::unique_ptr<Session>> session = (*database)->Connect();
  ASSERT_TRUE(session.ok()) << session.status();
  absl::StatusOr<std::unique_ptr<Transaction>> tx = (*session)->Begin();
  ASSERT_TRUE(tx.ok()) << tx.status();
  EXPECT_EQ((*session)->InspectSchema().status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace schemad::store
