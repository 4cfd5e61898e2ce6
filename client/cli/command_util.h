// Helpers shared by commands.cc (offline verbs) and direct_commands.cc
// (database verbs). Internal to schemactl.
//
// Thread-safety: stateless.
#ifndef SCHEMAD_CLIENT_CLI_COMMAND_UTIL_H_
#define SCHEMAD_CLIENT_CLI_COMMAND_UTIL_H_

#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/cli/commands.h"
#include "client/cli/output.h"
#include "service/engine/lint.h"
#include "service/engine/migration_set_config.h"
#include "service/engine/planner.h"
#include "service/engine/revision_graph.h"
#include "service/store/store.h"

namespace schemad::cli::internal {

// What every verb prints to.
struct Io {
  const GlobalOptions& global;
  std::ostream& out;
  std::ostream& err;
};

// Prints `status` (secrets scrubbed) as "schemactl: error: ..." on err and,
// with --json, `{"ok":false,"error":{...}}` on out; returns ExitCodeFor(status).
int Fail(const Io& io, const absl::Status& status);
// OK: the value; otherwise Fail.
int Finish(const Io& io, const absl::StatusOr<int>& result);

// `text` with the DSN's password (every spelling: as written, decoded,
// percent-encoded, quoted) replaced by "***": dsn::ScrubDsnSecrets.
std::string ScrubSecrets(absl::string_view text, const std::string& dsn);

// What a database adds to `history`: its version rows and when each
// revision was last applied (from schemad_history), for direct and remote
// mode alike.
struct HistoryDatabase {
  std::string where;  // the migration set, for "version row X is not in WHERE"
  std::vector<std::string> rows;
  std::map<std::string, AppliedInfo> last_applied;  // revision -> its newest success
};
// Records one history row (newest first) in `db->last_applied` when it applied
// its revision (an up that succeeded, a resolve --applied) and none newer did.
void NoteApplied(const std::string& revision, const std::string& direction,
                 const std::string& outcome, absl::Time started, absl::Duration duration,
                 const std::string& who, HistoryDatabase* db);
// `history` (not --log) over `graph`: Alembic's order and lines, `-r`
// ranges, -v entries, --json; with `db`, the current and applied marks.
absl::StatusOr<int> PrintHistory(const Io& io, const HistoryOptions& options,
                                 const engine::RevisionGraph& graph, const HistoryDatabase* db);

// Loads and builds the migration directory of --dir.
absl::StatusOr<engine::RevisionGraph> LoadGraph(const GlobalOptions& global);

// "base" (or empty): no rows; otherwise comma-separated symbols, each resolved
// to revision ids (`heads` expands). `what` names the flag in errors.
absl::StatusOr<std::vector<std::string>> ResolveRows(const engine::RevisionGraph& graph,
                                                     absl::string_view text,
                                                     absl::string_view what);

// Revision indices newest first (children before parents, dependents before
// their dependencies), branches kept together.
std::vector<int> NewestFirst(const engine::RevisionGraph& graph);

// `{"steps":[{"revision","direction"}],"heads_after":[...],"kind",...}`.
Json PlanJson(const engine::RevisionGraph& graph, const engine::Plan& plan);
// The plan for people, one line per step.
void PrintPlan(const engine::RevisionGraph& graph, const engine::Plan& plan, absl::string_view verb,
               std::ostream& out);

// --transaction's value: nullopt when not given (""), kExitUsage when not
// per-command (`all`) or per-revision.
absl::StatusOr<std::optional<engine::TransactionScope>> GivenTransactionScope(
    absl::string_view value);

// The scope a direct or offline command runs with: --transaction when given,
// else what the --dir's schemad.conf declares, else per command (Alembic's).
absl::StatusOr<engine::TransactionScope> TransactionScopeFor(const GlobalOptions& global,
                                                             absl::string_view value);

// Creates `path` (which must not exist: FAILED_PRECONDITION naming it) with
// `text`; on a failed write the file is removed (INTERNAL).
absl::Status WriteNewFile(const std::string& path, const std::string& text);

// Offline `upgrade --sql` / `downgrade --sql`: `spec` is "[FROM:]TO".
absl::StatusOr<int> RunOfflineSql(const Io& io, absl::string_view verb, absl::string_view spec,
                                  bool from_required, absl::string_view transaction);

// Rows from the database of --dsn (for `plan` without --from), read without the lock.
absl::StatusOr<std::vector<std::string>> ReadRowsFromDatabase(const GlobalOptions& global);

Json StringListJson(const std::vector<std::string>& values);

// Lint findings of the revisions `options` selects in --dir's graph, with
// DIR/schemad-lint.conf's severities (lint_command.cc).
absl::StatusOr<std::vector<engine::LintFinding>> LintDirectory(const GlobalOptions& global,
                                                               const engine::RevisionGraph& graph,
                                                               const LintOptions& options);
// One "file:line: severity: [rule] message" line per finding, then the
// statement's first line indented.
void PrintFindings(const std::vector<engine::LintFinding>& findings, std::ostream& out);
// "1 error, 2 warnings, 0 infos".
std::string FindingsSummary(const std::vector<engine::LintFinding>& findings);
std::string RowsText(const std::vector<std::string>& rows);  // "a, b" or "<base>"

// The database of --dsn (direct_commands.cc): the store opened with
// schemactl's options, a bad DSN a usage error naming where it came from;
// and a session on it, failing to connect being exit 5.
absl::StatusOr<std::unique_ptr<store::Database>> OpenTargetDatabase(const GlobalOptions& global);
absl::StatusOr<std::unique_ptr<store::Session>> ConnectTarget(store::Database& database);

// `revision --autogenerate` (schema_commands.cc): the bodies that take the
// schema at `revises` (empty: an empty database) to options.schema's desired
// state and back. changes == 0: nothing differs (and both bodies are empty).
// FAILED_PRECONDITION listing the destructive changes when there are some and
// options.allow_destructive is false.
// A drift report as `drift` prints it, from the engine (local) or the
// server (--server).
struct DriftView {
  struct Item {
    std::string kind;  // extra, missing, changed
    std::string object_kind;
    std::string object;
    std::string detail;  // what changed (schema_build::DriftDetail)
  };
  std::string database;  // display name
  std::vector<std::string> rows;
  std::vector<Item> items;
  std::string repair_sql;
};
// Prints `view` (text, --json, or with `sql` the repair DDL); kExitOk
// without drift, kExitDrift with.
int PrintDrift(const Io& io, const DriftView& view, bool sql);

struct AutogeneratedBodies {
  std::string upgrade_sql;
  std::string downgrade_sql;
  int changes = 0;
};
absl::StatusOr<AutogeneratedBodies> AutogenerateBodies(const engine::RevisionGraph& graph,
                                                       const std::vector<std::string>& revises,
                                                       const RevisionOptions& options);

// Prints schemad_history rows, newest first: `{"records":[...]}` with --json,
// else one line each. `Record` is store::HistoryRecord (direct mode) or the
// SDK's HistoryEntry (--server): the same fields.
template <typename Record>
int PrintHistoryLog(const Io& io, const std::vector<Record>& records) {
  if (io.global.json) {
    Json list = Json::array();
    for (const Record& record : records) {
      Json item;
      item["id"] = record.id;
      item["revision"] = record.revision;
      item["direction"] = record.direction;
      item["heads_before"] = StringListJson(record.rows_before);
      item["heads_after"] = StringListJson(record.rows_after);
      item["checksum"] = record.checksum;
      item["started"] = TimeText(record.started);
      item["duration_ms"] = Milliseconds(record.duration);
      item["outcome"] = record.outcome;
      item["error"] = record.error;
      item["who"] = record.who;
      item["operation_id"] = record.operation_id;
      item["schemad_version"] = record.schemad_version;
      list.push_back(std::move(item));
    }
    Json json;
    json["records"] = std::move(list);
    io.out << JsonText(json) << "\n";
    return kExitOk;
  }
  for (const Record& record : records) {
    io.out << TimeText(record.started) << "  " << record.direction << "  "
           << (record.revision.empty() ? RowsText(record.rows_after) : record.revision) << "  "
           << record.outcome << "  " << DurationText(record.duration) << "  "
           << RowsText(record.rows_before) << " -> " << RowsText(record.rows_after) << "  "
           << record.who << "  " << record.operation_id << "\n";
    if (!record.error.empty()) {
      io.out << "    error: " << record.error << "\n";
    }
  }
  return kExitOk;
}

}  // namespace schemad::cli::internal

#endif  // SCHEMAD_CLIENT_CLI_COMMAND_UTIL_H_
