// Desired-state loading (schema_build/desired_state.h) and the schema
// model's JSON form (schema_build/schema_json.h): pure logic, no server.
#include "service/schema_build/desired_state.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/schema_build/schema_json.h"

namespace schemad::schema_build {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::string> Texts(const std::vector<engine::SqlStatement>& statements) {
  std::vector<std::string> texts;
  for (const engine::SqlStatement& statement : statements) texts.push_back(statement.text);
  return texts;
}

TEST(DesiredStatementsTest, KeepsDdlWithItsLines) {
  absl::StatusOr<std::vector<engine::SqlStatement>> statements =
      DesiredStatements("CREATE TABLE t (a int);\n\nCREATE INDEX i\n  ON t (a);\n", "schema.sql");
  ASSERT_TRUE(statements.ok()) << statements.status();
  ASSERT_EQ(statements->size(), 2u);
  EXPECT_EQ((*statements)[0].line, 1);
  EXPECT_EQ((*statements)[1].line, 3);
  EXPECT_EQ((*statements)[1].text, "CREATE INDEX i\n  ON t (a)");
}

TEST(DesiredStatementsTest, LeavesOutOwnersPrivilegesAndPgDumpRestrictLines) {
  const std::string dump =
      "\\restrict AbCdEf123\n"
      "SET statement_timeout = 0;\n"
      "CREATE TABLE public.t (a integer);\n"
      "ALTER TABLE public.t OWNER TO app;\n"
      "-- Name: t; Type: ACL\n"
      "GRANT SELECT ON TABLE public.t TO reader;\n"
      "REVOKE ALL ON SCHEMA public FROM PUBLIC;\n"
      "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO reader;\n"
      "ALTER SCHEMA public OWNER TO pg_database_owner;\n"
      "ALTER TABLE public.t ADD COLUMN owner_to text;\n"
      "\\unrestrict AbCdEf123\n";
  absl::StatusOr<std::vector<engine::SqlStatement>> statements = DesiredStatements(dump, "d.sql");
  ASSERT_TRUE(statements.ok()) << statements.status();
  EXPECT_THAT(Texts(*statements),
              ElementsAre("SET statement_timeout = 0", "CREATE TABLE public.t (a integer)",
                          "ALTER TABLE public.t ADD COLUMN owner_to text"));
  // Per-database statements that merely look server-wide are kept.
  absl::StatusOr<std::vector<engine::SqlStatement>> mapping = DesiredStatements(
      "CREATE USER MAPPING FOR app SERVER plant OPTIONS (user 'x');\n", "fdw.sql");
  ASSERT_TRUE(mapping.ok()) << mapping.status();
  EXPECT_EQ(mapping->size(), 1u);
  EXPECT_EQ((*statements)[1].line, 3);
}

TEST(DesiredStatementsTest, RefusesOtherMetaCommandsNamingFileAndLine) {
  absl::StatusOr<std::vector<engine::SqlStatement>> statements =
      DesiredStatements("CREATE TABLE t (a int);\n\\connect other\n", "dir/schema.sql");
  ASSERT_FALSE(statements.ok());
  EXPECT_EQ(statements.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(statements.status().message(), HasSubstr("dir/schema.sql:2"));
  EXPECT_THAT(statements.status().message(), HasSubstr("\\connect"));
}

TEST(DesiredStatementsTest, RefusesServerWideStatements) {
  for (const char* statement :
       {"CREATE DATABASE other", "DROP ROLE app", "CREATE USER app",
        "ALTER SYSTEM SET work_mem = 1", "/* leading */ CREATE TABLESPACE fast LOCATION '/x'",
        "alter database x set y = 1"}) {
    absl::StatusOr<std::vector<engine::SqlStatement>> statements =
        DesiredStatements(absl::StrCat("CREATE TABLE t (a int);\n", statement, ";\n"), "s.sql");
    ASSERT_FALSE(statements.ok()) << statement;
    EXPECT_THAT(statements.status().message(), HasSubstr("s.sql:2")) << statement;
    EXPECT_THAT(statements.status().message(), HasSubstr("acts on the server")) << statement;
  }
}

TEST(DesiredStatementsTest, SplitErrorNamesTheFile) {
  absl::StatusOr<std::vector<engine::SqlStatement>> statements =
      DesiredStatements("CREATE TABLE t (a int);\nSELECT 'open;\n", "bad.sql");
  ASSERT_FALSE(statements.ok());
  EXPECT_THAT(statements.status().message(), HasSubstr("bad.sql"));
  EXPECT_THAT(statements.status().message(), HasSubstr("line 2"));
}

class LoadDesiredStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("schemad_desired_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
  }
  std::filesystem::path dir_;
};

TEST_F(LoadDesiredStateTest, ReadsADirectorysSqlFilesInNameOrder) {
  Write("20_tables.sql", "CREATE TABLE b (a int);");
  Write("10_types.sql", "CREATE TYPE s AS ENUM ('x');");
  Write("README.md", "not sql");
  std::filesystem::create_directories(dir_ / "nested");
  Write("nested/99.sql", "CREATE TABLE ignored (a int);");
  absl::StatusOr<std::vector<DesiredStateFile>> files = LoadDesiredState(dir_.string());
  ASSERT_TRUE(files.ok()) << files.status();
  ASSERT_EQ(files->size(), 2u);
  EXPECT_THAT((*files)[0].path, ::testing::EndsWith("10_types.sql"));
  EXPECT_THAT((*files)[1].path, ::testing::EndsWith("20_tables.sql"));
  EXPECT_EQ((*files)[1].statements[0].text, "CREATE TABLE b (a int)");
  EXPECT_EQ((*files)[0].sha256.size(), 64u);
  EXPECT_NE((*files)[0].sha256, (*files)[1].sha256);
}

TEST_F(LoadDesiredStateTest, MissingPathAndEmptyDirectoryAreClearErrors) {
  absl::StatusOr<std::vector<DesiredStateFile>> missing =
      LoadDesiredState((dir_ / "nope.sql").string());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("nope.sql"));
  absl::StatusOr<std::vector<DesiredStateFile>> empty = LoadDesiredState(dir_.string());
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(empty.status().message(), HasSubstr("without *.sql files"));
}

TEST(SchemaJsonTest, EveryFieldRoundTrips) {
  schema::DatabaseSchema model;
  model.schemas = {{"public", "standard"}, {"telemetry", ""}};
  model.extensions = {{"citext", "public", "1.6", "ci text"}};
  model.enums = {{"public", "status", {"ok", "fault"}, "c"}};
  model.domains = {
      {"public", "pos", "integer", "1", true, "", {{"pos_check", "CHECK ((VALUE > 0))"}}, ""}};
  model.composite_types = {
      {"public", "reading", {{"v", "numeric", ""}, {"at", "text", "pg_catalog.\"C\""}}, ""}};
  model.sequences = {{"public", "s", "bigint", 5, 2, 1, 1000, 10, true, "public.t", "id", "seq"}};
  schema::Column id{"id", "bigint", "", true, 'a', "", "", "key"};
  schema::Column twice{"twice", "bigint", "", false, '\0', "(id * 2)", "", ""};
  model.tables = {{"public", "t", true, "RANGE (id)", "", "", {id, twice}, "table"}};
  model.constraints = {{"public", "t", "t_pkey", 'p', "PRIMARY KEY (id)", ""}};
  model.indexes = {{"public", "t", "i", "CREATE INDEX i ON public.t USING btree (twice)", ""}};
  model.views = {{"public", "v", true, " SELECT t.id FROM public.t;", {"public.t"}, "mv"}};
  model.functions = {{"public", "f", "a integer", false, "CREATE OR REPLACE FUNCTION ...", ""}};
  model.triggers = {{"public", "t", "trg", "CREATE TRIGGER trg ...", "tc"}};
  absl::StatusOr<schema::DatabaseSchema> back = SchemaFromJson(SchemaToJson(model));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(*back == model);
  EXPECT_EQ(back->tables[0].columns[0].identity, 'a');
  EXPECT_EQ(back->tables[0].columns[1].identity, '\0');

  EXPECT_EQ(SchemaFromJson("{\"tables\": 3}").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SchemaFromJson("not json").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace schemad::schema_build
