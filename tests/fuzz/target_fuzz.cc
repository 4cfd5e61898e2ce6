// Fuzzes target parsing and resolution (service/engine/planner.h,
// revision_graph.h) against small fixed revision graphs: `heads`, `base`,
// ids and prefixes, `label@head`, `+N`, `REV-N`, `label@+N`, stamp lists...
//
// Input: byte 0 picks the graph (low 3 bits) and the operation (next 3 bits:
// upgrade, downgrade, stamp, stamp --purge, resolve); byte 1 is a bit mask
// of the graph's revisions that are the database's current version rows
// (often an invalid combination, which must be refused, not crash); the rest
// is the target text (for stamp: several targets separated by spaces).
//
// Properties checked beyond "no crash, no undefined behaviour, no leak":
//   - errors use the planner's documented codes;
//   - a plan's steps name valid revisions, each at most once, in the right
//     direction (downgrade: only reversible ones); applying each step's
//     version-row changes to the rows before it gives that step's rows_after,
//     and the last gives the plan's rows_after (stamp: stamp_changes);
//   - resolved indices are valid.
//
// Thread-safety: libFuzzer calls it from one thread.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_split.h"
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

// Ids share 4-character prefixes on purpose (`aaaa` is ambiguous, `aaaa01`
// is not), like real 12-hex-digit ids.
std::vector<std::vector<Revision>> GraphSpecs() {
  return {
      // 0: empty migration set.
      {},
      // 1: linear a1 <- a2 <- a3 <- a4.
      {R("aaaa01"), R("aaaa02", {"aaaa01"}), R("aaaa03", {"aaaa02"}), R("aaaa04", {"aaaa03"})},
      // 2: branch at b2 (label feat on the side branch), merged again at m1.
      {R("bbbb01"), R("bbbb02", {"bbbb01"}), R("bbbb03", {"bbbb02"}),
       R("cccc01", {"bbbb02"}, {}, {"feat"}), R("cccc02", {"cccc01"}),
       R("dddd01", {"bbbb03", "cccc02"})},
      // 3: two bases with labels; the plugin depends on core's second revision.
      {R("e1e1e1", {}, {}, {"core"}), R("e2e2e2", {"e1e1e1"}), R("e3e3e3", {"e2e2e2"}),
       R("f1f1f1", {}, {"e2e2e2"}, {"plugin"}), R("f2f2f2", {"f1f1f1"})},
      // 4: an irreversible revision in the middle, and two open heads.
      {R("0a0a0a"), R("1b1b1b", {"0a0a0a"}, {}, {}, /*reversible=*/false), R("2c2c2c", {"1b1b1b"}),
       R("3d3d3d", {"1b1b1b"}, {}, {"side"})},
      // 5: diamond with a dependency on a label and a second label.
      {R("9999aa", {}, {}, {"trunk"}), R("9999bb", {"9999aa"}), R("9999cc", {"9999aa"}),
       R("9999dd", {"9999bb", "9999cc"}, {"trunk"}), R("8888ee", {}, {"9999bb"}, {"extra"})},
  };
}

const std::vector<RevisionGraph>& Graphs() {
  static const std::vector<RevisionGraph>* graphs = [] {
    auto* out = new std::vector<RevisionGraph>();
    for (std::vector<Revision>& spec : GraphSpecs()) {
      absl::StatusOr<RevisionGraph> graph = RevisionGraph::Build(std::move(spec));
      FUZZ_CHECK(graph.ok()) << graph.status();
      out->push_back(std::move(*graph));
    }
    return out;
  }();
  return *graphs;
}

void CheckIndices(const RevisionGraph& graph, const std::vector<int>& indices) {
  for (int index : indices) {
    FUZZ_CHECK(index >= 0 && index < graph.size()) << index;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) {
    return 0;
  }
  const std::vector<RevisionGraph>& graphs = Graphs();
  const RevisionGraph& graph = graphs[(data[0] & 7) % graphs.size()];
  const int operation = (data[0] >> 3) & 7;
  std::vector<std::string> rows;
  for (int i = 0; i < graph.size() && i < 8; ++i) {
    if ((data[1] >> i) & 1) {
      rows.push_back(graph.id(i));
    }
  }
  const absl::string_view target(reinterpret_cast<const char*>(data + 2), size - 2);

  absl::StatusOr<int> pending = schemad::engine::CountPending(graph, rows);
  if (pending.ok()) {
    FUZZ_CHECK(*pending >= 0 && *pending <= graph.size());
  }

  switch (operation) {
    case 0:
    case 1: {
      absl::StatusOr<Plan> plan = operation == 0
                                      ? schemad::engine::PlanUpgrade(graph, rows, target)
                                      : schemad::engine::PlanDowngrade(graph, rows, target);
      if (plan.ok()) {
        CheckPlan(graph, rows, *plan);
      } else {
        FUZZ_CHECK(IsPlannerCode(plan.status().code())) << plan.status();
      }
      break;
    }
    case 2:
    case 3: {
      std::vector<std::string> targets = absl::StrSplit(target, ' ');
      absl::StatusOr<Plan> plan = schemad::engine::PlanStamp(graph, rows, targets, operation == 3);
      if (plan.ok()) {
        CheckPlan(graph, rows, *plan);
      } else {
        FUZZ_CHECK(IsPlannerCode(plan.status().code())) << plan.status();
      }
      break;
    }
    default: {
      absl::StatusOr<std::vector<int>> symbol = graph.ResolveSymbol(target);
      if (symbol.ok()) {
        CheckIndices(graph, *symbol);
      } else {
        FUZZ_CHECK(IsPlannerCode(symbol.status().code())) << symbol.status();
      }
      absl::StatusOr<int> one = graph.ResolveOne(target);
      if (one.ok()) {
        FUZZ_CHECK(*one >= -1 && *one < graph.size()) << *one;
      }
      absl::StatusOr<int> ident = graph.ResolveIdent(target);
      if (ident.ok()) {
        FUZZ_CHECK(*ident >= 0 && *ident < graph.size()) << *ident;
      }
      std::vector<int> all(graph.size());
      for (int i = 0; i < graph.size(); ++i) {
        all[i] = i;
      }
      absl::StatusOr<std::vector<int>> lineage = graph.FilterForLineage(all, target);
      if (lineage.ok()) {
        CheckIndices(graph, *lineage);
      }
      break;
    }
  }
  return 0;
}
