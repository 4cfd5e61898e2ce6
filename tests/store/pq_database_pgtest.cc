// The PostgreSQL store against a real server (tests/testing/pg_cluster.sh);
// each test gets a fresh database.
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/store/pq/pq_database.h"
#include "service/store/store.h"
#include "tests/testing/pg_fixture.h"
#include "tests/testing/status_matchers.h"

namespace schemad::store {
namespace {

using ::schemad::testing::ClusterDsn;
using ::schemad::testing::Exec;
using ::schemad::testing::IsOk;
using ::schemad::testing::Query;
using ::schemad::testing::Rows;
using ::schemad::testing::StatusIs;
using ::schemad::testing::TestDatabase;
using ::testing::_;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::Pair;
using ::testing::StartsWith;
using ::testing::UnorderedElementsAre;

VersionRowChange Insert(const std::string& to) {
  return VersionRowChange{VersionRowChange::Kind::kInsert, "", to};
}
VersionRowChange Delete(const std::string& from) {
  return VersionRowChange{VersionRowChange::Kind::kDelete, from, ""};
}
VersionRowChange Update(const std::string& from, const std::string& to) {
  return VersionRowChange{VersionRowChange::Kind::kUpdate, from, to};
}
SqlStatement Sql(const std::string& text) { return SqlStatement{text, 1}; }

// Polls `sql` on `dsn` until it returns `want`; the last answer.
Rows PollRows(const std::string& dsn, const std::string& sql, const Rows& want,
              absl::Duration timeout = absl::Seconds(10)) {
  Rows rows = Query(dsn, sql);
  for (const absl::Time deadline = absl::Now() + timeout; rows != want && absl::Now() < deadline;) {
    absl::SleepFor(absl::Milliseconds(20));
    rows = Query(dsn, sql);
  }
  return rows;
}

class PqDatabaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(db_.ok());
    options_.application_name = app_name_;
    options_.lock_poll_initial = absl::Milliseconds(10);
    options_.lock_poll_max = absl::Milliseconds(50);
    ASSERT_OK_AND_ASSIGN(database_, OpenPqDatabase(db_.dsn(), options_));
    ASSERT_OK_AND_ASSIGN(session_, database_->Connect());
  }

  // Rows of `sql` run in the test database.
  Rows Q(const std::string& sql) { return Query(db_.dsn(), sql); }

  // A Transaction that commits `changes` to the version table.
  void CommitVersionChanges(const std::vector<VersionRowChange>& changes) {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
    ASSERT_OK(tx->ApplyVersionChanges(changes));
    ASSERT_OK(tx->Commit());
  }

  TestDatabase db_;
  std::string app_name_ = "st-" + db_.name();  // unique in the cluster
  PqOptions options_;
  std::unique_ptr<Database> database_;
  std::unique_ptr<Session> session_;
};

// ------------------------------------------------------------------ DSNs

// DSN grammar and redaction: tests/common/dsn_test.cc (service/common/dsn.h).

TEST(OpenPqDatabaseTest, ValidatesWithoutEchoingThePassword) {
  EXPECT_THAT(OpenPqDatabase("", {}).status(), StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_THAT(OpenPqDatabase("host=db password='s3cret", {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, Not(HasSubstr("s3cret"))));
  EXPECT_THAT(
      OpenPqDatabase("postgresql://app:s3cret@db/x?bogus_option=1", {}).status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("not a libpq connection option"), Not(HasSubstr("s3cret")))));
  // libpq would read `kq3` as the port and the rest of the password as the
  // database name.
  EXPECT_THAT(
      OpenPqDatabase("postgresql://modax:kq3/LEAKME+pw=@db:5432/site_c", {}).status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("user-info"), Not(HasSubstr("kq3")), Not(HasSubstr("LEAKME")))));
  EXPECT_THAT(OpenPqDatabase("host=db port=notaport password=s3cret", {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("bad port"), Not(HasSubstr("notaport")))));
  EXPECT_THAT(OpenPqDatabase("postgresql://app:s3cret%zz@db/x", {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, Not(HasSubstr("s3cret"))));
  EXPECT_THAT(OpenPqDatabase("postgresql://app:s3cret@[::1/x", {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, Not(HasSubstr("s3cret"))));
  PqOptions options;
  options.tables.version_table = "";
  EXPECT_THAT(OpenPqDatabase("host=db", options).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("version_table")));
  options.tables.version_table = std::string(64, 'v');
  EXPECT_THAT(OpenPqDatabase("host=db", options).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("version_table")));
  options.tables.version_table = "schemad_history";
  EXPECT_THAT(OpenPqDatabase("host=db", options).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("different")));
}

TEST(OpenPqDatabaseTest, DisplayNameHasNoPassword) {
  ASSERT_OK_AND_ASSIGN(auto uri,
                       OpenPqDatabase("postgresql://app:s3cret@db.example:6543/site_a", {}));
  EXPECT_EQ(uri->DisplayName(), "site_a on db.example:6543");
  ASSERT_OK_AND_ASSIGN(auto kv,
                       OpenPqDatabase("host=db user=app password=s3cret dbname=site_b", {}));
  EXPECT_EQ(kv->DisplayName(), "site_b on db:5432");
}

// ---------------------------------------------------------- connections

TEST(PqConnectTest, WrongPasswordIsDeniedWithoutTheSecret) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  const std::string wrong = "Wr0ngSecret-9f1c";
  for (const std::string& dsn :
       {ClusterDsn(db.cluster(), db.name(), wrong),
        absl::StrCat("host=127.0.0.1 port=", db.cluster().port, " user=postgres password='", wrong,
                     "' dbname=", db.name())}) {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Database> database, OpenPqDatabase(dsn, {}));
    absl::Status status = database->Connect().status();
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kPermissionDenied,
                                 AllOf(HasSubstr("authentication failed"), HasSubstr("postgres"),
                                       HasSubstr(db.name()), Not(HasSubstr(wrong)))));
    EXPECT_THAT(database->AcquireLock(absl::Seconds(1), nullptr, nullptr).status(),
                StatusIs(absl::StatusCode::kPermissionDenied, Not(HasSubstr(wrong))));
  }
}

TEST(PqConnectTest, PasswordIsScrubbedEvenWhereLibpqEchoesIt) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  // A (wrong) password equal to the user name: libpq's message names the user.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Database> database,
                       OpenPqDatabase(ClusterDsn(db.cluster(), db.name(), "postgres"), {}));
  EXPECT_THAT(database->Connect().status(),
              StatusIs(absl::StatusCode::kPermissionDenied, Not(HasSubstr("postgres"))));
}

// Retrying cannot fix a wrong role, database or host name: those are not
// UNAVAILABLE (which callers retry), and their messages say what is wrong.
TEST(PqConnectTest, PermanentConnectFailuresAreNotUnavailable) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  const std::string secret = db.cluster().password;
  struct Case {
    std::string dsn;
    absl::StatusCode code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {ClusterDsn(db.cluster(), "no_such_db_x", secret), absl::StatusCode::kFailedPrecondition,
       "the database does not exist"},
      {absl::StrCat("postgresql://no_such_role_x:", secret, "@127.0.0.1:", db.cluster().port, "/",
                    db.name()),
       absl::StatusCode::kPermissionDenied, "authentication failed"},
      {absl::StrCat("postgresql://postgres:", secret, "@no-such-host.invalid:5432/x"),
       absl::StatusCode::kFailedPrecondition, "the host name does not resolve"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.message);
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Database> database, OpenPqDatabase(c.dsn, {}));
    EXPECT_THAT(database->Connect().status(),
                StatusIs(c.code, AllOf(HasSubstr(c.message), Not(HasSubstr(secret)))));
  }
}

TEST(PqConnectTest, UnreachablePortIsUnavailable) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Database> database,
                       OpenPqDatabase("postgresql://app:s3cret@127.0.0.1:1/site_a", {}));
  EXPECT_THAT(
      database->Connect().status(),
      StatusIs(absl::StatusCode::kUnavailable, AllOf(HasSubstr("site_a on 127.0.0.1:1"),
                                                     HasSubstr("app"), Not(HasSubstr("s3cret")))));
  EXPECT_THAT(database->AcquireLock(absl::Seconds(1), nullptr, nullptr).status(),
              StatusIs(absl::StatusCode::kUnavailable, Not(HasSubstr("s3cret"))));
}

TEST_F(PqDatabaseTest, SetsApplicationName) {
  EXPECT_EQ(Q(absl::StrCat("SELECT count(*) FROM pg_stat_activity WHERE application_name = '",
                           app_name_, "'")),
            (Rows{{"1"}}));
}

TEST_F(PqDatabaseTest, LongApplicationNameKeepsTheLockSuffix) {
  PqOptions options = options_;
  options.application_name = std::string(100, 'x');
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Database> database, OpenPqDatabase(db_.dsn(), options));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<MigrationLock> lock,
                       database->AcquireLock(absl::Seconds(1), nullptr, nullptr));
  EXPECT_EQ(Q("SELECT application_name FROM pg_stat_activity WHERE application_name LIKE 'xxx%'"),
            (Rows{{std::string(58, 'x') + " lock"}}));
}

TEST_F(PqDatabaseTest, LostConnectionIsUnavailableAndStaysLost) {
  Exec(db_.dsn(), absl::StrCat("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE application_name = '",
                               app_name_, "'"));
  EXPECT_THAT(session_->ReadState().status(), StatusIs(absl::StatusCode::kUnavailable, _));
  EXPECT_THAT(session_->ReadState().status(), StatusIs(absl::StatusCode::kUnavailable, _));
  EXPECT_THAT(session_->Begin().status(), StatusIs(absl::StatusCode::kUnavailable, _));
  // A new session works.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> fresh, database_->Connect());
  EXPECT_OK(fresh->ReadState());
}

// --------------------------------------------------------------- tables

TEST_F(PqDatabaseTest, ReadStateOnEmptyDatabase) {
  ASSERT_OK_AND_ASSIGN(DatabaseState state, session_->ReadState());
  EXPECT_FALSE(state.version_table_exists);
  EXPECT_THAT(state.rows, IsEmpty());
  EXPECT_FALSE(state.needs_attention.has_value());
}

TEST_F(PqDatabaseTest, EnsureTablesCreatesAlembicsVersionTableAndIsIdempotent) {
  ASSERT_OK(session_->EnsureTables());
  ASSERT_OK(session_->EnsureTables());
  EXPECT_EQ(Q("SELECT column_name, data_type, character_maximum_length, is_nullable "
              "FROM information_schema.columns WHERE table_name = 'alembic_version'"),
            (Rows{{"version_num", "character varying", "32", "NO"}}));
  EXPECT_EQ(Q("SELECT conname, contype FROM pg_constraint "
              "WHERE conrelid = 'alembic_version'::regclass"),
            (Rows{{"alembic_version_pkc", "p"}}));
  EXPECT_EQ(Q("SELECT count(*) FROM information_schema.tables "
              "WHERE table_name IN ('schemad_history', 'schemad_state')"),
            (Rows{{"2"}}));
  ASSERT_OK_AND_ASSIGN(DatabaseState state, session_->ReadState());
  EXPECT_TRUE(state.version_table_exists);
  EXPECT_THAT(state.rows, IsEmpty());
}

TEST_F(PqDatabaseTest, EnsureTablesIsSafeUnderConcurrency) {
  constexpr int kThreads = 10;
  std::vector<absl::Status> results(kThreads);
  std::vector<std::thread> threads;
  std::atomic<int> ready{0};
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      absl::StatusOr<std::unique_ptr<Database>> database = OpenPqDatabase(db_.dsn(), options_);
      if (!database.ok()) {
        results[i] = database.status();
        return;
      }
      absl::StatusOr<std::unique_ptr<Session>> session = (*database)->Connect();
      if (!session.ok()) {
        results[i] = session.status();
        return;
      }
      ready.fetch_add(1);
      while (ready.load() < kThreads) {
        std::this_thread::yield();
      }
      results[i] = (*session)->EnsureTables();
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  for (const absl::Status& status : results) {
    EXPECT_OK(status);
  }
  ASSERT_OK_AND_ASSIGN(DatabaseState state, session_->ReadState());
  EXPECT_TRUE(state.version_table_exists);
}

TEST_F(PqDatabaseTest, ReadStateReturnsSortedRows) {
  ASSERT_OK(session_->EnsureTables());
  Exec(db_.dsn(), "INSERT INTO alembic_version VALUES ('c3'), ('a1'), ('b2')");
  ASSERT_OK_AND_ASSIGN(DatabaseState state, session_->ReadState());
  EXPECT_TRUE(state.version_table_exists);
  EXPECT_THAT(state.rows, ElementsAre("a1", "b2", "c3"));
  EXPECT_FALSE(state.needs_attention.has_value());
}

TEST_F(PqDatabaseTest, AdoptsAVersionTableMadeByAlembic) {
  // What Alembic 1.8 emits on PostgreSQL.
  Exec(db_.dsn(),
       "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
       "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)); "
       "INSERT INTO alembic_version (version_num) VALUES ('ae1027a6acf')");
  ASSERT_OK_AND_ASSIGN(DatabaseState before, session_->ReadState());
  EXPECT_TRUE(before.version_table_exists);
  EXPECT_THAT(before.rows, ElementsAre("ae1027a6acf"));
  EXPECT_FALSE(before.needs_attention.has_value());

  ASSERT_OK(session_->EnsureTables());
  ASSERT_OK_AND_ASSIGN(DatabaseState after, session_->ReadState());
  EXPECT_THAT(after.rows, ElementsAre("ae1027a6acf"));
  CommitVersionChanges({Update("ae1027a6acf", "27c6a30d7c24")});
  EXPECT_EQ(Q("SELECT version_num FROM alembic_version"), (Rows{{"27c6a30d7c24"}}));
  ASSERT_OK_AND_ASSIGN(auto checksums, session_->ReadAppliedChecksums());
  EXPECT_THAT(checksums, IsEmpty());
}

TEST_F(PqDatabaseTest, NeedsAttentionMarkerRoundTrips) {
  ASSERT_OK(session_->EnsureTables());
  NeedsAttention marker;
  marker.revision = "b2";
  marker.direction = "up";
  marker.statements_done = 1;
  marker.statements_total = 3;
  marker.error = "SQLSTATE 42P01: relation \"x\" does not exist";
  marker.operation_id = "op-1";
  marker.started = absl::FromUnixMicros(1767225600123456);
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
    ASSERT_OK(tx->SetNeedsAttention(marker));
    ASSERT_OK(tx->Commit());
  }
  ASSERT_OK_AND_ASSIGN(DatabaseState state, session_->ReadState());
  ASSERT_TRUE(state.needs_attention.has_value());
  EXPECT_EQ(state.needs_attention->revision, "b2");
  EXPECT_EQ(state.needs_attention->direction, "up");
  EXPECT_EQ(state.needs_attention->statements_done, 1);
  EXPECT_EQ(state.needs_attention->statements_total, 3);
  EXPECT_EQ(state.needs_attention->error, marker.error);
  EXPECT_EQ(state.needs_attention->operation_id, "op-1");
  EXPECT_EQ(state.needs_attention->started, marker.started);

  marker.statements_done = 2;  // upsert
  marker.error = "";
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
    ASSERT_OK(tx->SetNeedsAttention(marker));
    ASSERT_OK(tx->Commit());
  }
  ASSERT_OK_AND_ASSIGN(state, session_->ReadState());
  ASSERT_TRUE(state.needs_attention.has_value());
  EXPECT_EQ(state.needs_attention->statements_done, 2);
  EXPECT_EQ(state.needs_attention->error, "");

  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
    ASSERT_OK(tx->SetNeedsAttention(std::nullopt));
    ASSERT_OK(tx->Commit());
  }
  ASSERT_OK_AND_ASSIGN(state, session_->ReadState());
  EXPECT_FALSE(state.needs_attention.has_value());
}

TEST_F(PqDatabaseTest, MarkerOfAnotherVersionTableIsNotOurs) {
  ASSERT_OK(session_->EnsureTables());
  Exec(db_.dsn(),
       "INSERT INTO schemad_state VALUES ('other_version', 'x', 'up', 0, 1, NULL, NULL, now())");
  ASSERT_OK_AND_ASSIGN(DatabaseState state, session_->ReadState());
  EXPECT_FALSE(state.needs_attention.has_value());
}

TEST_F(PqDatabaseTest, SchemaQualifiedTables) {
  Exec(db_.dsn(), "CREATE SCHEMA \"Tenant A\"");
  PqOptions options = options_;
  options.tables.schema = "Tenant A";
  options.tables.version_table = "Version";
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Database> database, OpenPqDatabase(db_.dsn(), options));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, database->Connect());
  ASSERT_OK_AND_ASSIGN(DatabaseState empty, session->ReadState());
  EXPECT_FALSE(empty.version_table_exists);
  ASSERT_OK(session->EnsureTables());
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session->Begin());
    ASSERT_OK(tx->ApplyVersionChanges({Insert("a1")}));
    ASSERT_OK(tx->Commit());
  }
  EXPECT_EQ(Q("SELECT version_num FROM \"Tenant A\".\"Version\""), (Rows{{"a1"}}));
  EXPECT_EQ(
      Q("SELECT conname FROM pg_constraint WHERE conrelid = '\"Tenant A\".\"Version\"'::regclass"),
      (Rows{{"Version_pkc"}}));
  ASSERT_OK_AND_ASSIGN(DatabaseState state, session->ReadState());
  EXPECT_THAT(state.rows, ElementsAre("a1"));
  // The unqualified default is untouched.
  ASSERT_OK_AND_ASSIGN(DatabaseState other, session_->ReadState());
  EXPECT_FALSE(other.version_table_exists);
}

// -------------------------------------------------------- transactions

TEST_F(PqDatabaseTest, CommitMakesStatementsVersionAndHistoryVisible) {
  ASSERT_OK(session_->EnsureTables());
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
    ASSERT_OK(tx->SetTimeouts(Timeouts{absl::Seconds(2), absl::Seconds(30)}));
    ASSERT_OK(tx->Execute(Sql("CREATE TABLE account (id int PRIMARY KEY)"), nullptr));
    ASSERT_OK(tx->ApplyVersionChanges({Insert("a1")}));
    HistoryRecord record;
    record.revision = "a1";
    record.direction = "up";
    record.rows_after = {"a1"};
    record.outcome = "success";
    ASSERT_OK(tx->AppendHistory(record));
    ASSERT_OK(tx->Commit());
    EXPECT_THAT(tx->Execute(Sql("SELECT 1"), nullptr),
                StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("committed")));
  }
  EXPECT_EQ(Q("SELECT to_regclass('account') IS NOT NULL"), (Rows{{"t"}}));
  ASSERT_OK_AND_ASSIGN(DatabaseState state, session_->ReadState());
  EXPECT_THAT(state.rows, ElementsAre("a1"));
  EXPECT_EQ(Q("SELECT count(*) FROM schemad_history"), (Rows{{"1"}}));
}

TEST_F(PqDatabaseTest, DestroyingATransactionRollsBack) {
  ASSERT_OK(session_->EnsureTables());
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
    ASSERT_OK(tx->Execute(Sql("CREATE TABLE account (id int PRIMARY KEY)"), nullptr));
    ASSERT_OK(tx->ApplyVersionChanges({Insert("a1")}));
    EXPECT_THAT(session_->Begin().status(),
                StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("transaction")));
  }
  EXPECT_EQ(Q("SELECT to_regclass('account') IS NULL"), (Rows{{"t"}}));
  ASSERT_OK_AND_ASSIGN(DatabaseState state, session_->ReadState());
  EXPECT_THAT(state.rows, IsEmpty());
  // The session is usable again.
  CommitVersionChanges({Insert("a1")});
  ASSERT_OK_AND_ASSIGN(state, session_->ReadState());
  EXPECT_THAT(state.rows, ElementsAre("a1"));
}

TEST_F(PqDatabaseTest, VersionChangesMustMatchOneRow) {
  ASSERT_OK(session_->EnsureTables());
  CommitVersionChanges({Insert("a1")});
  // The store may defer the writes to COMMIT: the error shows there at the latest.
  auto apply_and_commit = [&](std::vector<VersionRowChange> changes) {
    auto tx = session_->Begin();
    EXPECT_TRUE(tx.ok());
    absl::Status status = (*tx)->ApplyVersionChanges(changes);
    if (status.ok()) {
      status = (*tx)->Commit();
    }
    return status;
  };
  EXPECT_THAT(apply_and_commit({Update("zz", "b2")}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("expected to match one row when updating 'zz' to 'b2' in "
                                 "'alembic_version'; 0 found")));
  EXPECT_THAT(apply_and_commit({Delete("zz")}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("expected to match one row when deleting 'zz' in "
                                 "'alembic_version'; 0 found")));
  EXPECT_THAT(apply_and_commit({Insert("a1")}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("SQLSTATE 23505")));
  {
    ASSERT_OK_AND_ASSIGN(DatabaseState unchanged, session_->ReadState());
    EXPECT_THAT(unchanged.rows, ElementsAre("a1"));
  }
  // Several changes in Alembic's order.
  CommitVersionChanges({Insert("b1"), Update("a1", "a2"), Delete("b1")});
  ASSERT_OK_AND_ASSIGN(DatabaseState state, session_->ReadState());
  EXPECT_THAT(state.rows, ElementsAre("a2"));
}

TEST_F(PqDatabaseTest, SqlErrorFillsStatementError) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
  StatementError error;
  EXPECT_THAT(tx->Execute(Sql("SELECT * FROM missing_table"), &error),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("SQLSTATE 42P01: relation \"missing_table\" does not exist")));
  EXPECT_EQ(error.sqlstate, "42P01");
  EXPECT_EQ(error.message, "relation \"missing_table\" does not exist");
  EXPECT_EQ(error.position, 15);
  // The transaction is unusable now.
  EXPECT_THAT(tx->Execute(Sql("SELECT 1"), nullptr),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("earlier error")));
  EXPECT_THAT(tx->Commit(), StatusIs(absl::StatusCode::kFailedPrecondition, _));
}

TEST_F(PqDatabaseTest, SyntaxErrorPosition) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
  StatementError error;
  EXPECT_THAT(tx->Execute(Sql("CREATE TABLE t (\n  id int,\n  name txet\n)"), &error),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("SQLSTATE 42704")));
  EXPECT_EQ(error.sqlstate, "42704");
  EXPECT_EQ(error.position, 35);  // the `txet`
}

TEST_F(PqDatabaseTest, LockTimeoutIsAborted) {
  Exec(db_.dsn(), "CREATE TABLE busy (id int)");
  pqxx::connection holder(db_.dsn());
  pqxx::work holding(holder);
  holding.exec("LOCK TABLE busy IN ACCESS EXCLUSIVE MODE");

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
  ASSERT_OK(tx->SetTimeouts(Timeouts{absl::Milliseconds(100), absl::ZeroDuration()}));
  StatementError error;
  const absl::Time start = absl::Now();
  EXPECT_THAT(tx->Execute(Sql("ALTER TABLE busy ADD COLUMN name text"), &error),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("SQLSTATE 55P03")));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(error.sqlstate, "55P03");
}

TEST_F(PqDatabaseTest, LockTimeoutNamesTheBlocker) {
  Exec(db_.dsn(), "CREATE TABLE busy (id int)");
  pqxx::connection holder(db_.dsn() + "?application_name=the-holder");
  const std::string holder_pid = absl::StrCat(holder.backendpid());
  pqxx::work holding(holder);
  holding.exec("LOCK TABLE busy IN ACCESS EXCLUSIVE MODE");

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
  ASSERT_OK(tx->SetTimeouts(Timeouts{absl::Milliseconds(800), absl::ZeroDuration()}));
  StatementError error;
  const absl::Status status = tx->Execute(Sql("ALTER TABLE busy ADD COLUMN name text"), &error);
  const auto names_holder = AllOf(
      HasSubstr(absl::StrCat("blocked by pid ", holder_pid,
                             " (the-holder) from 127.0.0.1, "
                             "idle in transaction: LOCK TABLE busy IN ACCESS EXCLUSIVE MODE")),
      Not(HasSubstr(db_.cluster().password)));
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kAborted, names_holder));
  EXPECT_EQ(error.sqlstate, "55P03");
  EXPECT_THAT(error.message,
              AllOf(StartsWith("canceling statement due to lock timeout; "), names_holder));
  tx.reset();

  // Outside a transaction (non-transactional revisions) too.
  EXPECT_THAT(
      session_->ExecuteAutocommit(Sql("CREATE INDEX CONCURRENTLY busy_id ON busy (id)"),
                                  Timeouts{absl::Milliseconds(800), absl::Seconds(10)}, &error),
      StatusIs(absl::StatusCode::kAborted, names_holder));

  // The monitor's connection is gone soon after; the session works as before.
  holding.abort();
  ASSERT_OK(session_->ExecuteAutocommit(Sql("ALTER TABLE busy ADD COLUMN name text"),
                                        Timeouts{absl::Milliseconds(800), absl::ZeroDuration()},
                                        nullptr));
  const std::string monitors = absl::StrCat(
      "SELECT count(*) FROM pg_stat_activity WHERE application_name = '", app_name_, " monitor'");
  EXPECT_EQ(Q(monitors), (Rows{{"1"}}));  // kept for the next statement a while
  session_.reset();
  Rows left = Q(monitors);
  for (int i = 0; i < 100 && left != Rows{{"0"}}; ++i) {  // the backend exits asynchronously
    absl::SleepFor(absl::Milliseconds(20));
    left = Q(monitors);
  }
  EXPECT_EQ(left, (Rows{{"0"}}));
}

TEST_F(PqDatabaseTest, FastStatementsWithALockTimeoutOpenNoMonitorConnection) {
  const std::string monitors = absl::StrCat(
      "SELECT count(*) FROM pg_stat_activity WHERE application_name = '", app_name_, " monitor'");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
  ASSERT_OK(tx->SetTimeouts(Timeouts{absl::Milliseconds(400), absl::ZeroDuration()}));
  for (int i = 0; i < 50; ++i) {
    ASSERT_OK(tx->Execute(Sql("SELECT 1"), nullptr));
  }
  EXPECT_EQ(Q(monitors), (Rows{{"0"}}));
  // A statement that runs long without waiting for a lock: asked about, nothing to name.
  ASSERT_OK(tx->Execute(Sql("SELECT pg_sleep(0.5)"), nullptr));
  ASSERT_OK(tx->Commit());
  EXPECT_EQ(Q(monitors), (Rows{{"1"}}));
}

TEST_F(PqDatabaseTest, StatementsMayNotEndTheTransaction) {
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
    EXPECT_THAT(tx->Execute(Sql("COMMIT"), nullptr), StatusIs(absl::StatusCode::kFailedPrecondition,
                                                              HasSubstr("ended the transaction")));
    EXPECT_THAT(tx->Commit(), StatusIs(absl::StatusCode::kFailedPrecondition, _));
  }
  EXPECT_THAT(session_->ExecuteAutocommit(Sql("BEGIN"), Timeouts{}, nullptr),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("transaction open")));
  // Rolled back: the session works as before.
  ASSERT_OK(
      session_->ExecuteAutocommit(Sql("CREATE TABLE after_begin (id int)"), Timeouts{}, nullptr));
  EXPECT_EQ(Q("SELECT to_regclass('after_begin') IS NOT NULL"), (Rows{{"t"}}));
  CommitVersionChanges({});
}

TEST_F(PqDatabaseTest, NegativeTimeoutIsInvalid) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
  EXPECT_THAT(tx->SetTimeouts(Timeouts{absl::Seconds(-1), absl::ZeroDuration()}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("lock_timeout")));
}

TEST_F(PqDatabaseTest, CancelFromAnotherThreadStopsTheStatement) {
  session_->Cancel();  // idle: harmless
  ASSERT_OK(session_->ReadState());

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
  // Cancels once the session's backend sleeps in pg_sleep (not before: a
  // cancel that arrives between statements cancels nothing).
  std::atomic<bool> was_sleeping{false};
  absl::Time cancelled_at = absl::InfiniteFuture();  // read after join
  std::thread canceller([&] {
    was_sleeping = PollRows(db_.dsn(),
                            absl::StrCat("SELECT count(*) FROM pg_stat_activity WHERE "
                                         "application_name = '",
                                         app_name_, "' AND wait_event = 'PgSleep'"),
                            Rows{{"1"}}, absl::Seconds(20)) == Rows{{"1"}};
    cancelled_at = absl::Now();
    session_->Cancel();
  });
  StatementError error;
  const absl::Status status = tx->Execute(Sql("SELECT pg_sleep(30)"), &error);
  const absl::Time returned_at = absl::Now();
  canceller.join();
  EXPECT_TRUE(was_sleeping.load());
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kAborted, HasSubstr("SQLSTATE 57014")));
  EXPECT_EQ(error.sqlstate, "57014");
  EXPECT_LT(returned_at - cancelled_at, absl::Seconds(2));
  tx.reset();
  session_->Cancel();  // idle again
  EXPECT_OK(session_->ReadState());
}

// ------------------------------------------------------------ autocommit

TEST_F(PqDatabaseTest, ExecuteAutocommitRunsOutsideATransaction) {
  Exec(db_.dsn(), "CREATE TABLE account (id int, email text)");
  ASSERT_OK(
      session_->ExecuteAutocommit(Sql("CREATE INDEX CONCURRENTLY account_email ON account (email)"),
                                  Timeouts{absl::Seconds(1), absl::Seconds(10)}, nullptr));
  EXPECT_EQ(Q("SELECT indisvalid FROM pg_index WHERE indexrelid = 'account_email'::regclass"),
            (Rows{{"t"}}));
}

TEST_F(PqDatabaseTest, ExecuteAutocommitTimesOutAndResetsTimeouts) {
  StatementError error;
  EXPECT_THAT(
      session_->ExecuteAutocommit(Sql("SELECT pg_sleep(5)"),
                                  Timeouts{absl::ZeroDuration(), absl::Milliseconds(100)}, &error),
      StatusIs(absl::StatusCode::kAborted, HasSubstr("statement timeout")));
  EXPECT_EQ(error.sqlstate, "57014");
  // Back to the session defaults afterwards.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
  EXPECT_OK(tx->Execute(Sql("DO $$ BEGIN IF current_setting('statement_timeout') <> '0' OR "
                            "current_setting('lock_timeout') <> '0' THEN "
                            "RAISE EXCEPTION 'timeouts not reset'; END IF; END $$"),
                        nullptr));
}

TEST_F(PqDatabaseTest, ExecuteAutocommitReportsSqlErrors) {
  StatementError error;
  EXPECT_THAT(
      session_->ExecuteAutocommit(Sql("DROP INDEX CONCURRENTLY missing_index"), Timeouts{}, &error),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("SQLSTATE 42704")));
  EXPECT_EQ(error.sqlstate, "42704");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
  EXPECT_THAT(session_->ExecuteAutocommit(Sql("SELECT 1"), Timeouts{}, nullptr),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("transaction")));
}

// --------------------------------------------------------------- history

TEST_F(PqDatabaseTest, HistoryRoundTripsNewestFirst) {
  ASSERT_OK(session_->EnsureTables());
  HistoryRecord first;
  first.revision = "a1";
  first.direction = "up";
  first.rows_before = {};
  first.rows_after = {"a1"};
  first.checksum = "c1";
  first.started = absl::FromUnixMicros(1767225600123456);
  first.duration = absl::Microseconds(1234567);
  first.outcome = "success";
  first.who = "alice";
  first.operation_id = "op-1";
  first.schemad_version = "0.1.0";
  HistoryRecord second;
  second.revision = "";
  second.direction = "stamp";
  second.rows_before = {"a1"};
  second.rows_after = {"b,2", "c\"3\\", "d 4"};
  second.outcome = "failed";
  second.error = "boom";
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
    ASSERT_OK(tx->AppendHistory(first));
    ASSERT_OK(tx->AppendHistory(second));
    ASSERT_OK(tx->Commit());
  }
  ASSERT_OK_AND_ASSIGN(std::vector<HistoryRecord> all, session_->ReadHistory(0));
  ASSERT_EQ(all.size(), 2u);
  EXPECT_GT(all[0].id, all[1].id);
  EXPECT_EQ(all[0].direction, "stamp");
  EXPECT_EQ(all[0].revision, "");
  EXPECT_THAT(all[0].rows_before, ElementsAre("a1"));
  EXPECT_THAT(all[0].rows_after, ElementsAre("b,2", "c\"3\\", "d 4"));
  EXPECT_EQ(all[0].outcome, "failed");
  EXPECT_EQ(all[0].error, "boom");
  EXPECT_EQ(all[0].started, absl::InfinitePast());
  const HistoryRecord& got = all[1];
  EXPECT_EQ(got.revision, "a1");
  EXPECT_EQ(got.direction, "up");
  EXPECT_THAT(got.rows_before, IsEmpty());
  EXPECT_THAT(got.rows_after, ElementsAre("a1"));
  EXPECT_EQ(got.checksum, "c1");
  EXPECT_EQ(got.started, first.started);
  EXPECT_EQ(got.duration, first.duration);
  EXPECT_EQ(got.outcome, "success");
  EXPECT_EQ(got.who, "alice");
  EXPECT_EQ(got.operation_id, "op-1");
  EXPECT_EQ(got.schemad_version, "0.1.0");

  ASSERT_OK_AND_ASSIGN(std::vector<HistoryRecord> newest, session_->ReadHistory(1));
  ASSERT_EQ(newest.size(), 1u);
  EXPECT_EQ(newest[0].direction, "stamp");
}

TEST_F(PqDatabaseTest, HistoryAndChecksumsBeforeTablesExist) {
  ASSERT_OK_AND_ASSIGN(std::vector<HistoryRecord> history, session_->ReadHistory(10));
  EXPECT_THAT(history, IsEmpty());
  ASSERT_OK_AND_ASSIGN(auto checksums, session_->ReadAppliedChecksums());
  EXPECT_THAT(checksums, IsEmpty());
}

TEST_F(PqDatabaseTest, AppliedChecksumsFollowTheLatestSuccessfulRun) {
  ASSERT_OK(session_->EnsureTables());
  const auto row = [](const std::string& revision, const std::string& direction,
                      const std::string& checksum, const std::string& outcome) {
    HistoryRecord record;
    record.revision = revision;
    record.direction = direction;
    record.checksum = checksum;
    record.outcome = outcome;
    return record;
  };
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
    for (const HistoryRecord& record :
         {row("a1", "up", "old", "success"), row("a1", "down", "old", "success"),
          row("a1", "up", "new", "success"), row("a1", "up", "broken", "failed"),
          row("b2", "up", "b", "applied"), row("c3", "up", "c", "success"),
          row("c3", "down", "c", "success"), row("d4", "stamp", "", "success")}) {
      ASSERT_OK(tx->AppendHistory(record));
    }
    ASSERT_OK(tx->Commit());
  }
  Exec(
      db_.dsn(),
      "INSERT INTO schemad_history (revision, direction, rows_before, rows_after, checksum, "
      "outcome, version_table) VALUES ('e5', 'up', '{}', '{}', 'other', 'success', 'other_table')");
  ASSERT_OK_AND_ASSIGN(auto checksums, session_->ReadAppliedChecksums());
  EXPECT_THAT(checksums, UnorderedElementsAre(Pair("a1", "new"), Pair("b2", "b")));
}

// ------------------------------------------------------------------ lock

// The pid of the backend holding our advisory lock, as pg_locks says.
std::string LockHolderPid(const std::string& dsn) {
  Rows rows = Query(dsn,
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
                    "database = (SELECT oid FROM pg_database WHERE datname = current_database())");
  return rows.size() == 1 ? rows[0][0] : std::string("<none>");
}

TEST_F(PqDatabaseTest, LockIsExclusiveAndNamesTheHolder) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<MigrationLock> first,
                       database_->AcquireLock(absl::Seconds(1), nullptr, nullptr));
  const std::string holder_pid = LockHolderPid(db_.dsn());
  EXPECT_EQ(
      Q(absl::StrCat("SELECT application_name FROM pg_stat_activity WHERE pid = ", holder_pid)),
      (Rows{{app_name_ + " lock"}}));

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Database> other, OpenPqDatabase(db_.dsn(), options_));
  std::vector<LockHolder> seen;
  const absl::Time start = absl::Now();
  absl::Status status =
      other
          ->AcquireLock(
              absl::Milliseconds(300),
              [&seen](const LockHolder& holder, absl::Duration) { seen.push_back(holder); },
              nullptr)
          .status();
  const absl::Duration took = absl::Now() - start;
  EXPECT_THAT(status,
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       AllOf(HasSubstr("timed out after 300ms waiting for the migration lock on "),
                             HasSubstr(db_.name()), HasSubstr("held by pid " + holder_pid),
                             HasSubstr(app_name_ + " lock"), HasSubstr("127.0.0.1"),
                             HasSubstr(" since "))));
  EXPECT_GE(took, absl::Milliseconds(300));
  EXPECT_LT(took, absl::Seconds(3));
  ASSERT_FALSE(seen.empty());
  EXPECT_GE(seen.size(), 3u);  // polls with backoff from 10ms up to 50ms
  EXPECT_EQ(std::to_string(seen[0].pid), holder_pid);
  EXPECT_EQ(seen[0].application_name, app_name_ + " lock");
  EXPECT_EQ(seen[0].client_address, "127.0.0.1");

  // Released while the waiter waits: the waiter gets it.
  std::promise<void> waiting;
  std::thread release([&first, future = waiting.get_future()] {
    future.wait_for(std::chrono::seconds(20));
    first.reset();
  });
  int waits = 0;
  absl::StatusOr<std::unique_ptr<MigrationLock>> second = other->AcquireLock(
      absl::Seconds(30),
      [&](const LockHolder&, absl::Duration) {
        if (++waits == 1) {
          waiting.set_value();
        }
      },
      nullptr);
  release.join();
  EXPECT_OK(second);
  EXPECT_GE(waits, 1);
}

TEST_F(PqDatabaseTest, LockIsReleasedWhenTheGuardDies) {
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<MigrationLock> lock,
                         database_->AcquireLock(absl::Seconds(1), nullptr, nullptr));
    EXPECT_NE(LockHolderPid(db_.dsn()), "<none>");
  }
  // The lock connection is closed; its backend exits (and the lock goes)
  // asynchronously, soon after.
  EXPECT_EQ(PollRows(db_.dsn(),
                     "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                     "(SELECT oid FROM pg_database WHERE datname = current_database())",
                     Rows{{"0"}}),
            (Rows{{"0"}}));
  EXPECT_EQ(
      PollRows(db_.dsn(),
               absl::StrCat("SELECT count(*) FROM pg_stat_activity WHERE application_name = '",
                            app_name_, " lock'"),
               Rows{{"0"}}),
      (Rows{{"0"}}));
}

TEST_F(PqDatabaseTest, LockWaitCanBeCancelled) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<MigrationLock> first,
                       database_->AcquireLock(absl::Seconds(1), nullptr, nullptr));
  // Cancelled from another thread once the waiter reports its first wait.
  std::promise<void> waiting;
  std::atomic<bool> cancel{false};
  absl::Time cancelled_at = absl::InfiniteFuture();  // read after join
  std::thread canceller([&, future = waiting.get_future()] {
    future.wait_for(std::chrono::seconds(20));
    cancelled_at = absl::Now();
    cancel = true;
  });
  int waits = 0;
  EXPECT_THAT(database_
                  ->AcquireLock(
                      absl::Seconds(30),
                      [&](const LockHolder&, absl::Duration) {
                        if (++waits == 1) {
                          waiting.set_value();
                        }
                      },
                      [&cancel] { return cancel.load(); })
                  .status(),
              StatusIs(absl::StatusCode::kCancelled, HasSubstr("migration lock")));
  const absl::Time returned_at = absl::Now();
  canceller.join();
  EXPECT_GE(waits, 1);
  EXPECT_LT(returned_at - cancelled_at, absl::Seconds(2));
}

TEST_F(PqDatabaseTest, EachVersionTableHasItsOwnLock) {
  PqOptions options = options_;
  options.tables.version_table = "other_version";
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Database> other, OpenPqDatabase(db_.dsn(), options));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<MigrationLock> first,
                       database_->AcquireLock(absl::ZeroDuration(), nullptr, nullptr));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<MigrationLock> second,
                       other->AcquireLock(absl::ZeroDuration(), nullptr, nullptr));
  EXPECT_THAT(database_->AcquireLock(absl::ZeroDuration(), nullptr, nullptr).status(),
              StatusIs(absl::StatusCode::kDeadlineExceeded, _));
}

TEST(LockHolderTest, Describe) {
  LockHolder holder;
  holder.pid = 123;
  holder.application_name = "schemactl";
  holder.client_address = "10.0.0.4";
  holder.since = absl::FromUnixSeconds(1767225600);
  EXPECT_EQ(holder.Describe(), "pid 123 (schemactl) from 10.0.0.4 since 2026-01-01T00:00:00Z");
  LockHolder local;
  local.pid = 7;
  EXPECT_EQ(local.Describe(), "pid 7");
}

}  // namespace
}  // namespace schemad::store
