#include "tests/testing/fake_store.h"

#include <algorithm>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace schemad::testing {

namespace {
absl::Status ApplyChange(std::vector<std::string>& rows, const store::VersionRowChange& change) {
  using Kind = store::VersionRowChange::Kind;
  auto it = std::find(rows.begin(), rows.end(), change.from);
  switch (change.kind) {
    case Kind::kInsert:
      if (std::find(rows.begin(), rows.end(), change.to) != rows.end()) {
        return absl::FailedPreconditionError(absl::StrCat("duplicate version row ", change.to));
      }
      rows.push_back(change.to);
      break;
    case Kind::kDelete:
      if (it == rows.end()) {
        return absl::FailedPreconditionError(
            absl::StrCat("expected to match one row when deleting '", change.from, "'; 0 found"));
      }
      rows.erase(it);
      break;
    case Kind::kUpdate:
      if (it == rows.end()) {
        return absl::FailedPreconditionError(
            absl::StrCat("expected to match one row when updating '", change.from, "' to '",
                         change.to, "'; 0 found"));
      }
      *it = change.to;
      break;
  }
  std::sort(rows.begin(), rows.end());
  return absl::OkStatus();
}
}  // namespace

class FakeTransaction : public store::Transaction {
 public:
  // `session`: who started it (for StartRun); `dirty`: set by revision
  // statements and, as the PostgreSQL store's bookkeeping does, cleared by a
  // Commit after them unless `autocommit`.
  FakeTransaction(FakeDatabase& db, const void* session, bool* dirty, bool autocommit = false)
      : db_(db), session_(session), dirty_(dirty), autocommit_(autocommit) {
    std::lock_guard<std::mutex> lock(db_.mu_);
    rows_ = db_.rows_;
    marker_ = db_.needs_attention_;
  }
  absl::Status SetTimeouts(const store::Timeouts&) override { return Usable(); }
  absl::Status Execute(const store::SqlStatement& statement,
                       store::StatementError* error) override {
    if (absl::Status s = Usable(); !s.ok()) {
      return s;
    }
    *dirty_ = true;
    ran_statements_ = true;
    std::lock_guard<std::mutex> lock(db_.mu_);
    for (const auto& [needle, failure] : db_.failures_) {
      if (absl::StrContains(statement.text, needle)) {
        broken_ = true;
        if (error != nullptr) {
          error->sqlstate = failure.sqlstate;
          error->message = failure.message;
        }
        return absl::FailedPreconditionError(
            absl::StrCat("SQLSTATE ", failure.sqlstate, ": ", failure.message));
      }
    }
    statements_.push_back(statement.text);
    return absl::OkStatus();
  }
  absl::Status ApplyVersionChanges(absl::Span<const store::VersionRowChange> changes) override {
    if (absl::Status s = Usable(); !s.ok()) {
      return s;
    }
    for (const auto& change : changes) {
      if (absl::Status s = ApplyChange(rows_, change); !s.ok()) {
        broken_ = true;
        return s;
      }
    }
    rows_changed_ = true;
    return absl::OkStatus();
  }
  absl::Status AppendHistory(const store::HistoryRecord& record) override {
    history_.push_back(record);
    return Usable();
  }
  absl::Status SetNeedsAttention(const std::optional<store::NeedsAttention>& marker) override {
    marker_ = marker;
    marker_changed_ = true;
    return Usable();
  }
  absl::Status StartRun(const store::RunRecord& run) override {
    started_run_ = run;
    started_run_->pid = 1000;
    started_run_->application_name = "fake " + run.operation_id;
    return Usable();
  }
  absl::Status Commit() override {
    if (absl::Status s = Usable(); !s.ok()) {
      return s;
    }
    if (ran_statements_ && !autocommit_) {
      *dirty_ = false;
    }
    std::lock_guard<std::mutex> lock(db_.mu_);
    if (started_run_.has_value()) {
      db_.run_ = started_run_;
      db_.run_session_ = session_;
      db_.run_backend_.reset();
    }
    if (rows_changed_) {
      db_.rows_ = rows_;
    }
    if (marker_changed_) {
      db_.needs_attention_ = marker_;
    }
    for (auto& h : history_) {
      h.id = static_cast<int64_t>(db_.history_.size()) + 1;
      db_.history_.push_back(h);
    }
    db_.committed_statements_.insert(db_.committed_statements_.end(), statements_.begin(),
                                     statements_.end());
    committed_ = true;
    return absl::OkStatus();
  }

 private:
  absl::Status Usable() const {
    if (broken_ || committed_) {
      return absl::FailedPreconditionError("transaction is not usable");
    }
    return absl::OkStatus();
  }
  FakeDatabase& db_;
  const void* session_;
  bool* dirty_;
  const bool autocommit_;
  bool ran_statements_ = false;
  std::optional<store::RunRecord> started_run_;
  std::vector<std::string> rows_;
  std::optional<store::NeedsAttention> marker_;
  std::vector<store::HistoryRecord> history_;
  std::vector<std::string> statements_;
  bool rows_changed_ = false;
  bool marker_changed_ = false;
  bool broken_ = false;
  bool committed_ = false;
};

class FakeSession : public store::Session {
 public:
  explicit FakeSession(FakeDatabase& db) : db_(db) {}
  absl::StatusOr<store::DatabaseState> ReadState() override {
    std::lock_guard<std::mutex> lock(db_.mu_);
    ++db_.state_reads_;
    store::DatabaseState state;
    state.version_table_exists = db_.tables_exist_;
    state.rows = db_.rows_;
    state.needs_attention = db_.needs_attention_;
    return state;
  }
  absl::Status EnsureTables() override {
    std::lock_guard<std::mutex> lock(db_.mu_);
    if (!db_.ensure_tables_status_.ok()) {
      return db_.ensure_tables_status_;
    }
    db_.tables_exist_ = true;
    return absl::OkStatus();
  }
  absl::StatusOr<std::unique_ptr<store::Transaction>> Begin() override {
    return std::make_unique<FakeTransaction>(db_, this, &dirty_);
  }
  absl::Status ExecuteAutocommit(const store::SqlStatement& statement, const store::Timeouts&,
                                 store::StatementError* error) override {
    FakeTransaction tx(db_, this, &dirty_, /*autocommit=*/true);
    if (absl::Status s = tx.Execute(statement, error); !s.ok()) {
      return s;
    }
    return tx.Commit();
  }
  // `field` of the row that last recorded each applied revision (as the
  // PostgreSQL store reads it); empty values are absent.
  std::map<std::string, std::string> ReadApplied(std::string store::HistoryRecord::*field) {
    std::lock_guard<std::mutex> lock(db_.mu_);
    std::map<std::string, std::string> out;
    std::map<std::string, std::string> direction;
    for (const auto& h : db_.history_) {
      if ((h.outcome == "success" || h.outcome == "applied") &&
          (h.direction == "up" || h.direction == "down" || h.direction == "resolve" ||
           h.direction == "repair")) {
        out[h.revision] = h.*field;
        direction[h.revision] = h.direction;
      }
    }
    for (auto it = out.begin(); it != out.end();) {
      it = direction[it->first] == "down" || it->second.empty() ? out.erase(it) : std::next(it);
    }
    return out;
  }
  absl::StatusOr<std::map<std::string, std::string>> ReadAppliedChecksums() override {
    return ReadApplied(&store::HistoryRecord::checksum);
  }
  absl::StatusOr<std::map<std::string, std::string>> ReadAppliedFingerprints() override {
    return ReadApplied(&store::HistoryRecord::fingerprint);
  }
  absl::StatusOr<std::vector<store::HistoryRecord>> ReadHistory(int limit) override {
    std::lock_guard<std::mutex> lock(db_.mu_);
    std::vector<store::HistoryRecord> out(db_.history_.rbegin(), db_.history_.rend());
    if (limit > 0 && static_cast<int>(out.size()) > limit) {
      out.resize(limit);
    }
    return out;
  }
  void Cancel() override {}
  absl::Status ResetState() override {
    if (dirty_) {
      std::lock_guard<std::mutex> lock(db_.mu_);
      ++db_.resets_;
      dirty_ = false;
    }
    return absl::OkStatus();
  }
  absl::StatusOr<std::unique_ptr<store::MigrationLock>> AcquireLock(
      absl::Duration wait, const store::LockWaitCallback& on_wait,
      const std::function<bool()>& cancelled) override {
    return db_.AcquireLock(wait, on_wait, cancelled);
  }
  absl::StatusOr<std::optional<store::UnfinishedRun>> ReadUnfinishedRun() override {
    std::lock_guard<std::mutex> lock(db_.mu_);
    if (!db_.run_.has_value() || db_.run_session_ == this) {
      return std::optional<store::UnfinishedRun>();
    }
    return std::optional<store::UnfinishedRun>(store::UnfinishedRun{*db_.run_, db_.run_backend_});
  }
  absl::Status FinishRun() override {
    {
      std::lock_guard<std::mutex> lock(db_.mu_);
      if (db_.run_.has_value() && db_.run_session_ == this) {
        db_.run_.reset();
        db_.run_session_ = nullptr;
      }
    }
    return ResetState();
  }

 private:
  FakeDatabase& db_;
  bool dirty_ = false;
};

class FakeLock : public store::MigrationLock {
 public:
  explicit FakeLock(FakeDatabase& db) : db_(db) {}
  ~FakeLock() override {
    std::lock_guard<std::mutex> lock(db_.mu_);
    db_.locked_ = false;
  }

 private:
  FakeDatabase& db_;
};

void FakeDatabase::FailOn(const std::string& needle, const std::string& sqlstate,
                          const std::string& message) {
  std::lock_guard<std::mutex> lock(mu_);
  failures_[needle] = Failure{sqlstate, message};
}
void FakeDatabase::ClearFailures() {
  std::lock_guard<std::mutex> lock(mu_);
  failures_.clear();
}
void FakeDatabase::SetLockedElsewhere(bool locked) {
  std::lock_guard<std::mutex> lock(mu_);
  locked_elsewhere_ = locked;
}
void FakeDatabase::SetUnfinishedRun(const store::RunRecord& run,
                                    std::optional<store::BackendActivity> backend) {
  std::lock_guard<std::mutex> lock(mu_);
  tables_exist_ = true;
  run_ = run;
  run_session_ = nullptr;
  run_backend_ = std::move(backend);
}
std::optional<store::RunRecord> FakeDatabase::run() const {
  std::lock_guard<std::mutex> lock(mu_);
  return run_;
}
int FakeDatabase::resets() const {
  std::lock_guard<std::mutex> lock(mu_);
  return resets_;
}
std::vector<std::string> FakeDatabase::rows() const {
  std::lock_guard<std::mutex> lock(mu_);
  return rows_;
}
std::vector<store::HistoryRecord> FakeDatabase::history() const {
  std::lock_guard<std::mutex> lock(mu_);
  return history_;
}
std::optional<store::NeedsAttention> FakeDatabase::needs_attention() const {
  std::lock_guard<std::mutex> lock(mu_);
  return needs_attention_;
}
std::vector<std::string> FakeDatabase::committed_statements() const {
  std::lock_guard<std::mutex> lock(mu_);
  return committed_statements_;
}
int FakeDatabase::lock_acquisitions() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lock_acquisitions_;
}
int FakeDatabase::state_reads() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_reads_;
}
bool FakeDatabase::tables_exist() const {
  std::lock_guard<std::mutex> lock(mu_);
  return tables_exist_;
}
void FakeDatabase::SetRows(std::vector<std::string> rows) {
  std::lock_guard<std::mutex> lock(mu_);
  std::sort(rows.begin(), rows.end());
  rows_ = std::move(rows);
  tables_exist_ = true;
}
void FakeDatabase::SetChecksum(const std::string& revision, const std::string& checksum) {
  std::lock_guard<std::mutex> lock(mu_);
  store::HistoryRecord h;
  h.id = static_cast<int64_t>(history_.size()) + 1;
  h.revision = revision;
  h.direction = "up";
  h.outcome = "success";
  h.checksum = checksum;
  history_.push_back(h);
}

absl::StatusOr<std::unique_ptr<store::Session>> FakeDatabase::Connect() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++connects_;
    if (connect_failures_left_ > 0) {
      --connect_failures_left_;
      return connect_status_;
    }
  }
  return std::make_unique<FakeSession>(*this);
}

void FakeDatabase::FailConnect(int times, absl::Status status) {
  std::lock_guard<std::mutex> lock(mu_);
  connect_failures_left_ = times;
  connect_status_ = std::move(status);
}

int FakeDatabase::connects() const {
  std::lock_guard<std::mutex> lock(mu_);
  return connects_;
}

void FakeDatabase::SetNeedsAttention(std::optional<store::NeedsAttention> mark) {
  std::lock_guard<std::mutex> lock(mu_);
  needs_attention_ = std::move(mark);
}

void FakeDatabase::FailEnsureTables(absl::Status status) {
  std::lock_guard<std::mutex> lock(mu_);
  ensure_tables_status_ = std::move(status);
}

absl::StatusOr<std::unique_ptr<store::MigrationLock>> FakeDatabase::AcquireLock(
    absl::Duration wait, const store::LockWaitCallback& on_wait,
    const std::function<bool()>& cancelled) {
  const absl::Time deadline = absl::Now() + wait;
  const absl::Time start = absl::Now();
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!locked_ && !locked_elsewhere_) {
        locked_ = true;
        ++lock_acquisitions_;
        return std::make_unique<FakeLock>(*this);
      }
    }
    if (cancelled && cancelled()) {
      return absl::CancelledError("cancelled while waiting for the migration lock");
    }
    store::LockHolder holder;
    holder.pid = 4242;
    holder.application_name = "other-migrator";
    if (on_wait) {
      on_wait(holder, absl::Now() - start);
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("timed out after ", absl::FormatDuration(wait),
                       " waiting for the migration lock on fake; held by ", holder.Describe()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

}  // namespace schemad::testing
