// The Alembic conformance cases executed for real: every case of
// tests/fixtures/alembic_cases.json runs through the executor and the
// PostgreSQL store. Each revision's SQL writes a row to a log table; the rows
// and their order, and the final `alembic_version` rows, must agree with what
// Alembic 1.8.1 did; where Alembic refused, nothing may change.
//
// One database, one schema per case (version, history, state and log tables
// all live in it), so 240 cases cost 240 schemas, not 240 databases.
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "service/engine/executor.h"
#include "service/engine/planner.h"
#include "service/store/pq/pq_database.h"
#include "tests/testing/pg_fixture.h"
#include "tests/testing/status_matchers.h"

namespace schemad::engine {
namespace {

using nlohmann::json;
using ::schemad::testing::Exec;
using ::schemad::testing::Query;
using ::schemad::testing::TestDatabase;

const json& Cases() {
  static const json* cases = [] {
    std::ifstream in(std::string(SCHEMAD_FIXTURES_DIR) + "/alembic_cases.json");
    std::stringstream buffer;
    buffer << in.rdbuf();
    return new json(json::parse(buffer.str()));
  }();
  return *cases;
}

SqlSection LogSection(const std::string& schema, const std::string& rev, const char* dir) {
  SqlSection section;
  section.line = 5;
  SqlStatement statement;
  statement.text =
      absl::StrCat("INSERT INTO ", schema, ".log (rev, dir) VALUES ('", rev, "', '", dir, "')");
  statement.line = 6;
  section.body = statement.text + ";\n";
  section.statements.push_back(statement);
  return section;
}

class ConformancePgTest : public ::testing::TestWithParam<int> {
 protected:
  static void SetUpTestSuite() { database_ = new TestDatabase(); }
  static void TearDownTestSuite() {
    delete database_;
    database_ = nullptr;
  }
  static TestDatabase* database_;
};

TestDatabase* ConformancePgTest::database_ = nullptr;

TEST_P(ConformancePgTest, ExecutesWhatAlembicRan) {
  ASSERT_TRUE(database_ != nullptr && database_->ok()) << "no PostgreSQL test cluster";
  const int index = GetParam();
  const json& c = Cases().at("cases").at(index);
  SCOPED_TRACE(c.dump());
  const std::string schema = absl::StrCat("case_", index);
  Exec(database_->dsn(), absl::StrCat("CREATE SCHEMA ", schema, "; CREATE TABLE ", schema,
                                      ".log (n serial PRIMARY KEY, rev text, dir text)"));

  std::vector<Revision> revisions;
  for (const json& r : Cases().at("graphs").at(c.at("graph").get<int>())) {
    Revision rev;
    rev.id = r.at("rev").get<std::string>();
    rev.revises = r.at("revises").get<std::vector<std::string>>();
    rev.depends_on = r.at("depends_on").get<std::vector<std::string>>();
    rev.branch_labels = r.at("branch_labels").get<std::vector<std::string>>();
    rev.upgrade = LogSection(schema, rev.id, "up");
    rev.downgrade = LogSection(schema, rev.id, "down");
    revisions.push_back(std::move(rev));
  }
  ASSERT_OK_AND_ASSIGN(RevisionGraph graph, RevisionGraph::Build(std::move(revisions)));

  store::PqOptions pq;
  pq.tables.schema = schema;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<store::Database> db,
                       store::OpenPqDatabase(database_->dsn(), pq));
  ExecutorOptions options;
  options.who = "conformance";
  Executor executor(graph, *db, options);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<store::Session> session, db->Connect());

  const auto start = c.at("start_heads").get<std::vector<std::string>>();
  if (!start.empty()) {
    ASSERT_OK(executor.Stamp(*session, start, /*purge=*/true));
  } else {
    // From base (no rows): the tables exist, as after Alembic's stamp.
    ASSERT_OK(session->EnsureTables());
  }
  const std::string version_query =
      absl::StrCat("SELECT version_num FROM ", schema, ".alembic_version ORDER BY 1");
  auto rows = [&]() {
    std::vector<std::string> out;
    for (const auto& row : Query(database_->dsn(), version_query)) {
      out.push_back(row.at(0));
    }
    return out;
  };
  std::vector<std::string> sorted_start = start;
  std::sort(sorted_start.begin(), sorted_start.end());
  ASSERT_EQ(rows(), sorted_start);

  const std::string target = c.at("target").get<std::string>();
  absl::StatusOr<OperationResult> result = c.at("command") == "upgrade"
                                               ? executor.Upgrade(*session, target)
                                               : executor.Downgrade(*session, target);
  const auto log =
      Query(database_->dsn(), absl::StrCat("SELECT rev, dir FROM ", schema, ".log ORDER BY n"));
  if (!c.at("ok").get<bool>() || (c.contains("warning") && !result.ok())) {
    EXPECT_FALSE(result.ok() && !c.contains("warning"));
    EXPECT_TRUE(log.empty()) << "a refused plan ran SQL";
    EXPECT_EQ(rows(), sorted_start) << "a refused plan changed alembic_version";
    return;
  }
  ASSERT_OK(result);

  // Same revisions and directions as Alembic ...
  std::multiset<std::pair<std::string, std::string>> expected;
  for (const json& step : c.at("ran")) {
    expected.emplace(step.at(0).get<std::string>(), step.at(1).get<std::string>());
  }
  std::multiset<std::pair<std::string, std::string>> ran;
  for (const auto& row : log) {
    ran.emplace(row.at(0), row.at(1));
  }
  EXPECT_EQ(ran, expected);
  // ... in a valid order: what a revision revises or depends on runs before
  // it on the way up and after it on the way down ...
  std::map<std::string, size_t> position;
  for (size_t i = 0; i < log.size(); ++i) {
    position[log[i].at(0)] = i;
  }
  for (const auto& row : log) {
    const int rev = graph.IndexOf(row.at(0));
    for (int below : graph.Ancestors(std::vector<int>{rev}, /*include_dependencies=*/true)) {
      auto it = position.find(graph.id(below));
      if (below == rev || it == position.end()) {
        continue;
      }
      if (row.at(1) == "up") {
        EXPECT_LT(it->second, position[row.at(0)]);
      } else {
        EXPECT_GT(it->second, position[row.at(0)]);
      }
    }
  }
  // ... leaving the same rows.
  auto final_heads = c.at("final_heads").get<std::vector<std::string>>();
  std::sort(final_heads.begin(), final_heads.end());
  EXPECT_EQ(rows(), final_heads);
}

INSTANTIATE_TEST_SUITE_P(AllCases, ConformancePgTest,
                         ::testing::Range(0, static_cast<int>(Cases().at("cases").size())));

}  // namespace
}  // namespace schemad::engine
