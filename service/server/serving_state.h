// ServingState: the configuration schemad serves from — the registry of
// migration sets and databases and the authenticator — as one immutable
// snapshot that a reload replaces whole (SchemadServer::Reload).
//
//   std::shared_ptr<const ServingSnapshot> now = state.Current();
//   ASSIGN_OR_RETURN(std::shared_ptr<DatabaseEntry> db, state.GetDatabase("site-a"));
//   // `db` keeps its snapshot alive: an operation that holds it finishes on
//   // the configuration it started with, whatever reloads happen meanwhile.
//
// Thread-safety: thread-safe; snapshots are immutable.
#ifndef SCHEMAD_SERVICE_SERVER_SERVING_STATE_H_
#define SCHEMAD_SERVICE_SERVER_SERVING_STATE_H_

#include <cstdint>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "service/server/auth.h"
#include "service/server/registry.h"

namespace schemad::server {

struct ServingSnapshot {
  std::shared_ptr<const Registry> registry;
  std::shared_ptr<const Authenticator> auth;
  int64_t generation = 0;  // 0 at start, +1 per successful reload
};

class ServingState {
 public:
  explicit ServingState(std::shared_ptr<const ServingSnapshot> initial)
      : current_(std::move(initial)) {}

  std::shared_ptr<const ServingSnapshot> Current() const {
    absl::MutexLock lock(&mu_);
    return current_;
  }
  // Serves `next` from now on; returns the snapshot it replaced.
  std::shared_ptr<const ServingSnapshot> Replace(std::shared_ptr<const ServingSnapshot> next) {
    absl::MutexLock lock(&mu_);
    std::swap(current_, next);
    return next;
  }

  std::shared_ptr<const Registry> registry() const { return Current()->registry; }
  std::shared_ptr<const Authenticator> auth() const { return Current()->auth; }

  // The database in the current snapshot (Registry::GetDatabase's errors);
  // the pointer shares ownership of the snapshot's registry.
  absl::StatusOr<std::shared_ptr<DatabaseEntry>> GetDatabase(absl::string_view name) const {
    std::shared_ptr<const Registry> registry = this->registry();
    absl::StatusOr<DatabaseEntry*> db = registry->GetDatabase(name);
    if (!db.ok()) {
      return db.status();
    }
    return std::shared_ptr<DatabaseEntry>(std::move(registry), *db);
  }

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const ServingSnapshot> current_ ABSL_GUARDED_BY(mu_);
};

}  // namespace schemad::server

#endif  // SCHEMAD_SERVICE_SERVER_SERVING_STATE_H_
