// The database seam: what the executor needs from a target database, and
// nothing about how (service/store/pq/ is the PostgreSQL implementation, the
// only code that includes libpqxx; tests/testing/fake_store.h is an in-memory
// one for unit tests of the executor).
//
//   ASSIGN_OR_RETURN(std::unique_ptr<Session> session, database.Connect());
//   ASSIGN_OR_RETURN(DatabaseState state, session->ReadState());
//   ASSIGN_OR_RETURN(std::unique_ptr<MigrationLock> lock, database.AcquireLock(wait, on_wait));
//   ASSIGN_OR_RETURN(std::unique_ptr<Transaction> tx, session->Begin());
//   RETURN_IF_ERROR(tx->Execute(statement));
//   RETURN_IF_ERROR(tx->Commit());
//
// Error contract (every method): no exception escapes; codes follow abseil's
// rules — UNAVAILABLE lost or refused connection (retry the call),
// PERMISSION_DENIED authentication refused (retrying will not help), ABORTED
// lock held elsewhere / deadlock / serialization failure / cancelled
// (retry higher up), FAILED_PRECONDITION an SQL error in a statement or a
// version table that does not match, UNKNOWN a commit whose outcome is not
// known, DEADLINE_EXCEEDED a lock wait that ran out. Messages never contain a
// DSN or password.
//
// Thread-safety: a Session and its Transaction are used by one thread at a
// time, except Session::Cancel, which any thread may call (but not while the
// Session is being destroyed). A Transaction must be destroyed before its
// Session. After UNAVAILABLE a Session stays lost: connect a new one. Database
// is thread-safe.
#ifndef SCHEMAD_SERVICE_STORE_STORE_H_
#define SCHEMAD_SERVICE_STORE_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "service/engine/planner.h"
#include "service/engine/revision.h"

namespace schemad::store {

using engine::SqlStatement;
using engine::VersionRowChange;

// Where schemad keeps its bookkeeping in a target database.
struct TableNames {
  std::string schema;  // "" = first schema on search_path (Alembic's default)
  std::string version_table = "alembic_version";
  std::string history_table = "schemad_history";
  std::string state_table = "schemad_state";  // the "needs attention" marker
};

// lock_timeout / statement_timeout for the statements of a revision. Zero
// leaves the session's setting as it is: PostgreSQL's 0 (no limit) unless the
// database or role configures one.
struct Timeouts {
  absl::Duration lock_timeout = absl::ZeroDuration();
  absl::Duration statement_timeout = absl::ZeroDuration();
};

// A non-transactional revision that started and did not finish: it blocks
// further upgrades until resolved.
struct NeedsAttention {
  std::string revision;
  std::string direction;    // "up" / "down"
  int statements_done = 0;  // statements that completed
  int statements_total = 0;
  std::string error;  // empty while still running
  std::string operation_id;
  absl::Time started = absl::InfinitePast();
};

struct DatabaseState {
  bool version_table_exists = false;
  std::vector<std::string> rows;  // alembic_version, sorted
  std::optional<NeedsAttention> needs_attention;
};

// One row of schemad_history (append-only).
struct HistoryRecord {
  int64_t id = 0;         // assigned by the store
  std::string revision;   // "" for a stamp of several revisions
  std::string direction;  // up, down, stamp, resolve
  std::vector<std::string> rows_before;
  std::vector<std::string> rows_after;
  std::string checksum;
  absl::Time started = absl::InfinitePast();
  absl::Duration duration = absl::ZeroDuration();
  std::string outcome;  // success, failed, needs_attention, applied, rolled_back
  std::string error;
  std::string who;  // client identity
  std::string operation_id;
  std::string schemad_version;
};

// The session holding the migration lock, as PostgreSQL reports it.
struct LockHolder {
  int pid = 0;
  std::string application_name;
  std::string client_address;
  absl::Time since = absl::InfinitePast();
  std::string Describe() const;  // "pid 123 (schemactl) from 10.0.0.4 since 2026-...Z"
};

// A statement failed: where and why, for the executor's message.
struct StatementError {
  std::string sqlstate;
  std::string message;
  std::optional<int> position;  // 1-based character in the statement, from PostgreSQL
};

// An open transaction on a Session. Destroying it without Commit rolls back.
class Transaction {
 public:
  virtual ~Transaction() = default;
  // SET LOCAL lock_timeout / statement_timeout for what follows.
  virtual absl::Status SetTimeouts(const Timeouts& timeouts) = 0;
  // Runs one statement. On an SQL error returns FAILED_PRECONDITION (ABORTED
  // for lock/deadlock/cancel) whose message is PostgreSQL's, and fills
  // `error` when given; the transaction is then unusable (roll back). With a
  // lock_timeout set, a lock timeout (55P03) also names, where the store
  // could find them, the sessions that blocked the statement ("...; blocked
  // by pid 1234 (psql) from 10.0.0.7, idle in transaction: LOCK TABLE ...").
  virtual absl::Status Execute(const SqlStatement& statement, StatementError* error) = 0;
  // Applies version-row changes, each of which must touch exactly one row
  // (FAILED_PRECONDITION otherwise: someone else changed the table). The store
  // may defer the writes of this and AppendHistory to the next call on the
  // transaction (at the latest Commit), so their errors may surface there.
  virtual absl::Status ApplyVersionChanges(absl::Span<const VersionRowChange> changes) = 0;
  virtual absl::Status AppendHistory(const HistoryRecord& record) = 0;
  // Writes (or with nullopt clears) the needs-attention marker.
  virtual absl::Status SetNeedsAttention(const std::optional<NeedsAttention>& marker) = 0;
  // UNKNOWN when the connection broke during COMMIT: re-read the state.
  virtual absl::Status Commit() = 0;
};

// One connection to a target database.
class Session {
 public:
  virtual ~Session() = default;
  // The version rows and the needs-attention marker, in one round trip when
  // the tables exist. A missing version table is an empty state, not an error.
  virtual absl::StatusOr<DatabaseState> ReadState() = 0;
  // Creates the version, history and state tables when missing (idempotent,
  // safe under concurrency). An existing Alembic version table is kept as is.
  virtual absl::Status EnsureTables() = 0;
  virtual absl::StatusOr<std::unique_ptr<Transaction>> Begin() = 0;
  // Runs one statement outside any transaction (non-transactional revisions);
  // errors as Transaction::Execute.
  virtual absl::Status ExecuteAutocommit(const SqlStatement& statement, const Timeouts& timeouts,
                                         StatementError* error) = 0;
  // The checksum recorded when each currently applied revision was last
  // applied successfully (revisions adopted from Alembic have none).
  virtual absl::StatusOr<std::map<std::string, std::string>> ReadAppliedChecksums() = 0;
  // History, newest first; limit <= 0 means all.
  virtual absl::StatusOr<std::vector<HistoryRecord>> ReadHistory(int limit) = 0;
  // Cancels the statement running on this session, if any. Any thread.
  virtual void Cancel() = 0;
};

// Held migration lock; released when destroyed (or when its connection dies).
class MigrationLock {
 public:
  virtual ~MigrationLock() = default;
};

// Called while AcquireLock waits, with the current holder when known.
using LockWaitCallback = std::function<void(const LockHolder& holder, absl::Duration waited)>;

// A target database.
class Database {
 public:
  virtual ~Database() = default;
  virtual absl::StatusOr<std::unique_ptr<Session>> Connect() = 0;
  // Takes the per-version-table migration lock on a dedicated connection,
  // polling without blocking inside PostgreSQL, for at most `wait`.
  // DEADLINE_EXCEEDED naming the holder when it runs out; CANCELLED when
  // `cancelled` (if set) turns true meanwhile.
  virtual absl::StatusOr<std::unique_ptr<MigrationLock>> AcquireLock(
      absl::Duration wait, const LockWaitCallback& on_wait,
      const std::function<bool()>& cancelled) = 0;
  // A name safe to show: database name, host and port, never the password.
  virtual std::string DisplayName() const = 0;
};

}  // namespace schemad::store

#endif  // SCHEMAD_SERVICE_STORE_STORE_H_
