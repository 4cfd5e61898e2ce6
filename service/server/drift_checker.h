// The server's drift checks (Drift RPC, fleet drift): one dev server,
// opened on first use and kept, one SchemaBuilder with its cache, and the
// last result per database for GetStatus, ListDatabases and the
// schemad_database_drift metric.
//
//   DriftChecker drift(loaded.dev_dsn, cache_dir, on_checked);
//   ASSIGN_OR_RETURN(schema_build::DriftReport report,
//                    drift.Check(db.name(), db.set().graph, session));
//
// Builds are serialised (the dev server is one connection); reading the
// sites is not (callers do it on their own sessions). The cache makes a check
// of a site whose revisions were built before cost one inspection of the
// site. A dev server that failed is reopened by the next check.
//
// Thread-safety: all methods may be called from any thread.
#ifndef SCHEMAD_SERVICE_SERVER_DRIFT_CHECKER_H_
#define SCHEMAD_SERVICE_SERVER_DRIFT_CHECKER_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/engine/revision_graph.h"
#include "service/schema_build/drift.h"
#include "service/schema_build/schema_builder.h"
#include "service/store/pq/dev_server.h"
#include "service/store/store.h"

namespace schemad::server {

class DriftChecker {
 public:
  struct LastCheck {
    absl::Time checked;
    std::vector<std::string> rows;  // the version rows checked against
    int differences = 0;
  };
  // Called after each successful check (database, differences), e.g. to set
  // a metric.
  using Observer = std::function<void(const std::string& database, int differences)>;

  // `dev_dsn`: "local", a DSN, or "" (no dev server: Check is
  // FAILED_PRECONDITION saying how to configure one). `cache_dir`: "" for
  // the memory cache only.
  DriftChecker(std::string dev_dsn, std::string cache_dir, Observer observer);
  ~DriftChecker();

  // OK when a dev server is configured; else FAILED_PRECONDITION saying how
  // to configure one.
  absl::Status Available() const;

  // Compares `live` (the database `database`, read by
  // schema_build::ReadLiveSchema on the caller's session) with the schema
  // its rows should produce, built on the dev server, and remembers the
  // result. FAILED_PRECONDITION when it needs attention (naming the
  // revision); DEADLINE_EXCEEDED when another check holds the dev server
  // past `deadline`; the dev server's errors (prefixed "dev_server: ") and
  // the build's (naming the revision) otherwise. A dev server that became
  // UNAVAILABLE since the last check is reopened (once) at once; one that
  // fails to open is tried again by the next check.
  absl::StatusOr<schema_build::DriftReport> Check(const std::string& database,
                                                  const engine::RevisionGraph& graph,
                                                  schema_build::LiveSchema live,
                                                  absl::Time deadline = absl::InfiniteFuture());

  // The last successful check of `database`, if any.
  std::optional<LastCheck> Last(const std::string& database) const;

 private:
  // The expected schema at `rows`; opens the dev server when needed. Only
  // by the check that set building_.
  absl::StatusOr<schema::DatabaseSchema> Build(const engine::RevisionGraph& graph,
                                               const std::vector<std::string>& rows);

  const std::string dev_dsn_;  // secret when a DSN
  const std::string cache_dir_;
  const Observer observer_;
  // The dev server and builder belong to the one check that set building_.
  absl::Mutex build_mu_;
  bool building_ ABSL_GUARDED_BY(build_mu_) = false;
  std::unique_ptr<store::DevServer> dev_;
  std::unique_ptr<schema_build::SchemaBuilder> builder_;
  mutable absl::Mutex last_mu_;
  std::map<std::string, LastCheck> last_ ABSL_GUARDED_BY(last_mu_);
};

}  // namespace schemad::server

#endif  // SCHEMAD_SERVICE_SERVER_DRIFT_CHECKER_H_
