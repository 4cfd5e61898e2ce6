#include "service/server/registry.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "service/common/status_macros.h"
#include "service/common/version_table.h"
#include "service/engine/migration_set_config.h"
#include "service/engine/revision_file.h"
#include "service/server/proto_time.h"
#include "service/store/pq/pq_database.h"

namespace schemad::server {

DatabaseConnection::DatabaseConnection(std::unique_ptr<store::Database> database_in,
                                       int max_sessions)
    : database(std::move(database_in)),
      pool(std::make_unique<SessionPool>(*database, max_sessions)) {}

DatabaseEntry::DatabaseEntry(v1::DatabaseConfig config, const MigrationSetEntry& set,
                             std::shared_ptr<DatabaseConnection> connection)
    : config_(std::move(config)), set_(set), connection_(std::move(connection)) {}

engine::ExecutorOptions DatabaseEntry::ExecutorOptionsFor(const std::string& who) const {
  engine::ExecutorOptions options;
  options.lock_wait = FromProto(config_.lock_wait());
  options.timeouts.lock_timeout = FromProto(config_.lock_timeout());
  options.timeouts.statement_timeout = FromProto(config_.statement_timeout());
  options.who = who;
  options.transaction_mode = set_.transaction_scope;
  return options;
}

absl::StatusOr<std::unique_ptr<Registry>> Registry::Create(const LoadedConfig& config,
                                                           std::shared_ptr<spdlog::logger> log,
                                                           const Registry* previous) {
  std::unique_ptr<Registry> registry(new Registry());
  registry->log_ = std::move(log);
  const v1::ServerConfig& c = config.proto;
  for (int i = 0; i < c.migration_sets_size(); ++i) {
    const v1::MigrationSetConfig& set_config = c.migration_sets(i);
    const std::string context = absl::StrCat("migration_sets[", i, "] (", set_config.name(), ")");
    absl::StatusOr<std::vector<engine::Revision>> revisions =
        engine::LoadRevisionDirectory(set_config.directory());
    if (!revisions.ok()) {
      return Annotate(revisions.status(), context);
    }
    const size_t count = revisions->size();
    absl::StatusOr<engine::RevisionGraph> graph =
        engine::RevisionGraph::Build(std::move(revisions).value());
    if (!graph.ok()) {
      return Annotate(graph.status(), context);
    }
    auto entry = std::make_unique<MigrationSetEntry>();
    entry->name = set_config.name();
    entry->directory = set_config.directory();
    entry->graph = std::move(graph).value();
    absl::StatusOr<engine::LintConfig> lint_config = engine::LoadLintConfig(entry->directory);
    if (!lint_config.ok()) {
      return Annotate(lint_config.status(), context);
    }
    entry->lint_findings = engine::LintGraph(entry->graph, *lint_config);
    absl::StatusOr<engine::TransactionScope> scope = engine::ResolveTransactionScope(
        entry->directory, engine::ParseTransactionScope(set_config.transaction()));
    if (!scope.ok()) {
      return Annotate(scope.status(), context);
    }
    entry->transaction_scope = *scope;
    const auto count_of = [&](engine::LintSeverity severity) {
      return std::count_if(
          entry->lint_findings.begin(), entry->lint_findings.end(),
          [severity](const engine::LintFinding& f) { return f.severity == severity; });
    };
    registry->log_->info(
        "migration set loaded name={} directory={} revisions={} heads={} transaction={} "
        "lint_errors={} lint_warnings={}",
        entry->name, LogValue(entry->directory), count, entry->graph.heads().size(),
        engine::TransactionScopeName(entry->transaction_scope),
        count_of(engine::LintSeverity::kError), count_of(engine::LintSeverity::kWarning));
    registry->set_by_name_[entry->name] = entry.get();
    registry->sets_.push_back(std::move(entry));
  }
  for (int i = 0; i < c.databases_size(); ++i) {
    const v1::DatabaseConfig& db = c.databases(i);
    MigrationSetEntry* set = registry->set_by_name_.at(db.migration_set());
    absl::StatusOr<VersionTableName> vt = ParseVersionTableName(db.version_table());
    if (!vt.ok()) {
      return Annotate(vt.status(), absl::StrCat("databases[", i, "].version_table"));
    }
    const std::string& dsn = config.dsns.at(i);
    const int64_t connect_timeout_ms =
        absl::ToInt64Milliseconds(FromProto(c.timeouts().connect_timeout()));
    const int max_sessions = c.pools().max_sessions_per_database();
    std::shared_ptr<DatabaseConnection> connection;
    if (previous != nullptr) {
      absl::StatusOr<DatabaseEntry*> before = previous->GetDatabase(db.name());
      if (before.ok()) {
        const DatabaseConnection& old = *(*before)->connection();
        if (old.dsn == dsn && old.version_table == db.version_table() &&
            old.connect_timeout_ms == connect_timeout_ms && old.pool->max_size() == max_sessions) {
          connection = (*before)->connection();
        }
      }
    }
    if (connection == nullptr) {
      store::PqOptions options;
      options.tables.schema = vt->schema;
      options.tables.version_table = vt->table;
      options.application_name = "schemad";
      options.connect_timeout = absl::Milliseconds(connect_timeout_ms);
      absl::StatusOr<std::unique_ptr<store::Database>> database =
          store::OpenPqDatabase(dsn, options);
      if (!database.ok()) {
        return Annotate(database.status(), absl::StrCat("databases[", i, "] (", db.name(), ")"));
      }
      connection = std::make_shared<DatabaseConnection>(std::move(database).value(), max_sessions);
      connection->dsn = dsn;
      connection->version_table = db.version_table();
      connection->connect_timeout_ms = connect_timeout_ms;
    }
    v1::DatabaseConfig safe = db;  // holds no DSN: only where it comes from
    auto entry = std::make_unique<DatabaseEntry>(std::move(safe), *set, std::move(connection));
    set->databases.push_back(db.name());
    registry->log_->info("database configured name={} migration_set={} target={}", db.name(),
                         db.migration_set(), LogValue(entry->database().DisplayName()));
    registry->database_by_name_[db.name()] = entry.get();
    registry->databases_.push_back(std::move(entry));
  }
  return registry;
}

absl::StatusOr<DatabaseEntry*> Registry::GetDatabase(absl::string_view name) const {
  if (name.empty()) {
    return absl::InvalidArgumentError("the request names no database");
  }
  auto it = database_by_name_.find(name);
  if (it == database_by_name_.end()) {
    return absl::NotFoundError(
        absl::StrCat("database \"", name, "\" is not configured on this server"));
  }
  return it->second;
}

absl::StatusOr<const MigrationSetEntry*> Registry::GetMigrationSet(absl::string_view name) const {
  auto it = set_by_name_.find(name);
  if (it == set_by_name_.end()) {
    return absl::NotFoundError(
        absl::StrCat("migration set \"", name, "\" is not configured on this server"));
  }
  return it->second;
}

void Registry::Close() const {
  for (const auto& db : databases_) {
    db->pool().Close();
  }
}

}  // namespace schemad::server
