// Planner: what an upgrade, downgrade or stamp would do, as a pure function of
// (revision graph, current version rows, target). Alembic 1.8's semantics:
// the same revisions in the same directions, and the same `alembic_version`
// rows after every step (RevisionMap._collect_*_revisions, _topological_sort
// and runtime.migration.HeadMaintainer, ported).
//
//   ASSIGN_OR_RETURN(Plan plan, PlanUpgrade(graph, current_rows, "heads"));
//   for (const PlanStep& step : plan.steps) {
//     Run(graph.revision(step.revision), step.direction);
//     ApplyToVersionTable(step.version_changes);
//   }
//
// Targets: `head`, `heads`, `base`, a full id, a unique prefix (4+ chars), a
// branch label, `label@head`, `label@heads`, `label@base`, `label@REV`,
// relative `+N`/`-N`, `REV+N`, `REV-N`, `label@+N`, `label@-N`.
//
// Errors (messages follow Alembic's wording and add what it omits):
//   INVALID_ARGUMENT     malformed target, ambiguous prefix;
//   NOT_FOUND            unknown revision or label (in the target or in the
//                        current version rows);
//   FAILED_PRECONDITION  several heads for `head`, a relative move that cannot
//                        be made, a target that is not reachable from the
//                        current rows, an irreversible revision on the way down.
//
// Thread-safety: stateless functions over a const graph.
#ifndef SCHEMAD_SERVICE_ENGINE_PLANNER_H_
#define SCHEMAD_SERVICE_ENGINE_PLANNER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "service/engine/revision_graph.h"

namespace schemad::engine {

enum class Direction { kUp, kDown };
absl::string_view DirectionName(Direction direction);  // "up" / "down"

// One statement against the version table, in the order Alembic issues them.
struct VersionRowChange {
  enum class Kind { kInsert, kDelete, kUpdate };
  Kind kind = Kind::kInsert;
  std::string from;  // kDelete, kUpdate: the row that goes
  std::string to;    // kInsert, kUpdate: the row that comes
  bool operator==(const VersionRowChange& other) const {
    return kind == other.kind && from == other.from && to == other.to;
  }
};

struct PlanStep {
  int revision = -1;  // index into the graph
  Direction direction = Direction::kUp;
  std::vector<VersionRowChange> version_changes;
  std::vector<std::string> rows_after;  // version rows after this step, sorted
};

struct Plan {
  enum class Kind { kUpgrade, kDowngrade, kStamp };
  Kind kind = Kind::kUpgrade;
  std::string target;
  std::vector<std::string> rows_before;  // sorted
  std::vector<PlanStep> steps;           // empty: nothing to do
  std::vector<std::string> rows_after;   // sorted
  // Stamp only: the version-table changes (no revision runs).
  std::vector<VersionRowChange> stamp_changes;
};

// Plans `upgrade target` from a database whose version rows are `rows`.
absl::StatusOr<Plan> PlanUpgrade(const RevisionGraph& graph, absl::Span<const std::string> rows,
                                 absl::string_view target);

// Plans `downgrade target`. A revision without a downgrade section on the way
// is FAILED_PRECONDITION naming it (never silently skipped).
absl::StatusOr<Plan> PlanDowngrade(const RevisionGraph& graph, absl::Span<const std::string> rows,
                                   absl::string_view target);

// Plans `stamp targets...`: the version rows become the targets, replacing the
// current rows that share lineage with them (all rows with `purge`). Runs no
// revision. A target of `base` removes the rows of the lineages it names
// (every row when alone).
absl::StatusOr<Plan> PlanStamp(const RevisionGraph& graph, absl::Span<const std::string> rows,
                               absl::Span<const std::string> targets, bool purge);

// The version-row changes that running `revision` in `direction` makes when
// the rows are `rows` (one step of a plan; used to resolve an interrupted
// non-transactional revision as applied).
absl::StatusOr<std::vector<VersionRowChange>> VersionChangesFor(const RevisionGraph& graph,
                                                                absl::Span<const std::string> rows,
                                                                int revision, Direction direction);

// The revisions `history -r lower:upper` lists, in the order Alembic prints
// them (ScriptDirectory.walk_revisions: _collect_upgrade_revisions with
// inclusive=True, implicit_base=False, then _topological_sort from the
// upper targets): newest first; at a merge the first-listed parent's line
// before the next one's, each line as one block. `lower` empty or `base`:
// from the bases; `upper` empty or `heads`: every head. `current` in either
// stands for `current_rows` (the database's version rows). A relative
// `lower` (`-2`) counts down from `upper`.
// Errors: as PlanUpgrade's for the symbols; FAILED_PRECONDITION when `lower`
// is not an ancestor of `upper`.
absl::StatusOr<std::vector<int>> WalkRevisions(const RevisionGraph& graph, absl::string_view lower,
                                               absl::string_view upper,
                                               absl::Span<const std::string> current_rows);

// What `alembic current` lists for version rows `rows`
// (RevisionMap._get_all_current): the rows with everything they imply
// (ancestors and depends_on), reduced to the revisions none of whose
// versioned descendants is in that set. A revision another row only depends
// on shows up here ("effective head" when nothing revises it). Sorted by
// index. NOT_FOUND for a row that is not in the graph.
absl::StatusOr<std::vector<int>> EffectiveCurrentHeads(const RevisionGraph& graph,
                                                       absl::Span<const std::string> rows);

// Revisions that `upgrade heads` would apply from `rows`, or an error when the
// rows are not valid for the graph. Cheap enough for EnsureHead's fast path.
absl::StatusOr<int> CountPending(const RevisionGraph& graph, absl::Span<const std::string> rows);

}  // namespace schemad::engine

#endif  // SCHEMAD_SERVICE_ENGINE_PLANNER_H_
