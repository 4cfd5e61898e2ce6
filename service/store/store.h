// The database seam: what the executor needs from a target database, and
// nothing about how (service/store/pq/ is the PostgreSQL implementation, the
// only code that includes libpqxx; tests/testing/fake_store.h is an in-memory
// one for unit tests of the executor).
//
//   ASSIGN_OR_RETURN(std::unique_ptr<Session> session, database.Connect());
//   ASSIGN_OR_RETURN(DatabaseState state, session->ReadState());
//   ASSIGN_OR_RETURN(std::unique_ptr<MigrationLock> lock,
//                    session->AcquireLock(wait, on_wait, cancelled));
//   ASSIGN_OR_RETURN(std::optional<UnfinishedRun> earlier, session->ReadUnfinishedRun());
//   ASSIGN_OR_RETURN(std::unique_ptr<Transaction> tx, session->Begin());
//   RETURN_IF_ERROR(tx->StartRun(run));
//   RETURN_IF_ERROR(tx->Execute(statement));
//   RETURN_IF_ERROR(tx->Commit());
//   RETURN_IF_ERROR(session->FinishRun());
//
// Where the bookkeeping lives: a session resolves the schema of the version
// table once, before its first statement (TableNames::schema "" means the schema the
// unqualified name finds on the search_path, or the first existing schema of
// the search_path when there is no such table yet: Alembic's default), and
// from then on every statement schemad sends names the tables
// schema-qualified. The migration lock's key comes from that resolved
// identity, so `alembic_version` and `public.alembic_version` share one lock.
//
// Session state: what revision statements change in their session (SET and
// set_config, SET ROLE, temporary tables, prepared statements, LISTEN,
// advisory locks) lasts until the revision ends and never reaches the next
// revision, schemad's own bookkeeping or the next user of the session: a
// transactional revision's bookkeeping discards it in the revision's own
// transaction (so it is gone with the COMMIT); after a non-transactional
// revision or a rolled-back one the executor calls ResetState.
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
#include "service/schema/schema_model.h"

namespace schemad::store {

using engine::SqlStatement;
using engine::VersionRowChange;

// Where schemad keeps its bookkeeping in a target database.
struct TableNames {
  std::string schema;  // "" = first schema on search_path (Alembic's default)
  std::string version_table = "alembic_version";
  std::string history_table = "schemad_history";
  std::string state_table = "schemad_state";  // the "needs attention" marker
  std::string run_table = "schemad_run";      // the run in progress (see RunRecord)
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
  std::string direction;  // up, down, stamp, resolve, repair
  std::vector<std::string> rows_before;
  std::vector<std::string> rows_after;
  std::string checksum;
  // RevisionFingerprint (checksum.h) of the revision recorded; "" when none.
  std::string fingerprint;
  // direction "repair": the checksum recorded before this row re-recorded it
  // ("" when there was none, e.g. a revision adopted from Alembic).
  std::string previous_checksum;
  absl::Time started = absl::InfinitePast();
  absl::Duration duration = absl::ZeroDuration();
  // success, failed, needs_attention, applied, rolled_back; interrupted: a run
  // that died, recorded by the run that noticed it (see RunRecord)
  std::string outcome;
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

// A session of PostgreSQL, as pg_stat_activity shows it.
struct BackendActivity {
  LockHolder backend;  // pid, application_name, client address; `since`: when its query started
  std::string state;   // "active", "idle in transaction", "idle", ...
  std::string query;   // the current (or last) statement, shortened
  std::string Describe()
      const;  // "pid 123 (schemactl op-...) from 10.0.0.4 since ..., active: SELECT ..."
};

// One operation under the migration lock (upgrade, downgrade, stamp,
// ensure-head, resolve), recorded when it starts and removed when it ends, so
// that a run that died (client or schemad killed, connection lost, PostgreSQL
// restarted) is noticed by the next one.
struct RunRecord {
  std::string operation_id;
  std::string operation;  // "upgrade", "downgrade", "stamp", "ensure-head", "resolve"
  std::string target;
  std::string who;
  std::string schemad_version;
  absl::Time started = absl::InfinitePast();
  // Set by the store: the backend that runs the operation's statements
  // (a pid is reused; pid and backend start together name one backend).
  int pid = 0;
  absl::Time backend_start = absl::InfinitePast();
  std::string application_name;
};

// A run that started and never finished.
struct UnfinishedRun {
  RunRecord run;
  // Its backend while it is still connected: whatever it is doing may still
  // change the database (a killed client does not stop its statement).
  std::optional<BackendActivity> backend;
};

// A statement failed: where and why, for the executor's message.
struct StatementError {
  std::string sqlstate;
  std::string message;
  std::optional<int> position;  // 1-based character in the statement, from PostgreSQL
};

// Held migration lock; released when destroyed (or when its connection dies).
class MigrationLock {
 public:
  virtual ~MigrationLock() = default;
};

// Called while AcquireLock waits, with the current holder when known.
using LockWaitCallback = std::function<void(const LockHolder& holder, absl::Duration waited)>;

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
  // Records that `run` starts on this transaction's session (replacing the
  // record of an earlier run of the version table) and tags the session's
  // backend: its application_name gets the operation id until FinishRun. The
  // store fills in pid, backend_start and application_name. Takes effect
  // with the Commit.
  virtual absl::Status StartRun(const RunRecord& run) = 0;
  // UNKNOWN when the connection broke during COMMIT: re-read the state.
  virtual absl::Status Commit() = 0;

  // A whole transactional revision: runs `statements` in order, then applies
  // `changes` (as ApplyVersionChanges) and appends `history` (as
  // AppendHistory), then commits, in as few round trips as the store can
  // (the PostgreSQL store: two, a libpq pipeline then COMMIT; this default: one
  // call per statement, then Commit). Call it on a transaction on which
  // nothing but SetTimeouts ran; it finishes the transaction either way.
  //
  // Progress: `on_started(i)` (if set) is called once per statement, in
  // order, when statement i is running as far as the client can tell:
  // statement 0 as the revision is sent, statement i + 1 when statement i's
  // result has arrived (so it may lag the server by a result's latency). It
  // may call Session::Cancel to stop the statement running. `cancelled` (if
  // set) is asked before each statement where the store runs them one by one,
  // and before COMMIT: when it says true the revision is rolled back and the
  // call returns CANCELLED.
  //
  // `history.duration` is the time before this call; the store adds the time
  // the statements and the bookkeeping took.
  //
  // Errors: an error in statement i sets `*failed_index` to i and fills
  // `error`, with codes as Execute; an error in the bookkeeping sets it to -1,
  // codes as ApplyVersionChanges; UNKNOWN when the connection broke and the
  // COMMIT may have run. On any error nothing of the revision is applied.
  virtual absl::Status ExecuteAndCommit(absl::Span<const SqlStatement> statements,
                                        absl::Span<const VersionRowChange> changes,
                                        const HistoryRecord& history,
                                        const std::function<void(int)>& on_started,
                                        const std::function<bool()>& cancelled, int* failed_index,
                                        StatementError* error);

  // One transactional revision of a longer transaction (the per-command
  // scope): as ExecuteAndCommit without the COMMIT. The transaction stays
  // open for the next revision (SetTimeouts, then ExecuteRevision again) and
  // Commit ends it; what the revision's statements changed in the session is
  // discarded before its bookkeeping, so it does not reach the next revision.
  // A transaction on which ExecuteRevision ran takes only SetTimeouts,
  // ExecuteRevision and Commit (the PostgreSQL store: one round trip per
  // revision, a libpq pipeline, then one for COMMIT). Progress, `cancelled`
  // (asked before each statement where the store runs them one by one),
  // `history.duration` and errors as ExecuteAndCommit, except that on an error
  // the whole transaction is rolled back (nothing of it is applied) and is
  // unusable. The store may keep the history rows until Commit (the
  // PostgreSQL store writes them as one INSERT in front of COMMIT): a failure
  // to write them is then Commit's error, and nothing is committed.
  virtual absl::Status ExecuteRevision(absl::Span<const SqlStatement> statements,
                                       absl::Span<const VersionRowChange> changes,
                                       const HistoryRecord& history,
                                       const std::function<void(int)>& on_started,
                                       const std::function<bool()>& cancelled, int* failed_index,
                                       StatementError* error);
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
  // errors as Transaction::Execute. What the statement changes in the
  // session lasts (for the revision's next statements) until ResetState.
  virtual absl::Status ExecuteAutocommit(const SqlStatement& statement, const Timeouts& timeouts,
                                         StatementError* error) = 0;
  // Discards what revision statements changed in this session (settings,
  // role, temporary objects, prepared statements, LISTEN, session advisory
  // locks), so that the session is as it was after connecting (still tagged
  // while a run is started on it). No round trip when no revision statement
  // ran since the last reset. FAILED_PRECONDITION inside a transaction.
  virtual absl::Status ResetState() = 0;
  // The migration lock of this session's version table (its resolved,
  // schema-qualified identity), taken on a dedicated connection by polling
  // without blocking inside PostgreSQL, for at most `wait`.
  // DEADLINE_EXCEEDED naming the holder when it runs out; CANCELLED when
  // `cancelled` (if set) turns true meanwhile.
  virtual absl::StatusOr<std::unique_ptr<MigrationLock>> AcquireLock(
      absl::Duration wait, const LockWaitCallback& on_wait,
      const std::function<bool()>& cancelled) = 0;
  // Under the migration lock: the run of this version table that started
  // (Transaction::StartRun) and did not finish (FinishRun), if any, with its
  // backend when that is still connected. A record left by this very session
  // is not returned (its run ended; only the cleanup failed).
  virtual absl::StatusOr<std::optional<UnfinishedRun>> ReadUnfinishedRun() = 0;
  // Ends the run started on this session: removes its record, then
  // ResetState and removes the tag. Without a started run only ResetState.
  virtual absl::Status FinishRun() = 0;
  // The checksum recorded when each currently applied revision was last
  // applied successfully (revisions adopted from Alembic have none).
  // A "repair" row re-records the checksum of an applied revision.
  virtual absl::StatusOr<std::map<std::string, std::string>> ReadAppliedChecksums() = 0;
  // The fingerprints recorded with the same rows as ReadAppliedChecksums'
  // checksums; a revision recorded without one is absent.
  virtual absl::StatusOr<std::map<std::string, std::string>> ReadAppliedFingerprints() = 0;
  // History, newest first; limit <= 0 means all.
  virtual absl::StatusOr<std::vector<HistoryRecord>> ReadHistory(int limit) = 0;
  // Cancels the statement running on this session, if any. Any thread.
  virtual void Cancel() = 0;
  // The database's schema as the canonical model (schema_model.h), read in a
  // few catalog queries in one read-only transaction, leaving out schemad's
  // and Alembic's tables (this session's TableNames) and everything else the
  // model's contract leaves out. The session's settings are as they were
  // afterwards. UNIMPLEMENTED for stores that cannot inspect.
  virtual absl::StatusOr<schema::DatabaseSchema> InspectSchema() {
    return absl::UnimplementedError("this store cannot inspect schemas");
  }
};

// A target database.
class Database {
 public:
  virtual ~Database() = default;
  // A new session; it resolves where the bookkeeping lives (see above)
  // with its first call, which is FAILED_PRECONDITION when the version
  // table's schema cannot be resolved (no such table and no existing schema
  // on the search_path). The session's methods other than ResetState and
  // Cancel resolve before anything else.
  virtual absl::StatusOr<std::unique_ptr<Session>> Connect() = 0;
  // For a caller whose next session will take the migration lock: starts
  // the login of the lock's dedicated connection in the background, so that
  // it overlaps the session's own login in the next Connect, which hands it
  // to that session's AcquireLock. Unused, it is closed with the session (or
  // with the database when no Connect follows). A failure is not reported
  // here: AcquireLock then connects again and reports its own. Optional: by
  // default nothing.
  virtual void PrepareLock() {}
  // A name safe to show: database name, host and port, never the password.
  virtual std::string DisplayName() const = 0;
};

}  // namespace schemad::store

#endif  // SCHEMAD_SERVICE_STORE_STORE_H_
