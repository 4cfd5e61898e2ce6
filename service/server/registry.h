// The server's view of its configuration: migration sets loaded into revision
// graphs, and databases opened as store::Databases with a session pool each.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<Registry> registry, Registry::Create(config, log));
//   ASSIGN_OR_RETURN(DatabaseEntry* db, registry->GetDatabase("site-a"));   // NOT_FOUND
//   engine::Executor executor(db->set().graph, db->database(), db->ExecutorOptionsFor(who));
//
// Nothing connects at Create; the server's PoolWarmer opens the first sessions.
// A reload creates a new Registry from the new configuration and the running
// one: a database configured alike in both (same DSN, version table, connect
// timeout and pool size) keeps its store and pool, warm sessions included.
//
// Thread-safety: immutable after Create (the pools are thread-safe).
#ifndef SCHEMAD_SERVICE_SERVER_REGISTRY_H_
#define SCHEMAD_SERVICE_SERVER_REGISTRY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "service/engine/executor.h"
#include "service/engine/lint.h"
#include "service/engine/revision_graph.h"
#include "service/server/config.h"
#include "service/server/log_format.h"
#include "service/server/session_pool.h"
#include "service/store/store.h"
#include "spdlog/logger.h"

namespace schemad::server {

struct MigrationSetEntry {
  std::string name;
  std::string directory;
  engine::RevisionGraph graph;
  std::vector<std::string> databases;  // configured databases using this set
  // Transaction scope when a request leaves it unspecified: the server
  // configuration's, else the directory's schemad.conf, else per command.
  engine::TransactionScope transaction_scope = engine::kDefaultTransactionScope;
  // engine::LintGraph of the set at load, with its schemad-lint.conf.
  std::vector<engine::LintFinding> lint_findings;
};

// A database's store and its session pool, shared by the registries (of
// successive reloads) that configure the database alike.
struct DatabaseConnection {
  DatabaseConnection(std::unique_ptr<store::Database> database, int max_sessions);
  std::unique_ptr<store::Database> database;
  std::unique_ptr<SessionPool> pool;  // over *database
  // What a reload compares to reuse the connection. `dsn` is secret.
  std::string dsn;
  std::string version_table;
  int64_t connect_timeout_ms = 0;
};

class DatabaseEntry {
 public:
  DatabaseEntry(v1::DatabaseConfig config, const MigrationSetEntry& set,
                std::shared_ptr<DatabaseConnection> connection);

  const std::string& name() const { return config_.name(); }
  const v1::DatabaseConfig& config() const { return config_; }  // DSN-free
  const MigrationSetEntry& set() const { return set_; }
  store::Database& database() const { return *connection_->database; }
  SessionPool& pool() const { return *connection_->pool; }
  const std::shared_ptr<DatabaseConnection>& connection() const { return connection_; }

  // The executor options of this database (lock_wait, lock_timeout,
  // statement_timeout) with `who` recorded in history.
  engine::ExecutorOptions ExecutorOptionsFor(const std::string& who) const;

 private:
  v1::DatabaseConfig config_;
  const MigrationSetEntry& set_;
  std::shared_ptr<DatabaseConnection> connection_;
};

class Registry {
 public:
  // Loads every migration set (FAILED_PRECONDITION / INVALID_ARGUMENT /
  // NOT_FOUND with the engine's message, prefixed `migration_sets[i] (name)`)
  // and opens every database (INVALID_ARGUMENT prefixed `databases[i]` when
  // its DSN or version table is refused). Does not connect. With `previous`
  // (a reload), databases configured alike share its connections.
  static absl::StatusOr<std::unique_ptr<Registry>> Create(const LoadedConfig& config,
                                                          std::shared_ptr<spdlog::logger> log,
                                                          const Registry* previous = nullptr);

  // NOT_FOUND naming the database when it is not configured.
  absl::StatusOr<DatabaseEntry*> GetDatabase(absl::string_view name) const;
  absl::StatusOr<const MigrationSetEntry*> GetMigrationSet(absl::string_view name) const;

  const std::vector<std::unique_ptr<DatabaseEntry>>& databases() const { return databases_; }
  const std::vector<std::unique_ptr<MigrationSetEntry>>& migration_sets() const { return sets_; }

  // Closes every pool.
  void Close() const;

 private:
  Registry() = default;
  std::shared_ptr<spdlog::logger> log_;
  std::vector<std::unique_ptr<MigrationSetEntry>> sets_;
  std::vector<std::unique_ptr<DatabaseEntry>> databases_;
  absl::flat_hash_map<std::string, MigrationSetEntry*> set_by_name_;
  absl::flat_hash_map<std::string, DatabaseEntry*> database_by_name_;
};

}  // namespace schemad::server

#endif  // SCHEMAD_SERVICE_SERVER_REGISTRY_H_
