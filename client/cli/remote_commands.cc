// schemactl --server: the database verbs through the schemad SDK. Output and
// JSON shapes mirror direct_commands.cc; progress goes through the same
// ProgressSink, fed with the server's events.
#include "client/cli/remote_commands.h"

#include <algorithm>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/cli/command_util.h"
#include "client/cli/output.h"
#include "schemad/client.h"
#include "service/common/status_macros.h"
#include "service/engine/events.h"

namespace schemad::cli {

using internal::Finish;
using internal::Io;
using internal::RowsText;
using internal::StringListJson;

namespace {

// ------------------------------------------------------------- connecting

absl::StatusOr<std::unique_ptr<Client>> Open(const GlobalOptions& global,
                                             const RemoteOptions& remote) {
  if (remote.server.empty()) {
    return UsageError(
        "this verb needs a schemad server: pass --server HOST:PORT or set "
        "SCHEMAD_SERVER");
  }
  ClientOptions options;
  options.target = remote.server;
  options.tls = remote.tls;
  options.root_ca_file = remote.tls_ca;
  options.cert_file = remote.tls_cert;
  options.key_file = remote.tls_key;
  options.tls_server_name = remote.tls_server_name;
  options.token = remote.token;
  if (options.token.empty() && !remote.token_file.empty()) {
    std::ifstream in(remote.token_file);
    if (!in) {
      return UsageError(absl::StrCat("--token-file: cannot read ", remote.token_file));
    }
    std::stringstream content;
    content << in.rdbuf();
    options.token = std::string(absl::StripAsciiWhitespace(content.str()));
  }
  options.who = global.who.empty() ? DefaultWho() : global.who;
  options.default_deadline = remote.timeout;
  options.retry.max_elapsed = remote.timeout;
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(std::move(options));
  if (!client.ok() && client.status().code() == absl::StatusCode::kInvalidArgument) {
    return WithExitCode(client.status(), kExitUsage);
  }
  return client;
}

absl::Status NeedDatabase(const RemoteOptions& remote) {
  if (remote.database.empty()) {
    return UsageError(
        "with --server this verb needs the database's name: --database NAME (or "
        "SCHEMAD_DATABASE)");
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------- progress

ProgressSink::Mode ProgressMode(const GlobalOptions& global) {
  if (global.quiet) {
    return ProgressSink::Mode::kNone;
  }
  if (global.json) {
    return ProgressSink::Mode::kJsonLines;
  }
  if (global.progress_is_terminal && !global.no_progress) {
    return ProgressSink::Mode::kLive;
  }
  return ProgressSink::Mode::kPlain;
}

engine::Direction ToEngine(Direction direction) {
  return direction == Direction::kDown ? engine::Direction::kDown : engine::Direction::kUp;
}

// A server event as the engine event the progress display knows; nullopt
// for `accepted`, which has no engine form.
std::optional<engine::Event> ToEngineEvent(const OperationEvent& e, const std::string& operation,
                                           const std::string& target) {
  engine::Event out;
  out.time = e.time;
  out.operation_id = e.operation_id;
  out.operation = operation;
  out.target = target;
  out.revision = e.revision;
  out.direction = ToEngine(e.direction);
  out.step_index = e.step_index;
  out.step_count = e.step_count;
  out.statement_index = e.statement_index;
  out.statement_count = e.statement_count;
  out.line = e.line;
  out.lock_holder = e.lock_holder;
  out.waited = e.waited;
  out.duration = e.duration;
  out.status = e.status;
  switch (e.kind) {
    case OperationEvent::Kind::kOperationStarted:
      out.kind = engine::Event::Kind::kOperationStarted;
      for (const PlannedStep& step : e.plan) {
        out.plan.push_back(engine::PlannedStep{step.revision, ToEngine(step.direction), step.path,
                                               step.statement_count, step.transactional});
      }
      out.rows_before = e.rows_before;
      return out;
    case OperationEvent::Kind::kWaitingForLock:
      out.kind = engine::Event::Kind::kWaitingForLock;
      return out;
    case OperationEvent::Kind::kLockAcquired:
      out.kind = engine::Event::Kind::kLockAcquired;
      return out;
    case OperationEvent::Kind::kRevisionStarted:
      out.kind = engine::Event::Kind::kRevisionStarted;
      return out;
    case OperationEvent::Kind::kStatementStarted:
      out.kind = engine::Event::Kind::kStatementStarted;
      return out;
    case OperationEvent::Kind::kRevisionFinished:
      out.kind = engine::Event::Kind::kRevisionFinished;
      return out;
    case OperationEvent::Kind::kOperationFinished:
      out.kind = engine::Event::Kind::kOperationFinished;
      out.rows_after = e.heads;
      return out;
    case OperationEvent::Kind::kAccepted:
    case OperationEvent::Kind::kUnknown:
      break;
  }
  return std::nullopt;
}

// Shows a streamed operation's events.
class RemoteProgress {
 public:
  explicit RemoteProgress(const Io& io) : io_(io), mode_(ProgressMode(io.global)) {
    ProgressSink::Options options;
    options.mode = mode_;
    options.width = io.global.terminal_width;
    options.ticker = mode_ == ProgressSink::Mode::kLive;
    sink_ = std::make_unique<ProgressSink>(io.err, options);
  }

  void OnEvent(const OperationEvent& e) {
    if (!e.operation_id.empty()) {
      operation_id_ = e.operation_id;
    }
    if (e.kind == OperationEvent::Kind::kAccepted) {
      operation_ = ToString(e.operation_kind);
      target_ = e.target;
      if (mode_ == ProgressSink::Mode::kPlain || mode_ == ProgressSink::Mode::kLive) {
        io_.err << "operation " << e.operation_id << " on " << e.database << ": " << operation_
                << " " << target_ << "\n";
      } else if (mode_ == ProgressSink::Mode::kJsonLines) {
        Json json;
        json["event"] = "accepted";
        json["operation_id"] = e.operation_id;
        json["database"] = e.database;
        json["operation"] = operation_;
        json["target"] = target_;
        json["who"] = e.who;
        io_.err << json.dump() << "\n";
      }
      return;
    }
    std::optional<engine::Event> event = ToEngineEvent(e, operation_, target_);
    if (event.has_value()) {
      sink_->OnEvent(*event);
    }
  }
  void Finish() { sink_->Finish(); }
  const std::string& operation_id() const { return operation_id_; }

 private:
  const Io& io_;
  const ProgressSink::Mode mode_;
  std::unique_ptr<ProgressSink> sink_;
  std::string operation_id_;
  std::string operation_;
  std::string target_;
};

// -------------------------------------------------------------- results

// After a failed call: the server's database status decides between "needs
// attention" (4) and a plain failure (1).
absl::Status Classify(Client& client, const RemoteOptions& remote, absl::Status status) {
  if (status.ok() || ExitCodeFor(status) != kExitFailed || remote.database.empty()) {
    return status;
  }
  absl::StatusOr<DatabaseStatus> db = client.GetStatus(remote.database);
  if (db.ok() && db->needs_attention.has_value()) {
    return WithExitCode(std::move(status), kExitNeedsAttention);
  }
  return status;
}

Json StepsJson(const std::vector<PlannedStep>& plan) {
  Json steps = Json::array();
  for (const PlannedStep& step : plan) {
    Json item;
    item["revision"] = step.revision;
    item["direction"] = ToString(step.direction);
    steps.push_back(std::move(item));
  }
  return steps;
}

int PrintOperation(const Io& io, absl::string_view name, const std::string& target,
                   const OperationResult& r) {
  if (io.global.json) {
    Json json;
    json["ok"] = true;
    json["operation"] = std::string(name);
    json["operation_id"] = r.operation_id;
    json["database"] = r.database;
    json["target"] = target;
    json["heads_before"] = StringListJson(r.rows_before);
    json["heads_after"] = StringListJson(r.heads);
    json["revisions_run"] = r.revisions_run;
    json["took_lock"] = r.took_lock;
    json["duration_ms"] = Milliseconds(r.duration);
    json["steps"] = StepsJson(r.plan);
    io.out << json.dump() << "\n";
    return kExitOk;
  }
  if (io.global.quiet) {
    return kExitOk;
  }
  if (name == "stamp") {
    io.out << (r.rows_before == r.heads ? "Already stamped: " : "Stamped: ") << RowsText(r.heads);
    if (r.rows_before != r.heads) {
      io.out << " (was " << RowsText(r.rows_before) << ")";
    }
    io.out << "\n";
  } else if (name == "resolve") {
    io.out << "Resolved; version rows now: " << RowsText(r.heads) << "\n";
  } else if (r.revisions_run == 0 && r.plan.empty()) {
    io.out << "Nothing to do; version rows: " << RowsText(r.heads) << "\n";
  } else {
    io.out << (name == "downgrade" ? "Downgraded " : "Upgraded ") << r.revisions_run
           << (r.revisions_run == 1 ? " revision" : " revisions") << " in "
           << DurationText(r.duration) << "; version rows: " << RowsText(r.heads) << "\n";
  }
  return kExitOk;
}

using StreamCall = std::function<absl::StatusOr<OperationResult>(Client&, const CallOptions& call)>;

// Runs a streamed operation with progress; Ctrl-C stops watching.
absl::StatusOr<int> RunStreamed(const Io& io, const RemoteOptions& remote, absl::string_view name,
                                const std::string& target, const StreamCall& call,
                                bool need_database = true) {
  if (need_database) {
    RETURN_IF_ERROR(NeedDatabase(remote));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Open(io.global, remote));
  RemoteProgress progress(io);
  CallOptions options;
  options.on_event = [&progress](const OperationEvent& e) { progress.OnEvent(e); };
  options.stop = io.global.cancelled;
  absl::StatusOr<OperationResult> result = call(*client, options);
  progress.Finish();
  if (!result.ok()) {
    return Classify(*client, remote, result.status());
  }
  return PrintOperation(io, name, target, *result);
}

absl::StatusOr<std::optional<absl::Duration>> LockWait(const GlobalOptions& global,
                                                       const RemoteOptions& remote) {
  if (!remote.lock_wait_set) {
    return std::optional<absl::Duration>();
  }
  return std::optional<absl::Duration>(global.lock_wait);
}

Json NeedsAttentionJson(const std::optional<NeedsAttention>& marker) {
  if (!marker.has_value()) {
    return Json(nullptr);
  }
  Json json;
  json["revision"] = marker->revision;
  json["direction"] = ToString(marker->direction);
  json["statements_done"] = marker->statements_done;
  json["statements_total"] = marker->statements_total;
  json["error"] = marker->error;
  json["operation_id"] = marker->operation_id;
  json["started"] = marker->started ? Json(TimeText(*marker->started)) : Json(nullptr);
  return json;
}

std::string StateText(const DatabaseStatus& s) {
  switch (s.state) {
    case DatabaseStatus::State::kAtHead:
      return "at head";
    case DatabaseStatus::State::kBehind:
      return absl::StrCat("behind by ", s.pending);
    case DatabaseStatus::State::kNeedsAttention:
      return "needs attention";
    case DatabaseStatus::State::kUnreachable:
      return "unreachable";
    case DatabaseStatus::State::kInvalid:
      return "invalid version rows";
    case DatabaseStatus::State::kUnspecified:
      break;
  }
  return "unknown";
}

Json OperationInfoJson(const OperationInfo& op) {
  Json json;
  json["operation_id"] = op.operation_id;
  json["database"] = op.database;
  json["operation"] = ToString(op.kind);
  json["target"] = op.target;
  json["who"] = op.who;
  json["state"] = ToString(op.state);
  json["created"] = TimeText(op.created);
  json["started"] = op.started ? Json(TimeText(*op.started)) : Json(nullptr);
  json["finished"] = op.finished ? Json(TimeText(*op.finished)) : Json(nullptr);
  json["error"] = op.error.ok() ? Json(nullptr) : StatusJson(op.error, ExitCodeFor(op.error));
  json["cancel_requested"] = op.cancel_requested;
  json["current_revision"] = op.current_revision;
  json["heads_after"] = StringListJson(op.heads);
  return json;
}

void PrintOperationInfo(const OperationInfo& op, std::ostream& out) {
  out << op.operation_id << "  " << op.database << "  " << ToString(op.kind) << " " << op.target
      << "  " << ToString(op.state);
  if (!op.current_revision.empty()) {
    out << " (revision " << op.current_revision << ", step " << op.step_index + 1 << " of "
        << op.step_count << ")";
  }
  if (op.cancel_requested && op.state == OperationState::kRunning) {
    out << " (cancel requested)";
  }
  out << "  " << TimeText(op.created) << "  " << op.who << "\n";
  if (!op.error.ok()) {
    out << "    error: " << op.error.message() << "\n";
  }
}

}  // namespace

// ---------------------------------------------------------------- verbs

int RunRemoteUpgrade(const GlobalOptions& global, const RemoteOptions& remote,
                     const UpgradeOptions& options, std::ostream& out, std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, [&]() -> absl::StatusOr<int> {
    if (options.sql) {
      return internal::RunOfflineSql(io, "upgrade", options.target, false, options.transaction);
    }
    ASSIGN_OR_RETURN(const bool all, internal::TransactionAll(options.transaction));
    ASSIGN_OR_RETURN(std::optional<absl::Duration> lock_wait, LockWait(global, remote));
    UpgradeRequest request;
    request.target = options.target;
    request.allow_changed = options.allow_changed;
    request.transaction_mode = all ? TransactionMode::kAll : TransactionMode::kPerRevision;
    request.lock_wait = lock_wait;
    return RunStreamed(io, remote, "upgrade", options.target,
                       [&](Client& client, const CallOptions& call) {
                         return client.Upgrade(remote.database, request, call);
                       });
  }());
}

int RunRemoteDowngrade(const GlobalOptions& global, const RemoteOptions& remote,
                       const DowngradeOptions& options, std::ostream& out, std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, [&]() -> absl::StatusOr<int> {
    if (options.target.empty()) {
      return UsageError("downgrade: a TARGET is required (e.g. -1, base, 3f2a)");
    }
    if (options.sql) {
      return internal::RunOfflineSql(io, "downgrade", options.target, true, options.transaction);
    }
    ASSIGN_OR_RETURN(std::optional<absl::Duration> lock_wait, LockWait(global, remote));
    DowngradeRequest request;
    request.target = options.target;
    request.lock_wait = lock_wait;
    return RunStreamed(io, remote, "downgrade", options.target,
                       [&](Client& client, const CallOptions& call) {
                         return client.Downgrade(remote.database, request, call);
                       });
  }());
}

int RunRemoteStamp(const GlobalOptions& global, const RemoteOptions& remote,
                   const StampOptions& options, std::ostream& out, std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, [&]() -> absl::StatusOr<int> {
    if (options.revisions.empty()) {
      return UsageError("stamp: name the revision(s) to stamp (REV..., heads, base)");
    }
    RETURN_IF_ERROR(NeedDatabase(remote));
    ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Open(global, remote));
    ASSIGN_OR_RETURN(OperationResult result,
                     client->Stamp(remote.database, options.revisions, options.purge));
    return PrintOperation(io, "stamp", absl::StrJoin(options.revisions, ","), result);
  }());
}

int RunRemoteResolve(const GlobalOptions& global, const RemoteOptions& remote,
                     const ResolveOptions& options, std::ostream& out, std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, [&]() -> absl::StatusOr<int> {
    if (options.applied == options.rolled_back) {
      return UsageError(
          "resolve: pass exactly one of --applied (the interrupted revision is complete) or "
          "--rolled-back (its effects were undone)");
    }
    RETURN_IF_ERROR(NeedDatabase(remote));
    ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Open(global, remote));
    ASSIGN_OR_RETURN(OperationResult result, client->Resolve(remote.database, options.applied));
    return PrintOperation(io, "resolve", options.applied ? "applied" : "rolled-back", result);
  }());
}

int RunRemoteEnsureHead(const GlobalOptions& global, const RemoteOptions& remote,
                        const EnsureHeadOptions& options, std::ostream& out, std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, [&]() -> absl::StatusOr<int> {
    RETURN_IF_ERROR(NeedDatabase(remote));
    ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Open(global, remote));
    ASSIGN_OR_RETURN(std::optional<absl::Duration> lock_wait, LockWait(global, remote));
    ::schemad::EnsureHeadOptions ensure;  // the SDK's, not the CLI's
    ensure.no_apply = options.no_apply;
    ensure.lock_wait = lock_wait;
    absl::StatusOr<EnsureHeadResult> result = client->EnsureHead(remote.database, ensure);
    if (!result.ok()) {
      absl::Status status = Classify(*client, remote, result.status());
      if (result.status().code() == absl::StatusCode::kFailedPrecondition &&
          ExitCodeFor(status) == kExitFailed) {
        // Behind and not applying (told so, or not allowed here): "not at head".
        absl::StatusOr<DatabaseStatus> db = client->GetStatus(remote.database);
        if (db.ok() && db->state == DatabaseStatus::State::kBehind) {
          return WithExitCode(std::move(status), kExitNotAtHead);
        }
      }
      return status;
    }
    if (io.global.json) {
      Json json;
      json["ok"] = true;
      json["operation"] = "ensure-head";
      json["operation_id"] = result->operation_id;
      json["database"] = remote.database;
      json["applied"] = result->applied;
      json["heads_before"] = StringListJson(result->rows_before);
      json["heads_after"] = StringListJson(result->heads);
      json["revisions_run"] = result->revisions_applied;
      io.out << json.dump() << "\n";
    } else if (!io.global.quiet) {
      if (result->applied) {
        io.out << "Upgraded " << result->revisions_applied
               << (result->revisions_applied == 1 ? " revision" : " revisions") << " (operation "
               << result->operation_id << "); version rows: " << RowsText(result->heads) << "\n";
      } else {
        io.out << "At head: " << RowsText(result->heads) << "\n";
      }
    }
    return kExitOk;
  }());
}

int RunRemoteCurrent(const GlobalOptions& global, const RemoteOptions& remote,
                     const CurrentOptions& options, std::ostream& out, std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, [&]() -> absl::StatusOr<int> {
    RETURN_IF_ERROR(NeedDatabase(remote));
    ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Open(global, remote));
    ASSIGN_OR_RETURN(DatabaseStatus status, client->GetStatus(remote.database));
    absl::Status problem;
    if (!status.row_error.empty()) {
      problem =
          absl::FailedPreconditionError(absl::StrCat("the version rows do not fit migration set ",
                                                     status.migration_set, ": ", status.row_error));
    } else if (status.needs_attention.has_value()) {
      const NeedsAttention& na = *status.needs_attention;
      problem = WithExitCode(
          absl::FailedPreconditionError(absl::StrCat(
              "database needs attention: non-transactional revision ", na.revision, " (",
              ToString(na.direction), ") stopped after ", na.statements_done, " of ",
              na.statements_total, " statement(s)", na.error.empty() ? "" : ": ", na.error,
              "; check the database, then `schemactl resolve --applied` or `--rolled-back`")),
          kExitNeedsAttention);
    } else if (!status.at_head && options.check_heads) {
      problem =
          WithExitCode(absl::FailedPreconditionError(absl::StrCat(
                           "not at head: ", status.pending, " revision(s) pending (heads: ",
                           absl::StrJoin(status.graph_heads, ", "), "); run `schemactl upgrade`")),
                       kExitNotAtHead);
    }
    const bool fails =
        !problem.ok() && (options.check_heads || ExitCodeFor(problem) == kExitFailed);
    const int code = fails ? ExitCodeFor(problem) : kExitOk;
    if (io.global.json) {
      Json json;
      json["ok"] = !fails;
      if (fails) {
        json["error"] = StatusJson(problem, code);
      }
      json["database"] = status.display_name;
      json["version_table_exists"] = status.version_table_exists;
      json["rows"] = StringListJson(status.current_heads);
      json["heads"] = StringListJson(status.graph_heads);
      json["at_head"] = status.at_head;
      json["pending"] = status.pending;
      json["needs_attention"] = NeedsAttentionJson(status.needs_attention);
      if (!status.row_error.empty()) {
        json["row_error"] = status.row_error;
      }
      io.out << json.dump() << "\n";
    } else {
      for (const std::string& row : status.current_heads) {
        const bool head = std::find(status.graph_heads.begin(), status.graph_heads.end(), row) !=
                          status.graph_heads.end();
        io.out << row << (head ? " (head)" : "") << "\n";
      }
      if (!io.global.quiet) {
        if (status.current_heads.empty()) {
          io.err << "(no version rows: " << status.display_name << " is at base)\n";
        }
        if (problem.ok() && !status.at_head && status.pending > 0) {
          io.err << status.pending << " revision(s) pending; `schemactl upgrade` applies them\n";
        }
      }
    }
    if (!problem.ok()) {
      io.err << (fails ? "schemactl: error: " : "schemactl: warning: ") << problem.message()
             << "\n";
    }
    return code;
  }());
}

int RunRemoteValidate(const GlobalOptions& global, const RemoteOptions& remote,
                      const ValidateOptions&, std::ostream& out, std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, [&]() -> absl::StatusOr<int> {
    RETURN_IF_ERROR(NeedDatabase(remote));
    ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Open(global, remote));
    ASSIGN_OR_RETURN(ValidationResult report, client->Validate(remote.database));
    const auto kind_name = [](ValidationIssue::Kind kind) {
      switch (kind) {
        case ValidationIssue::Kind::kChanged:
          return "changed";
        case ValidationIssue::Kind::kMissingFile:
          return "missing_file";
        case ValidationIssue::Kind::kNoChecksum:
          return "no_checksum";
      }
      return "unknown";
    };
    if (io.global.json) {
      Json json;
      json["ok"] = report.ok;
      json["applied_checked"] = report.applied_checked;
      Json issues = Json::array();
      for (const ValidationIssue& issue : report.issues) {
        Json item;
        item["kind"] = kind_name(issue.kind);
        item["revision"] = issue.revision;
        item["path"] = issue.path;
        item["recorded_checksum"] = issue.recorded_checksum;
        item["current_checksum"] = issue.current_checksum;
        issues.push_back(std::move(item));
      }
      json["issues"] = std::move(issues);
      io.out << json.dump() << "\n";
    } else {
      std::vector<std::string> unrecorded;
      for (const ValidationIssue& issue : report.issues) {
        if (issue.kind == ValidationIssue::Kind::kChanged) {
          io.out << "changed       " << issue.revision << "  " << issue.path << "  (applied "
                 << issue.recorded_checksum.substr(0, 12) << ", file now "
                 << issue.current_checksum.substr(0, 12) << ")\n";
        } else if (issue.kind == ValidationIssue::Kind::kMissingFile) {
          io.out << "missing file  " << issue.revision
                 << "  (applied, but no revision file on the server)\n";
        } else {
          unrecorded.push_back(issue.revision);
        }
      }
      if (!unrecorded.empty() && !io.global.quiet) {
        io.out << "no checksum   " << absl::StrJoin(unrecorded, ", ")
               << "  (applied before schemad recorded checksums, e.g. by Alembic)\n";
      }
      if (!io.global.quiet || !report.ok) {
        io.out << (report.ok ? "OK: " : "FAILED: ") << report.applied_checked
               << " applied revision(s) checked\n";
      }
    }
    if (!report.ok) {
      io.err << "schemactl: error: applied revisions do not match their files\n";
    }
    return report.ok ? kExitOk : kExitFailed;
  }());
}

int RunRemoteHistory(const GlobalOptions& global, const RemoteOptions& remote,
                     const HistoryOptions& options, std::ostream& out, std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, [&]() -> absl::StatusOr<int> {
    RETURN_IF_ERROR(NeedDatabase(remote));
    ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Open(global, remote));
    ASSIGN_OR_RETURN(std::vector<HistoryEntry> records,
                     client->History(remote.database, options.limit));
    if (io.global.json) {
      Json list = Json::array();
      for (const HistoryEntry& record : records) {
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
      io.out << json.dump() << "\n";
      return kExitOk;
    }
    for (const HistoryEntry& record : records) {
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
  }());
}

int RunRemotePlan(const GlobalOptions& global, const RemoteOptions& remote,
                  const PlanOptions& options, std::ostream& out, std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, [&]() -> absl::StatusOr<int> {
    RETURN_IF_ERROR(NeedDatabase(remote));
    ASSIGN_OR_RETURN(const bool all, internal::TransactionAll(options.transaction));
    ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Open(global, remote));
    PlanRequest request;
    request.kind = options.direction == "downgrade" ? PlanRequest::Kind::kDowngrade
                                                    : PlanRequest::Kind::kUpgrade;
    request.targets = {options.target};
    request.sql = options.sql;
    request.transaction_mode = all ? TransactionMode::kAll : TransactionMode::kPerRevision;
    if (options.from.has_value()) {
      // Plan from given rows against the database's migration set.
      ASSIGN_OR_RETURN(MigrationSetInfo set, client->DescribeMigrationSet("", remote.database));
      request.migration_set = set.name;
      if (*options.from != "base" && !options.from->empty()) {
        for (absl::string_view row : absl::StrSplit(*options.from, ',')) {
          request.from_rows.emplace_back(absl::StripAsciiWhitespace(row));
        }
      }
    } else {
      request.database = remote.database;
    }
    ASSIGN_OR_RETURN(PlanResult plan, client->Plan(request));
    if (options.sql && !io.global.json) {
      io.out << plan.sql;
      return kExitOk;
    }
    if (io.global.json) {
      Json json;
      Json steps = Json::array();
      for (const PlanStep& step : plan.steps) {
        Json item;
        item["revision"] = step.step.revision;
        item["direction"] = ToString(step.step.direction);
        steps.push_back(std::move(item));
      }
      json["steps"] = std::move(steps);
      json["heads_after"] = StringListJson(plan.rows_after);
      json["kind"] = options.direction;
      json["target"] = plan.target;
      json["heads_before"] = StringListJson(plan.rows_before);
      if (options.sql) {
        json["sql"] = plan.sql;
      }
      io.out << json.dump() << "\n";
      return kExitOk;
    }
    if (plan.steps.empty()) {
      io.out << "Nothing to do: " << options.direction << " " << plan.target << " from "
             << RowsText(plan.rows_before) << " changes nothing.\n";
      return kExitOk;
    }
    io.out << "Plan: " << options.direction << " " << plan.target << " from "
           << RowsText(plan.rows_before) << ", " << plan.steps.size()
           << (plan.steps.size() == 1 ? " revision" : " revisions") << "\n";
    for (const PlanStep& step : plan.steps) {
      io.out << "  " << (step.step.direction == Direction::kUp ? "up  " : "down") << "  "
             << step.step.revision << "  " << step.step.message;
      if (!step.step.transactional) {
        io.out << "  (non-transactional)";
      }
      io.out << "\n";
    }
    io.out << "Heads after: " << RowsText(plan.rows_after) << "\n";
    return kExitOk;
  }());
}

int RunRemoteDbs(const GlobalOptions& global, const RemoteOptions& remote,
                 const DbsOptions& options, std::ostream& out, std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, [&]() -> absl::StatusOr<int> {
    ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Open(global, remote));
    ListDatabasesRequest request;
    request.label_selector = options.labels;
    request.include_status = true;
    ASSIGN_OR_RETURN(std::vector<DatabaseInfo> dbs, client->ListDatabases(request));
    if (io.global.json) {
      Json list = Json::array();
      for (const DatabaseInfo& db : dbs) {
        Json item;
        item["name"] = db.name;
        item["migration_set"] = db.migration_set;
        item["labels"] = db.labels;
        item["target"] = db.display_name;
        const DatabaseStatus status = db.status.value_or(DatabaseStatus{});
        item["state"] = ToString(status.state);
        item["rows"] = StringListJson(status.current_heads);
        item["heads"] = StringListJson(status.graph_heads);
        item["pending"] = status.pending;
        item["needs_attention"] = NeedsAttentionJson(status.needs_attention);
        item["error"] =
            status.error.ok() ? Json(nullptr) : StatusJson(status.error, ExitCodeFor(status.error));
        list.push_back(std::move(item));
      }
      Json json;
      json["databases"] = std::move(list);
      io.out << json.dump() << "\n";
      return kExitOk;
    }
    size_t name_width = 4;
    for (const DatabaseInfo& db : dbs) {
      name_width = std::max(name_width, db.name.size());
    }
    for (const DatabaseInfo& db : dbs) {
      const DatabaseStatus status = db.status.value_or(DatabaseStatus{});
      std::string line = db.name;
      line.resize(name_width + 2, ' ');
      std::string state = StateText(status);
      state.resize(std::max<size_t>(state.size(), 18) + 2, ' ');
      io.out << line << state << RowsText(status.current_heads);
      if (!status.error.ok()) {
        io.out << "  (" << status.error.message() << ")";
      }
      io.out << "\n";
    }
    return kExitOk;
  }());
}

int RunRemoteOps(const GlobalOptions& global, const RemoteOptions& remote,
                 const OpsOptions& options, std::ostream& out, std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, [&]() -> absl::StatusOr<int> {
    if (options.action == "list") {
      ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Open(global, remote));
      ASSIGN_OR_RETURN(
          std::vector<OperationInfo> ops,
          client->ListOperations(remote.database, options.running_only, options.limit));
      if (io.global.json) {
        Json list = Json::array();
        for (const OperationInfo& op : ops) {
          list.push_back(OperationInfoJson(op));
        }
        Json json;
        json["operations"] = std::move(list);
        io.out << json.dump() << "\n";
      } else {
        for (const OperationInfo& op : ops) {
          PrintOperationInfo(op, io.out);
        }
      }
      return kExitOk;
    }
    if (options.operation_id.empty()) {
      return UsageError(absl::StrCat("ops ", options.action, ": name the operation (op-...)"));
    }
    if (options.action == "cancel") {
      ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Open(global, remote));
      ASSIGN_OR_RETURN(OperationInfo op, client->CancelOperation(options.operation_id));
      if (io.global.json) {
        Json json = OperationInfoJson(op);
        json["ok"] = true;
        io.out << json.dump() << "\n";
      } else if (!io.global.quiet) {
        io.out << "Cancel requested: ";
        PrintOperationInfo(op, io.out);
      }
      return kExitOk;
    }
    if (options.action == "watch") {
      RemoteOptions any = remote;
      any.database.clear();  // the operation names its database
      return RunStreamed(
          io, any, "watch", options.operation_id,
          [&](Client& client, const CallOptions& call) {
            return client.WatchOperation(options.operation_id, call);
          },
          /*need_database=*/false);
    }
    return UsageError(
        absl::StrCat("ops: unknown action '", options.action, "' (list, watch or cancel)"));
  }());
}

}  // namespace schemad::cli
