#include "service/server/service.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "service/common/status_macros.h"
#include "service/common/utf8.h"
#include "service/engine/fleet.h"
#include "service/engine/offline_sql.h"
#include "service/engine/planner.h"
#include "service/schema/schema_diff.h"
#include "service/schema_build/drift.h"
#include "service/server/proto_conversion.h"
#include "service/server/proto_time.h"
#include "service/server/request_limits.h"
#include "service/server/status_conversion.h"
#include "service/server/wire_safety.h"

namespace schemad::server {
namespace {

using EventWriter = grpc::ServerWriteReactor<v1::OperationEvent>;

// How long a call without a deadline may wait for a pooled session.
constexpr absl::Duration kDefaultCallBudget = absl::Seconds(60);

// Detail events (IsDetailEvent) a stream holds for a slow reader; more are
// skipped, and the next event delivered says how many.
constexpr size_t kMaxQueuedDetailEvents = 1024;

// Text in log lines is bounded (a database error can be megabytes).
constexpr size_t kMaxLoggedTextBytes = 1024;

absl::Time DeadlineOf(const grpc::CallbackServerContext& context) {
  const auto deadline = context.deadline();
  const auto now = std::chrono::system_clock::now();
  if (deadline - now > std::chrono::hours(24 * 365)) {
    return absl::Now() + kDefaultCallBudget;
  }
  return absl::FromChrono(deadline);
}

// A database's error as the client sees it: named, and a refused login of
// schemad itself is not the caller's PERMISSION_DENIED.
absl::Status DbError(const DatabaseEntry& db, const absl::Status& status) {
  if (status.ok()) {
    return status;
  }
  absl::Status out = status;
  if (status.code() == absl::StatusCode::kPermissionDenied) {
    out = absl::FailedPreconditionError(status.message());
  }
  return Annotate(out, absl::StrCat("database ", db.name()));
}

// Runs `fn` on a pooled session; once more on a fresh connection when the
// pooled one turns out to be dead (UNAVAILABLE), since idle connections do
// not survive a PostgreSQL restart. For reads only.
template <typename T>
absl::StatusOr<T> WithSession(const DatabaseEntry& db, absl::Time deadline,
                              const std::function<absl::StatusOr<T>(store::Session&)>& fn) {
  for (int attempt = 0;; ++attempt) {
    ASSIGN_OR_RETURN(SessionPool::Lease lease, db.pool().Acquire(deadline));
    absl::StatusOr<T> result = fn(*lease);
    lease.Finish(result.status());
    if (result.status().code() == absl::StatusCode::kUnavailable && attempt == 0) {
      lease = SessionPool::Lease();
      db.pool().DropIdle();
      continue;
    }
    return result;
  }
}

// A session for an operation: waits for a free one in slices (so a cancel is
// noticed) and checks a pooled connection with a cheap read before use.
absl::StatusOr<SessionPool::Lease> AcquireForOperation(const DatabaseEntry& db, Operation& op) {
  const std::atomic<bool>* cancelled = op.control().cancelled;
  for (int attempt = 0;; ++attempt) {
    absl::StatusOr<SessionPool::Lease> lease;
    for (;;) {
      lease = db.pool().Acquire(absl::Now() + absl::Seconds(1));
      if (lease.ok() || lease.status().code() != absl::StatusCode::kDeadlineExceeded) {
        break;
      }
      if (cancelled->load()) {
        return absl::CancelledError("cancelled while waiting for a connection");
      }
    }
    if (!lease.ok()) {
      return lease.status();
    }
    absl::Status ping = (*lease)->ReadState().status();
    if (ping.ok()) {
      return lease;
    }
    lease->Finish(ping);
    if (ping.code() != absl::StatusCode::kUnavailable || attempt > 0) {
      return ping;
    }
    db.pool().DropIdle();  // the dead session itself is closed when `lease` goes
  }
}

using ExecFn = std::function<absl::StatusOr<engine::OperationResult>(
    const engine::Executor&, store::Session&, const engine::CallControl&)>;

// The body holds `db`, and so its configuration snapshot, until it is done.
OperationRegistry::Body MakeBody(std::shared_ptr<DatabaseEntry> db, engine::ExecutorOptions options,
                                 ExecFn fn) {
  return [db, options = std::move(options),
          fn = std::move(fn)](Operation& op) -> absl::StatusOr<OperationOutcome> {
    absl::StatusOr<SessionPool::Lease> lease = AcquireForOperation(*db, op);
    if (!lease.ok()) {
      return DbError(*db, lease.status());
    }
    op.SetSession(lease->get());
    engine::Executor executor(db->set().graph, db->database(), options);
    absl::StatusOr<engine::OperationResult> result = fn(executor, **lease, op.control());
    op.SetSession(nullptr);
    lease->Finish(result.status());
    if (op.cancel_requested()) {
      lease->Discard();  // a statement cancel may still be in flight
    }
    if (!result.ok()) {
      return DbError(*db, result.status());
    }
    return OperationOutcome{*std::move(result)};
  };
}

OperationSpec SpecFor(v1::OperationKind kind, const DatabaseEntry& db, std::string target,
                      const Identity& identity) {
  OperationSpec spec;
  spec.kind = kind;
  spec.database = db.name();
  spec.target = std::move(target);
  spec.who = identity.who;
  spec.graph = &db.set().graph;
  return spec;
}

// A request's transaction scope; UNSPECIFIED: the migration set's.
engine::TransactionScope ScopeFor(v1::TransactionMode mode, const MigrationSetEntry& set) {
  switch (mode) {
    case v1::TRANSACTION_MODE_PER_COMMAND:
      return engine::TransactionScope::kPerCommand;
    case v1::TRANSACTION_MODE_PER_REVISION:
      return engine::TransactionScope::kPerRevision;
    default:
      return set.transaction_scope;
  }
}

engine::ExecutorOptions OptionsFor(const DatabaseEntry& db, const Identity& identity,
                                   const google::protobuf::Duration* lock_wait,
                                   v1::TransactionMode mode) {
  engine::ExecutorOptions options = db.ExecutorOptionsFor(identity.who);
  if (lock_wait != nullptr) {
    options.lock_wait = FromProto(*lock_wait);
  }
  options.transaction_mode = ScopeFor(mode, db.set());
  return options;
}

void LogFailure(const std::shared_ptr<spdlog::logger>& log, absl::string_view method,
                const absl::Status& status, absl::string_view who) {
  if (status.ok()) {
    return;
  }
  const bool serious = status.code() == absl::StatusCode::kInternal ||
                       status.code() == absl::StatusCode::kUnknown ||
                       status.code() == absl::StatusCode::kDataLoss;
  log->log(serious ? spdlog::level::warn : spdlog::level::info,
           "rpc failed method={} code={} who={} error={}", method,
           absl::StatusCodeToString(status.code()), LogValue(who),
           LogValue(TruncateUtf8(status.message(), kMaxLoggedTextBytes)));
}

// How a unary call whose response the handler filled itself ends: every
// string of the response valid UTF-8 (MakeWireSafe), the status as
// ToGrpcStatus makes it. (RunUnary's handlers fill theirs with the ToProto
// conversions, which do the same.)
void FinishUnary(grpc::ServerUnaryReactor* reactor, google::protobuf::Message* response,
                 const absl::Status& status) {
  if (status.ok()) {
    MakeWireSafe(response);
  }
  reactor->Finish(ToGrpcStatus(status));
}

// ---------------------------------------------------------------- streams

// Streams an operation's events to one client: a mutex-guarded queue with one
// write in flight (gRPC's health WatchReactor is the model). Closing the
// stream only detaches it; the operation goes on.
class OperationStream final : public EventWriter {
 public:
  OperationStream() : state_(std::make_shared<State>(this)) {}

  void FinishNow(const absl::Status& status) { state_->FinishWith(ToGrpcStatus(status)); }

  void Attach(std::shared_ptr<Operation> op) {
    op_ = op;
    op->Subscribe(state_);
  }

  // EventWriter:
  void OnWriteDone(bool ok) override { state_->WriteDone(ok); }
  void OnCancel() override {
    state_->FinishWith(grpc::Status(grpc::StatusCode::CANCELLED, "the stream was cancelled"));
  }
  void OnDone() override {
    state_->Detach();
    if (op_ != nullptr) {
      op_->Unsubscribe(state_.get());
    }
    delete this;
  }

 private:
  class State final : public OperationObserver {
   public:
    explicit State(OperationStream* reactor) : reactor_(reactor) {}

    // OperationObserver:
    void OnEvent(const v1::OperationEvent& event) override {
      absl::MutexLock lock(&mu_);
      if (finished_ || reactor_ == nullptr) {
        return;
      }
      if (write_pending_) {
        if (IsDetailEvent(event)) {
          if (queued_details_ >= kMaxQueuedDetailEvents) {
            return;  // skipped: the next write says so
          }
          ++queued_details_;
        }
        queue_.push_back(event);
        return;
      }
      StartWriteLocked(event);
    }
    void OnDone(const absl::Status& status, const v1::OperationResult&) override {
      absl::MutexLock lock(&mu_);
      op_done_ = true;
      final_ = ToGrpcStatus(status);
      MaybeFinishLocked();
    }

    void WriteDone(bool ok) {
      absl::MutexLock lock(&mu_);
      write_pending_ = false;
      if (!ok) {
        FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the stream broke"));
        return;
      }
      if (!queue_.empty() && !finished_) {
        v1::OperationEvent next = std::move(queue_.front());
        queue_.pop_front();
        if (IsDetailEvent(next)) {
          --queued_details_;
        }
        StartWriteLocked(std::move(next));
        return;
      }
      MaybeFinishLocked();
    }
    void FinishWith(const grpc::Status& status) {
      absl::MutexLock lock(&mu_);
      FinishLocked(status);
    }
    void Detach() {
      absl::MutexLock lock(&mu_);
      reactor_ = nullptr;
    }

   private:
    // Writes `event`, saying how many events of the operation this stream
    // did not deliver before it (not kept for replay, or skipped above).
    void StartWriteLocked(v1::OperationEvent event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      current_ = std::move(event);
      current_.set_events_dropped_before(
          std::max<int64_t>(0, current_.sequence() - last_sequence_ - 1));
      last_sequence_ = current_.sequence();
      write_pending_ = true;
      reactor_->StartWrite(&current_);
    }
    void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (op_done_ && !write_pending_ && queue_.empty()) {
        FinishLocked(final_);
      }
    }
    void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (finished_ || reactor_ == nullptr) {
        return;
      }
      finished_ = true;
      queue_.clear();
      reactor_->Finish(status);
    }

    absl::Mutex mu_;
    OperationStream* reactor_ ABSL_GUARDED_BY(mu_);
    std::deque<v1::OperationEvent> queue_ ABSL_GUARDED_BY(mu_);
    size_t queued_details_ ABSL_GUARDED_BY(mu_) = 0;   // IsDetailEvent ones in queue_
    int64_t last_sequence_ ABSL_GUARDED_BY(mu_) = -1;  // of the last event written
    v1::OperationEvent current_ ABSL_GUARDED_BY(mu_);  // the write in flight
    bool write_pending_ ABSL_GUARDED_BY(mu_) = false;
    bool finished_ ABSL_GUARDED_BY(mu_) = false;
    bool op_done_ ABSL_GUARDED_BY(mu_) = false;
    grpc::Status final_ ABSL_GUARDED_BY(mu_);
  };

  std::shared_ptr<State> state_;
  std::shared_ptr<Operation> op_;
};

// Finishes a unary call with an operation's result once it is done.
class UnaryOperationWaiter final : public OperationObserver {
 public:
  UnaryOperationWaiter(grpc::ServerUnaryReactor* reactor, v1::OperationResult* response)
      : reactor_(reactor), response_(response) {}
  // OperationObserver:
  void OnEvent(const v1::OperationEvent&) override {}
  void OnDone(const absl::Status& status, const v1::OperationResult& result) override {
    if (status.ok()) {
      *response_ = result;
    }
    FinishUnary(reactor_, response_, status);
  }

 private:
  grpc::ServerUnaryReactor* reactor_;
  v1::OperationResult* response_;
};

// Finishes an EnsureHead call once the (possibly shared) operation is done.
class EnsureHeadWaiter final : public OperationObserver {
 public:
  EnsureHeadWaiter(grpc::ServerUnaryReactor* reactor, v1::EnsureHeadResponse* response,
                   std::vector<std::string> rows_before)
      : reactor_(reactor), response_(response), rows_before_(std::move(rows_before)) {}
  // OperationObserver:
  void OnEvent(const v1::OperationEvent&) override {}
  void OnDone(const absl::Status& status, const v1::OperationResult& result) override {
    if (status.ok()) {
      response_->set_applied(result.revisions_run() > 0);
      *response_->mutable_heads() = result.heads();
      response_->set_revisions_applied(result.revisions_run());
      response_->set_operation_id(result.operation_id());
      for (const std::string& row : rows_before_) {
        response_->add_rows_before(row);
      }
    }
    FinishUnary(reactor_, response_, status);
  }

 private:
  grpc::ServerUnaryReactor* reactor_;
  v1::EnsureHeadResponse* response_;
  std::vector<std::string> rows_before_;
};

// ------------------------------------------------------------ call helpers

// Authorises, then runs `work` on the rpc workers and finishes the call with
// its status.
grpc::ServerUnaryReactor* RunUnary(const ServiceDeps* deps, grpc::CallbackServerContext* context,
                                   Role role, const char* method,
                                   std::function<absl::Status(const Identity&)> work,
                                   ThreadPool* workers = nullptr) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<Identity> identity = deps->state->auth()->Authorize(*context, role, method);
  if (!identity.ok()) {
    LogFailure(deps->log, method, identity.status(), context->peer());
    reactor->Finish(ToGrpcStatus(identity.status()));
    return reactor;
  }
  const bool queued = (workers != nullptr ? workers : deps->rpc_workers)
                          ->Submit([deps, context, reactor, method, identity = *std::move(identity),
                                    work = std::move(work)] {
                            absl::Status status =
                                context->IsCancelled()
                                    ? absl::CancelledError("the client cancelled the call")
                                    : work(identity);
                            LogFailure(deps->log, method, status, identity.who);
                            reactor->Finish(ToGrpcStatus(status));
                          });
  if (!queued) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "schemad is shutting down"));
  }
  return reactor;
}

// Authorises, then `start` (non-blocking: it looks things up and starts an
// operation) gives the operation whose events the call streams.
EventWriter* RunStream(
    const ServiceDeps* deps, grpc::CallbackServerContext* context, Role role, const char* method,
    const std::function<absl::StatusOr<std::shared_ptr<Operation>>(const Identity&)>& start) {
  auto* stream = new OperationStream();
  absl::StatusOr<Identity> identity = deps->state->auth()->Authorize(*context, role, method);
  if (!identity.ok()) {
    LogFailure(deps->log, method, identity.status(), context->peer());
    stream->FinishNow(identity.status());
    return stream;
  }
  absl::StatusOr<std::shared_ptr<Operation>> op = start(*identity);
  if (!op.ok()) {
    LogFailure(deps->log, method, op.status(), identity->who);
    stream->FinishNow(op.status());
    return stream;
  }
  stream->Attach(*std::move(op));
  return stream;
}

void DriftToProto(const schema_build::DriftReport& report, absl::Time checked,
                  v1::DriftResponse* out) {
  for (const std::string& row : report.rows) out->add_rows(row);
  out->set_drift(report.drifted());
  for (const schema::SchemaChange& change : report.changes) {
    v1::SchemaDifference* difference = out->add_differences();
    switch (change.action) {
      case schema::ChangeAction::kCreate:
        difference->set_kind(v1::SchemaDifference::KIND_EXTRA);
        break;
      case schema::ChangeAction::kDrop:
        difference->set_kind(v1::SchemaDifference::KIND_MISSING);
        break;
      case schema::ChangeAction::kAlter:
        difference->set_kind(v1::SchemaDifference::KIND_CHANGED);
        break;
    }
    difference->set_object_kind(change.object_kind);
    difference->set_object(change.object);
    difference->set_description(schema_build::DriftDetail(change));
  }
  out->set_repair_sql(report.repair_sql);
  ToProto(checked, out->mutable_checked());
}

// The database's status; with the last drift check of `drift` when it
// checked these very version rows.
absl::Status FillStatus(const DatabaseEntry& db, absl::Time deadline, const DriftChecker* drift,
                        v1::DatabaseStatus* out) {
  out->set_database(db.name());
  out->set_migration_set(db.set().name);
  out->set_display_name(db.database().DisplayName());
  engine::Executor executor(db.set().graph, db.database(), db.ExecutorOptionsFor(""));
  absl::StatusOr<engine::DatabaseStatus> status = WithSession<engine::DatabaseStatus>(
      db, deadline, [&](store::Session& session) { return executor.Status(session); });
  if (!status.ok()) {
    return DbError(db, status.status());
  }
  ToProto(*status, out);
  if (std::optional<DriftChecker::LastCheck> last = drift->Last(db.name());
      last.has_value() && last->rows == status->rows) {
    v1::DriftSummary* summary = out->mutable_drift();
    summary->set_drift(last->differences > 0);
    summary->set_differences(last->differences);
    ToProto(last->checked, summary->mutable_checked());
  }
  return absl::OkStatus();
}

// The nearest revision that joins all `rows` (Merge's target).
absl::StatusOr<int> MergeTarget(const engine::RevisionGraph& graph, const DatabaseEntry& db,
                                const std::vector<std::string>& row_ids,
                                const std::string& requested) {
  std::vector<int> rows;
  for (const std::string& row : row_ids) {
    const int index = graph.IndexOf(row);
    if (index < 0) {
      return absl::NotFoundError(
          absl::StrCat("version row ", row, " is not a revision of migration set ", db.set().name));
    }
    rows.push_back(index);
  }
  const auto joins = [&](int candidate) {
    const std::vector<bool> ancestors = graph.AncestorMask({candidate}, true);
    return std::all_of(rows.begin(), rows.end(), [&](int row) { return ancestors[row]; });
  };
  const std::string heads = absl::StrJoin(row_ids, ", ");
  if (!requested.empty()) {
    ASSIGN_OR_RETURN(int target, graph.ResolveOne(requested));
    if (target < 0 || !joins(target)) {
      return absl::FailedPreconditionError(
          absl::StrCat("revision ", requested, " does not join the database's heads ", heads));
    }
    return target;
  }
  std::vector<int> candidates;
  for (int i = 0; i < graph.size(); ++i) {
    if (graph.IsMergePoint(i) && joins(i)) {
      candidates.push_back(i);
    }
  }
  std::vector<int> nearest;
  for (int c : candidates) {
    const std::vector<bool> ancestors = graph.AncestorMask({c}, true);
    const bool has_nearer = std::any_of(candidates.begin(), candidates.end(),
                                        [&](int d) { return d != c && ancestors[d]; });
    if (!has_nearer) {
      nearest.push_back(c);
    }
  }
  if (nearest.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "database ", db.name(), " is at heads ", heads, " and no revision of migration set ",
        db.set().name,
        " joins them; create the merge revision with `schemactl merge -m \"merge "
        "heads\" ",
        absl::StrJoin(row_ids, " "), " --dir ", db.set().directory,
        "`, roll it out to schemad's migration directory (schemad loads it at start) and call "
        "Merge again"));
  }
  if (nearest.size() > 1) {
    return absl::FailedPreconditionError(absl::StrCat("several merge revisions join heads ", heads,
                                                      ": ", absl::StrJoin(graph.Ids(nearest), ", "),
                                                      "; call Merge naming one"));
  }
  return nearest.front();
}

}  // namespace

SchemadService::SchemadService(ServiceDeps deps) : deps_(std::move(deps)) {}

// ----------------------------------------------------------------- EnsureHead

grpc::ServerUnaryReactor* SchemadService::EnsureHead(grpc::CallbackServerContext* context,
                                                     const v1::EnsureHeadRequest* request,
                                                     v1::EnsureHeadResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const char* method = "EnsureHead";
  const ServiceDeps* deps = &deps_;
  absl::StatusOr<Identity> identity = deps->state->auth()->Authorize(
      *context, request->no_apply() ? Role::kReader : Role::kMigrator, method);
  if (!identity.ok()) {
    LogFailure(deps->log, method, identity.status(), context->peer());
    reactor->Finish(ToGrpcStatus(identity.status()));
    return reactor;
  }
  const absl::Status valid = CheckRequest(*request);
  absl::StatusOr<std::shared_ptr<DatabaseEntry>> db =
      valid.ok() ? deps->state->GetDatabase(request->database())
                 : absl::StatusOr<std::shared_ptr<DatabaseEntry>>(valid);
  if (!db.ok()) {
    LogFailure(deps->log, method, db.status(), identity->who);
    reactor->Finish(ToGrpcStatus(db.status()));
    return reactor;
  }
  const auto finish = [deps, reactor, response, method](const absl::Status& status,
                                                        const std::string& who) {
    LogFailure(deps->log, method, status, who);
    FinishUnary(reactor, response, status);
  };
  const bool queued = deps->rpc_workers->Submit(
      [deps, context, request, response, reactor, finish, db = *db, identity = *identity] {
        const absl::Time deadline = DeadlineOf(*context);
        engine::Executor executor(db->set().graph, db->database(),
                                  db->ExecutorOptionsFor(identity.who));
        // The fast path: one read on a pooled connection.
        absl::StatusOr<engine::DatabaseStatus> status = WithSession<engine::DatabaseStatus>(
            *db, deadline, [&](store::Session& session) { return executor.Status(session); });
        if (!status.ok()) {
          return finish(DbError(*db, status.status()), identity.who);
        }
        const auto at_head = [&](const std::vector<std::string>& rows) {
          response->set_applied(false);
          for (const std::string& row : rows) {
            response->add_heads(row);
            response->add_rows_before(row);
          }
          finish(absl::OkStatus(), identity.who);
        };
        if (status->at_head) {
          return at_head(status->rows);
        }
        if (request->no_apply() || !db->config().allow_ensure_head_apply() ||
            status->needs_attention || status->pending < 0) {
          // Not going to apply: the engine words the refusal (or finds the
          // database at head after all).
          absl::StatusOr<engine::OperationResult> result =
              WithSession<engine::OperationResult>(*db, deadline, [&](store::Session& session) {
                return executor.EnsureHead(session, /*apply=*/false);
              });
          if (!result.ok()) {
            return finish(DbError(*db, result.status()), identity.who);
          }
          return at_head(result->rows_after);
        }
        engine::ExecutorOptions options =
            OptionsFor(*db, identity, request->has_lock_wait() ? &request->lock_wait() : nullptr,
                       v1::TRANSACTION_MODE_UNSPECIFIED);
        absl::StatusOr<std::shared_ptr<Operation>> op = deps->operations->StartOrJoin(
            SpecFor(v1::OPERATION_KIND_ENSURE_HEAD, *db, "heads", identity),
            MakeBody(db, std::move(options),
                     [](const engine::Executor& ex, store::Session& session,
                        const engine::CallControl& control) {
                       return ex.EnsureHead(session, /*apply=*/true, control);
                     }));
        if (!op.ok()) {
          return finish(op.status(), identity.who);
        }
        (*op)->Subscribe(std::make_shared<EnsureHeadWaiter>(reactor, response, status->rows));
      });
  if (!queued) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "schemad is shutting down"));
  }
  return reactor;
}

// ---------------------------------------------------------------- streams

EventWriter* SchemadService::Upgrade(grpc::CallbackServerContext* context,
                                     const v1::UpgradeRequest* request) {
  const ServiceDeps* deps = &deps_;
  return RunStream(
      deps, context, Role::kMigrator, "Upgrade",
      [deps, request](const Identity& identity) -> absl::StatusOr<std::shared_ptr<Operation>> {
        RETURN_IF_ERROR(CheckRequest(*request));
        ASSIGN_OR_RETURN(std::shared_ptr<DatabaseEntry> db,
                         deps->state->GetDatabase(request->database()));
        const std::string target = request->target().empty() ? "heads" : request->target();
        engine::ExecutorOptions options =
            OptionsFor(*db, identity, request->has_lock_wait() ? &request->lock_wait() : nullptr,
                       request->transaction_mode());
        options.allow_changed = request->allow_changed();
        return deps->operations->Start(
            SpecFor(v1::OPERATION_KIND_UPGRADE, *db, target, identity),
            MakeBody(db, std::move(options),
                     [target](const engine::Executor& ex, store::Session& session,
                              const engine::CallControl& control) {
                       return ex.Upgrade(session, target, control);
                     }));
      });
}

EventWriter* SchemadService::Downgrade(grpc::CallbackServerContext* context,
                                       const v1::DowngradeRequest* request) {
  const ServiceDeps* deps = &deps_;
  return RunStream(
      deps, context, Role::kAdmin, "Downgrade",
      [deps, request](const Identity& identity) -> absl::StatusOr<std::shared_ptr<Operation>> {
        RETURN_IF_ERROR(CheckRequest(*request));
        ASSIGN_OR_RETURN(std::shared_ptr<DatabaseEntry> db,
                         deps->state->GetDatabase(request->database()));
        if (request->target().empty()) {
          return absl::InvalidArgumentError(
              "Downgrade needs a target (e.g. -1, base or a revision id)");
        }
        const std::string target = request->target();
        engine::ExecutorOptions options =
            OptionsFor(*db, identity, request->has_lock_wait() ? &request->lock_wait() : nullptr,
                       request->transaction_mode());
        return deps->operations->Start(
            SpecFor(v1::OPERATION_KIND_DOWNGRADE, *db, target, identity),
            MakeBody(db, std::move(options),
                     [target](const engine::Executor& ex, store::Session& session,
                              const engine::CallControl& control) {
                       return ex.Downgrade(session, target, control);
                     }));
      });
}

EventWriter* SchemadService::Merge(grpc::CallbackServerContext* context,
                                   const v1::MergeRequest* request) {
  const ServiceDeps* deps = &deps_;
  return RunStream(
      deps, context, Role::kAdmin, "Merge",
      [deps, request](const Identity& identity) -> absl::StatusOr<std::shared_ptr<Operation>> {
        RETURN_IF_ERROR(CheckRequest(*request));
        ASSIGN_OR_RETURN(std::shared_ptr<DatabaseEntry> db,
                         deps->state->GetDatabase(request->database()));
        const std::string requested = request->revision();
        engine::ExecutorOptions options =
            OptionsFor(*db, identity, request->has_lock_wait() ? &request->lock_wait() : nullptr,
                       v1::TRANSACTION_MODE_UNSPECIFIED);
        return deps->operations->Start(
            SpecFor(v1::OPERATION_KIND_MERGE, *db, requested.empty() ? "merge" : requested,
                    identity),
            MakeBody(
                db, std::move(options),
                [db, requested](
                    const engine::Executor& ex, store::Session& session,
                    const engine::CallControl& control) -> absl::StatusOr<engine::OperationResult> {
                  ASSIGN_OR_RETURN(store::DatabaseState state, session.ReadState());
                  if (state.rows.size() < 2) {
                    return absl::FailedPreconditionError(absl::StrCat(
                        "database ", db->name(), " has ", state.rows.size(), " head(s) applied (",
                        state.rows.empty() ? "base" : absl::StrJoin(state.rows, ", "),
                        "); Merge joins several heads: use Upgrade"));
                  }
                  ASSIGN_OR_RETURN(int target, MergeTarget(ex.graph(), *db, state.rows, requested));
                  return ex.Upgrade(session, ex.graph().id(target), control);
                }));
      });
}

EventWriter* SchemadService::WatchOperation(grpc::CallbackServerContext* context,
                                            const v1::WatchOperationRequest* request) {
  const ServiceDeps* deps = &deps_;
  return RunStream(
      deps, context, Role::kReader, "WatchOperation",
      [deps, request](const Identity&) -> absl::StatusOr<std::shared_ptr<Operation>> {
        RETURN_IF_ERROR(CheckRequest(*request));
        absl::StatusOr<std::shared_ptr<Operation>> op =
            deps->operations->Find(request->operation_id());
        if (op.status().code() == absl::StatusCode::kNotFound && deps->control != nullptr) {
          // Another replica's, or one this replica no longer keeps.
          return deps->control->Follow(request->operation_id());
        }
        return op;
      });
}

// ------------------------------------------------------ unary operations

grpc::ServerUnaryReactor* SchemadService::Stamp(grpc::CallbackServerContext* context,
                                                const v1::StampRequest* request,
                                                v1::OperationResult* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status status = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(Identity identity,
                     deps_.state->auth()->Authorize(*context, Role::kAdmin, "Stamp"));
    RETURN_IF_ERROR(CheckRequest(*request));
    ASSIGN_OR_RETURN(std::shared_ptr<DatabaseEntry> db,
                     deps_.state->GetDatabase(request->database()));
    if (request->revisions().empty()) {
      return absl::InvalidArgumentError("Stamp needs at least one revision (or base, heads)");
    }
    std::vector<std::string> targets(request->revisions().begin(), request->revisions().end());
    const bool purge = request->purge();
    ASSIGN_OR_RETURN(
        std::shared_ptr<Operation> op,
        deps_.operations->Start(
            SpecFor(v1::OPERATION_KIND_STAMP, *db, absl::StrJoin(targets, ","), identity),
            MakeBody(db, OptionsFor(*db, identity, nullptr, v1::TRANSACTION_MODE_UNSPECIFIED),
                     [targets, purge](const engine::Executor& ex, store::Session& session,
                                      const engine::CallControl& control) {
                       return ex.Stamp(session, targets, purge, control);
                     })));
    op->Subscribe(std::make_shared<UnaryOperationWaiter>(reactor, response));
    return absl::OkStatus();
  }();
  if (!status.ok()) {
    LogFailure(deps_.log, "Stamp", status, context->peer());
    reactor->Finish(ToGrpcStatus(status));
  }
  return reactor;
}

grpc::ServerUnaryReactor* SchemadService::Resolve(grpc::CallbackServerContext* context,
                                                  const v1::ResolveRequest* request,
                                                  v1::OperationResult* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status status = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(Identity identity,
                     deps_.state->auth()->Authorize(*context, Role::kAdmin, "Resolve"));
    RETURN_IF_ERROR(CheckRequest(*request));
    ASSIGN_OR_RETURN(std::shared_ptr<DatabaseEntry> db,
                     deps_.state->GetDatabase(request->database()));
    engine::Executor::Resolution resolution;
    switch (request->resolution()) {
      case v1::ResolveRequest::RESOLUTION_APPLIED:
        resolution = engine::Executor::Resolution::kApplied;
        break;
      case v1::ResolveRequest::RESOLUTION_ROLLED_BACK:
        resolution = engine::Executor::Resolution::kRolledBack;
        break;
      default:
        return absl::InvalidArgumentError("Resolve needs a resolution: APPLIED or ROLLED_BACK");
    }
    ASSIGN_OR_RETURN(
        std::shared_ptr<Operation> op,
        deps_.operations->Start(
            SpecFor(
                v1::OPERATION_KIND_RESOLVE, *db,
                resolution == engine::Executor::Resolution::kApplied ? "applied" : "rolled-back",
                identity),
            MakeBody(db, OptionsFor(*db, identity, nullptr, v1::TRANSACTION_MODE_UNSPECIFIED),
                     [resolution](const engine::Executor& ex, store::Session& session,
                                  const engine::CallControl& control) {
                       return ex.Resolve(session, resolution, control);
                     })));
    op->Subscribe(std::make_shared<UnaryOperationWaiter>(reactor, response));
    return absl::OkStatus();
  }();
  if (!status.ok()) {
    LogFailure(deps_.log, "Resolve", status, context->peer());
    reactor->Finish(ToGrpcStatus(status));
  }
  return reactor;
}

// ------------------------------------------------------------------ reads

grpc::ServerUnaryReactor* SchemadService::Plan(grpc::CallbackServerContext* context,
                                               const v1::PlanRequest* request,
                                               v1::PlanResponse* response) {
  const ServiceDeps* deps = &deps_;
  return RunUnary(deps, context, Role::kReader, "Plan", [=](const Identity&) -> absl::Status {
    RETURN_IF_ERROR(CheckRequest(*request));
    engine::Plan::Kind kind = engine::Plan::Kind::kUpgrade;
    std::vector<std::string> targets(request->targets().begin(), request->targets().end());
    switch (request->kind()) {
      case v1::PlanRequest::KIND_DOWNGRADE:
        kind = engine::Plan::Kind::kDowngrade;
        if (targets.empty()) {
          return absl::InvalidArgumentError("a downgrade plan needs a target");
        }
        break;
      case v1::PlanRequest::KIND_STAMP:
        kind = engine::Plan::Kind::kStamp;
        if (targets.empty()) {
          return absl::InvalidArgumentError("a stamp plan needs at least one revision");
        }
        break;
      default:
        if (targets.empty()) {
          targets.push_back("heads");
        }
        break;
    }
    if (kind != engine::Plan::Kind::kStamp && targets.size() != 1) {
      return absl::InvalidArgumentError("upgrade and downgrade plans take exactly one target");
    }
    // One snapshot for the whole call: it keeps `graph` alive.
    const std::shared_ptr<const Registry> registry = deps->state->registry();
    const MigrationSetEntry* set = nullptr;
    const engine::RevisionGraph* graph = nullptr;
    std::string version_table = "alembic_version";
    engine::Plan plan;
    if (!request->database().empty()) {
      ASSIGN_OR_RETURN(DatabaseEntry * db, registry->GetDatabase(request->database()));
      set = &db->set();
      graph = &db->set().graph;
      version_table = db->config().version_table();
      engine::Executor executor(*graph, db->database(), db->ExecutorOptionsFor(""));
      absl::StatusOr<engine::Plan> planned =
          WithSession<engine::Plan>(*db, DeadlineOf(*context), [&](store::Session& session) {
            return executor.PlanFor(session, kind, targets, request->purge());
          });
      if (!planned.ok()) {
        return DbError(*db, planned.status());
      }
      plan = *std::move(planned);
    } else {
      if (request->migration_set().empty()) {
        return absl::InvalidArgumentError("Plan needs a database or a migration set");
      }
      ASSIGN_OR_RETURN(set, registry->GetMigrationSet(request->migration_set()));
      graph = &set->graph;
      std::vector<std::string> rows(request->from_rows().begin(), request->from_rows().end());
      std::sort(rows.begin(), rows.end());
      switch (kind) {
        case engine::Plan::Kind::kUpgrade: {
          ASSIGN_OR_RETURN(plan, engine::PlanUpgrade(*graph, rows, targets.front()));
          break;
        }
        case engine::Plan::Kind::kDowngrade: {
          ASSIGN_OR_RETURN(plan, engine::PlanDowngrade(*graph, rows, targets.front()));
          break;
        }
        case engine::Plan::Kind::kStamp: {
          ASSIGN_OR_RETURN(plan, engine::PlanStamp(*graph, rows, targets, request->purge()));
          break;
        }
      }
    }
    ToProto(plan, *graph, response);
    AddPlanLintFindings(plan, *graph, set->lint_findings, response->mutable_lint_findings());
    if (request->sql()) {
      engine::OfflineSqlOptions options;
      options.version_table = version_table;
      options.transaction_per_plan =
          ScopeFor(request->transaction_mode(), *set) == engine::TransactionScope::kPerCommand;
      response->set_sql(engine::RenderOfflineSql(*graph, plan, options));
      MakeWireSafe(response);
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* SchemadService::GetStatus(grpc::CallbackServerContext* context,
                                                    const v1::GetStatusRequest* request,
                                                    v1::DatabaseStatus* response) {
  const ServiceDeps* deps = &deps_;
  return RunUnary(deps, context, Role::kReader, "GetStatus", [=](const Identity&) -> absl::Status {
    RETURN_IF_ERROR(CheckRequest(*request));
    ASSIGN_OR_RETURN(std::shared_ptr<DatabaseEntry> db,
                     deps->state->GetDatabase(request->database()));
    return FillStatus(*db, DeadlineOf(*context), deps->drift, response);
  });
}

grpc::ServerUnaryReactor* SchemadService::History(grpc::CallbackServerContext* context,
                                                  const v1::HistoryRequest* request,
                                                  v1::HistoryResponse* response) {
  const ServiceDeps* deps = &deps_;
  return RunUnary(deps, context, Role::kReader, "History", [=](const Identity&) -> absl::Status {
    RETURN_IF_ERROR(CheckRequest(*request));
    ASSIGN_OR_RETURN(std::shared_ptr<DatabaseEntry> db,
                     deps->state->GetDatabase(request->database()));
    const int limit = request->limit() > 0 ? request->limit() : kDefaultHistoryLimit;
    absl::StatusOr<std::vector<store::HistoryRecord>> records =
        WithSession<std::vector<store::HistoryRecord>>(
            *db, DeadlineOf(*context),
            [&](store::Session& session) { return session.ReadHistory(limit + 1); });
    if (!records.ok()) {
      return DbError(*db, records.status());
    }
    for (const store::HistoryRecord& record : *records) {
      if (response->entries_size() == limit) {
        response->set_more(true);
        break;
      }
      ToProto(record, response->add_entries());
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* SchemadService::DescribeMigrationSet(
    grpc::CallbackServerContext* context, const v1::DescribeMigrationSetRequest* request,
    v1::MigrationSet* response) {
  // In memory only: answered on the reactor thread.
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status status = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(Identity identity, deps_.state->auth()->Authorize(*context, Role::kReader,
                                                                       "DescribeMigrationSet"));
    RETURN_IF_ERROR(CheckRequest(*request));
    const MigrationSetEntry* set = nullptr;
    const std::shared_ptr<const Registry> registry = deps_.state->registry();
    if (!request->migration_set().empty()) {
      ASSIGN_OR_RETURN(set, registry->GetMigrationSet(request->migration_set()));
    } else if (!request->database().empty()) {
      ASSIGN_OR_RETURN(std::shared_ptr<DatabaseEntry> db,
                       deps_.state->GetDatabase(request->database()));
      set = &db->set();
    } else {
      return absl::InvalidArgumentError("DescribeMigrationSet needs a migration set or a database");
    }
    response->set_name(set->name);
    response->set_directory(set->directory);
    ToProto(set->graph, response);
    for (const std::string& name : set->databases) {
      response->add_databases(name);
    }
    for (const engine::LintFinding& finding : set->lint_findings) {
      ToProto(finding, response->add_lint_findings());
    }
    MakeWireSafe(response);
    return absl::OkStatus();
  }();
  LogFailure(deps_.log, "DescribeMigrationSet", status, context->peer());
  FinishUnary(reactor, response, status);
  return reactor;
}

grpc::ServerUnaryReactor* SchemadService::ListDatabases(grpc::CallbackServerContext* context,
                                                        const v1::ListDatabasesRequest* request,
                                                        v1::ListDatabasesResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<Identity> identity =
      deps_.state->auth()->Authorize(*context, Role::kReader, "ListDatabases");
  if (absl::Status valid = CheckRequest(*request); identity.ok() && !valid.ok()) {
    identity = valid;
  }
  if (!identity.ok()) {
    LogFailure(deps_.log, "ListDatabases", identity.status(), context->peer());
    reactor->Finish(ToGrpcStatus(identity.status()));
    return reactor;
  }
  std::vector<std::pair<const DatabaseEntry*, v1::DatabaseInfo*>> selected;
  const std::shared_ptr<const Registry> registry = deps_.state->registry();
  for (const auto& db : registry->databases()) {
    const auto& labels = db->config().labels();
    const bool match = std::all_of(request->label_selector().begin(),
                                   request->label_selector().end(), [&labels](const auto& kv) {
                                     auto it = labels.find(kv.first);
                                     return it != labels.end() && it->second == kv.second;
                                   });
    if (!match) {
      continue;
    }
    v1::DatabaseInfo* info = response->add_databases();
    info->set_name(db->name());
    info->set_migration_set(db->set().name);
    *info->mutable_labels() = db->config().labels();
    info->set_allow_ensure_head_apply(db->config().allow_ensure_head_apply());
    info->set_display_name(db->database().DisplayName());
    selected.emplace_back(db.get(), info);
  }
  if (!request->include_status() || selected.empty()) {
    FinishUnary(reactor, response, absl::OkStatus());
    return reactor;
  }
  // One status read per database, in parallel on the rpc workers; the last
  // one to finish finishes the call.
  auto remaining = std::make_shared<std::atomic<int>>(static_cast<int>(selected.size()) + 1);
  const auto done = [reactor, response, remaining] {
    if (remaining->fetch_sub(1) == 1) {
      FinishUnary(reactor, response, absl::OkStatus());
    }
  };
  const absl::Time deadline = DeadlineOf(*context);
  for (const auto& [db, info] : selected) {
    v1::DatabaseStatus* out = info->mutable_status();
    const auto read = [registry, db = db, out, deadline, done, drift = deps_.drift] {
      absl::Status status = FillStatus(*db, deadline, drift, out);
      if (!status.ok()) {
        out->set_state(v1::DATABASE_STATE_UNREACHABLE);
        ToProtoError(status, out->mutable_error());
      }
      done();
    };
    if (!deps_.rpc_workers->Submit(read)) {
      out->set_state(v1::DATABASE_STATE_UNREACHABLE);
      ToProtoError(absl::UnavailableError("schemad is shutting down"), out->mutable_error());
      done();
    }
  }
  done();
  return reactor;
}

grpc::ServerUnaryReactor* SchemadService::Validate(grpc::CallbackServerContext* context,
                                                   const v1::ValidateRequest* request,
                                                   v1::ValidateResponse* response) {
  const ServiceDeps* deps = &deps_;
  return RunUnary(deps, context, Role::kReader, "Validate", [=](const Identity&) -> absl::Status {
    RETURN_IF_ERROR(CheckRequest(*request));
    ASSIGN_OR_RETURN(std::shared_ptr<DatabaseEntry> db,
                     deps->state->GetDatabase(request->database()));
    engine::Executor executor(db->set().graph, db->database(), db->ExecutorOptionsFor(""));
    absl::StatusOr<engine::ValidationReport> report = WithSession<engine::ValidationReport>(
        *db, DeadlineOf(*context),
        [&](store::Session& session) { return executor.Validate(session); });
    if (!report.ok()) {
      return DbError(*db, report.status());
    }
    ToProto(*report, response);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* SchemadService::Repair(grpc::CallbackServerContext* context,
                                                 const v1::RepairRequest* request,
                                                 v1::RepairResponse* response) {
  const ServiceDeps* deps = &deps_;
  return RunUnary(deps, context, Role::kAdmin, "Repair",
                  [=](const Identity& identity) -> absl::Status {
                    RETURN_IF_ERROR(CheckRequest(*request));
                    ASSIGN_OR_RETURN(std::shared_ptr<DatabaseEntry> db,
                                     deps->state->GetDatabase(request->database()));
                    engine::Executor executor(db->set().graph, db->database(),
                                              db->ExecutorOptionsFor(identity.who));
                    absl::StatusOr<engine::RepairResult> result = WithSession<engine::RepairResult>(
                        *db, DeadlineOf(*context),
                        [&](store::Session& session) { return executor.Repair(session); });
                    if (!result.ok()) {
                      return DbError(*db, result.status());
                    }
                    ToProto(*result, response);
                    return absl::OkStatus();
                  });
}

grpc::ServerUnaryReactor* SchemadService::Drift(grpc::CallbackServerContext* context,
                                                const v1::DriftRequest* request,
                                                v1::DriftResponse* response) {
  const ServiceDeps* deps = &deps_;
  return RunUnary(deps, context, Role::kReader, "Drift", [=](const Identity&) -> absl::Status {
    RETURN_IF_ERROR(CheckRequest(*request));
    ASSIGN_OR_RETURN(std::shared_ptr<DatabaseEntry> db,
                     deps->state->GetDatabase(request->database()));
    // The site is read on its own session (its errors are the database's);
    // the expected schema is built on the dev server (its errors are not).
    const absl::Time deadline = DeadlineOf(*context);
    absl::StatusOr<schema_build::LiveSchema> live = WithSession<schema_build::LiveSchema>(
        *db, deadline,
        [](store::Session& session) { return schema_build::ReadLiveSchema(session); });
    if (!live.ok()) {
      return DbError(*db, live.status());
    }
    ASSIGN_OR_RETURN(schema_build::DriftReport report,
                     deps->drift->Check(db->name(), db->set().graph, *std::move(live), deadline));
    response->set_database(db->name());
    DriftToProto(report, absl::Now(), response);
    MakeWireSafe(response);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* SchemadService::ListOperations(grpc::CallbackServerContext* context,
                                                         const v1::ListOperationsRequest* request,
                                                         v1::ListOperationsResponse* response) {
  const ServiceDeps* deps = &deps_;
  const auto from_memory = [deps, request, response]() -> absl::Status {
    ASSIGN_OR_RETURN(
        OperationPage page,
        deps->operations->ListPage(request->database(), request->running_only(),
                                   request->limit() > 0 ? request->limit() : kDefaultOperationsPage,
                                   request->page_token()));
    for (const auto& op : page.operations) {
      *response->add_operations() = op->Info();
      if (deps->control != nullptr) {
        response->mutable_operations()->rbegin()->set_replica(deps->control->replica());
      }
    }
    response->set_next_page_token(page.next_page_token);
    return absl::OkStatus();
  };
  if (deps->control == nullptr) {
    // In memory only: answered on the reactor thread.
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    absl::Status status = [&]() -> absl::Status {
      ASSIGN_OR_RETURN(Identity identity,
                       deps_.state->auth()->Authorize(*context, Role::kReader, "ListOperations"));
      RETURN_IF_ERROR(CheckRequest(*request));
      response->set_mode(v1::OPERATIONS_MODE_MEMORY);
      return from_memory();
    }();
    LogFailure(deps_.log, "ListOperations", status, context->peer());
    FinishUnary(reactor, response, status);
    return reactor;
  }
  // The control database is read on the rpc workers.
  return RunUnary(deps, context, Role::kReader, "ListOperations",
                  [deps, request, response, from_memory](const Identity&) -> absl::Status {
                    RETURN_IF_ERROR(CheckRequest(*request));
                    response->set_replica(deps->control->replica());
                    std::string next_page_token;
                    absl::StatusOr<std::vector<v1::OperationInfo>> page = deps->control->ListPage(
                        request->database(), request->running_only(),
                        request->limit() > 0 ? request->limit() : kDefaultOperationsPage,
                        request->page_token(), &next_page_token);
                    if (page.status().code() == absl::StatusCode::kUnavailable &&
                        !absl::StartsWith(request->page_token(), "c")) {
                      // Say so, and answer with what this replica knows.
                      deps->log->warn(
                          "ListOperations from memory: the control database did not answer "
                          "error={}",
                          LogValue(TruncateUtf8(page.status().message(), kMaxLoggedTextBytes)));
                      response->set_mode(v1::OPERATIONS_MODE_CONTROL_DATABASE_UNREACHABLE);
                      return from_memory();
                    }
                    RETURN_IF_ERROR(page.status());
                    response->set_mode(v1::OPERATIONS_MODE_CONTROL_DATABASE);
                    for (v1::OperationInfo& info : *page)
                      *response->add_operations() = std::move(info);
                    response->set_next_page_token(next_page_token);
                    MakeWireSafe(response);
                    return absl::OkStatus();
                  });
}

grpc::ServerUnaryReactor* SchemadService::CancelOperation(grpc::CallbackServerContext* context,
                                                          const v1::CancelOperationRequest* request,
                                                          v1::OperationInfo* response) {
  const ServiceDeps* deps = &deps_;
  // On the workers: cancelling the running statement talks to PostgreSQL.
  return RunUnary(
      deps, context, Role::kAdmin, "CancelOperation",
      [=](const Identity& identity) -> absl::Status {
        RETURN_IF_ERROR(CheckRequest(*request));
        absl::StatusOr<std::shared_ptr<Operation>> op = deps->operations->Cancel(
            request->operation_id(), absl::StrCat("CancelOperation by ", identity.who));
        if (op.status().code() == absl::StatusCode::kNotFound && deps->control != nullptr) {
          // Another replica's: recorded, and that replica cancels it.
          ASSIGN_OR_RETURN(*response, deps->control->Cancel(request->operation_id()));
          return absl::OkStatus();
        }
        RETURN_IF_ERROR(op.status());
        *response = (*op)->Info();
        if (deps->control != nullptr) response->set_replica(deps->control->replica());
        return absl::OkStatus();
      });
}

}  // namespace schemad::server

// ------------------------------------------------------------------- fleet

namespace schemad::server {
namespace {

v1::FleetSiteResult::Outcome OutcomeToProto(engine::SiteResult::Outcome outcome) {
  switch (outcome) {
    case engine::SiteResult::Outcome::kSucceeded:
      return v1::FleetSiteResult::OUTCOME_SUCCEEDED;
    case engine::SiteResult::Outcome::kFailed:
      return v1::FleetSiteResult::OUTCOME_FAILED;
    case engine::SiteResult::Outcome::kCancelled:
      return v1::FleetSiteResult::OUTCOME_CANCELLED;
    case engine::SiteResult::Outcome::kSkipped:
      break;
  }
  return v1::FleetSiteResult::OUTCOME_SKIPPED;
}

void FleetResultToProto(const engine::SiteResult& r, v1::FleetSiteResult* out) {
  out->set_site(r.site);
  out->set_outcome(OutcomeToProto(r.outcome));
  for (const std::string& row : r.rows_before) {
    out->add_rows_before(row);
  }
  for (const std::string& row : r.rows_after) {
    out->add_rows_after(row);
  }
  out->set_rows_after_read(r.rows_after_read);
  out->set_revisions_run(r.revisions_run);
  server::ToProto(r.duration, out->mutable_duration());
  if (!r.status.ok()) {
    ToProtoError(r.status, out->mutable_error());
  }
  out->set_operation_id(r.operation_id);
}

v1::FleetEvent::Kind KindToProto(engine::FleetEvent::Kind kind) {
  switch (kind) {
    case engine::FleetEvent::Kind::kStageStarted:
      return v1::FleetEvent::KIND_STAGE_STARTED;
    case engine::FleetEvent::Kind::kSiteQueued:
      return v1::FleetEvent::KIND_SITE_QUEUED;
    case engine::FleetEvent::Kind::kSiteStarted:
      return v1::FleetEvent::KIND_SITE_STARTED;
    case engine::FleetEvent::Kind::kSiteEvent:
      return v1::FleetEvent::KIND_SITE_EVENT;
    case engine::FleetEvent::Kind::kSiteFinished:
      return v1::FleetEvent::KIND_SITE_FINISHED;
    case engine::FleetEvent::Kind::kSiteFailed:
      return v1::FleetEvent::KIND_SITE_FAILED;
    case engine::FleetEvent::Kind::kSiteSkipped:
      return v1::FleetEvent::KIND_SITE_SKIPPED;
    case engine::FleetEvent::Kind::kFinished:
      return v1::FleetEvent::KIND_SUMMARY;
  }
  return v1::FleetEvent::KIND_UNSPECIFIED;
}

// Translates the runner's events into the fleet operation's events.
class FleetOperationSink final : public engine::FleetEventSink {
 public:
  FleetOperationSink(Operation* op, const Registry* registry) : op_(op), registry_(registry) {}

  void OnFleetEvent(const engine::FleetEvent& e) override {
    v1::FleetEvent out;
    out.set_kind(KindToProto(e.kind));
    out.set_site(e.site);
    out.set_stage(e.stage);
    for (const std::string& site : e.stage_sites) {
      out.add_stage_sites(site);
    }
    switch (e.kind) {
      case engine::FleetEvent::Kind::kSiteEvent: {
        absl::StatusOr<DatabaseEntry*> db = registry_->GetDatabase(e.site);
        if (!db.ok()) {
          return;
        }
        v1::OperationEvent* event = out.mutable_event();
        if (!server::ToProto(e.event, (*db)->set().graph, event)) {
          return;  // no wire form (the site's own finish: its result follows)
        }
        event->set_operation_id(e.event.operation_id);
        event->set_database(e.site);
        if (!event->has_time()) {
          server::ToProto(e.event.time == absl::InfinitePast() ? absl::Now() : e.event.time,
                          event->mutable_time());
        }
        break;
      }
      case engine::FleetEvent::Kind::kSiteFinished:
      case engine::FleetEvent::Kind::kSiteFailed:
      case engine::FleetEvent::Kind::kSiteSkipped:
        FleetResultToProto(e.result, out.mutable_result());
        break;
      case engine::FleetEvent::Kind::kFinished: {
        v1::FleetSummary* summary = out.mutable_summary();
        for (const engine::SiteResult& r : e.summary.sites) {
          FleetResultToProto(r, summary->add_sites());
        }
        summary->set_succeeded(e.summary.succeeded);
        summary->set_failed(e.summary.failed);
        summary->set_skipped(e.summary.skipped);
        summary->set_cancelled(e.summary.cancelled);
        server::ToProto(e.summary.duration, summary->mutable_duration());
        break;
      }
      default:
        break;
    }
    op_->EmitFleet(std::move(out));
  }

 private:
  Operation* op_;
  const Registry* registry_;
};

// A session for one fleet site: waits for a free one in slices (so a cancel
// or timeout is noticed) and checks a pooled connection with a cheap read.
absl::StatusOr<SessionPool::Lease> AcquireForSite(const DatabaseEntry& db,
                                                  const engine::SiteContext& ctx) {
  for (int attempt = 0;; ++attempt) {
    absl::StatusOr<SessionPool::Lease> lease;
    for (;;) {
      lease = db.pool().Acquire(absl::Now() + absl::Milliseconds(500));
      if (lease.ok() || lease.status().code() != absl::StatusCode::kDeadlineExceeded) {
        break;
      }
      if (ctx.cancelled()) {
        return absl::CancelledError("cancelled while waiting for a connection");
      }
    }
    if (!lease.ok()) {
      return lease.status();
    }
    absl::Status ping = (*lease)->ReadState().status();
    if (ping.ok()) {
      return lease;
    }
    lease->Finish(ping);
    if (ping.code() != absl::StatusCode::kUnavailable || attempt > 0) {
      return ping;
    }
    db.pool().DropIdle();
  }
}

struct FleetPlan {
  v1::FleetAction action = v1::FLEET_ACTION_UNSPECIFIED;
  DriftChecker* drift = nullptr;
  std::string target;
  std::vector<std::string> targets;
  bool has_lock_wait = false;
  absl::Duration lock_wait = absl::ZeroDuration();
};

// A fleet drift site's outcome: succeeded without drift; failed naming (up
// to 20 of) the differing objects. `session` is the site's.
absl::StatusOr<engine::OperationResult> DriftSiteResult(const DatabaseEntry& db,
                                                        DriftChecker& drift,
                                                        store::Session& session) {
  ASSIGN_OR_RETURN(schema_build::LiveSchema live, schema_build::ReadLiveSchema(session));
  ASSIGN_OR_RETURN(schema_build::DriftReport report,
                   drift.Check(db.name(), db.set().graph, std::move(live)));
  if (report.drifted()) {
    constexpr size_t kNamed = 20;
    std::vector<std::string> lines;
    for (size_t i = 0; i < report.changes.size() && i < kNamed; ++i) {
      lines.push_back(schema_build::DriftLine(report.changes[i]));
    }
    if (report.changes.size() > kNamed) {
      lines.push_back(absl::StrCat("and ", report.changes.size() - kNamed, " more"));
    }
    return absl::FailedPreconditionError(
        absl::StrCat("drift: ", report.changes.size(), " object(s) of ", db.name(),
                     " differ from the schema of its revisions: ", absl::StrJoin(lines, "; ")));
  }
  engine::OperationResult result;
  result.rows_before = report.rows;
  result.rows_after = report.rows;
  return result;
}

absl::StatusOr<engine::SiteResult> RunFleetSite(const DatabaseEntry& db, const FleetPlan& plan,
                                                const Identity& identity,
                                                engine::SiteContext& ctx) {
  // A fleet touches many databases once: a connection opened for the site
  // is closed after it (the pool keeps only what it had), so the backends
  // schemad holds stay bounded by max_parallel plus the warm pools.
  const bool had_idle = db.pool().idle() > 0;
  absl::StatusOr<SessionPool::Lease> lease = AcquireForSite(db, ctx);
  if (!lease.ok()) {
    return DbError(db, lease.status());
  }
  store::Session* session = lease->get();
  ctx.SetCanceller([session] { session->Cancel(); });
  engine::ExecutorOptions options = db.ExecutorOptionsFor(identity.who);
  if (plan.has_lock_wait) {
    options.lock_wait = plan.lock_wait;
  }
  engine::Executor executor(db.set().graph, db.database(), options);
  absl::StatusOr<engine::OperationResult> result;
  switch (plan.action) {
    case v1::FLEET_ACTION_UPGRADE:
      result = executor.Upgrade(*session, plan.target, ctx.control());
      break;
    case v1::FLEET_ACTION_DOWNGRADE:
      result = executor.Downgrade(*session, plan.target, ctx.control());
      break;
    case v1::FLEET_ACTION_ENSURE_HEAD:
      result = executor.EnsureHead(*session, /*apply=*/true, ctx.control());
      break;
    case v1::FLEET_ACTION_STAMP:
      result = executor.Stamp(*session, plan.targets, /*purge=*/false, ctx.control());
      break;
    case v1::FLEET_ACTION_VALIDATE: {
      absl::StatusOr<engine::ValidationReport> report = executor.Validate(*session);
      if (!report.ok()) {
        result = report.status();
      } else if (!report->ok()) {
        // Names what failed (informational issues left out), at most 10.
        std::vector<std::string> named;
        size_t failing = 0;
        for (const engine::ValidationIssue& issue : report->issues) {
          const bool missing = issue.kind == engine::ValidationIssue::Kind::kMissingFile;
          if (!missing && issue.kind != engine::ValidationIssue::Kind::kChanged) continue;
          if (++failing <= 10) {
            named.push_back(
                absl::StrCat(issue.revision, missing ? " (file missing)" : " (changed)"));
          }
        }
        result = absl::FailedPreconditionError(absl::StrCat(
            failing, " applied revision(s) do not match their files: ", absl::StrJoin(named, ", "),
            failing > named.size() ? absl::StrCat(" and ", failing - named.size(), " more") : "",
            "; `schemactl validate` shows each"));
      } else {
        engine::OperationResult checked;
        checked.rows_before = report->rows;  // what was checked, not moved
        checked.rows_after = report->rows;
        result = std::move(checked);
      }
      break;
    }
    case v1::FLEET_ACTION_DRIFT:
      result = DriftSiteResult(db, *plan.drift, *session);
      break;
    default:
      result = absl::InvalidArgumentError("unknown fleet action");
      break;
  }
  // A site that failed shows where it stands: its rows, read once more
  // while the database still answers (not after a lost connection or a
  // cancel, whose statement cancel may still be in flight).
  absl::StatusOr<store::DatabaseState> state_after = absl::UnknownError("not read");
  if (!result.ok() && result.status().code() != absl::StatusCode::kUnavailable &&
      !ctx.cancelled()) {
    state_after = session->ReadState();
  }
  ctx.SetCanceller(nullptr);
  lease->Finish(result.status());
  if (ctx.cancelled() || !had_idle) {
    lease->Discard();  // a statement cancel may still be in flight, or not ours to keep
  }
  if (!result.ok()) {
    absl::Status error = DbError(db, result.status());
    if (!state_after.ok()) return error;
    engine::SiteResult failed;
    failed.status = std::move(error);
    failed.rows_after = state_after->rows;
    failed.rows_after_read = true;
    return failed;
  }
  engine::SiteResult out;
  out.rows_before = result->rows_before;
  out.rows_after = result->rows_after;
  out.revisions_run = result->revisions_run;
  out.operation_id = result->operation_id;
  return out;
}

const char* FleetActionName(v1::FleetAction action) {
  switch (action) {
    case v1::FLEET_ACTION_UPGRADE:
      return "upgrade";
    case v1::FLEET_ACTION_DOWNGRADE:
      return "downgrade";
    case v1::FLEET_ACTION_ENSURE_HEAD:
      return "ensure-head";
    case v1::FLEET_ACTION_STAMP:
      return "stamp";
    case v1::FLEET_ACTION_VALIDATE:
      return "validate";
    case v1::FLEET_ACTION_DRIFT:
      return "drift";
    default:
      break;
  }
  return "unknown";
}

}  // namespace
namespace {

// The error-level lint findings of the migration sets of `sites`, each set
// once, in the order the sites name them.
absl::StatusOr<std::vector<v1::LintFinding>> LintErrorsOf(
    const Registry& registry, const std::vector<engine::FleetSite>& sites) {
  std::vector<v1::LintFinding> errors;
  std::set<const MigrationSetEntry*> seen;
  for (const engine::FleetSite& site : sites) {
    ASSIGN_OR_RETURN(DatabaseEntry * db, registry.GetDatabase(site.name));
    if (!seen.insert(&db->set()).second) {
      continue;
    }
    for (const engine::LintFinding& finding : db->set().lint_findings) {
      if (finding.severity == engine::LintSeverity::kError) {
        ToProto(finding, &errors.emplace_back());
      }
    }
  }
  return errors;
}

// FAILED_PRECONDITION listing (up to 20 of) `errors` and what to do.
absl::Status LintErrorsRefusal(const std::vector<v1::LintFinding>& errors) {
  constexpr size_t kListed = 20;
  std::vector<std::string> lines;
  for (size_t i = 0; i < errors.size() && i < kListed; ++i) {
    const v1::LintFinding& f = errors[i];
    lines.push_back(
        absl::StrCat(f.file(), ":", f.line(), ": ", f.rule(), " (revision ", f.revision(), ")"));
  }
  if (errors.size() > kListed) {
    lines.push_back(absl::StrCat("and ", errors.size() - kListed, " more"));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      errors.size(), " error-level lint finding(s) in the migration set(s) of the selected sites: ",
      absl::StrJoin(lines, "; "),
      ". Fix them, suppress them in the revision files (`-- schemad:lint-ignore RULE`, or a "
      "`-- lint_ignore:` header, which changes no checksum), or run with --allow-lint-errors "
      "(schemactl lint shows each with its reason)"));
}

// A fleet run ready to start: its sites, plan and runner, from one snapshot.
struct PreparedFleet {
  std::shared_ptr<const Registry> registry;  // the whole run serves from it
  FleetPlan plan;
  engine::FleetRunner runner{engine::FleetOptions{}};
  std::vector<engine::FleetSite> sites;
  std::vector<v1::LintFinding> lint_errors;
};

// Checks `request` and selects its sites in the current snapshot.
absl::StatusOr<PreparedFleet> PrepareFleet(const ServiceDeps& deps,
                                           const v1::FleetRunRequest& request) {
  PreparedFleet out;
  FleetPlan& plan = out.plan;
  plan.action = request.action();
  plan.drift = deps.drift;
  switch (plan.action) {
    case v1::FLEET_ACTION_UPGRADE:
      plan.target = request.target().empty() ? "heads" : request.target();
      break;
    case v1::FLEET_ACTION_DOWNGRADE:
      if (request.target().empty()) {
        return absl::InvalidArgumentError(
            "a fleet downgrade needs a target (e.g. -1, base or a revision id)");
      }
      plan.target = request.target();
      break;
    case v1::FLEET_ACTION_STAMP:
      if (request.targets().empty()) {
        return absl::InvalidArgumentError("a fleet stamp needs targets");
      }
      plan.targets.assign(request.targets().begin(), request.targets().end());
      break;
    case v1::FLEET_ACTION_ENSURE_HEAD:
    case v1::FLEET_ACTION_VALIDATE:
      break;
    case v1::FLEET_ACTION_DRIFT:
      RETURN_IF_ERROR(deps.drift->Available());
      break;
    default:
      return absl::InvalidArgumentError(
          "fleet action must be upgrade, downgrade, ensure-head, stamp, validate or drift");
  }
  if (request.has_lock_wait()) {
    plan.has_lock_wait = true;
    plan.lock_wait = FromProto(request.lock_wait());
  }
  ASSIGN_OR_RETURN(engine::LabelSelector selector,
                   engine::LabelSelector::Parse(request.selector()));
  std::vector<engine::FleetSite> all;
  // The whole fleet run serves from this snapshot (reloads meanwhile
  // change nothing for it).
  out.registry = deps.state->registry();
  for (const std::unique_ptr<DatabaseEntry>& db : out.registry->databases()) {
    engine::FleetSite site;
    site.name = db->name();
    for (const auto& [key, value] : db->config().labels()) {
      site.labels[key] = value;
    }
    all.push_back(std::move(site));
  }
  out.sites = selector.Filter(all);
  if (out.sites.empty()) {
    return absl::NotFoundError(
        absl::StrCat("selector \"", request.selector(), "\" selects no database"));
  }
  engine::FleetOptions options;
  options.max_parallel = request.max_parallel() > 0 ? request.max_parallel() : 4;
  options.canary_count = std::max(0, request.canary_count());
  options.canary_selector = request.canary_selector();
  // A drift check changes nothing: one site's drift is no reason to
  // leave the others unchecked.
  options.continue_on_error = request.continue_on_error() || plan.action == v1::FLEET_ACTION_DRIFT;
  if (request.has_site_timeout()) {
    options.site_timeout = FromProto(request.site_timeout());
  }
  out.runner = engine::FleetRunner(options);
  RETURN_IF_ERROR(out.runner.Validate(out.sites));
  if (plan.action == v1::FLEET_ACTION_UPGRADE || plan.action == v1::FLEET_ACTION_ENSURE_HEAD) {
    ASSIGN_OR_RETURN(out.lint_errors, LintErrorsOf(*out.registry, out.sites));
    if (!out.lint_errors.empty() && !request.allow_lint_errors()) {
      return LintErrorsRefusal(out.lint_errors);
    }
  }
  return out;
}

// What a fleet operation's body does: runs the sites of `fleet`.
absl::StatusOr<OperationOutcome> RunPreparedFleet(Operation& op, const PreparedFleet& fleet,
                                                  const Identity& identity) {
  const Registry* registry = fleet.registry.get();
  FleetOperationSink sink(&op, registry);
  const engine::CallControl control = op.control();
  const FleetPlan& plan = fleet.plan;
  engine::FleetSummary summary = fleet.runner.Run(
      fleet.sites,
      [registry, &plan, &identity](const engine::FleetSite& site,
                                   engine::SiteContext& ctx) -> absl::StatusOr<engine::SiteResult> {
        ASSIGN_OR_RETURN(DatabaseEntry * db, registry->GetDatabase(site.name));
        return RunFleetSite(*db, plan, identity, ctx);
      },
      &sink, control.cancelled);
  OperationOutcome outcome;
  for (const engine::SiteResult& r : summary.sites) {
    outcome.result.revisions_run += r.revisions_run;
  }
  if (control.cancelled != nullptr && control.cancelled->load()) {
    return absl::CancelledError(absl::StrCat("fleet cancelled: ", summary.succeeded, " succeeded, ",
                                             summary.failed, " failed, ", summary.cancelled,
                                             " cancelled, ", summary.skipped, " skipped"));
  }
  if (!summary.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        summary.failed, " of ", summary.sites.size(), " site(s) failed (", summary.succeeded,
        " succeeded, ", summary.skipped, " skipped, ", summary.cancelled, " cancelled)"));
  }
  return outcome;
}

// The body of `fleet resume OP`: claims the abandoned run OP in the control
// database, then runs its request again over the sites that had not
// succeeded (each site's advisory lock and version table make a site that
// did finish, or one that finished meanwhile, a no-op anyway).
absl::StatusOr<OperationOutcome> ResumeFleet(const ServiceDeps& deps, Operation& op,
                                             const std::string& abandoned_id,
                                             const Identity& identity) {
  ASSIGN_OR_RETURN(ControlPlane::Resumable resumable,
                   deps.control->ClaimResume(abandoned_id, op.id()));
  absl::StatusOr<PreparedFleet> fleet = PrepareFleet(deps, resumable.request);
  if (!fleet.ok()) {
    return Annotate(fleet.status(), absl::StrCat("resuming ", abandoned_id));
  }
  std::vector<engine::FleetSite> remaining;
  for (engine::FleetSite& site : fleet->sites) {
    if (resumable.succeeded.count(site.name) == 0) remaining.push_back(std::move(site));
  }
  deps.log->info("fleet resume op={} resumes={} sites_done={} sites_to_run={}", op.id(),
                 abandoned_id, resumable.succeeded.size(), remaining.size());
  if (remaining.empty()) {
    return OperationOutcome{};
  }
  fleet->sites = std::move(remaining);
  return RunPreparedFleet(op, *fleet, identity);
}

}  // namespace

EventWriter* SchemadService::FleetRun(grpc::CallbackServerContext* context,
                                      const v1::FleetRunRequest* request) {
  const ServiceDeps* deps = &deps_;
  const Role role = !request->resume().empty() || request->action() == v1::FLEET_ACTION_DOWNGRADE ||
                            request->action() == v1::FLEET_ACTION_STAMP
                        ? Role::kAdmin
                        : Role::kMigrator;
  return RunStream(
      deps, context, role, "FleetRun",
      [deps, request](const Identity& identity) -> absl::StatusOr<std::shared_ptr<Operation>> {
        RETURN_IF_ERROR(CheckRequest(*request));
        if (!request->resume().empty()) {
          if (deps->control == nullptr) {
            return absl::FailedPreconditionError(
                "fleet resume needs a control database (control_database in the "
                "configuration): without one a fleet run lives in its replica's memory only");
          }
          // What to resume is read from the control database by the body,
          // on an operation worker (not on gRPC's thread).
          OperationSpec spec;
          spec.kind = v1::OPERATION_KIND_FLEET;
          spec.database = "fleet:resume";
          spec.target = absl::StrCat("resume ", request->resume());
          spec.who = identity.who;
          return deps->operations->Start(std::move(spec),
                                         [deps, abandoned_id = request->resume(), identity](
                                             Operation& op) -> absl::StatusOr<OperationOutcome> {
                                           return ResumeFleet(*deps, op, abandoned_id, identity);
                                         });
        }
        ASSIGN_OR_RETURN(PreparedFleet fleet, PrepareFleet(*deps, *request));
        OperationSpec spec;
        spec.lint_errors = fleet.lint_errors;
        spec.kind = v1::OPERATION_KIND_FLEET;
        spec.database = absl::StrCat("fleet:", request->selector());
        spec.target =
            absl::StrCat(FleetActionName(fleet.plan.action), fleet.plan.target.empty() ? "" : " ",
                         fleet.plan.target, absl::StrJoin(fleet.plan.targets, ","));
        spec.who = identity.who;
        spec.request = request->SerializeAsString();  // what a resume runs again
        return deps->operations->Start(std::move(spec),
                                       [fleet = std::move(fleet), identity](
                                           Operation& op) -> absl::StatusOr<OperationOutcome> {
                                         return RunPreparedFleet(op, fleet, identity);
                                       });
      });
}

// ------------------------------------------------------------------ reload

grpc::ServerUnaryReactor* SchemadService::Reload(grpc::CallbackServerContext* context,
                                                 const v1::ReloadRequest* /*request*/,
                                                 v1::ReloadResponse* response) {
  const ServiceDeps* deps = &deps_;
  const std::function<absl::StatusOr<v1::ReloadResponse>()>* reloader = &reloader_;
  return RunUnary(
      deps, context, Role::kAdmin, "Reload",
      [reloader, response](const Identity&) -> absl::Status {
        if (!*reloader) {
          return absl::UnimplementedError("this server cannot reload");
        }
        ASSIGN_OR_RETURN(*response, (*reloader)());
        return absl::OkStatus();
      },
      deps->reload_worker);
}

}  // namespace schemad::server
