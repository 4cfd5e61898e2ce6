// Oracles shared by the planner fuzz targets (target_fuzz, revision_graph_fuzz).
//
//   absl::StatusOr<Plan> plan = PlanUpgrade(graph, rows, target);
//   if (plan.ok()) CheckPlan(graph, rows, *plan);
//   else FUZZ_CHECK(IsPlannerCode(plan.status().code()));
//
// Thread-safety: stateless.
#ifndef SCHEMAD_TESTS_FUZZ_PLAN_CHECK_H_
#define SCHEMAD_TESTS_FUZZ_PLAN_CHECK_H_

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_join.h"
#include "service/engine/planner.h"
#include "service/engine/revision_graph.h"
#include "tests/fuzz/fuzz_check.h"

namespace schemad::fuzz {

// The codes planner.h documents for a refused plan or target.
inline bool IsPlannerCode(absl::StatusCode code) {
  return code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kNotFound ||
         code == absl::StatusCode::kFailedPrecondition;
}

// Applies `changes` to `rows` as the executor would, checking that each
// statement finds (or does not find) the row it names.
inline void ApplyChanges(const std::vector<engine::VersionRowChange>& changes,
                         std::set<std::string>& rows) {
  for (const engine::VersionRowChange& c : changes) {
    switch (c.kind) {
      case engine::VersionRowChange::Kind::kInsert:
        FUZZ_CHECK(rows.insert(c.to).second) << "insert of present row " << c.to;
        break;
      case engine::VersionRowChange::Kind::kDelete:
        FUZZ_CHECK(rows.erase(c.from) == 1) << "delete of absent row " << c.from;
        break;
      case engine::VersionRowChange::Kind::kUpdate:
        FUZZ_CHECK(rows.erase(c.from) == 1) << "update of absent row " << c.from;
        FUZZ_CHECK(rows.insert(c.to).second) << "update to present row " << c.to;
        break;
    }
  }
}

inline std::vector<std::string> AsVector(const std::set<std::string>& rows) {
  return {rows.begin(), rows.end()};
}

// Checks a plan made from `rows`: its steps name valid revisions, each at most
// once, in the plan's direction (downgrade: reversible ones only); each step's
// version-row changes, applied to the rows before it, give its rows_after;
// the last gives the plan's rows_after (stamp: stamp_changes do).
inline void CheckPlan(const engine::RevisionGraph& graph, const std::vector<std::string>& rows,
                      const engine::Plan& plan) {
  std::vector<std::string> sorted = rows;
  std::sort(sorted.begin(), sorted.end());
  FUZZ_CHECK(plan.rows_before == sorted);
  std::set<std::string> current(rows.begin(), rows.end());
  if (plan.kind == engine::Plan::Kind::kStamp) {
    FUZZ_CHECK(plan.steps.empty());
    ApplyChanges(plan.stamp_changes, current);
    FUZZ_CHECK(AsVector(current) == plan.rows_after);
    for (const std::string& row : plan.rows_after) {
      FUZZ_CHECK(graph.IndexOf(row) >= 0) << row;
    }
    return;
  }
  const engine::Direction direction =
      plan.kind == engine::Plan::Kind::kUpgrade ? engine::Direction::kUp : engine::Direction::kDown;
  std::set<int> seen;
  for (const engine::PlanStep& step : plan.steps) {
    FUZZ_CHECK(step.revision >= 0 && step.revision < graph.size()) << step.revision;
    FUZZ_CHECK(seen.insert(step.revision).second) << "revision twice: " << step.revision;
    FUZZ_CHECK(step.direction == direction);
    if (direction == engine::Direction::kDown) {
      FUZZ_CHECK(graph.revision(step.revision).reversible()) << graph.id(step.revision);
    }
    ApplyChanges(step.version_changes, current);
    FUZZ_CHECK(AsVector(current) == step.rows_after)
        << absl::StrJoin(current, ",") << " vs " << absl::StrJoin(step.rows_after, ",");
  }
  FUZZ_CHECK(AsVector(current) == plan.rows_after);
}

}  // namespace schemad::fuzz

#endif  // SCHEMAD_TESTS_FUZZ_PLAN_CHECK_H_
