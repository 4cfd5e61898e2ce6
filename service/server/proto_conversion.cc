#include "service/server/proto_conversion.h"

#include <map>
#include <string>

#include "service/server/proto_time.h"
#include "service/server/status_conversion.h"
#include "service/server/wire_safety.h"

namespace schemad::server {
namespace {

template <typename Container>
void CopyStrings(const Container& from, google::protobuf::RepeatedPtrField<std::string>* to) {
  for (const std::string& s : from) {
    to->Add()->assign(s);
  }
}

v1::VersionRowChange::Kind ToProto(engine::VersionRowChange::Kind kind) {
  switch (kind) {
    case engine::VersionRowChange::Kind::kInsert:
      return v1::VersionRowChange::KIND_INSERT;
    case engine::VersionRowChange::Kind::kDelete:
      return v1::VersionRowChange::KIND_DELETE;
    case engine::VersionRowChange::Kind::kUpdate:
      return v1::VersionRowChange::KIND_UPDATE;
  }
  return v1::VersionRowChange::KIND_INSERT;
}

void ToProto(const engine::VersionRowChange& change, v1::VersionRowChange* out) {
  out->set_kind(ToProto(change.kind));
  out->set_from(change.from);
  out->set_to(change.to);
}

}  // namespace

v1::Direction ToProto(engine::Direction direction) {
  return direction == engine::Direction::kUp ? v1::DIRECTION_UP : v1::DIRECTION_DOWN;
}

void ToProto(const engine::PlannedStep& step, const engine::RevisionGraph& graph,
             v1::PlannedStep* out) {
  out->set_revision(step.revision);
  out->set_direction(ToProto(step.direction));
  out->set_path(step.path);
  out->set_statement_count(step.statement_count);
  out->set_transactional(step.transactional);
  const int index = graph.IndexOf(step.revision);
  if (index >= 0) {
    out->set_message(graph.revision(index).message);
  }
}

bool ToProto(const engine::Event& e, const engine::RevisionGraph& graph, v1::OperationEvent* out) {
  ToProto(e.time, out->mutable_time());
  switch (e.kind) {
    case engine::Event::Kind::kOperationStarted: {
      v1::OperationStarted* started = out->mutable_started();
      started->set_operation(e.operation);
      started->set_target(e.target);
      for (const engine::PlannedStep& step : e.plan) {
        ToProto(step, graph, started->add_plan());
      }
      CopyStrings(e.rows_before, started->mutable_rows_before());
      return true;
    }
    case engine::Event::Kind::kWaitingForLock: {
      v1::WaitingForLock* waiting = out->mutable_waiting_for_lock();
      waiting->set_lock_holder(WireErrorText(e.lock_holder));
      ToProto(e.waited, waiting->mutable_waited());
      return true;
    }
    case engine::Event::Kind::kLockAcquired:
      ToProto(e.waited, out->mutable_lock_acquired()->mutable_waited());
      return true;
    case engine::Event::Kind::kRevisionStarted: {
      v1::RevisionStarted* started = out->mutable_revision_started();
      started->set_revision(e.revision);
      started->set_direction(ToProto(e.direction));
      started->set_step_index(e.step_index);
      started->set_step_count(e.step_count);
      started->set_statement_count(e.statement_count);
      return true;
    }
    case engine::Event::Kind::kStatementStarted: {
      v1::StatementStarted* statement = out->mutable_statement_started();
      statement->set_revision(e.revision);
      statement->set_step_index(e.step_index);
      statement->set_step_count(e.step_count);
      statement->set_statement_index(e.statement_index);
      statement->set_statement_count(e.statement_count);
      statement->set_line(e.line);
      return true;
    }
    case engine::Event::Kind::kRevisionFinished: {
      v1::RevisionFinished* finished = out->mutable_revision_finished();
      finished->set_revision(e.revision);
      finished->set_direction(ToProto(e.direction));
      finished->set_step_index(e.step_index);
      finished->set_step_count(e.step_count);
      ToProto(e.duration, finished->mutable_duration());
      if (!e.status.ok()) {
        ToProtoError(e.status, finished->mutable_error());
      }
      return true;
    }
    case engine::Event::Kind::kOperationFinished:
      return false;
  }
  return false;
}

void ToProto(const engine::Plan& plan, const engine::RevisionGraph& graph, v1::PlanResponse* out) {
  switch (plan.kind) {
    case engine::Plan::Kind::kUpgrade:
      out->set_kind(v1::PlanRequest::KIND_UPGRADE);
      break;
    case engine::Plan::Kind::kDowngrade:
      out->set_kind(v1::PlanRequest::KIND_DOWNGRADE);
      break;
    case engine::Plan::Kind::kStamp:
      out->set_kind(v1::PlanRequest::KIND_STAMP);
      break;
  }
  out->set_target(plan.target);
  CopyStrings(plan.rows_before, out->mutable_rows_before());
  const std::vector<engine::PlannedStep> described = engine::DescribePlan(graph, plan);
  for (size_t i = 0; i < plan.steps.size(); ++i) {
    v1::PlanStep* step = out->add_steps();
    ToProto(described[i], graph, step->mutable_step());
    for (const engine::VersionRowChange& change : plan.steps[i].version_changes) {
      ToProto(change, step->add_version_changes());
    }
    CopyStrings(plan.steps[i].rows_after, step->mutable_rows_after());
  }
  CopyStrings(plan.rows_after, out->mutable_rows_after());
  for (const engine::VersionRowChange& change : plan.stamp_changes) {
    ToProto(change, out->add_stamp_changes());
  }
  MakeWireSafe(out);
}

void ToProto(const engine::LintFinding& finding, v1::LintFinding* out) {
  out->set_rule(finding.rule);
  out->set_severity(std::string(engine::LintSeverityName(finding.severity)));
  out->set_revision(finding.revision);
  out->set_file(finding.file);
  out->set_line(finding.line);
  out->set_statement(finding.statement);
  out->set_message(finding.message);
}

void AddPlanLintFindings(const engine::Plan& plan, const engine::RevisionGraph& graph,
                         const std::vector<engine::LintFinding>& findings,
                         google::protobuf::RepeatedPtrField<v1::LintFinding>* out) {
  if (plan.kind != engine::Plan::Kind::kUpgrade || findings.empty()) {
    return;
  }
  std::map<std::string, std::vector<const engine::LintFinding*>> by_revision;
  for (const engine::LintFinding& finding : findings) {
    by_revision[finding.revision].push_back(&finding);
  }
  for (const engine::PlanStep& step : plan.steps) {
    const auto it = by_revision.find(graph.id(step.revision));
    if (step.direction != engine::Direction::kUp || it == by_revision.end()) {
      continue;
    }
    for (const engine::LintFinding* finding : it->second) {
      ToProto(*finding, out->Add());
    }
  }
}

void ToProto(const engine::DatabaseStatus& status, v1::DatabaseStatus* out) {
  out->set_version_table_exists(status.version_table_exists);
  CopyStrings(status.rows, out->mutable_current_heads());
  CopyStrings(status.graph_heads, out->mutable_graph_heads());
  out->set_pending(status.pending);
  out->set_at_head(status.at_head);
  out->set_row_error(WireErrorText(status.row_error));
  if (status.needs_attention) {
    const store::NeedsAttention& marker = *status.needs_attention;
    v1::NeedsAttention* na = out->mutable_needs_attention();
    na->set_revision(marker.revision);
    na->set_direction(marker.direction == "down" ? v1::DIRECTION_DOWN : v1::DIRECTION_UP);
    na->set_statements_done(marker.statements_done);
    na->set_statements_total(marker.statements_total);
    na->set_error(WireErrorText(marker.error));
    na->set_operation_id(marker.operation_id);
    if (marker.started != absl::InfinitePast()) {
      ToProto(marker.started, na->mutable_started());
    }
  }
  if (status.needs_attention) {
    out->set_state(v1::DATABASE_STATE_NEEDS_ATTENTION);
  } else if (!status.row_error.empty() || status.pending < 0) {
    out->set_state(v1::DATABASE_STATE_INVALID);
  } else if (status.pending > 0) {
    out->set_state(v1::DATABASE_STATE_BEHIND);
  } else {
    out->set_state(v1::DATABASE_STATE_AT_HEAD);
  }
  MakeWireSafe(out);
}

void ToProto(const store::HistoryRecord& r, v1::HistoryEntry* out) {
  out->set_id(r.id);
  out->set_revision(r.revision);
  out->set_direction(r.direction);
  CopyStrings(r.rows_before, out->mutable_rows_before());
  CopyStrings(r.rows_after, out->mutable_rows_after());
  out->set_checksum(r.checksum);
  if (r.started != absl::InfinitePast()) {
    ToProto(r.started, out->mutable_started());
  }
  ToProto(r.duration, out->mutable_duration());
  out->set_outcome(r.outcome);
  out->set_error(WireErrorText(r.error));
  out->set_who(r.who);
  out->set_operation_id(r.operation_id);
  out->set_schemad_version(r.schemad_version);
  MakeWireSafe(out);
}

namespace {

void ToProto(const engine::ValidationIssue& issue, v1::ValidationIssue* o) {
  switch (issue.kind) {
    case engine::ValidationIssue::Kind::kChanged:
      o->set_kind(v1::ValidationIssue::KIND_CHANGED);
      break;
    case engine::ValidationIssue::Kind::kCosmetic:
      o->set_kind(v1::ValidationIssue::KIND_COSMETIC);
      break;
    case engine::ValidationIssue::Kind::kMissingFile:
      o->set_kind(v1::ValidationIssue::KIND_MISSING_FILE);
      break;
    case engine::ValidationIssue::Kind::kNoChecksum:
      o->set_kind(v1::ValidationIssue::KIND_NO_CHECKSUM);
      break;
  }
  o->set_revision(issue.revision);
  o->set_path(issue.path);
  o->set_recorded_checksum(issue.recorded_checksum);
  o->set_current_checksum(issue.current_checksum);
}

}  // namespace

void ToProto(const engine::RepairResult& result, v1::RepairResponse* out) {
  out->set_operation_id(result.operation_id);
  for (const engine::ValidationIssue& issue : result.repaired) {
    ToProto(issue, out->add_repaired());
  }
  for (const engine::ValidationIssue& issue : result.not_repaired) {
    ToProto(issue, out->add_not_repaired());
  }
  MakeWireSafe(out);
}

void ToProto(const engine::ValidationReport& report, v1::ValidateResponse* out) {
  out->set_ok(report.ok());
  out->set_applied_checked(report.applied_checked);
  for (const engine::ValidationIssue& issue : report.issues) {
    ToProto(issue, out->add_issues());
  }
  MakeWireSafe(out);
}

void ToProto(const engine::RevisionGraph& graph, v1::MigrationSet* out) {
  CopyStrings(graph.HeadIds(), out->mutable_heads());
  CopyStrings(graph.Ids(graph.bases()), out->mutable_bases());
  for (int i = 0; i < graph.size(); ++i) {
    const engine::Revision& rev = graph.revision(i);
    const engine::RevisionGraph::Node& node = graph.node(i);
    if (graph.IsBranchPoint(i)) {
      out->add_branch_points(rev.id);
    }
    v1::RevisionInfo* info = out->add_revisions();
    info->set_id(rev.id);
    CopyStrings(rev.revises, info->mutable_revises());
    CopyStrings(rev.branch_labels, info->mutable_branch_labels());
    CopyStrings(node.branch_labels, info->mutable_effective_labels());
    CopyStrings(rev.depends_on, info->mutable_depends_on());
    info->set_message(rev.message);
    info->set_created(rev.created);
    info->set_path(rev.path);
    info->set_transactional(rev.transactional);
    info->set_reversible(rev.reversible());
    info->set_checksum(rev.checksum);
    info->set_upgrade_statements(rev.upgrade ? static_cast<int>(rev.upgrade->statements.size())
                                             : 0);
    info->set_downgrade_statements(
        rev.downgrade ? static_cast<int>(rev.downgrade->statements.size()) : 0);
    CopyStrings(graph.Ids(node.next), info->mutable_children());
    info->set_is_head(node.next.empty());
    info->set_is_base(node.down.empty());
    info->set_is_branch_point(graph.IsBranchPoint(i));
    info->set_is_merge_point(graph.IsMergePoint(i));
    if (rev.lock_timeout) {
      ToProto(*rev.lock_timeout, info->mutable_lock_timeout());
    }
    if (rev.statement_timeout) {
      ToProto(*rev.statement_timeout, info->mutable_statement_timeout());
    }
  }
  MakeWireSafe(out);
}

void ToProto(const engine::OperationResult& result, const engine::RevisionGraph& graph,
             v1::OperationResult* out) {
  out->set_operation_id(result.operation_id);
  CopyStrings(result.rows_before, out->mutable_rows_before());
  CopyStrings(result.rows_after, out->mutable_heads());
  out->set_revisions_run(result.revisions_run);
  out->set_took_lock(result.took_lock);
  ToProto(result.duration, out->mutable_duration());
  for (const engine::PlannedStep& step : engine::DescribePlan(graph, result.plan)) {
    ToProto(step, graph, out->add_plan());
  }
  MakeWireSafe(out);
}

}  // namespace schemad::server
