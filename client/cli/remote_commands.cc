// schemactl --server: the database verbs through the schemad SDK. Output and
// JSON shapes mirror direct_commands.cc; progress goes through the same
// ProgressSink, fed with the server's events.
#include "client/cli/remote_commands.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
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
#include "service/engine/fleet.h"
#include "service/engine/planner.h"
#include "service/engine/revision_graph.h"

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
                                               step.statement_count, step.transactional,
                                               step.message});
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
    case OperationEvent::Kind::kFleet:
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
    options.color = io.global.color_err;
    sink_ = std::make_unique<ProgressSink>(io.err, options);
  }

  void OnEvent(const OperationEvent& e) {
    if (!e.operation_id.empty()) {
      operation_id_ = e.operation_id;
    }
    if (e.events_dropped_before > 0) {
      // Statement-level events the server did not keep (a replay of a long
      // revision) or skipped for a slow reader; a live line just moves on.
      if (mode_ == ProgressSink::Mode::kPlain) {
        io_.err << "(" << e.events_dropped_before
                << " statement or lock-wait events not shown: the server did not keep them)\n";
      } else if (mode_ == ProgressSink::Mode::kJsonLines) {
        Json json;
        json["event"] = "events_dropped";
        json["operation_id"] = e.operation_id;
        json["count"] = e.events_dropped_before;
        io_.err << JsonText(json) << "\n";
      }
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
        io_.err << JsonText(json) << "\n";
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

// Finish for a verb answered by a server: the exit code means what it means
// in direct mode (docs/cli.md). A role too low for the call
// (PERMISSION_DENIED) is a refused operation, 1, not "cannot connect"; a
// missing or unknown token (UNAUTHENTICATED) is "cannot get in", 5, as a
// password PostgreSQL rejects is in direct mode.
int FinishRemote(const Io& io, absl::StatusOr<int> result) {
  if (!result.ok() && !HasExitCode(result.status())) {
    if (result.status().code() == absl::StatusCode::kPermissionDenied) {
      result = WithExitCode(result.status(), kExitFailed);
    } else if (result.status().code() == absl::StatusCode::kUnauthenticated) {
      result = WithExitCode(result.status(), kExitUnavailable);
    }
  }
  return Finish(io, result);
}

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
    io.out << JsonText(json) << "\n";
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
// A site's rows in the fleet summary: "a1 -> c3  2 revision(s)" for a
// success; "at b2" for a failure whose rows the server read afterwards;
// nothing where they are unknown (never started, or the database did not
// answer), rather than a <base> it may not be at.
std::string SiteRowsText(const FleetSiteResult& r) {
  if (r.outcome == FleetSiteResult::Outcome::kSucceeded) {
    return absl::StrCat(RowsText(r.rows_before), " -> ", RowsText(r.rows_after), "  ",
                        r.revisions_run, " revision(s)");
  }
  return r.rows_after_read ? absl::StrCat("at ", RowsText(r.rows_after)) : "";
}

// The fleet's progress: a live view (redrawn in place: one line per running
// site, then the counts) on a terminal, one line per site event otherwise.
class FleetProgress {
 public:
  // `sites`: how many the run selected; 0 when unknown (watching an
  // operation started elsewhere): then each stage's sites are counted as its
  // (replayed) start event arrives.
  FleetProgress(const Io& io, size_t sites)
      : io_(io), mode_(ProgressMode(io.global)), count_stages_(sites == 0) {
    queued_ = static_cast<int>(sites);
  }

  void OnEvent(const OperationEvent& e) {
    if (e.kind == OperationEvent::Kind::kAccepted && mode_ != ProgressSink::Mode::kNone &&
        mode_ != ProgressSink::Mode::kJsonLines) {
      io_.err << "fleet operation " << e.operation_id << " accepted\n";
    }
    if (e.kind == OperationEvent::Kind::kAccepted && !e.lint_errors.empty()) {
      io_.err << "schemactl: warning: running despite " << e.lint_errors.size()
              << " error-level lint finding(s) (--allow-lint-errors):\n";
      for (const LintFinding& f : e.lint_errors) {
        io_.err << "  " << f.file << ":" << f.line << ": " << f.rule << " (revision " << f.revision
                << "): " << f.message << "\n";
      }
    }
    if (e.kind != OperationEvent::Kind::kFleet || e.fleet == nullptr) {
      return;
    }
    const FleetEvent& f = *e.fleet;
    std::string line;
    switch (f.kind) {
      case FleetEvent::Kind::kStageStarted:
        if (count_stages_) queued_ += static_cast<int>(f.stage_sites.size());
        line = absl::StrCat("stage ", f.stage, ": ", f.stage_sites.size(), " site(s)");
        break;
      case FleetEvent::Kind::kSiteStarted:
        --queued_;
        running_.push_back({f.site, "connecting", absl::Now()});
        line = absl::StrCat(f.site, ": started");
        break;
      case FleetEvent::Kind::kSiteEvent:
        if (f.event != nullptr) {
          SetRunning(f.site, SiteText(*f.event));
        }
        break;
      case FleetEvent::Kind::kSiteFinished:
      case FleetEvent::Kind::kSiteFailed:
      case FleetEvent::Kind::kSiteSkipped: {
        if (f.kind == FleetEvent::Kind::kSiteSkipped) {
          --queued_;
          ++skipped_;
        } else if (f.result.outcome == FleetSiteResult::Outcome::kSucceeded) {
          ++done_;
        } else {
          ++failed_;
        }
        running_.erase(std::remove_if(running_.begin(), running_.end(),
                                      [&](const auto& r) { return r.site == f.site; }),
                       running_.end());
        line = absl::StrCat(
            f.site, ": ", OutcomeName(f.result.outcome),
            f.result.rows_after_read ? absl::StrCat(" at ", RowsText(f.result.rows_after)) : "",
            f.result.outcome == FleetSiteResult::Outcome::kSucceeded
                ? absl::StrCat(", ", f.result.revisions_run, " revision(s)")
                : "",
            f.result.status.ok() ? "" : absl::StrCat(": ", f.result.status.message()));
        break;
      }
      default:
        break;
    }
    switch (mode_) {
      case ProgressSink::Mode::kLive:
        Redraw(line);
        break;
      case ProgressSink::Mode::kPlain:
        if (!line.empty()) {
          io_.err << line << "\n";
        }
        break;
      default:
        break;
    }
  }

  void Close() {
    if (mode_ == ProgressSink::Mode::kLive) {
      Clear();
      io_.err.flush();
    }
  }

 private:
  static std::string SiteText(const OperationEvent& e) {
    switch (e.kind) {
      case OperationEvent::Kind::kWaitingForLock:
        return absl::StrCat("waiting for the lock (", e.lock_holder, ")");
      case OperationEvent::Kind::kRevisionStarted:
      case OperationEvent::Kind::kStatementStarted:
        return absl::StrCat(
            "revision ", e.revision, " (", e.step_index + 1, "/", e.step_count, ")",
            e.kind == OperationEvent::Kind::kStatementStarted
                ? absl::StrCat(" statement ", e.statement_index + 1, "/", e.statement_count)
                : "");
      case OperationEvent::Kind::kOperationStarted:
        return absl::StrCat(e.plan.size(), " revision(s) to run");
      default:
        return "";  // keeps the site's line as it was
    }
  }
  void SetRunning(const std::string& site, std::string text) {
    if (text.empty()) {
      return;
    }
    for (auto& r : running_) {
      if (r.site == site) {
        r.text = std::move(text);
      }
    }
  }
  void Clear() {
    if (drawn_ > 0) {
      io_.err << "\x1b[" << drawn_ << "A\x1b[J";
      drawn_ = 0;
    }
  }
  void Redraw(const std::string& line) {
    Clear();
    if (!line.empty()) {
      io_.err << line << "\n";  // finished lines scroll above the live block
    }
    // The terminal's size now (it follows resizes), else what main saw.
    int width = io_.global.terminal_width;
    int height = 0;
    struct winsize size = {};
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0 && size.ws_row > 0) {
      width = size.ws_col;
      height = size.ws_row;
    }
    internal::FleetCounts counts;
    counts.done = done_;
    counts.failed = failed_;
    counts.queued = std::max(0, queued_);
    counts.skipped = skipped_;
    for (const std::string& row :
         internal::FleetLiveBlock(running_, counts, width, height, absl::Now())) {
      io_.err << row << "\n";
      ++drawn_;
    }
    io_.err.flush();
  }

  const Io& io_;
  const ProgressSink::Mode mode_;
  const bool count_stages_;
  std::vector<internal::FleetRunningSite> running_;
  int done_ = 0;
  int failed_ = 0;
  int skipped_ = 0;
  int queued_ = 0;
  int drawn_ = 0;
};

absl::StatusOr<int> RunStreamed(const Io& io, const RemoteOptions& remote, absl::string_view name,
                                const std::string& target, const StreamCall& call,
                                bool need_database = true) {
  if (need_database) {
    RETURN_IF_ERROR(NeedDatabase(remote));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Open(io.global, remote));
  RemoteProgress progress(io);
  // A fleet operation (`ops watch` of one) shows the per-site view.
  std::optional<FleetProgress> fleet;
  CallOptions options;
  options.on_event = [&](const OperationEvent& e) {
    if (e.kind == OperationEvent::Kind::kFleet) {
      if (!fleet.has_value()) fleet.emplace(io, 0);
      fleet->OnEvent(e);
      return;
    }
    progress.OnEvent(e);
  };
  options.stop = io.global.cancelled;
  absl::StatusOr<OperationResult> result = call(*client, options);
  if (fleet.has_value()) fleet->Close();
  progress.Finish();
  if (!result.ok() && result.status().code() == absl::StatusCode::kCancelled &&
      io.global.cancelled != nullptr && io.global.cancelled->load() &&
      !progress.operation_id().empty()) {
    // Ctrl-C stops watching, not the operation: say how to get back to it.
    const std::string& op = progress.operation_id();
    return absl::CancelledError(absl::StrCat("stopped watching operation ", op,
                                             "; it goes on on the server: follow it with "
                                             "`schemactl --server ",
                                             remote.server, " ops watch ", op,
                                             "`, stop it with "
                                             "`schemactl --server ",
                                             remote.server, " ops cancel ", op, "`"));
  }
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
  json["started"] = marker->started ? Json(JsonTimeText(*marker->started)) : Json(nullptr);
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
  json["created"] = JsonTimeText(op.created);
  json["started"] = op.started ? Json(JsonTimeText(*op.started)) : Json(nullptr);
  json["finished"] = op.finished ? Json(JsonTimeText(*op.finished)) : Json(nullptr);
  json["error"] = op.error.ok() ? Json(nullptr) : StatusJson(op.error, ExitCodeFor(op.error));
  json["cancel_requested"] = op.cancel_requested;
  json["current_revision"] = op.current_revision;
  json["heads_after"] = StringListJson(op.heads);
  json["event_count"] = op.event_count;
  json["events_dropped"] = op.events_dropped;
  json["revisions_run"] = op.revisions_run;
  json["replica"] = op.replica.empty() ? Json(nullptr) : Json(op.replica);
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
  out << "  " << TimeText(op.created) << "  " << op.who;
  if (!op.replica.empty()) {
    out << "  on " << op.replica;  // servers with a control database
  }
  out << "\n";
  if (!op.error.ok()) {
    out << "    error: " << op.error.message() << "\n";
  }
}

}  // namespace

namespace {

// --transaction as a request's: kDefault (the server's migration set
// decides) when not given.
absl::StatusOr<TransactionMode> RequestedTransactionMode(absl::string_view value) {
  ASSIGN_OR_RETURN(std::optional<engine::TransactionScope> given,
                   internal::GivenTransactionScope(value));
  if (!given.has_value()) {
    return TransactionMode::kDefault;
  }
  return *given == engine::TransactionScope::kPerCommand ? TransactionMode::kPerCommand
                                                         : TransactionMode::kPerRevision;
}

}  // namespace

// ---------------------------------------------------------------- verbs

int RunRemoteUpgrade(const GlobalOptions& global, const RemoteOptions& remote,
                     const UpgradeOptions& options, std::ostream& out, std::ostream& err) {
  const Io io{global, out, err};
  return FinishRemote(io, [&]() -> absl::StatusOr<int> {
    if (options.sql) {
      return internal::RunOfflineSql(io, "upgrade", options.target, false, options.transaction);
    }
    ASSIGN_OR_RETURN(const TransactionMode mode, RequestedTransactionMode(options.transaction));
    ASSIGN_OR_RETURN(std::optional<absl::Duration> lock_wait, LockWait(global, remote));
    UpgradeRequest request;
    request.target = options.target;
    request.allow_changed = options.allow_changed;
    request.transaction_mode = mode;
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
  return FinishRemote(io, [&]() -> absl::StatusOr<int> {
    if (options.target.empty()) {
      return UsageError("downgrade: a TARGET is required (e.g. -1, base, 3f2a)");
    }
    if (options.sql) {
      return internal::RunOfflineSql(io, "downgrade", options.target, true, options.transaction);
    }
    ASSIGN_OR_RETURN(const TransactionMode mode, RequestedTransactionMode(options.transaction));
    ASSIGN_OR_RETURN(std::optional<absl::Duration> lock_wait, LockWait(global, remote));
    DowngradeRequest request;
    request.target = options.target;
    request.transaction_mode = mode;
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
  return FinishRemote(io, [&]() -> absl::StatusOr<int> {
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
  return FinishRemote(io, [&]() -> absl::StatusOr<int> {
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
  return FinishRemote(io, [&]() -> absl::StatusOr<int> {
    RETURN_IF_ERROR(NeedDatabase(remote));
    ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Open(global, remote));
    ASSIGN_OR_RETURN(std::optional<absl::Duration> lock_wait, LockWait(global, remote));
    ::schemad::EnsureHeadOptions ensure;  // the SDK's, not the CLI's
    ensure.no_apply = options.no_apply;
    ensure.lock_wait = lock_wait;
    absl::StatusOr<EnsureHeadResult> result = client->EnsureHead(remote.database, ensure);
    if (!result.ok()) {
      absl::Status status = Classify(*client, remote, result.status());
      // Behind and not applying (told so, or not allowed here): "not at head",
      // in the engine's words (Executor::EnsureHead). Any other failure, such
      // as a revision's SQL error, exits as it does in direct mode.
      if (result.status().code() == absl::StatusCode::kFailedPrecondition &&
          ExitCodeFor(status) == kExitFailed &&
          absl::StrContains(result.status().message(), "behind head and may not be upgraded")) {
        return WithExitCode(std::move(status), kExitNotAtHead);
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
      io.out << JsonText(json) << "\n";
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

namespace {

// The migration set the server serves `database` with, as a revision graph
// (DescribeMigrationSet), so that remote verbs print as direct ones do.
// Bodies are not sent: each section holds as many (empty) statements as the
// file has, which is what the printed entries count.
absl::StatusOr<engine::RevisionGraph> ServerGraph(Client& client, const std::string& database,
                                                  std::string* set_name) {
  ASSIGN_OR_RETURN(MigrationSetInfo set, client.DescribeMigrationSet("", database));
  *set_name = set.name;
  std::vector<engine::Revision> revisions;
  revisions.reserve(set.revisions.size());
  for (const RevisionInfo& info : set.revisions) {
    engine::Revision revision;
    revision.id = info.id;
    revision.revises = info.revises;
    revision.branch_labels = info.branch_labels;
    revision.depends_on = info.depends_on;
    revision.message = info.message;
    revision.created = info.created;
    revision.transactional = info.transactional;
    revision.lock_timeout = info.lock_timeout;
    revision.statement_timeout = info.statement_timeout;
    revision.path = info.path;
    revision.checksum = info.checksum;
    revision.upgrade.emplace();
    revision.upgrade->statements.resize(static_cast<size_t>(info.upgrade_statements));
    if (info.reversible) {
      revision.downgrade.emplace();
      revision.downgrade->statements.resize(static_cast<size_t>(info.downgrade_statements));
    }
    revisions.push_back(std::move(revision));
  }
  absl::StatusOr<engine::RevisionGraph> graph = engine::RevisionGraph::Build(std::move(revisions));
  if (!graph.ok()) {
    return absl::InternalError(
        absl::StrCat("migration set ", set.name,
                     " as the server describes it does not build: ", graph.status().message()));
  }
  return graph;
}

}  // namespace

int RunRemoteCurrent(const GlobalOptions& global, const RemoteOptions& remote,
                     const CurrentOptions& options, std::ostream& out, std::ostream& err) {
  const Io io{global, out, err};
  return FinishRemote(io, [&]() -> absl::StatusOr<int> {
    RETURN_IF_ERROR(NeedDatabase(remote));
    ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Open(global, remote));
    ASSIGN_OR_RETURN(DatabaseStatus status, client->GetStatus(remote.database));
    std::string set_name;
    ASSIGN_OR_RETURN(engine::RevisionGraph graph, ServerGraph(*client, remote.database, &set_name));
    std::vector<std::string> known_rows;
    for (const std::string& row : status.current_heads) {
      if (graph.IndexOf(row) >= 0) known_rows.push_back(row);
    }
    absl::StatusOr<std::vector<int>> implied = engine::EffectiveCurrentHeads(graph, known_rows);
    std::vector<int> current;
    if (implied.ok()) {
      current = *std::move(implied);
    } else {
      for (const std::string& row : known_rows) current.push_back(graph.IndexOf(row));
    }
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
      json["current"] = StringListJson(graph.Ids(current));
      json["heads"] = StringListJson(status.graph_heads);
      json["at_head"] = status.at_head;
      json["pending"] = status.pending;
      json["needs_attention"] = NeedsAttentionJson(status.needs_attention);
      if (!status.row_error.empty()) {
        json["row_error"] = status.row_error;
      }
      io.out << JsonText(json) << "\n";
    } else {
      // As direct mode (and `alembic current`): the revisions the rows
      // imply, with their messages; -v: full entries.
      for (const std::string& row : status.current_heads) {
        if (graph.IndexOf(row) < 0) {
          io.out << row << " (not in the server's migration set " << set_name << ")\n";
        }
      }
      for (int index : current) {
        if (options.verbose) {
          io.out << FormatLogEntry(graph, index, /*current=*/false);
        } else {
          io.out << FormatRevisionLine(graph, index, LineFormat::Current()) << "\n";
        }
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

namespace {

// The SDK's validation issues in the printed shape.
std::vector<ChecksumIssue> ToChecksumIssues(const std::vector<ValidationIssue>& issues) {
  std::vector<ChecksumIssue> out;
  for (const ValidationIssue& issue : issues) {
    const char* kind = "changed";
    switch (issue.kind) {
      case ValidationIssue::Kind::kChanged:
        break;
      case ValidationIssue::Kind::kCosmetic:
        kind = "cosmetic";
        break;
      case ValidationIssue::Kind::kMissingFile:
        kind = "missing_file";
        break;
      case ValidationIssue::Kind::kNoChecksum:
        kind = "no_checksum";
        break;
    }
    out.push_back(
        {kind, issue.revision, issue.path, issue.recorded_checksum, issue.current_checksum});
  }
  return out;
}

constexpr absl::string_view kServerFiles = "the server's migration set";

}  // namespace

int RunRemoteValidate(const GlobalOptions& global, const RemoteOptions& remote,
                      const ValidateOptions&, std::ostream& out, std::ostream& err) {
  const Io io{global, out, err};
  return FinishRemote(io, [&]() -> absl::StatusOr<int> {
    RETURN_IF_ERROR(NeedDatabase(remote));
    ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Open(global, remote));
    ASSIGN_OR_RETURN(ValidationResult report, client->Validate(remote.database));
    PrintValidation(io.out, io.global.json, io.global.quiet, report.ok, report.applied_checked,
                    ToChecksumIssues(report.issues), kServerFiles);
    if (!report.ok) {
      io.err << "schemactl: error: applied revisions do not match their files\n";
      return kExitFailed;
    }
    return kExitOk;
  }());
}

int RunRemoteRepair(const GlobalOptions& global, const RemoteOptions& remote, const RepairOptions&,
                    std::ostream& out, std::ostream& err) {
  const Io io{global, out, err};
  return FinishRemote(io, [&]() -> absl::StatusOr<int> {
    RETURN_IF_ERROR(NeedDatabase(remote));
    ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Open(global, remote));
    ASSIGN_OR_RETURN(RepairResult result, client->Repair(remote.database));
    PrintRepair(io.out, io.global.json, result.operation_id, ToChecksumIssues(result.repaired),
                ToChecksumIssues(result.not_repaired), kServerFiles);
    if (!result.not_repaired.empty()) {
      io.err << "schemactl: error: " << result.not_repaired.size()
             << " applied revision(s) have no file on the server; restore them\n";
      return kExitFailed;
    }
    return kExitOk;
  }());
}

int RunRemoteDrift(const GlobalOptions& global, const RemoteOptions& remote,
                   const DriftOptions& options, std::ostream& out, std::ostream& err) {
  const Io io{global, out, err};
  return FinishRemote(io, [&]() -> absl::StatusOr<int> {
    RETURN_IF_ERROR(NeedDatabase(remote));
    ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Open(global, remote));
    ASSIGN_OR_RETURN(DriftResult result, client->Drift(remote.database));
    internal::DriftView view;
    view.database = remote.database;
    view.rows = result.rows;
    view.repair_sql = result.repair_sql;
    for (const SchemaDifference& difference : result.differences) {
      view.items.push_back({ToString(difference.kind), difference.object_kind, difference.object,
                            difference.description});
    }
    return internal::PrintDrift(io, view, options.sql);
  }());
}

int RunRemoteHistory(const GlobalOptions& global, const RemoteOptions& remote,
                     const HistoryOptions& options, std::ostream& out, std::ostream& err) {
  const Io io{global, out, err};
  return FinishRemote(io, [&]() -> absl::StatusOr<int> {
    RETURN_IF_ERROR(NeedDatabase(remote));
    ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Open(global, remote));
    if (options.log) {
      ASSIGN_OR_RETURN(std::vector<HistoryEntry> records,
                       client->History(remote.database, options.limit));
      return PrintHistoryLog(io, records);
    }
    // As in direct mode: the migration set's revisions, with the database's
    // current and applied marks.
    internal::HistoryDatabase db;
    std::string set_name;
    ASSIGN_OR_RETURN(engine::RevisionGraph graph, ServerGraph(*client, remote.database, &set_name));
    db.where = absl::StrCat("the server's migration set ", set_name);
    ASSIGN_OR_RETURN(DatabaseStatus status, client->GetStatus(remote.database));
    db.rows = status.current_heads;
    ASSIGN_OR_RETURN(std::vector<HistoryEntry> records, client->History(remote.database, 0));
    for (const HistoryEntry& record : records) {  // newest first
      internal::NoteApplied(record.revision, record.direction, record.outcome, record.started,
                            record.duration, record.who, &db);
    }
    return internal::PrintHistory(io, options, graph, &db);
  }());
}

int RunRemotePlan(const GlobalOptions& global, const RemoteOptions& remote,
                  const PlanOptions& options, std::ostream& out, std::ostream& err) {
  const Io io{global, out, err};
  return FinishRemote(io, [&]() -> absl::StatusOr<int> {
    RETURN_IF_ERROR(NeedDatabase(remote));
    ASSIGN_OR_RETURN(const TransactionMode mode, RequestedTransactionMode(options.transaction));
    ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Open(global, remote));
    PlanRequest request;
    request.kind = options.direction == "downgrade" ? PlanRequest::Kind::kDowngrade
                                                    : PlanRequest::Kind::kUpgrade;
    request.targets = {options.target};
    request.sql = options.sql;
    request.transaction_mode = mode;
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
      Json findings = Json::array();
      for (const LintFinding& f : plan.lint_findings) {
        findings.push_back(Json{{"rule", f.rule},
                                {"severity", f.severity},
                                {"revision", f.revision},
                                {"file", f.file},
                                {"line", f.line},
                                {"message", f.message}});
      }
      json["lint_findings"] = std::move(findings);
      io.out << JsonText(json) << "\n";
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
    for (const LintFinding& f : plan.lint_findings) {
      io.out << "lint " << f.severity << "  " << f.file << ":" << f.line << "  " << f.rule << "  "
             << f.message << "\n";
    }
    return kExitOk;
  }());
}

int RunRemoteDbs(const GlobalOptions& global, const RemoteOptions& remote,
                 const DbsOptions& options, std::ostream& out, std::ostream& err) {
  const Io io{global, out, err};
  return FinishRemote(io, [&]() -> absl::StatusOr<int> {
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
      io.out << JsonText(json) << "\n";
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
      const size_t state_width = std::max<size_t>(state.size(), 18) + 2;
      const Color color = status.state == DatabaseStatus::State::kAtHead   ? Color::kGreen
                          : status.state == DatabaseStatus::State::kBehind ? Color::kYellow
                                                                           : Color::kRed;
      const std::string padding(state_width - state.size(), ' ');
      io.out << line << Paint(state, color, io.global.color_out) << padding
             << RowsText(status.current_heads);
      if (!status.error.ok()) {
        io.out << "  (" << status.error.message() << ")";
      }
      io.out << "\n";
    }
    return kExitOk;
  }());
}

int RunRemoteHealth(const GlobalOptions& global, const RemoteOptions& remote,
                    const HealthOptions& options, std::ostream& out, std::ostream& err) {
  const Io io{global, out, err};
  return FinishRemote(io, [&]() -> absl::StatusOr<int> {
    if (options.ready && !options.migration_set.empty()) {
      return UsageError("health: --ready is the server's readiness; it takes no --set");
    }
    ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Open(global, remote));
    ASSIGN_OR_RETURN(const bool serving, options.ready
                                             ? client->CheckReady()
                                             : client->CheckHealth(options.migration_set));
    const char* status = serving ? "SERVING" : "NOT_SERVING";
    if (io.global.json) {
      Json json;
      json["status"] = status;
      json["migration_set"] =
          options.migration_set.empty() ? Json(nullptr) : Json(options.migration_set);
      json["check"] = options.ready ? "readiness" : "liveness";
      io.out << JsonText(json) << "\n";
    } else {
      io.out << status << "\n";
    }
    return serving ? kExitOk : kExitFailed;
  }());
}

int RunRemoteReload(const GlobalOptions& global, const RemoteOptions& remote, std::ostream& out,
                    std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, [&]() -> absl::StatusOr<int> {
    ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Open(global, remote));
    ASSIGN_OR_RETURN(ReloadResult r, client->Reload());
    if (io.global.json) {
      Json json;
      json["ok"] = true;
      json["generation"] = r.generation;
      json["databases_added"] = r.databases_added;
      json["databases_removed"] = r.databases_removed;
      json["migration_sets_changed"] = r.migration_sets_changed;
      json["databases"] = r.databases;
      json["migration_sets"] = r.migration_sets;
      json["tokens"] = r.tokens;
      json["warnings"] = r.warnings;
      io.out << JsonText(json) << "\n";
      return kExitOk;
    }
    if (io.global.quiet) {
      return kExitOk;
    }
    const auto list = [](const std::vector<std::string>& names) {
      return names.empty() ? std::string("none") : absl::StrJoin(names, ", ");
    };
    io.out << "Reloaded (generation " << r.generation << "): " << r.databases << " database(s), "
           << r.migration_sets << " migration set(s), " << r.tokens << " token(s)\n"
           << "  databases added: " << list(r.databases_added) << "\n"
           << "  databases removed: " << list(r.databases_removed) << "\n"
           << "  migration sets changed: " << list(r.migration_sets_changed) << "\n";
    for (const std::string& warning : r.warnings) {
      io.out << "  warning: " << warning << "\n";
    }
    return kExitOk;
  }());
}

int RunRemoteOps(const GlobalOptions& global, const RemoteOptions& remote,
                 const OpsOptions& options, std::ostream& out, std::ostream& err) {
  const Io io{global, out, err};
  return FinishRemote(io, [&]() -> absl::StatusOr<int> {
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
        io.out << JsonText(json) << "\n";
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
        io.out << JsonText(json) << "\n";
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

// ------------------------------------------------------------------- fleet

namespace schemad::cli {
namespace {}  // namespace

std::vector<std::string> internal::FleetLiveBlock(const std::vector<FleetRunningSite>& running,
                                                  const FleetCounts& counts, int width, int height,
                                                  absl::Time now) {
  const size_t columns = static_cast<size_t>(width > 10 ? width - 1 : 79);
  const size_t site_lines = static_cast<size_t>(std::max(1, (height > 2 ? height : 24) - 2));
  std::vector<std::string> lines;
  const auto cut = [&](std::string line) {
    if (line.size() > columns) line.resize(columns);
    return line;
  };
  for (size_t i = 0; i < running.size(); ++i) {
    if (running.size() > site_lines && i + 1 == site_lines) {
      lines.push_back(cut(absl::StrCat("  ... and ", running.size() - i, " more running")));
      break;
    }
    const FleetRunningSite& r = running[i];
    lines.push_back(
        cut(absl::StrCat("  ", r.site, ": ", r.text, "  ", DurationText(now - r.started))));
  }
  lines.push_back(
      cut(absl::StrCat("running ", running.size(), ", done ", counts.done, ", failed ",
                       counts.failed, ", queued ", counts.queued, ", skipped ", counts.skipped)));
  return lines;
}

namespace {

Json FleetSummaryJson(const FleetSummary& s) {
  Json sites = Json::array();
  for (const FleetSiteResult& r : s.sites) {
    Json item;
    item["site"] = r.site;
    item["outcome"] = OutcomeName(r.outcome);
    item["heads_before"] = StringListJson(r.rows_before);
    item["heads_after"] = r.rows_after_read ? StringListJson(r.rows_after) : Json(nullptr);
    item["revisions_run"] = r.revisions_run;
    item["duration_ms"] = Milliseconds(r.duration);
    item["error"] = r.status.ok() ? Json(nullptr) : StatusJson(r.status, ExitCodeFor(r.status));
    item["operation_id"] = r.operation_id;
    sites.push_back(std::move(item));
  }
  Json json;
  json["ok"] = s.ok();
  json["operation_id"] = s.operation_id;
  json["succeeded"] = s.succeeded;
  json["failed"] = s.failed;
  json["skipped"] = s.skipped;
  json["cancelled"] = s.cancelled;
  json["duration_ms"] = Milliseconds(s.duration);
  json["error"] = s.status.ok() ? Json(nullptr) : StatusJson(s.status, ExitCodeFor(s.status));
  json["sites"] = std::move(sites);
  return json;
}

absl::StatusOr<int> FleetStatus(const Io& io, Client& client, const FleetCliOptions& options) {
  ASSIGN_OR_RETURN(engine::LabelSelector selector, engine::LabelSelector::Parse(options.selector));
  ListDatabasesRequest request;
  request.include_status = true;
  ASSIGN_OR_RETURN(std::vector<DatabaseInfo> dbs, client.ListDatabases(request));
  std::map<std::string, int> counts;
  Json list = Json::array();
  size_t name_width = 4;
  std::vector<const DatabaseInfo*> selected;
  for (const DatabaseInfo& db : dbs) {
    engine::FleetSite site;
    site.name = db.name;
    site.labels = db.labels;
    if (selector.Matches(site)) {
      selected.push_back(&db);
      name_width = std::max(name_width, db.name.size());
    }
  }
  for (const DatabaseInfo* db : selected) {
    const DatabaseStatus status = db->status.value_or(DatabaseStatus{});
    const std::string state = StateText(status);
    ++counts[status.state == DatabaseStatus::State::kBehind ? "behind" : state];
    if (io.global.json) {
      Json item;
      item["name"] = db->name;
      item["labels"] = db->labels;
      item["state"] = ToString(status.state);
      item["rows"] = StringListJson(status.current_heads);
      item["heads"] = StringListJson(status.graph_heads);
      item["pending"] = status.pending;
      item["error"] =
          status.error.ok() ? Json(nullptr) : StatusJson(status.error, ExitCodeFor(status.error));
      list.push_back(std::move(item));
      continue;
    }
    std::string line = db->name;
    line.resize(name_width + 2, ' ');
    std::string padded = state;
    padded.resize(std::max<size_t>(padded.size(), 18) + 2, ' ');
    io.out << line << padded << RowsText(status.current_heads);
    if (!status.error.ok()) {
      io.out << "  (" << status.error.message() << ")";
    }
    io.out << "\n";
  }
  if (io.global.json) {
    Json json;
    json["databases"] = std::move(list);
    json["counts"] = counts;
    io.out << JsonText(json) << "\n";
  } else {
    std::vector<std::string> parts;
    for (const auto& [state, count] : counts) {
      parts.push_back(absl::StrCat(count, " ", state));
    }
    io.out << selected.size() << " site(s): " << absl::StrJoin(parts, ", ") << "\n";
  }
  return kExitOk;
}

// The per-site summary of a fleet drift run: "no drift", "DRIFT" with the
// objects, or the error. kExitDrift when the only failures are drift.
int PrintFleetDrift(const Io& io, const FleetSummary& summary) {
  int drifted = 0;
  for (const FleetSiteResult& r : summary.sites) {
    // The server reports a drifted site as "database SITE: drift: ...".
    absl::string_view message = r.status.message();
    const bool drift = r.outcome == FleetSiteResult::Outcome::kFailed &&
                       absl::ConsumePrefix(&message, absl::StrCat("database ", r.site, ": ")) &&
                       absl::ConsumePrefix(&message, "drift: ");
    drifted += drift ? 1 : 0;
    if (io.global.json) continue;
    io.out << r.site << "  ";
    if (r.outcome == FleetSiteResult::Outcome::kSucceeded) {
      io.out << "no drift at " << RowsText(r.rows_after);
    } else if (drift) {
      io.out << "DRIFT  " << message;
    } else {
      io.out << OutcomeName(r.outcome) << "  (" << r.status.message() << ")";
    }
    io.out << "\n";
  }
  if (io.global.json) {
    io.out << JsonText(FleetSummaryJson(summary)) << "\n";
  } else {
    io.out << "fleet drift " << summary.operation_id << ": " << summary.succeeded
           << " without drift, " << drifted << " with drift, " << summary.failed - drifted
           << " failed, " << summary.skipped << " skipped, " << summary.cancelled
           << " cancelled in " << DurationText(summary.duration) << "\n";
  }
  if (summary.ok()) return kExitOk;
  return drifted == summary.failed && summary.cancelled == 0 && summary.skipped == 0 ? kExitDrift
                                                                                     : kExitFailed;
}

}  // namespace

int RunRemoteFleet(const GlobalOptions& global, const RemoteOptions& remote,
                   const FleetCliOptions& options, std::ostream& out, std::ostream& err) {
  const Io io{global, out, err};
  return FinishRemote(io, [&]() -> absl::StatusOr<int> {
    FleetRequest request;
    if (options.action == "upgrade") {
      request.action = FleetRequest::Action::kUpgrade;
    } else if (options.action == "downgrade") {
      request.action = FleetRequest::Action::kDowngrade;
    } else if (options.action == "ensure-head") {
      request.action = FleetRequest::Action::kEnsureHead;
    } else if (options.action == "stamp") {
      request.action = FleetRequest::Action::kStamp;
    } else if (options.action == "validate") {
      request.action = FleetRequest::Action::kValidate;
    } else if (options.action == "drift") {
      request.action = FleetRequest::Action::kDrift;
    } else if (options.action == "resume") {
      if (options.targets.size() != 1) {
        return UsageError(
            "fleet resume needs the id of the abandoned fleet run (ops list shows it)");
      }
      request.resume = options.targets.front();
    } else if (options.action != "status") {
      return UsageError(absl::StrCat(
          "fleet: expected upgrade, downgrade, ensure-head, stamp, validate, drift, status or "
          "resume, got '",
          options.action, "'"));
    }
    if (options.parallel < 1) {
      return UsageError("--parallel must be at least 1");
    }
    if (request.action == FleetRequest::Action::kStamp) {
      request.targets = options.targets;
      if (request.targets.empty()) {
        return UsageError("fleet stamp needs the revisions to stamp");
      }
    } else if (options.targets.size() > 1) {
      return UsageError("fleet: at most one target");
    } else if (!options.targets.empty()) {
      request.target = options.targets.front();
    }
    if (request.action == FleetRequest::Action::kDowngrade && request.target.empty() &&
        options.action != "status") {
      return UsageError("fleet downgrade needs a target (e.g. -1, base or a revision id)");
    }
    ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Open(global, remote));
    if (options.action == "status") {
      return FleetStatus(io, *client, options);
    }
    request.selector = options.selector;
    request.max_parallel = options.parallel;
    request.canary_count = options.canary;
    request.canary_selector = options.canary_selector;
    request.continue_on_error = options.continue_on_error;
    request.allow_lint_errors = options.allow_lint_errors;
    request.site_timeout = options.site_timeout;
    if (remote.lock_wait_set) {
      request.lock_wait = global.lock_wait;
    }
    ListDatabasesRequest list;
    ASSIGN_OR_RETURN(std::vector<DatabaseInfo> dbs, client->ListDatabases(list));
    size_t selected = dbs.size();
    if (absl::StatusOr<engine::LabelSelector> selector =
            engine::LabelSelector::Parse(options.selector);
        selector.ok()) {
      selected = 0;
      for (const DatabaseInfo& db : dbs) {
        engine::FleetSite site;
        site.name = db.name;
        site.labels = db.labels;
        selected += selector->Matches(site) ? 1 : 0;
      }
    }
    FleetProgress progress(io, selected);
    CallOptions call;
    call.stop = global.cancelled;
    call.on_event = [&](const OperationEvent& e) { progress.OnEvent(e); };
    absl::StatusOr<FleetSummary> summary = client->FleetRun(request, call);
    progress.Close();
    if (!summary.ok()) {
      return summary.status();
    }
    if (request.action == FleetRequest::Action::kDrift) {
      return PrintFleetDrift(io, *summary);
    }
    if (io.global.json) {
      io.out << JsonText(FleetSummaryJson(*summary)) << "\n";
    } else {
      for (const FleetSiteResult& r : summary->sites) {
        io.out << r.site << "  " << OutcomeName(r.outcome) << "  " << SiteRowsText(r);
        if (!r.status.ok()) {
          io.out << "  (" << r.status.message() << ")";
        }
        io.out << "\n";
      }
      io.out << "fleet " << summary->operation_id << ": " << summary->succeeded << " succeeded, "
             << summary->failed << " failed, " << summary->skipped << " skipped, "
             << summary->cancelled << " cancelled in " << DurationText(summary->duration) << "\n";
    }
    return summary->ok() ? kExitOk : kExitFailed;
  }());
}

}  // namespace schemad::cli
