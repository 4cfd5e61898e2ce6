// Unit tests of the executor's logic over the in-memory store. The same
// behaviours run against real PostgreSQL in tests/cli/cli_pgtest.cc and
// tests/store/.
#include "service/engine/executor.h"

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/engine/checksum.h"
#include "tests/testing/fake_store.h"
#include "tests/testing/status_matchers.h"

namespace schemad::engine {
namespace {

using ::schemad::testing::FakeDatabase;
using ::schemad::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

SqlSection Section(std::vector<std::string> statements, int first_line = 10) {
  SqlSection section;
  section.line = first_line - 1;
  for (size_t i = 0; i < statements.size(); ++i) {
    section.statements.push_back({statements[i], first_line + static_cast<int>(i)});
    section.body += statements[i] + ";\n";
  }
  return section;
}

Revision Rev(std::string id, std::vector<std::string> revises, std::vector<std::string> up,
             std::optional<std::vector<std::string>> down = std::vector<std::string>{}) {
  Revision rev;
  rev.id = id;
  rev.revises = std::move(revises);
  rev.path = "migrations/" + id + ".sql";
  rev.id_line = 1;
  rev.upgrade = Section(std::move(up));
  if (down) {
    rev.downgrade = Section(*down, 20);
  }
  rev.checksum = RevisionChecksum(rev.upgrade, rev.downgrade);
  return rev;
}

// a <- b <- c <- d <- e, each creating and dropping a table.
std::vector<Revision> Linear() {
  std::vector<Revision> revs;
  std::string parent;
  for (const char* id : {"a", "b", "c", "d", "e"}) {
    revs.push_back(
        Rev(id, parent.empty() ? std::vector<std::string>{} : std::vector<std::string>{parent},
            {std::string("CREATE TABLE t_") + id + " (id int)"},
            std::vector<std::string>{std::string("DROP TABLE t_") + id}));
    parent = id;
  }
  return revs;
}

class RecordingSink : public EventSink {
 public:
  void OnEvent(const Event& event) override { events.push_back(event); }
  std::vector<Event::Kind> kinds() const {
    std::vector<Event::Kind> out;
    for (const Event& e : events) {
      out.push_back(e.kind);
    }
    return out;
  }
  std::vector<Event> events;
};

class ExecutorTest : public ::testing::Test {
 protected:
  // Each revision commits on its own (the default is per command).
  static ExecutorOptions PerRevision() {
    ExecutorOptions options;
    options.transaction_mode = ExecutorOptions::TransactionMode::kPerRevision;
    return options;
  }

  void Load(std::vector<Revision> revisions, ExecutorOptions options = {}) {
    auto graph = RevisionGraph::Build(std::move(revisions));
    ASSERT_TRUE(graph.ok()) << graph.status();
    graph_ = std::make_unique<RevisionGraph>(std::move(*graph));
    options.lock_wait = absl::Milliseconds(50);
    options.who = "tester";
    executor_ = std::make_unique<Executor>(*graph_, db_, options);
    auto session = db_.Connect();
    ASSERT_TRUE(session.ok());
    session_ = std::move(*session);
  }

  FakeDatabase db_;
  std::unique_ptr<RevisionGraph> graph_;
  std::unique_ptr<Executor> executor_;
  std::unique_ptr<store::Session> session_;
};

TEST_F(ExecutorTest, UpgradeAppliesInOrderWithHistoryAndEvents) {
  Load(Linear());
  RecordingSink sink;
  CallControl control;
  control.sink = &sink;
  ASSERT_OK_AND_ASSIGN(OperationResult result, executor_->Upgrade(*session_, "heads", control));
  EXPECT_EQ(result.revisions_run, 5);
  EXPECT_TRUE(result.took_lock);
  EXPECT_THAT(result.rows_after, ElementsAre("e"));
  EXPECT_THAT(db_.rows(), ElementsAre("e"));
  EXPECT_THAT(db_.committed_statements(),
              ElementsAre("CREATE TABLE t_a (id int)", "CREATE TABLE t_b (id int)",
                          "CREATE TABLE t_c (id int)", "CREATE TABLE t_d (id int)",
                          "CREATE TABLE t_e (id int)"));
  std::vector<store::HistoryRecord> history = db_.history();
  ASSERT_EQ(history.size(), 5u);
  EXPECT_EQ(history[0].revision, "a");
  EXPECT_THAT(history[0].rows_before, IsEmpty());
  EXPECT_THAT(history[0].rows_after, ElementsAre("a"));
  EXPECT_EQ(history[4].rows_before, std::vector<std::string>{"d"});
  EXPECT_EQ(history[2].who, "tester");
  EXPECT_EQ(history[2].operation_id, result.operation_id);
  EXPECT_EQ(history[2].checksum, graph_->revision(2).checksum);
  EXPECT_EQ(history[2].outcome, "success");

  ASSERT_FALSE(sink.events.empty());
  EXPECT_EQ(sink.events.front().kind, Event::Kind::kLockAcquired);
  EXPECT_EQ(sink.events[1].kind, Event::Kind::kOperationStarted);
  EXPECT_EQ(sink.events[1].plan.size(), 5u);
  EXPECT_EQ(sink.events.back().kind, Event::Kind::kOperationFinished);
  EXPECT_THAT(sink.events.back().rows_after, ElementsAre("e"));
  int statements = 0;
  for (const Event& e : sink.events) {
    statements += e.kind == Event::Kind::kStatementStarted ? 1 : 0;
  }
  EXPECT_EQ(statements, 5);
}

TEST_F(ExecutorTest, UpgradeAtHeadTakesNoLockAndWritesNothing) {
  Load(Linear());
  ASSERT_OK(executor_->Upgrade(*session_, "heads"));
  const size_t history = db_.history().size();
  ASSERT_OK_AND_ASSIGN(OperationResult again, executor_->Upgrade(*session_, "heads"));
  EXPECT_EQ(again.revisions_run, 0);
  EXPECT_FALSE(again.took_lock);
  EXPECT_EQ(db_.lock_acquisitions(), 1);
  EXPECT_EQ(db_.history().size(), history);
}

TEST_F(ExecutorTest, EnsureHeadAtHeadIsOneRead) {
  Load(Linear());
  ASSERT_OK(executor_->Upgrade(*session_, "heads"));
  const int reads = db_.state_reads();
  ASSERT_OK_AND_ASSIGN(OperationResult result, executor_->EnsureHead(*session_));
  EXPECT_FALSE(result.took_lock);
  EXPECT_EQ(db_.state_reads(), reads + 1);
  EXPECT_EQ(db_.lock_acquisitions(), 1);
}

TEST_F(ExecutorTest, EnsureHeadBehindAppliesOrRefusesWhenNotAllowed) {
  Load(Linear());
  db_.SetRows({"b"});
  EXPECT_THAT(executor_->EnsureHead(*session_, /*apply=*/false),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("c, d, e")));
  EXPECT_THAT(db_.rows(), ElementsAre("b"));
  ASSERT_OK_AND_ASSIGN(OperationResult result, executor_->EnsureHead(*session_));
  EXPECT_EQ(result.revisions_run, 3);
  EXPECT_THAT(db_.rows(), ElementsAre("e"));
}

TEST_F(ExecutorTest, FailureInThirdRevisionLeavesSecondAppliedAndRecordsIt) {
  Load(Linear(), PerRevision());
  db_.FailOn("t_c", "42P07", "relation \"t_c\" already exists");
  absl::StatusOr<OperationResult> result = executor_->Upgrade(*session_, "heads");
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kFailedPrecondition,
                               HasSubstr("revision c failed at migrations/c.sql:10: SQLSTATE "
                                         "42P07: relation \"t_c\" already exists")));
  EXPECT_THAT(result.status().message(), HasSubstr("database is at b"));
  EXPECT_THAT(db_.rows(), ElementsAre("b"));
  std::vector<store::HistoryRecord> history = db_.history();
  ASSERT_EQ(history.size(), 3u);
  EXPECT_EQ(history[2].revision, "c");
  EXPECT_EQ(history[2].outcome, "failed");
  EXPECT_THAT(history[2].error, HasSubstr("42P07"));

  db_.ClearFailures();
  ASSERT_OK_AND_ASSIGN(OperationResult retry, executor_->Upgrade(*session_, "heads"));
  EXPECT_EQ(retry.revisions_run, 3);
  EXPECT_THAT(db_.rows(), ElementsAre("e"));
}

TEST_F(ExecutorTest, ErrorPositionBecomesFileLine) {
  std::vector<Revision> revs = {Rev("a", {}, {"CREATE TABLE x (\n  id int,\n  BROKEN\n)"})};
  Load(std::move(revs));
  db_.FailOn("BROKEN", "42601", "syntax error at or near \"BROKEN\"");
  // The fake reports no position: the statement's first line is named.
  EXPECT_THAT(executor_->Upgrade(*session_, "heads"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("migrations/a.sql:10")));
}

TEST_F(ExecutorTest, NonTransactionalFailureNeedsAttentionUntilResolved) {
  std::vector<Revision> revs = Linear();
  revs[2].transactional = false;
  revs[2].upgrade =
      Section({"CREATE INDEX CONCURRENTLY i1 ON t_a (id)", "CREATE INDEX CONCURRENTLY BAD"});
  Load(std::move(revs));
  db_.FailOn("BAD", "42601", "syntax error");
  EXPECT_THAT(executor_->Upgrade(*session_, "heads"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("needs attention")));
  ASSERT_TRUE(db_.needs_attention().has_value());
  EXPECT_EQ(db_.needs_attention()->revision, "c");
  EXPECT_EQ(db_.needs_attention()->statements_done, 1);
  EXPECT_THAT(db_.rows(), ElementsAre("b"));

  db_.ClearFailures();
  // Blocked until resolved, even with the cause gone.
  EXPECT_THAT(executor_->Upgrade(*session_, "heads"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("resolve")));
  EXPECT_THAT(executor_->EnsureHead(*session_),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("needs attention")));

  ASSERT_OK(executor_->Resolve(*session_, Executor::Resolution::kApplied));
  EXPECT_FALSE(db_.needs_attention().has_value());
  EXPECT_THAT(db_.rows(), ElementsAre("c"));
  EXPECT_EQ(db_.history().back().direction, "resolve");
  EXPECT_EQ(db_.history().back().outcome, "applied");
  ASSERT_OK(executor_->Upgrade(*session_, "heads"));
  EXPECT_THAT(db_.rows(), ElementsAre("e"));
}

TEST_F(ExecutorTest, ResolveRolledBackLeavesRowsAndNothingToResolveIsAnError) {
  std::vector<Revision> revs = Linear();
  revs[0].transactional = false;
  Load(std::move(revs));
  db_.FailOn("t_a", "42601", "boom");
  EXPECT_FALSE(executor_->Upgrade(*session_, "heads").ok());
  ASSERT_OK(executor_->Resolve(*session_, Executor::Resolution::kRolledBack));
  EXPECT_THAT(db_.rows(), IsEmpty());
  EXPECT_THAT(executor_->Resolve(*session_, Executor::Resolution::kRolledBack),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("nothing to resolve")));
}

// ------------------------------------------------------ runs that died

store::RunRecord DeadRun() {
  store::RunRecord run;
  run.operation_id = "op-dead";
  run.operation = "upgrade";
  run.target = "heads";
  run.who = "killed-client";
  run.pid = 777;
  run.application_name = "schemactl op-dead";
  run.started = absl::FromUnixSeconds(1767225600);
  return run;
}

store::BackendActivity StillRunning() {
  store::BackendActivity activity;
  activity.backend.pid = 777;
  activity.backend.application_name = "schemactl op-dead";
  activity.state = "active";
  activity.query = "INSERT INTO log SELECT pg_sleep(60)";
  return activity;
}

TEST_F(ExecutorTest, RunIsRecordedWhileItRunsAndRemovedWhenItEnds) {
  Load(Linear());
  // A sink that looks at the run record while a revision runs.
  struct Watcher : EventSink {
    explicit Watcher(FakeDatabase& database) : db(database) {}
    void OnEvent(const Event& e) override {
      if (e.kind == Event::Kind::kRevisionStarted) {
        seen.push_back(db.run());
      }
    }
    FakeDatabase& db;
    std::vector<std::optional<store::RunRecord>> seen;
  } watcher(db_);
  CallControl control;
  control.sink = &watcher;
  control.operation_id = "op-1";
  db_.FailOn("t_d", "42601", "boom");
  EXPECT_FALSE(executor_->Upgrade(*session_, "heads", control).ok());
  ASSERT_EQ(watcher.seen.size(), 4u);
  ASSERT_TRUE(watcher.seen[0].has_value());
  EXPECT_EQ(watcher.seen[0]->operation_id, "op-1");
  EXPECT_EQ(watcher.seen[0]->operation, "upgrade");
  EXPECT_EQ(watcher.seen[0]->target, "heads");
  EXPECT_EQ(watcher.seen[0]->who, "tester");
  // A run that ends, even in failure, leaves no record: it is not "interrupted".
  EXPECT_FALSE(db_.run().has_value());
  db_.ClearFailures();
  ASSERT_OK(executor_->Upgrade(*session_, "heads"));
  EXPECT_FALSE(db_.run().has_value());
  for (const store::HistoryRecord& h : db_.history()) {
    EXPECT_NE(h.outcome, "interrupted");
  }
}

TEST_F(ExecutorTest, EarlierRunThatDiedIsRecordedAsInterruptedByTheNextRun) {
  Load(Linear());
  db_.SetRows({"b"});
  db_.SetUnfinishedRun(DeadRun(), std::nullopt);
  ASSERT_OK_AND_ASSIGN(OperationResult result, executor_->Upgrade(*session_, "heads"));
  std::vector<store::HistoryRecord> history = db_.history();
  ASSERT_EQ(history.size(), 4u);  // the interrupted run, then c, d, e
  const store::HistoryRecord& h = history[0];
  EXPECT_EQ(h.outcome, "interrupted");
  EXPECT_EQ(h.operation_id, "op-dead");
  EXPECT_EQ(h.who, "killed-client");
  EXPECT_EQ(h.direction, "up");
  EXPECT_EQ(h.started, absl::FromUnixSeconds(1767225600));
  EXPECT_THAT(h.rows_before, ElementsAre("b"));
  EXPECT_THAT(h.rows_after, ElementsAre("b"));
  EXPECT_THAT(h.error,
              AllOf(HasSubstr("op-dead (upgrade heads, by killed-client"),
                    HasSubstr("pid 777 (schemactl op-dead)"),
                    HasSubstr(absl::StrCat("noticed by operation ", result.operation_id))));
  EXPECT_EQ(history[1].revision, "c");
  EXPECT_FALSE(db_.run().has_value());
}

// A run killed after its last commit, before it removed its record, leaves
// the database at head: an upgrade that has nothing to do still notices it
// (takes the lock, records it as interrupted, clears the record); while its
// backend is still connected it is left alone (no lock taken).
TEST_F(ExecutorTest, RunThatDiedAtHeadIsRecordedByTheNextNoOpUpgrade) {
  Load(Linear());
  db_.SetRows({"e"});
  store::BackendActivity alive;
  alive.backend.pid = 777;
  alive.state = "active";
  db_.SetUnfinishedRun(DeadRun(), alive);
  ASSERT_OK_AND_ASSIGN(OperationResult still_running, executor_->Upgrade(*session_, "heads"));
  EXPECT_FALSE(still_running.took_lock);
  EXPECT_TRUE(db_.run().has_value());
  EXPECT_TRUE(db_.history().empty());

  db_.SetUnfinishedRun(DeadRun(), std::nullopt);
  ASSERT_OK_AND_ASSIGN(OperationResult result, executor_->Upgrade(*session_, "heads"));
  EXPECT_TRUE(result.took_lock);
  EXPECT_EQ(result.revisions_run, 0);
  std::vector<store::HistoryRecord> history = db_.history();
  ASSERT_EQ(history.size(), 1u);
  EXPECT_EQ(history[0].outcome, "interrupted");
  EXPECT_EQ(history[0].operation_id, "op-dead");
  EXPECT_FALSE(db_.run().has_value());
}

TEST_F(ExecutorTest, InterruptedNonTransactionalRevisionIsNamedWhenResolved) {
  std::vector<Revision> revs = Linear();
  revs[2].transactional = false;
  Load(std::move(revs));
  db_.SetRows({"b"});
  // What a run killed in revision c's first statement leaves: its mark and its record.
  db_.FailOn("t_c", "57P01", "terminating connection");
  EXPECT_FALSE(executor_->Upgrade(*session_, "heads").ok());
  db_.ClearFailures();
  ASSERT_TRUE(db_.needs_attention().has_value());
  store::NeedsAttention mark = *db_.needs_attention();
  mark.operation_id = "op-dead";
  mark.error.clear();
  db_.SetUnfinishedRun(DeadRun(), std::nullopt);
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<store::Session> other, db_.Connect());
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<store::Transaction> tx, other->Begin());
    ASSERT_OK(tx->SetNeedsAttention(mark));
    ASSERT_OK(tx->Commit());
  }
  const size_t before = db_.history().size();
  ASSERT_OK(executor_->Resolve(*session_, Executor::Resolution::kRolledBack));
  std::vector<store::HistoryRecord> history = db_.history();
  ASSERT_EQ(history.size(), before + 2);
  EXPECT_EQ(history[before].outcome, "interrupted");
  EXPECT_EQ(history[before].revision, "c");
  EXPECT_EQ(history[before].checksum, graph_->revision(2).checksum);
  EXPECT_THAT(history[before].error,
              HasSubstr("during non-transactional revision c (up) after 0 of 1 statement(s)"));
  EXPECT_EQ(history[before + 1].outcome, "rolled_back");
}

TEST_F(ExecutorTest, EarlierRunStillConnectedIsRefusedNamingItsSession) {
  std::vector<Revision> revs = Linear();
  Load(std::move(revs));
  db_.SetRows({"b"});
  db_.SetUnfinishedRun(DeadRun(), StillRunning());
  const auto names_it = AllOf(HasSubstr("op-dead"), HasSubstr("pid 777 (schemactl op-dead)"),
                              HasSubstr("active: INSERT INTO log SELECT pg_sleep(60)"),
                              HasSubstr("pg_terminate_backend(777)"));
  EXPECT_THAT(executor_->Upgrade(*session_, "heads"),
              StatusIs(absl::StatusCode::kAborted, names_it));
  EXPECT_THAT(executor_->Resolve(*session_, Executor::Resolution::kRolledBack),
              StatusIs(absl::StatusCode::kAborted, names_it));
  EXPECT_THAT(db_.rows(), ElementsAre("b"));
  EXPECT_THAT(db_.committed_statements(), IsEmpty());
  EXPECT_THAT(db_.history(), IsEmpty());
  ASSERT_TRUE(db_.run().has_value());
  EXPECT_EQ(db_.run()->operation_id, "op-dead");

  // A mark whose run's session is still connected may be that of a run in
  // progress: decided under the lock, the answer is the same refusal naming
  // the session.
  store::NeedsAttention mark;
  mark.revision = "c";
  mark.direction = "up";
  mark.operation_id = "op-dead";
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<store::Transaction> tx, session_->Begin());
    ASSERT_OK(tx->SetNeedsAttention(mark));
    ASSERT_OK(tx->Commit());
  }
  EXPECT_THAT(executor_->Upgrade(*session_, "heads"),
              StatusIs(absl::StatusCode::kAborted, names_it));

  // Once the session is gone, the run is recorded as interrupted and the
  // database can be resolved.
  db_.SetUnfinishedRun(DeadRun(), std::nullopt);
  ASSERT_OK(executor_->Resolve(*session_, Executor::Resolution::kRolledBack));
  ASSERT_OK(executor_->Upgrade(*session_, "heads"));
  EXPECT_THAT(db_.rows(), ElementsAre("e"));
  EXPECT_EQ(db_.history().front().outcome, "interrupted");
}

TEST_F(ExecutorTest, SessionIsResetAfterEachNonTransactionalRevision) {
  std::vector<Revision> revs = Linear();
  revs[1].transactional = false;
  revs[3].transactional = false;
  Load(std::move(revs));
  ASSERT_OK(executor_->Upgrade(*session_, "heads"));
  EXPECT_EQ(db_.resets(), 2);
}

TEST_F(ExecutorTest, ChangedAppliedRevisionBlocksUpgradeUnlessAllowed) {
  Load(Linear());
  ASSERT_OK(executor_->Upgrade(*session_, "c"));
  // Someone edits b after it was applied: simulate by recording another checksum.
  db_.SetChecksum("b", "0000");
  EXPECT_THAT(executor_->Upgrade(*session_, "heads"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("b (migrations/b.sql) changed since it was applied")));
  EXPECT_THAT(db_.rows(), ElementsAre("c"));
  ASSERT_OK_AND_ASSIGN(ValidationReport report, executor_->Validate(*session_));
  EXPECT_FALSE(report.ok());
  EXPECT_EQ(report.applied_checked, 3);

  ExecutorOptions allow;
  allow.allow_changed = true;
  Executor permissive(*graph_, db_, allow);
  ASSERT_OK(permissive.Upgrade(*session_, "heads"));
  EXPECT_THAT(db_.rows(), ElementsAre("e"));
}

TEST_F(ExecutorTest, AdoptedRowsWithoutChecksumsAreInformational) {
  Load(Linear());
  db_.SetRows({"b"});
  ASSERT_OK_AND_ASSIGN(ValidationReport report, executor_->Validate(*session_));
  EXPECT_TRUE(report.ok());
  EXPECT_EQ(report.issues.size(), 2u);
  ASSERT_OK(executor_->Upgrade(*session_, "heads"));
}

TEST_F(ExecutorTest, DowngradeRunsDownSectionsChildrenFirst) {
  Load(Linear());
  ASSERT_OK(executor_->Upgrade(*session_, "heads"));
  ASSERT_OK_AND_ASSIGN(OperationResult result, executor_->Downgrade(*session_, "b"));
  EXPECT_EQ(result.revisions_run, 3);
  EXPECT_THAT(db_.rows(), ElementsAre("b"));
  std::vector<std::string> statements = db_.committed_statements();
  ASSERT_EQ(statements.size(), 8u);
  EXPECT_EQ(statements[5], "DROP TABLE t_e");
  EXPECT_EQ(statements[7], "DROP TABLE t_c");
  ASSERT_OK(executor_->Downgrade(*session_, "base"));
  EXPECT_THAT(db_.rows(), IsEmpty());
}

TEST_F(ExecutorTest, IrreversibleRevisionRefusesDowngradeAndChangesNothing) {
  std::vector<Revision> revs = Linear();
  revs[3].downgrade.reset();
  Load(std::move(revs));
  ASSERT_OK(executor_->Upgrade(*session_, "heads"));
  const size_t statements = db_.committed_statements().size();
  EXPECT_THAT(executor_->Downgrade(*session_, "base"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("revision d has no -- +downgrade section")));
  EXPECT_THAT(db_.rows(), ElementsAre("e"));
  EXPECT_EQ(db_.committed_statements().size(), statements);
  ASSERT_OK(executor_->Downgrade(*session_, "d"));
  EXPECT_THAT(db_.rows(), ElementsAre("d"));
}

TEST_F(ExecutorTest, LockHeldElsewhereTimesOutNamingTheHolder) {
  Load(Linear());
  db_.SetLockedElsewhere(true);
  RecordingSink sink;
  CallControl control;
  control.sink = &sink;
  EXPECT_THAT(executor_->Upgrade(*session_, "heads", control),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("pid 4242")));
  EXPECT_THAT(db_.rows(), IsEmpty());
  ASSERT_FALSE(sink.events.empty());
  EXPECT_EQ(sink.events.front().kind, Event::Kind::kWaitingForLock);
  EXPECT_THAT(sink.events.front().lock_holder, HasSubstr("other-migrator"));
}

// A needs-attention mark seen without the lock may be that of a run still in
// progress (it is written before a non-transactional revision's first
// statement): callers wait for the lock and decide on what they read under
// it. Found by CliFaultsTest.OneTableUnderTwoNamesIsOneLock under ASan's
// timing: the second run refused "needs attention" while the first ran.
TEST_F(ExecutorTest, MarkOfARunInProgressIsDecidedUnderTheLock) {
  Load(Linear());
  for (const bool ensure_head : {false, true}) {
    SCOPED_TRACE(ensure_head ? "EnsureHead" : "Upgrade");
    db_.SetRows({"a"});
    store::NeedsAttention mark;
    mark.revision = "b";
    mark.direction = "up";
    mark.statements_total = 1;
    db_.SetNeedsAttention(mark);
    db_.SetLockedElsewhere(true);
    // The other run finishes while this one waits: b to e applied, mark gone.
    struct OtherRunFinishes : EventSink {
      FakeDatabase* db;
      int waits = 0;
      void OnEvent(const Event& e) override {
        if (e.kind == Event::Kind::kWaitingForLock && ++waits == 1) {
          db->SetRows({"e"});
          db->SetNeedsAttention(std::nullopt);
          db->SetLockedElsewhere(false);
        }
      }
    } sink;
    sink.db = &db_;
    CallControl control;
    control.sink = &sink;
    absl::StatusOr<OperationResult> result =
        ensure_head ? executor_->EnsureHead(*session_, /*apply=*/true, control)
                    : executor_->Upgrade(*session_, "heads", control);
    ASSERT_OK(result.status());
    EXPECT_EQ(sink.waits, 1);
    EXPECT_TRUE(result->took_lock);
    EXPECT_THAT(result->rows_after, ElementsAre("e"));
    EXPECT_THAT(db_.committed_statements(), IsEmpty());
  }
  // A mark that is still there under the lock is refused, as before.
  db_.SetRows({"a"});
  store::NeedsAttention stuck;
  stuck.revision = "b";
  stuck.direction = "up";
  stuck.statements_done = 1;
  stuck.statements_total = 2;
  stuck.error = "boom";
  db_.SetNeedsAttention(stuck);
  EXPECT_THAT(executor_->Upgrade(*session_, "heads"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("needs attention")));
  EXPECT_THAT(executor_->EnsureHead(*session_, /*apply=*/true),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("needs attention")));
}

TEST_F(ExecutorTest, CancelStopsBetweenRevisions) {
  Load(Linear(), PerRevision());
  std::atomic<bool> cancelled{false};
  struct CancelAfterFirst : EventSink {
    std::atomic<bool>* flag;
    void OnEvent(const Event& e) override {
      if (e.kind == Event::Kind::kRevisionFinished) {
        flag->store(true);
      }
    }
  } sink;
  sink.flag = &cancelled;
  CallControl control;
  control.sink = &sink;
  control.cancelled = &cancelled;
  EXPECT_THAT(executor_->Upgrade(*session_, "heads", control),
              StatusIs(absl::StatusCode::kCancelled, HasSubstr("database is at a")));
  EXPECT_THAT(db_.rows(), ElementsAre("a"));
}

// A cancel that lands in one of schemad's own statements (creating its
// tables, the bookkeeping, COMMIT) reaches PostgreSQL as a query cancel
// (SQLSTATE 57014) of that statement: the operation is CANCELLED, not ABORTED.
TEST_F(ExecutorTest, CancelDuringSchemadsOwnStatementIsCancelled) {
  Load(Linear());
  std::atomic<bool> cancelled{true};
  db_.FailEnsureTables(
      absl::AbortedError("creating schemad's tables: SQLSTATE 57014: canceling statement due "
                         "to user request"));
  CallControl control;
  control.cancelled = &cancelled;
  EXPECT_THAT(executor_->Upgrade(*session_, "heads", control),
              StatusIs(absl::StatusCode::kCancelled,
                       AllOf(HasSubstr("cancelled"), HasSubstr("creating schemad's tables"))));
  // Not cancelled: the same error is what it is (a statement_timeout also
  // ends in 57014).
  cancelled = false;
  EXPECT_THAT(executor_->Upgrade(*session_, "heads", control),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("57014")));
  EXPECT_THAT(db_.rows(), IsEmpty());
}

// Alembic's default env.py commits a whole command at once; so does schemad
// unless told otherwise.
TEST_F(ExecutorTest, TheDefaultScopeIsAlembicsPerCommand) {
  Load(Linear());
  db_.FailOn("t_c", "42P07", "relation \"t_c\" already exists");
  EXPECT_THAT(executor_->Upgrade(*session_, "heads"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("the 2 revision(s) run before it in the same transaction were "
                                 "rolled back too")));
  EXPECT_THAT(db_.rows(), IsEmpty());
}

TEST_F(ExecutorTest, PerCommandIsAllOrNothing) {
  ExecutorOptions options;
  options.transaction_mode = ExecutorOptions::TransactionMode::kPerCommand;
  Load(Linear(), options);
  db_.FailOn("t_d", "42601", "boom");
  EXPECT_FALSE(executor_->Upgrade(*session_, "heads").ok());
  EXPECT_THAT(db_.rows(), IsEmpty());
  EXPECT_THAT(db_.committed_statements(), IsEmpty());
  db_.ClearFailures();
  ASSERT_OK(executor_->Upgrade(*session_, "heads"));
  EXPECT_THAT(db_.rows(), ElementsAre("e"));
  EXPECT_EQ(db_.history().size(), 6u);  // the failed attempt's row, then five successes
  EXPECT_EQ(db_.history()[0].outcome, "failed");
}

// Issue 14: per command (Alembic's default env.py), a failure late rolls
// back every revision of the transaction: the database stays where it
// started, one `failed` history row names the revision, and the progress
// events say the earlier revisions were rolled back, not done.
TEST_F(ExecutorTest, PerCommandFailureRollsBackTheWholeTransaction) {
  ExecutorOptions options;
  options.transaction_mode = ExecutorOptions::TransactionMode::kPerCommand;
  Load(Linear(), options);
  db_.FailOn("t_d", "42601", "boom");
  RecordingSink sink;
  CallControl control;
  control.sink = &sink;
  EXPECT_THAT(executor_->Upgrade(*session_, "heads", control),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("revision d failed"),
                             HasSubstr("3 revision(s) run before it in the same transaction "
                                       "were rolled back"),
                             HasSubstr("0 of 5 revision(s) done; database is at base"))));
  EXPECT_THAT(db_.rows(), IsEmpty());
  EXPECT_THAT(db_.committed_statements(), IsEmpty());
  ASSERT_EQ(db_.history().size(), 1u);
  EXPECT_EQ(db_.history()[0].revision, "d");
  EXPECT_EQ(db_.history()[0].outcome, "failed");
  EXPECT_THAT(db_.history()[0].rows_before, IsEmpty());
  std::vector<std::string> finished;
  for (const Event& e : sink.events) {
    if (e.kind == Event::Kind::kRevisionFinished) {
      finished.push_back(absl::StrCat(e.revision, ":", absl::StatusCodeToString(e.status.code())));
    }
  }
  EXPECT_THAT(finished,
              ElementsAre("a:ABORTED", "b:ABORTED", "c:ABORTED", "d:FAILED_PRECONDITION"));

  db_.ClearFailures();
  ASSERT_OK_AND_ASSIGN(OperationResult result, executor_->Upgrade(*session_, "heads"));
  EXPECT_EQ(result.revisions_run, 5);
  EXPECT_THAT(db_.rows(), ElementsAre("e"));
  // One success row per revision, each with its own rows before and after.
  std::vector<store::HistoryRecord> history = db_.history();
  ASSERT_EQ(history.size(), 6u);
  EXPECT_EQ(history[3].revision, "c");
  EXPECT_THAT(history[3].rows_before, ElementsAre("b"));
  EXPECT_THAT(history[3].rows_after, ElementsAre("c"));
}

// A non-transactional revision inside a per-command run is Alembic's
// autocommit_block: what came before commits first, it runs outside a
// transaction, what follows is a new transaction (rolled back on its own).
TEST_F(ExecutorTest, PerCommandNonTransactionalRevisionSplitsTheTransaction) {
  std::vector<Revision> revs = Linear();
  revs[2].transactional = false;
  revs[2].upgrade = Section({"CREATE INDEX CONCURRENTLY i_a ON t_a (id)"});
  ExecutorOptions options;
  options.transaction_mode = ExecutorOptions::TransactionMode::kPerCommand;
  Load(std::move(revs), options);
  db_.FailOn("t_e", "42601", "boom");
  EXPECT_THAT(executor_->Upgrade(*session_, "heads"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("revision e failed"),
                             HasSubstr("3 of 5 revision(s) done; database is at c"))));
  EXPECT_THAT(db_.rows(), ElementsAre("c"));
  EXPECT_FALSE(db_.needs_attention().has_value());
  EXPECT_THAT(db_.committed_statements(),
              ElementsAre("CREATE TABLE t_a (id int)", "CREATE TABLE t_b (id int)",
                          "CREATE INDEX CONCURRENTLY i_a ON t_a (id)"));
  db_.ClearFailures();
  ASSERT_OK(executor_->Upgrade(*session_, "heads"));
  EXPECT_THAT(db_.rows(), ElementsAre("e"));
}

TEST_F(ExecutorTest, StampRewritesRowsWithoutRunningSql) {
  Load(Linear());
  const std::vector<std::string> target = {"c"};
  ASSERT_OK(executor_->Stamp(*session_, target, /*purge=*/false));
  EXPECT_THAT(db_.rows(), ElementsAre("c"));
  EXPECT_THAT(db_.committed_statements(), IsEmpty());
  EXPECT_EQ(db_.history().back().direction, "stamp");
  const std::vector<std::string> base = {"base"};
  ASSERT_OK(executor_->Stamp(*session_, base, false));
  EXPECT_THAT(db_.rows(), IsEmpty());
}

TEST_F(ExecutorTest, UnknownRowIsNotFound) {
  Load(Linear());
  db_.SetRows({"zzzz"});
  EXPECT_THAT(executor_->Upgrade(*session_, "heads"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("'zzzz'")));
  ASSERT_OK_AND_ASSIGN(DatabaseStatus status, executor_->Status(*session_));
  EXPECT_FALSE(status.at_head);
  EXPECT_THAT(status.row_error, HasSubstr("zzzz"));
}

}  // namespace
}  // namespace schemad::engine
