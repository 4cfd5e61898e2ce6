// Operations: the server-side jobs that migrate a database (EnsureHead when it
// applies, Upgrade, Downgrade, Merge, Stamp, Resolve). Each has an id, runs on
// a worker thread (never on gRPC's), keeps its events so that WatchOperation
// can replay them, and outlives the RPC that started it.
//
// What an operation keeps is bounded: every summary event (accepted, started,
// lock acquired, revision started/finished, finished, a fleet's own events:
// a handful per revision of the plan or site of the fleet) and the first
// OperationRegistryOptions::max_kept_detail_events detail events (statement
// started, waiting for lock, a fleet site's detail events). Later detail
// events reach live observers but are counted, not kept; a replay shows the
// gap (OperationEvent.sequence, events_dropped_before).
//
//   OperationRegistry ops(options, log);
//   ASSIGN_OR_RETURN(std::shared_ptr<Operation> op,
//                    ops.Start(spec, [&](Operation& op) -> absl::StatusOr<OperationOutcome> {
//                      ...run the executor with op.control()...
//                    }));
//   op->Subscribe(observer);   // replays past events, then live ones
//   ops.Cancel(op->id());      // flag + cancels the running statement
//
// Thread-safety: everything here is thread-safe. Observers are called with
// the operation's lock held (OnEvent) or without it (OnDone); they must not
// block and must not call back into the operation from OnEvent.
#ifndef SCHEMAD_SERVICE_SERVER_OPERATIONS_H_
#define SCHEMAD_SERVICE_SERVER_OPERATIONS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "schemad/v1/schemad.pb.h"
#include "service/engine/events.h"
#include "service/engine/executor.h"
#include "service/engine/revision_graph.h"
#include "service/server/log_format.h"
#include "service/server/thread_pool.h"
#include "service/store/store.h"
#include "spdlog/logger.h"

namespace schemad::server {

// Receives an operation's events.
class OperationObserver {
 public:
  virtual ~OperationObserver() = default;
  // Each event once, in order (replayed ones first). Called with the
  // operation's lock held: queue the event, do not block.
  virtual void OnEvent(const v1::OperationEvent& event) = 0;
  // After the last event: the operation's status and result (the result is
  // meaningful when the status is OK). Called once, without the lock.
  virtual void OnDone(const absl::Status& status, const v1::OperationResult& result) = 0;
};

// True for the events an operation may drop when it has kept enough of them:
// statement started, waiting for lock, and a fleet site's own such events.
bool IsDetailEvent(const v1::OperationEvent& event);

// Names in logs and in the control database: "ensure-head", "upgrade", ...,
// "fleet"; "queued", "running", "succeeded", "failed", "cancelled",
// "abandoned". "unknown" for anything else.
const char* OperationKindName(v1::OperationKind kind);
const char* OperationStateName(v1::OperationState state);
// SUCCEEDED, FAILED, CANCELLED or ABANDONED.
bool IsFinalState(v1::OperationState state);

// What the body of an operation returns.
struct OperationOutcome {
  engine::OperationResult result;
};

struct OperationSpec {
  v1::OperationKind kind = v1::OPERATION_KIND_UNSPECIFIED;
  std::string database;
  std::string target;                            // as requested
  std::string who;                               // client identity
  const engine::RevisionGraph* graph = nullptr;  // for event translation; must outlive the op
  // In the OperationAccepted event: error-level lint findings a fleet run
  // was allowed to run despite.
  std::vector<v1::LintFinding> lint_errors;
  // Opaque: what running the operation again needs (a fleet run's
  // serialized FleetRunRequest, for `fleet resume`); kept in the control
  // database.
  std::string request;
};

class Operation : public std::enable_shared_from_this<Operation> {
 public:
  // `serial` orders operations (a registry gives increasing ones);
  // `max_kept_detail_events` bounds the detail events kept for replay.
  Operation(std::string id, OperationSpec spec, std::shared_ptr<spdlog::logger> log,
            uint64_t serial = 0, int max_kept_detail_events = 256);

  const std::string& id() const { return id_; }
  const OperationSpec& spec() const { return spec_; }
  uint64_t serial() const { return serial_; }

  // A stand-in for an operation another replica runs, fed from the control
  // database (ControlPlane): AppendMirrored delivers events as they were
  // stored (their own sequence numbers), FinishMirrored ends it. No body
  // runs; Info() is not meaningful for it.
  static std::shared_ptr<Operation> Mirror(std::string id, std::shared_ptr<spdlog::logger> log);
  void AppendMirrored(v1::OperationEvent event);
  void FinishMirrored(const absl::Status& status);
  // Observers subscribed now.
  int observer_count() const;

  // Events emitted so far, and how many of them are kept for replay.
  int64_t emitted_events() const;
  int64_t kept_events() const;

  // Replays every event so far to `observer`, then delivers live ones; when
  // the operation has already finished, OnDone follows at once.
  void Subscribe(std::shared_ptr<OperationObserver> observer);
  // Stops delivering to `observer` (a stream that went away).
  void Unsubscribe(const OperationObserver* observer);

  v1::OperationInfo Info() const;
  bool finished() const;
  v1::OperationState state() const;

  // For the body: the executor's per-call controls (operation id, event sink,
  // cancel flag) and the session whose running statement a cancel interrupts
  // (set it before running the executor, clear it with nullptr before the
  // session goes away).
  engine::CallControl control();
  void SetSession(store::Session* session);
  // True once a cancel was requested (the body should not reuse its session).
  bool cancel_requested() const;
  // For a fleet operation's body: records a fleet event (wrapped in an
  // OperationEvent's `fleet`) and delivers it to the observers.
  void EmitFleet(v1::FleetEvent event);

  // Cancels: the flag the executor checks between statements, and the
  // running statement. FAILED_PRECONDITION when already finished.
  absl::Status RequestCancel(absl::string_view reason);
  // For shutdown: stop at the next revision boundary (the running revision
  // finishes); an operation not inside a revision stops at once.
  void StopAfterRevision();
  // Re-sends the statement cancel while a cancel is pending (closes the race
  // between the flag check and the statement start). Called periodically.
  void RepeatCancel();

 private:
  friend class OperationRegistry;
  class Sink;

  // Appends an event (filling id, database, time when unset, sequence) and
  // delivers it to the observers.
  void Emit(v1::OperationEvent event);
  void EmitLocked(v1::OperationEvent event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Time finished_at() const;
  bool NoCancelInFlight() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return cancels_in_flight_ == 0;
  }
  // Sends the statement cancel outside the lock (it talks to PostgreSQL);
  // SetSession(nullptr) waits for it.
  void CancelStatement();
  void MarkRunning();
  void Finish(const absl::StatusOr<OperationOutcome>& outcome);
  void OnEngineEvent(const engine::Event& event);

  const std::string id_;
  const OperationSpec spec_;
  const std::shared_ptr<spdlog::logger> log_;
  const uint64_t serial_;
  const int max_kept_detail_events_;
  const absl::Time created_;
  std::atomic<bool> cancelled_{false};
  std::unique_ptr<Sink> sink_;

  mutable absl::Mutex mu_;
  v1::OperationState state_ ABSL_GUARDED_BY(mu_) = v1::OPERATION_STATE_QUEUED;
  std::vector<v1::OperationEvent> events_ ABSL_GUARDED_BY(mu_);  // kept for replay
  int64_t emitted_ ABSL_GUARDED_BY(mu_) = 0;                     // the next sequence number
  int kept_detail_events_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t dropped_events_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::shared_ptr<OperationObserver>> observers_ ABSL_GUARDED_BY(mu_);
  absl::Time started_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time finished_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  v1::OperationResult result_ ABSL_GUARDED_BY(mu_);
  bool cancel_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_after_revision_ ABSL_GUARDED_BY(mu_) = false;
  bool in_revision_ ABSL_GUARDED_BY(mu_) = false;
  std::string current_revision_ ABSL_GUARDED_BY(mu_);
  int step_index_ ABSL_GUARDED_BY(mu_) = 0;
  int step_count_ ABSL_GUARDED_BY(mu_) = 0;
  int revisions_done_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> engine_rows_after_ ABSL_GUARDED_BY(mu_);  // from the engine's finish
  bool engine_finished_ ABSL_GUARDED_BY(mu_) = false;
  store::Session* session_ ABSL_GUARDED_BY(mu_) = nullptr;
  int cancels_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

struct OperationRegistryOptions {
  int workers = 8;                             // operations executing at once
  absl::Duration retention = absl::Hours(24);  // finished operations kept this long
  int max_retained = 1000;                     // and at most this many
  int max_kept_detail_events = 256;            // per operation (see the top of this file)
  absl::Duration cancel_repeat = absl::Milliseconds(100);
  // Each is called for each new operation before its first event; the
  // observer it returns is subscribed for the operation's whole life
  // (metrics, the control database). Called with the registry's lock held:
  // must not block.
  std::vector<std::function<std::shared_ptr<OperationObserver>(const Operation&)>> observe_each;
};

// One page of OperationRegistry::ListPage.
struct OperationPage {
  std::vector<std::shared_ptr<Operation>> operations;  // newest first
  std::string next_page_token;                         // empty: no more
};

class OperationRegistry {
 public:
  using Body = std::function<absl::StatusOr<OperationOutcome>(Operation& op)>;

  OperationRegistry(OperationRegistryOptions options, std::shared_ptr<spdlog::logger> log);
  ~OperationRegistry();  // Shutdown(0) if not done
  OperationRegistry(const OperationRegistry&) = delete;
  OperationRegistry& operator=(const OperationRegistry&) = delete;

  // Accepts an operation (its `accepted` event is recorded at once) and
  // queues `body` on a worker. UNAVAILABLE once shutdown has begun.
  absl::StatusOr<std::shared_ptr<Operation>> Start(OperationSpec spec, Body body);
  // Like Start, but when a queued or running operation of the same kind on
  // the same database exists (and has no cancel pending), returns that one:
  // concurrent EnsureHead callers share one operation.
  absl::StatusOr<std::shared_ptr<Operation>> StartOrJoin(OperationSpec spec, Body body);

  // NOT_FOUND for an unknown (or expired) id.
  absl::StatusOr<std::shared_ptr<Operation>> Find(absl::string_view id) const;
  // Newest first; limit <= 0: all.
  std::vector<std::shared_ptr<Operation>> List(absl::string_view database, bool running_only,
                                               int limit) const;
  // Newest first, at most `limit` (> 0) from after `page_token` (empty: the
  // newest; otherwise a next_page_token this registry returned, which stays
  // valid however the list changes). INVALID_ARGUMENT for a token that is
  // not one.
  absl::StatusOr<OperationPage> ListPage(absl::string_view database, bool running_only, int limit,
                                         absl::string_view page_token) const;
  // NOT_FOUND; FAILED_PRECONDITION when finished.
  absl::StatusOr<std::shared_ptr<Operation>> Cancel(absl::string_view id, absl::string_view reason);

  // Graceful shutdown: refuse new operations, cancel queued ones, let running
  // ones finish their current revision for up to `grace`, then cancel them,
  // and wait (up to `drain`) until all have finished. True when all finished.
  bool Shutdown(absl::Duration grace, absl::Duration drain = absl::Seconds(60));

  int running() const;

 private:
  absl::StatusOr<std::shared_ptr<Operation>> StartLocked(OperationSpec spec, Body body)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Run(const std::shared_ptr<Operation>& op, const Body& body);
  void Maintain();
  void PruneLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool AllFinished() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool MaintenanceStopped() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_maintenance_; }

  const OperationRegistryOptions options_;
  const std::shared_ptr<spdlog::logger> log_;
  ThreadPool workers_;

  mutable absl::Mutex mu_;
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;
  int active_ ABSL_GUARDED_BY(mu_) = 0;  // queued or running
  uint64_t next_serial_ ABSL_GUARDED_BY(mu_) = 1;
  std::vector<std::shared_ptr<Operation>> order_ ABSL_GUARDED_BY(mu_);  // oldest first
  absl::flat_hash_map<std::string, std::shared_ptr<Operation>> by_id_ ABSL_GUARDED_BY(mu_);
  bool stop_maintenance_ ABSL_GUARDED_BY(mu_) = false;
  std::thread maintenance_;
};

}  // namespace schemad::server

#endif  // SCHEMAD_SERVICE_SERVER_OPERATIONS_H_
