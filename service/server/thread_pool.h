// A fixed set of threads running queued tasks, first in first out. schemad
// runs every blocking call (libpqxx) on one of these, never on gRPC's
// reactor threads.
//
//   ThreadPool pool("rpc", 16);
//   pool.Submit([] { ... });   // false once Stop has begun
//   pool.Stop();               // runs what is queued, then joins
//
// Thread-safety: Submit may be called from any thread, including a task.
#ifndef SCHEMAD_SERVICE_SERVER_THREAD_POOL_H_
#define SCHEMAD_SERVICE_SERVER_THREAD_POOL_H_

#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace schemad::server {

class ThreadPool {
 public:
  ThreadPool(std::string name, int threads);
  ~ThreadPool();  // Stop()
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Queues `task`; false (and `task` is dropped) once Stop has been called.
  bool Submit(std::function<void()> task);
  // Refuses new tasks, runs the queued ones, joins the threads. Idempotent.
  void Stop();

  int size() const { return static_cast<int>(threads_.size()); }
  int queued() const;

 private:
  void Loop();
  bool HasWorkOrStopping() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string name_;
  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Mutex join_mu_;
  std::vector<std::thread> threads_;  // written only by the constructor
};

}  // namespace schemad::server

#endif  // SCHEMAD_SERVICE_SERVER_THREAD_POOL_H_
