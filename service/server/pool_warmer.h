// Opens each database's first pooled sessions (pools.min_idle_sessions) in
// the background, and keeps trying for a database that could not be reached:
// a pool whose warm-up failed is tried again after first_retry, then after
// twice as long each time, up to max_retry, until it is warm or Stop is
// called. So a site that is down (or slow to answer) while schemad starts is
// warm soon after it is back, not at its first caller's expense.
//
//   PoolWarmer warmer({{"site-a", &pool_a}, {"site-b", &pool_b}}, options, rpc_workers, log);
//   ...
//   warmer.Stop();   // before the worker pool stops and the pools close
//
// Attempts run on `workers`, at most options.max_concurrent_attempts at once
// (an unreachable host can hold a worker for a whole connect_timeout). The
// first failure of a database is logged as a warning, later ones at debug,
// the recovery at info; messages carry the store's error, which names no
// secret.
//
// Thread-safety: thread-safe. The pools and `workers` must outlive the
// warmer; Stop (or the destructor) returns once no attempt is running.
#ifndef SCHEMAD_SERVICE_SERVER_POOL_WARMER_H_
#define SCHEMAD_SERVICE_SERVER_POOL_WARMER_H_

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/server/session_pool.h"
#include "service/server/thread_pool.h"
#include "spdlog/logger.h"

namespace schemad::server {

class PoolWarmer {
 public:
  struct Target {
    std::string name;  // the database's configured name, for the log
    SessionPool* pool = nullptr;
  };
  struct Options {
    int min_idle = 1;  // sessions each pool opens (SessionPool::Warm)
    absl::Duration first_retry = absl::Seconds(1);
    absl::Duration max_retry = absl::Seconds(30);
    int max_concurrent_attempts = 4;
  };

  // Starts warming every target at once (within max_concurrent_attempts).
  PoolWarmer(std::vector<Target> targets, Options options, ThreadPool& workers,
             std::shared_ptr<spdlog::logger> log);
  ~PoolWarmer();  // Stop()
  PoolWarmer(const PoolWarmer&) = delete;
  PoolWarmer& operator=(const PoolWarmer&) = delete;

  // No new attempt starts; waits for the running ones. Idempotent.
  void Stop();

  // Targets not warm yet (a warm-up failed and its retry is pending or
  // running, or the first attempt has not finished).
  int cold() const;
  // Warm-up attempts that failed, over all targets.
  int failed_attempts() const;

 private:
  struct Entry {
    Target target;
    absl::Time due;          // next attempt
    absl::Duration backoff;  // wait after the next failure
    int failures = 0;        // failed attempts (none follow once warm)
    bool running = false;
    bool warm = false;
  };

  void ScheduleLoop();
  void Attempt(size_t index);
  bool WakeOrStopping() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return wake_ || stopping_; }
  bool NoneRunning() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_ == 0; }

  const Options options_;
  ThreadPool& workers_;
  const std::shared_ptr<spdlog::logger> log_;

  mutable absl::Mutex mu_;
  std::vector<Entry> entries_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;  // an attempt finished, or Stop
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  absl::Mutex join_mu_;
  std::thread scheduler_;
};

}  // namespace schemad::server

#endif  // SCHEMAD_SERVICE_SERVER_POOL_WARMER_H_
