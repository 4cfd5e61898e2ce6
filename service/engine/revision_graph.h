// RevisionGraph: the revisions of a migration set and their relations, with
// Alembic's semantics (alembic/script/revision.py, RevisionMap, 1.8).
//
//   ASSIGN_OR_RETURN(RevisionGraph graph, RevisionGraph::Build(std::move(revisions)));
//   for (const std::string& head : graph.HeadIds()) { ... }
//   ASSIGN_OR_RETURN(int index, graph.ResolveOne("3f2a"));   // unique prefix
//
// The graph is built from revisions handed in (not by reading files), so tests
// declare small graphs inline. Revisions are addressed by a dense index in the
// order they were handed in; that order is also the tie-break wherever Alembic
// uses its map's insertion order.
//
// Vocabulary (Alembic's):
//   down revisions    `revises`, the versioned parents.
//   dependencies      `depends_on`, resolved to revision ids (a label names the
//                     revision that declares it).
//   normalized down   down revisions plus those dependencies that no versioned
//                     ancestor already depends on; the edges that upgrade and
//                     downgrade traverse.
//   head              a revision no other revision `revises` (dependents do not
//                     count); `real head`: not even depended on.
//   base              a revision with no `revises`.
//   branch labels     a label applies to its revision, all its descendants and
//                     its ancestors down to the nearest branch or merge point.
//
// Thread-safety: immutable after Build; const methods are safe from any thread.
#ifndef SCHEMAD_SERVICE_ENGINE_REVISION_GRAPH_H_
#define SCHEMAD_SERVICE_ENGINE_REVISION_GRAPH_H_

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "service/engine/revision.h"

namespace schemad::engine {

class RevisionGraph {
 public:
  // Relations of one revision, by index into revisions().
  struct Node {
    std::vector<int> down;                   // versioned down revisions (`revises`), as written
    std::vector<int> resolved_deps;          // `depends_on`, resolved
    std::vector<int> normalized_deps;        // resolved deps not implied by an ancestor
    std::vector<int> normalized_down;        // down + normalized_deps, deduplicated
    std::vector<int> all_down;               // down + resolved_deps, deduplicated
    std::vector<int> next;                   // revisions that `revise` this one (sorted)
    std::vector<int> all_next;               // next + revisions depending on this one (sorted)
    std::vector<std::string> branch_labels;  // effective labels (declared + propagated), sorted
  };

  // Builds the graph. Errors (all name the revision and its file:line):
  //   INVALID_ARGUMENT     empty or malformed id, duplicate id, a label used twice
  //                        or equal to a revision id, a self-reference;
  //   NOT_FOUND            `revises` or `depends_on` names no revision or label;
  //   FAILED_PRECONDITION  a cycle (listing its members) or a dependency cycle.
  static absl::StatusOr<RevisionGraph> Build(std::vector<Revision> revisions);

  RevisionGraph() = default;
  RevisionGraph(RevisionGraph&&) = default;
  RevisionGraph& operator=(RevisionGraph&&) = default;
  RevisionGraph(const RevisionGraph&) = delete;
  RevisionGraph& operator=(const RevisionGraph&) = delete;

  int size() const { return static_cast<int>(revisions_.size()); }
  bool empty() const { return revisions_.empty(); }
  const std::vector<Revision>& revisions() const { return revisions_; }
  const Revision& revision(int index) const { return revisions_[index]; }
  const Node& node(int index) const { return nodes_[index]; }
  const std::string& id(int index) const { return revisions_[index].id; }

  // Index of the revision with exactly this id, or -1.
  int IndexOf(absl::string_view id) const;
  // Index of the revision that declares `label`, or -1.
  int IndexOfLabel(absl::string_view label) const;

  // Heads, real heads and bases as indices, in insertion order.
  const std::vector<int>& heads() const { return heads_; }
  const std::vector<int>& real_heads() const { return real_heads_; }
  const std::vector<int>& bases() const { return bases_; }
  std::vector<std::string> HeadIds() const;
  std::vector<std::string> Ids(absl::Span<const int> indices) const;

  bool IsBranchPoint(int index) const { return nodes_[index].next.size() > 1; }
  bool IsRealBranchPoint(int index) const { return nodes_[index].all_next.size() > 1; }
  bool IsMergePoint(int index) const { return nodes_[index].down.size() > 1; }

  // Resolves a plain identifier as Alembic's _revision_for_ident does: a label,
  // a full id, or a unique prefix of at least 4 characters (ids and labels).
  // With `branch` set, the revision must share lineage with that branch.
  // NOT_FOUND: no match or not on the branch; INVALID_ARGUMENT: ambiguous prefix.
  absl::StatusOr<int> ResolveIdent(absl::string_view ident, absl::string_view branch = {}) const;

  // Resolves a symbolic name to revisions, as Alembic's get_revisions does:
  // `heads`, `head` (FAILED_PRECONDITION with several heads), `base` (empty),
  // `label@head`, `label@heads`, `label@base`, `label@REV`, or an identifier.
  absl::StatusOr<std::vector<int>> ResolveSymbol(absl::string_view symbol) const;
  // Like ResolveSymbol but exactly one revision (or -1 for base):
  // FAILED_PRECONDITION naming the heads when the symbol stands for several.
  absl::StatusOr<int> ResolveOne(absl::string_view symbol) const;

  // Traversals. `targets` are included in the result. With dependencies the
  // walk follows normalized_down (ancestors) / all_next (descendants).
  // The result is a membership mask of size(), true for every reached index.
  std::vector<bool> AncestorMask(absl::Span<const int> targets, bool include_dependencies) const;
  std::vector<bool> DescendantMask(absl::Span<const int> targets, bool include_dependencies) const;
  // Index lists of the same walks, in walk order (Alembic's
  // _iterate_related_revisions: depth-first, last-pushed first).
  std::vector<int> Ancestors(absl::Span<const int> targets, bool include_dependencies) const;
  std::vector<int> Descendants(absl::Span<const int> targets, bool include_dependencies) const;

  // True when `index` is an ancestor or descendant of (or equal to) any of
  // `others` (Alembic's _shares_lineage).
  bool SharesLineage(int index, absl::Span<const int> others, bool include_dependencies) const;
  // The members of `candidates` that share lineage with `branch` (a label, or
  // an identifier, or `label@symbol`). Alembic's filter_for_lineage.
  absl::StatusOr<std::vector<int>> FilterForLineage(absl::Span<const int> candidates,
                                                    absl::string_view branch,
                                                    bool include_dependencies = false) const;

 private:
  absl::Status Link();
  absl::Status DetectCycles() const;
  void PropagateBranchLabels();
  // Reachability along every edge kind, as cycle detection needs (all_down,
  // not the normalized edges).
  std::vector<bool> AncestorMaskRaw(absl::Span<const int> targets, bool with_deps) const;
  std::vector<bool> DescendantMaskRaw(absl::Span<const int> targets, bool with_deps) const;

  std::vector<Revision> revisions_;
  std::vector<Node> nodes_;
  absl::flat_hash_map<std::string, int> index_by_id_;
  absl::flat_hash_map<std::string, int> index_by_label_;
  std::vector<int> heads_;
  std::vector<int> real_heads_;
  std::vector<int> bases_;
};

}  // namespace schemad::engine

#endif  // SCHEMAD_SERVICE_ENGINE_REVISION_GRAPH_H_
