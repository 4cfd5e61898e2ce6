// DirectoryWatcher: tells when directories have changed and then stayed
// quiet for a settle time, with Linux inotify. schemad watches the
// directories of the migration sets configured with `watch: true` and
// reloads when one changes (SchemadServer), so that a revision synced onto
// disk is served without a SIGHUP.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<DirectoryWatcher> watcher,
//                    DirectoryWatcher::Create(DirectoryWatcher::Options{}, log));
//   watcher->Watch({"/srv/migrations/modax"});
//   ... load what is in the directories ...
//   watcher->Start([](const std::vector<std::string>& changed) { Reload(); });
//   ...
//   watcher->Stop();   // the thread has ended, the descriptors are closed
//
// What counts as a change: in a watched directory, a file closed after
// writing, created, deleted, or renamed into or out of it (IN_CLOSE_WRITE,
// IN_CREATE, IN_DELETE, IN_MOVED_TO, IN_MOVED_FROM); the directory itself
// deleted or renamed away; an overflow of the kernel's event queue (every
// directory changed). Subdirectories are not watched. Reading a file is no
// change.
//
// Debounce: changes are reported once no event has arrived for
// Options::settle, so a burst (a sync writing temp files and renaming them
// into place) gives one callback, after its last event. A directory that
// never stays quiet that long is not reported until it does.
//
// A directory that cannot be watched (it does not exist yet, or was deleted
// or renamed away) is tried again every Options::retry; once it can be
// watched again it is reported as changed.
//
// Thread-safety: thread-safe. One thread (started by Start) reads the events
// and runs the callback; Watch may be called from any thread, including the
// callback; Stop from any thread but the callback's.
#ifndef SCHEMAD_SERVICE_SERVER_DIRECTORY_WATCHER_H_
#define SCHEMAD_SERVICE_SERVER_DIRECTORY_WATCHER_H_

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
#include "spdlog/logger.h"

namespace schemad::server {

class DirectoryWatcher {
 public:
  struct Options {
    // Changes are reported once the watched directories have had no event
    // for this long.
    absl::Duration settle = absl::Milliseconds(500);
    // How often a directory that cannot be watched is tried again.
    absl::Duration retry = absl::Seconds(1);
  };
  // Runs on the watcher thread with the changed directories (as passed to
  // Watch, sorted, each once). Events arriving while it runs are reported
  // by a later call.
  using OnChange = std::function<void(const std::vector<std::string>& changed)>;

  // An inotify instance watching nothing yet; no thread runs until Start.
  // RESOURCE_EXHAUSTED when the process or user has no inotify instance
  // or descriptor left, INTERNAL on another failure.
  static absl::StatusOr<std::unique_ptr<DirectoryWatcher>> Create(
      Options options, std::shared_ptr<spdlog::logger> log);
  ~DirectoryWatcher();  // Stop()
  DirectoryWatcher(const DirectoryWatcher&) = delete;
  DirectoryWatcher& operator=(const DirectoryWatcher&) = delete;

  // Watches exactly `directories` from now on: the new ones are watched
  // before Watch returns (so a change made after it is reported), those not
  // in the list any more are dropped. A directory that cannot be watched is
  // logged once and retried (see above).
  void Watch(const std::vector<std::string>& directories);

  // Starts the thread that calls `on_change`; changes since Watch are
  // reported. At most once.
  void Start(OnChange on_change);

  // After Stop returns, the callback is not running and will not be called
  // again, the thread has ended and the descriptors are closed. Idempotent.
  // Must not be called from the callback.
  void Stop();

  // The directories watched (not those waiting for a retry), sorted; none
  // once stopped.
  std::vector<std::string> watched() const;

 private:
  DirectoryWatcher(int inotify_fd, int wake_fd, Options options,
                   std::shared_ptr<spdlog::logger> log);
  void Loop();
  // Reads the queued events into `changed`; true when there were any.
  bool ReadEvents(std::set<std::string>& changed) ABSL_LOCKS_EXCLUDED(mu_);
  // Tries the directories that are not watched again, adding those that
  // now are to `changed`.
  void RetryUnwatched(std::set<std::string>& changed) ABSL_LOCKS_EXCLUDED(mu_);
  // inotify_add_watch for `directory`; false (logged once per directory)
  // when it cannot be watched.
  bool AddWatch(const std::string& directory) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Forgets `directory`'s watch, removing it from the kernel when no other
  // directory (the same one under another path) uses it.
  void DropWatch(const std::string& directory, bool remove_from_kernel)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool HasUnwatched() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int inotify_fd_;
  const int wake_fd_;  // an eventfd: Stop wakes the thread through it
  const Options options_;
  std::shared_ptr<spdlog::logger> log_;

  mutable absl::Mutex mu_;
  // Every directory asked for: its watch descriptor, or -1 while it cannot
  // be watched (retried).
  std::map<std::string, int> descriptors_ ABSL_GUARDED_BY(mu_);
  // Watch descriptor -> the directories it watches (two paths of one
  // directory share one).
  std::map<int, std::set<std::string>> directories_ ABSL_GUARDED_BY(mu_);
  // Directories whose last attempt failed and was logged.
  std::set<std::string> failure_logged_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  absl::Mutex stop_mu_;  // serializes Start and Stop
  std::thread thread_ ABSL_GUARDED_BY(stop_mu_);
  bool closed_ ABSL_GUARDED_BY(stop_mu_) = false;
  OnChange on_change_;  // set by Start before the thread starts
};

}  // namespace schemad::server

#endif  // SCHEMAD_SERVICE_SERVER_DIRECTORY_WATCHER_H_
