// Planner: table-driven over inline graphs (diamond, two heads, merge,
// depends_on, labels), targets of every form, refusals, stamp, and the
// version-row changes of each step.
#include "service/engine/planner.h"

#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace schemad::engine {
namespace {

using ::schemad::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

Revision R(const std::string& id, std::vector<std::string> revises = {},
           std::vector<std::string> depends_on = {}, std::vector<std::string> labels = {},
           bool reversible = true) {
  Revision rev;
  rev.id = id;
  rev.revises = std::move(revises);
  rev.depends_on = std::move(depends_on);
  rev.branch_labels = std::move(labels);
  rev.upgrade = SqlSection{};
  if (reversible) {
    rev.downgrade = SqlSection{};
  }
  return rev;
}

// a <- b <- c, with a branch b <- x (label feat) <- y, and m merging c and y.
std::vector<Revision> Branchy() {
  return {R("a"),        R("b", {"a"}),     R("c", {"b"}), R("x", {"b"}, {}, {"feat"}),
          R("y", {"x"}), R("m", {"c", "y"})};
}

std::vector<Revision> Linear() { return {R("a"), R("b", {"a"}), R("c", {"b"}), R("d", {"c"})}; }

std::string Steps(const RevisionGraph& graph, const Plan& plan) {
  std::vector<std::string> out;
  for (const PlanStep& step : plan.steps) {
    out.push_back(graph.id(step.revision) + (step.direction == Direction::kUp ? "+" : "-"));
  }
  return absl::StrJoin(out, " ");
}

struct PlanCase {
  std::string name;
  std::vector<Revision> (*graph)();
  std::vector<std::string> rows;
  bool upgrade;
  std::string target;
  std::string steps;  // "a+ b+" ; empty with error set
  std::vector<std::string> rows_after;
  std::string error;  // substring; empty: must succeed
};

class PlanTest : public ::testing::TestWithParam<PlanCase> {};

TEST_P(PlanTest, Plans) {
  const PlanCase& c = GetParam();
  ASSERT_OK_AND_ASSIGN(RevisionGraph graph, RevisionGraph::Build(c.graph()));
  absl::StatusOr<Plan> plan =
      c.upgrade ? PlanUpgrade(graph, c.rows, c.target) : PlanDowngrade(graph, c.rows, c.target);
  if (!c.error.empty()) {
    EXPECT_THAT(plan.status().message(), HasSubstr(c.error)) << plan.status();
    EXPECT_FALSE(plan.ok());
    return;
  }
  ASSERT_OK(plan);
  EXPECT_EQ(Steps(graph, *plan), c.steps);
  EXPECT_EQ(plan->rows_after, c.rows_after);
  if (!plan->steps.empty()) {
    EXPECT_EQ(plan->steps.back().rows_after, c.rows_after);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Targets, PlanTest,
    ::testing::Values(
        PlanCase{"UpgradeHeadFromBase", Linear, {}, true, "head", "a+ b+ c+ d+", {"d"}, ""},
        PlanCase{"UpgradeToRevision", Linear, {"a"}, true, "c", "b+ c+", {"c"}, ""},
        PlanCase{"UpgradePrefixOfFullId", Linear, {}, true, "b", "a+ b+", {"b"}, ""},
        PlanCase{"UpgradeRelative", Linear, {"a"}, true, "+2", "b+ c+", {"c"}, ""},
        PlanCase{"UpgradeRelativeFromBase", Linear, {}, true, "+1", "a+", {"a"}, ""},
        PlanCase{"UpgradeRelativeTooFar",
                 Linear,
                 {"c"},
                 true,
                 "+2",
                 "",
                 {},
                 "Relative revision +2 didn't produce 2 migrations"},
        PlanCase{"UpgradeRevPlusN", Linear, {}, true, "b+1", "a+ b+ c+", {"c"}, ""},
        PlanCase{"UpgradeMinusIsRefused", Linear, {"c"}, true, "-1", "", {}, "didn't produce"},
        PlanCase{"UpgradeAtHeadIsEmpty", Linear, {"d"}, true, "heads", "", {"d"}, ""},
        PlanCase{"DowngradeRelative", Linear, {"d"}, false, "-2", "d- c-", {"b"}, ""},
        PlanCase{"DowngradeToBase", Linear, {"c"}, false, "base", "c- b- a-", {}, ""},
        PlanCase{"DowngradeRevMinusN", Linear, {"d"}, false, "c-2", "d- c- b-", {"a"}, ""},
        PlanCase{"DowngradeRelativeTooFar",
                 Linear,
                 {"b"},
                 false,
                 "-3",
                 "",
                 {},
                 "Relative revision -3 didn't produce 3 migrations"},
        PlanCase{"DowngradeNotAncestor",
                 Linear,
                 {"b"},
                 false,
                 "d",
                 "",
                 {},
                 "Destination d is not a valid downgrade target"},
        PlanCase{"DowngradePlusIsRefused", Linear, {"b"}, false, "+1", "", {}, "didn't produce"},
        PlanCase{
            "UnknownTarget", Linear, {}, true, "zzzz", "", {}, "No such revision or branch 'zzzz'"},
        PlanCase{"UnknownRow", Linear, {"qqqq"}, true, "heads", "", {}, "'qqqq'"},
        PlanCase{"EmptyTarget", Linear, {}, true, "", "", {}, "empty target"},
        // Branches and merges.
        PlanCase{"BranchMovesTheRow", Branchy, {"b"}, true, "y", "x+ y+", {"y"}, ""},
        PlanCase{"BranchPointAddsRow", Branchy, {"c"}, true, "y", "x+ y+", {"c", "y"}, ""},
        PlanCase{
            "UpgradeHeadsThroughMerge", Branchy, {}, true, "heads", "a+ b+ x+ y+ c+ m+", {"m"}, ""},
        PlanCase{"MergeCollapsesRows", Branchy, {"c", "y"}, true, "m", "m+", {"m"}, ""},
        PlanCase{"UnmergeSplitsRows", Branchy, {"m"}, false, "c", "m-", {"c", "y"}, ""},
        PlanCase{
            "RelativeBelowMergeIsAmbiguous", Branchy, {"m"}, false, "-1", "", {}, "Ambiguous walk"},
        PlanCase{"LabelHead", Branchy, {"b"}, true, "feat@head", "x+ y+ c+ m+", {"m"}, ""},
        PlanCase{"LabelPlusOne", Branchy, {"b"}, true, "feat@+1", "x+", {"x"}, ""},
        // The branch shares its base with the trunk: everything goes (Alembic).
        PlanCase{"LabelBase", Branchy, {"c", "y"}, false, "feat@base", "c- y- x- b- a-", {}, ""},
        PlanCase{"DowngradeOneBranch", Branchy, {"c", "y"}, false, "x", "y-", {"c", "x"}, ""},
        PlanCase{"AmbiguousRelativeFromTwoRows",
                 Branchy,
                 {"c", "y"},
                 true,
                 "+1",
                 "",
                 {},
                 "Ambiguous upgrade from multiple current revisions"},
        PlanCase{"AmbiguousDowngradeFromTwoRows",
                 Branchy,
                 {"c", "y"},
                 false,
                 "-1",
                 "",
                 {},
                 "ambiguous"}),
    [](const ::testing::TestParamInfo<PlanCase>& param_info) { return param_info.param.name; });

TEST(PlannerTest, LabelBaseDowngradesOnlyThatBranch) {
  // Two independent roots, each labelled.
  ASSERT_OK_AND_ASSIGN(RevisionGraph graph,
                       RevisionGraph::Build({R("a1", {}, {}, {"one"}), R("a2", {"a1"}),
                                             R("b1", {}, {}, {"two"}), R("b2", {"b1"})}));
  ASSERT_OK_AND_ASSIGN(Plan plan, PlanDowngrade(graph, {"a2", "b2"}, "one@base"));
  EXPECT_EQ(Steps(graph, plan), "a2- a1-");
  EXPECT_THAT(plan.rows_after, ElementsAre("b2"));
  ASSERT_OK_AND_ASSIGN(Plan up, PlanUpgrade(graph, {}, "two@head"));
  EXPECT_EQ(Steps(graph, up), "b1+ b2+");
}

TEST(PlannerTest, DependsOnAppliesTheDependencyFirstAndConsumesNoRow) {
  // x is its own root; b depends on it.
  ASSERT_OK_AND_ASSIGN(RevisionGraph graph,
                       RevisionGraph::Build({R("a"), R("x"), R("b", {"a"}, {"x"})}));
  ASSERT_OK_AND_ASSIGN(Plan plan, PlanUpgrade(graph, {}, "b"));
  ASSERT_EQ(plan.steps.size(), 3u);
  EXPECT_EQ(graph.id(plan.steps.back().revision), "b");
  EXPECT_THAT(plan.rows_after, ElementsAre("b"));
}

TEST(PlannerTest, VersionChangesAreAlembicStatements) {
  ASSERT_OK_AND_ASSIGN(RevisionGraph graph, RevisionGraph::Build(Branchy()));
  ASSERT_OK_AND_ASSIGN(Plan plan, PlanUpgrade(graph, {}, "heads"));
  using K = VersionRowChange::Kind;
  auto changes = [&](const std::string& id) {
    for (const PlanStep& step : plan.steps) {
      if (graph.id(step.revision) == id) {
        return step.version_changes;
      }
    }
    return std::vector<VersionRowChange>{};
  };
  // a: INSERT; b: UPDATE; x: UPDATE (b is a row); c: INSERT (b is gone, a
  // new branch); y: UPDATE; m: DELETE one joined row + UPDATE the other.
  EXPECT_EQ(Steps(graph, plan), "a+ b+ x+ y+ c+ m+");
  EXPECT_EQ(changes("a"), (std::vector<VersionRowChange>{{K::kInsert, "", "a"}}));
  EXPECT_EQ(changes("b"), (std::vector<VersionRowChange>{{K::kUpdate, "a", "b"}}));
  EXPECT_EQ(changes("x"), (std::vector<VersionRowChange>{{K::kUpdate, "b", "x"}}));
  EXPECT_EQ(changes("c"), (std::vector<VersionRowChange>{{K::kInsert, "", "c"}}));
  ASSERT_EQ(changes("m").size(), 2u);
  EXPECT_EQ(changes("m")[0].kind, K::kDelete);
  EXPECT_EQ(changes("m")[1].kind, K::kUpdate);
  EXPECT_EQ(changes("m")[1].to, "m");
}

TEST(PlannerTest, IrreversibleRevisionRefusesDowngradePastIt) {
  ASSERT_OK_AND_ASSIGN(RevisionGraph graph,
                       RevisionGraph::Build({R("a"), R("b", {"a"}, {}, {}, false), R("c", {"b"})}));
  EXPECT_THAT(PlanDowngrade(graph, {"c"}, "a"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("revision b has no -- +downgrade section")));
  ASSERT_OK_AND_ASSIGN(Plan plan, PlanDowngrade(graph, {"c"}, "b"));
  EXPECT_EQ(Steps(graph, plan), "c-");
}

TEST(PlannerTest, StampReplacesRowsOnTheSameLineage) {
  ASSERT_OK_AND_ASSIGN(RevisionGraph graph, RevisionGraph::Build(Branchy()));
  const std::vector<std::string> y = {"y"};
  ASSERT_OK_AND_ASSIGN(Plan plan, PlanStamp(graph, {"c", "x"}, y, false));
  EXPECT_THAT(plan.rows_after, ElementsAre("c", "y"));
  EXPECT_THAT(plan.steps, IsEmpty());
  ASSERT_EQ(plan.stamp_changes.size(), 1u);
  EXPECT_EQ(plan.stamp_changes[0].kind, VersionRowChange::Kind::kUpdate);

  const std::vector<std::string> base = {"base"};
  ASSERT_OK_AND_ASSIGN(Plan to_base, PlanStamp(graph, {"c", "y"}, base, false));
  EXPECT_THAT(to_base.rows_after, IsEmpty());
  EXPECT_EQ(to_base.stamp_changes.size(), 2u);

  const std::vector<std::string> purge_to = {"b"};
  ASSERT_OK_AND_ASSIGN(Plan purged, PlanStamp(graph, {"qqqq"}, purge_to, true));
  EXPECT_THAT(purged.rows_after, ElementsAre("b"));

  const std::vector<std::string> same_line = {"a", "c"};
  EXPECT_THAT(PlanStamp(graph, {}, same_line, false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("same lineage")));
}

TEST(PlannerTest, CountPending) {
  ASSERT_OK_AND_ASSIGN(RevisionGraph graph, RevisionGraph::Build(Branchy()));
  ASSERT_OK_AND_ASSIGN(int all, CountPending(graph, {}));
  EXPECT_EQ(all, 6);
  const std::vector<std::string> rows = {"c", "y"};
  ASSERT_OK_AND_ASSIGN(int pending, CountPending(graph, rows));
  EXPECT_EQ(pending, 1);
  ASSERT_OK_AND_ASSIGN(int none, CountPending(graph, {"m"}));
  EXPECT_EQ(none, 0);
  EXPECT_THAT(CountPending(graph, {"nope"}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
}

}  // namespace
}  // namespace schemad::engine
