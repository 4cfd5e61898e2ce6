// Fuzzes RevisionGraph::Build and the planner over graphs decoded from the
// input, then plans a fixed list of targets (and one taken from the input)
// from several sets of version rows.
//
// Input: byte 0: the number of revisions (1 + byte % 8), named rev0..rev7;
// then 3 bytes per revision: a bit mask of the revisions it `revises`
// (names past the last revision are unknown ids; itself is a self-reference;
// later ones make cycles), a bit mask of those it `depends_on`, and a byte
// whose low 2 bits pick a branch label (none, l0, l1 or l2, which may
// collide) and whose bit 2 makes it irreversible; then one byte, a bit mask
// of the version rows; the rest is one more target.
//
// Properties checked beyond "no crash, no undefined behaviour, no leak,
// no hang" (libFuzzer's -timeout): Build's errors and the planner's use
// their documented codes, and every plan passes CheckPlan (plan_check.h).
//
// Thread-safety: libFuzzer calls it from one thread.
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "service/engine/planner.h"
#include "service/engine/revision.h"
#include "service/engine/revision_graph.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/plan_check.h"

namespace {

using schemad::engine::Plan;
using schemad::engine::Revision;
using schemad::engine::RevisionGraph;
using schemad::engine::SqlSection;
using schemad::fuzz::CheckPlan;
using schemad::fuzz::IsPlannerCode;

constexpr int kMaxRevisions = 8;

std::string Id(int i) { return absl::StrCat("rev", i); }

std::vector<std::string> Names(uint8_t mask) {
  std::vector<std::string> out;
  for (int i = 0; i < kMaxRevisions; ++i) {
    if ((mask >> i) & 1) {
      out.push_back(Id(i));
    }
  }
  return out;
}

void PlanAll(const RevisionGraph& graph, const std::vector<std::string>& rows,
             const std::vector<std::string>& targets) {
  for (const std::string& target : targets) {
    for (int operation = 0; operation < 3; ++operation) {
      absl::StatusOr<Plan> plan = operation == 0 ? schemad::engine::PlanUpgrade(graph, rows, target)
                                  : operation == 1
                                      ? schemad::engine::PlanDowngrade(graph, rows, target)
                                      : schemad::engine::PlanStamp(graph, rows, {target}, false);
      if (plan.ok()) {
        CheckPlan(graph, rows, *plan);
      } else {
        FUZZ_CHECK(IsPlannerCode(plan.status().code())) << plan.status();
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) {
    return 0;
  }
  const int count = 1 + data[0] % kMaxRevisions;
  if (size < 1 + 3 * static_cast<size_t>(count) + 1) {
    return 0;
  }
  std::vector<Revision> revisions;
  for (int i = 0; i < count; ++i) {
    const uint8_t* spec = data + 1 + 3 * i;
    Revision rev;
    rev.id = Id(i);
    rev.revises = Names(spec[0]);
    rev.depends_on = Names(spec[1]);
    if ((spec[2] & 3) != 0) {
      rev.branch_labels = {absl::StrCat("l", (spec[2] & 3) - 1)};
    }
    rev.upgrade = SqlSection{};
    if ((spec[2] & 4) == 0) {
      rev.downgrade = SqlSection{};
    }
    revisions.push_back(std::move(rev));
  }
  const uint8_t rows_mask = data[1 + 3 * count];
  const absl::string_view extra(reinterpret_cast<const char*>(data) + 2 + 3 * count,
                                size - 2 - 3 * count);

  absl::StatusOr<RevisionGraph> graph = RevisionGraph::Build(std::move(revisions));
  if (!graph.ok()) {
    FUZZ_CHECK(IsPlannerCode(graph.status().code())) << graph.status();
    return 0;
  }

  std::vector<std::string> targets = {"heads", "head",    "base",     "+1",      "-1",
                                      "+2",    "l0@head", "l1@heads", "l0@base", "l2@+1",
                                      "l1@-1", "rev0+1",  "rev1-1",   "l0@rev1"};
  for (int i = 0; i < count; ++i) {
    targets.push_back(Id(i));
  }
  if (!extra.empty()) {
    targets.emplace_back(extra);
  }
  std::vector<std::string> heads = graph->HeadIds();
  PlanAll(*graph, {}, targets);
  PlanAll(*graph, heads, targets);
  PlanAll(*graph, Names(rows_mask), targets);
  absl::StatusOr<int> pending = schemad::engine::CountPending(*graph, Names(rows_mask));
  if (pending.ok()) {
    FUZZ_CHECK(*pending >= 0 && *pending <= graph->size());
  }
  return 0;
}
