#include "service/engine/revision_graph.h"

#include <algorithm>
#include <charconv>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "service/common/status_macros.h"

namespace schemad::engine {
namespace {

// Appends `value` to `out` unless already present (Alembic's dedupe_tuple).
void AppendUnique(std::vector<int>& out, int value) {
  if (std::find(out.begin(), out.end(), value) == out.end()) {
    out.push_back(value);
  }
}

bool IsValidId(absl::string_view id) {
  if (id.empty()) {
    return false;
  }
  for (char c : id) {
    if (c == '@' || c == '-' || c == '+' || c == ',' || c == ' ' || c == '\t' || c == ':') {
      return false;
    }
  }
  return true;
}

}  // namespace

absl::StatusOr<RevisionGraph> RevisionGraph::Build(std::vector<Revision> revisions) {
  RevisionGraph graph;
  graph.revisions_ = std::move(revisions);
  graph.nodes_.resize(graph.revisions_.size());
  graph.index_by_id_.reserve(graph.revisions_.size());
  for (int i = 0; i < graph.size(); ++i) {
    const Revision& rev = graph.revisions_[i];
    if (!IsValidId(rev.id)) {
      return absl::InvalidArgumentError(
          absl::StrCat(rev.Where(), ": revision id '", rev.id,
                       "' is empty or contains one of '@', '-', '+', ',', ':' or a space"));
    }
    auto [it, inserted] = graph.index_by_id_.emplace(rev.id, i);
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat(rev.Where(), ": duplicate revision id '",
                                                     rev.id, "', already defined at ",
                                                     graph.revisions_[it->second].Where()));
    }
  }
  for (int i = 0; i < graph.size(); ++i) {
    const Revision& rev = graph.revisions_[i];
    for (const std::string& label : rev.branch_labels) {
      if (label.empty() || label.find('@') != std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat(rev.Where(), ": branch label '", label, "' is empty or contains '@'"));
      }
      if (auto id_it = graph.index_by_id_.find(label); id_it != graph.index_by_id_.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            rev.Where(), ": branch label '", label, "' of revision ", rev.id,
            " is already used as a revision id (", graph.revisions_[id_it->second].Where(), ")"));
      }
      auto [it, inserted] = graph.index_by_label_.emplace(label, i);
      if (!inserted) {
        return absl::InvalidArgumentError(
            absl::StrCat(rev.Where(), ": branch label '", label, "' of revision ", rev.id,
                         " is already used by revision ", graph.revisions_[it->second].id, " (",
                         graph.revisions_[it->second].Where(), ")"));
      }
    }
  }
  RETURN_IF_ERROR(graph.Link());
  RETURN_IF_ERROR(graph.DetectCycles());
  graph.PropagateBranchLabels();
  return graph;
}

absl::Status RevisionGraph::Link() {
  // Versioned parents and resolved dependencies.
  for (int i = 0; i < size(); ++i) {
    const Revision& rev = revisions_[i];
    Node& node = nodes_[i];
    for (const std::string& parent : rev.revises) {
      if (parent == rev.id) {
        return absl::InvalidArgumentError(
            absl::StrCat(rev.Where(), ": revision ", rev.id, " revises itself"));
      }
      int parent_index = IndexOf(parent);
      if (parent_index < 0) {
        return absl::NotFoundError(absl::StrCat(rev.Where(), ": revision ", rev.id,
                                                " revises unknown revision '", parent, "'"));
      }
      if (std::find(node.down.begin(), node.down.end(), parent_index) != node.down.end()) {
        return absl::InvalidArgumentError(absl::StrCat(rev.Where(), ": revision ", rev.id,
                                                       " lists '", parent, "' twice in revises"));
      }
      node.down.push_back(parent_index);
    }
    for (const std::string& dep : rev.depends_on) {
      if (dep == rev.id) {
        return absl::InvalidArgumentError(
            absl::StrCat(rev.Where(), ": revision ", rev.id, " depends on itself"));
      }
      int dep_index = IndexOf(dep);
      if (dep_index < 0) {
        dep_index = IndexOfLabel(dep);
      }
      if (dep_index < 0) {
        return absl::NotFoundError(absl::StrCat(rev.Where(), ": revision ", rev.id,
                                                " depends on unknown revision or label '", dep,
                                                "'"));
      }
      if (dep_index == i) {
        return absl::InvalidArgumentError(absl::StrCat(rev.Where(), ": revision ", rev.id,
                                                       " depends on its own label '", dep, "'"));
      }
      AppendUnique(node.resolved_deps, dep_index);
    }
    node.all_down = node.down;
    for (int dep : node.resolved_deps) {
      AppendUnique(node.all_down, dep);
    }
  }
  // Children, heads and bases.
  std::vector<bool> has_versioned_child(size(), false);
  std::vector<bool> has_any_child(size(), false);
  for (int i = 0; i < size(); ++i) {
    for (int parent : nodes_[i].all_down) {
      nodes_[parent].all_next.push_back(i);
      has_any_child[parent] = true;
      if (std::find(nodes_[i].down.begin(), nodes_[i].down.end(), parent) != nodes_[i].down.end()) {
        nodes_[parent].next.push_back(i);
        has_versioned_child[parent] = true;
      }
    }
  }
  for (int i = 0; i < size(); ++i) {
    if (!has_versioned_child[i]) {
      heads_.push_back(i);
    }
    if (!has_any_child[i]) {
      real_heads_.push_back(i);
    }
    if (nodes_[i].down.empty()) {
      bases_.push_back(i);
    }
  }
  // Normalized dependencies: drop those a versioned ancestor already depends on.
  for (int i = 0; i < size(); ++i) {
    Node& node = nodes_[i];
    if (node.resolved_deps.empty()) {
      node.normalized_down = node.down;
      continue;
    }
    absl::flat_hash_set<int> implied;
    const int self[] = {i};
    for (int ancestor : Ancestors(self, /*include_dependencies=*/false)) {
      if (ancestor != i) {
        implied.insert(nodes_[ancestor].resolved_deps.begin(),
                       nodes_[ancestor].resolved_deps.end());
      }
    }
    for (int dep : node.resolved_deps) {
      if (!implied.contains(dep)) {
        node.normalized_deps.push_back(dep);
      }
    }
    node.normalized_down = node.down;
    for (int dep : node.normalized_deps) {
      AppendUnique(node.normalized_down, dep);
    }
  }
  return absl::OkStatus();
}

absl::Status RevisionGraph::DetectCycles() const {
  if (empty()) {
    return absl::OkStatus();
  }
  // Alembic's rule: every revision must be reachable downwards from a head
  // and upwards from a base; the rest sit on or behind a cycle.
  auto unreachable = [&](const std::vector<int>& tops, const std::vector<int>& bottoms,
                         bool with_deps) {
    std::vector<bool> from_tops = AncestorMaskRaw(tops, with_deps);
    std::vector<bool> from_bottoms = DescendantMaskRaw(bottoms, with_deps);
    std::vector<int> stuck;
    for (int i = 0; i < size(); ++i) {
      if (!from_tops[i] || !from_bottoms[i]) {
        stuck.push_back(i);
      }
    }
    return stuck;
  };
  // One actual cycle among `stuck`, following `revises` (and with
  // dependencies, `depends_on`) edges: "b -> d -> c -> b".
  // `members` (optional) receives the revisions on that cycle.
  auto find_cycle = [&](const std::vector<int>& stuck, bool with_deps,
                        std::vector<int>* members = nullptr) -> std::string {
    std::vector<int> color(size(), 0);  // 0 new, 1 on the path, 2 done
    std::vector<int> parent(size(), -1);
    for (int start : stuck) {
      if (color[start] != 0) {
        continue;
      }
      std::vector<std::pair<int, size_t>> stack = {{start, 0}};
      color[start] = 1;
      while (!stack.empty()) {
        auto& [rev, next] = stack.back();
        const std::vector<int>& edges = with_deps ? nodes_[rev].all_down : nodes_[rev].down;
        if (next == edges.size()) {
          color[rev] = 2;
          stack.pop_back();
          continue;
        }
        int to = edges[next++];
        if (color[to] == 1) {
          std::vector<std::string> path = {revisions_[to].id};
          for (int at = rev; at != to; at = parent[at]) {
            path.push_back(revisions_[at].id);
            if (members != nullptr) {
              members->push_back(at);
            }
          }
          if (members != nullptr) {
            members->push_back(to);
          }
          path.push_back(revisions_[to].id);
          std::reverse(path.begin(), path.end());
          return absl::StrJoin(path, " -> ");
        }
        if (color[to] == 0) {
          color[to] = 1;
          parent[to] = rev;
          stack.push_back({to, 0});
        }
      }
    }
    return "";
  };
  auto describe = [&](std::vector<int> stuck, absl::string_view kind, bool with_deps) {
    std::string cycle = find_cycle(stuck, with_deps);
    std::vector<std::string> ids = Ids(stuck);
    std::sort(ids.begin(), ids.end());
    const Revision& first = revisions_[stuck.front()];
    return absl::FailedPreconditionError(absl::StrCat(
        first.Where(), ": ", kind, " detected in revisions (", absl::StrJoin(ids, ", "), ")",
        cycle.empty() ? "" : absl::StrCat("; cycle: ", cycle)));
  };
  std::vector<int> real_bases;
  for (int i = 0; i < size(); ++i) {
    if (nodes_[i].down.empty() && revisions_[i].depends_on.empty()) {
      real_bases.push_back(i);
    }
  }
  if (std::vector<int> stuck = unreachable(heads_, bases_, false); !stuck.empty()) {
    return describe(std::move(stuck), "Cycle", false);
  }
  if (std::vector<int> stuck = unreachable(real_heads_, real_bases, true); !stuck.empty()) {
    return describe(std::move(stuck), "Dependency cycle", true);
  }
  // Alembic's rule misses a cycle that a head and a base both still reach
  // (b revises a and c, c revises b, d revises c), and no order can run such
  // a graph (planning it could loop forever), so look for one directly.
  std::vector<int> all(nodes_.size());
  for (int i = 0; i < size(); ++i) {
    all[i] = i;
  }
  for (const bool with_deps : {false, true}) {
    std::vector<int> members;
    if (!find_cycle(all, with_deps, &members).empty()) {
      std::sort(members.begin(), members.end());
      return describe(std::move(members), with_deps ? "Dependency cycle" : "Cycle", with_deps);
    }
  }
  return absl::OkStatus();
}

void RevisionGraph::PropagateBranchLabels() {
  for (int i = 0; i < size(); ++i) {
    for (const std::string& label : revisions_[i].branch_labels) {
      nodes_[i].branch_labels.push_back(label);
    }
  }
  for (int i = 0; i < size(); ++i) {
    const std::vector<std::string>& labels = revisions_[i].branch_labels;
    if (labels.empty()) {
      continue;
    }
    auto add_labels = [&](int target) {
      std::vector<std::string>& into = nodes_[target].branch_labels;
      for (const std::string& label : labels) {
        if (std::find(into.begin(), into.end(), label) == into.end()) {
          into.push_back(label);
        }
      }
    };
    const int self[] = {i};
    std::vector<int> descendants = Descendants(self, /*include_dependencies=*/false);
    for (int d : descendants) {
      add_labels(d);
    }
    // Alembic then walks down from the last descendant it visited, labelling
    // until a (real) branch point or a merge point.
    int parent = descendants.back();
    while (!IsRealBranchPoint(parent) && !IsMergePoint(parent)) {
      add_labels(parent);
      if (nodes_[parent].down.empty()) {
        break;
      }
      parent = nodes_[parent].down.front();
    }
  }
  for (Node& node : nodes_) {
    std::sort(node.branch_labels.begin(), node.branch_labels.end());
  }
}

int RevisionGraph::IndexOf(absl::string_view id) const {
  auto it = index_by_id_.find(id);
  return it == index_by_id_.end() ? -1 : it->second;
}

int RevisionGraph::IndexOfLabel(absl::string_view label) const {
  auto it = index_by_label_.find(label);
  return it == index_by_label_.end() ? -1 : it->second;
}

std::vector<std::string> RevisionGraph::HeadIds() const { return Ids(heads_); }

std::vector<std::string> RevisionGraph::Ids(absl::Span<const int> indices) const {
  std::vector<std::string> ids;
  ids.reserve(indices.size());
  for (int index : indices) {
    ids.push_back(revisions_[index].id);
  }
  return ids;
}

namespace {

// Depth-first walk in Alembic's order (a stack; children pushed in order).
template <typename NextFn>
std::vector<int> Walk(int n, absl::Span<const int> targets, NextFn next) {
  std::vector<bool> seen(n, false);
  std::vector<int> order;
  std::vector<int> todo;
  for (int target : targets) {
    todo.push_back(target);
    while (!todo.empty()) {
      int rev = todo.back();
      todo.pop_back();
      if (seen[rev]) {
        continue;
      }
      seen[rev] = true;
      for (int related : next(rev)) {
        todo.push_back(related);
      }
      order.push_back(rev);
    }
  }
  return order;
}

std::vector<bool> ToMask(int n, const std::vector<int>& members) {
  std::vector<bool> mask(n, false);
  for (int m : members) {
    mask[m] = true;
  }
  return mask;
}

}  // namespace

std::vector<int> RevisionGraph::Ancestors(absl::Span<const int> targets,
                                          bool include_dependencies) const {
  return Walk(size(), targets, [&](int rev) -> const std::vector<int>& {
    return include_dependencies ? nodes_[rev].normalized_down : nodes_[rev].down;
  });
}

std::vector<int> RevisionGraph::Descendants(absl::Span<const int> targets,
                                            bool include_dependencies) const {
  return Walk(size(), targets, [&](int rev) -> const std::vector<int>& {
    return include_dependencies ? nodes_[rev].all_next : nodes_[rev].next;
  });
}

std::vector<bool> RevisionGraph::AncestorMask(absl::Span<const int> targets,
                                              bool include_dependencies) const {
  return ToMask(size(), Ancestors(targets, include_dependencies));
}

std::vector<bool> RevisionGraph::DescendantMask(absl::Span<const int> targets,
                                                bool include_dependencies) const {
  return ToMask(size(), Descendants(targets, include_dependencies));
}

// Used by cycle detection, where the dependency walk must follow every
// dependency (all_down), not the normalized ones.
std::vector<bool> RevisionGraph::AncestorMaskRaw(absl::Span<const int> targets,
                                                 bool with_deps) const {
  return ToMask(size(), Walk(size(), targets, [&](int rev) -> const std::vector<int>& {
                  return with_deps ? nodes_[rev].all_down : nodes_[rev].down;
                }));
}

std::vector<bool> RevisionGraph::DescendantMaskRaw(absl::Span<const int> targets,
                                                   bool with_deps) const {
  return DescendantMask(targets, with_deps);
}

bool RevisionGraph::SharesLineage(int index, absl::Span<const int> others,
                                  bool include_dependencies) const {
  if (others.empty()) {
    return true;
  }
  const int self[] = {index};
  std::vector<bool> related = AncestorMask(self, include_dependencies);
  std::vector<bool> below = DescendantMask(self, include_dependencies);
  for (int other : others) {
    if (other >= 0 && (related[other] || below[other])) {
      return true;
    }
  }
  return false;
}

namespace {

// Alembic's _resolve_revision_number: splits `label@rest`.
std::pair<absl::string_view, absl::string_view> SplitBranch(absl::string_view symbol) {
  size_t at = symbol.find('@');
  if (at == absl::string_view::npos) {
    return {{}, symbol};
  }
  return {symbol.substr(0, at), symbol.substr(at + 1)};
}

}  // namespace

absl::StatusOr<std::vector<int>> RevisionGraph::FilterForLineage(absl::Span<const int> candidates,
                                                                 absl::string_view branch,
                                                                 bool include_dependencies) const {
  auto [label, rest] = SplitBranch(branch);
  std::vector<int> shares;
  if (!label.empty()) {
    ASSIGN_OR_RETURN(int label_rev, ResolveIdent(label));
    shares.push_back(label_rev);
  }
  // The identifier part names revisions in the same way get_revisions does,
  // except that heads/head/base are symbolic.
  if (rest == "heads") {
    if (!label.empty()) {
      ASSIGN_OR_RETURN(std::vector<int> heads, FilterForLineage(heads_, label));
      shares.insert(shares.end(), heads.begin(), heads.end());
    } else {
      shares.insert(shares.end(), real_heads_.begin(), real_heads_.end());
    }
  } else if (rest == "head") {
    ASSIGN_OR_RETURN(std::vector<int> head, ResolveSymbol(branch));
    shares.insert(shares.end(), head.begin(), head.end());
  } else if (rest != "base" && !rest.empty()) {
    ASSIGN_OR_RETURN(int rev, ResolveIdent(rest));
    shares.push_back(rev);
  }
  std::vector<int> out;
  for (int candidate : candidates) {
    if (SharesLineage(candidate, shares, include_dependencies)) {
      out.push_back(candidate);
    }
  }
  return out;
}

absl::StatusOr<int> RevisionGraph::ResolveIdent(absl::string_view ident,
                                                absl::string_view branch) const {
  int branch_rev = -1;
  if (!branch.empty()) {
    branch_rev = IndexOfLabel(branch);
    if (branch_rev < 0) {
      absl::StatusOr<int> as_revision = ResolveIdent(branch);
      if (!as_revision.ok()) {
        return absl::NotFoundError(absl::StrCat("No such branch: '", branch, "'"));
      }
      branch_rev = *as_revision;
    }
  }
  int found = IndexOf(ident);
  if (found < 0) {
    found = IndexOfLabel(ident);
  }
  if (found < 0) {
    // Partial identifier: at least four characters, unique among ids and labels.
    std::vector<int> matches;
    if (ident.size() > 3) {
      for (int i = 0; i < size(); ++i) {
        bool match = absl::StartsWith(revisions_[i].id, ident);
        for (const std::string& label : revisions_[i].branch_labels) {
          match = match || absl::StartsWith(label, ident);
        }
        if (match) {
          matches.push_back(i);
        }
      }
    }
    if (branch_rev >= 0 && !matches.empty()) {
      const int on_branch[] = {branch_rev};
      std::vector<int> filtered;
      for (int m : matches) {
        if (SharesLineage(m, on_branch, false)) {
          filtered.push_back(m);
        }
      }
      matches = std::move(filtered);
    }
    if (matches.empty()) {
      return absl::NotFoundError(absl::StrCat(
          "No such revision or branch '", ident, "'",
          ident.size() < 4
              ? "; please ensure at least four characters are present for partial revision "
                "identifier matches"
              : ""));
    }
    if (matches.size() > 1) {
      std::vector<std::string> some;
      for (size_t k = 0; k < matches.size() && k < 3; ++k) {
        some.push_back(absl::StrCat("'", revisions_[matches[k]].id, "'"));
      }
      return absl::InvalidArgumentError(absl::StrCat("Multiple revisions start with '", ident,
                                                     "': ", absl::StrJoin(some, ", "), "..."));
    }
    found = matches.front();
  }
  if (branch_rev >= 0) {
    const int on_branch[] = {branch_rev};
    if (!SharesLineage(found, on_branch, false)) {
      return absl::NotFoundError(absl::StrCat("Revision ", revisions_[found].id,
                                              " is not a member of branch '", branch, "'"));
    }
  }
  return found;
}

absl::StatusOr<std::vector<int>> RevisionGraph::ResolveSymbol(absl::string_view symbol) const {
  auto [label, rest] = SplitBranch(symbol);
  if (rest == "heads") {
    if (!label.empty()) {
      return FilterForLineage(heads_, label);
    }
    return real_heads_;
  }
  if (rest == "head") {
    std::vector<int> candidates = heads_;
    if (!label.empty()) {
      ASSIGN_OR_RETURN(candidates, FilterForLineage(heads_, label));
    }
    if (candidates.size() > 1) {
      return absl::FailedPreconditionError(absl::StrCat(
          "Multiple head revisions are present for given argument '", symbol,
          "'; please specify a specific target revision, '<branchname>@head' to narrow to a "
          "specific head, or 'heads' for all heads (heads: ",
          absl::StrJoin(Ids(candidates), ", "), ")"));
    }
    return candidates;
  }
  if (rest == "base" || rest.empty()) {
    return std::vector<int>{};
  }
  // `label@-N`: walk down N steps from the branch's heads.
  int steps = 0;
  if (rest.front() == '-' &&
      std::from_chars(rest.data() + 1, rest.data() + rest.size(), steps).ptr ==
          rest.data() + rest.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("relative identifier '", symbol, "' is not valid here"));
  }
  ASSIGN_OR_RETURN(int rev, ResolveIdent(rest, label));
  return std::vector<int>{rev};
}

absl::StatusOr<int> RevisionGraph::ResolveOne(absl::string_view symbol) const {
  ASSIGN_OR_RETURN(std::vector<int> revs, ResolveSymbol(symbol));
  if (revs.size() > 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("Multiple heads are present for given argument '", symbol, "'; ",
                     absl::StrJoin(Ids(revs), ", ")));
  }
  return revs.empty() ? -1 : revs.front();
}

}  // namespace schemad::engine
