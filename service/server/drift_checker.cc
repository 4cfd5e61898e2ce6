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
  absl::MutexLock lock(&build_mu_);
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

absl::StatusOr<schema_build::DriftReport> DriftChecker::Check(const std::string& database,
                                                              const engine::RevisionGraph& graph,
                                                              store::Session& session) {
  RETURN_IF_ERROR(Available());
  absl::StatusOr<schema_build::DriftReport> report;
  {
    absl::MutexLock lock(&build_mu_);
    if (builder_ == nullptr) {
      absl::StatusOr<std::unique_ptr<store::DevServer>> dev = store::DevServer::Open(dev_dsn_);
      if (!dev.ok()) {
        return absl::Status(dev.status().code(),
                            absl::StrCat("dev_server: ", dev.status().message()));
      }
      dev_ = *std::move(dev);
      schema_build::SchemaBuilder::Options options;
      options.cache_dir = cache_dir_;
      options.use_cache = true;
      builder_ = std::make_unique<schema_build::SchemaBuilder>(*dev_, options);
    }
    report = schema_build::CheckDrift(session, graph, *builder_);
    if (!report.ok() && report.status().code() == absl::StatusCode::kUnavailable) {
      builder_.reset();  // reopened by the next check
      dev_.reset();
    }
  }
  if (!report.ok()) return report.status();
  if (report->needs_attention.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat(database, " needs attention: revision ", *report->needs_attention,
                     " was interrupted, so its schema is between two revisions; resolve it first"));
  }
  const int differences = static_cast<int>(report->changes.size());
  {
    absl::MutexLock lock(&last_mu_);
    last_[database] = LastCheck{absl::Now(), report->rows, differences};
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
