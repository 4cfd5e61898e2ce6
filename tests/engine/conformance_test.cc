// The planner against Alembic 1.8.1 itself: every case of
// tests/fixtures/alembic_cases.json (produced by Debian's python3-alembic on
// random graphs; tests/fixtures/generate_alembic_cases.py regenerates and
// extends it) must plan the same revisions with the same directions, in a
// valid order, and leave the same version rows; where Alembic refused, the
// planner refuses.
#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "service/engine/planner.h"
#include "service/engine/revision_graph.h"
#include "tests/testing/status_matchers.h"

namespace schemad::engine {
namespace {

using nlohmann::json;

json LoadCases() {
  std::ifstream in(std::string(SCHEMAD_FIXTURES_DIR) + "/alembic_cases.json");
  std::stringstream buffer;
  buffer << in.rdbuf();
  return json::parse(buffer.str());
}

const json& Cases() {
  static const json* cases = new json(LoadCases());
  return *cases;
}

std::vector<Revision> GraphRevisions(const json& graph) {
  std::vector<Revision> revisions;
  for (const json& r : graph) {
    Revision rev;
    rev.id = r.at("rev").get<std::string>();
    rev.revises = r.at("revises").get<std::vector<std::string>>();
    rev.depends_on = r.at("depends_on").get<std::vector<std::string>>();
    rev.branch_labels = r.at("branch_labels").get<std::vector<std::string>>();
    rev.upgrade = SqlSection{};
    rev.downgrade = SqlSection{};
    revisions.push_back(std::move(rev));
  }
  return revisions;
}

// Every step must come after what it depends on: on the way up, after its
// normalized down revisions that are also in the plan; on the way down,
// before them.
void ExpectValidOrder(const RevisionGraph& graph, const Plan& plan) {
  std::vector<int> position(graph.size(), -1);
  for (size_t i = 0; i < plan.steps.size(); ++i) {
    position[plan.steps[i].revision] = static_cast<int>(i);
  }
  for (const PlanStep& step : plan.steps) {
    std::vector<int> below =
        graph.Ancestors(std::vector<int>{step.revision}, /*include_dependencies=*/true);
    for (int other : below) {
      if (other == step.revision || position[other] < 0) {
        continue;
      }
      if (step.direction == Direction::kUp) {
        EXPECT_LT(position[other], position[step.revision])
            << graph.id(other) << " must be applied before " << graph.id(step.revision);
      } else {
        EXPECT_GT(position[other], position[step.revision])
            << graph.id(other) << " must be removed after " << graph.id(step.revision);
      }
    }
  }
}

class AlembicConformanceTest : public ::testing::TestWithParam<int> {};

TEST_P(AlembicConformanceTest, PlansWhatAlembicRan) {
  const json& c = Cases().at("cases").at(GetParam());
  const json& graph_json = Cases().at("graphs").at(c.at("graph").get<int>());
  ASSERT_OK_AND_ASSIGN(RevisionGraph graph, RevisionGraph::Build(GraphRevisions(graph_json)));
  const auto start = c.at("start_heads").get<std::vector<std::string>>();
  const std::string command = c.at("command").get<std::string>();
  const std::string target = c.at("target").get<std::string>();
  SCOPED_TRACE(c.dump());

  absl::StatusOr<Plan> plan = command == "upgrade" ? PlanUpgrade(graph, start, target)
                                                   : PlanDowngrade(graph, start, target);
  if (!c.at("ok").get<bool>()) {
    EXPECT_FALSE(plan.ok()) << "Alembic refused: " << c.at("error").get<std::string>();
    return;
  }
  if (c.contains("warning") && !plan.ok()) {
    // Alembic ran it with a deprecation warning; refusing is also right.
    EXPECT_THAT(plan.status().message(), ::testing::HasSubstr("ambiguous"));
    return;
  }
  ASSERT_OK(plan);

  std::multiset<std::pair<std::string, std::string>> expected_ran;
  for (const json& step : c.at("ran")) {
    expected_ran.emplace(step.at(0).get<std::string>(), step.at(1).get<std::string>());
  }
  std::multiset<std::pair<std::string, std::string>> ran;
  for (const PlanStep& step : plan->steps) {
    ran.emplace(graph.id(step.revision), std::string(DirectionName(step.direction)));
  }
  EXPECT_EQ(ran, expected_ran);
  ExpectValidOrder(graph, *plan);

  auto final_heads = c.at("final_heads").get<std::vector<std::string>>();
  std::sort(final_heads.begin(), final_heads.end());
  EXPECT_EQ(plan->rows_after, final_heads);
}

INSTANTIATE_TEST_SUITE_P(AllCases, AlembicConformanceTest,
                         ::testing::Range(0, static_cast<int>(Cases().at("cases").size())));

}  // namespace
}  // namespace schemad::engine
