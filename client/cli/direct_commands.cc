// The verbs that talk to a database (--dsn): upgrade, downgrade, current,
// history, stamp, ensure-head, validate, resolve. All go through
// engine::Executor on the PostgreSQL store, so the CLI and the service share
// one semantics.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cli/command_util.h"
#include "client/cli/commands.h"
#include "client/cli/output.h"
#include "service/common/dsn.h"
#include "service/common/status_macros.h"
#include "service/common/version_table.h"
#include "service/engine/executor.h"
#include "service/engine/planner.h"
#include "service/engine/revision_graph.h"
#include "service/store/pq/pq_database.h"
#include "service/store/store.h"

namespace schemad::cli {

using engine::RevisionGraph;
using internal::Finish;
using internal::Io;
using internal::RowsText;
using internal::StringListJson;

namespace {

// Everything a database verb works with; heap-allocated so the executor's
// references to the graph and the database stay valid.
struct Direct {
  RevisionGraph graph;
  std::unique_ptr<store::Database> database;
  std::unique_ptr<store::Session> session;
  std::unique_ptr<engine::Executor> executor;
};

struct ExecutorTweaks {
  bool allow_changed = false;
  std::string transaction;  // --transaction; "": the migration set's (TransactionScopeFor)
  // The command takes the migration lock unless there is nothing to do
  // (upgrade, downgrade, stamp, resolve): its connection logs in beside the
  // session's (Database::PrepareLock), also when it then finds nothing to do
  // (one login more for a no-op, against one login less of waiting for the
  // others).
  bool takes_lock = false;
};

// --version-table through the one validator the server's configuration uses.
absl::StatusOr<store::TableNames> TablesFor(const std::string& version_table) {
  absl::StatusOr<VersionTableName> name = ParseVersionTableName(version_table);
  if (!name.ok()) {
    return UsageError(absl::StrCat("--version-table: ", name.status().message()));
  }
  store::TableNames tables;
  tables.schema = name->schema;
  tables.version_table = name->table;
  return tables;
}

absl::Status NeedDsn(const GlobalOptions& global) {
  if (global.dsn.empty()) {
    return UsageError(
        "this verb needs a database: pass --dsn DSN or set SCHEMAD_DSN (or DATABASE_URL)");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<store::Database>> OpenDatabase(const GlobalOptions& global) {
  RETURN_IF_ERROR(NeedDsn(global));
  // The one DSN parser (the server's and the store's): an ambiguous or
  // malformed DSN is a usage error that names where it came from, not its text.
  if (absl::StatusOr<dsn::Dsn> parsed = dsn::ParseDsn(global.dsn); !parsed.ok()) {
    return UsageError(absl::StrCat(global.dsn_source, ": the DSN ", parsed.status().message()));
  }
  store::PqOptions options;
  ASSIGN_OR_RETURN(options.tables, TablesFor(global.version_table));
  options.application_name = "schemactl";
  absl::StatusOr<std::unique_ptr<store::Database>> database =
      store::OpenPqDatabase(global.dsn, options);
  if (!database.ok()) {
    // A DSN or table name that does not parse is a bad argument.
    if (database.status().code() == absl::StatusCode::kInvalidArgument) {
      return WithExitCode(database.status(), kExitUsage);
    }
    return database.status();
  }
  return database;
}

// The store's connect errors already name the database (never the password).
// Whatever the cause — unreachable, refused, authentication, a database or
// host that does not exist — not getting in is exit 5.
absl::StatusOr<std::unique_ptr<store::Session>> Connect(store::Database& database) {
  absl::StatusOr<std::unique_ptr<store::Session>> session = database.Connect();
  if (!session.ok()) {
    return WithExitCode(session.status(), kExitUnavailable);
  }
  return session;
}

absl::Status NoRevisionFiles(const GlobalOptions& global) {
  return UsageError(
      absl::StrCat(global.dir,
                   " holds no revision files (*.sql); check --dir (or SCHEMAD_DIR), or write "
                   "the first with `schemactl revision -m MESSAGE`"));
}

// Whether `dir` lists a revision file (*.sql directly in it): the listing
// alone, without reading a file.
bool ListsRevisionFiles(const std::string& dir) {
  std::error_code error;
  std::filesystem::directory_iterator entry(dir, error);
  for (; !error && entry != std::filesystem::directory_iterator(); entry.increment(error)) {
    if (entry->path().extension() == ".sql") return true;
  }
  return false;
}

absl::StatusOr<std::unique_ptr<Direct>> OpenDirect(const GlobalOptions& global,
                                                   const ExecutorTweaks& tweaks = {}) {
  RETURN_IF_ERROR(NeedDsn(global));
  // A wrong --dir (missing, or no revision file in it) is told at once,
  // from the listing, before any login: an upgrade would otherwise create
  // schemad's tables for nothing, and an unreachable server would make the
  // answer wait for connect_timeout.
  if (!ListsRevisionFiles(global.dir)) {
    ASSIGN_OR_RETURN(RevisionGraph none, internal::LoadGraph(global));  // the directory's error
    if (none.size() == 0) return NoRevisionFiles(global);
  }
  // The login (TCP, TLS probe, SCRAM: after the process start, most of a
  // no-op command's time) runs on its own thread while the revision files
  // are read and checksummed on this one. Errors come in the order they did
  // one after the other: the directory's first, then the connection's.
  struct Opened {
    std::unique_ptr<store::Database> database;
    std::unique_ptr<store::Session> session;
  };
  std::future<absl::StatusOr<Opened>> opening =
      std::async(std::launch::async, [&global, &tweaks]() -> absl::StatusOr<Opened> {
        Opened opened;
        ASSIGN_OR_RETURN(opened.database, OpenDatabase(global));
        if (tweaks.takes_lock) {
          opened.database->PrepareLock();  // its login beside the session's
        }
        ASSIGN_OR_RETURN(opened.session, Connect(*opened.database));
        return opened;
      });
  absl::StatusOr<RevisionGraph> graph = internal::LoadGraph(global);
  absl::StatusOr<Opened> opened = opening.get();
  RETURN_IF_ERROR(graph.status());
  if (graph->size() == 0) return NoRevisionFiles(global);  // e.g. only a directory named *.sql
  RETURN_IF_ERROR(opened.status());
  auto direct = std::make_unique<Direct>();
  direct->graph = *std::move(graph);
  direct->database = std::move(opened->database);
  direct->session = std::move(opened->session);
  engine::ExecutorOptions options;
  options.lock_wait = global.lock_wait;
  options.timeouts.lock_timeout = global.lock_timeout;
  options.timeouts.statement_timeout = global.statement_timeout;
  options.allow_changed = tweaks.allow_changed;
  ASSIGN_OR_RETURN(options.transaction_mode,
                   internal::TransactionScopeFor(global, tweaks.transaction));
  options.who = global.who.empty() ? DefaultWho() : global.who;
  direct->executor =
      std::make_unique<engine::Executor>(direct->graph, *direct->database, std::move(options));
  return direct;
}

// Cancels the session's running statement when `flag` turns true (Ctrl-C):
// the executor only looks at the flag between statements.
class CancelWatcher {
 public:
  CancelWatcher(const std::atomic<bool>* flag, store::Session* session) {
    if (flag == nullptr) {
      return;
    }
    thread_ = std::thread([this, flag, session] {
      std::unique_lock<std::mutex> lock(mu_);
      while (!stop_) {
        if (flag->load()) {
          session->Cancel();
          return;
        }
        wake_.wait_for(lock, std::chrono::milliseconds(100));
      }
    });
  }
  ~CancelWatcher() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) {
      thread_.join();
    }
  }
  CancelWatcher(const CancelWatcher&) = delete;
  CancelWatcher& operator=(const CancelWatcher&) = delete;

 private:
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

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

std::unique_ptr<ProgressSink> MakeSink(const Io& io) {
  ProgressSink::Options options;
  options.mode = ProgressMode(io.global);
  options.width = io.global.terminal_width;
  options.ticker = options.mode == ProgressSink::Mode::kLive;
  options.color = io.global.color_err;
  return std::make_unique<ProgressSink>(io.err, options);
}

// After a failed operation: when the database is now (or was already) marked
// "needs attention", the exit code says so.
absl::Status Classify(Direct& direct, absl::Status status) {
  if (status.ok() || ExitCodeFor(status) != kExitFailed) {
    return status;
  }
  absl::StatusOr<store::DatabaseState> state = direct.session->ReadState();
  if (!state.ok()) {
    // The failure may have broken the connection: look once more on a new one.
    absl::StatusOr<std::unique_ptr<store::Session>> fresh = direct.database->Connect();
    if (!fresh.ok()) {
      return status;
    }
    state = (*fresh)->ReadState();
  }
  if (state.ok() && state->needs_attention.has_value()) {
    return WithExitCode(std::move(status), kExitNeedsAttention);
  }
  return status;
}

Json StepsJson(const RevisionGraph& graph, const engine::Plan& plan) {
  Json steps = Json::array();
  for (const engine::PlanStep& step : plan.steps) {
    Json item;
    item["revision"] = graph.id(step.revision);
    item["direction"] = std::string(engine::DirectionName(step.direction));
    steps.push_back(std::move(item));
  }
  return steps;
}

Json OperationJson(const RevisionGraph& graph, absl::string_view operation,
                   const engine::OperationResult& result) {
  Json json;
  json["ok"] = true;
  json["operation"] = std::string(operation);
  json["operation_id"] = result.operation_id;
  json["target"] = result.plan.target;
  json["heads_before"] = StringListJson(result.rows_before);
  json["heads_after"] = StringListJson(result.rows_after);
  json["revisions_run"] = result.revisions_run;
  json["took_lock"] = result.took_lock;
  json["duration_ms"] = Milliseconds(result.duration);
  json["steps"] = StepsJson(graph, result.plan);
  return json;
}

Json NeedsAttentionJson(const std::optional<store::NeedsAttention>& marker) {
  if (!marker.has_value()) {
    return Json(nullptr);
  }
  Json json;
  json["revision"] = marker->revision;
  json["direction"] = marker->direction;
  json["statements_done"] = marker->statements_done;
  json["statements_total"] = marker->statements_total;
  json["error"] = marker->error;
  json["operation_id"] = marker->operation_id;
  json["started"] =
      marker->started == absl::InfinitePast() ? Json(nullptr) : Json(JsonTimeText(marker->started));
  return json;
}

// Runs `operation` against the database with progress and cancellation, and
// reports its result. `summary` is the human line for a successful run.
template <typename Operation>
absl::StatusOr<int> RunOperation(const Io& io, Direct& direct, absl::string_view name,
                                 Operation operation) {
  std::unique_ptr<ProgressSink> sink = MakeSink(io);
  engine::CallControl control;
  control.sink = sink.get();
  control.cancelled = io.global.cancelled;
  absl::StatusOr<engine::OperationResult> result;
  {
    CancelWatcher watcher(io.global.cancelled, direct.session.get());
    result = operation(control);
  }
  sink->Finish();
  if (!result.ok()) {
    return Classify(direct, result.status());
  }
  if (io.global.json) {
    io.out << JsonText(OperationJson(direct.graph, name, *result)) << "\n";
    return kExitOk;
  }
  if (io.global.quiet) {
    return kExitOk;
  }
  const engine::OperationResult& r = *result;
  if (name == "stamp") {
    io.out << (r.rows_before == r.rows_after ? "Already stamped: " : "Stamped: ")
           << RowsText(r.rows_after);
    if (r.rows_before != r.rows_after) {
      io.out << " (was " << RowsText(r.rows_before) << ")";
    }
    io.out << "\n";
  } else if (name == "resolve") {
    io.out << "Resolved; version rows now: " << RowsText(r.rows_after) << "\n";
  } else if (r.revisions_run == 0 && r.plan.steps.empty()) {
    io.out << (name == "ensure-head" ? "At head: " : "Nothing to do; version rows: ")
           << RowsText(r.rows_after) << "\n";
  } else {
    const char* verb = name == "downgrade" ? "Downgraded" : "Upgraded";
    io.out << verb << " " << r.revisions_run << (r.revisions_run == 1 ? " revision" : " revisions")
           << " in " << DurationText(r.duration) << "; version rows: " << RowsText(r.rows_after)
           << "\n";
  }
  return kExitOk;
}

// ------------------------------------------------------------- the verbs

absl::StatusOr<int> Upgrade(const Io& io, const UpgradeOptions& options) {
  if (options.sql) {
    return internal::RunOfflineSql(io, "upgrade", options.target, /*from_required=*/false,
                                   options.transaction);
  }
  RETURN_IF_ERROR(internal::GivenTransactionScope(options.transaction).status());
  if (options.target.find(':') != std::string::npos) {
    return UsageError(
        "FROM:TO targets are for --sql only; online upgrade starts from the "
        "database's version rows");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Direct> direct,
                   OpenDirect(io.global, ExecutorTweaks{options.allow_changed, options.transaction,
                                                        /*takes_lock=*/true}));
  return RunOperation(io, *direct, "upgrade", [&](const engine::CallControl& control) {
    return direct->executor->Upgrade(*direct->session, options.target, control);
  });
}

absl::StatusOr<int> Downgrade(const Io& io, const DowngradeOptions& options) {
  if (options.target.empty()) {
    return UsageError("downgrade: a TARGET is required (e.g. -1, base, 3f2a)");
  }
  if (options.sql) {
    return internal::RunOfflineSql(io, "downgrade", options.target, /*from_required=*/true,
                                   options.transaction);
  }
  RETURN_IF_ERROR(internal::GivenTransactionScope(options.transaction).status());
  if (options.target.find(':') != std::string::npos) {
    return UsageError(
        "FROM:TO targets are for --sql only; online downgrade starts from the "
        "database's version rows");
  }
  ASSIGN_OR_RETURN(
      std::unique_ptr<Direct> direct,
      OpenDirect(io.global, ExecutorTweaks{/*allow_changed=*/false, options.transaction,
                                           /*takes_lock=*/true}));
  return RunOperation(io, *direct, "downgrade", [&](const engine::CallControl& control) {
    return direct->executor->Downgrade(*direct->session, options.target, control);
  });
}

absl::StatusOr<int> Stamp(const Io& io, const StampOptions& options) {
  if (options.revisions.empty()) {
    return UsageError("stamp: name the revision(s) to stamp (REV..., heads, base)");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Direct> direct,
                   OpenDirect(io.global, ExecutorTweaks{/*allow_changed=*/false, /*transaction=*/"",
                                                        /*takes_lock=*/true}));
  return RunOperation(io, *direct, "stamp", [&](const engine::CallControl& control) {
    return direct->executor->Stamp(*direct->session, options.revisions, options.purge, control);
  });
}

absl::StatusOr<int> EnsureHead(const Io& io, const EnsureHeadOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<Direct> direct, OpenDirect(io.global));
  absl::StatusOr<int> code =
      RunOperation(io, *direct, "ensure-head", [&](const engine::CallControl& control) {
        return direct->executor->EnsureHead(*direct->session, !options.no_apply, control);
      });
  if (!code.ok() && options.no_apply && ExitCodeFor(code.status()) == kExitFailed) {
    // Behind and told not to apply: "not at head", unless something else is wrong.
    absl::StatusOr<engine::DatabaseStatus> status = direct->executor->Status(*direct->session);
    if (status.ok() && status->row_error.empty() && status->pending > 0 &&
        !status->needs_attention.has_value()) {
      return WithExitCode(code.status(), kExitNotAtHead);
    }
  }
  return code;
}

absl::StatusOr<int> Resolve(const Io& io, const ResolveOptions& options) {
  if (options.applied == options.rolled_back) {
    return UsageError(
        "resolve: pass exactly one of --applied (the interrupted revision is complete) or "
        "--rolled-back (its effects were undone)");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Direct> direct,
                   OpenDirect(io.global, ExecutorTweaks{/*allow_changed=*/false, /*transaction=*/"",
                                                        /*takes_lock=*/true}));
  const engine::Executor::Resolution resolution = options.applied
                                                      ? engine::Executor::Resolution::kApplied
                                                      : engine::Executor::Resolution::kRolledBack;
  return RunOperation(io, *direct, "resolve", [&](const engine::CallControl& control) {
    return direct->executor->Resolve(*direct->session, resolution, control);
  });
}

// The JSON name of a validation issue's kind.
const char* ValidationKindName(engine::ValidationIssue::Kind kind) {
  switch (kind) {
    case engine::ValidationIssue::Kind::kChanged:
      return "changed";
    case engine::ValidationIssue::Kind::kCosmetic:
      return "cosmetic";
    case engine::ValidationIssue::Kind::kMissingFile:
      return "missing_file";
    case engine::ValidationIssue::Kind::kNoChecksum:
      return "no_checksum";
  }
  return "unknown";
}

// `issues` in the printed shape.
std::vector<ChecksumIssue> ToChecksumIssues(const std::vector<engine::ValidationIssue>& issues) {
  std::vector<ChecksumIssue> out;
  for (const engine::ValidationIssue& issue : issues) {
    out.push_back({ValidationKindName(issue.kind), issue.revision, issue.path,
                   issue.recorded_checksum, issue.current_checksum});
  }
  return out;
}

absl::StatusOr<int> Repair(const Io& io, const RepairOptions&) {
  ASSIGN_OR_RETURN(std::unique_ptr<Direct> direct, OpenDirect(io.global));
  ASSIGN_OR_RETURN(engine::RepairResult result, direct->executor->Repair(*direct->session));
  PrintRepair(io.out, io.global.json, result.operation_id, ToChecksumIssues(result.repaired),
              ToChecksumIssues(result.not_repaired), io.global.dir);
  if (!result.not_repaired.empty()) {
    io.err << "schemactl: error: " << result.not_repaired.size()
           << " applied revision(s) have no file; restore them\n";
    return kExitFailed;
  }
  return kExitOk;
}

absl::StatusOr<int> Current(const Io& io, const CurrentOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<Direct> direct, OpenDirect(io.global));
  ASSIGN_OR_RETURN(engine::DatabaseStatus status, direct->executor->Status(*direct->session));
  const RevisionGraph& graph = direct->graph;

  absl::Status problem;
  if (!status.row_error.empty()) {
    problem = absl::FailedPreconditionError(
        absl::StrCat("the version rows do not fit ", io.global.dir, ": ", status.row_error));
  } else if (status.needs_attention.has_value()) {
    problem = WithExitCode(
        absl::FailedPreconditionError(absl::StrCat(
            "database needs attention: non-transactional revision ",
            status.needs_attention->revision, " (", status.needs_attention->direction,
            ") stopped after ", status.needs_attention->statements_done, " of ",
            status.needs_attention->statements_total, " statement(s)",
            status.needs_attention->error.empty() ? "" : ": ", status.needs_attention->error,
            "; check the database, then `schemactl resolve --applied` or `--rolled-back`")),
        kExitNeedsAttention);
  } else if (!status.at_head && options.check_heads) {
    problem =
        WithExitCode(absl::FailedPreconditionError(absl::StrCat(
                         "not at head: ", status.pending, " revision(s) pending (heads: ",
                         absl::StrJoin(status.graph_heads, ", "), "); run `schemactl upgrade`")),
                     kExitNotAtHead);
  }
  std::vector<std::string> known_rows;
  for (const std::string& row : status.rows) {
    if (graph.IndexOf(row) >= 0) {
      known_rows.push_back(row);
    }
  }
  // Rows that do not fit the graph (row_error, e.g. a row listed twice)
  // are shown as they are.
  absl::StatusOr<std::vector<int>> implied = engine::EffectiveCurrentHeads(graph, known_rows);
  std::vector<int> current_heads;
  if (implied.ok()) {
    current_heads = *std::move(implied);
  } else {
    for (const std::string& row : known_rows) {
      current_heads.push_back(graph.IndexOf(row));
    }
  }
  // Without --check-heads, being behind or needing attention is reported
  // but is not a failure of `current`.
  const bool fails = !problem.ok() && (options.check_heads || ExitCodeFor(problem) == kExitFailed);
  const int code = fails ? ExitCodeFor(problem) : kExitOk;

  if (io.global.json) {
    Json json;
    json["ok"] = !fails;
    if (fails) {
      json["error"] = StatusJson(problem, code);
    }
    json["database"] = direct->database->DisplayName();
    json["version_table_exists"] = status.version_table_exists;
    json["rows"] = StringListJson(status.rows);
    json["current"] = StringListJson(graph.Ids(current_heads));
    json["heads"] = StringListJson(status.graph_heads);
    json["at_head"] = status.at_head;
    json["pending"] = status.pending;
    json["needs_attention"] = NeedsAttentionJson(status.needs_attention);
    if (!status.row_error.empty()) {
      json["row_error"] = status.row_error;
    }
    io.out << JsonText(json) << "\n";
  } else {
    // As `alembic current`: the revisions the rows imply, a depends_on
    // target included (an "(effective head)" when nothing revises it).
    for (const std::string& row : status.rows) {
      if (graph.IndexOf(row) < 0) {
        io.out << row << " (not in " << io.global.dir << ")\n";
      }
    }
    for (int index : current_heads) {
      if (options.verbose) {
        io.out << FormatLogEntry(graph, index, /*current=*/false);
      } else {
        io.out << FormatRevisionLine(graph, index, LineFormat::Current()) << "\n";
      }
    }
    if (!io.global.quiet) {
      if (status.rows.empty()) {
        io.err << "(no version rows: " << direct->database->DisplayName() << " is at base)\n";
      }
      if (problem.ok() && !status.at_head && status.pending > 0) {
        io.err << status.pending << " revision(s) pending; `schemactl upgrade` applies them\n";
      }
    }
  }
  if (!problem.ok()) {
    io.err << (fails ? "schemactl: error: " : "schemactl: warning: ") << problem.message() << "\n";
  }
  return code;
}

absl::StatusOr<int> Validate(const Io& io, const ValidateOptions&) {
  ASSIGN_OR_RETURN(std::unique_ptr<Direct> direct, OpenDirect(io.global));
  ASSIGN_OR_RETURN(engine::ValidationReport report, direct->executor->Validate(*direct->session));
  PrintValidation(io.out, io.global.json, io.global.quiet, report.ok(), report.applied_checked,
                  ToChecksumIssues(report.issues), io.global.dir);
  if (!report.ok()) {
    io.err << "schemactl: error: applied revisions do not match their files\n";
    return kExitFailed;
  }
  return kExitOk;
}

// ---------------------------------------------------------------- history

// The revisions `history -r START:END` lists, in Alembic's order (see
// engine::WalkRevisions); `rows` is null without a database.
absl::StatusOr<std::vector<int>> HistoryOrder(const RevisionGraph& graph, absl::string_view range,
                                              const std::vector<std::string>* rows) {
  absl::string_view start;
  absl::string_view end;
  if (!range.empty()) {
    const size_t colon = range.find(':');
    if (colon == absl::string_view::npos) {
      return UsageError(absl::StrCat("history -r: expected [START]:[END], got '", range, "'"));
    }
    start = absl::StripAsciiWhitespace(range.substr(0, colon));
    end = absl::StripAsciiWhitespace(range.substr(colon + 1));
  }
  if (rows == nullptr && (start == "current" || end == "current")) {
    return UsageError("history -r: `current` needs a database (--dsn)");
  }
  static const std::vector<std::string> kNoRows;
  return engine::WalkRevisions(graph, start, end, rows == nullptr ? kNoRows : *rows);
}

absl::StatusOr<int> HistoryLog(const Io& io, const HistoryOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<store::Database> database, OpenDatabase(io.global));
  ASSIGN_OR_RETURN(std::unique_ptr<store::Session> session, Connect(*database));
  ASSIGN_OR_RETURN(std::vector<store::HistoryRecord> records, session->ReadHistory(options.limit));
  return PrintHistoryLog(io, records);
}

absl::StatusOr<int> History(const Io& io, const HistoryOptions& options) {
  if (options.log) {
    return HistoryLog(io, options);
  }
  ASSIGN_OR_RETURN(RevisionGraph graph, internal::LoadGraph(io.global));
  if (io.global.dsn.empty()) {
    return internal::PrintHistory(io, options, graph, nullptr);
  }
  // With a database: its rows and when each revision was last applied.
  internal::HistoryDatabase db;
  db.where = io.global.dir;
  ASSIGN_OR_RETURN(std::unique_ptr<store::Database> database, OpenDatabase(io.global));
  ASSIGN_OR_RETURN(std::unique_ptr<store::Session> session, Connect(*database));
  ASSIGN_OR_RETURN(store::DatabaseState state, session->ReadState());
  db.rows = state.rows;
  if (state.version_table_exists) {
    ASSIGN_OR_RETURN(std::vector<store::HistoryRecord> records, session->ReadHistory(0));
    for (const store::HistoryRecord& record : records) {  // newest first
      internal::NoteApplied(record.revision, record.direction, record.outcome, record.started,
                            record.duration, record.who, &db);
    }
  }
  return internal::PrintHistory(io, options, graph, &db);
}

}  // namespace

namespace internal {

void NoteApplied(const std::string& revision, const std::string& direction,
                 const std::string& outcome, absl::Time started, absl::Duration duration,
                 const std::string& who, HistoryDatabase* db) {
  const bool done = (direction == "up" && outcome == "success") ||
                    (direction == "resolve" && outcome == "applied");
  if (!done || revision.empty() || db->last_applied.count(revision) > 0) return;
  AppliedInfo info;
  info.applied = true;
  info.applied_at = started;
  info.duration = duration;
  info.who = who;
  db->last_applied.emplace(revision, std::move(info));
}

absl::StatusOr<int> PrintHistory(const Io& io, const HistoryOptions& options,
                                 const RevisionGraph& graph, const HistoryDatabase* db) {
  const bool with_db = db != nullptr;
  static const std::vector<std::string> kNoRows;
  const std::vector<std::string>& rows = with_db ? db->rows : kNoRows;
  std::vector<bool> applied(graph.size(), false);
  if (with_db) {
    std::vector<int> current;
    for (const std::string& row : rows) {
      const int index = graph.IndexOf(row);
      if (index >= 0) {
        current.push_back(index);
      } else if (!io.global.quiet) {
        io.err << "schemactl: warning: version row " << row << " is not in " << db->where << "\n";
      }
    }
    applied = graph.AncestorMask(current, /*include_dependencies=*/true);
  }
  ASSIGN_OR_RETURN(std::vector<int> order,
                   HistoryOrder(graph, options.range, with_db ? &rows : nullptr));

  const auto is_current = [&](int index) {
    return std::find(rows.begin(), rows.end(), graph.id(index)) != rows.end();
  };
  const auto info_for = [&](int index) {
    AppliedInfo info;
    info.applied = applied[index];
    if (!info.applied) return info;
    auto it = db->last_applied.find(graph.id(index));
    if (it != db->last_applied.end()) info = it->second;
    return info;
  };

  Json list = Json::array();
  for (int index : order) {
    if (io.global.json) {
      Json item = RevisionJson(graph, index);
      if (with_db) {
        const AppliedInfo info = info_for(index);
        item["current"] = is_current(index);
        item["applied"] = info.applied;
        item["applied_at"] =
            info.applied_at.has_value() ? Json(JsonTimeText(*info.applied_at)) : Json(nullptr);
        item["duration_ms"] =
            info.duration.has_value() ? Json(Milliseconds(*info.duration)) : Json(nullptr);
        item["applied_by"] = info.who;
      }
      list.push_back(std::move(item));
      continue;
    }
    if (options.verbose) {
      const AppliedInfo info = info_for(index);
      io.out << FormatLogEntry(graph, index, with_db && is_current(index),
                               with_db ? &info : nullptr);
      continue;
    }
    io.out << FormatRevisionLine(graph, index, LineFormat::History(), with_db && is_current(index));
    if (with_db) {
      const AppliedInfo info = info_for(index);
      if (!info.applied) {
        io.out << "  [pending]";
      } else if (info.applied_at.has_value()) {
        io.out << "  [applied " << TimeText(*info.applied_at);
        if (info.duration.has_value()) {
          io.out << " in " << DurationText(*info.duration);
        }
        io.out << "]";
      } else {
        io.out << "  [applied]";
      }
    }
    io.out << "\n";
  }
  if (io.global.json) {
    Json json;
    json["revisions"] = std::move(list);
    if (with_db) {
      json["rows"] = StringListJson(rows);
    }
    io.out << JsonText(json) << "\n";
  }
  return kExitOk;
}

absl::StatusOr<std::vector<std::string>> ReadRowsFromDatabase(const GlobalOptions& global) {
  ASSIGN_OR_RETURN(std::unique_ptr<store::Database> database, OpenDatabase(global));
  ASSIGN_OR_RETURN(std::unique_ptr<store::Session> session, Connect(*database));
  ASSIGN_OR_RETURN(store::DatabaseState state, session->ReadState());
  return state.rows;
}

}  // namespace internal

// ------------------------------------------------------------ entry points

int RunUpgrade(const GlobalOptions& global, const UpgradeOptions& options, std::ostream& out,
               std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, Upgrade(io, options));
}

int RunDowngrade(const GlobalOptions& global, const DowngradeOptions& options, std::ostream& out,
                 std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, Downgrade(io, options));
}

int RunCurrent(const GlobalOptions& global, const CurrentOptions& options, std::ostream& out,
               std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, Current(io, options));
}

int RunHistory(const GlobalOptions& global, const HistoryOptions& options, std::ostream& out,
               std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, History(io, options));
}

int RunStamp(const GlobalOptions& global, const StampOptions& options, std::ostream& out,
             std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, Stamp(io, options));
}

int RunEnsureHead(const GlobalOptions& global, const EnsureHeadOptions& options, std::ostream& out,
                  std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, EnsureHead(io, options));
}

namespace internal {

absl::StatusOr<std::unique_ptr<store::Database>> OpenTargetDatabase(const GlobalOptions& global) {
  return OpenDatabase(global);
}

absl::StatusOr<std::unique_ptr<store::Session>> ConnectTarget(store::Database& database) {
  return Connect(database);
}

}  // namespace internal

int RunValidate(const GlobalOptions& global, const ValidateOptions& options, std::ostream& out,
                std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, Validate(io, options));
}

int RunResolve(const GlobalOptions& global, const ResolveOptions& options, std::ostream& out,
               std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, Resolve(io, options));
}

int RunRepair(const GlobalOptions& global, const RepairOptions& options, std::ostream& out,
              std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, Repair(io, options));
}

}  // namespace schemad::cli
