// The PostgreSQL store against a real server (tests/testing/pg_cluster.sh);
// each test gets a fresh database.
#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/common/status_macros.h"
#include "service/store/pq/pq_database.h"
#include "service/store/store.h"
#include "tests/testing/pg_fixture.h"
#include "tests/testing/status_matchers.h"

namespace schemad::store {
namespace {

// Advisory locks held in the test's own database (pg_locks is cluster-wide,
// and other tests run in parallel).
constexpr char kAdvisoryLocksHere[] =
    "SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND database = "
    "(SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())";

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
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, database->Connect());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<MigrationLock> lock,
                       session->AcquireLock(absl::Seconds(1), nullptr, nullptr));
  EXPECT_EQ(Q("SELECT application_name FROM pg_stat_activity WHERE application_name LIKE 'xxx%' "
              "ORDER BY 1"),
            (Rows{{std::string(58, 'x') + " lock"}, {std::string(63, 'x')}}));
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

// ------------------------------------------------- ExecuteAndCommit (pipeline)

HistoryRecord UpRecord(const std::string& revision) {
  HistoryRecord record;
  record.revision = revision;
  record.direction = "up";
  record.rows_after = {revision};
  record.checksum = "sum-" + revision;
  record.outcome = "success";
  record.started = absl::Now();
  return record;
}

TEST_F(PqDatabaseTest, ExecuteAndCommitAppliesStatementsVersionAndHistoryTogether) {
  ASSERT_OK(session_->EnsureTables());
  std::vector<int> started;
  int failed_index = 7;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
    ASSERT_OK(tx->SetTimeouts(Timeouts{absl::Seconds(2), absl::Seconds(30)}));
    const std::vector<SqlStatement> statements = {
        Sql("CREATE TABLE account (id int PRIMARY KEY)"),
        Sql("INSERT INTO account VALUES (1), (2)"),
        // A SET LOCAL from SetTimeouts is in effect inside the pipeline.
        Sql("CREATE TABLE seen AS SELECT current_setting('lock_timeout') AS lock_timeout")};
    ASSERT_OK(tx->ExecuteAndCommit(
        statements, {Insert("a1")}, UpRecord("a1"), [&](int i) { started.push_back(i); }, nullptr,
        &failed_index, nullptr));
  }
  EXPECT_EQ(failed_index, -1);
  EXPECT_THAT(started, ElementsAre(0, 1, 2));  // once each, in order
  EXPECT_EQ(Q("SELECT count(*) FROM account"), (Rows{{"2"}}));
  EXPECT_EQ(Q("SELECT lock_timeout FROM seen"), (Rows{{"2s"}}));
  ASSERT_OK_AND_ASSIGN(DatabaseState state, session_->ReadState());
  EXPECT_THAT(state.rows, ElementsAre("a1"));
  EXPECT_EQ(Q("SELECT revision, direction, checksum, outcome, duration_ms > 0 FROM "
              "schemad_history"),
            (Rows{{"a1", "up", "sum-a1", "success", "t"}}));
  // The session is idle and usable: the timeouts were local to the revision.
  EXPECT_EQ(Q("SELECT 1"), (Rows{{"1"}}));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
  ASSERT_OK(tx->Execute(Sql("CREATE TABLE after (x text)"), nullptr));
  ASSERT_OK(tx->Execute(Sql("INSERT INTO after SELECT current_setting('lock_timeout')"), nullptr));
  ASSERT_OK(tx->Commit());
  EXPECT_EQ(Q("SELECT x FROM after"), (Rows{{"0"}}));
}

TEST_F(PqDatabaseTest, ExecuteAndCommitNamesTheFailingStatementAndAppliesNothing) {
  ASSERT_OK(session_->EnsureTables());
  CommitVersionChanges({Insert("a1")});
  std::vector<int> started;
  int failed_index = -1;
  StatementError error;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
    const std::vector<SqlStatement> statements = {Sql("CREATE TABLE first_one (id int)"),
                                                  Sql("SELECT * FROM missing_table"),
                                                  Sql("CREATE TABLE third_one (id int)")};
    EXPECT_THAT(tx->ExecuteAndCommit(
                    statements, {Update("a1", "a2")}, UpRecord("a2"),
                    [&](int i) { started.push_back(i); }, nullptr, &failed_index, &error),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         HasSubstr("SQLSTATE 42P01: relation \"missing_table\" does not exist")));
    // Finished: nothing more runs on it.
    EXPECT_THAT(tx->Commit(), StatusIs(absl::StatusCode::kFailedPrecondition, _));
  }
  EXPECT_EQ(failed_index, 1);
  EXPECT_EQ(error.sqlstate, "42P01");
  EXPECT_EQ(error.message, "relation \"missing_table\" does not exist");
  EXPECT_EQ(error.position, 15);            // in the statement's own text
  EXPECT_THAT(started, ElementsAre(0, 1));  // statement 2 never started
  EXPECT_EQ(Q("SELECT to_regclass('first_one') IS NULL, to_regclass('third_one') IS NULL"),
            (Rows{{"t", "t"}}));
  ASSERT_OK_AND_ASSIGN(DatabaseState state, session_->ReadState());
  EXPECT_THAT(state.rows, ElementsAre("a1"));
  EXPECT_EQ(Q("SELECT count(*) FROM schemad_history"), (Rows{{"0"}}));
  // The session left the failed transaction and pipeline mode.
  CommitVersionChanges({Update("a1", "a3")});
  ASSERT_OK_AND_ASSIGN(state, session_->ReadState());
  EXPECT_THAT(state.rows, ElementsAre("a3"));
}

TEST_F(PqDatabaseTest, ExecuteAndCommitRefusesAVersionRowThatMovedAndAppliesNothing) {
  ASSERT_OK(session_->EnsureTables());
  CommitVersionChanges({Insert("a1")});
  for (const VersionRowChange& change : {Update("zz", "b2"), Delete("zz")}) {
    int failed_index = 7;
    {
      ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
      const absl::Status status =
          tx->ExecuteAndCommit({Sql("CREATE TABLE made (id int)")}, {change}, UpRecord("b2"),
                               nullptr, nullptr, &failed_index, nullptr);
      EXPECT_THAT(status, StatusIs(absl::StatusCode::kFailedPrecondition,
                                   HasSubstr("Online migration expected to match one row when ")));
      EXPECT_THAT(status.message(), HasSubstr("in 'alembic_version'; 0 found"));
      EXPECT_THAT(status.message(), Not(HasSubstr("schemad-mismatch")));
    }
    EXPECT_EQ(failed_index, -1);
    EXPECT_EQ(Q("SELECT to_regclass('made') IS NULL"), (Rows{{"t"}}));
    EXPECT_EQ(Q("SELECT count(*) FROM schemad_history"), (Rows{{"0"}}));
  }
  ASSERT_OK_AND_ASSIGN(DatabaseState state, session_->ReadState());
  EXPECT_THAT(state.rows, ElementsAre("a1"));
}

TEST_F(PqDatabaseTest, ExecuteRevisionRefusesAVersionRowThatMovedAndRollsBackTheTransaction) {
  ASSERT_OK(session_->EnsureTables());
  CommitVersionChanges({Insert("a1")});
  int failed_index = 7;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
    ASSERT_OK(tx->ExecuteRevision({Sql("CREATE TABLE first_made (id int)")}, {Update("a1", "b1")},
                                  UpRecord("b1"), nullptr, nullptr, &failed_index, nullptr));
    // A merge's two changes, the second naming a row that is not there: the
    // first one's row was right, and still nothing of the transaction stays.
    const absl::Status status = tx->ExecuteRevision(
        {Sql("CREATE TABLE second_made (id int)")}, {Update("b1", "c1"), Delete("zz")},
        UpRecord("c1"), nullptr, nullptr, &failed_index, nullptr);
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kFailedPrecondition,
                                 HasSubstr("Online migration expected to match one row when "
                                           "deleting 'zz' in 'alembic_version'; 0 found")));
    EXPECT_EQ(failed_index, -1);
    EXPECT_THAT(tx->Commit(), StatusIs(absl::StatusCode::kFailedPrecondition, _));
  }
  EXPECT_EQ(Q("SELECT to_regclass('first_made') IS NULL, to_regclass('second_made') IS NULL, "
              "(SELECT count(*) FROM schemad_history)"),
            (Rows{{"t", "t", "0"}}));
  ASSERT_OK_AND_ASSIGN(DatabaseState state, session_->ReadState());
  EXPECT_THAT(state.rows, ElementsAre("a1"));
  CommitVersionChanges({Update("a1", "a2")});  // the session left the rolled-back transaction
}

TEST_F(PqDatabaseTest, ExecuteAndCommitReportsEachStatementWhileItRuns) {
  ASSERT_OK(session_->EnsureTables());
  const std::string sleeping =
      absl::StrCat("SELECT count(*) FROM pg_stat_activity WHERE application_name = '", app_name_,
                   "' AND wait_event = 'PgSleep'");
  std::vector<int> started;
  Rows sleeping_when_started_1;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
  int failed_index = 7;
  ASSERT_OK(tx->ExecuteAndCommit(
      {Sql("CREATE TABLE t1 (id int)"), Sql("SELECT pg_sleep(2)"), Sql("CREATE TABLE t2 (id int)")},
      {Insert("a1")}, UpRecord("a1"),
      [&](int i) {
        started.push_back(i);
        if (i == 1) {
          // Statement 1's event comes while it runs, not after the revision.
          sleeping_when_started_1 = PollRows(db_.dsn(), sleeping, Rows{{"1"}}, absl::Seconds(1.5));
        }
      },
      nullptr, &failed_index, nullptr));
  EXPECT_THAT(started, ElementsAre(0, 1, 2));
  EXPECT_EQ(sleeping_when_started_1, (Rows{{"1"}}));
}

TEST_F(PqDatabaseTest, ExecuteAndCommitLockTimeoutNamesTheStatementAndTheBlocker) {
  ASSERT_OK(session_->EnsureTables());
  Exec(db_.dsn(), "CREATE TABLE busy (id int)");
  pqxx::connection blocker(db_.dsn());
  pqxx::work hold(blocker);
  hold.exec("LOCK TABLE busy IN ACCESS EXCLUSIVE MODE");
  int failed_index = -1;
  StatementError error;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
  ASSERT_OK(tx->SetTimeouts(Timeouts{absl::Milliseconds(800), absl::ZeroDuration()}));
  EXPECT_THAT(
      tx->ExecuteAndCommit({Sql("CREATE TABLE fine (id int)"), Sql("SELECT * FROM busy")},
                           {Insert("a1")}, UpRecord("a1"), nullptr, nullptr, &failed_index, &error),
      StatusIs(absl::StatusCode::kAborted, HasSubstr("SQLSTATE 55P03")));
  EXPECT_EQ(failed_index, 1);
  EXPECT_EQ(error.sqlstate, "55P03");
  EXPECT_THAT(error.message, HasSubstr("blocked by pid"));
  tx.reset();
  hold.abort();
  EXPECT_EQ(Q("SELECT to_regclass('fine') IS NULL"), (Rows{{"t"}}));
}

TEST_F(PqDatabaseTest, ExecuteAndCommitCancelStopsTheRunningStatement) {
  ASSERT_OK(session_->EnsureTables());
  std::atomic<bool> was_sleeping{false};
  std::thread canceller([&] {
    was_sleeping = PollRows(db_.dsn(),
                            absl::StrCat("SELECT count(*) FROM pg_stat_activity WHERE "
                                         "application_name = '",
                                         app_name_, "' AND wait_event = 'PgSleep'"),
                            Rows{{"1"}}, absl::Seconds(20)) == Rows{{"1"}};
    session_->Cancel();
  });
  int failed_index = -1;
  StatementError error;
  absl::Status status;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
    status = tx->ExecuteAndCommit(
        {Sql("CREATE TABLE before_sleep (id int)"), Sql("SELECT pg_sleep(30)")}, {Insert("a1")},
        UpRecord("a1"), nullptr, nullptr, &failed_index, &error);
  }
  canceller.join();
  EXPECT_TRUE(was_sleeping.load());
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kAborted, HasSubstr("SQLSTATE 57014")));
  EXPECT_EQ(failed_index, 1);
  EXPECT_EQ(Q("SELECT to_regclass('before_sleep') IS NULL"), (Rows{{"t"}}));
  ASSERT_OK_AND_ASSIGN(DatabaseState state, session_->ReadState());
  EXPECT_THAT(state.rows, IsEmpty());
}

// ------------------------------------- ExecuteRevision (per-command pipelines)

TEST_F(PqDatabaseTest, ExecuteRevisionKeepsSeveralRevisionsInOneTransactionUntilCommit) {
  ASSERT_OK(session_->EnsureTables());
  std::vector<std::string> started;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
    const std::vector<std::pair<std::string, VersionRowChange>> revisions = {
        {"a1", Insert("a1")}, {"a2", Update("a1", "a2")}, {"a3", Update("a2", "a3")}};
    for (const auto& [id, change] : revisions) {
      ASSERT_OK(tx->SetTimeouts(
          Timeouts{id == "a2" ? absl::Seconds(2) : absl::ZeroDuration(), absl::ZeroDuration()}));
      int failed_index = 7;
      ASSERT_OK(tx->ExecuteRevision(
          {Sql(absl::StrCat("CREATE TABLE t_", id, " (lock_timeout text)")),
           Sql(absl::StrCat("INSERT INTO t_", id, " SELECT current_setting('lock_timeout')"))},
          {change}, UpRecord(id), [&](int i) { started.push_back(absl::StrCat(id, ":", i)); },
          nullptr, &failed_index, nullptr));
      EXPECT_EQ(failed_index, -1);
    }
    // Nothing is visible from outside before the COMMIT.
    EXPECT_EQ(Q("SELECT to_regclass('t_a1') IS NULL, to_regclass('t_a3') IS NULL"),
              (Rows{{"t", "t"}}));
    EXPECT_EQ(Q("SELECT count(*) FROM alembic_version"), (Rows{{"0"}}));
    ASSERT_OK(tx->Commit());
  }
  EXPECT_THAT(started, ElementsAre("a1:0", "a1:1", "a2:0", "a2:1", "a3:0", "a3:1"));
  // Each revision's SET LOCAL held for it alone.
  EXPECT_EQ(Q("SELECT (SELECT lock_timeout FROM t_a1), (SELECT lock_timeout FROM t_a2), "
              "(SELECT lock_timeout FROM t_a3)"),
            (Rows{{"0", "2s", "0"}}));
  ASSERT_OK_AND_ASSIGN(DatabaseState state, session_->ReadState());
  EXPECT_THAT(state.rows, ElementsAre("a3"));
  EXPECT_EQ(Q("SELECT string_agg(revision, ',' ORDER BY id) FROM schemad_history"),
            (Rows{{"a1,a2,a3"}}));
  // The session is idle and usable.
  CommitVersionChanges({Update("a3", "a4")});
  ASSERT_OK_AND_ASSIGN(state, session_->ReadState());
  EXPECT_THAT(state.rows, ElementsAre("a4"));
}

TEST_F(PqDatabaseTest, ExecuteRevisionFailureRollsBackEveryRevisionOfTheTransaction) {
  ASSERT_OK(session_->EnsureTables());
  CommitVersionChanges({Insert("a1")});
  int failed_index = 7;
  StatementError error;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
    ASSERT_OK(tx->ExecuteRevision({Sql("CREATE TABLE first_revision (id int)")},
                                  {Update("a1", "a2")}, UpRecord("a2"), nullptr, nullptr,
                                  &failed_index, nullptr));
    EXPECT_THAT(
        tx->ExecuteRevision(
            {Sql("CREATE TABLE second_revision (id int)"), Sql("SELECT * FROM missing_table")},
            {Update("a2", "a3")}, UpRecord("a3"), nullptr, nullptr, &failed_index, &error),
        StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("SQLSTATE 42P01")));
    EXPECT_EQ(failed_index, 1);
    EXPECT_EQ(error.position, 15);  // in the statement's own text
    EXPECT_THAT(tx->Commit(), StatusIs(absl::StatusCode::kFailedPrecondition, _));
  }
  EXPECT_EQ(Q("SELECT to_regclass('first_revision') IS NULL, to_regclass('second_revision') IS "
              "NULL, (SELECT count(*) FROM schemad_history)"),
            (Rows{{"t", "t", "0"}}));
  ASSERT_OK_AND_ASSIGN(DatabaseState state, session_->ReadState());
  EXPECT_THAT(state.rows, ElementsAre("a1"));
  CommitVersionChanges({Update("a1", "b1")});  // the session left the failed transaction
}

TEST_F(PqDatabaseTest, ExecuteRevisionAbandonedBeforeCommitAppliesNothing) {
  ASSERT_OK(session_->EnsureTables());
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
    int failed_index = 7;
    ASSERT_OK(tx->ExecuteRevision({Sql("CREATE TABLE never (id int)")}, {Insert("a1")},
                                  UpRecord("a1"), nullptr, nullptr, &failed_index, nullptr));
    // What the pipeline began is not pqxx's: schemad's own statements are refused.
    EXPECT_THAT(tx->SetNeedsAttention(std::nullopt),
                StatusIs(absl::StatusCode::kInternal, HasSubstr("takes only")));
  }  // destroyed without Commit: rolled back
  EXPECT_EQ(Q("SELECT to_regclass('never') IS NULL"), (Rows{{"t"}}));
  ASSERT_OK_AND_ASSIGN(DatabaseState state, session_->ReadState());
  EXPECT_THAT(state.rows, IsEmpty());
}

TEST_F(PqDatabaseTest, ExecuteRevisionRunsStatementsThatNeedTheirOwnRoundTripInTheSameTransaction) {
  ASSERT_OK(session_->EnsureTables());
  std::vector<std::string> started;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
    int failed_index = 7;
    ASSERT_OK(tx->ExecuteRevision({Sql("CREATE TABLE item (id int)")}, {Insert("a1")},
                                  UpRecord("a1"), nullptr, nullptr, &failed_index, nullptr));
    // PREPARE goes one statement at a time (NeedsOwnRoundTrip), on the
    // transaction the first pipeline began.
    ASSERT_OK(tx->SetTimeouts(Timeouts{absl::Seconds(3), absl::ZeroDuration()}));
    ASSERT_OK(tx->ExecuteRevision(
        {Sql("PREPARE add_item AS INSERT INTO item SELECT 2 WHERE current_setting("
             "'lock_timeout') = '3s'"),
         Sql("EXECUTE add_item")},
        {Update("a1", "a2")}, UpRecord("a2"),
        [&](int i) { started.push_back(absl::StrCat("a2:", i)); }, nullptr, &failed_index,
        nullptr));
    ASSERT_OK(tx->ExecuteRevision({Sql("INSERT INTO item VALUES (3)")}, {Update("a2", "a3")},
                                  UpRecord("a3"), nullptr, nullptr, &failed_index, nullptr));
    EXPECT_EQ(Q("SELECT to_regclass('item') IS NULL"), (Rows{{"t"}}));
    ASSERT_OK(tx->Commit());
  }
  EXPECT_THAT(started, ElementsAre("a2:0", "a2:1"));
  EXPECT_EQ(Q("SELECT string_agg(id::text, ',' ORDER BY id) FROM item"), (Rows{{"2,3"}}));
  ASSERT_OK_AND_ASSIGN(DatabaseState state, session_->ReadState());
  EXPECT_THAT(state.rows, ElementsAre("a3"));
  // The prepared statement was discarded with the revision's state.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
  EXPECT_THAT(tx->Execute(Sql("EXECUTE add_item"), nullptr),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("prepared statement \"add_item\" does not exist")));
}

TEST_F(PqDatabaseTest, ExecuteRevisionRecordsEachRevisionsOwnDurationAtCommit) {
  ASSERT_OK(session_->EnsureTables());
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
    const std::vector<std::tuple<std::string, std::string, VersionRowChange>> revisions = {
        {"a1", "CREATE TABLE d_a1 (id int)", Insert("a1")},
        {"a2", "SELECT pg_sleep(0.3)", Update("a1", "a2")},
        {"a3", "CREATE TABLE d_a3 (id int)", Update("a2", "a3")}};
    for (const auto& [id, sql, change] : revisions) {
      int failed_index = 7;
      ASSERT_OK(tx->ExecuteRevision({Sql(sql)}, {change}, UpRecord(id), nullptr, nullptr,
                                    &failed_index, nullptr));
    }
    ASSERT_OK(tx->Commit());
  }
  // a3 began 300 ms after the transaction did; its row says how long a3 took.
  EXPECT_EQ(Q("SELECT revision, duration_ms >= 300, duration_ms < 250 FROM schemad_history "
              "ORDER BY id"),
            (Rows{{"a1", "f", "t"}, {"a2", "t", "f"}, {"a3", "f", "t"}}));
}

TEST_F(PqDatabaseTest, ExecuteRevisionHistoryFailingAtCommitRollsBackEveryRevision) {
  ASSERT_OK(session_->EnsureTables());
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
    int failed_index = 7;
    ASSERT_OK(tx->ExecuteRevision({Sql("CREATE TABLE kept_until_commit (id int)")}, {Insert("a1")},
                                  UpRecord("a1"), nullptr, nullptr, &failed_index, nullptr));
    // A revision that takes the history table away: the rows written with
    // COMMIT cannot go in, and COMMIT does not run.
    ASSERT_OK(tx->ExecuteRevision({Sql("ALTER TABLE schemad_history RENAME TO history_gone")},
                                  {Update("a1", "a2")}, UpRecord("a2"), nullptr, nullptr,
                                  &failed_index, nullptr));
    EXPECT_THAT(tx->Commit(),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         AllOf(HasSubstr("writing the history rows"), HasSubstr("42P01"))));
  }
  EXPECT_EQ(Q("SELECT to_regclass('kept_until_commit') IS NULL, to_regclass('history_gone') IS "
              "NULL, (SELECT count(*) FROM schemad_history)"),
            (Rows{{"t", "t", "0"}}));
  ASSERT_OK_AND_ASSIGN(DatabaseState state, session_->ReadState());
  EXPECT_THAT(state.rows, IsEmpty());
  CommitVersionChanges({Insert("b1")});  // the session left the failed transaction
}

TEST_F(PqDatabaseTest, ExecuteAndCommitStillRefusesStatementsThatEndTheTransaction) {
  ASSERT_OK(session_->EnsureTables());
  int failed_index = -1;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
    EXPECT_THAT(
        tx->ExecuteAndCommit(
            {Sql("CREATE TABLE x (id int)"), Sql("/* c */ commit"), Sql("CREATE TABLE y (id int)")},
            {Insert("a1")}, UpRecord("a1"), nullptr, nullptr, &failed_index, nullptr),
        StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("ended the transaction")));
  }
  EXPECT_EQ(failed_index, 1);
  EXPECT_EQ(Q("SELECT to_regclass('y') IS NULL"), (Rows{{"t"}}));
  ASSERT_OK_AND_ASSIGN(DatabaseState state, session_->ReadState());
  EXPECT_THAT(state.rows, IsEmpty());
}

TEST_F(PqDatabaseTest, ExecuteAndCommitCancelledAfterTheLastStatementCommitsNothing) {
  ASSERT_OK(session_->EnsureTables());
  int asked = 0;
  int failed_index = 7;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
    EXPECT_THAT(tx->ExecuteAndCommit(
                    {Sql("CREATE TABLE made (id int)")}, {Insert("a1")}, UpRecord("a1"), nullptr,
                    [&]() { return ++asked > 0; }, &failed_index, nullptr),
                StatusIs(absl::StatusCode::kCancelled, HasSubstr("rolled back")));
  }
  EXPECT_GE(asked, 1);
  EXPECT_EQ(failed_index, -1);
  EXPECT_EQ(Q("SELECT to_regclass('made') IS NULL"), (Rows{{"t"}}));
  EXPECT_EQ(Q("SELECT count(*) FROM schemad_history"), (Rows{{"0"}}));
  ASSERT_OK_AND_ASSIGN(DatabaseState state, session_->ReadState());
  EXPECT_THAT(state.rows, IsEmpty());
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
                    "SELECT DISTINCT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
                    "database = (SELECT oid FROM pg_database WHERE datname = current_database())");
  return rows.size() == 1 ? rows[0][0] : std::string("<none>");
}

TEST_F(PqDatabaseTest, LockIsExclusiveAndNamesTheHolder) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<MigrationLock> first,
                       session_->AcquireLock(absl::Seconds(1), nullptr, nullptr));
  const std::string holder_pid = LockHolderPid(db_.dsn());
  EXPECT_EQ(
      Q(absl::StrCat("SELECT application_name FROM pg_stat_activity WHERE pid = ", holder_pid)),
      (Rows{{app_name_ + " lock"}}));

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Database> other_db, OpenPqDatabase(db_.dsn(), options_));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> other, other_db->Connect());
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
                         session_->AcquireLock(absl::Seconds(1), nullptr, nullptr));
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

TEST_F(PqDatabaseTest, APreparedLockConnectionIsTheOneTheNextSessionLocksWith) {
  const std::string lock_backends = absl::StrCat(
      "SELECT count(*) FROM pg_stat_activity WHERE application_name = '", app_name_, " lock'");
  database_->PrepareLock();
  // It logs in beside the session's own login, before any lock is asked for.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, database_->Connect());
  EXPECT_EQ(PollRows(db_.dsn(), lock_backends, Rows{{"1"}}), (Rows{{"1"}}));
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<MigrationLock> lock,
                         session->AcquireLock(absl::Seconds(1), nullptr, nullptr));
    // The lock is held on that connection: no second one.
    EXPECT_EQ(Q(lock_backends), (Rows{{"1"}}));
    EXPECT_THAT(session_->AcquireLock(absl::ZeroDuration(), nullptr, nullptr).status(),
                StatusIs(absl::StatusCode::kDeadlineExceeded, _));
  }
  EXPECT_EQ(PollRows(db_.dsn(), lock_backends, Rows{{"0"}}), (Rows{{"0"}}));
  // Only the next Connect takes it: the one after opens its own at AcquireLock.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> later, database_->Connect());
  EXPECT_EQ(Q(lock_backends), (Rows{{"0"}}));
  EXPECT_OK(later->AcquireLock(absl::Seconds(1), nullptr, nullptr));
}

TEST_F(PqDatabaseTest, APreparedLockConnectionNeverUsedIsClosedWithItsSession) {
  const std::string lock_backends = absl::StrCat(
      "SELECT count(*) FROM pg_stat_activity WHERE application_name = '", app_name_, " lock'");
  database_->PrepareLock();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, database_->Connect());
  ASSERT_OK(session->ReadState().status());
  session.reset();
  EXPECT_EQ(PollRows(db_.dsn(), lock_backends, Rows{{"0"}}), (Rows{{"0"}}));
  // Prepared with no Connect after it: closed with the database.
  database_->PrepareLock();
  EXPECT_EQ(PollRows(db_.dsn(), lock_backends, Rows{{"1"}}), (Rows{{"1"}}));
  session_.reset();
  database_.reset();
  EXPECT_EQ(PollRows(db_.dsn(), lock_backends, Rows{{"0"}}), (Rows{{"0"}}));
}

TEST_F(PqDatabaseTest, LockWaitCanBeCancelled) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<MigrationLock> first,
                       session_->AcquireLock(absl::Seconds(1), nullptr, nullptr));
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
  EXPECT_THAT(session_
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
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Database> other_db, OpenPqDatabase(db_.dsn(), options));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> other, other_db->Connect());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<MigrationLock> first,
                       session_->AcquireLock(absl::ZeroDuration(), nullptr, nullptr));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<MigrationLock> second,
                       other->AcquireLock(absl::ZeroDuration(), nullptr, nullptr));
  EXPECT_THAT(session_->AcquireLock(absl::ZeroDuration(), nullptr, nullptr).status(),
              StatusIs(absl::StatusCode::kDeadlineExceeded, _));
}

// ------------------------------------------- what revisions do to a session

// A statement for Transaction::Execute that fails unless the session is as
// it was after connecting: default search_path and role, no temporary table,
// prepared statement, LISTEN or advisory lock, schemad's connection check.
SqlStatement CleanSessionCheck() {
  return Sql(R"(DO $$
BEGIN
  IF current_setting('search_path') <> '"$user", public' THEN
    RAISE EXCEPTION 'search_path leaked: %', current_setting('search_path');
  END IF;
  IF current_setting('work_mem') <> '4MB' THEN
    RAISE EXCEPTION 'work_mem leaked: %', current_setting('work_mem');
  END IF;
  IF current_user <> session_user THEN
    RAISE EXCEPTION 'role leaked: %', current_user;
  END IF;
  IF to_regclass('pg_temp.leaked_temp') IS NOT NULL THEN
    RAISE EXCEPTION 'temporary table leaked';
  END IF;
  IF EXISTS (SELECT FROM pg_prepared_statements) THEN
    RAISE EXCEPTION 'prepared statement leaked';
  END IF;
  IF EXISTS (SELECT FROM pg_listening_channels()) THEN
    RAISE EXCEPTION 'LISTEN leaked';
  END IF;
  IF EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) THEN
    RAISE EXCEPTION 'advisory lock leaked';
  END IF;
  IF current_setting('client_connection_check_interval') <> '1s' THEN
    RAISE EXCEPTION 'client_connection_check_interval is %',
      current_setting('client_connection_check_interval');
  END IF;
END $$)");
}

// Everything a revision may leave in its session.
const char kLeaveEverything[] =
    "SET search_path TO decoy, public; SET work_mem = '77MB'; SET ROLE revision_owner; "
    "CREATE TEMP TABLE leaked_temp (id int); PREPARE leaked_plan AS SELECT 1; LISTEN leaked; "
    "SELECT pg_advisory_lock(4242)";

class PqSessionStateTest : public PqDatabaseTest {
 protected:
  void SetUp() override {
    PqDatabaseTest::SetUp();
    if (HasFatalFailure()) {
      return;
    }
    // A decoy schema with tables of the same names: unqualified bookkeeping
    // after `SET search_path TO decoy, public` would land there.
    Exec(db_.dsn(),
         "DO $$ BEGIN CREATE ROLE revision_owner; EXCEPTION WHEN duplicate_object OR "
         "unique_violation THEN END $$; "
         "CREATE SCHEMA decoy; "
         "CREATE TABLE decoy.alembic_version (version_num varchar(32) PRIMARY KEY); "
         "CREATE TABLE decoy.schemad_state (version_table text PRIMARY KEY, revision text, "
         "direction text, statements_done int, statements_total int, error text, "
         "operation_id text, started timestamptz); "
         "INSERT INTO decoy.schemad_state VALUES ('alembic_version', 'decoy', 'up', 0, 1, "
         "'decoy mark', NULL, now()); "
         "GRANT USAGE ON SCHEMA decoy TO revision_owner");
    ASSERT_OK(session_->EnsureTables());
  }

  // Runs CleanSessionCheck in a transaction of its own on `session`.
  absl::Status CheckClean(Session& session) {
    ASSIGN_OR_RETURN(std::unique_ptr<Transaction> tx, session.Begin());
    StatementError error;
    RETURN_IF_ERROR(tx->Execute(CleanSessionCheck(), &error));
    return tx->Commit();
  }
};

TEST_F(PqSessionStateTest, TransactionalRevisionCannotMoveTheBookkeepingNorLeaveItsState) {
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
    ASSERT_OK(tx->Execute(Sql(kLeaveEverything), nullptr));
    ASSERT_OK(tx->ApplyVersionChanges({Insert("a1")}));
    HistoryRecord record;
    record.revision = "a1";
    record.direction = "up";
    record.rows_after = {"a1"};
    record.outcome = "success";
    ASSERT_OK(tx->AppendHistory(record));
    ASSERT_OK(tx->Commit());
  }
  EXPECT_EQ(Q("SELECT version_num FROM public.alembic_version"), (Rows{{"a1"}}));
  EXPECT_EQ(Q("SELECT count(*) FROM decoy.alembic_version"), (Rows{{"0"}}));
  EXPECT_EQ(Q("SELECT revision FROM public.schemad_history"), (Rows{{"a1"}}));
  // The plain SETs were discarded with the COMMIT: nothing of the revision
  // reaches schemad's next read or the next revision.
  ASSERT_OK_AND_ASSIGN(DatabaseState state, session_->ReadState());
  EXPECT_THAT(state.rows, ElementsAre("a1"));
  EXPECT_FALSE(state.needs_attention.has_value()) << state.needs_attention->error;
  EXPECT_OK(CheckClean(*session_));
  EXPECT_EQ(Q(kAdvisoryLocksHere), (Rows{{"0"}}));
}

// The same through ExecuteAndCommit's pipeline (one command per statement):
// the reset goes in the pipeline, before the bookkeeping, and commits with it.
TEST_F(PqSessionStateTest, PipelinedRevisionCannotMoveTheBookkeepingNorLeaveItsState) {
  const std::vector<SqlStatement> statements = {Sql("SET search_path TO decoy, public"),
                                                Sql("SET work_mem = '77MB'"),
                                                Sql("SET ROLE revision_owner"),
                                                Sql("CREATE TEMP TABLE leaked_temp (id int)"),
                                                Sql("LISTEN leaked"),
                                                Sql("SELECT pg_advisory_lock(4242)"),
                                                Sql("SET application_name = 'not schemad'")};
  int failed_index = 7;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
    ASSERT_OK(tx->SetTimeouts(Timeouts{absl::Seconds(2), absl::Seconds(30)}));
    HistoryRecord record;
    record.revision = "a1";
    record.direction = "up";
    record.rows_after = {"a1"};
    record.outcome = "success";
    ASSERT_OK(tx->ExecuteAndCommit(statements, {Insert("a1")}, record, nullptr, nullptr,
                                   &failed_index, nullptr));
  }
  EXPECT_EQ(failed_index, -1);
  EXPECT_EQ(Q("SELECT version_num FROM public.alembic_version"), (Rows{{"a1"}}));
  EXPECT_EQ(Q("SELECT count(*) FROM decoy.alembic_version"), (Rows{{"0"}}));
  EXPECT_EQ(Q("SELECT revision FROM public.schemad_history"), (Rows{{"a1"}}));
  EXPECT_EQ(Q(absl::StrCat("SELECT count(*) FROM pg_stat_activity WHERE application_name = '",
                           app_name_, "'")),
            (Rows{{"1"}}));
  ASSERT_OK_AND_ASSIGN(DatabaseState state, session_->ReadState());
  EXPECT_THAT(state.rows, ElementsAre("a1"));
  EXPECT_FALSE(state.needs_attention.has_value()) << state.needs_attention->error;
  EXPECT_OK(CheckClean(*session_));
  EXPECT_EQ(Q(kAdvisoryLocksHere), (Rows{{"0"}}));
}

TEST_F(PqSessionStateTest, NonTransactionalRevisionKeepsItsStateUntilResetAndMarksRightly) {
  // The issue's case: search_path emptied by set_config(..., false).
  ASSERT_OK(session_->ExecuteAutocommit(Sql("SELECT set_config('search_path', '', false)"),
                                        Timeouts{}, nullptr));
  ASSERT_OK(
      session_->ExecuteAutocommit(Sql("SET maintenance_work_mem = '77MB'"), Timeouts{}, nullptr));
  // The revision's next statement sees what it set (a SET before CREATE
  // INDEX CONCURRENTLY is the usual case)...
  ASSERT_OK(session_->ExecuteAutocommit(
      Sql("DO $$ BEGIN IF current_setting('maintenance_work_mem') <> '77MB' OR "
          "current_setting('search_path') <> '' THEN RAISE EXCEPTION 'lost'; END IF; END $$"),
      Timeouts{absl::Seconds(1), absl::Seconds(5)}, nullptr));
  // ...and schemad's needs-attention mark still lands in its own table.
  NeedsAttention marker;
  marker.revision = "b2";
  marker.direction = "up";
  marker.statements_done = 3;
  marker.statements_total = 4;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
    ASSERT_OK(tx->SetNeedsAttention(marker));
    ASSERT_OK(tx->Commit());
  }
  EXPECT_EQ(Q("SELECT revision, statements_done FROM public.schemad_state"), (Rows{{"b2", "3"}}));
  ASSERT_OK_AND_ASSIGN(DatabaseState state, session_->ReadState());
  ASSERT_TRUE(state.needs_attention.has_value());
  EXPECT_EQ(state.needs_attention->revision, "b2");
  // The revision is over: reset, and nothing of it is left.
  ASSERT_OK(session_->ResetState());
  EXPECT_OK(CheckClean(*session_));
}

TEST_F(PqSessionStateTest, ResetDiscardsEverythingARevisionLeaves) {
  // Non-transactional.
  ASSERT_OK(session_->ExecuteAutocommit(Sql(kLeaveEverything), Timeouts{}, nullptr));
  EXPECT_THAT(CheckClean(*session_),  // the check sees the leftovers
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("leaked")));
  ASSERT_OK(session_->ResetState());
  EXPECT_OK(CheckClean(*session_));
  // A transactional revision that rolled back: its SETs went with it, its
  // advisory lock and prepared statement did not.
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
    ASSERT_OK(tx->Execute(Sql(kLeaveEverything), nullptr));
    EXPECT_FALSE(tx->Execute(Sql("SELECT 1/0"), nullptr).ok());
  }
  EXPECT_EQ(Q(kAdvisoryLocksHere), (Rows{{"1"}}));
  ASSERT_OK(session_->ResetState());
  EXPECT_OK(CheckClean(*session_));
  // A transactional revision committed without bookkeeping: reset before COMMIT.
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
    ASSERT_OK(tx->Execute(Sql(kLeaveEverything), nullptr));
    ASSERT_OK(tx->Commit());
  }
  EXPECT_OK(CheckClean(*session_));
}

TEST_F(PqSessionStateTest, WholePlanInOneTransactionResetsBetweenRevisions) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
  ASSERT_OK(tx->SetTimeouts(Timeouts{absl::Seconds(3), absl::ZeroDuration()}));
  ASSERT_OK(tx->Execute(Sql("SET search_path TO decoy, public; SET work_mem = '77MB'"), nullptr));
  ASSERT_OK(tx->ApplyVersionChanges({Insert("a1")}));
  // The second revision: its own timeouts hold, the first one's settings do not.
  ASSERT_OK(tx->SetTimeouts(Timeouts{absl::Seconds(2), absl::ZeroDuration()}));
  ASSERT_OK(tx->Execute(
      Sql("DO $$ BEGIN IF current_setting('lock_timeout') <> '2s' OR "
          "current_setting('search_path') <> '\"$user\", public' OR "
          "current_setting('work_mem') <> '4MB' THEN RAISE EXCEPTION 'leaked into the next "
          "revision: % % %', current_setting('lock_timeout'), current_setting('search_path'), "
          "current_setting('work_mem'); END IF; END $$"),
      nullptr));
  ASSERT_OK(tx->ApplyVersionChanges({Update("a1", "b2")}));
  ASSERT_OK(tx->Commit());
  EXPECT_EQ(Q("SELECT version_num FROM public.alembic_version"), (Rows{{"b2"}}));
  EXPECT_EQ(Q("SELECT count(*) FROM decoy.alembic_version"), (Rows{{"0"}}));
}

TEST_F(PqSessionStateTest, PerCommandPipelinesResetBetweenRevisions) {
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
    int failed_index = 7;
    std::vector<SqlStatement> leave;
    for (absl::string_view statement : absl::StrSplit(kLeaveEverything, "; ")) {
      leave.push_back(Sql(std::string(statement)));
    }
    ASSERT_OK(tx->SetTimeouts(Timeouts{absl::Seconds(3), absl::ZeroDuration()}));
    ASSERT_OK(tx->ExecuteRevision(leave, {Insert("a1")}, UpRecord("a1"), nullptr, nullptr,
                                  &failed_index, nullptr));
    // The second revision sees none of the first one's session state.
    ASSERT_OK(tx->ExecuteRevision({CleanSessionCheck()}, {Update("a1", "b2")}, UpRecord("b2"),
                                  nullptr, nullptr, &failed_index, nullptr));
    ASSERT_OK(tx->Commit());
  }
  EXPECT_EQ(Q("SELECT version_num FROM public.alembic_version"), (Rows{{"b2"}}));
  EXPECT_EQ(Q("SELECT count(*) FROM decoy.alembic_version"), (Rows{{"0"}}));
  EXPECT_OK(CheckClean(*session_));
}

TEST_F(PqDatabaseTest, UnqualifiedNameResolvesOnceThroughTheSearchPath) {
  // A DSN whose search_path puts a tenant schema first: the tables go there,
  // and stay named there whatever the session's search_path becomes.
  Exec(db_.dsn(), "CREATE SCHEMA tenant");
  const std::string dsn = db_.dsn() + "?options=-csearch_path%3Dtenant,public";
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Database> database, OpenPqDatabase(dsn, options_));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, database->Connect());
  ASSERT_OK(session->EnsureTables());
  EXPECT_EQ(Q("SELECT count(*) FROM pg_tables WHERE schemaname = 'tenant' AND tablename IN "
              "('alembic_version', 'schemad_history', 'schemad_state', 'schemad_run')"),
            (Rows{{"4"}}));
  ASSERT_OK(session->ExecuteAutocommit(Sql("SET search_path TO public"), Timeouts{}, nullptr));
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session->Begin());
    ASSERT_OK(tx->ApplyVersionChanges({Insert("t1")}));
    ASSERT_OK(tx->Commit());
  }
  EXPECT_EQ(Q("SELECT version_num FROM tenant.alembic_version"), (Rows{{"t1"}}));
  // The DSN's search_path is the session's default: a reset keeps it.
  ASSERT_OK(session->ResetState());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session->Begin());
  EXPECT_OK(tx->Execute(Sql("DO $$ BEGIN IF current_setting('search_path') <> 'tenant,public' "
                            "THEN RAISE EXCEPTION 'reset lost the DSN''s search_path'; END IF; "
                            "END $$"),
                        nullptr));
}

TEST_F(PqDatabaseTest, NoSchemaToPutTheVersionTableInIsAClearError) {
  const std::string dsn = db_.dsn() + "?options=-csearch_path%3Dno_such_schema";
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Database> database, OpenPqDatabase(dsn, options_));
  // Connect sends no query: the session's first call resolves, and says why
  // it cannot.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, database->Connect());
  const auto clear_error =
      StatusIs(absl::StatusCode::kFailedPrecondition,
               AllOf(HasSubstr("alembic_version"), HasSubstr("search_path"),
                     HasSubstr("schema.alembic_version"), Not(HasSubstr(db_.cluster().password))));
  EXPECT_THAT(session->ReadState().status(), clear_error);
  EXPECT_THAT(session->EnsureTables(), clear_error);
  EXPECT_THAT(session->Begin().status(), clear_error);
  EXPECT_EQ(Q("SELECT count(*) FROM pg_tables WHERE tablename = 'alembic_version'"), Rows({{"0"}}));
}

// A session's first state read assumes the schema the database's previous
// session resolved, and checks it in the same query: when the unqualified
// name now finds another table, the session reads that one.
TEST_F(PqDatabaseTest, TheFirstStateReadFollowsTheSearchPathNotTheLastSession) {
  Exec(db_.dsn(),
       "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); "
       "INSERT INTO alembic_version VALUES ('in_public')");
  ASSERT_OK_AND_ASSIGN(DatabaseState first, session_->ReadState());
  EXPECT_THAT(first.rows, ElementsAre("in_public"));

  Exec(db_.dsn(), absl::StrCat("CREATE SCHEMA site; "
                               "CREATE TABLE site.alembic_version (version_num varchar(32) "
                               "PRIMARY KEY); INSERT INTO site.alembic_version VALUES ('in_site'); "
                               "ALTER DATABASE ",
                               db_.name(), " SET search_path = site, public"));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> moved, database_->Connect());
  ASSERT_OK_AND_ASSIGN(DatabaseState second, moved->ReadState());
  EXPECT_THAT(second.rows, ElementsAre("in_site"));
  // And the names it resolved are the ones it writes under.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, moved->Begin());
  ASSERT_OK(tx->ApplyVersionChanges({Update("in_site", "in_site2")}));
  ASSERT_OK(tx->Commit());
  EXPECT_EQ(Q("SELECT version_num FROM site.alembic_version"), Rows({{"in_site2"}}));
  EXPECT_EQ(Q("SELECT version_num FROM public.alembic_version"), Rows({{"in_public"}}));

  // The table the last session used is gone: the unqualified name finds
  // the next one on the search_path.
  Exec(db_.dsn(), "DROP TABLE site.alembic_version");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> third, database_->Connect());
  ASSERT_OK_AND_ASSIGN(DatabaseState after_drop, third->ReadState());
  EXPECT_THAT(after_drop.rows, ElementsAre("in_public"));
}

// -------------------------------------------- one table, one lock, one mark

// FNV-1a 64 of "schemad:" + name: the key schemad versions before 0.2 took
// for a version table configured as `name`.
int64_t LegacyLockKey(const std::string& name) {
  uint64_t hash = 14695981039346656037ULL;
  for (char c : "schemad:" + name) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ULL;
  }
  int64_t key = 0;
  std::memcpy(&key, &hash, sizeof key);
  return key;
}

TEST_F(PqDatabaseTest, QualifiedAndUnqualifiedNamesOfOneTableShareTheLock) {
  PqOptions qualified = options_;
  qualified.tables.schema = "public";
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Database> other_db, OpenPqDatabase(db_.dsn(), qualified));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> other, other_db->Connect());
  // Before any table exists (two first-ever runs) and after.
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE(round == 0 ? "no tables yet" : "tables exist");
    {
      ASSERT_OK_AND_ASSIGN(std::unique_ptr<MigrationLock> held,
                           session_->AcquireLock(absl::ZeroDuration(), nullptr, nullptr));
      EXPECT_THAT(other->AcquireLock(absl::Milliseconds(100), nullptr, nullptr).status(),
                  StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr(app_name_ + " lock")));
    }
    {
      ASSERT_OK_AND_ASSIGN(std::unique_ptr<MigrationLock> held,
                           other->AcquireLock(absl::ZeroDuration(), nullptr, nullptr));
      EXPECT_THAT(session_->AcquireLock(absl::Milliseconds(100), nullptr, nullptr).status(),
                  StatusIs(absl::StatusCode::kDeadlineExceeded, _));
    }
    ASSERT_OK(session_->EnsureTables());
  }
  // A waiter never keeps one of the keys: none is held once both gave up.
  EXPECT_EQ(Q(kAdvisoryLocksHere), (Rows{{"0"}}));
}

TEST_F(PqDatabaseTest, LockStillExcludesEarlierVersionsThatKeyedTheBareName) {
  pqxx::connection old_version(db_.dsn());
  pqxx::nontransaction tx(old_version);
  tx.exec(absl::StrCat("SELECT pg_advisory_lock(", LegacyLockKey("alembic_version"), ")"));
  EXPECT_THAT(session_->AcquireLock(absl::Milliseconds(100), nullptr, nullptr).status(),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       HasSubstr(absl::StrCat("pid ", old_version.backendpid()))));
  tx.exec(absl::StrCat("SELECT pg_advisory_unlock(", LegacyLockKey("alembic_version"), ")"));
  EXPECT_OK(session_->AcquireLock(absl::Milliseconds(100), nullptr, nullptr));
}

TEST_F(PqDatabaseTest, NeedsAttentionMarkIsSeenUnderEveryNameOfTheTable) {
  ASSERT_OK(session_->EnsureTables());
  PqOptions qualified = options_;
  qualified.tables.schema = "public";
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Database> other_db, OpenPqDatabase(db_.dsn(), qualified));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> other, other_db->Connect());
  NeedsAttention marker;
  marker.revision = "b2";
  marker.direction = "up";
  marker.statements_total = 2;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
    ASSERT_OK(tx->SetNeedsAttention(marker));
    HistoryRecord record;
    record.revision = "b1";
    record.direction = "up";
    record.checksum = "sum";
    record.outcome = "success";
    ASSERT_OK(tx->AppendHistory(record));
    ASSERT_OK(tx->Commit());
  }
  // Written under the name as configured, as earlier versions read it.
  EXPECT_EQ(Q("SELECT version_table FROM schemad_state"), (Rows{{"alembic_version"}}));
  ASSERT_OK_AND_ASSIGN(DatabaseState state, other->ReadState());
  ASSERT_TRUE(state.needs_attention.has_value());
  EXPECT_EQ(state.needs_attention->revision, "b2");
  ASSERT_OK_AND_ASSIGN(auto checksums, other->ReadAppliedChecksums());
  EXPECT_THAT(checksums, ElementsAre(Pair("b1", "sum")));
  ASSERT_OK_AND_ASSIGN(std::vector<HistoryRecord> history, other->ReadHistory(0));
  EXPECT_EQ(history.size(), 1u);
  // Cleared under the other name.
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, other->Begin());
    ASSERT_OK(tx->SetNeedsAttention(std::nullopt));
    ASSERT_OK(tx->Commit());
  }
  ASSERT_OK_AND_ASSIGN(state, session_->ReadState());
  EXPECT_FALSE(state.needs_attention.has_value());
}

// ------------------------------------------------------------------- runs

RunRecord TestRun(const std::string& operation_id) {
  RunRecord run;
  run.operation_id = operation_id;
  run.operation = "upgrade";
  run.target = "heads";
  run.who = "alice";
  run.schemad_version = "0.1.0";
  run.started = absl::FromUnixMicros(1767225600123456);
  return run;
}

TEST_F(PqDatabaseTest, RunIsRecordedTaggedAndFinished) {
  ASSERT_OK(session_->EnsureTables());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> other, database_->Connect());
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, session_->Begin());
    ASSERT_OK(tx->StartRun(TestRun("op-00000000000000a1")));
    ASSERT_OK(tx->Commit());
  }
  const std::string tag = app_name_ + " op-00000000000000a1";
  const std::string tagged =
      absl::StrCat("SELECT count(*) FROM pg_stat_activity WHERE application_name = '", tag, "'");
  EXPECT_EQ(Q(tagged), (Rows{{"1"}}));
  // The tag outlasts a revision's reset (it names the run, not the revision).
  ASSERT_OK(
      session_->ExecuteAutocommit(Sql("SET application_name = 'renamed'"), Timeouts{}, nullptr));
  ASSERT_OK(session_->ResetState());
  EXPECT_EQ(Q(tagged), (Rows{{"1"}}));
  // This session's own record is not an earlier run.
  ASSERT_OK_AND_ASSIGN(std::optional<UnfinishedRun> own, session_->ReadUnfinishedRun());
  EXPECT_FALSE(own.has_value());
  // Another session sees it, with the backend still connected (idle).
  ASSERT_OK_AND_ASSIGN(std::optional<UnfinishedRun> seen, other->ReadUnfinishedRun());
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(seen->run.operation_id, "op-00000000000000a1");
  EXPECT_EQ(seen->run.who, "alice");
  EXPECT_EQ(seen->run.started, absl::FromUnixMicros(1767225600123456));
  EXPECT_EQ(seen->run.application_name, tag);
  ASSERT_TRUE(seen->backend.has_value());
  EXPECT_EQ(seen->backend->backend.application_name, tag);
  EXPECT_EQ(seen->backend->state, "idle");
  EXPECT_GT(seen->run.pid, 0);
  EXPECT_EQ(seen->backend->backend.pid, seen->run.pid);

  ASSERT_OK(session_->FinishRun());
  EXPECT_EQ(Q(tagged), (Rows{{"0"}}));
  EXPECT_EQ(Q("SELECT count(*) FROM schemad_run"), (Rows{{"0"}}));
  ASSERT_OK_AND_ASSIGN(seen, other->ReadUnfinishedRun());
  EXPECT_FALSE(seen.has_value());
}

TEST_F(PqDatabaseTest, RunWhoseSessionDiedIsUnfinishedWithoutABackend) {
  ASSERT_OK(session_->EnsureTables());
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> doomed, database_->Connect());
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Transaction> tx, doomed->Begin());
    ASSERT_OK(tx->StartRun(TestRun("op-00000000000000b2")));
    ASSERT_OK(tx->Commit());
  }  // closed without FinishRun: as if killed
  absl::StatusOr<std::optional<UnfinishedRun>> seen = session_->ReadUnfinishedRun();
  for (int i = 0; i < 100 && seen.ok() && seen->has_value() && (*seen)->backend.has_value(); ++i) {
    absl::SleepFor(absl::Milliseconds(20));  // the backend exits asynchronously
    seen = session_->ReadUnfinishedRun();
  }
  ASSERT_OK(seen);
  ASSERT_TRUE(seen->has_value());
  EXPECT_EQ((*seen)->run.operation_id, "op-00000000000000b2");
  EXPECT_FALSE((*seen)->backend.has_value());
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
