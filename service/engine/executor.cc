#include "service/engine/executor.h"

#include <algorithm>
#include <random>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "service/common/status_macros.h"
#include "service/engine/checksum.h"

namespace schemad::engine {
namespace {

std::string RowsText(const std::vector<std::string>& rows) {
  return rows.empty() ? "base" : absl::StrJoin(rows, ", ");
}

store::Timeouts TimeoutsFor(const Revision& rev, const store::Timeouts& defaults) {
  store::Timeouts t = defaults;
  if (rev.lock_timeout) {
    t.lock_timeout = *rev.lock_timeout;
  }
  if (rev.statement_timeout) {
    t.statement_timeout = *rev.statement_timeout;
  }
  return t;
}

// The file line of PostgreSQL's error position (1-based characters into the
// statement text) or the statement's first line.
int LineOf(const SqlStatement& statement, const std::optional<int>& position) {
  int line = statement.line;
  if (!position || *position <= 0) {
    return line;
  }
  int chars = 0;
  for (char c : statement.text) {
    const bool continuation = (static_cast<unsigned char>(c) & 0xC0) == 0x80;
    if (!continuation && ++chars >= *position) {
      break;
    }
    if (c == '\n') {
      ++line;
    }
  }
  return line;
}

std::string NeedsAttentionMessage(const store::NeedsAttention& marker) {
  return absl::StrCat(
      "database needs attention: non-transactional revision ", marker.revision, " (",
      marker.direction, ") stopped after ", marker.statements_done, " of ", marker.statements_total,
      " statement(s)", marker.error.empty() ? " (interrupted)" : absl::StrCat(": ", marker.error),
      "; fix the database by hand, then run `schemactl resolve --applied` (finish it) or "
      "`schemactl resolve --rolled-back` (undo it)");
}

// Refuses to migrate a database that needs attention; names the session of
// an earlier run that is still active (it may be the interrupted revision,
// still running), which resolving now would race.
absl::Status NeedsAttentionError(store::Session& session, const store::NeedsAttention& marker) {
  std::string message = NeedsAttentionMessage(marker);
  absl::StatusOr<std::optional<store::UnfinishedRun>> earlier = session.ReadUnfinishedRun();
  if (earlier.ok() && earlier->has_value() && (*earlier)->backend.has_value()) {
    absl::StrAppend(&message, "; but first wait: the session of operation ",
                    (*earlier)->run.operation_id, " is still active (",
                    (*earlier)->backend->Describe(),
                    "): it may still change the database; wait for it to end or end it with "
                    "SELECT pg_terminate_backend(",
                    (*earlier)->backend->backend.pid, ")");
  }
  return absl::FailedPreconditionError(message);
}

}  // namespace

bool ValidationReport::ok() const {
  return std::none_of(issues.begin(), issues.end(), [](const ValidationIssue& issue) {
    return issue.kind == ValidationIssue::Kind::kChanged ||
           issue.kind == ValidationIssue::Kind::kMissingFile;
  });
}

std::string NewOperationId() {
  std::random_device rd;
  std::mt19937_64 gen((static_cast<uint64_t>(rd()) << 32) ^ rd());
  return absl::StrFormat("op-%016x", gen());
}

std::vector<PlannedStep> DescribePlan(const RevisionGraph& graph, const Plan& plan) {
  std::vector<PlannedStep> steps;
  steps.reserve(plan.steps.size());
  for (const PlanStep& step : plan.steps) {
    const Revision& rev = graph.revision(step.revision);
    const std::optional<SqlSection>& section =
        step.direction == Direction::kUp ? rev.upgrade : rev.downgrade;
    steps.push_back(PlannedStep{rev.id, step.direction, rev.path,
                                section ? static_cast<int>(section->statements.size()) : 0,
                                rev.transactional, rev.message});
  }
  return steps;
}

// One operation: its session, controls, events and history bookkeeping.
class Executor::Run {
 public:
  Run(const Executor& executor, store::Session& session, const CallControl& control,
      std::string operation, std::string target)
      : ex_(executor),
        graph_(executor.graph_),
        session_(session),
        control_(control),
        operation_(std::move(operation)),
        target_(std::move(target)),
        operation_id_(control.operation_id.empty() ? NewOperationId() : control.operation_id),
        started_(absl::Now()) {}

  const std::string& operation_id() const { return operation_id_; }
  absl::Time started() const { return started_; }

  bool Cancelled() const {
    return control_.cancelled != nullptr && control_.cancelled->load(std::memory_order_relaxed);
  }

  Event NewEvent(Event::Kind kind) const {
    Event e;
    e.kind = kind;
    e.time = absl::Now();
    e.operation_id = operation_id_;
    e.operation = operation_;
    e.target = target_;
    return e;
  }

  void Emit(const Event& e) const {
    if (control_.sink != nullptr) {
      control_.sink->OnEvent(e);
    }
  }

  absl::StatusOr<std::unique_ptr<store::MigrationLock>> Lock(bool* took_lock) {
    const absl::Time wait_start = absl::Now();
    auto on_wait = [this](const store::LockHolder& holder, absl::Duration waited) {
      Event e = NewEvent(Event::Kind::kWaitingForLock);
      e.lock_holder = holder.Describe();
      e.waited = waited;
      Emit(e);
    };
    auto cancelled = [this]() { return Cancelled(); };
    ASSIGN_OR_RETURN(std::unique_ptr<store::MigrationLock> lock,
                     session_.AcquireLock(ex_.options_.lock_wait, on_wait, cancelled));
    *took_lock = true;
    Event e = NewEvent(Event::Kind::kLockAcquired);
    e.waited = absl::Now() - wait_start;
    Emit(e);
    return lock;
  }

  // Under the lock, before the state is read: refuses while the session of
  // an earlier run is still connected (what it runs may still change the
  // database), records an earlier run that died as `interrupted`, and records
  // this run as started. FinishRun undoes the last part.
  absl::Status StartRun() {
    ASSIGN_OR_RETURN(std::optional<store::UnfinishedRun> earlier, session_.ReadUnfinishedRun());
    if (earlier.has_value() && earlier->backend.has_value()) {
      return absl::AbortedError(absl::StrCat(
          "an earlier run on ", ex_.database_.DisplayName(), " is still active: operation ",
          RunText(earlier->run), " lost its migration lock, but its session ",
          earlier->backend->Describe(),
          " is still there and may still change the database; wait for it to end, or end it "
          "with SELECT pg_terminate_backend(",
          earlier->backend->backend.pid, "), then retry"));
    }
    std::optional<store::HistoryRecord> interrupted;
    if (earlier.has_value()) {
      ASSIGN_OR_RETURN(store::DatabaseState state, session_.ReadState());
      interrupted = Interrupted(earlier->run, state);
    }
    store::RunRecord record;
    record.operation_id = operation_id_;
    record.operation = operation_;
    record.target = target_;
    record.who = ex_.options_.who;
    record.schemad_version = ex_.options_.schemad_version;
    record.started = started_;
    ASSIGN_OR_RETURN(std::unique_ptr<store::Transaction> tx, session_.Begin());
    if (interrupted.has_value()) {
      RETURN_IF_ERROR(tx->AppendHistory(*interrupted));
    }
    RETURN_IF_ERROR(tx->StartRun(record));
    RETURN_IF_ERROR(tx->Commit());
    run_started_ = true;
    return absl::OkStatus();
  }

  // Ends the run (best effort: a record left behind is noticed by the next
  // run) and discards whatever revisions left in the session.
  void FinishRun() {
    if (run_started_) {
      (void)session_.FinishRun();
      run_started_ = false;
    } else {
      (void)session_.ResetState();
    }
  }

  // "op-1 (upgrade heads, by alice, started 2026-...Z)".
  static std::string RunText(const store::RunRecord& run) {
    std::string out = absl::StrCat(run.operation_id, " (", run.operation);
    if (!run.target.empty()) {
      absl::StrAppend(&out, " ", run.target);
    }
    if (!run.who.empty()) {
      absl::StrAppend(&out, ", by ", run.who);
    }
    if (run.started != absl::InfinitePast()) {
      absl::StrAppend(&out, ", started ",
                      absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", run.started, absl::UTCTimeZone()));
    }
    return absl::StrCat(out, ")");
  }

  // The history row of a run that died, as far as it is known.
  store::HistoryRecord Interrupted(const store::RunRecord& run,
                                   const store::DatabaseState& state) const {
    store::HistoryRecord h;
    h.direction = run.operation == "downgrade" ? "down"
                  : run.operation == "stamp"   ? "stamp"
                  : run.operation == "resolve" ? "resolve"
                                               : "up";
    std::string what = absl::StrCat(
        "interrupted: operation ", RunText(run), " on session pid ", run.pid,
        run.application_name.empty() ? "" : absl::StrCat(" (", run.application_name, ")"),
        " ended without finishing (its client or schemad was killed, or the connection or "
        "PostgreSQL went away)");
    const std::optional<store::NeedsAttention>& marker = state.needs_attention;
    if (marker.has_value() && marker->operation_id == run.operation_id) {
      h.revision = marker->revision;
      h.direction = marker->direction;
      const int rev = graph_.IndexOf(marker->revision);
      if (rev >= 0) {
        h.checksum = graph_.revision(rev).checksum;
      }
      absl::StrAppend(&what, " during non-transactional revision ", marker->revision, " (",
                      marker->direction, ") after ", marker->statements_done, " of ",
                      marker->statements_total, " statement(s): it needs attention");
    }
    absl::StrAppend(&what, "; noticed by operation ", operation_id_);
    h.rows_before = state.rows;
    h.rows_after = state.rows;
    h.started = run.started;
    h.outcome = "interrupted";
    h.error = what;
    h.who = run.who;
    h.operation_id = run.operation_id;
    h.schemad_version = run.schemad_version;
    return h;
  }

  store::HistoryRecord History(const PlanStep& step, absl::Time started) const {
    const Revision& rev = graph_.revision(step.revision);
    store::HistoryRecord h;
    h.revision = rev.id;
    h.direction = std::string(DirectionName(step.direction));
    h.rows_after = step.rows_after;
    h.checksum = rev.checksum;
    if (step.direction == Direction::kUp) {
      h.fingerprint = RevisionFingerprint(rev);
    }
    h.started = started;
    h.duration = absl::Now() - started;
    h.outcome = "success";
    h.who = ex_.options_.who;
    h.operation_id = operation_id_;
    h.schemad_version = ex_.options_.schemad_version;
    return h;
  }

  // Records a failure in history in a transaction of its own (best effort:
  // the original error is what the caller reports).
  void RecordFailure(store::HistoryRecord record, const absl::Status& error,
                     const std::optional<store::NeedsAttention>& marker) {
    record.outcome = marker ? "needs_attention" : "failed";
    record.duration = absl::Now() - record.started;
    record.error = std::string(error.message());
    record.rows_after = record.rows_before;
    // The revision is over: what it changed in the session goes first.
    (void)session_.ResetState();
    absl::StatusOr<std::unique_ptr<store::Transaction>> tx = session_.Begin();
    if (!tx.ok()) {
      return;
    }
    if (marker && !(*tx)->SetNeedsAttention(marker).ok()) {
      return;
    }
    if ((*tx)->AppendHistory(record).ok()) {
      (void)(*tx)->Commit();
    }
  }

  // One revision of a per-command transaction (Transaction::ExecuteRevision):
  // its statements (each announced by kStatementStarted as it runs; a cancel
  // stops the one running), its version-row changes and its history row.
  absl::Status RunRevision(store::Transaction& tx, const Revision& rev,
                           const std::vector<SqlStatement>& statements, const PlanStep& step,
                           store::HistoryRecord history, const Event& base) {
    history.duration = absl::Now() - history.started;
    int failed_index = -1;
    store::StatementError error;
    absl::Status done = tx.ExecuteRevision(
        statements, step.version_changes, history, StatementProgress(base, statements),
        [this]() { return Cancelled(); }, &failed_index, &error);
    return RevisionOutcome(rev, statements, done, failed_index, error);
  }

  // The store's statement progress for a revision (ExecuteAndCommit,
  // ExecuteRevision): a kStatementStarted event as each statement runs, and
  // a cancel seen between two statements stops the one running. `base` and
  // `statements` must outlive the store's call.
  std::function<void(int)> StatementProgress(const Event& base,
                                             const std::vector<SqlStatement>& statements) {
    return [this, &base, &statements](int i) {
      EmitStatementStarted(base, i, statements[static_cast<size_t>(i)]);
      if (Cancelled()) {
        session_.Cancel();
      }
    };
  }

  // What the caller is told of a revision the store ran: `done` itself, the
  // failing statement named (StatementFailure), or CANCELLED when cancelled.
  absl::Status RevisionOutcome(const Revision& rev, const std::vector<SqlStatement>& statements,
                               const absl::Status& done, int failed_index,
                               const store::StatementError& error) {
    if (done.ok()) {
      return done;
    }
    if (failed_index >= 0 && failed_index < static_cast<int>(statements.size())) {
      return StatementFailure(rev, statements[static_cast<size_t>(failed_index)], done, error);
    }
    if (Cancelled()) {
      return absl::CancelledError(
          absl::StrCat("cancelled during revision ", rev.id, ": ", done.message()));
    }
    return done;
  }

  // kStatementStarted for statement `index` of the revision `base` describes.
  void EmitStatementStarted(const Event& base, int index, const SqlStatement& statement) const {
    Event e = base;
    e.kind = Event::Kind::kStatementStarted;
    e.time = absl::Now();
    e.statement_index = index;
    e.line = statement.line;
    Emit(e);
  }

  absl::Status StatementFailure(const Revision& rev, const SqlStatement& statement,
                                const absl::Status& status, const store::StatementError& error) {
    if (Cancelled()) {
      return absl::CancelledError(absl::StrCat("cancelled during revision ", rev.id,
                                               " (statement at line ", statement.line, ")"));
    }
    const std::string where = rev.path.empty()
                                  ? absl::StrCat("line ", LineOf(statement, error.position))
                                  : absl::StrCat(rev.path, ":", LineOf(statement, error.position));
    std::string what = error.sqlstate.empty()
                           ? std::string(status.message())
                           : absl::StrCat("SQLSTATE ", error.sqlstate, ": ", error.message);
    return absl::Status(status.code(),
                        absl::StrCat("revision ", rev.id, " failed at ", where, ": ", what));
  }

  absl::Status RunTransactionalStep(const PlanStep& step, const std::vector<std::string>& before,
                                    Event base) {
    const Revision& rev = graph_.revision(step.revision);
    const auto& section = step.direction == Direction::kUp ? rev.upgrade : rev.downgrade;
    const absl::Time started = absl::Now();
    store::HistoryRecord history = History(step, started);
    history.rows_before = before;
    absl::Status status = [&]() -> absl::Status {
      ASSIGN_OR_RETURN(std::unique_ptr<store::Transaction> tx, session_.Begin());
      RETURN_IF_ERROR(tx->SetTimeouts(TimeoutsFor(rev, ex_.options_.timeouts)));
      const std::vector<SqlStatement>& statements = section->statements;
      if (Cancelled()) {
        return absl::CancelledError(
            absl::StrCat("cancelled before statement 1 of revision ", rev.id));
      }
      // The store sends the whole revision at once (statements, version row,
      // history row, COMMIT) and reports each statement as it completes.
      history.duration = absl::Now() - started;
      int failed_index = -1;
      store::StatementError error;
      absl::Status done = tx->ExecuteAndCommit(
          statements, step.version_changes, history, StatementProgress(base, statements),
          [this]() { return Cancelled(); }, &failed_index, &error);
      if (done.code() == absl::StatusCode::kUnknown) {
        return absl::UnknownError(absl::StrCat(
            "the commit of revision ", rev.id,
            " has an unknown outcome (connection lost during COMMIT); re-read the state "
            "(`schemactl current`) before doing anything else: ",
            done.message()));
      }
      return RevisionOutcome(rev, statements, done, failed_index, error);
    }();
    if (!status.ok() && status.code() != absl::StatusCode::kUnknown &&
        status.code() != absl::StatusCode::kUnavailable) {
      RecordFailure(history, status, std::nullopt);
    }
    return status;
  }

  absl::Status RunNonTransactionalStep(const PlanStep& step, const std::vector<std::string>& before,
                                       Event base) {
    const Revision& rev = graph_.revision(step.revision);
    const auto& statements =
        (step.direction == Direction::kUp ? rev.upgrade : rev.downgrade)->statements;
    const absl::Time started = absl::Now();
    store::HistoryRecord history = History(step, started);
    history.rows_before = before;
    store::NeedsAttention marker;
    marker.revision = rev.id;
    marker.direction = std::string(DirectionName(step.direction));
    marker.statements_total = static_cast<int>(statements.size());
    marker.operation_id = operation_id_;
    marker.started = started;
    {
      // Mark first: a crash from here on leaves a visible state.
      ASSIGN_OR_RETURN(std::unique_ptr<store::Transaction> tx, session_.Begin());
      RETURN_IF_ERROR(tx->SetNeedsAttention(marker));
      RETURN_IF_ERROR(tx->Commit());
    }
    const store::Timeouts timeouts = TimeoutsFor(rev, ex_.options_.timeouts);
    for (size_t i = 0; i < statements.size(); ++i) {
      absl::Status status;
      if (Cancelled()) {
        status = absl::CancelledError(absl::StrCat("cancelled before statement ", i + 1,
                                                   " of non-transactional revision ", rev.id));
      } else {
        EmitStatementStarted(base, static_cast<int>(i), statements[i]);
        store::StatementError error;
        status = session_.ExecuteAutocommit(statements[i], timeouts, &error);
        if (!status.ok()) {
          status = StatementFailure(rev, statements[i], status, error);
        }
      }
      if (!status.ok()) {
        marker.error = std::string(status.message());
        RecordFailure(history, status, marker);
        return absl::Status(status.code() == absl::StatusCode::kCancelled
                                ? absl::StatusCode::kCancelled
                                : absl::StatusCode::kFailedPrecondition,
                            absl::StrCat(status.message(), "; ", NeedsAttentionMessage(marker)));
      }
      marker.statements_done = static_cast<int>(i) + 1;
      if (marker.statements_done < marker.statements_total) {
        // Keep the mark current, so that after a crash it says how far it got.
        ASSIGN_OR_RETURN(std::unique_ptr<store::Transaction> progress, session_.Begin());
        RETURN_IF_ERROR(progress->SetNeedsAttention(marker));
        RETURN_IF_ERROR(progress->Commit());
      }
    }
    // The revision is over: what its statements changed in the session
    // (SET, set_config, temporary objects...) must not reach what follows.
    RETURN_IF_ERROR(session_.ResetState());
    ASSIGN_OR_RETURN(std::unique_ptr<store::Transaction> tx, session_.Begin());
    RETURN_IF_ERROR(tx->ApplyVersionChanges(step.version_changes));
    RETURN_IF_ERROR(tx->SetNeedsAttention(std::nullopt));
    history.duration = absl::Now() - started;
    RETURN_IF_ERROR(tx->AppendHistory(history));
    return tx->Commit();
  }

  // kPerCommand: steps [first, end) of `plan`, all transactional, in one
  // transaction; `before` is the rows at `first` (committed). Emits each
  // step's kRevisionStarted as it starts; kRevisionFinished for all of them
  // once the COMMIT succeeded, or, on a failure, the error for the failing
  // step and ABORTED ("rolled back") for those that had run before it in
  // the transaction. A failure is recorded in history (one `failed` row for
  // the failing revision, rows unchanged) and nothing of the transaction
  // stays.
  absl::Status RunTransactionalSegment(const Plan& plan, int first, int end,
                                       const std::vector<std::string>& before) {
    const int count = static_cast<int>(plan.steps.size());
    std::vector<Event> finished;  // one per step run so far, kRevisionFinished
    std::vector<std::string> step_before = before;
    store::HistoryRecord failed_history;
    int failed_step = -1;
    absl::Status status = [&]() -> absl::Status {
      ASSIGN_OR_RETURN(std::unique_ptr<store::Transaction> tx, session_.Begin());
      for (int i = first; i < end; ++i) {
        const PlanStep& step = plan.steps[i];
        const Revision& rev = graph_.revision(step.revision);
        const auto& section = step.direction == Direction::kUp ? rev.upgrade : rev.downgrade;
        if (Cancelled()) {
          return absl::CancelledError(
              absl::StrCat("cancelled before revision ", rev.id, "; the transaction of ",
                           RevisionRange(plan, first, end), " was rolled back"));
        }
        Event base = StepEvent(step, i, count);
        Emit(base);
        const absl::Time started = absl::Now();
        store::HistoryRecord history = History(step, started);
        history.rows_before = step_before;
        failed_history = history;
        failed_history.rows_before = before;
        failed_step = i;
        Event done = base;
        done.kind = Event::Kind::kRevisionFinished;
        finished.push_back(done);
        RETURN_IF_ERROR(tx->SetTimeouts(TimeoutsFor(rev, ex_.options_.timeouts)));
        RETURN_IF_ERROR(RunRevision(*tx, rev, section->statements, step, history, base));
        finished.back().time = absl::Now();
        finished.back().duration = finished.back().time - started;
        step_before = step.rows_after;
      }
      failed_step = -1;
      if (Cancelled()) {
        return absl::CancelledError(absl::StrCat("cancelled before COMMIT; the transaction of ",
                                                 RevisionRange(plan, first, end),
                                                 " was rolled back"));
      }
      absl::Status committed = tx->Commit();
      if (committed.code() == absl::StatusCode::kUnknown) {
        return absl::UnknownError(absl::StrCat(
            "the commit of ", RevisionRange(plan, first, end),
            " has an unknown outcome (connection lost during COMMIT); re-read the state "
            "(`schemactl current`) before doing anything else: ",
            committed.message()));
      }
      return committed;
    }();
    if (status.ok()) {
      for (const Event& done : finished) {
        Emit(done);
      }
      return status;
    }
    // The transaction is gone (rolled back): say so for every step that ran
    // in it, and record the failure.
    for (size_t k = 0; k < finished.size(); ++k) {
      Event done = finished[k];
      done.time = absl::Now();
      const bool failing = first + static_cast<int>(k) == failed_step;
      done.status = failing ? status
                            : absl::AbortedError(absl::StrCat(
                                  "rolled back: a later revision of the same transaction failed"));
      Emit(done);
    }
    if (failed_step >= 0 && status.code() != absl::StatusCode::kUnknown &&
        status.code() != absl::StatusCode::kUnavailable) {
      RecordFailure(failed_history, status, std::nullopt);
    }
    const int rolled_back = failed_step >= 0 ? failed_step - first : end - first;
    return absl::Status(
        status.code(),
        absl::StrCat(status.message(), rolled_back > 0
                                           ? absl::StrCat("; the ", rolled_back,
                                                          " revision(s) run before it in the same "
                                                          "transaction were rolled back too")
                                           : ""));
  }

  // "revision a" or "revisions a..c".
  std::string RevisionRange(const Plan& plan, int first, int end) const {
    if (end - first == 1) {
      return absl::StrCat("revision ", graph_.id(plan.steps[first].revision));
    }
    return absl::StrCat("revisions ", graph_.id(plan.steps[first].revision), "..",
                        graph_.id(plan.steps[end - 1].revision));
  }

  Event StepEvent(const PlanStep& step, int index, int count) const {
    const Revision& rev = graph_.revision(step.revision);
    const auto& section = step.direction == Direction::kUp ? rev.upgrade : rev.downgrade;
    Event e = NewEvent(Event::Kind::kRevisionStarted);
    e.revision = rev.id;
    e.direction = step.direction;
    e.step_index = index;
    e.step_count = count;
    e.statement_count = section ? static_cast<int>(section->statements.size()) : 0;
    return e;
  }

  absl::Status RunPlan(const Plan& plan, OperationResult& result) {
    const bool per_command =
        ex_.options_.transaction_mode == ExecutorOptions::TransactionMode::kPerCommand;
    std::vector<std::string> before = plan.rows_before;
    const int count = static_cast<int>(plan.steps.size());
    const auto transactional = [&](int i) {
      return graph_.revision(plan.steps[i].revision).transactional;
    };
    for (int i = 0; i < count;) {
      const PlanStep& step = plan.steps[i];
      if (Cancelled()) {
        return absl::CancelledError(absl::StrCat("cancelled after ", i, " of ", count,
                                                 " revision(s); database is at ",
                                                 RowsText(before)));
      }
      // Per command: the transactional revisions up to the next
      // non-transactional one (or the end) share one transaction.
      int end = i + 1;
      while (per_command && transactional(i) && end < count && transactional(end)) {
        ++end;
      }
      absl::Status status;
      if (end - i > 1) {
        status = RunTransactionalSegment(plan, i, end, before);
      } else {
        Event base = StepEvent(step, i, count);
        Emit(base);
        const absl::Time started = absl::Now();
        status = transactional(i) ? RunTransactionalStep(step, before, base)
                                  : RunNonTransactionalStep(step, before, base);
        Event done = base;
        done.kind = Event::Kind::kRevisionFinished;
        done.time = absl::Now();
        done.duration = done.time - started;
        done.status = status;
        Emit(done);
      }
      if (!status.ok()) {
        return absl::Status(status.code(), absl::StrCat(status.message(), " (", i, " of ", count,
                                                        " revision(s) done; database is at ",
                                                        RowsText(before), ")"));
      }
      before = plan.steps[end - 1].rows_after;
      result.revisions_run = end;
      i = end;
    }
    return absl::OkStatus();
  }

  // A cancel that reached PostgreSQL while one of schemad's own statements
  // ran (creating the tables, bookkeeping, COMMIT) comes back as that
  // statement's query-cancel error (SQLSTATE 57014, ABORTED): when this run
  // was cancelled, that is the cancel, and the caller gets CANCELLED.
  absl::Status AsCancelled(absl::Status status) const {
    if (status.ok() || status.code() == absl::StatusCode::kCancelled || !Cancelled() ||
        !absl::StrContains(status.message(), "SQLSTATE 57014")) {
      return status;
    }
    return absl::CancelledError(absl::StrCat("cancelled: ", status.message()));
  }

  void Finish(OperationResult& result, const absl::Status& status) const {
    result.duration = absl::Now() - started_;
    Event e = NewEvent(Event::Kind::kOperationFinished);
    e.duration = result.duration;
    e.rows_after = result.rows_after;
    e.status = status;
    Emit(e);
  }

 private:
  const Executor& ex_;
  const RevisionGraph& graph_;
  store::Session& session_;
  const CallControl& control_;
  const std::string operation_;
  const std::string target_;
  const std::string operation_id_;
  const absl::Time started_;
  bool run_started_ = false;
};

// Calls Run::FinishRun when the scope ends (declare it after the lock, so
// that it runs while the lock is still held).
class Executor::RunScope {
 public:
  explicit RunScope(Run* run) : run_(run) {}
  ~RunScope() { run_->FinishRun(); }
  RunScope(const RunScope&) = delete;
  RunScope& operator=(const RunScope&) = delete;

 private:
  Run* run_;
};

Executor::Executor(const RevisionGraph& graph, store::Database& database, ExecutorOptions options)
    : graph_(graph), database_(database), options_(std::move(options)) {}

namespace {

absl::StatusOr<Plan> MakePlan(const RevisionGraph& graph, const std::vector<std::string>& rows,
                              Plan::Kind kind, absl::Span<const std::string> targets, bool purge) {
  switch (kind) {
    case Plan::Kind::kUpgrade:
    case Plan::Kind::kDowngrade:
      if (targets.size() != 1) {
        return absl::InvalidArgumentError("upgrade and downgrade take exactly one target");
      }
      return kind == Plan::Kind::kUpgrade ? PlanUpgrade(graph, rows, targets.front())
                                          : PlanDowngrade(graph, rows, targets.front());
    case Plan::Kind::kStamp:
      return PlanStamp(graph, rows, targets, purge);
  }
  return absl::InternalError("unknown plan kind");
}

// The checks under the lock before an upgrade: applied files unchanged.
absl::Status CheckChecksums(const ValidationReport& report) {
  std::vector<std::string> problems;
  for (const ValidationIssue& issue : report.issues) {
    if (issue.kind == ValidationIssue::Kind::kChanged) {
      problems.push_back(
          absl::StrCat(issue.revision, " (", issue.path, ") changed since it was applied"));
    } else if (issue.kind == ValidationIssue::Kind::kMissingFile) {
      problems.push_back(absl::StrCat(issue.revision, " is applied but has no file"));
    }
  }
  if (problems.empty()) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "applied revisions do not match their files: ", absl::StrJoin(problems, "; "),
      ". Restore the files, or upgrade with --allow-changed if the change is intended"));
}

absl::StatusOr<ValidationReport> ValidateState(const RevisionGraph& graph,
                                               const store::DatabaseState& state,
                                               store::Session& session) {
  ValidationReport report;
  ASSIGN_OR_RETURN(auto recorded, session.ReadAppliedChecksums());
  std::vector<int> current;
  for (const std::string& row : state.rows) {
    int index = graph.IndexOf(row);
    if (index < 0) {
      report.issues.push_back({ValidationIssue::Kind::kMissingFile, row, "", "", ""});
    } else {
      current.push_back(index);
    }
  }
  std::vector<bool> applied = graph.AncestorMask(current, /*include_dependencies=*/true);
  for (int i = 0; i < graph.size(); ++i) {
    if (!applied[i]) {
      continue;
    }
    ++report.applied_checked;
    const Revision& rev = graph.revision(i);
    auto it = recorded.find(rev.id);
    if (it == recorded.end()) {
      report.issues.push_back(
          {ValidationIssue::Kind::kNoChecksum, rev.id, rev.path, "", rev.checksum});
    } else if (it->second != rev.checksum) {
      report.issues.push_back(
          {ValidationIssue::Kind::kChanged, rev.id, rev.path, it->second, rev.checksum});
    }
  }
  // A changed file whose meaning to PostgreSQL is what was applied is a
  // cosmetic edit. Fingerprints are read and computed only here, when some
  // checksum differs.
  std::optional<std::map<std::string, std::string>> fingerprints;
  for (ValidationIssue& issue : report.issues) {
    if (issue.kind != ValidationIssue::Kind::kChanged) {
      continue;
    }
    if (!fingerprints.has_value()) {
      ASSIGN_OR_RETURN(fingerprints, session.ReadAppliedFingerprints());
    }
    const auto recorded_fingerprint = fingerprints->find(issue.revision);
    if (recorded_fingerprint != fingerprints->end() &&
        recorded_fingerprint->second ==
            RevisionFingerprint(graph.revision(graph.IndexOf(issue.revision)))) {
      issue.kind = ValidationIssue::Kind::kCosmetic;
    }
  }
  for (const auto& [revision, checksum] : recorded) {
    if (graph.IndexOf(revision) < 0 &&
        std::find(state.rows.begin(), state.rows.end(), revision) == state.rows.end()) {
      report.issues.push_back({ValidationIssue::Kind::kMissingFile, revision, "", checksum, ""});
    }
  }
  return report;
}

}  // namespace

absl::StatusOr<DatabaseStatus> Executor::Status(store::Session& session) const {
  ASSIGN_OR_RETURN(store::DatabaseState state, session.ReadState());
  DatabaseStatus status;
  status.version_table_exists = state.version_table_exists;
  status.rows = state.rows;
  status.graph_heads = graph_.HeadIds();
  status.needs_attention = state.needs_attention;
  absl::StatusOr<int> pending = CountPending(graph_, state.rows);
  if (pending.ok()) {
    status.pending = *pending;
  } else {
    status.pending = -1;
    status.row_error = std::string(pending.status().message());
  }
  status.at_head = pending.ok() && *pending == 0 && !state.needs_attention;
  return status;
}

absl::StatusOr<Plan> Executor::PlanFor(store::Session& session, Plan::Kind kind,
                                       absl::Span<const std::string> targets, bool purge) const {
  ASSIGN_OR_RETURN(store::DatabaseState state, session.ReadState());
  return MakePlan(graph_, state.rows, kind, targets, purge);
}

struct Executor::MigrateRequest {
  Plan::Kind kind;
  std::vector<std::string> targets;
  bool purge = false;
  const store::DatabaseState* prefetched = nullptr;  // the caller's unlocked read, if any
};

absl::StatusOr<OperationResult> Executor::Upgrade(store::Session& session, absl::string_view target,
                                                  const CallControl& control) const {
  Run run(*this, session, control, "upgrade", std::string(target));
  return Migrate(run, session,
                 MigrateRequest{Plan::Kind::kUpgrade, {std::string(target)}, false, nullptr});
}

absl::StatusOr<OperationResult> Executor::Downgrade(store::Session& session,
                                                    absl::string_view target,
                                                    const CallControl& control) const {
  Run run(*this, session, control, "downgrade", std::string(target));
  return Migrate(run, session,
                 MigrateRequest{Plan::Kind::kDowngrade, {std::string(target)}, false, nullptr});
}

absl::StatusOr<OperationResult> Executor::Stamp(store::Session& session,
                                                absl::Span<const std::string> targets, bool purge,
                                                const CallControl& control) const {
  Run run(*this, session, control, "stamp", absl::StrJoin(targets, ","));
  return Migrate(
      run, session,
      MigrateRequest{Plan::Kind::kStamp, std::vector<std::string>(targets.begin(), targets.end()),
                     purge, nullptr});
}

absl::StatusOr<OperationResult> Executor::EnsureHead(store::Session& session, bool apply,
                                                     const CallControl& control) const {
  // Fast path: one read, no lock. A needs-attention mark seen here may be
  // that of a run still in progress (written before a non-transactional
  // revision's first statement): with `apply`, Migrate waits for the lock
  // and decides on what it reads under it.
  ASSIGN_OR_RETURN(store::DatabaseState state, session.ReadState());
  if (state.needs_attention && !apply) {
    return NeedsAttentionError(session, *state.needs_attention);
  }
  ASSIGN_OR_RETURN(int pending, CountPending(graph_, state.rows));
  if (pending == 0 && !state.needs_attention) {
    OperationResult result;
    result.operation_id = control.operation_id;
    result.rows_before = state.rows;
    result.rows_after = state.rows;
    result.plan.kind = Plan::Kind::kUpgrade;
    result.plan.target = "heads";
    result.plan.rows_before = state.rows;
    result.plan.rows_after = state.rows;
    return result;
  }
  if (!apply) {
    ASSIGN_OR_RETURN(Plan plan, PlanUpgrade(graph_, state.rows, "heads"));
    std::vector<std::string> ids;
    for (const PlanStep& step : plan.steps) {
      ids.push_back(graph_.id(step.revision));
    }
    return absl::FailedPreconditionError(
        absl::StrCat("database is ", pending,
                     " revision(s) behind head and may not be upgraded by "
                     "EnsureHead here; pending: ",
                     absl::StrJoin(ids, ", ")));
  }
  Run run(*this, session, control, "ensure-head", "heads");
  return Migrate(run, session, MigrateRequest{Plan::Kind::kUpgrade, {"heads"}, false, &state});
}

absl::StatusOr<OperationResult> Executor::Migrate(Run& run, store::Session& session,
                                                  const MigrateRequest& req) const {
  absl::StatusOr<OperationResult> result = MigrateOnce(run, session, req);
  if (!result.ok()) {
    return run.AsCancelled(result.status());
  }
  return result;
}

absl::StatusOr<OperationResult> Executor::MigrateOnce(Run& run, store::Session& session,
                                                      const MigrateRequest& req) const {
  const Executor& ex = *this;
  const RevisionGraph& graph = graph_;
  OperationResult result;
  result.operation_id = run.operation_id();
  const bool is_migration = req.kind != Plan::Kind::kStamp;

  // Unlocked look first: refuse bad targets and skip no-ops without the lock.
  store::DatabaseState state;
  if (req.prefetched != nullptr) {
    state = *req.prefetched;
  } else {
    ASSIGN_OR_RETURN(state, session.ReadState());
  }
  // A needs-attention mark is not refused here: without the lock it may be
  // that of a run still in progress, so it is decided under the lock (the
  // re-read below), and never answered from this read.
  ASSIGN_OR_RETURN(Plan plan, MakePlan(graph, state.rows, req.kind, req.targets, req.purge));
  const bool nothing_to_do =
      req.kind == Plan::Kind::kStamp ? plan.stamp_changes.empty() : plan.steps.empty();
  if (nothing_to_do && state.version_table_exists && !state.needs_attention) {
    // Unless a run died after its last commit, before it could remove its
    // record: then this command takes the lock to record it as interrupted
    // and clear it (one more read, for explicit commands only; EnsureHead's
    // fast path stays one query).
    ASSIGN_OR_RETURN(std::optional<store::UnfinishedRun> unfinished, session.ReadUnfinishedRun());
    if (!unfinished.has_value() || unfinished->backend.has_value()) {
      result.plan = plan;
      result.rows_before = state.rows;
      result.rows_after = state.rows;
      return result;
    }
  }

  ASSIGN_OR_RETURN(std::unique_ptr<store::MigrationLock> lock, run.Lock(&result.took_lock));
  RETURN_IF_ERROR(session.EnsureTables());
  RunScope scope(&run);
  RETURN_IF_ERROR(run.StartRun());
  // Re-read under the lock: another caller may have done the work meanwhile.
  ASSIGN_OR_RETURN(state, session.ReadState());
  if (is_migration && state.needs_attention) {
    return NeedsAttentionError(session, *state.needs_attention);
  }
  if (req.kind == Plan::Kind::kUpgrade && !ex.options().allow_changed) {
    ASSIGN_OR_RETURN(ValidationReport report, ValidateState(graph, state, session));
    RETURN_IF_ERROR(CheckChecksums(report));
  }
  ASSIGN_OR_RETURN(plan, MakePlan(graph, state.rows, req.kind, req.targets, req.purge));
  result.plan = plan;
  result.rows_before = state.rows;

  Event started = run.NewEvent(Event::Kind::kOperationStarted);
  started.plan = DescribePlan(graph, plan);
  started.rows_before = state.rows;
  run.Emit(started);

  absl::Status status;
  if (req.kind == Plan::Kind::kStamp) {
    status = [&]() -> absl::Status {
      if (plan.stamp_changes.empty()) {
        return absl::OkStatus();
      }
      ASSIGN_OR_RETURN(std::unique_ptr<store::Transaction> tx, session.Begin());
      RETURN_IF_ERROR(tx->ApplyVersionChanges(plan.stamp_changes));
      store::HistoryRecord h;
      h.revision = plan.target;
      h.direction = "stamp";
      h.rows_before = plan.rows_before;
      h.rows_after = plan.rows_after;
      h.started = run.started();
      h.duration = absl::Now() - run.started();
      h.outcome = "success";
      h.who = ex.options().who;
      h.operation_id = run.operation_id();
      h.schemad_version = ex.options().schemad_version;
      RETURN_IF_ERROR(tx->AppendHistory(h));
      return tx->Commit();
    }();
  } else {
    status = run.RunPlan(plan, result);
  }
  // The rows as they are now, never as assumed.
  absl::StatusOr<store::DatabaseState> after = session.ReadState();
  result.rows_after = after.ok() ? after->rows : plan.rows_after;
  run.Finish(result, status);
  RETURN_IF_ERROR(status);
  return result;
}

absl::StatusOr<OperationResult> Executor::Resolve(store::Session& session, Resolution resolution,
                                                  const CallControl& control) const {
  Run run(*this, session, control, "resolve",
          resolution == Resolution::kApplied ? "applied" : "rolled-back");
  OperationResult result;
  result.operation_id = run.operation_id();
  ASSIGN_OR_RETURN(std::unique_ptr<store::MigrationLock> lock, run.Lock(&result.took_lock));
  RETURN_IF_ERROR(session.EnsureTables());
  RunScope scope(&run);
  // Refuses while the interrupted revision's session may still be running it.
  RETURN_IF_ERROR(run.StartRun());
  ASSIGN_OR_RETURN(store::DatabaseState state, session.ReadState());
  if (!state.needs_attention) {
    return absl::FailedPreconditionError(
        "the database does not need attention: there is nothing to resolve");
  }
  const store::NeedsAttention& marker = *state.needs_attention;
  const int rev = graph_.IndexOf(marker.revision);
  if (rev < 0) {
    return absl::NotFoundError(
        absl::StrCat("the interrupted revision ", marker.revision, " is not in the migration set"));
  }
  std::vector<VersionRowChange> changes;
  if (resolution == Resolution::kApplied) {
    ASSIGN_OR_RETURN(
        changes, VersionChangesFor(graph_, state.rows, rev,
                                   marker.direction == "down" ? Direction::kDown : Direction::kUp));
  }
  store::HistoryRecord h;
  h.revision = marker.revision;
  h.direction = "resolve";
  h.rows_before = state.rows;
  h.checksum = graph_.revision(rev).checksum;
  h.fingerprint = RevisionFingerprint(graph_.revision(rev));
  h.started = run.started();
  h.duration = absl::Now() - run.started();
  h.rows_after = state.rows;
  for (const VersionRowChange& change : changes) {
    auto& rows = h.rows_after;
    if (change.kind != VersionRowChange::Kind::kInsert) {
      rows.erase(std::remove(rows.begin(), rows.end(), change.from), rows.end());
    }
    if (change.kind != VersionRowChange::Kind::kDelete) {
      rows.push_back(change.to);
    }
  }
  std::sort(h.rows_after.begin(), h.rows_after.end());
  h.outcome = resolution == Resolution::kApplied ? "applied" : "rolled_back";
  h.error = marker.error;
  h.who = options_.who;
  h.operation_id = run.operation_id();
  h.schemad_version = options_.schemad_version;
  {
    // Scoped: the transaction must be gone before the session is used again.
    ASSIGN_OR_RETURN(std::unique_ptr<store::Transaction> tx, session.Begin());
    RETURN_IF_ERROR(tx->ApplyVersionChanges(changes));
    RETURN_IF_ERROR(tx->SetNeedsAttention(std::nullopt));
    RETURN_IF_ERROR(tx->AppendHistory(h));
    RETURN_IF_ERROR(tx->Commit());
  }
  result.rows_before = state.rows;
  ASSIGN_OR_RETURN(store::DatabaseState after, session.ReadState());
  result.rows_after = after.rows;
  run.Finish(result, absl::OkStatus());
  return result;
}

absl::StatusOr<ValidationReport> Executor::Validate(store::Session& session) const {
  ASSIGN_OR_RETURN(store::DatabaseState state, session.ReadState());
  ASSIGN_OR_RETURN(ValidationReport report, ValidateState(graph_, state, session));
  report.rows = state.rows;
  return report;
}

absl::StatusOr<RepairResult> Executor::Repair(store::Session& session,
                                              const CallControl& control) const {
  Run run(*this, session, control, "repair", "");
  RepairResult result;
  result.operation_id = run.operation_id();
  ASSIGN_OR_RETURN(std::unique_ptr<store::MigrationLock> lock, run.Lock(&result.took_lock));
  RETURN_IF_ERROR(session.EnsureTables());
  RunScope scope(&run);
  RETURN_IF_ERROR(run.StartRun());
  ASSIGN_OR_RETURN(store::DatabaseState state, session.ReadState());
  ASSIGN_OR_RETURN(ValidationReport report, ValidateState(graph_, state, session));
  std::vector<store::HistoryRecord> records;
  for (const ValidationIssue& issue : report.issues) {
    if (issue.kind == ValidationIssue::Kind::kMissingFile) {
      result.not_repaired.push_back(issue);
      continue;
    }
    const Revision& rev = graph_.revision(graph_.IndexOf(issue.revision));
    store::HistoryRecord h;
    h.revision = rev.id;
    h.direction = "repair";
    h.rows_before = state.rows;
    h.rows_after = state.rows;
    h.checksum = rev.checksum;
    h.fingerprint = RevisionFingerprint(rev);
    h.previous_checksum = issue.recorded_checksum;
    h.started = run.started();
    h.duration = absl::Now() - run.started();
    h.outcome = "success";
    h.who = options_.who;
    h.operation_id = run.operation_id();
    h.schemad_version = options_.schemad_version;
    records.push_back(std::move(h));
    result.repaired.push_back(issue);
  }
  if (!records.empty()) {
    // Scoped: the transaction must be gone before the session is used again.
    ASSIGN_OR_RETURN(std::unique_ptr<store::Transaction> tx, session.Begin());
    for (const store::HistoryRecord& h : records) {
      RETURN_IF_ERROR(tx->AppendHistory(h));
    }
    RETURN_IF_ERROR(tx->Commit());
  }
  OperationResult finished;
  finished.operation_id = run.operation_id();
  finished.rows_before = state.rows;
  finished.rows_after = state.rows;
  finished.took_lock = result.took_lock;
  run.Finish(finished, absl::OkStatus());
  return result;
}

}  // namespace schemad::engine
