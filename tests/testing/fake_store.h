// In-memory implementation of the store seam (service/store/store.h) for unit
// tests of the executor: version rows, history and the needs-attention mark
// live in a FakeDatabase; transactions buffer their writes and apply them on
// Commit. Statements are not interpreted: each is logged, and fails when it
// contains a substring registered with FailOn(). The run record (StartRun /
// FinishRun) lives in the FakeDatabase too; ResetState counts the resets of
// sessions that ran revision statements since their last one.
//
//   FakeDatabase db;
//   db.FailOn("BROKEN", "42601", "syntax error at or near \"BROKEN\"");
//   Executor executor(graph, db, {});
//   auto session = db.Connect();
//
// Thread-safety: FakeDatabase is thread-safe (one mutex); sessions share it.
#ifndef SCHEMAD_TESTS_TESTING_FAKE_STORE_H_
#define SCHEMAD_TESTS_TESTING_FAKE_STORE_H_

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "service/store/store.h"

namespace schemad::testing {

class FakeDatabase : public store::Database {
 public:
  struct Failure {
    std::string sqlstate;
    std::string message;
  };

  // Statements containing `needle` fail with this SQLSTATE and message.
  void FailOn(const std::string& needle, const std::string& sqlstate, const std::string& message);
  void ClearFailures();
  // EnsureTables fails with `status` (OK: succeeds again).
  void FailEnsureTables(absl::Status status);
  // The next `times` Connect calls fail with `status`.
  void FailConnect(int times, absl::Status status);
  // Makes AcquireLock behave as if another session held the lock.
  void SetLockedElsewhere(bool locked);
  // As if `run` had started (StartRun) on another session and not finished;
  // `backend` set: that session is still connected.
  void SetUnfinishedRun(const store::RunRecord& run, std::optional<store::BackendActivity> backend);

  // Inspection.
  std::vector<std::string> rows() const;
  std::vector<store::HistoryRecord> history() const;
  std::optional<store::NeedsAttention> needs_attention() const;
  std::vector<std::string> committed_statements() const;  // in commit order
  int lock_acquisitions() const;
  int connects() const;  // Connect calls, failed ones included
  int state_reads() const;
  // The run in progress (StartRun committed, FinishRun not yet called).
  std::optional<store::RunRecord> run() const;
  // ResetState calls that found revision state to discard (any session).
  int resets() const;
  bool tables_exist() const;
  // Direct setup, as if stamped by another tool.
  void SetRows(std::vector<std::string> rows);
  // As if another run had marked (or, nullopt, cleared) the database.
  void SetNeedsAttention(std::optional<store::NeedsAttention> mark);
  void SetChecksum(const std::string& revision, const std::string& checksum);

  // store::Database
  absl::StatusOr<std::unique_ptr<store::Session>> Connect() override;
  std::string DisplayName() const override { return "fake"; }

 private:
  friend class FakeSession;
  friend class FakeTransaction;
  friend class FakeLock;

  mutable std::mutex mu_;
  bool tables_exist_ = false;
  std::vector<std::string> rows_;
  std::vector<store::HistoryRecord> history_;
  std::optional<store::NeedsAttention> needs_attention_;
  std::vector<std::string> committed_statements_;
  std::map<std::string, Failure> failures_;
  absl::Status ensure_tables_status_;
  int connect_failures_left_ = 0;
  absl::Status connect_status_;
  int connects_ = 0;
  bool locked_ = false;
  bool locked_elsewhere_ = false;
  int lock_acquisitions_ = 0;
  int state_reads_ = 0;
  std::optional<store::RunRecord> run_;
  const void* run_session_ = nullptr;  // the FakeSession that started run_
  std::optional<store::BackendActivity> run_backend_;
  int resets_ = 0;

  absl::StatusOr<std::unique_ptr<store::MigrationLock>> AcquireLock(
      absl::Duration wait, const store::LockWaitCallback& on_wait,
      const std::function<bool()>& cancelled);
};

}  // namespace schemad::testing

#endif  // SCHEMAD_TESTS_TESTING_FAKE_STORE_H_
