// Executor: runs plans against one target database through the store seam,
// with the guarantees of DESIGN.md "Execution on PostgreSQL":
//   - serialised per database by the migration lock (bounded wait, the holder
//     named when it runs out); the state is re-read under the lock, so many
//     callers racing to the same target apply each revision exactly once;
//   - a transactional revision commits its statements, its version-row change
//     and its history row together, or nothing;
//   - a non-transactional revision marks the database "needs attention" first
//     and clears the mark with its version-row change; a failure leaves the
//     mark, which blocks upgrades until Resolve;
//   - applied revisions whose file changed block upgrades unless allowed;
//   - a run records itself under the lock (store::RunRecord) and removes the
//     record when it ends; the next run refuses while the session of a run
//     that lost its lock is still connected (its statement may still
//     commit), and records a run that died as `interrupted` in history;
//   - what a revision changes in its session is discarded when it ends.
//
//   Executor executor(graph, database, options, &sink);
//   ASSIGN_OR_RETURN(std::unique_ptr<store::Session> session, database.Connect());
//   ASSIGN_OR_RETURN(OperationResult result, executor.Upgrade(*session, "heads"));
//
// Errors: as planner.h for targets; FAILED_PRECONDITION for needs-attention,
// changed checksums and SQL errors in a revision (message: revision,
// file:line, SQLSTATE, PostgreSQL's message); DEADLINE_EXCEEDED when the lock
// wait runs out (naming the holder); CANCELLED when cancelled; ABORTED for
// lock_timeout / deadlock in a revision, and while an earlier run's session
// is still active (naming its pid and query); UNAVAILABLE / UNKNOWN from the store
// (after UNKNOWN the state must be re-read: the executor says so).
//
// Thread-safety: an Executor holds no per-call state and may serve several
// threads, each with its own Session. Cancel flags are per call.
#ifndef SCHEMAD_SERVICE_ENGINE_EXECUTOR_H_
#define SCHEMAD_SERVICE_ENGINE_EXECUTOR_H_

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "service/engine/events.h"
#include "service/engine/migration_set_config.h"
#include "service/engine/planner.h"
#include "service/engine/revision_graph.h"
#include "service/store/store.h"

namespace schemad::engine {

struct ExecutorOptions {
  // How long to wait for another migrator's lock (separate from lock_timeout).
  absl::Duration lock_wait = absl::Seconds(60);
  // Database defaults; a revision's `lock_timeout`/`statement_timeout` headers override.
  store::Timeouts timeouts;
  // Upgrade even though an applied revision's file changed since it was applied.
  bool allow_changed = false;
  // Transaction scope of upgrade/downgrade/ensure-head:
  //   kPerRevision: each transactional revision commits on its own (with its
  //     version-row change and history row); a failure leaves the database at
  //     the last revision that committed.
  //   kPerCommand: Alembic's default env.py (no transaction_per_migration):
  //     the consecutive transactional revisions of a plan run in one
  //     transaction; a failure rolls all of them back. A non-transactional
  //     revision on the way behaves as Alembic's autocommit_block: what came
  //     before commits, it runs outside a transaction (needs-attention
  //     marking as always), and what follows runs in a new transaction. A
  //     single revision between two such points takes the pipelined path.
  //   The default is Alembic's (kPerCommand); a migration set declares its
  //   own in schemad.conf (migration_set_config.h).
  using TransactionMode = TransactionScope;
  TransactionMode transaction_mode = kDefaultTransactionScope;
  std::string who;  // client identity recorded in history
  std::string schemad_version = SCHEMAD_VERSION;
};

struct OperationResult {
  std::string operation_id;
  Plan plan;  // what ran (after the re-read under the lock)
  std::vector<std::string> rows_before;
  std::vector<std::string> rows_after;
  int revisions_run = 0;
  bool took_lock = false;  // false: answered from the unlocked read
  absl::Duration duration = absl::ZeroDuration();
};

// What a database looks like against the graph.
struct DatabaseStatus {
  bool version_table_exists = false;
  std::vector<std::string> rows;
  std::vector<std::string> graph_heads;
  int pending = 0;       // revisions `upgrade heads` would apply
  bool at_head = false;  // nothing pending and no needs-attention mark
  std::optional<store::NeedsAttention> needs_attention;
  std::string row_error;  // rows that do not fit the graph (unknown revision)
};

struct ValidationIssue {
  // kChanged: the file's SQL differs from what was applied. kCosmetic: only
  // its comments, whitespace or letter case of keywords and unquoted names
  // differ (same RevisionFingerprint, checksum.h): informational.
  // kMissingFile: applied, no file. kNoChecksum: applied without a recorded
  // checksum (adopted from Alembic): informational.
  enum class Kind { kChanged, kCosmetic, kMissingFile, kNoChecksum };
  Kind kind = Kind::kChanged;
  std::string revision;
  std::string path;
  std::string recorded_checksum;
  std::string current_checksum;
};

struct ValidationReport {
  std::vector<std::string> rows;  // the version rows that were checked
  int applied_checked = 0;
  std::vector<ValidationIssue> issues;
  bool ok() const;  // no kChanged and no kMissingFile
};

// What Repair re-recorded, and what it could not.
struct RepairResult {
  std::string operation_id;
  // kChanged, kCosmetic and kNoChecksum issues, each now recorded with its
  // file's checksum by a "repair" history row (recorded_checksum: the old one).
  std::vector<ValidationIssue> repaired;
  // kMissingFile issues: no file to take a checksum from; restore the file.
  std::vector<ValidationIssue> not_repaired;
  bool took_lock = false;
};

// Per-call controls.
struct CallControl {
  std::string operation_id;                      // generated when empty
  EventSink* sink = nullptr;                     // may be null
  const std::atomic<bool>* cancelled = nullptr;  // checked between statements
};

class Executor {
 public:
  // `graph` and `database` must outlive the executor.
  Executor(const RevisionGraph& graph, store::Database& database, ExecutorOptions options);

  absl::StatusOr<DatabaseStatus> Status(store::Session& session) const;

  // Plans from the current rows without taking the lock or changing anything.
  absl::StatusOr<Plan> PlanFor(store::Session& session, Plan::Kind kind,
                               absl::Span<const std::string> targets, bool purge = false) const;

  absl::StatusOr<OperationResult> Upgrade(store::Session& session, absl::string_view target,
                                          const CallControl& control = {}) const;
  absl::StatusOr<OperationResult> Downgrade(store::Session& session, absl::string_view target,
                                            const CallControl& control = {}) const;
  // At head: one read, no lock, nothing written. Behind: upgrade to heads
  // (unless `apply` is false: FAILED_PRECONDITION naming what is pending).
  absl::StatusOr<OperationResult> EnsureHead(store::Session& session, bool apply = true,
                                             const CallControl& control = {}) const;
  absl::StatusOr<OperationResult> Stamp(store::Session& session,
                                        absl::Span<const std::string> targets, bool purge,
                                        const CallControl& control = {}) const;

  // Clears a needs-attention mark: kApplied records the interrupted revision
  // as done (its version-row change is made), kRolledBack as not done (the
  // operator has undone what ran). Recorded in history.
  enum class Resolution { kApplied, kRolledBack };
  absl::StatusOr<OperationResult> Resolve(store::Session& session, Resolution resolution,
                                          const CallControl& control = {}) const;

  absl::StatusOr<ValidationReport> Validate(store::Session& session) const;

  // Flyway's `repair`, Atlas's `migrate hash`: under the migration lock,
  // records the current checksum (and fingerprint) of each applied revision
  // whose file changed since it ran, or that has none recorded, one "repair"
  // history row each naming who and the old and new checksum. Changes no
  // schema and no version row. Nothing to repair: an empty result, no row.
  absl::StatusOr<RepairResult> Repair(store::Session& session,
                                      const CallControl& control = {}) const;

  const RevisionGraph& graph() const { return graph_; }
  const ExecutorOptions& options() const { return options_; }

 private:
  class Run;
  class RunScope;
  struct MigrateRequest;
  // Shared path of upgrade, downgrade, stamp and ensure-head.
  absl::StatusOr<OperationResult> Migrate(Run& run, store::Session& session,
                                          const MigrateRequest& request) const;
  // Migrate without the cancel mapping (Run::AsCancelled).
  absl::StatusOr<OperationResult> MigrateOnce(Run& run, store::Session& session,
                                              const MigrateRequest& request) const;

  const RevisionGraph& graph_;
  store::Database& database_;  // named in messages
  ExecutorOptions options_;
};

// A fresh operation id ("op-" + 16 hex digits).
std::string NewOperationId();

// The planned steps of `plan`, for OperationStarted events and displays.
std::vector<PlannedStep> DescribePlan(const RevisionGraph& graph, const Plan& plan);

}  // namespace schemad::engine

#endif  // SCHEMAD_SERVICE_ENGINE_EXECUTOR_H_
