// Offline SQL rendering: the script for a plan, with transaction boundaries,
// version-table DDL and DML, timeouts and non-transactional revisions.
#include "service/engine/offline_sql.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace schemad::engine {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

Revision R(const std::string& id, std::vector<std::string> revises, std::string up,
           std::string down, bool transactional = true) {
  Revision rev;
  rev.id = id;
  rev.revises = std::move(revises);
  rev.message = "make " + id;
  rev.path = "m/" + id + ".sql";
  rev.transactional = transactional;
  rev.upgrade = SqlSection{1, up, {{up, 2}}};
  rev.downgrade = SqlSection{3, down, {{down, 4}}};
  return rev;
}

size_t Count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = haystack.find(needle); pos != std::string::npos;
       pos = haystack.find(needle, pos + 1)) {
    ++n;
  }
  return n;
}

TEST(OfflineSqlTest, UpgradeFromBaseCreatesVersionTableAndWrapsEachRevision) {
  ASSERT_OK_AND_ASSIGN(
      RevisionGraph graph,
      RevisionGraph::Build({R("a1", {}, "CREATE TABLE t1 (id int)", "DROP TABLE t1"),
                            R("b2", {"a1"}, "CREATE TABLE t2 (id int)", "DROP TABLE t2")}));
  ASSERT_OK_AND_ASSIGN(Plan plan, PlanUpgrade(graph, {}, "heads"));
  const std::string sql = RenderOfflineSql(graph, plan, {});
  EXPECT_THAT(sql, HasSubstr("CREATE TABLE IF NOT EXISTS alembic_version (\n    version_num "
                             "VARCHAR(32) NOT NULL, \n    CONSTRAINT alembic_version_pkc PRIMARY "
                             "KEY (version_num)\n);"));
  EXPECT_THAT(sql, HasSubstr("CREATE TABLE t1 (id int);"));
  EXPECT_THAT(sql, HasSubstr("INSERT INTO alembic_version (version_num) VALUES ('a1');"));
  EXPECT_THAT(sql, HasSubstr("UPDATE alembic_version SET version_num='b2' WHERE "
                             "alembic_version.version_num = 'a1';"));
  EXPECT_EQ(Count(sql, "BEGIN;"), 3u);
  EXPECT_EQ(Count(sql, "COMMIT;"), 3u);
  EXPECT_LT(sql.find("CREATE TABLE t1"), sql.find("CREATE TABLE t2"));
}

TEST(OfflineSqlTest, DowngradeDeletesTheLastRow) {
  ASSERT_OK_AND_ASSIGN(
      RevisionGraph graph,
      RevisionGraph::Build({R("a1", {}, "CREATE TABLE t1 (id int)", "DROP TABLE t1")}));
  ASSERT_OK_AND_ASSIGN(Plan plan, PlanDowngrade(graph, {"a1"}, "base"));
  const std::string sql = RenderOfflineSql(graph, plan, {});
  EXPECT_THAT(sql, HasSubstr("DROP TABLE t1;"));
  EXPECT_THAT(sql,
              HasSubstr("DELETE FROM alembic_version WHERE alembic_version.version_num = 'a1';"));
  EXPECT_THAT(sql, Not(HasSubstr("CREATE TABLE IF NOT EXISTS")));
}

TEST(OfflineSqlTest, NonTransactionalStatementsStandOutsideTransactions) {
  ASSERT_OK_AND_ASSIGN(
      RevisionGraph graph,
      RevisionGraph::Build({R("a1", {}, "CREATE TABLE t1 (id int)", "DROP TABLE t1"),
                            R("b2", {"a1"}, "CREATE INDEX CONCURRENTLY i ON t1 (id)",
                              "DROP INDEX CONCURRENTLY i", /*transactional=*/false)}));
  ASSERT_OK_AND_ASSIGN(Plan plan, PlanUpgrade(graph, {"a1"}, "heads"));
  const std::string sql = RenderOfflineSql(graph, plan, {});
  const size_t index = sql.find("CREATE INDEX CONCURRENTLY");
  ASSERT_NE(index, std::string::npos);
  EXPECT_EQ(sql.rfind("BEGIN;", index), std::string::npos) << sql;
  EXPECT_GT(sql.find("BEGIN;", index), index);
}

TEST(OfflineSqlTest, QualifiedVersionTableAndQuoting) {
  EXPECT_EQ(QuoteQualifiedIdentifier("ops.alembic_version"), "ops.alembic_version");
  EXPECT_EQ(QuoteQualifiedIdentifier("Ops.my version"), "\"Ops\".\"my version\"");
  EXPECT_EQ(QuoteLiteral("it's"), "'it''s'");
  ASSERT_OK_AND_ASSIGN(RevisionGraph graph,
                       RevisionGraph::Build({R("a1", {}, "SELECT 1", "SELECT 2")}));
  ASSERT_OK_AND_ASSIGN(Plan plan, PlanUpgrade(graph, {}, "heads"));
  OfflineSqlOptions options;
  options.version_table = "ops.schema_version";
  const std::string sql = RenderOfflineSql(graph, plan, options);
  EXPECT_THAT(sql, HasSubstr("CREATE TABLE IF NOT EXISTS ops.schema_version"));
  EXPECT_THAT(sql, HasSubstr("CONSTRAINT schema_version_pkc"));
}

TEST(OfflineSqlTest, TrailingCommentDoesNotSwallowTheSemicolon) {
  Revision rev = R("a1", {}, "SELECT 1 -- note", "SELECT 2");
  ASSERT_OK_AND_ASSIGN(RevisionGraph graph, RevisionGraph::Build({rev}));
  ASSERT_OK_AND_ASSIGN(Plan plan, PlanUpgrade(graph, {}, "heads"));
  EXPECT_THAT(RenderOfflineSql(graph, plan, {}), HasSubstr("SELECT 1 -- note\n;"));
}

TEST(OfflineSqlTest, WholePlanInOneTransaction) {
  ASSERT_OK_AND_ASSIGN(RevisionGraph graph,
                       RevisionGraph::Build({R("a1", {}, "SELECT 1", "SELECT 2"),
                                             R("b2", {"a1"}, "SELECT 3", "SELECT 4")}));
  ASSERT_OK_AND_ASSIGN(Plan plan, PlanUpgrade(graph, {}, "heads"));
  OfflineSqlOptions options;
  options.transaction_per_plan = true;
  const std::string sql = RenderOfflineSql(graph, plan, options);
  EXPECT_EQ(Count(sql, "BEGIN;"), 1u);
  EXPECT_EQ(Count(sql, "COMMIT;"), 1u);
}

TEST(OfflineSqlTest, WholePlanTransactionIsClosedAroundNonTransactionalRevisions) {
  ASSERT_OK_AND_ASSIGN(
      RevisionGraph graph,
      RevisionGraph::Build({R("a1", {}, "CREATE TABLE t1 (id int)", "DROP TABLE t1"),
                            R("b2", {"a1"}, "CREATE INDEX CONCURRENTLY i ON t1 (id)",
                              "DROP INDEX CONCURRENTLY i", /*transactional=*/false),
                            R("c3", {"b2"}, "SELECT 3", "SELECT 4")}));
  ASSERT_OK_AND_ASSIGN(Plan plan, PlanUpgrade(graph, {}, "heads"));
  OfflineSqlOptions options;
  options.transaction_per_plan = true;
  const std::string sql = RenderOfflineSql(graph, plan, options);
  const size_t index = sql.find("CREATE INDEX CONCURRENTLY");
  ASSERT_NE(index, std::string::npos);
  // The nearest transaction statement before it is a COMMIT, after it a BEGIN.
  EXPECT_GT(sql.rfind("COMMIT;", index), sql.rfind("BEGIN;", index)) << sql;
  EXPECT_EQ(Count(sql, "BEGIN;"), Count(sql, "COMMIT;")) << sql;
}

}  // namespace
}  // namespace schemad::engine
