#include "service/engine/planner.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "service/common/status_macros.h"

namespace schemad::engine {

absl::string_view DirectionName(Direction direction) {
  return direction == Direction::kUp ? "up" : "down";
}

namespace {

// Positions of a relative walk: a revision index, or one of these.
constexpr int kNone = -1;  // "nothing" (below the bases when walking up)
constexpr int kBase = -2;  // the symbolic "base" reached walking down

absl::Status RevisionError(absl::string_view message) {
  return absl::FailedPreconditionError(message);
}

// Alembic's _relative_destination: `[label@][symbol](+|-)digits`, here
// required to cover the whole target.
struct RelativeTarget {
  std::string label;   // empty: none
  std::string symbol;  // empty: relative to the current rows
  int relative = 0;
  std::string relative_text;  // "+2", "-1" as written
};

bool IsWordChars(absl::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return absl::ascii_isalnum(c) || c == '_'; });
}

std::optional<RelativeTarget> ParseRelative(absl::string_view target) {
  size_t sign = target.find_last_of("+-");
  if (sign == absl::string_view::npos || sign + 1 >= target.size()) {
    return std::nullopt;
  }
  absl::string_view digits = target.substr(sign + 1);
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return absl::ascii_isdigit(c); })) {
    return std::nullopt;
  }
  RelativeTarget out;
  absl::string_view prefix = target.substr(0, sign);
  size_t at = prefix.rfind('@');
  if (at != absl::string_view::npos) {
    if (at == 0) {
      return std::nullopt;
    }
    out.label = std::string(prefix.substr(0, at));
    prefix = prefix.substr(at + 1);
  }
  if (!IsWordChars(prefix)) {
    return std::nullopt;
  }
  out.symbol = std::string(prefix);
  out.relative_text = std::string(target.substr(sign));
  if (!absl::SimpleAtoi(digits, &out.relative) || out.relative > 1000000) {
    return std::nullopt;
  }
  if (target[sign] == '-') {
    out.relative = -out.relative;
  }
  return out;
}

absl::Status DidNotProduce(absl::string_view relative_text, int relative) {
  return RevisionError(absl::StrCat("Relative revision ", relative_text, " didn't produce ",
                                    std::abs(relative), " migrations"));
}

// The planner's view of one call: the graph plus helpers that mirror
// RevisionMap's private methods.
class PlanContext {
 public:
  explicit PlanContext(const RevisionGraph& graph) : graph_(graph) {}

  // Alembic's _walk. `start` is a revision index or kNone. Returns a revision
  // index, kBase (walked down past the bases), or kNone (walked too far).
  absl::StatusOr<int> Walk(int start, int steps, absl::string_view branch_label) const {
    int initial = start;
    for (int i = 0; i < std::abs(steps); ++i) {
      std::vector<int> children;
      bool base_child = false;
      if (steps > 0) {
        if (initial == kBase) {
          return absl::InternalError("walk up from base");
        }
        const std::vector<int>& up = initial == kNone ? graph_.bases() : graph_.node(initial).next;
        if (!branch_label.empty()) {
          ASSIGN_OR_RETURN(children, graph_.FilterForLineage(up, branch_label));
        } else {
          children = up;
        }
      } else if (initial != kBase) {
        children = initial == kNone ? graph_.heads() : graph_.node(initial).down;
        if (children.empty()) {
          base_child = true;
        }
      }
      if (base_child) {
        initial = kBase;
        continue;
      }
      if (children.empty()) {
        return kNone;
      }
      if (children.size() > 1) {
        return RevisionError(absl::StrCat(
            "Ambiguous walk: ", graph_.id(initial < 0 ? children[0] : initial), " has several ",
            steps > 0 ? "children" : "parents", " (", absl::StrJoin(graph_.Ids(children), ", "),
            "); name one of them instead of a relative step"));
      }
      initial = children.front();
    }
    return initial;
  }

  // get_revision(symbol): one revision, or kNone for base.
  absl::StatusOr<int> One(absl::string_view symbol) const { return graph_.ResolveOne(symbol); }

  // Alembic's _parse_upgrade_target.
  absl::StatusOr<std::vector<int>> ParseUpgradeTarget(const std::vector<int>& current,
                                                      absl::string_view target) const {
    std::optional<RelativeTarget> rel = ParseRelative(target);
    if (!rel) {
      return graph_.ResolveSymbol(target);
    }
    if (rel->relative > 0) {
      if (rel->symbol.empty()) {
        std::vector<int> start_revs = current;
        bool from_nothing = current.empty();
        if (!rel->label.empty()) {
          ASSIGN_OR_RETURN(start_revs, graph_.FilterForLineage(current, rel->label));
          from_nothing = false;
          if (start_revs.empty()) {
            // The branch is not a current head: find the tips of what is
            // applied on it, or start from nothing.
            std::vector<int> applied = graph_.Ancestors(current, /*include_dependencies=*/true);
            ASSIGN_OR_RETURN(std::vector<int> on_branch,
                             graph_.FilterForLineage(applied, rel->label));
            absl::flat_hash_set<int> below;
            for (int r : on_branch) {
              below.insert(graph_.node(r).normalized_down.begin(),
                           graph_.node(r).normalized_down.end());
            }
            start_revs.clear();
            for (int r : on_branch) {
              if (!below.contains(r)) {
                start_revs.push_back(r);
              }
            }
            from_nothing = start_revs.empty();
          }
        }
        if (!from_nothing && start_revs.size() > 1) {
          return RevisionError(absl::StrCat("Ambiguous upgrade from multiple current revisions (",
                                            absl::StrJoin(graph_.Ids(start_revs), ", "),
                                            "); use label@", rel->relative_text, " or REV",
                                            rel->relative_text));
        }
        ASSIGN_OR_RETURN(
            int rev, Walk(from_nothing ? kNone : start_revs.front(), rel->relative, rel->label));
        if (rev == kNone) {
          return DidNotProduce(rel->relative_text, rel->relative);
        }
        return std::vector<int>{rev};
      }
      ASSIGN_OR_RETURN(int start, One(rel->symbol));
      ASSIGN_OR_RETURN(int rev, Walk(start, rel->relative, rel->label));
      if (rev < 0) {
        return RevisionError(
            absl::StrCat("Relative revision ", target, " is past the end of the revision graph"));
      }
      return std::vector<int>{rev};
    }
    if (rel->symbol.empty()) {
      return DidNotProduce(rel->relative_text, rel->relative);
    }
    ASSIGN_OR_RETURN(
        int start,
        One(rel->label.empty() ? rel->symbol : absl::StrCat(rel->label, "@", rel->symbol)));
    ASSIGN_OR_RETURN(int rev, Walk(start, rel->relative, {}));
    if (rev < 0) {
      return RevisionError(
          absl::StrCat("Relative revision ", target, " is below the base; use 'base' to go there"));
    }
    return std::vector<int>{rev};
  }

  // Alembic's _parse_downgrade_target: (branch label, target) where the
  // target is a revision index, kNone or kBase (both mean base).
  absl::StatusOr<std::pair<std::string, int>> ParseDowngradeTarget(const std::vector<int>& current,
                                                                   absl::string_view target) const {
    std::optional<RelativeTarget> rel = ParseRelative(target);
    if (rel) {
      if (rel->relative >= 0) {
        if (rel->symbol.empty()) {
          return DidNotProduce(rel->relative_text, rel->relative);
        }
        ASSIGN_OR_RETURN(int start, One(rel->symbol));
        ASSIGN_OR_RETURN(int rev, Walk(start, rel->relative, rel->label));
        if (rev == kNone) {
          return RevisionError(absl::StrCat("Relative revision ", target, " walked too far"));
        }
        return std::make_pair(rel->label, rev);
      }
      const bool relative_to_current = rel->symbol.empty();
      std::string branch_label = rel->label;
      std::string symbol = rel->symbol;
      if (relative_to_current) {
        if (!branch_label.empty()) {
          ASSIGN_OR_RETURN(std::vector<int> on_branch,
                           graph_.FilterForLineage(current, branch_label));
          if (on_branch.empty()) {
            ASSIGN_OR_RETURN(on_branch, graph_.FilterForLineage(AllCurrent(current), branch_label));
          }
          if (on_branch.size() != 1) {
            return RevisionError(
                absl::StrCat("Relative revision ", target, " is ambiguous: ", on_branch.size(),
                             " current revisions are on branch '", branch_label, "'"));
          }
          symbol = graph_.id(on_branch.front());
        } else {
          if (current.empty()) {
            return DidNotProduce(rel->relative_text, rel->relative);
          }
          if (current.size() > 1) {
            // Alembic warns that this "will be disallowed in a future
            // release" and picks one row; schemad refuses.
            return RevisionError(absl::StrCat("downgrade ", target, " from multiple heads (",
                                              absl::StrJoin(graph_.Ids(current), ", "),
                                              ") is ambiguous; name the branch: label@",
                                              rel->relative_text, " or REV", rel->relative_text));
          }
          symbol = graph_.id(current.front());
          branch_label = symbol;
        }
      }
      ASSIGN_OR_RETURN(
          int start, One(branch_label.empty() ? symbol : absl::StrCat(branch_label, "@", symbol)));
      ASSIGN_OR_RETURN(int rev, Walk(start, rel->relative, {}));
      if (rev == kNone) {
        if (relative_to_current) {
          return DidNotProduce(rel->relative_text, rel->relative);
        }
        return RevisionError(absl::StrCat("Relative revision ", target, " walked too far"));
      }
      return std::make_pair(branch_label, rev);
    }
    absl::string_view symbol = target;
    std::string label;
    if (size_t at = target.rfind('@'); at != absl::string_view::npos) {
      label = std::string(target.substr(0, at));
      symbol = target.substr(at + 1);
    }
    // get_revision(symbol) on the part after the last '@'.
    ASSIGN_OR_RETURN(int rev, One(symbol));
    return std::make_pair(label, rev);
  }

  // Alembic's _get_all_current: current rows plus their ancestors, reduced
  // to those with no (versioned) descendant in the set.
  std::vector<int> AllCurrent(const std::vector<int>& current) const {
    std::vector<int> top = graph_.Ancestors(current, /*include_dependencies=*/true);
    std::vector<bool> in_top(graph_.size(), false);
    for (int r : top) {
      in_top[r] = true;
    }
    std::vector<int> out;
    for (int r : top) {
      bool has_descendant_in_set = false;
      for (int child : graph_.node(r).next) {
        if (in_top[child]) {
          has_descendant_in_set = true;
          break;
        }
      }
      if (!has_descendant_in_set) {
        out.push_back(r);
      }
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  // _get_ancestor_nodes(targets, check=True): fails when one target is an
  // ancestor of another.
  absl::StatusOr<std::vector<bool>> AncestorsChecked(const std::vector<int>& targets) const {
    std::vector<bool> mask(graph_.size(), false);
    for (int t : targets) {
      const int one[] = {t};
      std::vector<bool> own = graph_.AncestorMask(one, /*include_dependencies=*/true);
      for (int other : targets) {
        if (other != t && own[other]) {
          return RevisionError(absl::StrCat("Requested revision ", graph_.id(t),
                                            " overlaps with other requested revisions ",
                                            graph_.id(other)));
        }
      }
      for (int i = 0; i < graph_.size(); ++i) {
        if (own[i]) {
          mask[i] = true;
        }
      }
    }
    return mask;
  }

  // Alembic's _topological_sort: `todo` in an order where every revision
  // comes before its (normalized) down revisions, walking from `heads`.
  absl::StatusOr<std::vector<int>> TopologicalSort(const std::vector<bool>& todo_mask,
                                                   const std::vector<int>& heads) const {
    std::vector<bool> todo = todo_mask;
    int remaining = static_cast<int>(std::count(todo.begin(), todo.end(), true));
    std::vector<int> current_heads;
    for (int h : heads) {
      if (h >= 0 && todo[h] &&
          std::find(current_heads.begin(), current_heads.end(), h) == current_heads.end()) {
        current_heads.push_back(h);
      }
    }
    std::sort(current_heads.begin(), current_heads.end());  // insertion order
    auto ancestors_of = [&](int rev) {
      const int one[] = {rev};
      return graph_.AncestorMask(one, /*include_dependencies=*/true);
    };
    std::vector<std::vector<bool>> ancestors_by_idx;
    ancestors_by_idx.reserve(current_heads.size());
    for (int h : current_heads) {
      ancestors_by_idx.push_back(ancestors_of(h));
    }
    std::vector<int> output;
    output.reserve(remaining);
    size_t candidate_idx = 0;
    while (!current_heads.empty()) {
      const int candidate = current_heads[candidate_idx];
      bool blocked = false;
      for (size_t check = 0; check < ancestors_by_idx.size(); ++check) {
        if (check != candidate_idx && ancestors_by_idx[check][candidate]) {
          candidate_idx = check;
          blocked = true;
          break;
        }
      }
      if (blocked) {
        continue;
      }
      if (todo[candidate]) {
        output.push_back(candidate);
        todo[candidate] = false;
        --remaining;
      }
      const RevisionGraph::Node& node = graph_.node(candidate);
      std::vector<int> heads_to_add;
      for (int r : node.normalized_down) {
        if (todo[r] &&
            std::find(current_heads.begin(), current_heads.end(), r) == current_heads.end()) {
          heads_to_add.push_back(r);
        }
      }
      if (heads_to_add.empty()) {
        current_heads.erase(current_heads.begin() + static_cast<std::ptrdiff_t>(candidate_idx));
        ancestors_by_idx.erase(ancestors_by_idx.begin() +
                               static_cast<std::ptrdiff_t>(candidate_idx));
        candidate_idx = candidate_idx > 0 ? candidate_idx - 1 : 0;
      } else if (node.normalized_deps.empty() && node.down.size() == 1) {
        current_heads[candidate_idx] = heads_to_add.front();
        ancestors_by_idx[candidate_idx][candidate] = false;
      } else {
        current_heads[candidate_idx] = heads_to_add.front();
        ancestors_by_idx[candidate_idx] = ancestors_of(heads_to_add.front());
        for (size_t k = 1; k < heads_to_add.size(); ++k) {
          current_heads.push_back(heads_to_add[k]);
          ancestors_by_idx.push_back(ancestors_of(heads_to_add[k]));
        }
      }
    }
    if (remaining != 0) {
      std::vector<int> left;
      for (int i = 0; i < graph_.size(); ++i) {
        if (todo[i]) {
          left.push_back(i);
        }
      }
      return RevisionError(
          absl::StrCat("cannot order the revisions to run: ", absl::StrJoin(graph_.Ids(left), ", "),
                       " are not reachable from the current heads"));
    }
    return output;
  }

  const RevisionGraph& graph() const { return graph_; }

 private:
  const RevisionGraph& graph_;
};

// Alembic's HeadMaintainer over a set of version rows.
class HeadMaintainer {
 public:
  HeadMaintainer(const RevisionGraph& graph, std::vector<std::string> rows)
      : graph_(graph), heads_(rows.begin(), rows.end()) {}

  absl::StatusOr<std::vector<VersionRowChange>> Apply(int rev, Direction direction) {
    changes_.clear();
    const RevisionGraph::Node& node = graph_.node(rev);
    const std::string& id = graph_.id(rev);
    const bool up = direction == Direction::kUp;
    const std::vector<std::string> downrevs = graph_.Ids(node.normalized_down);
    if (!up && heads_.contains(id) && (downrevs.empty() || UnmergeTo(rev).empty())) {
      RETURN_IF_ERROR(Delete(id));  // should_delete_branch
    } else if (up && (downrevs.empty() || CountIn(downrevs) == 0)) {
      RETURN_IF_ERROR(Insert(id));  // should_create_branch
    } else if (up && downrevs.size() > 1 && CountIn(downrevs) > 1) {
      // should_merge_branches: delete all but one of the joined rows, update that one.
      std::vector<std::string> from = FromRevisionsNotBelowOthers(downrevs);
      if (from.empty()) {
        return absl::InternalError(absl::StrCat("merge of ", id, " found no row to update"));
      }
      for (size_t k = 0; k + 1 < from.size(); ++k) {
        RETURN_IF_ERROR(Delete(from[k]));
      }
      RETURN_IF_ERROR(Update(from.back(), id));
    } else if (!up && heads_.contains(id) && downrevs.size() > 1) {
      // should_unmerge_branches
      std::vector<std::string> to = UnmergeTo(rev);
      for (size_t k = 0; k + 1 < to.size(); ++k) {
        RETURN_IF_ERROR(Insert(to[k]));
      }
      RETURN_IF_ERROR(Update(id, to.back()));
    } else {
      std::string down;
      if (downrevs.size() != 1) {
        std::vector<std::string> present;
        for (const std::string& d : downrevs) {
          if (heads_.contains(d)) {
            present.push_back(d);
          }
        }
        if (present.size() != 1) {
          return absl::FailedPreconditionError(
              absl::StrCat("Can't update the version table for ", id,
                           " because its down revision is ambiguous among the current rows"));
        }
        down = present.front();
      } else {
        down = downrevs.front();
      }
      if (up) {
        RETURN_IF_ERROR(Update(down, id));
      } else {
        RETURN_IF_ERROR(Update(id, down));
      }
    }
    return changes_;
  }

  std::vector<std::string> Rows() const {
    std::vector<std::string> rows(heads_.begin(), heads_.end());
    std::sort(rows.begin(), rows.end());
    return rows;
  }

 private:
  int CountIn(const std::vector<std::string>& ids) const {
    int n = 0;
    for (const std::string& i : ids) {
      n += heads_.contains(i) ? 1 : 0;
    }
    return n;
  }

  // Ancestors (with dependencies) of the rows other than `excluded`.
  std::vector<bool> AncestorsOfOtherRows(const std::vector<std::string>& excluded) const {
    std::vector<int> others;
    for (const std::string& h : heads_) {
      if (std::find(excluded.begin(), excluded.end(), h) == excluded.end()) {
        int index = graph_.IndexOf(h);
        if (index >= 0) {
          others.push_back(index);
        }
      }
    }
    std::sort(others.begin(), others.end());
    return graph_.AncestorMask(others, /*include_dependencies=*/true);
  }

  std::vector<std::string> FromRevisionsNotBelowOthers(const std::vector<std::string>& from) const {
    std::vector<bool> below = AncestorsOfOtherRows(from);
    std::vector<std::string> out;
    for (const std::string& f : from) {
      if (!below[graph_.IndexOf(f)]) {
        out.push_back(f);
      }
    }
    return out;
  }

  // _unmerge_to_revisions: the down revisions not implied by the other rows.
  std::vector<std::string> UnmergeTo(int rev) const {
    std::vector<bool> below = AncestorsOfOtherRows({graph_.id(rev)});
    std::vector<std::string> out;
    for (int d : graph_.node(rev).normalized_down) {
      if (!below[d]) {
        out.push_back(graph_.id(d));
      }
    }
    return out;
  }

  absl::Status Insert(const std::string& id) {
    if (!heads_.insert(id).second) {
      return absl::FailedPreconditionError(
          absl::StrCat("version row ", id, " would be inserted twice"));
    }
    changes_.push_back({VersionRowChange::Kind::kInsert, "", id});
    return absl::OkStatus();
  }
  absl::Status Delete(const std::string& id) {
    if (heads_.erase(id) != 1) {
      return absl::FailedPreconditionError(
          absl::StrCat("version row ", id, " to delete is not present"));
    }
    changes_.push_back({VersionRowChange::Kind::kDelete, id, ""});
    return absl::OkStatus();
  }
  absl::Status Update(const std::string& from, const std::string& to) {
    if (heads_.contains(to) || heads_.erase(from) != 1) {
      return absl::FailedPreconditionError(absl::StrCat("version row update ", from, " -> ", to,
                                                        " does not match the current rows"));
    }
    heads_.insert(to);
    changes_.push_back({VersionRowChange::Kind::kUpdate, from, to});
    return absl::OkStatus();
  }

  const RevisionGraph& graph_;
  absl::flat_hash_set<std::string> heads_;
  std::vector<VersionRowChange> changes_;
};

absl::StatusOr<std::vector<int>> ResolveRows(const RevisionGraph& graph,
                                             absl::Span<const std::string> rows) {
  std::vector<int> current;
  current.reserve(rows.size());
  for (const std::string& row : rows) {
    int index = graph.IndexOf(row);
    if (index < 0) {
      return absl::NotFoundError(
          absl::StrCat("the database's version table names revision '", row,
                       "', which is not in the migration set (was it deleted, or is this the wrong "
                       "directory?)"));
    }
    if (std::find(current.begin(), current.end(), index) != current.end()) {
      return absl::FailedPreconditionError(
          absl::StrCat("the database's version table lists revision '", row, "' twice"));
    }
    current.push_back(index);
  }
  return current;
}

std::vector<std::string> SortedRows(absl::Span<const std::string> rows) {
  std::vector<std::string> out(rows.begin(), rows.end());
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<Plan> BuildSteps(const RevisionGraph& graph, absl::Span<const std::string> rows,
                                const std::vector<int>& order, Direction direction, Plan plan) {
  HeadMaintainer heads(graph, std::vector<std::string>(rows.begin(), rows.end()));
  plan.rows_before = SortedRows(rows);
  for (int rev : order) {
    PlanStep step;
    step.revision = rev;
    step.direction = direction;
    ASSIGN_OR_RETURN(step.version_changes, heads.Apply(rev, direction));
    step.rows_after = heads.Rows();
    plan.steps.push_back(std::move(step));
  }
  plan.rows_after = heads.Rows();
  return plan;
}

absl::Status ValidateTarget(absl::string_view target) {
  if (target.empty()) {
    return absl::InvalidArgumentError("empty target revision");
  }
  for (char c : target) {
    if (absl::ascii_isspace(c) || absl::ascii_iscntrl(c)) {
      return absl::InvalidArgumentError(
          absl::StrCat("target revision '", target, "' contains white space"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Plan> PlanUpgrade(const RevisionGraph& graph, absl::Span<const std::string> rows,
                                 absl::string_view target) {
  RETURN_IF_ERROR(ValidateTarget(target));
  PlanContext ctx(graph);
  ASSIGN_OR_RETURN(std::vector<int> current, ResolveRows(graph, rows));
  ASSIGN_OR_RETURN(std::vector<int> targets, ctx.ParseUpgradeTarget(current, target));
  ASSIGN_OR_RETURN(std::vector<bool> required, ctx.AncestorsChecked(targets));
  ASSIGN_OR_RETURN(std::vector<bool> applied, ctx.AncestorsChecked(current));
  std::vector<bool> needs(graph.size(), false);
  for (int i = 0; i < graph.size(); ++i) {
    needs[i] = required[i] && !applied[i];
  }
  ASSIGN_OR_RETURN(std::vector<int> order, ctx.TopologicalSort(needs, targets));
  std::reverse(order.begin(), order.end());
  Plan plan;
  plan.kind = Plan::Kind::kUpgrade;
  plan.target = std::string(target);
  return BuildSteps(graph, rows, order, Direction::kUp, std::move(plan));
}

absl::StatusOr<Plan> PlanDowngrade(const RevisionGraph& graph, absl::Span<const std::string> rows,
                                   absl::string_view target) {
  RETURN_IF_ERROR(ValidateTarget(target));
  PlanContext ctx(graph);
  ASSIGN_OR_RETURN(std::vector<int> current, ResolveRows(graph, rows));
  auto parsed = ctx.ParseDowngradeTarget(current, target);
  if (!parsed.ok()) {
    return parsed.status();
  }
  auto [branch_label, target_rev] = *parsed;
  std::vector<int> roots;
  if (target_rev < 0) {
    roots = graph.bases();
  } else {
    roots = graph.node(target_rev).next;
  }
  if (!branch_label.empty() && roots.size() > 1) {
    ASSIGN_OR_RETURN(int branch_rev, graph.ResolveIdent(branch_label));
    const int one[] = {branch_rev};
    std::vector<bool> on_branch = graph.AncestorMask(one, /*include_dependencies=*/false);
    std::vector<int> filtered;
    for (int r : roots) {
      if (on_branch[r]) {
        filtered.push_back(r);
      }
    }
    if (filtered.empty()) {
      return RevisionError(
          absl::StrCat("Not a valid downgrade target from current heads: ", target));
    }
    roots = std::move(filtered);
  }
  std::vector<bool> drop = graph.DescendantMask(roots, /*include_dependencies=*/true);
  std::vector<bool> active = graph.AncestorMask(current, /*include_dependencies=*/true);
  bool any = false;
  for (int i = 0; i < graph.size(); ++i) {
    drop[i] = drop[i] && active[i];
    any = any || drop[i];
  }
  if (target_rev >= 0 && !any &&
      std::find(current.begin(), current.end(), target_rev) == current.end()) {
    return RevisionError(absl::StrCat("Destination ", target,
                                      " is not a valid downgrade target from current head(s)"));
  }
  ASSIGN_OR_RETURN(std::vector<int> order, ctx.TopologicalSort(drop, current));
  for (int rev : order) {
    if (!graph.revision(rev).reversible()) {
      return RevisionError(absl::StrCat(
          graph.revision(rev).Where(), ": revision ", graph.id(rev),
          " has no -- +downgrade section, so it cannot be downgraded; downgrade to it or "
          "above it, or stamp past it"));
    }
  }
  Plan plan;
  plan.kind = Plan::Kind::kDowngrade;
  plan.target = std::string(target);
  return BuildSteps(graph, rows, order, Direction::kDown, std::move(plan));
}

absl::StatusOr<std::vector<int>> WalkRevisions(const RevisionGraph& graph, absl::string_view lower,
                                               absl::string_view upper,
                                               absl::Span<const std::string> current_rows) {
  PlanContext ctx(graph);
  if (upper.empty()) {
    upper = "heads";
  }
  if (lower.empty()) {
    lower = "base";
  }
  std::vector<int> current;
  if (lower == "current" || upper == "current") {
    ASSIGN_OR_RETURN(current, ResolveRows(graph, current_rows));
  }
  // The lower end as revisions (get_revisions(lower)); a relative lower is
  // resolved below, once the upper targets are known.
  std::vector<int> lower_revs;
  bool lower_relative = false;
  if (lower == "current") {
    lower_revs = current;
  } else if (lower != "base") {
    absl::StatusOr<std::vector<int>> resolved = graph.ResolveSymbol(lower);
    if (resolved.ok()) {
      lower_revs = *std::move(resolved);
    } else if (ParseRelative(lower).has_value()) {
      lower_relative = true;
    } else {
      return resolved.status();
    }
  }
  std::vector<int> targets;
  if (upper == "current") {
    targets = current;
  } else {
    ASSIGN_OR_RETURN(targets, ctx.ParseUpgradeTarget(lower_revs, upper));
  }
  // A named lower end ("label@...") keeps only the targets on that branch.
  if (size_t at = lower.find('@'); at != absl::string_view::npos && !lower_relative) {
    std::string branch(lower.substr(0, at));
    absl::StatusOr<int> branch_rev = graph.ResolveOne(branch);
    if (branch_rev.ok() && *branch_rev >= 0 && graph.id(*branch_rev) == branch &&
        graph.node(*branch_rev).branch_labels.size() == 1) {
      branch = graph.node(*branch_rev).branch_labels.front();
    }
    std::vector<int> on_branch;
    for (int t : targets) {
      const std::vector<std::string>& labels = graph.node(t).branch_labels;
      if (std::find(labels.begin(), labels.end(), branch) != labels.end()) {
        on_branch.push_back(t);
      }
    }
    targets = std::move(on_branch);
  }
  ASSIGN_OR_RETURN(std::vector<bool> required, ctx.AncestorsChecked(targets));
  for (int t : targets) {
    required[t] = true;
  }
  for (int r : lower_revs) {
    if (!required[r]) {
      return RevisionError(
          absl::StrCat("Revision ", lower, " is not an ancestor of revision ", upper));
    }
  }
  if (lower_relative) {
    ASSIGN_OR_RETURN(auto parsed, ctx.ParseDowngradeTarget(targets, lower));
    if (parsed.second >= 0) {
      lower_revs = {parsed.second};
    }
  }
  ASSIGN_OR_RETURN(std::vector<bool> below, ctx.AncestorsChecked(lower_revs));
  std::vector<bool> needs(graph.size(), false);
  for (int i = 0; i < graph.size(); ++i) {
    needs[i] = required[i] && !below[i];
  }
  for (int r : lower_revs) {
    needs[r] = true;  // inclusive
  }
  if (!lower_revs.empty()) {
    const std::vector<bool> above =
        graph.DescendantMask(lower_revs, /*include_dependencies=*/false);
    for (int i = 0; i < graph.size(); ++i) {
      needs[i] = needs[i] && above[i];
    }
  }
  return ctx.TopologicalSort(needs, targets);
}

absl::StatusOr<std::vector<int>> EffectiveCurrentHeads(const RevisionGraph& graph,
                                                       absl::Span<const std::string> rows) {
  ASSIGN_OR_RETURN(std::vector<int> current, ResolveRows(graph, rows));
  return PlanContext(graph).AllCurrent(current);
}

absl::StatusOr<Plan> PlanStamp(const RevisionGraph& graph, absl::Span<const std::string> rows,
                               absl::Span<const std::string> targets, bool purge) {
  if (targets.empty()) {
    return absl::InvalidArgumentError("stamp needs at least one target revision");
  }
  std::vector<int> current;
  if (!purge) {
    ASSIGN_OR_RETURN(current, ResolveRows(graph, rows));
  }
  std::vector<int> dests;
  bool base = false;
  for (const std::string& target : targets) {
    RETURN_IF_ERROR(ValidateTarget(target));
    auto [label, rest] = [&]() -> std::pair<std::string, std::string> {
      size_t at = target.find('@');
      if (at == std::string::npos) {
        return {"", target};
      }
      return {target.substr(0, at), target.substr(at + 1)};
    }();
    if (rest == "base") {
      base = true;
      if (!label.empty()) {
        // `label@base`: drop the rows on that branch.
        ASSIGN_OR_RETURN(std::vector<int> on_branch, graph.FilterForLineage(current, label, true));
        for (int r : on_branch) {
          current.erase(std::find(current.begin(), current.end(), r));
        }
      } else {
        current.clear();
      }
      continue;
    }
    ASSIGN_OR_RETURN(std::vector<int> resolved, graph.ResolveSymbol(target));
    for (int r : resolved) {
      if (std::find(dests.begin(), dests.end(), r) == dests.end()) {
        dests.push_back(r);
      }
    }
  }
  (void)base;
  // Each destination replaces the current rows on its lineage.
  std::vector<int> kept;
  for (int row : current) {
    bool replaced = false;
    for (int dest : dests) {
      const int one[] = {dest};
      if (graph.SharesLineage(row, one, /*include_dependencies=*/true)) {
        replaced = true;
        break;
      }
    }
    if (!replaced) {
      kept.push_back(row);
    }
  }
  for (int dest : dests) {
    for (int other : dests) {
      const int one[] = {other};
      if (other != dest && graph.AncestorMask(one, true)[dest]) {
        return absl::InvalidArgumentError(
            absl::StrCat("stamp targets ", graph.id(dest), " and ", graph.id(other),
                         " are on the same lineage; a version table holds one row per branch"));
      }
    }
  }
  std::vector<std::string> after = graph.Ids(kept);
  for (int dest : dests) {
    after.push_back(graph.id(dest));
  }
  std::sort(after.begin(), after.end());
  after.erase(std::unique(after.begin(), after.end()), after.end());

  Plan plan;
  plan.kind = Plan::Kind::kStamp;
  plan.target = absl::StrJoin(targets, ",");
  plan.rows_before = SortedRows(rows);
  plan.rows_after = after;
  // Deletes for rows that go, inserts for rows that come; pair them into
  // updates where possible so a single-branch stamp is one UPDATE, as in Alembic.
  std::vector<std::string> gone;
  std::vector<std::string> come;
  for (const std::string& r : plan.rows_before) {
    if (!std::binary_search(after.begin(), after.end(), r)) {
      gone.push_back(r);
    }
  }
  for (const std::string& r : after) {
    if (!std::binary_search(plan.rows_before.begin(), plan.rows_before.end(), r)) {
      come.push_back(r);
    }
  }
  size_t paired = std::min(gone.size(), come.size());
  for (size_t k = 0; k < paired; ++k) {
    plan.stamp_changes.push_back({VersionRowChange::Kind::kUpdate, gone[k], come[k]});
  }
  for (size_t k = paired; k < gone.size(); ++k) {
    plan.stamp_changes.push_back({VersionRowChange::Kind::kDelete, gone[k], ""});
  }
  for (size_t k = paired; k < come.size(); ++k) {
    plan.stamp_changes.push_back({VersionRowChange::Kind::kInsert, "", come[k]});
  }
  return plan;
}

absl::StatusOr<std::vector<VersionRowChange>> VersionChangesFor(const RevisionGraph& graph,
                                                                absl::Span<const std::string> rows,
                                                                int revision, Direction direction) {
  RETURN_IF_ERROR(ResolveRows(graph, rows).status());
  HeadMaintainer heads(graph, std::vector<std::string>(rows.begin(), rows.end()));
  return heads.Apply(revision, direction);
}

absl::StatusOr<int> CountPending(const RevisionGraph& graph, absl::Span<const std::string> rows) {
  ASSIGN_OR_RETURN(std::vector<int> current, ResolveRows(graph, rows));
  std::vector<bool> applied = graph.AncestorMask(current, /*include_dependencies=*/true);
  int pending = 0;
  for (int i = 0; i < graph.size(); ++i) {
    pending += applied[i] ? 0 : 1;
  }
  return pending;
}

}  // namespace schemad::engine
