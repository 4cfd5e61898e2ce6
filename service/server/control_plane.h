// ControlPlane: a replica's side of the control database (store::ControlStore)
// — one truth about operations for every replica that shares it.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<ControlPlane> control,
//                    ControlPlane::Start(std::move(store), options, log));
//   registry_options.observe_each.push_back(control->ObserverFactory());
//   OperationRegistry operations(registry_options, log);
//   control->Attach(&operations);
//   ...
//   control->Shutdown();   // after operations.Shutdown()
//
// - Written through: every operation of this replica is written to the
//   control database by one writer thread, off the operation's path (an
//   event costs a queue push; the writer batches what accumulated into one
//   transaction): its row (state, progress, result, error), its events
//   within the bound an operation keeps in memory (every summary event and
//   the first max_kept_detail_events detail events), and a fleet run's
//   per-site results. EnsureHead at head starts no operation, so it costs
//   the control database nothing.
// - Read from the control database: ListPage (every replica's operations;
//   this replica's own running ones as its memory has them, which is
//   fresher), Follow (a mirror of another replica's operation for
//   WatchOperation: its kept events, then new ones), Cancel (recorded there;
//   the owning replica picks it up).
// - Polling, not LISTEN/NOTIFY: one maintenance thread, every
//   `poll_interval` (200 ms), reads what followed operations wrote since
//   and, while this replica runs operations, whether someone asked to
//   cancel one. A poll cannot miss anything across a reconnect or a restart
//   of the control database (a notification sent meanwhile would be lost),
//   and costs nothing while the replica is idle and nobody watches.
// - Leases: the same thread renews this replica's lease every third of
//   `lease` (control database clock), marks abandoned the operations of
//   replicas whose lease expired (appending a `finished` event to each, so
//   watchers end), and prunes finished operations past the retention.
//   Start registers the replica and marks abandoned what an earlier process
//   of the same name left running. After each renewal, while this replica
//   runs operations, those of them another replica marked abandoned (this
//   replica's lease had run out while it was cut off from the control
//   database) get their true state written over the mark, and the mark's
//   `finished` event is deleted.
// - The control database down: operations run and finish as without one;
//   their writes wait in memory (bounded as the operations' own events are)
//   and are retried every second; ListPage fails UNAVAILABLE (the service
//   then answers from memory, saying so), Follow and Cancel of another
//   replica's operation fail UNAVAILABLE.
//
// Thread-safety: thread-safe. Observers it makes never block.
#ifndef SCHEMAD_SERVICE_SERVER_CONTROL_PLANE_H_
#define SCHEMAD_SERVICE_SERVER_CONTROL_PLANE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "schemad/v1/schemad.pb.h"
#include "service/server/operations.h"
#include "service/store/control_store.h"
#include "spdlog/logger.h"

namespace schemad::server {

struct ControlPlaneOptions {
  std::string replica;  // this replica's name
  absl::Duration lease = absl::Seconds(15);
  absl::Duration retention = absl::Hours(24);  // finished operations kept this long...
  int max_retained = 1000;                     // ...and at most this many (all replicas)
  int max_kept_detail_events = 256;            // per operation, as in memory
  absl::Duration poll_interval = absl::Milliseconds(200);
};

class ControlPlane {
 public:
  // Registers the replica (marking abandoned what an earlier process of its
  // name left running) and starts the writer and maintenance threads. The
  // schema must be at its head already (MigrateControlSchema).
  static absl::StatusOr<std::unique_ptr<ControlPlane>> Start(
      std::unique_ptr<store::ControlStore> store, ControlPlaneOptions options,
      std::shared_ptr<spdlog::logger> log);
  ~ControlPlane();  // Shutdown()

  // For OperationRegistryOptions::observe_each: writes each operation through.
  std::function<std::shared_ptr<OperationObserver>(const Operation&)> ObserverFactory();
  // The registry of this replica's operations (for cancel requests from
  // other replicas and fresher listings); set before serving.
  void Attach(OperationRegistry* operations);

  const std::string& replica() const { return options_.replica; }

  // Every replica's operations, newest first, at most `limit` after
  // `page_token` (a next_page_token this returned; INVALID_ARGUMENT
  // otherwise). Waits (up to a second) for this replica's writes queued so
  // far, so its own new operations are listed. UNAVAILABLE when the control
  // database does not answer.
  absl::StatusOr<std::vector<v1::OperationInfo>> ListPage(const std::string& database,
                                                          bool running_only, int limit,
                                                          const std::string& page_token,
                                                          std::string* next_page_token);
  // A mirror of operation `id` as the control database has it: its kept
  // events, then new ones as its replica writes them; it ends with the
  // operation's status (NOT_FOUND when the control database does not have
  // it within a couple of seconds, UNAVAILABLE when it stops answering).
  // Does not block.
  std::shared_ptr<Operation> Follow(const std::string& id);
  // Records a cancel request for another replica's operation `id`:
  // NOT_FOUND, FAILED_PRECONDITION when finished, UNAVAILABLE.
  absl::StatusOr<v1::OperationInfo> Cancel(const std::string& id);

  // An abandoned fleet run claimed by `fleet resume`.
  struct Resumable {
    v1::FleetRunRequest request;      // as first run
    std::set<std::string> succeeded;  // its sites that had succeeded
  };
  // Claims abandoned fleet run `id` for the resuming operation `by`
  // (store::ControlStore::ClaimResume's errors) and reads what it needs.
  absl::StatusOr<Resumable> ClaimResume(const std::string& id, const std::string& by);

  // Waits until what was queued before the call is written, up to
  // `deadline`; false when it was not.
  bool Flush(absl::Time deadline);

  // Whether the control database answered this replica's last lease
  // renewal (true from Start until a renewal fails, true again on the first
  // that works): what the replica's readiness reflects.
  bool Reachable() const;
  // Calls `listener` with Reachable() now, then on each change, from the
  // maintenance thread; nullptr stops the calls (when it returns, no call
  // is running).
  void OnReachability(std::function<void(bool reachable)> listener);

  // Writes what is queued (for up to a few seconds), ends this replica's
  // lease, ends the mirrors and stops the threads. Idempotent.
  void Shutdown();

  // v1::OperationInfo of a stored operation (exposed for tests).
  static v1::OperationInfo ToInfo(const store::ControlOperation& op);

 private:
  class Observer;
  struct Pending {
    std::shared_ptr<const Operation> op;
    std::vector<v1::OperationEvent> events;
    std::vector<v1::FleetSiteResult> sites;
    uint64_t ticket = 0;     // the newest enqueue it holds
    bool over_mark = false;  // written over another replica's abandonment mark
  };
  struct Follower {
    std::shared_ptr<Operation> mirror;
    int64_t next_sequence = 0;
    absl::Time since;
    bool seen_observer = false;
    bool found = false;
  };

  ControlPlane(std::unique_ptr<store::ControlStore> store, ControlPlaneOptions options,
               std::shared_ptr<spdlog::logger> log);

  void Enqueue(const std::shared_ptr<const Operation>& op, const v1::OperationEvent* event,
               const v1::FleetSiteResult* site, bool over_mark = false);
  store::ControlOperationWrite MakeWrite(const Pending& pending);
  void WriterLoop();
  void MaintenanceLoop();
  void PollFollowers();
  void PollCancels();
  void RenewAndSweep();
  void RewriteMarked();
  void SetReachable(bool reachable);
  bool Stopping() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; }
  bool WriterHasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || !pending_.empty();
  }

  const std::unique_ptr<store::ControlStore> store_;
  const ControlPlaneOptions options_;
  const std::shared_ptr<spdlog::logger> log_;
  store::ControlReplica self_;
  absl::Time last_prune_ = absl::InfinitePast();  // maintenance thread only
  mutable absl::Mutex reach_mu_;
  bool reachable_ ABSL_GUARDED_BY(reach_mu_) = true;
  std::function<void(bool)> reach_listener_ ABSL_GUARDED_BY(reach_mu_);

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  OperationRegistry* operations_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::map<std::string, Pending> pending_ ABSL_GUARDED_BY(mu_);  // by operation id
  uint64_t enqueued_ ABSL_GUARDED_BY(mu_) = 0;                   // tickets handed out
  uint64_t written_ ABSL_GUARDED_BY(mu_) = 0;                    // every ticket <= it written
  std::map<std::string, Follower> followers_ ABSL_GUARDED_BY(mu_);
  // The request a resuming fleet operation stores (the one it resumed),
  // by operation id: so that it can be resumed in turn.
  std::map<std::string, std::string> resumed_requests_ ABSL_GUARDED_BY(mu_);
  std::thread writer_;
  std::thread maintenance_;
};

}  // namespace schemad::server

#endif  // SCHEMAD_SERVICE_SERVER_CONTROL_PLANE_H_
