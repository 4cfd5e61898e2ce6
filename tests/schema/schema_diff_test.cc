// Unit tests of the differ and renderer (schema_diff.h) on models built in
// code; tests/store/*schema*_pgtest.cc check the DDL on a real server.
#include "service/schema/schema_diff.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace schemad::schema {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

Column Col(std::string name, std::string type, bool not_null = false,
           std::string default_expr = "") {
  Column column;
  column.name = std::move(name);
  column.type = std::move(type);
  column.not_null = not_null;
  column.default_expr = std::move(default_expr);
  return column;
}

Table MakeTable(std::string name, std::vector<Column> columns) {
  Table table;
  table.schema = "public";
  table.name = std::move(name);
  table.columns = std::move(columns);
  return table;
}

Constraint MakeConstraint(std::string table, std::string name, char kind, std::string definition) {
  Constraint constraint;
  constraint.schema = "public";
  constraint.table = std::move(table);
  constraint.name = std::move(name);
  constraint.kind = kind;
  constraint.definition = std::move(definition);
  return constraint;
}

View MakeView(std::string name, std::string definition, std::vector<std::string> depends_on = {}) {
  View view;
  view.schema = "public";
  view.name = std::move(name);
  view.definition = std::move(definition);
  view.depends_on = std::move(depends_on);
  return view;
}

// Each change's statements, flattened, in order.
std::vector<std::string> Statements(const std::vector<SchemaChange>& changes) {
  std::vector<std::string> statements;
  for (const SchemaChange& change : changes) {
    statements.insert(statements.end(), change.statements.begin(), change.statements.end());
  }
  return statements;
}

DatabaseSchema Devices() {
  DatabaseSchema schema;
  schema.schemas = {{"public", ""}};
  schema.tables = {MakeTable("devices", {Col("id", "integer", true), Col("name", "text")})};
  schema.constraints = {MakeConstraint("devices", "devices_pkey", 'p', "PRIMARY KEY (id)")};
  return schema;
}

TEST(SchemaDiffTest, SameSchemaHasNoChanges) {
  EXPECT_THAT(DiffSchemas(Devices(), Devices()), IsEmpty());
}

TEST(SchemaDiffTest, ColumnOrderIsIgnored) {
  DatabaseSchema reordered = Devices();
  std::swap(reordered.tables[0].columns[0], reordered.tables[0].columns[1]);
  EXPECT_THAT(DiffSchemas(Devices(), reordered), IsEmpty());
}

TEST(SchemaDiffTest, CreatesTypesBeforeTablesAndForeignKeysAfterKeys) {
  DatabaseSchema from;
  DatabaseSchema to = Devices();
  to.schemas = {};
  EnumType status;
  status.schema = "public";
  status.name = "status";
  status.labels = {"ok", "fault"};
  to.enums = {status};
  to.tables.push_back(
      MakeTable("readings", {Col("device_id", "integer", true),
                             Col("state", "public.status", false, "'ok'::public.status")}));
  to.constraints.push_back(MakeConstraint("readings", "readings_device_fk", 'f',
                                          "FOREIGN KEY (device_id) REFERENCES public.devices(id)"));
  std::vector<SchemaChange> changes = DiffSchemas(from, to);
  EXPECT_THAT(
      Statements(changes),
      ElementsAre("CREATE TYPE public.status AS ENUM ('ok', 'fault')",
                  "CREATE TABLE public.devices (\n    id integer NOT NULL,\n    name text\n)",
                  "CREATE TABLE public.readings (\n    device_id integer NOT NULL,\n"
                  "    state public.status DEFAULT 'ok'::public.status\n)",
                  "ALTER TABLE public.devices ADD CONSTRAINT devices_pkey PRIMARY KEY (id)",
                  "ALTER TABLE public.readings ADD CONSTRAINT readings_device_fk FOREIGN "
                  "KEY (device_id) REFERENCES public.devices(id)"));
  for (const SchemaChange& change : changes) {
    EXPECT_EQ(change.safety, ChangeSafety::kSafe) << change.description;  // all on new tables
  }
  // The inverse drops in the reverse order: the foreign key first (the
  // table it references is dropped too: DROP TABLE would refuse).
  EXPECT_THAT(Statements(DiffSchemas(to, from)),
              ElementsAre("ALTER TABLE public.readings DROP CONSTRAINT readings_device_fk",
                          "DROP TABLE public.devices", "DROP TABLE public.readings",
                          "DROP TYPE public.status"));
}

TEST(SchemaDiffTest, ColumnChangesAreClassified) {
  DatabaseSchema from = Devices();
  from.tables[0].columns.push_back(Col("code", "character varying(20)"));
  from.tables[0].columns.push_back(Col("reading", "integer", false, "0"));
  from.tables[0].columns.push_back(Col("price", "numeric(10,2)"));
  DatabaseSchema to = Devices();
  to.tables[0].columns.push_back(Col("code", "character varying(64)", true));
  to.tables[0].columns.push_back(Col("reading", "bigint", false, "1"));
  to.tables[0].columns.push_back(Col("price", "numeric(8,2)"));
  std::vector<SchemaChange> changes = DiffSchemas(from, to);
  ASSERT_EQ(changes.size(), 3u);
  EXPECT_EQ(changes[0].object, "public.devices.code");
  EXPECT_EQ(changes[0].safety, ChangeSafety::kRewrite);  // SET NOT NULL scans; widening is free
  EXPECT_THAT(changes[0].statements,
              ElementsAre("ALTER TABLE public.devices ALTER COLUMN code TYPE character varying(64) "
                          "USING code::character varying(64)",
                          "ALTER TABLE public.devices ALTER COLUMN code SET NOT NULL"));
  EXPECT_EQ(changes[1].object, "public.devices.reading");
  EXPECT_EQ(changes[1].safety, ChangeSafety::kRewrite);
  EXPECT_THAT(changes[1].statements,
              ElementsAre("ALTER TABLE public.devices ALTER COLUMN reading DROP DEFAULT",
                          "ALTER TABLE public.devices ALTER COLUMN reading TYPE bigint USING "
                          "reading::bigint",
                          "ALTER TABLE public.devices ALTER COLUMN reading SET DEFAULT 1"));
  EXPECT_THAT(changes[1].description, HasSubstr("type integer -> bigint, default 0 -> 1"));
  EXPECT_EQ(changes[2].safety, ChangeSafety::kDestructive);  // narrowing numeric
}

TEST(SchemaDiffTest, DroppedColumnIsDestructiveWithARenameHint) {
  DatabaseSchema to = Devices();
  to.tables[0].columns[1].name = "label";
  std::vector<SchemaChange> changes = DiffSchemas(Devices(), to);
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[0].action, ChangeAction::kDrop);
  EXPECT_EQ(changes[0].safety, ChangeSafety::kDestructive);
  EXPECT_THAT(changes[0].hint, HasSubstr("RENAME COLUMN name TO label"));
  EXPECT_EQ(changes[1].statements[0], "ALTER TABLE public.devices ADD COLUMN label text");
  EXPECT_TRUE(HasDestructive(changes));
  EXPECT_THAT(RenderSql(changes), HasSubstr("-- DESTRUCTIVE: drop column public.devices.name"));
}

TEST(SchemaDiffTest, DroppedTableHintsAtARename) {
  DatabaseSchema to = Devices();
  to.tables[0].name = "machines";
  to.constraints[0].table = "machines";
  std::vector<SchemaChange> changes = DiffSchemas(Devices(), to);
  ASSERT_FALSE(changes.empty());
  bool hinted = false;
  for (const SchemaChange& change : changes) {
    if (change.object == "public.machines" && change.action == ChangeAction::kCreate) {
      EXPECT_THAT(change.hint, HasSubstr("ALTER TABLE public.devices RENAME TO machines"));
      hinted = true;
    }
  }
  EXPECT_TRUE(hinted);
}

TEST(SchemaDiffTest, EnumValuesAreAddedInPlaceAndRemovalRecreatesTheType) {
  DatabaseSchema from = Devices();
  EnumType status;
  status.schema = "public";
  status.name = "status";
  status.labels = {"ok", "fault"};
  from.enums = {status};
  from.tables[0].columns.push_back(Col("state", "public.status", false, "'ok'::public.status"));
  DatabaseSchema added = from;
  added.enums[0].labels = {"new", "ok", "degraded", "fault", "retired"};
  EXPECT_THAT(Statements(DiffSchemas(from, added)),
              ElementsAre("ALTER TYPE public.status ADD VALUE 'new' BEFORE 'ok'",
                          "ALTER TYPE public.status ADD VALUE 'degraded' BEFORE 'fault'",
                          "ALTER TYPE public.status ADD VALUE 'retired' AFTER 'fault'"));
  DatabaseSchema removed = from;
  removed.enums[0].labels = {"ok"};
  std::vector<SchemaChange> changes = DiffSchemas(from, removed);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].safety, ChangeSafety::kDestructive);
  EXPECT_THAT(changes[0].statements,
              ElementsAre("ALTER TYPE public.status RENAME TO status__schemad_old",
                          "CREATE TYPE public.status AS ENUM ('ok')",
                          "ALTER TABLE public.devices ALTER COLUMN state DROP DEFAULT",
                          "ALTER TABLE public.devices ALTER COLUMN state TYPE public.status USING "
                          "state::text::public.status",
                          "ALTER TABLE public.devices ALTER COLUMN state SET DEFAULT "
                          "'ok'::public.status",
                          "DROP TYPE public.status__schemad_old"));
}

TEST(SchemaDiffTest, RecreatedEnumConvertsOnlyTheColumnsThatExistThen) {
  EnumType status;
  status.schema = "public";
  status.name = "status";
  status.labels = {"ok", "fault"};
  DatabaseSchema from = Devices();
  from.enums = {status};
  DatabaseSchema to = from;
  to.enums[0].labels = {"fault", "ok"};
  // Added in `to`: created with the new type after the enum change.
  to.tables[0].columns.push_back(Col("state", "public.status", false, "'ok'::public.status"));
  std::vector<SchemaChange> changes = DiffSchemas(from, to);
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_THAT(changes[0].statements,
              ElementsAre("ALTER TYPE public.status RENAME TO status__schemad_old",
                          "CREATE TYPE public.status AS ENUM ('fault', 'ok')",
                          "DROP TYPE public.status__schemad_old"));
  EXPECT_THAT(changes[1].statements,
              ElementsAre("ALTER TABLE public.devices ADD COLUMN state public.status DEFAULT "
                          "'ok'::public.status"));
}

TEST(SchemaDiffTest, ChangedCompositeTypeThatAColumnStoresIsRecreated) {
  CompositeType reading;
  reading.schema = "public";
  reading.name = "reading_t";
  reading.attributes = {{"v", "numeric(10,2)", ""}, {"unit", "text", ""}};
  DatabaseSchema from = Devices();
  from.composite_types = {reading};
  from.tables[0].columns.push_back(Col("sample", "public.reading_t"));
  DatabaseSchema to = from;
  to.composite_types[0].attributes = {{"v", "double precision", ""}, {"at", "timestamp", ""}};
  std::vector<SchemaChange> changes = DiffSchemas(from, to);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_THAT(
      changes[0].statements,
      ElementsAre("ALTER TYPE public.reading_t RENAME TO reading_t__schemad_old",
                  "CREATE TYPE public.reading_t AS (v double precision, at timestamp)",
                  "ALTER TABLE public.devices ALTER COLUMN sample TYPE public.reading_t USING CASE "
                  "WHEN sample IS NULL THEN NULL ELSE ROW((sample).v::double precision, "
                  "NULL::timestamp)::public.reading_t END",
                  "DROP TYPE public.reading_t__schemad_old"));
  // Without a column storing it, the type is altered in place.
  from.tables[0].columns.pop_back();
  to.tables[0].columns.pop_back();
  EXPECT_THAT(Statements(DiffSchemas(from, to)),
              ElementsAre("ALTER TYPE public.reading_t DROP ATTRIBUTE unit",
                          "ALTER TYPE public.reading_t ALTER ATTRIBUTE v TYPE double precision",
                          "ALTER TYPE public.reading_t ADD ATTRIBUTE at timestamp"));
}

TEST(SchemaDiffTest, IdentityIsDroppedBeforeASequenceOfItsNameIsCreated) {
  DatabaseSchema from = Devices();
  from.tables[0].columns[0].identity = 'a';
  DatabaseSchema to = Devices();
  to.tables[0].columns[0].default_expr = "nextval('public.devices_id_seq'::regclass)";
  Sequence sequence;
  sequence.schema = "public";
  sequence.name = "devices_id_seq";
  sequence.data_type = "integer";
  sequence.max_value = 2147483647;
  sequence.owned_by_table = "public.devices";
  sequence.owned_by_column = "id";
  to.sequences = {sequence};
  const std::vector<std::string> statements = Statements(DiffSchemas(from, to));
  ASSERT_GE(statements.size(), 3u);
  EXPECT_EQ(statements[0], "ALTER TABLE public.devices ALTER COLUMN id DROP IDENTITY");
  EXPECT_THAT(statements[1], HasSubstr("CREATE SEQUENCE public.devices_id_seq"));
}

TEST(SchemaDiffTest, ForeignKeyBetweenDroppedTablesIsDroppedFirst) {
  DatabaseSchema from = Devices();
  from.tables.push_back(MakeTable("readings", {Col("device_id", "integer", true)}));
  from.constraints.push_back(
      MakeConstraint("readings", "readings_device_id_fkey", 'f',
                     "FOREIGN KEY (device_id) REFERENCES public.devices(id)"));
  DatabaseSchema to;
  to.schemas = from.schemas;
  const std::vector<std::string> statements = Statements(DiffSchemas(from, to));
  ASSERT_EQ(statements.size(), 3u);
  EXPECT_EQ(statements[0], "ALTER TABLE public.readings DROP CONSTRAINT readings_device_id_fkey");
  EXPECT_THAT(statements, testing::Contains("DROP TABLE public.devices"));
  EXPECT_THAT(statements, testing::Contains("DROP TABLE public.readings"));
}

TEST(SchemaDiffTest, ChangedViewRecreatesTheViewsReadingIt) {
  DatabaseSchema from = Devices();
  from.views = {MakeView("named", " SELECT id, name FROM public.devices;"),
                MakeView("named_count", " SELECT count(*) FROM public.named;", {"public.named"}),
                MakeView("other", " SELECT 1;")};
  DatabaseSchema to = from;
  to.views[0].definition = " SELECT id, upper(name) AS name FROM public.devices;";
  EXPECT_THAT(Statements(DiffSchemas(from, to)),
              ElementsAre("DROP VIEW public.named_count", "DROP VIEW public.named",
                          "CREATE VIEW public.named AS\n SELECT id, upper(name) AS name FROM "
                          "public.devices",
                          "CREATE VIEW public.named_count AS\n SELECT count(*) FROM public.named"));
}

TEST(SchemaDiffTest, ViewIsRecreatedAroundAColumnTypeChangeOfItsTable) {
  DatabaseSchema from = Devices();
  from.views = {MakeView("named", " SELECT id, name FROM public.devices;", {"public.devices"})};
  DatabaseSchema to = from;
  to.tables[0].columns[1].type = "character varying(64)";
  EXPECT_THAT(Statements(DiffSchemas(from, to)),
              ElementsAre("DROP VIEW public.named",
                          "ALTER TABLE public.devices ALTER COLUMN name TYPE character varying(64) "
                          "USING name::character varying(64)",
                          "CREATE VIEW public.named AS\n SELECT id, name FROM public.devices"));
  to.tables[0].columns[1].type = "text";
  to.tables[0].columns[1].default_expr = "'x'::text";  // a default alone leaves the view be
  EXPECT_THAT(Statements(DiffSchemas(from, to)),
              ElementsAre("ALTER TABLE public.devices ALTER COLUMN name SET DEFAULT 'x'::text"));
}

TEST(SchemaDiffTest, TypesAndFunctionsAreDroppedAfterTheColumnsStopUsingThem) {
  DatabaseSchema from = Devices();
  EnumType status;
  status.schema = "public";
  status.name = "status";
  status.labels = {"ok"};
  from.enums = {status};
  from.tables[0].columns.push_back(Col("state", "public.status"));
  DatabaseSchema to = Devices();
  to.tables[0].columns.push_back(Col("state", "text"));
  EXPECT_THAT(
      Statements(DiffSchemas(from, to)),
      ElementsAre("ALTER TABLE public.devices ALTER COLUMN state TYPE text USING state::text",
                  "DROP TYPE public.status"));
}

TEST(SchemaDiffTest, IndexOnAnExistingTableIsARewriteAndPartitionedIndexesLoseOnly) {
  DatabaseSchema to = Devices();
  Index index;
  index.schema = "public";
  index.table = "devices";
  index.name = "devices_name_idx";
  index.definition = "CREATE INDEX devices_name_idx ON ONLY public.devices USING btree (name)";
  to.indexes = {index};
  std::vector<SchemaChange> changes = DiffSchemas(Devices(), to);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].safety, ChangeSafety::kRewrite);
  EXPECT_THAT(changes[0].description, HasSubstr("CONCURRENTLY"));
  EXPECT_THAT(changes[0].statements,
              ElementsAre("CREATE INDEX devices_name_idx ON public.devices USING btree (name)"));
}

TEST(SchemaDiffTest, RecreatedPrimaryKeyRecreatesTheForeignKeysOnIt) {
  DatabaseSchema from = Devices();
  from.tables.push_back(MakeTable("readings", {Col("device_id", "integer")}));
  from.constraints.push_back(MakeConstraint(
      "readings", "readings_fk", 'f', "FOREIGN KEY (device_id) REFERENCES public.devices(id)"));
  DatabaseSchema to = from;
  to.constraints[0].definition = "PRIMARY KEY (id) DEFERRABLE";
  EXPECT_THAT(Statements(DiffSchemas(from, to)),
              ElementsAre("ALTER TABLE public.readings DROP CONSTRAINT readings_fk",
                          "ALTER TABLE public.devices DROP CONSTRAINT devices_pkey",
                          "ALTER TABLE public.devices ADD CONSTRAINT devices_pkey PRIMARY KEY (id) "
                          "DEFERRABLE",
                          "ALTER TABLE public.readings ADD CONSTRAINT readings_fk FOREIGN KEY "
                          "(device_id) REFERENCES public.devices(id)"));
}

TEST(SchemaDiffTest, SequenceOwnedByADroppedTableGoesWithIt) {
  DatabaseSchema from = Devices();
  Sequence sequence;
  sequence.schema = "public";
  sequence.name = "devices_id_seq";
  sequence.data_type = "integer";
  sequence.max_value = 2147483647;
  sequence.owned_by_table = "public.devices";
  sequence.owned_by_column = "id";
  from.sequences = {sequence};
  DatabaseSchema to;
  to.schemas = from.schemas;
  EXPECT_THAT(
      Statements(DiffSchemas(from, to)),
      ElementsAre("DROP TABLE public.devices", "DROP SEQUENCE IF EXISTS public.devices_id_seq"));
  EXPECT_THAT(
      Statements(DiffSchemas(to, from)),
      ElementsAre("CREATE SEQUENCE public.devices_id_seq AS integer INCREMENT BY 1 MINVALUE "
                  "1 MAXVALUE 2147483647 START WITH 1 CACHE 1 NO CYCLE",
                  "CREATE TABLE public.devices (\n    id integer NOT NULL,\n    name text\n)",
                  "ALTER SEQUENCE public.devices_id_seq OWNED BY public.devices.id",
                  "ALTER TABLE public.devices ADD CONSTRAINT devices_pkey PRIMARY KEY (id)"));
}

TEST(SchemaDiffTest, CommentsFollowTheirObjects) {
  DatabaseSchema to = Devices();
  to.tables[0].comment = "field devices";
  to.tables[0].columns[1].comment = "it's the label";
  EXPECT_THAT(Statements(DiffSchemas(Devices(), to)),
              ElementsAre("COMMENT ON COLUMN public.devices.name IS 'it''s the label'",
                          "COMMENT ON TABLE public.devices IS 'field devices'"));
  EXPECT_THAT(Statements(DiffSchemas(to, Devices())),
              ElementsAre("COMMENT ON COLUMN public.devices.name IS NULL",
                          "COMMENT ON TABLE public.devices IS NULL"));
}

TEST(SchemaDiffTest, QuotesLikePostgres) {
  EXPECT_EQ(QuoteIdent("sensor_data"), "sensor_data");
  EXPECT_EQ(QuoteIdent("user"), "\"user\"");
  EXPECT_EQ(QuoteIdent("SensorData"), "\"SensorData\"");
  EXPECT_EQ(QuoteIdent("1st"), "\"1st\"");
  EXPECT_EQ(QuoteIdent("a\"b"), "\"a\"\"b\"");
  EXPECT_EQ(QuoteIdent("status"), "status");  // unreserved keyword
  EXPECT_EQ(QualifiedName("My Schema", "t"), "\"My Schema\".t");
  EXPECT_EQ(QuoteLiteral("it's"), "'it''s'");
}

}  // namespace
}  // namespace schemad::schema
