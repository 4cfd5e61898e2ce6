#include "service/server/drift_checker.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "service/common/status_macros.h"

namespace schemad::server {

DriftChecker::DriftChecker(std::string dev_dsn, std::string cache_dir, Observer observer)
    : dev_dsn_(std::move(dev_dsn)),
      cache_dir_(std::move(cache_dir)),
      observer_(std::move(observer)) {}

DriftChecker::~DriftChecker() {
  builder_.reset();
  dev_.reset();  // drops scratch databases, stops a local cluster
}

absl::Status DriftChecker::Available() const {
  if (!dev_dsn_.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      "drift needs a dev server: set `dev_server: {local: true}` (a throwaway cluster from the "
      "local PostgreSQL installation) or `dev_server: {dsn_env: NAME}` (a server where schemad "
      "may create databases) in the configuration");
}

absl::StatusOr<schema::DatabaseSchema> DriftChecker::Build(const engine::RevisionGraph& graph,
                                                           const std::vector<std::string>& rows) {
  // A dev server kept from an earlier check may have gone away meanwhile
  // (restarted, idle connection dropped): then it is reopened once.
  for (int attempt = 0;; ++attempt) {
    const bool kept = builder_ != nullptr;
    if (!kept) {
      absl::StatusOr<std::unique_ptr<store::DevServer>> dev = store::DevServer::Open(dev_dsn_);
      if (!dev.ok()) {
        return absl::Status(dev.status().code(),
                            absl::StrCat("dev_server: ", dev.status().message()));
      }
      dev_ = *std::move(dev);
      schema_build::SchemaBuilder::Options options;
      options.cache_dir = cache_dir_;
      options.disk_cache = !cache_dir_.empty();
      builder_ = std::make_unique<schema_build::SchemaBuilder>(*dev_, options);
    }
    absl::StatusOr<schema::DatabaseSchema> expected = builder_->AtRevisions(graph, rows);
    if (expected.ok() || expected.status().code() != absl::StatusCode::kUnavailable) {
      return expected;
    }
    builder_.reset();
    dev_.reset();
    if (!kept || attempt > 0) return expected;
  }
}

absl::StatusOr<schema_build::DriftReport> DriftChecker::Check(const std::string& database,
                                                              const engine::RevisionGraph& graph,
                                                              schema_build::LiveSchema live,
                                                              absl::Time deadline) {
  RETURN_IF_ERROR(Available());
  if (live.needs_attention.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat(database, " needs attention: revision ", *live.needs_attention,
                     " was interrupted, so its schema is between two revisions; resolve it first"));
  }
  {
    absl::MutexLock lock(&build_mu_);
    const auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(build_mu_) { return !building_; };
    if (!build_mu_.AwaitWithDeadline(absl::Condition(&idle), deadline)) {
      return absl::DeadlineExceededError(
          "waiting for the dev server: another drift check is building a schema on it");
    }
    building_ = true;
  }
  absl::StatusOr<schema::DatabaseSchema> expected = Build(graph, live.rows);
  {
    absl::MutexLock lock(&build_mu_);
    building_ = false;
  }
  if (!expected.ok()) return expected.status();
  schema_build::DriftReport report = schema_build::CompareSchemas(std::move(live), *expected);
  const int differences = static_cast<int>(report.changes.size());
  {
    absl::MutexLock lock(&last_mu_);
    last_[database] = LastCheck{absl::Now(), report.rows, differences};
  }
  if (observer_) observer_(database, differences);
  return report;
}

std::optional<DriftChecker::LastCheck> DriftChecker::Last(const std::string& database) const {
  absl::MutexLock lock(&last_mu_);
  auto it = last_.find(database);
  if (it == last_.end()) return std::nullopt;
  return it->second;
}

}  // namespace schemad::server
