// RevisionGraph: building from inline graphs, relations, resolution and every
// build error.
#include "service/engine/revision_graph.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace schemad::engine {
namespace {

using ::schemad::testing::StatusIs;
using ::testing::_;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

// "id:parent1,parent2[;deps=x,y][;labels=l]" -> Revision
Revision R(const std::string& id, std::vector<std::string> revises = {},
           std::vector<std::string> depends_on = {}, std::vector<std::string> labels = {}) {
  Revision rev;
  rev.id = id;
  rev.revises = std::move(revises);
  rev.depends_on = std::move(depends_on);
  rev.branch_labels = std::move(labels);
  rev.path = "migrations/" + id + ".sql";
  rev.id_line = 1;
  rev.upgrade = SqlSection{};
  rev.downgrade = SqlSection{};
  return rev;
}

std::vector<std::string> Ids(const RevisionGraph& graph, const std::vector<int>& indices) {
  return graph.Ids(indices);
}

TEST(RevisionGraphTest, EmptyGraphHasNoHeads) {
  ASSERT_OK_AND_ASSIGN(RevisionGraph graph, RevisionGraph::Build({}));
  EXPECT_TRUE(graph.empty());
  EXPECT_THAT(graph.HeadIds(), IsEmpty());
  ASSERT_OK_AND_ASSIGN(std::vector<int> heads, graph.ResolveSymbol("heads"));
  EXPECT_THAT(heads, IsEmpty());
}

TEST(RevisionGraphTest, DiamondHasOneHeadBranchAndMergePoint) {
  // a <- b, a <- c, (b, c) <- d
  ASSERT_OK_AND_ASSIGN(
      RevisionGraph graph,
      RevisionGraph::Build({R("a"), R("b", {"a"}), R("c", {"a"}), R("d", {"b", "c"})}));
  EXPECT_THAT(graph.HeadIds(), ElementsAre("d"));
  EXPECT_THAT(Ids(graph, graph.bases()), ElementsAre("a"));
  EXPECT_TRUE(graph.IsBranchPoint(graph.IndexOf("a")));
  EXPECT_TRUE(graph.IsMergePoint(graph.IndexOf("d")));
  EXPECT_FALSE(graph.IsMergePoint(graph.IndexOf("b")));
  ASSERT_OK_AND_ASSIGN(int head, graph.ResolveOne("head"));
  EXPECT_EQ(graph.id(head), "d");
}

TEST(RevisionGraphTest, TwoHeadsMakeHeadAmbiguous) {
  ASSERT_OK_AND_ASSIGN(RevisionGraph graph,
                       RevisionGraph::Build({R("a"), R("b", {"a"}), R("c", {"a"})}));
  EXPECT_THAT(graph.HeadIds(), ElementsAre("b", "c"));
  EXPECT_THAT(graph.ResolveOne("head"), StatusIs(absl::StatusCode::kFailedPrecondition,
                                                 HasSubstr("Multiple head revisions")));
  ASSERT_OK_AND_ASSIGN(std::vector<int> heads, graph.ResolveSymbol("heads"));
  EXPECT_THAT(Ids(graph, heads), ElementsAre("b", "c"));
}

TEST(RevisionGraphTest, DependsOnDoesNotMakeAHeadButMakesARealHead) {
  // x is a separate root that b depends on: x stays a head (nothing revises
  // it) but is not a real head.
  ASSERT_OK_AND_ASSIGN(RevisionGraph graph,
                       RevisionGraph::Build({R("a"), R("x"), R("b", {"a"}, {"x"})}));
  EXPECT_THAT(graph.HeadIds(), ElementsAre("x", "b"));
  EXPECT_THAT(Ids(graph, graph.real_heads()), ElementsAre("b"));
  const RevisionGraph::Node& b = graph.node(graph.IndexOf("b"));
  EXPECT_THAT(Ids(graph, b.normalized_down), ElementsAre("a", "x"));
}

TEST(RevisionGraphTest, DependencyImpliedByAnAncestorIsNormalizedAway) {
  ASSERT_OK_AND_ASSIGN(RevisionGraph graph,
                       RevisionGraph::Build({R("x"), R("a", {}, {"x"}), R("b", {"a"}, {"x"})}));
  EXPECT_THAT(Ids(graph, graph.node(graph.IndexOf("b")).normalized_deps), IsEmpty());
  EXPECT_THAT(Ids(graph, graph.node(graph.IndexOf("a")).normalized_deps), ElementsAre("x"));
}

TEST(RevisionGraphTest, DependsOnByLabel) {
  ASSERT_OK_AND_ASSIGN(RevisionGraph graph,
                       RevisionGraph::Build({R("x", {}, {}, {"other"}), R("a", {}, {"other"})}));
  EXPECT_THAT(Ids(graph, graph.node(graph.IndexOf("a")).resolved_deps), ElementsAre("x"));
}

TEST(RevisionGraphTest, BranchLabelsPropagateUpAndDownToTheBranchPoint) {
  // a <- b <- c(label feat) <- d ; a <- e
  ASSERT_OK_AND_ASSIGN(RevisionGraph graph,
                       RevisionGraph::Build({R("a"), R("b", {"a"}), R("c", {"b"}, {}, {"feat"}),
                                             R("d", {"c"}), R("e", {"a"})}));
  EXPECT_THAT(graph.node(graph.IndexOf("d")).branch_labels, ElementsAre("feat"));
  EXPECT_THAT(graph.node(graph.IndexOf("b")).branch_labels, ElementsAre("feat"));
  EXPECT_THAT(graph.node(graph.IndexOf("a")).branch_labels, IsEmpty());  // branch point
  EXPECT_THAT(graph.node(graph.IndexOf("e")).branch_labels, IsEmpty());
  ASSERT_OK_AND_ASSIGN(int head, graph.ResolveOne("feat@head"));
  EXPECT_EQ(graph.id(head), "d");
  ASSERT_OK_AND_ASSIGN(int label, graph.ResolveOne("feat"));
  EXPECT_EQ(graph.id(label), "c");
}

TEST(RevisionGraphTest, PrefixResolution) {
  ASSERT_OK_AND_ASSIGN(RevisionGraph graph,
                       RevisionGraph::Build({R("3f2a9c1b7d4e"), R("3f2b00000000", {"3f2a9c1b7d4e"}),
                                             R("aaaa11112222", {"3f2b00000000"})}));
  ASSERT_OK_AND_ASSIGN(int index, graph.ResolveIdent("aaaa"));
  EXPECT_EQ(graph.id(index), "aaaa11112222");
  EXPECT_THAT(graph.ResolveIdent("3f2"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("at least four characters")));
  EXPECT_THAT(graph.ResolveIdent("3f2a9"), ::schemad::testing::IsOk());
  EXPECT_THAT(graph.ResolveIdent("3f2a").status(), ::schemad::testing::IsOk());
  EXPECT_THAT(graph.ResolveIdent("3f2a9c1b7d4eX"), StatusIs(absl::StatusCode::kNotFound, _));
}

TEST(RevisionGraphTest, AmbiguousPrefixNamesTheCandidates) {
  ASSERT_OK_AND_ASSIGN(RevisionGraph graph,
                       RevisionGraph::Build({R("abcd1111"), R("abcd2222", {"abcd1111"})}));
  EXPECT_THAT(graph.ResolveIdent("abcd"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("Multiple revisions start with 'abcd': 'abcd1111', 'abcd2222'")));
}

TEST(RevisionGraphTest, UnknownLabelAndRevision) {
  ASSERT_OK_AND_ASSIGN(RevisionGraph graph, RevisionGraph::Build({R("a1b2c3")}));
  EXPECT_THAT(graph.ResolveSymbol("nolabel@head"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nolabel")));
  EXPECT_THAT(
      graph.ResolveSymbol("ffffff"),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("No such revision or branch 'ffffff'")));
}

struct BuildErrorCase {
  std::string name;
  std::vector<Revision> revisions;
  absl::StatusCode code;
  std::string message;
};

class BuildErrorTest : public ::testing::TestWithParam<BuildErrorCase> {};

TEST_P(BuildErrorTest, NamesWhatIsWrong) {
  const BuildErrorCase& c = GetParam();
  EXPECT_THAT(RevisionGraph::Build(c.revisions), StatusIs(c.code, HasSubstr(c.message)));
}

INSTANTIATE_TEST_SUITE_P(
    Errors, BuildErrorTest,
    ::testing::Values(
        BuildErrorCase{"DuplicateId",
                       {R("a"), R("a")},
                       absl::StatusCode::kInvalidArgument,
                       "migrations/a.sql:1: duplicate revision id 'a', already defined at "
                       "migrations/a.sql:1"},
        BuildErrorCase{"UnknownParent",
                       {R("a"), R("b", {"zz"})},
                       absl::StatusCode::kNotFound,
                       "migrations/b.sql:1: revision b revises unknown revision 'zz'"},
        BuildErrorCase{"UnknownDependency",
                       {R("a", {}, {"nope"})},
                       absl::StatusCode::kNotFound,
                       "depends on unknown revision or label 'nope'"},
        BuildErrorCase{"SelfRevision",
                       {R("a", {"a"})},
                       absl::StatusCode::kInvalidArgument,
                       "revision a revises itself"},
        BuildErrorCase{"SelfDependency",
                       {R("a", {}, {"a"})},
                       absl::StatusCode::kInvalidArgument,
                       "depends on itself"},
        BuildErrorCase{"Cycle",
                       {R("a"), R("b", {"a", "d"}), R("c", {"b"}), R("d", {"c"})},
                       absl::StatusCode::kFailedPrecondition,
                       "Cycle detected in revisions (a, b, c, d); cycle: b -> d -> c -> b"},
        BuildErrorCase{"AllCycle",
                       {R("b", {"c"}), R("c", {"b"})},
                       absl::StatusCode::kFailedPrecondition,
                       "Cycle detected in revisions (b, c)"},
        BuildErrorCase{"DependencyCycle",
                       {R("a", {}, {"b"}), R("b", {}, {"a"})},
                       absl::StatusCode::kFailedPrecondition,
                       "Dependency cycle detected in revisions (a, b)"},
        // Cycles that a head and a base both reach, which Alembic's
        // reachability rule does not see (found by revision_graph_fuzz).
        BuildErrorCase{"CycleBetweenHeadAndBase",
                       {R("a"), R("b", {"a", "c"}), R("c", {"b"}), R("d", {"c"})},
                       absl::StatusCode::kFailedPrecondition,
                       "Cycle detected in revisions (b, c); cycle: b -> c -> b"},
        BuildErrorCase{"DependencyCycleBetweenHeadAndBase",
                       {R("a"), R("b", {"a"}, {"c"}), R("c", {"b"}), R("d", {"c"})},
                       absl::StatusCode::kFailedPrecondition,
                       "Dependency cycle detected in revisions (b, c); cycle: b -> c -> b"},
        // The graph that made PlanUpgrade(heads) loop forever: rev2 depends
        // on rev3, which revises rev2.
        BuildErrorCase{"DependencyCycleThatHungThePlanner",
                       {R("rev0", {}, {}, {"l0"}), R("rev1", {"rev0"}),
                        R("rev2", {"rev0"}, {"rev3", "rev5"}, {"l1"}), R("rev3", {"rev1", "rev2"}),
                        R("rev4", {"rev3"}, {}, {"l2"}), R("rev5", {"rev3"}, {"rev4"}),
                        R("rev6", {"rev4"}), R("rev7", {"rev5", "rev6"}, {"rev2"})},
                       absl::StatusCode::kFailedPrecondition,
                       "Dependency cycle detected in revisions"},
        BuildErrorCase{"LabelTwice",
                       {R("a", {}, {}, {"x"}), R("b", {"a"}, {}, {"x"})},
                       absl::StatusCode::kInvalidArgument,
                       "branch label 'x' of revision b is already used by revision a"},
        BuildErrorCase{"LabelIsId",
                       {R("a"), R("b", {"a"}, {}, {"a"})},
                       absl::StatusCode::kInvalidArgument,
                       "already used as a revision id"},
        BuildErrorCase{
            "BadId", {R("a-b")}, absl::StatusCode::kInvalidArgument, "revision id 'a-b'"},
        BuildErrorCase{"ParentTwice",
                       {R("a"), R("b", {"a", "a"})},
                       absl::StatusCode::kInvalidArgument,
                       "lists 'a' twice"}),
    [](const ::testing::TestParamInfo<BuildErrorCase>& param_info) {
      return param_info.param.name;
    });

}  // namespace
}  // namespace schemad::engine
