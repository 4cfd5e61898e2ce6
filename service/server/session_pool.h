// A bounded pool of store::Sessions (connections) to one database, so that
// EnsureHead at head costs one query on a warm connection and a burst of
// callers cannot open unbounded connections.
//
//   SessionPool pool(database, /*max_size=*/8);
//   ASSIGN_OR_RETURN(SessionPool::Lease lease, pool.Acquire(absl::Now() + absl::Seconds(5)));
//   absl::StatusOr<DatabaseState> state = lease->ReadState();
//   lease.Finish(state.status());   // returns the session unless the status says
//                                   // the connection is suspect
//
// Thread-safety: thread-safe. A Lease is used by one thread at a time.
#ifndef SCHEMAD_SERVICE_SERVER_SESSION_POOL_H_
#define SCHEMAD_SERVICE_SERVER_SESSION_POOL_H_

#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/store/store.h"

namespace schemad::server {

class SessionPool {
 public:
  // Borrowed session; returned to the pool when destroyed, unless a status
  // passed to Finish says the connection may be broken. Returning resets
  // what revisions changed in the session (Session::ResetState: no round
  // trip when none ran on it); a session that cannot be reset is closed.
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&& other) noexcept;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease();

    store::Session& operator*() const { return *session_; }
    store::Session* operator->() const { return session_.get(); }
    store::Session* get() const { return session_.get(); }

    // Records the outcome of the last use: UNAVAILABLE, UNKNOWN, CANCELLED
    // and INTERNAL (a lost connection, an unknown commit, a cancel request
    // that may still be in flight) make the lease close its session instead
    // of returning it.
    void Finish(const absl::Status& status);
    // Closes the session instead of returning it.
    void Discard() { keep_ = false; }

   private:
    friend class SessionPool;
    Lease(SessionPool* pool, std::unique_ptr<store::Session> session)
        : pool_(pool), session_(std::move(session)) {}
    void Release();

    SessionPool* pool_ = nullptr;
    std::unique_ptr<store::Session> session_;
    bool keep_ = true;
  };

  // `database` must outlive the pool and every lease.
  SessionPool(store::Database& database, int max_size);
  ~SessionPool();
  SessionPool(const SessionPool&) = delete;
  SessionPool& operator=(const SessionPool&) = delete;

  // An idle session, or a new connection when fewer than max_size exist,
  // waiting for one to come back until `deadline`. Errors: the store's from
  // Connect (UNAVAILABLE when unreachable); DEADLINE_EXCEEDED when every
  // session stayed busy; UNAVAILABLE after Close.
  absl::StatusOr<Lease> Acquire(absl::Time deadline);

  // Opens sessions until `count` are idle (best effort; the first error is
  // returned). Blocks.
  absl::Status Warm(int count);
  // Closes the idle sessions (after one of them was found broken, the others
  // probably are too).
  void DropIdle();
  // Closes idle sessions and refuses new leases; leases out are closed when
  // they come back.
  void Close();

  // Closes the sessions idle since before `cutoff` (the longest idle
  // first), keeping at least `keep` idle ones; returns how many it closed.
  int CloseIdleSince(absl::Time cutoff, int keep);

  int max_size() const { return max_size_; }
  int idle() const;
  int open() const;

 private:
  void Return(std::unique_ptr<store::Session> session, bool keep);
  bool CanProceed() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  store::Database& database_;
  const int max_size_;
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<store::Session>> idle_ ABSL_GUARDED_BY(mu_);  // last returned last
  std::vector<absl::Time> idle_since_ ABSL_GUARDED_BY(mu_);  // when each of idle_ came back
  int open_ ABSL_GUARDED_BY(mu_) = 0;                        // idle + leased + being opened
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

// Closes idle pooled sessions nobody used for `idle_timeout`, keeping
// `keep_idle` per pool, checking every `period` (pools.idle_session_timeout):
// a big fleet's quiet sites hold no connection. The pools must outlive it.
class IdleSessionReaper {
 public:
  IdleSessionReaper(std::vector<SessionPool*> pools, absl::Duration idle_timeout, int keep_idle,
                    absl::Duration period);
  ~IdleSessionReaper();  // Stop()
  IdleSessionReaper(const IdleSessionReaper&) = delete;
  IdleSessionReaper& operator=(const IdleSessionReaper&) = delete;

  // One pass over the pools with `now` as the time; how many sessions closed.
  int ReapOnce(absl::Time now);
  // Reaps `pools` from now on (a reload); once it returns, no pass touches
  // the pools it had before.
  void SetPools(std::vector<SessionPool*> pools);
  // Stops the background pass; idempotent.
  void Stop();

 private:
  absl::Mutex pools_mu_;  // held for a whole pass
  std::vector<SessionPool*> pools_ ABSL_GUARDED_BY(pools_mu_);
  const absl::Duration idle_timeout_;
  const int keep_idle_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace schemad::server

#endif  // SCHEMAD_SERVICE_SERVER_SESSION_POOL_H_
