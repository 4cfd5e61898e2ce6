// schemad end to end: real servers on 127.0.0.1:0 (in-process, and the
// `schemad` binary as a subprocess for signals), real PostgreSQL, the C++ SDK
// as the client.
#include <fcntl.h>
#include <grpcpp/generic/generic_stub.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <pqxx/pqxx>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "client/cli/remote_commands.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "schemad/client.h"
#include "service/server/config.h"
#include "service/server/server.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "tests/testing/pg_fixture.h"
#include "tests/testing/poll.h"
#include "tests/testing/ports.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

extern char** environ;

namespace schemad {
namespace {

// An upgrade whose revisions each commit on their own (the default is per
// command): for tests of what stops between two revisions.
UpgradeRequest PerRevision() {
  UpgradeRequest request;
  request.transaction_mode = TransactionMode::kPerRevision;
  return request;
}

using ::schemad::testing::Query;
using ::schemad::testing::Rows;
using ::schemad::testing::StatusIs;
using ::schemad::testing::TempDir;
using ::schemad::testing::TestDatabase;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// ------------------------------------------------------------------ helpers

struct Rev {
  std::string id;
  std::string revises;  // comma-separated
  std::string up;
  std::string down = "SELECT 1;";
  bool transactional = true;
};

void WriteRevision(const TempDir& dir, const std::string& set, const Rev& rev) {
  std::string text = absl::StrCat("-- revision: ", rev.id, "\n");
  if (!rev.revises.empty()) {
    absl::StrAppend(&text, "-- revises: ", rev.revises, "\n");
  }
  absl::StrAppend(&text, "-- message: revision ", rev.id, "\n");
  if (!rev.transactional) {
    absl::StrAppend(&text, "-- transactional: false\n");
  }
  absl::StrAppend(&text, "\n-- +upgrade\n", rev.up, "\n\n-- +downgrade\n", rev.down, "\n");
  dir.Write(absl::StrCat(set, "/", rev.id, ".sql"), text);
}

// One database entry of a test configuration.
struct DbSpec {
  DbSpec(std::string name_in, std::string dsn_in, std::string set_in = "modax",
         std::string extra_in = "")
      : name(std::move(name_in)),
        dsn(std::move(dsn_in)),
        set(std::move(set_in)),
        extra(std::move(extra_in)) {}
  std::string name;
  std::string dsn;
  std::string set;
  std::string extra;  // more YAML keys of the entry, e.g. "allow_ensure_head_apply: false"
};

// A YAML configuration: the migration sets are directories under `dir`, the
// DSNs go to files there (never into the environment or the YAML).
std::string MakeConfig(const TempDir& dir, const std::vector<std::string>& sets,
                       const std::vector<DbSpec>& dbs, const std::string& extra = "",
                       const std::string& listen = "127.0.0.1:0") {
  std::string yaml = absl::StrCat("listen: ", listen, "\n", extra, "\nmigration_sets:\n");
  for (const std::string& set : sets) {
    std::filesystem::create_directories(dir.path() + "/" + set);
    absl::StrAppend(&yaml, "  - {name: ", set, ", directory: ", set, "}\n");
  }
  absl::StrAppend(&yaml, "databases:\n");
  for (const DbSpec& db : dbs) {
    dir.Write("secrets/" + db.name, db.dsn);
    absl::StrAppend(&yaml, "  - name: ", db.name, "\n    migration_set: ", db.set,
                    "\n    dsn_file: secrets/", db.name, "\n    labels: {site: ", db.name, "}\n");
    if (!db.extra.empty()) {
      absl::StrAppend(&yaml, "    ", db.extra, "\n");
    }
  }
  return yaml;
}

absl::StatusOr<std::unique_ptr<server::SchemadServer>> StartServer(const TempDir& dir,
                                                                   const std::string& yaml) {
  server::ConfigSources sources;
  sources.base_dir = dir.path();
  sources.getenv = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
  absl::StatusOr<server::LoadedConfig> config = server::ParseConfig(yaml, sources);
  if (!config.ok()) {
    return config.status();
  }
  server::ServerOptions options;
  if (std::getenv("SCHEMAD_TEST_LOG") != nullptr) {
    options.log_sinks.push_back(std::make_shared<spdlog::sinks::stderr_sink_mt>());
    options.log_level = spdlog::level::debug;
  }
  return server::SchemadServer::Start(*std::move(config), options);
}

ClientOptions ClientFor(const std::string& address) {
  ClientOptions options;
  options.target = address;
  options.retry.enabled = false;  // tests that want retries turn them on
  options.who = "server_pgtest";
  return options;
}

std::unique_ptr<Client> Connect(const ClientOptions& options) {
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(options);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? *std::move(client) : nullptr;
}

Rows VersionRows(const std::string& dsn) {
  return Query(dsn, "SELECT version_num FROM alembic_version ORDER BY 1");
}

// Applied revisions: revision and number of successful `up` history rows.
Rows SuccessfulUps(const std::string& dsn) {
  return Query(dsn,
               "SELECT revision, count(*)::text FROM schemad_history WHERE direction = 'up' AND "
               "outcome = 'success' GROUP BY revision ORDER BY 1");
}

// Sessions holding advisory locks in `db` (the migration lock may be two keys).
int AdvisoryLocks(const TestDatabase& db) {
  Rows rows = Query(testing::AdminDsn(),
                    absl::StrCat("SELECT count(DISTINCT pid) FROM pg_locks WHERE "
                                 "locktype = 'advisory' AND "
                                 "database = (SELECT oid FROM pg_database WHERE datname = '",
                                 db.name(), "')"));
  return rows.empty() ? -1 : std::stoi(rows[0][0]);
}

bool TableExists(const std::string& dsn, const std::string& table) {
  Rows rows = Query(dsn, absl::StrCat("SELECT to_regclass('", table, "') IS NOT NULL"));
  return !rows.empty() && rows[0][0] == "t";
}

// Collects a stream's events and lets a test wait for one.
class EventLog {
 public:
  std::function<void(const OperationEvent&)> Callback() {
    return [this](const OperationEvent& e) {
      absl::MutexLock lock(&mu_);
      events_.push_back(e);
    };
  }
  // Waits until an event satisfying `pred` arrived; false after `timeout`.
  bool WaitFor(const std::function<bool(const OperationEvent&)>& pred, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto cond = [&]() {
      for (const OperationEvent& e : events_) {
        if (pred(e)) {
          return true;
        }
      }
      return false;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&cond), timeout);
  }
  std::vector<OperationEvent> events() const {
    absl::MutexLock lock(&mu_);
    return events_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<OperationEvent> events_;
};

std::function<bool(const OperationEvent&)> StatementOf(const std::string& revision, int index) {
  return [revision, index](const OperationEvent& e) {
    return e.kind == OperationEvent::Kind::kStatementStarted && e.revision == revision &&
           e.statement_index == index;
  };
}

// A set of three revisions; b2 sleeps `sleep_seconds` between two statements.
void WriteChain(const TempDir& dir, const std::string& set, double sleep_seconds) {
  WriteRevision(dir, set, {"a1", "", "CREATE TABLE t_a1 (id int);", "DROP TABLE t_a1;"});
  WriteRevision(dir, set,
                {"b2", "a1",
                 absl::StrCat("CREATE TABLE t_b2 (id int);\nSELECT pg_sleep(", sleep_seconds,
                              ");\nCREATE TABLE t_b2_after (id int);"),
                 "DROP TABLE t_b2_after;\nDROP TABLE t_b2;"});
  WriteRevision(dir, set, {"c3", "b2", "CREATE TABLE t_c3 (id int);", "DROP TABLE t_c3;"});
}

// Like WriteChain, but b2 is non-transactional: its first statement commits
// by itself before it sleeps `sleep_seconds`.
void WriteNonTransactionalChain(const TempDir& dir, const std::string& set, double sleep_seconds) {
  WriteRevision(dir, set, {"a1", "", "CREATE TABLE t_a1 (id int);", "DROP TABLE t_a1;"});
  Rev b2{"b2", "a1",
         absl::StrCat("CREATE TABLE t_b2 (id int);\nSELECT pg_sleep(", sleep_seconds,
                      ");\nCREATE TABLE t_b2_after (id int);"),
         "DROP TABLE t_b2_after;\nDROP TABLE t_b2;"};
  b2.transactional = false;
  WriteRevision(dir, set, b2);
  WriteRevision(dir, set, {"c3", "b2", "CREATE TABLE t_c3 (id int);", "DROP TABLE t_c3;"});
}

// Polls until exactly one schemad backend of `db`, tagged with its run
// (`schemad op-<id>`), sleeps in pg_sleep
// (pg_stat_activity.wait_event 'PgSleep'); its pid, or "" after `timeout`.
std::string WaitForSleepingBackend(const TestDatabase& db,
                                   absl::Duration timeout = absl::Seconds(30)) {
  const std::string sql =
      absl::StrCat("SELECT pid FROM pg_stat_activity WHERE datname = '", db.name(),
                   "' AND application_name LIKE 'schemad op-%' AND wait_event = 'PgSleep'");
  for (const absl::Time deadline = absl::Now() + timeout; absl::Now() < deadline;) {
    const Rows rows = Query(testing::AdminDsn(), sql);
    if (rows.size() == 1) {
      return rows[0][0];
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return "";
}

// Polls `sql` on `dsn` until it returns `want`; the last answer.
Rows WaitForRows(const std::string& dsn, const std::string& sql, const Rows& want,
                 absl::Duration timeout = absl::Seconds(10)) {
  Rows rows = Query(dsn, sql);
  for (const absl::Time deadline = absl::Now() + timeout; rows != want && absl::Now() < deadline;) {
    absl::SleepFor(absl::Milliseconds(20));
    rows = Query(dsn, sql);
  }
  return rows;
}

class ServerTest : public ::testing::Test {
 protected:
  // Starts an in-process server over `db` (database name "site-a").
  void StartOver(const TestDatabase& db, const std::string& extra = "",
                 const std::string& db_extra = "") {
    absl::StatusOr<std::unique_ptr<server::SchemadServer>> started = StartServer(
        dir_, MakeConfig(dir_, {"modax"}, {{"site-a", db.dsn(), "modax", db_extra}}, extra));
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = *std::move(started);
    client_ = Connect(ClientFor(server_->address()));
  }
  // A client of the running server that sends `token`.
  std::unique_ptr<Client> WithToken(const std::string& token) {
    ClientOptions options = ClientFor(server_->address());
    options.token = token;
    return Connect(options);
  }

  TempDir dir_;
  std::unique_ptr<server::SchemadServer> server_;
  std::unique_ptr<Client> client_;
};

// ------------------------------------------------------------- EnsureHead

TEST_F(ServerTest, EnsureHeadBehindApplies) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 0);
  StartOver(db);
  ASSERT_OK_AND_ASSIGN(EnsureHeadResult result, client_->EnsureHead("site-a"));
  EXPECT_TRUE(result.applied);
  EXPECT_EQ(result.revisions_applied, 3);
  EXPECT_THAT(result.heads, ElementsAre("c3"));
  EXPECT_THAT(result.operation_id, HasSubstr("op-"));
  EXPECT_EQ(VersionRows(db.dsn()), (Rows{{"c3"}}));
  EXPECT_EQ(SuccessfulUps(db.dsn()), (Rows{{"a1", "1"}, {"b2", "1"}, {"c3", "1"}}));
  EXPECT_TRUE(TableExists(db.dsn(), "t_b2_after"));
  // Who asked is recorded.
  EXPECT_THAT(Query(db.dsn(), "SELECT DISTINCT who FROM schemad_history"),
              ElementsAre(ElementsAre(HasSubstr("server_pgtest"))));
  EXPECT_EQ(AdvisoryLocks(db), 0);
}

TEST_F(ServerTest, EnsureHeadAtHeadRunsNoDdlAndWritesNoHistory) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 0);
  StartOver(db);
  ASSERT_OK(client_->EnsureHead("site-a").status());
  // From here on, every DDL command is logged by an event trigger.
  testing::Exec(db.dsn(), R"(
    CREATE TABLE ddl_log (tag text);
    CREATE FUNCTION log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS
      $$ BEGIN INSERT INTO ddl_log VALUES (tg_tag); END $$;
    CREATE EVENT TRIGGER log_ddl ON ddl_command_start EXECUTE FUNCTION log_ddl();
  )");
  const Rows history_before = Query(db.dsn(), "SELECT count(*) FROM schemad_history");
  const std::string schemad_backends =
      absl::StrCat("SELECT count(*) FROM pg_stat_activity WHERE datname = '", db.name(),
                   "' AND application_name = 'schemad'");
  const Rows backends_before = Query(testing::AdminDsn(), schemad_backends);
  for (int i = 0; i < 20; ++i) {
    ASSERT_OK_AND_ASSIGN(EnsureHeadResult result, client_->EnsureHead("site-a"));
    EXPECT_FALSE(result.applied);
    EXPECT_THAT(result.heads, ElementsAre("c3"));
    EXPECT_TRUE(result.operation_id.empty());
  }
  EXPECT_EQ(Query(db.dsn(), "SELECT count(*) FROM ddl_log"), (Rows{{"0"}}));
  EXPECT_EQ(Query(db.dsn(), "SELECT count(*) FROM schemad_history"), history_before);
  // Pooled: no connection was opened for them.
  EXPECT_EQ(Query(testing::AdminDsn(), schemad_backends), backends_before);
  // No operation was started for them.
  ASSERT_OK_AND_ASSIGN(std::vector<OperationInfo> ops, client_->ListOperations("site-a"));
  EXPECT_EQ(ops.size(), 1u);
}

TEST_F(ServerTest, EnsureHeadNotAllowedToApplyNamesPending) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 0);
  StartOver(db, "", "allow_ensure_head_apply: false");
  EXPECT_THAT(client_->EnsureHead("site-a"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("3 revision(s) behind"), HasSubstr("a1, b2, c3"))));
  EnsureHeadOptions check;
  check.no_apply = true;
  EXPECT_THAT(client_->EnsureHead("site-a", check),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("behind")));
  EXPECT_FALSE(TableExists(db.dsn(), "alembic_version"));
}

// -------------------------------------------------------------- streaming

TEST_F(ServerTest, UpgradeStreamsProgressEvents) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 0);
  StartOver(db);
  EventLog log;
  CallOptions call;
  call.on_event = log.Callback();
  UpgradeRequest upgrade;
  upgrade.target = "b2";
  ASSERT_OK_AND_ASSIGN(OperationResult result, client_->Upgrade("site-a", upgrade, call));
  EXPECT_THAT(result.heads, ElementsAre("b2"));
  EXPECT_EQ(result.revisions_run, 2);
  ASSERT_EQ(result.plan.size(), 2u);
  EXPECT_EQ(result.plan[1].revision, "b2");
  EXPECT_EQ(result.plan[1].statement_count, 3);
  std::vector<OperationEvent> events = log.events();
  ASSERT_GE(events.size(), 4u);
  EXPECT_EQ(events.front().kind, OperationEvent::Kind::kAccepted);
  EXPECT_EQ(events.back().kind, OperationEvent::Kind::kOperationFinished);
  EXPECT_EQ(events.back().state, OperationState::kSucceeded);
  std::vector<std::string> kinds;
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].sequence, static_cast<int64_t>(i));
    EXPECT_EQ(events[i].operation_id, result.operation_id);
  }
  const auto count = [&](OperationEvent::Kind kind) {
    return std::count_if(events.begin(), events.end(),
                         [kind](const OperationEvent& e) { return e.kind == kind; });
  };
  EXPECT_EQ(count(OperationEvent::Kind::kOperationStarted), 1);
  EXPECT_EQ(count(OperationEvent::Kind::kLockAcquired), 1);
  EXPECT_EQ(count(OperationEvent::Kind::kRevisionStarted), 2);
  EXPECT_EQ(count(OperationEvent::Kind::kStatementStarted), 4);
  EXPECT_EQ(count(OperationEvent::Kind::kRevisionFinished), 2);

  // Upgrading again has nothing to do: accepted + finished only.
  EventLog again;
  call.on_event = again.Callback();
  ASSERT_OK_AND_ASSIGN(OperationResult noop, client_->Upgrade("site-a", upgrade, call));
  EXPECT_EQ(noop.revisions_run, 0);
  EXPECT_THAT(noop.heads, ElementsAre("b2"));
  EXPECT_EQ(again.events().size(), 2u);
}

TEST_F(ServerTest, DroppedStreamDoesNotStopTheOperationAndWatchReplaysIt) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 1.5);
  StartOver(db);
  EventLog log;
  std::atomic<bool> stop{false};
  CallOptions call;
  call.stop = &stop;
  call.on_event = [&](const OperationEvent& e) {
    log.Callback()(e);
    if (StatementOf("b2", 1)(e)) {
      stop = true;  // the client goes away while pg_sleep runs
    }
  };
  absl::StatusOr<OperationResult> dropped = client_->Upgrade("site-a", {}, call);
  EXPECT_THAT(dropped, StatusIs(absl::StatusCode::kCancelled, HasSubstr("goes on")));
  const std::string op_id = log.events().front().operation_id;
  ASSERT_THAT(op_id, HasSubstr("op-"));
  EXPECT_THAT(dropped.status().message(), HasSubstr(op_id));

  // The operation completes on its own; watching replays all of it.
  EventLog replay;
  CallOptions watch;
  watch.on_event = replay.Callback();
  ASSERT_OK_AND_ASSIGN(OperationResult result, client_->WatchOperation(op_id, watch));
  EXPECT_THAT(result.heads, ElementsAre("c3"));
  std::vector<OperationEvent> events = replay.events();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.front().kind, OperationEvent::Kind::kAccepted);
  EXPECT_EQ(events.back().kind, OperationEvent::Kind::kOperationFinished);
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].sequence, static_cast<int64_t>(i));
  }
  EXPECT_EQ(VersionRows(db.dsn()), (Rows{{"c3"}}));
  // A second watch of the finished operation replays the same events.
  EventLog second;
  watch.on_event = second.Callback();
  ASSERT_OK(client_->WatchOperation(op_id, watch).status());
  EXPECT_EQ(second.events().size(), events.size());
  // Unknown ids.
  EXPECT_THAT(client_->WatchOperation("op-0000000000000000"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("op-0000000000000000")));
}

// Issue 14: the transaction scope is a setting of the migration set (its
// directory's schemad.conf, overridden by the server's configuration), and a
// request may name its own.
TEST_F(ServerTest, TransactionScopeIsTheMigrationSetsUnlessTheRequestNamesOne) {
  TestDatabase a;
  TestDatabase b;
  TestDatabase c;
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  dir_.Write("scoped/r1.sql", "-- revision: r1\n\n-- +upgrade\nCREATE TABLE t1 (id int);\n");
  dir_.Write("scoped/r2.sql",
             "-- revision: r2\n-- revises: r1\n\n-- +upgrade\nCREATE TABLE t2 (id int);\n");
  dir_.Write("scoped/r3.sql",
             "-- revision: r3\n-- revises: r2\n\n-- +upgrade\nCREATE TABLE t1 (id int);\n");
  dir_.Write("scoped/schemad.conf", "# each revision on its own\ntransaction = per-revision\n");
  const std::string yaml =
      MakeConfig(dir_, {"scoped"}, {{"site-a", a.dsn(), "scoped"}, {"site-b", b.dsn(), "scoped"}});
  ASSERT_OK_AND_ASSIGN(server_, StartServer(dir_, yaml));
  client_ = Connect(ClientFor(server_->address()));
  // The directory's per-revision: r1 and r2 stay after r3 failed.
  EXPECT_THAT(client_->Upgrade("site-a"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("r3")));
  EXPECT_EQ(VersionRows(a.dsn()), (Rows{{"r2"}}));
  // The request's per-command: everything rolled back.
  UpgradeRequest per_command;
  per_command.transaction_mode = TransactionMode::kPerCommand;
  EXPECT_THAT(client_->Upgrade("site-b", per_command),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("rolled back too")));
  EXPECT_EQ(VersionRows(b.dsn()), Rows{});
  EXPECT_FALSE(TableExists(b.dsn(), "t1"));

  // The server's configuration overrides the directory.
  const std::string per_command_set =
      absl::StrReplaceAll(MakeConfig(dir_, {"scoped"}, {{"site-c", c.dsn(), "scoped"}}),
                          {{"directory: scoped}", "directory: scoped, transaction: per-command}"}});
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<server::SchemadServer> overridden,
                       StartServer(dir_, per_command_set));
  std::unique_ptr<Client> client = Connect(ClientFor(overridden->address()));
  EXPECT_THAT(client->Upgrade("site-c"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("rolled back too")));
  EXPECT_EQ(VersionRows(c.dsn()), Rows{});
  // A bad value in either place is refused, naming where.
  EXPECT_THAT(
      StartServer(dir_, absl::StrReplaceAll(per_command_set, {{"per-command}", "per-statement}"}})),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("migration_sets[0].transaction: must be per-command or "
                         "per-revision")));
  dir_.Write("scoped/schemad.conf", "transaction = sometimes\n");
  EXPECT_THAT(StartServer(dir_, yaml),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("schemad.conf:1:")));
}

TEST_F(ServerTest, CancelMidRevisionRollsItBack) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 60);
  StartOver(db);
  EventLog log;
  absl::StatusOr<OperationResult> result;
  std::thread upgrade([&] {
    CallOptions call;
    call.on_event = log.Callback();
    result = client_->Upgrade("site-a", PerRevision(), call);
  });
  ASSERT_TRUE(log.WaitFor(StatementOf("b2", 1), absl::Seconds(30)));
  const std::string sleeper = WaitForSleepingBackend(db);  // pg_sleep is running
  ASSERT_FALSE(sleeper.empty());
  const absl::Time cancelled_at = absl::Now();
  ASSERT_OK_AND_ASSIGN(OperationInfo info,
                       client_->CancelOperation(log.events().front().operation_id));
  EXPECT_TRUE(info.cancel_requested);
  upgrade.join();
  EXPECT_LT(absl::Now() - cancelled_at, absl::Seconds(10));
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kCancelled, HasSubstr("b2")));
  EXPECT_EQ(log.events().back().state, OperationState::kCancelled);
  // The cancel reached the statement: its backend sleeps no more.
  EXPECT_EQ(Query(testing::AdminDsn(),
                  absl::StrCat("SELECT count(*) FROM pg_stat_activity WHERE pid = ", sleeper,
                               " AND wait_event = 'PgSleep'")),
            (Rows{{"0"}}));
  // b2 rolled back as a whole; a1 stays; nothing needs attention.
  EXPECT_EQ(VersionRows(db.dsn()), (Rows{{"a1"}}));
  EXPECT_FALSE(TableExists(db.dsn(), "t_b2"));
  EXPECT_TRUE(TableExists(db.dsn(), "t_a1"));
  ASSERT_OK_AND_ASSIGN(DatabaseStatus status, client_->GetStatus("site-a"));
  EXPECT_EQ(status.state, DatabaseStatus::State::kBehind);
  EXPECT_EQ(status.pending, 2);
  EXPECT_FALSE(status.needs_attention.has_value());
  EXPECT_EQ(AdvisoryLocks(db), 0);
  // Cancelling a finished operation.
  EXPECT_THAT(client_->CancelOperation(info.operation_id),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already finished")));
  ASSERT_OK_AND_ASSIGN(std::vector<OperationInfo> ops, client_->ListOperations("site-a"));
  ASSERT_EQ(ops.size(), 1u);
  EXPECT_EQ(ops[0].state, OperationState::kCancelled);
  EXPECT_TRUE(ops[0].cancel_requested);
}

// A cancel that lands in a non-transactional revision cannot roll back what
// its committed statements did: the operation ends CANCELLED and the
// database needs attention, saying how far the revision got.
TEST_F(ServerTest, CancelDuringANonTransactionalRevisionLeavesItNeedingAttention) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteNonTransactionalChain(dir_, "modax", 60);
  StartOver(db);
  EventLog log;
  absl::StatusOr<OperationResult> result;
  std::thread upgrade([&] {
    CallOptions call;
    call.on_event = log.Callback();
    result = client_->Upgrade("site-a", {}, call);
  });
  ASSERT_TRUE(log.WaitFor(StatementOf("b2", 1), absl::Seconds(30)));
  const std::string sleeper = WaitForSleepingBackend(db);
  ASSERT_FALSE(sleeper.empty());
  const absl::Time cancelled_at = absl::Now();
  ASSERT_OK_AND_ASSIGN(OperationInfo info,
                       client_->CancelOperation(log.events().front().operation_id));
  EXPECT_TRUE(info.cancel_requested);
  upgrade.join();
  EXPECT_LT(absl::Now() - cancelled_at, absl::Seconds(10));
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kCancelled,
                               AllOf(HasSubstr("b2"), HasSubstr("needs attention"))));
  EXPECT_EQ(log.events().back().state, OperationState::kCancelled);
  EXPECT_EQ(Query(testing::AdminDsn(),
                  absl::StrCat("SELECT count(*) FROM pg_stat_activity WHERE pid = ", sleeper,
                               " AND wait_event = 'PgSleep'")),
            (Rows{{"0"}}));

  // b2's first statement committed, its third never ran; a1 is the version.
  EXPECT_EQ(VersionRows(db.dsn()), (Rows{{"a1"}}));
  EXPECT_TRUE(TableExists(db.dsn(), "t_b2"));
  EXPECT_FALSE(TableExists(db.dsn(), "t_b2_after"));
  ASSERT_OK_AND_ASSIGN(DatabaseStatus status, client_->GetStatus("site-a"));
  EXPECT_EQ(status.state, DatabaseStatus::State::kNeedsAttention);
  ASSERT_TRUE(status.needs_attention.has_value());
  EXPECT_EQ(status.needs_attention->revision, "b2");
  EXPECT_EQ(status.needs_attention->statements_done, 1);
  EXPECT_EQ(status.needs_attention->statements_total, 3);
  EXPECT_THAT(status.needs_attention->error, HasSubstr("cancelled"));
  EXPECT_EQ(Query(db.dsn(), "SELECT outcome FROM schemad_history WHERE revision = 'b2'"),
            (Rows{{"needs_attention"}}));
  EXPECT_THAT(client_->Upgrade("site-a"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("needs attention")));
  EXPECT_EQ(AdvisoryLocks(db), 0);

  // The operator undoes the statement that ran and says so.
  testing::Exec(db.dsn(), "DROP TABLE t_b2");
  ASSERT_OK(client_->Resolve("site-a", /*applied=*/false).status());
  ASSERT_OK_AND_ASSIGN(status, client_->GetStatus("site-a"));
  EXPECT_EQ(status.state, DatabaseStatus::State::kBehind);
  EXPECT_EQ(status.pending, 2);
  EXPECT_EQ(VersionRows(db.dsn()), (Rows{{"a1"}}));
}

// A statement blocked by another session's table lock fails after the
// lock_timeout, and the error that reaches the client names the blocker.
TEST_F(ServerTest, LockTimeoutNamesTheBlockerThroughTheServer) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteRevision(dir_, "modax", {"a1", "", "CREATE TABLE devices (id int);", "DROP TABLE devices;"});
  WriteRevision(
      dir_, "modax",
      {"b2", "a1", "CREATE TABLE t_b2 (id int);\nALTER TABLE devices ADD COLUMN name text;",
       "ALTER TABLE devices DROP COLUMN name;\nDROP TABLE t_b2;"});
  StartOver(db, "timeouts: {lock_timeout: 1s}");
  UpgradeRequest to_a1;
  to_a1.target = "a1";
  ASSERT_OK(client_->Upgrade("site-a", to_a1).status());

  pqxx::connection holder(db.dsn() + "?application_name=ops-console");
  const std::string holder_pid = absl::StrCat(holder.backendpid());
  auto holding = std::make_unique<pqxx::work>(holder);
  holding->exec("LOCK TABLE devices IN ACCESS EXCLUSIVE MODE");

  EventLog log;
  CallOptions call;
  call.on_event = log.Callback();
  const absl::Time start = absl::Now();
  absl::StatusOr<OperationResult> result = client_->Upgrade("site-a", {}, call);
  const absl::Duration took = absl::Now() - start;
  const std::string blocker = absl::StrCat(
      "blocked by pid ", holder_pid,
      " (ops-console) from 127.0.0.1, idle in transaction: LOCK TABLE devices IN ACCESS "
      "EXCLUSIVE MODE");
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kAborted,
                               AllOf(HasSubstr("SQLSTATE 55P03"), HasSubstr(blocker),
                                     Not(HasSubstr(db.cluster().password)))));
  EXPECT_GE(took, absl::Seconds(1));
  EXPECT_LT(took, absl::Seconds(10));
  EXPECT_EQ(log.events().back().state, OperationState::kFailed);
  // Nothing of b2; history keeps the diagnosis.
  EXPECT_EQ(VersionRows(db.dsn()), (Rows{{"a1"}}));
  EXPECT_FALSE(TableExists(db.dsn(), "t_b2"));
  EXPECT_EQ(Query(db.dsn(), absl::StrCat("SELECT count(*) FROM schemad_history WHERE revision = "
                                         "'b2' AND outcome = 'failed' AND error LIKE '%",
                                         blocker, "%'")),
            (Rows{{"1"}}));

  holding->abort();
  holding.reset();
  ASSERT_OK(client_->Upgrade("site-a").status());
  EXPECT_EQ(VersionRows(db.dsn()), (Rows{{"b2"}}));
}

// ------------------------------------------------------------------ errors

// --------------------------------------------- what revisions do to sessions

TEST_F(ServerTest, RevisionsCannotMoveTheBookkeepingNorReachThePooledSession) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  // A decoy schema with schemad's table names: a version row that an
  // unqualified UPDATE would move, and a mark that would show as "needs
  // attention" if the server ever read it.
  testing::Exec(db.dsn(), R"(
    CREATE SCHEMA decoy;
    CREATE TABLE decoy.alembic_version (version_num varchar(32) PRIMARY KEY);
    INSERT INTO decoy.alembic_version VALUES ('a1');
    CREATE TABLE decoy.schemad_state (version_table text PRIMARY KEY, revision text NOT NULL,
      direction text NOT NULL, statements_done int NOT NULL, statements_total int NOT NULL,
      error text, operation_id text, started timestamptz);
    INSERT INTO decoy.schemad_state VALUES ('alembic_version', 'decoy', 'up', 0, 1, 'decoy', NULL,
      now());
    CREATE TABLE public.seen (rev text, settings text);
  )");
  const std::string settings =
      "current_setting('search_path') || ' ' || current_setting('work_mem')";
  // b2 moves search_path as pg_dump preambles do; c3 records what it sees.
  WriteRevision(dir_, "modax", {"a1", "", "CREATE TABLE t_a1 (id int);"});
  WriteRevision(dir_, "modax",
                {"b2", "a1",
                 absl::StrCat("SET search_path TO decoy, public;\nSET work_mem = '77MB';\n"
                              "INSERT INTO public.seen SELECT 'b2', ",
                              settings, ";")});
  WriteRevision(dir_, "modax",
                {"c3", "b2", absl::StrCat("INSERT INTO public.seen SELECT 'c3', ", settings, ";")});
  // d4, non-transactional, empties search_path and then fails.
  Rev d4{"d4", "c3",
         absl::StrCat("SELECT set_config('search_path', '', false);\n"
                      "INSERT INTO public.seen SELECT 'd4', ",
                      settings, ";\nSELECT 1/0;")};
  d4.transactional = false;
  WriteRevision(dir_, "modax", d4);
  // One pooled session: every call below reuses it.
  StartOver(db, "pools: {max_sessions_per_database: 1, min_idle_sessions: 0}");

  UpgradeRequest to_c3;
  to_c3.target = "c3";
  ASSERT_OK(client_->Upgrade("site-a", to_c3).status());
  EXPECT_EQ(VersionRows(db.dsn()), (Rows{{"c3"}}));
  EXPECT_EQ(Query(db.dsn(), "SELECT version_num FROM decoy.alembic_version"), (Rows{{"a1"}}));
  EXPECT_EQ(Query(db.dsn(), "SELECT rev, settings FROM public.seen ORDER BY rev"),
            (Rows{{"b2", "decoy, public 77MB"}, {"c3", "\"$user\", public 4MB"}}));
  ASSERT_OK_AND_ASSIGN(DatabaseStatus status, client_->GetStatus("site-a"));
  EXPECT_THAT(status.current_heads, ElementsAre("c3"));
  EXPECT_FALSE(status.needs_attention.has_value()) << "read decoy.schemad_state";
  EXPECT_EQ(status.state, DatabaseStatus::State::kBehind);

  // d4 fails after emptying search_path: the mark is written, and shown.
  EXPECT_THAT(client_->Upgrade("site-a").status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("needs attention")));
  EXPECT_EQ(Query(db.dsn(), "SELECT revision, statements_done FROM public.schemad_state"),
            (Rows{{"d4", "2"}}));
  ASSERT_OK_AND_ASSIGN(status, client_->GetStatus("site-a"));
  ASSERT_TRUE(status.needs_attention.has_value()) << "the server shows no mark";
  EXPECT_EQ(status.needs_attention->revision, "d4");
  EXPECT_EQ(status.state, DatabaseStatus::State::kNeedsAttention);
  EXPECT_THAT(client_->EnsureHead("site-a"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("needs attention")));
  // One session served it all, and it is back to how it connected (the
  // lock's connection may take a moment to go).
  const std::string sessions = absl::StrCat(
      "SELECT application_name FROM pg_stat_activity WHERE datname = '", db.name(), "'");
  Rows left = Query(testing::AdminDsn(), sessions);
  for (int i = 0; i < 100 && left != Rows{{"schemad"}}; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
    left = Query(testing::AdminDsn(), sessions);
  }
  EXPECT_EQ(left, (Rows{{"schemad"}}));
}

TEST_F(ServerTest, UnknownDatabaseIsNotFound) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 0);
  StartOver(db);
  EXPECT_THAT(client_->EnsureHead("site-x"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("site-x")));
  EXPECT_THAT(client_->GetStatus("site-x"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("site-x")));
  EXPECT_THAT(client_->Upgrade("site-x"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("site-x")));
  EXPECT_THAT(client_->History("site-x"), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_THAT(client_->DescribeMigrationSet("nope"),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

TEST_F(ServerTest, UnreachableDatabaseIsUnavailableWithoutSecrets) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 0);
  const std::string secret = "hunter2-Sup3rSecret";
  const std::string dsn = absl::StrCat("postgresql://app:", secret,
                                       "@127.0.0.1:", testing::UnusedLoopbackPort(), "/site_b");
  ASSERT_OK_AND_ASSIGN(
      server_,
      StartServer(dir_, MakeConfig(dir_, {"modax"}, {{"site-a", db.dsn()}, {"site-b", dsn}})));
  client_ = Connect(ClientFor(server_->address()));
  absl::StatusOr<EnsureHeadResult> result = client_->EnsureHead("site-b");
  EXPECT_THAT(result,
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("site-b"), Not(HasSubstr(secret)), Not(HasSubstr(dsn)))));
  EXPECT_THAT(client_->GetStatus("site-b"),
              StatusIs(absl::StatusCode::kUnavailable, Not(HasSubstr(secret))));
  EXPECT_THAT(client_->Upgrade("site-b"),
              StatusIs(absl::StatusCode::kUnavailable, Not(HasSubstr(secret))));
  ListDatabasesRequest list;
  list.include_status = true;
  ASSERT_OK_AND_ASSIGN(std::vector<DatabaseInfo> dbs, client_->ListDatabases(list));
  ASSERT_EQ(dbs.size(), 2u);
  EXPECT_EQ(dbs[0].status->state, DatabaseStatus::State::kBehind);
  EXPECT_EQ(dbs[0].status->pending, 3);
  EXPECT_EQ(dbs[1].status->state, DatabaseStatus::State::kUnreachable);
  EXPECT_EQ(dbs[1].status->error.code(), absl::StatusCode::kUnavailable);
  for (const DatabaseInfo& info : dbs) {
    EXPECT_THAT(info.display_name, Not(HasSubstr(secret)));
    EXPECT_THAT(std::string(info.status->error.message()), Not(HasSubstr(secret)));
  }
  // Selection by label.
  list.label_selector = {{"site", "site-a"}};
  list.include_status = false;
  ASSERT_OK_AND_ASSIGN(dbs, client_->ListDatabases(list));
  ASSERT_EQ(dbs.size(), 1u);
  EXPECT_EQ(dbs[0].name, "site-a");
}

// ------------------------------------------------------------------- reads

TEST_F(ServerTest, ReadsPlanStampDowngradeAndValidate) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 0);
  StartOver(db);
  PlanRequest plan;
  plan.database = "site-a";
  plan.sql = true;
  ASSERT_OK_AND_ASSIGN(PlanResult planned, client_->Plan(plan));
  ASSERT_EQ(planned.steps.size(), 3u);
  EXPECT_EQ(planned.steps[0].step.revision, "a1");
  EXPECT_THAT(planned.rows_after, ElementsAre("c3"));
  EXPECT_THAT(planned.sql, AllOf(HasSubstr("CREATE TABLE t_b2"), HasSubstr("alembic_version")));
  PlanRequest offline;
  offline.migration_set = "modax";
  offline.kind = PlanRequest::Kind::kDowngrade;
  offline.targets = {"a1"};
  offline.from_rows = {"c3"};
  ASSERT_OK_AND_ASSIGN(PlanResult down, client_->Plan(offline));
  ASSERT_EQ(down.steps.size(), 2u);
  EXPECT_EQ(down.steps[0].step.revision, "c3");
  EXPECT_EQ(down.steps[0].step.direction, Direction::kDown);

  ASSERT_OK(client_->EnsureHead("site-a").status());
  DowngradeRequest downgrade;
  downgrade.target = "-1";
  ASSERT_OK_AND_ASSIGN(OperationResult result, client_->Downgrade("site-a", downgrade));
  EXPECT_THAT(result.heads, ElementsAre("b2"));
  EXPECT_FALSE(TableExists(db.dsn(), "t_c3"));
  ASSERT_OK_AND_ASSIGN(OperationResult stamped, client_->Stamp("site-a", {"c3"}));
  EXPECT_THAT(stamped.heads, ElementsAre("c3"));
  EXPECT_EQ(VersionRows(db.dsn()), (Rows{{"c3"}}));

  ASSERT_OK_AND_ASSIGN(std::vector<HistoryEntry> history, client_->History("site-a", 2));
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[0].direction, "stamp");
  EXPECT_EQ(history[1].direction, "down");
  EXPECT_EQ(history[1].revision, "c3");
  // Without tokens `who` is the client's address, without its ephemeral port
  // (one client, one name, across calls).
  EXPECT_THAT(Query(db.dsn(), "SELECT DISTINCT who FROM schemad_history"),
              ElementsAre(ElementsAre(::testing::StartsWith("127.0.0.1"))));
  EXPECT_THAT(Query(db.dsn(),
                    "SELECT who FROM schemad_history WHERE who LIKE '%ipv4%' OR "
                    "who ~ '127\\.0\\.0\\.1:[0-9]'"),
              ::testing::IsEmpty());

  ASSERT_OK_AND_ASSIGN(ValidationResult validation, client_->Validate("site-a"));
  EXPECT_TRUE(validation.ok);
  ASSERT_OK_AND_ASSIGN(MigrationSetInfo set, client_->DescribeMigrationSet("", "site-a"));
  EXPECT_EQ(set.name, "modax");
  EXPECT_THAT(set.heads, ElementsAre("c3"));
  EXPECT_THAT(set.databases, ElementsAre("site-a"));
  ASSERT_EQ(set.revisions.size(), 3u);
  EXPECT_THAT(set.revisions[1].revises, ElementsAre("a1"));
  EXPECT_EQ(set.revisions[1].upgrade_statements, 3);
  EXPECT_TRUE(set.revisions[1].reversible);
  EXPECT_EQ(set.revisions[1].message, "revision b2");
  ASSERT_OK_AND_ASSIGN(std::vector<OperationInfo> ops, client_->ListOperations("site-a"));
  ASSERT_EQ(ops.size(), 3u);  // newest first
  EXPECT_EQ(ops[0].kind, OperationKind::kStamp);
  EXPECT_EQ(ops[1].kind, OperationKind::kDowngrade);
  EXPECT_EQ(ops[2].kind, OperationKind::kEnsureHead);
  EXPECT_EQ(ops[2].state, OperationState::kSucceeded);
}

TEST_F(ServerTest, MergeJoinsTheHeadsOrSaysHowToCreateTheMergeRevision) {
  TestDatabase db;
  TestDatabase unmerged;
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(unmerged.ok());
  for (const std::string set : {"merged", "split"}) {
    WriteRevision(dir_, set, {"a1", "", "CREATE TABLE t_a1 (id int);"});
    WriteRevision(dir_, set, {"b1", "a1", "CREATE TABLE t_b1 (id int);"});
    WriteRevision(dir_, set, {"c1", "a1", "CREATE TABLE t_c1 (id int);"});
  }
  WriteRevision(dir_, "merged", {"m1", "b1,c1", "CREATE TABLE t_m1 (id int);"});
  ASSERT_OK_AND_ASSIGN(server_,
                       StartServer(dir_, MakeConfig(dir_, {"merged", "split"},
                                                    {{"site-a", db.dsn(), "merged"},
                                                     {"site-b", unmerged.dsn(), "split"}})));
  client_ = Connect(ClientFor(server_->address()));
  for (const std::string name : {"site-a", "site-b"}) {
    UpgradeRequest upgrade;
    upgrade.target = "b1";
    ASSERT_OK(client_->Upgrade(name, upgrade).status());
    upgrade.target = "c1";
    ASSERT_OK(client_->Upgrade(name, upgrade).status());
  }
  EXPECT_EQ(VersionRows(db.dsn()), (Rows{{"b1"}, {"c1"}}));
  ASSERT_OK_AND_ASSIGN(OperationResult merged, client_->Merge("site-a"));
  EXPECT_THAT(merged.heads, ElementsAre("m1"));
  EXPECT_EQ(VersionRows(db.dsn()), (Rows{{"m1"}}));
  EXPECT_THAT(client_->Merge("site-a"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("use Upgrade")));
  EXPECT_THAT(client_->Merge("site-b"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("b1, c1"), HasSubstr("schemactl merge"))));
}

// -------------------------------------------------------------------- auth

TEST_F(ServerTest, BearerTokensAndRoles) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 0);
  dir_.Write("tokens",
             "reader-token-0123456789 reader grafana\n"
             "migrator-token-0123456789 migrator site-a-control\n"
             "admin-token-0123456789abc admin oncall\n");
  StartOver(db, "tokens_file: tokens");
  EXPECT_THAT(client_->GetStatus("site-a"),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("bearer token")));
  EXPECT_THAT(client_->Upgrade("site-a"),
              StatusIs(absl::StatusCode::kUnauthenticated, ::testing::_));
  EXPECT_THAT(WithToken("wrong-token-0123456789")->GetStatus("site-a"),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       AllOf(HasSubstr("unknown"), Not(HasSubstr("wrong-token")))));
  std::unique_ptr<Client> reader = WithToken("reader-token-0123456789");
  EXPECT_OK(reader->GetStatus("site-a").status());
  EXPECT_OK(reader->ListDatabases().status());
  EXPECT_THAT(reader->EnsureHead("site-a"),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       AllOf(HasSubstr("migrator"), HasSubstr("grafana"))));
  std::unique_ptr<Client> migrator = WithToken("migrator-token-0123456789");
  ASSERT_OK(migrator->EnsureHead("site-a").status());
  DowngradeRequest downgrade;
  downgrade.target = "base";
  EXPECT_THAT(migrator->Downgrade("site-a", downgrade),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("admin")));
  EXPECT_THAT(migrator->CancelOperation("op-0000000000000000"),
              StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_));
  std::unique_ptr<Client> admin = WithToken("admin-token-0123456789abc");
  ASSERT_OK(admin->Downgrade("site-a", downgrade).status());
  EXPECT_TRUE(VersionRows(db.dsn()).empty());
  // History records the token's name.
  EXPECT_THAT(Query(db.dsn(), "SELECT who FROM schemad_history ORDER BY id DESC LIMIT 1"),
              ElementsAre(ElementsAre(HasSubstr("oncall"))));
}

// Issue 13: Repair through the server needs the admin role, re-records the
// checksum of an applied revision whose file changed and names the token in
// its audit row; a cosmetic edit shows as COSMETIC in Validate.
TEST_F(ServerTest, RepairNeedsAdminAndRecordsWhoAndBothChecksums) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 0);
  dir_.Write("tokens",
             "migrator-token-0123456789 migrator site-a-control\n"
             "admin-token-0123456789abc admin oncall\n");
  StartOver(db, "tokens_file: tokens");
  ASSERT_OK(WithToken("migrator-token-0123456789")->EnsureHead("site-a").status());
  const Rows before = Query(db.dsn(), "SELECT checksum FROM schemad_history WHERE revision = 'a1'");
  ASSERT_EQ(before.size(), 1u);

  // The server loads the edited files when it starts again.
  WriteRevision(dir_, "modax", {"a1", "", "create TABLE t_a1 (id INT); -- c", "DROP TABLE t_a1;"});
  WriteRevision(dir_, "modax", {"c3", "b2", "CREATE TABLE t_c3 (id bigint);", "DROP TABLE t_c3;"});
  StartOver(db, "tokens_file: tokens");
  std::unique_ptr<Client> migrator = WithToken("migrator-token-0123456789");
  std::unique_ptr<Client> admin = WithToken("admin-token-0123456789abc");
  ASSERT_OK_AND_ASSIGN(ValidationResult validation, migrator->Validate("site-a"));
  EXPECT_FALSE(validation.ok);
  std::map<std::string, ValidationIssue::Kind> kinds;
  for (const ValidationIssue& issue : validation.issues) {
    kinds[issue.revision] = issue.kind;
  }
  EXPECT_EQ(kinds, (std::map<std::string, ValidationIssue::Kind>{
                       {"a1", ValidationIssue::Kind::kCosmetic},
                       {"c3", ValidationIssue::Kind::kChanged}}));

  EXPECT_THAT(migrator->Repair("site-a"),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("admin")));
  EXPECT_EQ(Query(db.dsn(), "SELECT count(*) FROM schemad_history WHERE direction = 'repair'"),
            (Rows{{"0"}}));
  ASSERT_OK_AND_ASSIGN(RepairResult repaired, admin->Repair("site-a"));
  EXPECT_FALSE(repaired.operation_id.empty());
  EXPECT_TRUE(repaired.not_repaired.empty());
  ASSERT_EQ(repaired.repaired.size(), 2u);
  EXPECT_EQ(repaired.repaired[0].revision, "a1");
  EXPECT_EQ(repaired.repaired[0].recorded_checksum, before[0][0]);
  EXPECT_THAT(Query(db.dsn(),
                    "SELECT revision, who, previous_checksum IS NOT NULL, checksum <> "
                    "previous_checksum FROM schemad_history WHERE direction = 'repair' ORDER BY "
                    "revision"),
              ElementsAre(ElementsAre("a1", HasSubstr("oncall"), "t", "t"),
                          ElementsAre("c3", HasSubstr("oncall"), "t", "t")));
  ASSERT_OK_AND_ASSIGN(validation, migrator->Validate("site-a"));
  EXPECT_TRUE(validation.ok);
  EXPECT_TRUE(validation.issues.empty());
}

// Issue 13: the server lints each migration set when it loads it;
// DescribeMigrationSet and Plan carry the findings, and a fleet upgrade
// refuses error-level findings unless allowed, then shows them first.
TEST_F(ServerTest, LintFindingsInDescribePlanAndFleetUpgrade) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteRevision(dir_, "modax", {"a1", "", "CREATE TABLE t_a1 (id int);", "DROP TABLE t_a1;"});
  WriteRevision(dir_, "modax",
                {"b2", "a1", "CREATE TABLE t_b2 (id int);\nCREATE INDEX t_a1_id ON t_a1 (id);",
                 "DROP INDEX t_a1_id;\nDROP TABLE t_b2;"});
  WriteRevision(dir_, "modax", {"c3", "b2", "CREATE TABLE t_c3 (id int);", "DROP TABLE t_c3;"});
  StartOver(db);

  ASSERT_OK_AND_ASSIGN(MigrationSetInfo set, client_->DescribeMigrationSet("modax"));
  std::vector<LintFinding> errors;
  for (const LintFinding& f : set.lint_findings) {
    if (f.severity == "error") {
      errors.push_back(f);
    }
  }
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].rule, "create-index-not-concurrently");
  EXPECT_EQ(errors[0].revision, "b2");
  EXPECT_THAT(errors[0].file, ::testing::EndsWith(".sql"));
  EXPECT_GT(errors[0].line, 0);
  EXPECT_THAT(errors[0].statement, HasSubstr("CREATE INDEX t_a1_id"));

  PlanRequest from_a1;
  from_a1.migration_set = "modax";
  from_a1.from_rows = {"a1"};
  ASSERT_OK_AND_ASSIGN(PlanResult planned, client_->Plan(from_a1));
  ASSERT_FALSE(planned.lint_findings.empty());
  for (const LintFinding& f : planned.lint_findings) {
    EXPECT_NE(f.revision, "a1") << "a1 is not in the plan";
  }
  PlanRequest from_b2 = from_a1;
  from_b2.from_rows = {"b2"};
  ASSERT_OK_AND_ASSIGN(planned, client_->Plan(from_b2));
  for (const LintFinding& f : planned.lint_findings) {
    EXPECT_EQ(f.revision, "c3");
  }

  FleetRequest fleet;
  EXPECT_THAT(client_->FleetRun(fleet),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("create-index-not-concurrently"), HasSubstr("revision b2"),
                             HasSubstr("--allow-lint-errors"))));
  EXPECT_FALSE(TableExists(db.dsn(), "alembic_version")) << "nothing ran";

  fleet.allow_lint_errors = true;
  std::vector<LintFinding> shown;
  CallOptions call;
  call.on_event = [&](const OperationEvent& e) {
    if (e.kind == OperationEvent::Kind::kAccepted) {
      shown = e.lint_errors;
    }
  };
  ASSERT_OK_AND_ASSIGN(FleetSummary summary, client_->FleetRun(fleet, call));
  EXPECT_TRUE(summary.ok());
  ASSERT_EQ(shown.size(), 1u);
  EXPECT_EQ(shown[0].rule, "create-index-not-concurrently");
  EXPECT_EQ(VersionRows(db.dsn()), (Rows{{"c3"}}));
}

// Generates a CA, a server certificate for 127.0.0.1/localhost and client
// certificates, one signed by the CA and one by a stranger.
class Pki {
 public:
  explicit Pki(const TempDir& dir) : dir_(dir.path() + "/pki") {
    std::filesystem::create_directories(dir_);
    ok_ = Run("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca "
              "-keyout ca.key -out ca.pem") &&
          Run("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=rogue-ca "
              "-keyout rogue-ca.key -out rogue-ca.pem") &&
          Issue("server", "localhost", "ca", "subjectAltName=DNS:localhost,IP:127.0.0.1") &&
          Issue("client", "site-a-control", "ca", "") && Issue("rogue", "intruder", "rogue-ca", "");
  }
  bool ok() const { return ok_; }
  std::string File(const std::string& name) const { return dir_ + "/" + name; }

 private:
  bool Run(const std::string& command) const {
    const std::string full = absl::StrCat("cd ", dir_, " && ", command, " >/dev/null 2>&1");
    return std::system(full.c_str()) == 0;
  }
  bool Issue(const std::string& name, const std::string& cn, const std::string& ca,
             const std::string& ext) {
    std::string ext_file;
    if (!ext.empty()) {
      std::ofstream(dir_ + "/" + name + ".ext") << ext << "\n";
      ext_file = absl::StrCat(" -extfile ", name, ".ext");
    }
    return Run(absl::StrCat("openssl req -newkey rsa:2048 -nodes -subj /CN=", cn, " -keyout ", name,
                            ".key -out ", name, ".csr")) &&
           Run(absl::StrCat("openssl x509 -req -in ", name, ".csr -CA ", ca, ".pem -CAkey ", ca,
                            ".key -CAcreateserial -days 2 -out ", name, ".pem", ext_file));
  }

  std::string dir_;
  bool ok_ = false;
};

TEST_F(ServerTest, MutualTlsRejectsABadClientCertificate) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 0);
  Pki pki(dir_);
  ASSERT_TRUE(pki.ok()) << "openssl failed";
  StartOver(db, absl::StrCat("tls:\n  cert_file: ", pki.File("server.pem"), "\n  key_file: ",
                             pki.File("server.key"), "\n  client_ca_file: ", pki.File("ca.pem"),
                             "\n  require_client_cert: true\n"));
  const auto tls_client = [&](const std::string& cert) {
    ClientOptions options = ClientFor(server_->address());
    options.retry.enabled = true;  // TLS failures come back at once all the same
    options.root_ca_file = pki.File("ca.pem");
    options.tls_server_name = "localhost";
    if (!cert.empty()) {
      options.cert_file = pki.File(cert + ".pem");
      options.key_file = pki.File(cert + ".key");
    }
    return Connect(options);
  };
  CallOptions quick;
  quick.deadline = absl::Seconds(5);
  ASSERT_OK_AND_ASSIGN(EnsureHeadResult result,
                       tls_client("client")->EnsureHead("site-a", {}, quick));
  EXPECT_TRUE(result.applied);
  // The certificate's common name is the caller's identity in history.
  EXPECT_THAT(Query(db.dsn(), "SELECT DISTINCT who FROM schemad_history"),
              ElementsAre(ElementsAre(HasSubstr("cn=site-a-control"))));
  // Refused, and (issue 9) saying that it is TLS and what failed, well
  // before the deadline: gRPC itself says only "tcp handshaker shutdown"
  // for most of these, and retrying would not help.
  CallOptions patient;
  patient.deadline = absl::Seconds(60);
  const auto quickly = [&](std::unique_ptr<Client> client) {
    const absl::Time start = absl::Now();
    absl::Status status = client->GetStatus("site-a", patient).status();
    EXPECT_LT(absl::Now() - start, absl::Seconds(20)) << status;
    return status;
  };
  const std::string tls_failed =
      absl::StrCat("TLS handshake with ", server_->address(), " failed: ");
  EXPECT_THAT(quickly(tls_client("rogue")),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr(tls_failed + "the server refused the client certificate: it "
                                              "must be signed by CN=test-ca")));
  EXPECT_THAT(quickly(tls_client("")),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr(tls_failed + "the server requires a client certificate")));
  ClientOptions wrong_ca = ClientFor(server_->address());
  wrong_ca.retry.enabled = true;
  wrong_ca.root_ca_file = pki.File("rogue-ca.pem");
  wrong_ca.tls_server_name = "localhost";
  wrong_ca.cert_file = pki.File("client.pem");
  wrong_ca.key_file = pki.File("client.key");
  EXPECT_THAT(quickly(Connect(wrong_ca)),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr(tls_failed + "the server's certificate is not signed by a CA "
                                              "in root_ca_file")));
  ClientOptions wrong_name = wrong_ca;
  wrong_name.root_ca_file = pki.File("ca.pem");
  wrong_name.tls_server_name = "other.example";
  EXPECT_THAT(quickly(Connect(wrong_name)),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr(tls_failed + "the server's certificate is not for "
                                              "\"other.example\"")));
  // Plaintext to a TLS port fails too, and says so.
  ClientOptions plaintext = ClientFor(server_->address());
  plaintext.retry.enabled = true;
  EXPECT_THAT(quickly(Connect(plaintext)),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr(absl::StrCat(server_->address(),
                                              " speaks TLS, but this client "
                                              "connects in plaintext"))));
  // A key that is not the certificate's: refused before any connection.
  ClientOptions mismatched = wrong_name;
  mismatched.tls_server_name = "localhost";
  mismatched.key_file = pki.File("rogue.key");
  EXPECT_THAT(Client::Connect(mismatched),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("does not belong to the client certificate")));
}

// TLS to a plaintext server: said, not retried.
TEST_F(ServerTest, TlsToAPlaintextServerSaysSo) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 0);
  StartOver(db);
  Pki pki(dir_);
  ASSERT_TRUE(pki.ok()) << "openssl failed";
  ClientOptions options = ClientFor(server_->address());
  options.root_ca_file = pki.File("ca.pem");
  options.retry.enabled = true;
  CallOptions quick;
  quick.deadline = absl::Seconds(5);
  EXPECT_THAT(Connect(options)->GetStatus("site-a", quick),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr(absl::StrCat("TLS handshake with ", server_->address(),
                                              " failed: the server does not speak TLS"))));
}

// ----------------------------------------------------------- health, shutdown

// Asks the server reflection service of `address` to list the services (a
// ServerReflectionRequest with list_services = "", encoded by hand: field 7,
// length-delimited, empty) over one bidi-streaming call; the raw response
// bytes, or the call's error.
absl::StatusOr<std::string> ListServicesByReflection(const std::string& address) {
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call = stub.PrepareCall(
      &context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  // Each step: start it with a tag, wait for that tag; `ok` is whether it
  // succeeded (a failed Read means the server sent no message).
  auto step = [&cq](auto start) {
    start(&cq);
    void* tag = nullptr;
    bool ok = false;
    cq.Next(&tag, &ok);
    return ok;
  };
  step([&](void*) { call->StartCall(reinterpret_cast<void*>(1)); });
  const std::string list_services("\x3a\x00", 2);
  grpc::Slice request_slice(list_services);
  const grpc::ByteBuffer request(&request_slice, 1);
  step([&](void*) { call->Write(request, reinterpret_cast<void*>(2)); });
  step([&](void*) { call->WritesDone(reinterpret_cast<void*>(3)); });
  grpc::ByteBuffer response;
  const bool got = step([&](void*) { call->Read(&response, reinterpret_cast<void*>(4)); });
  grpc::Status status;
  step([&](void*) { call->Finish(&status, reinterpret_cast<void*>(5)); });
  cq.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (cq.Next(&tag, &ok)) {
  }
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  }
  if (!got) {
    return absl::InternalError("the reflection service sent no response");
  }
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) {
    return absl::InternalError("cannot read the reflection response");
  }
  std::string bytes;
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return bytes;
}

// `reflection: true` serves gRPC's reflection service (grpcurl); off, the
// service is absent. Also checks that the statically linked gRPC
// (SCHEMAD_STATIC_DEPS) still has its reflection plugin.
TEST_F(ServerTest, ReflectionListsTheServicesOnlyWhenSwitchedOn) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 0);
  StartOver(db, "reflection: true");
  ASSERT_OK_AND_ASSIGN(std::string listed, ListServicesByReflection(server_->address()));
  EXPECT_THAT(listed, HasSubstr("schemad.v1.Schemad"));
  EXPECT_THAT(listed, HasSubstr("grpc.health.v1.Health"));
  EXPECT_THAT(listed, HasSubstr("grpc.reflection.v1alpha.ServerReflection"));
  server_.reset();
  StartOver(db);
  EXPECT_THAT(ListServicesByReflection(server_->address()),
              StatusIs(absl::StatusCode::kUnimplemented, ::testing::_));
}

TEST_F(ServerTest, HealthTurnsNotServingWhenShutdownBegins) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 2);
  StartOver(db, "shutdown_grace: 20s");
  ASSERT_OK_AND_ASSIGN(bool serving, client_->CheckHealth());
  EXPECT_TRUE(serving);
  ASSERT_OK_AND_ASSIGN(serving, client_->CheckHealth("modax"));
  EXPECT_TRUE(serving);
  EXPECT_THAT(client_->CheckHealth("nosuchset"),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  // The same through `schemactl --server ADDR health [--set NAME]`, without
  // a token (what container healthchecks and probes run).
  cli::GlobalOptions global;
  cli::RemoteOptions remote;
  remote.server = server_->address();
  remote.timeout = absl::Seconds(10);
  auto cli_health = [&](const std::string& set, std::string* printed) {
    cli::HealthOptions options;
    options.migration_set = set;
    std::ostringstream out;
    std::ostringstream err;
    const int code = cli::RunRemoteHealth(global, remote, options, out, err);
    *printed = out.str() + err.str();
    return code;
  };
  std::string printed;
  EXPECT_EQ(cli_health("", &printed), 0) << printed;
  EXPECT_EQ(printed, "SERVING\n");
  EXPECT_EQ(cli_health("modax", &printed), 0) << printed;
  EXPECT_EQ(cli_health("nosuchset", &printed), 1) << printed;
  // Readiness, without a control database: ready while serving.
  EXPECT_STREQ(server::kReadinessServiceName, kReadinessHealthService);
  ASSERT_OK_AND_ASSIGN(serving, client_->CheckReady());
  EXPECT_TRUE(serving);
  {
    cli::HealthOptions ready;
    ready.ready = true;
    std::ostringstream out;
    std::ostringstream err;
    EXPECT_EQ(cli::RunRemoteHealth(global, remote, ready, out, err), 0) << err.str();
    EXPECT_EQ(out.str(), "SERVING\n");
    ready.migration_set = "modax";
    EXPECT_EQ(cli::RunRemoteHealth(global, remote, ready, out, err), cli::kExitUsage);
  }

  EventLog log;
  absl::StatusOr<OperationResult> result;
  std::thread upgrade([&] {
    CallOptions call;
    call.on_event = log.Callback();
    UpgradeRequest request = PerRevision();
    request.target = "c3";
    result = client_->Upgrade("site-a", request, call);
  });
  ASSERT_TRUE(log.WaitFor(StatementOf("b2", 1), absl::Seconds(30)));
  std::thread shutdown([&] { server_->Shutdown(); });
  // During the grace period the server answers, NOT_SERVING.
  bool saw_not_serving = false;
  for (int i = 0; i < 100 && !saw_not_serving; ++i) {
    absl::StatusOr<bool> health = client_->CheckHealth();
    saw_not_serving = health.ok() && !*health;
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_TRUE(saw_not_serving);
  // Not ready either (a stopping replica takes no new operations).
  absl::StatusOr<bool> ready = client_->CheckReady();
  EXPECT_TRUE(!ready.ok() || !*ready);
  absl::StatusOr<bool> set_health = client_->CheckHealth("modax");
  EXPECT_TRUE(set_health.ok() && !*set_health);
  EXPECT_EQ(cli_health("", &printed), 1) << printed;
  EXPECT_EQ(printed, "NOT_SERVING\n");
  // No new operations; reads still work.
  EXPECT_THAT(client_->Upgrade("site-a"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shutting down")));
  shutdown.join();
  upgrade.join();
  // The running revision (b2) finished; the next one (c3) did not start.
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kCancelled, ::testing::_));
  EXPECT_EQ(VersionRows(db.dsn()), (Rows{{"b2"}}));
  EXPECT_FALSE(TableExists(db.dsn(), "t_c3"));
  EXPECT_TRUE(server_->clean_shutdown());
  EXPECT_EQ(AdvisoryLocks(db), 0);
  EXPECT_THAT(client_->CheckHealth(), StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
  EXPECT_EQ(cli_health("", &printed), 5) << printed;
}

// Start-up ordering: the control layer starts first and waits for schemad.
TEST_F(ServerTest, WaitForHeadRetriesUntilTheServiceComesUp) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 0);
  // Until the control layer has tried to connect, a plain socket stands in
  // for the server on its address: it accepts the connection and closes it.
  // Its port is outside the ephemeral range, so no other process's outgoing
  // connection can take it between closing it and starting schemad there.
  int port = 0;
  const int listener = testing::ListenOnUnusedLoopbackPort(&port);
  ASSERT_GE(listener, 0);
  const std::string address = absl::StrCat("127.0.0.1:", port);
  ClientOptions options = ClientFor(address);
  options.retry.enabled = true;
  options.retry.initial_backoff = absl::Milliseconds(50);
  options.retry.max_backoff = absl::Milliseconds(300);
  absl::Status waited;
  std::thread control_layer([&] { waited = WaitForHead(options, "site-a", absl::Seconds(30)); });
  pollfd attempt{listener, POLLIN, 0};
  EXPECT_EQ(poll(&attempt, 1, /*timeout ms=*/20000), 1) << "the control layer never tried";
  const int refused = accept(listener, nullptr, nullptr);
  EXPECT_GE(refused, 0);
  close(refused);
  close(listener);
  ASSERT_OK_AND_ASSIGN(
      server_, StartServer(dir_, MakeConfig(dir_, {"modax"}, {{"site-a", db.dsn()}}, "", address)));
  control_layer.join();
  EXPECT_OK(waited);
  EXPECT_EQ(VersionRows(db.dsn()), (Rows{{"c3"}}));
  // Errors that retrying cannot fix come back at once.
  EXPECT_THAT(WaitForHead(options, "site-x", absl::Seconds(30)),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  // Nobody listening: the deadline passes.
  ClientOptions nowhere = ClientFor(absl::StrCat("127.0.0.1:", testing::UnusedLoopbackPort()));
  nowhere.retry.initial_backoff = absl::Milliseconds(50);
  EXPECT_THAT(WaitForHead(nowhere, "site-a", absl::Seconds(1)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("site-a")));
}

// A control layer whose deadline passes while the operation it started still
// runs is told which operation and how far it got, not just "deadline".
TEST_F(ServerTest, WaitForHeadDeadlineNamesTheOperationStillRunning) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 60);  // b2 sleeps
  StartOver(db);
  ClientOptions options = ClientFor(server_->address());
  options.who = "site-a-control-layer";
  const absl::Status waited = WaitForHead(options, "site-a", absl::Seconds(3));
  ASSERT_OK_AND_ASSIGN(std::vector<OperationInfo> running,
                       client_->ListOperations("site-a", /*running_only=*/true));
  ASSERT_EQ(running.size(), 1u);
  const std::string id = running[0].operation_id;
  EXPECT_THAT(waited, StatusIs(absl::StatusCode::kDeadlineExceeded,
                               AllOf(HasSubstr("database site-a did not reach head within 3s"),
                                     HasSubstr(absl::StrCat("still running on the server: "
                                                            "operation ",
                                                            id, " (ensure-head")),
                                     HasSubstr("site-a-control-layer"),
                                     HasSubstr("running revision b2, step 2 of 3"))));
  ASSERT_OK(client_->CancelOperation(id).status());
  EXPECT_THAT(client_->WatchOperation(id), StatusIs(absl::StatusCode::kCancelled, ::testing::_));
}

// The `schemad` binary as a subprocess (signals, exit codes, its stderr).
// The constructor returns once it serves, or once it has exited.
class SchemadProcess {
 public:
  // `extra_args` follow the config flags; `name`: the stem of its files in
  // `dir` (NAME.yaml, NAME.out, NAME.err), so that several processes can
  // share a directory.
  SchemadProcess(const TempDir& dir, const std::string& yaml,
                 const std::vector<std::string>& extra_args = {},
                 const std::string& name = "schemad")
      : dir_(dir), name_(name) {
    const std::string config = dir.Write(name + ".yaml", yaml);
    const std::string out = dir.path() + "/" + name + ".out";
    const std::string err = dir.path() + "/" + name + ".err";
    std::vector<std::string> args = {SCHEMAD_BINARY, "--config", config, "--log-level", "debug"};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    std::vector<char*> argv;
    for (std::string& arg : args) {
      argv.push_back(arg.data());
    }
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ) != 0) {
      pid_ = -1;
    }
    posix_spawn_file_actions_destroy(&actions);
    // Wait for "schemad listening on HOST:PORT", or for the exit.
    for (int i = 0; i < 200 && pid_ > 0 && !exited_; ++i) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        break;
      }
      const std::string text = dir.Read(name + ".out");
      const size_t at = text.find("listening on ");
      if (at != std::string::npos && text.find('\n', at) != std::string::npos) {
        address_ = text.substr(at + 13, text.find('\n', at) - at - 13);
        break;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
  }
  ~SchemadProcess() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  const std::string& address() const { return address_; }
  void Signal(int signal) const { kill(pid_, signal); }
  // The exit status, or -1 when it has not exited within `timeout`.
  int Wait(absl::Duration timeout) {
    if (exited_) {
      return exit_code_;
    }
    const absl::Time end = absl::Now() + timeout;
    while (absl::Now() < end) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return exit_code_;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return -1;
  }
  std::string Log() const { return dir_.Read(name_ + ".err"); }
  std::string Out() const { return dir_.Read(name_ + ".out"); }

 private:
  const TempDir& dir_;
  const std::string name_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int exit_code_ = -1;
  std::string address_;
};

// 50 callers through two schemad replicas (separate `schemad` processes) on
// one database that is behind: every revision is applied exactly once, and
// the replicas provably contend. b2 reads table `gate`, which the test holds
// locked, so the replica that takes the migration lock first stays inside
// b2; the test lets go only once both replicas run an EnsureHead operation
// at the same time, so the other one is waiting for the migration lock.
TEST_F(ServerTest, FiftyConcurrentCallersApplyEachRevisionOnce) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  testing::Exec(db.dsn(), "CREATE TABLE gate (id int)");
  WriteRevision(dir_, "modax", {"a1", "", "CREATE TABLE t_a1 (id int);", "DROP TABLE t_a1;"});
  WriteRevision(
      dir_, "modax",
      {"b2", "a1", "CREATE TABLE t_b2 (id int);\nSELECT count(*) FROM gate;", "DROP TABLE t_b2;"});
  WriteRevision(dir_, "modax", {"c3", "b2", "CREATE TABLE t_c3 (id int);", "DROP TABLE t_c3;"});
  // No lock_timeout: b2 waits for the gate as long as the test holds it.
  const std::string yaml = MakeConfig(dir_, {"modax"}, {{"site-a", db.dsn()}},
                                      "timeouts: {lock_timeout: 0, lock_wait: 60s}");
  SchemadProcess replica_a(dir_, yaml, {}, "replica-a");
  SchemadProcess replica_b(dir_, yaml, {}, "replica-b");
  ASSERT_FALSE(replica_a.address().empty()) << replica_a.Log();
  ASSERT_FALSE(replica_b.address().empty()) << replica_b.Log();
  const std::vector<const SchemadProcess*> replicas = {&replica_a, &replica_b};

  pqxx::connection gatekeeper(db.dsn());
  auto gate = std::make_unique<pqxx::work>(gatekeeper);
  gate->exec("LOCK TABLE gate IN ACCESS EXCLUSIVE MODE");

  constexpr int kCallers = 50;
  std::atomic<int> ready{0};
  std::vector<absl::StatusOr<EnsureHeadResult>> results(kCallers, absl::UnknownError("not called"));
  std::vector<std::thread> callers;
  for (int i = 0; i < kCallers; ++i) {
    callers.emplace_back([&, i] {
      ClientOptions options = ClientFor(replicas[i % 2]->address());
      options.retry.enabled = true;
      std::unique_ptr<Client> client = Connect(options);
      ready.fetch_add(1);
      while (ready.load() < kCallers) {
        std::this_thread::yield();
      }
      CallOptions call;
      call.deadline = absl::Seconds(90);
      results[i] = client->EnsureHead("site-a", {}, call);
    });
  }

  // Both replicas run an operation at once: one inside b2, waiting for the
  // gate; the other waiting for the migration lock.
  std::vector<std::unique_ptr<Client>> observers;
  for (const SchemadProcess* replica : replicas) {
    observers.push_back(Connect(ClientFor(replica->address())));
  }
  const auto running_on = [&](size_t replica) {
    absl::StatusOr<std::vector<OperationInfo>> ops =
        observers[replica]->ListOperations("site-a", /*running_only=*/true);
    return ops.ok() ? ops->size() : 0u;
  };
  const auto at_the_gate = [&]() {
    return Query(db.dsn(),
                 "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
                 "application_name LIKE 'schemad op-%' AND wait_event_type = 'Lock' AND "
                 "query LIKE '%FROM gate%'") == Rows{{"1"}};
  };
  // A backend that asked who holds the migration lock found it taken (the
  // store asks only after a failed try) and reports the wait right after.
  // Running alone is not enough: an operation may still be reading the
  // state, and would find the lock free once the gate opens.
  const auto lock_waiter = [&]() {
    return Query(db.dsn(),
                 "SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = current_database() "
                 "AND pid <> pg_backend_pid() AND query LIKE '%pg_catalog.pg_locks l JOIN%'") ==
           Rows{{"t"}};
  };
  bool both_running = false;
  bool gate_waiter = false;
  bool waiting_for_the_lock = false;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(30);
       !(both_running && gate_waiter && waiting_for_the_lock) && absl::Now() < deadline;) {
    gate_waiter = at_the_gate();
    both_running = running_on(0) == 1 && running_on(1) == 1;
    waiting_for_the_lock = lock_waiter();
    if (!(both_running && gate_waiter && waiting_for_the_lock)) {
      absl::SleepFor(absl::Milliseconds(20));
    }
  }
  EXPECT_TRUE(both_running) << replica_a.Log() << replica_b.Log();
  EXPECT_TRUE(gate_waiter) << "no schemad backend waits for the gate inside b2";
  EXPECT_TRUE(waiting_for_the_lock) << "no schemad backend waits for the migration lock";
  gate->abort();
  gate.reset();
  for (std::thread& t : callers) {
    t.join();
  }

  // Every caller succeeded at c3.
  std::vector<std::set<std::string>> operations(2);  // per replica
  int applied = 0;
  for (int i = 0; i < kCallers; ++i) {
    ASSERT_TRUE(results[i].ok()) << "caller " << i << ": " << results[i].status();
    EXPECT_THAT(results[i]->heads, ElementsAre("c3")) << "caller " << i;
    applied += results[i]->applied ? 1 : 0;
    if (!results[i]->operation_id.empty()) {
      operations[i % 2].insert(results[i]->operation_id);
    }
  }
  // One operation, on one replica, applied the three revisions without
  // waiting; on the other replica an operation waited for the migration
  // lock, then found them applied under it. (Concurrent callers of one
  // replica share its operation; a caller that read the state just before
  // an operation ended may start one more, which finds nothing to do.)
  int appliers = 0;
  size_t applier_replica = 0;
  std::vector<int> waiting_operations(2, 0);  // ran nothing after waiting for the lock
  for (size_t r = 0; r < 2; ++r) {
    for (const std::string& operation_id : operations[r]) {
      EventLog replay;
      CallOptions watch;
      watch.on_event = replay.Callback();
      ASSERT_OK_AND_ASSIGN(OperationResult result,
                           observers[r]->WatchOperation(operation_id, watch));
      EXPECT_THAT(result.heads, ElementsAre("c3"));
      const std::vector<OperationEvent> events = replay.events();
      const bool waited = std::any_of(events.begin(), events.end(), [](const OperationEvent& e) {
        return e.kind == OperationEvent::Kind::kWaitingForLock;
      });
      if (result.revisions_run == 3) {
        ++appliers;
        applier_replica = r;
        EXPECT_FALSE(waited) << operation_id;
      } else {
        EXPECT_EQ(result.revisions_run, 0) << operation_id;
        waiting_operations[r] += waited ? 1 : 0;
      }
    }
  }
  EXPECT_EQ(appliers, 1);
  EXPECT_GE(waiting_operations[1 - applier_replica], 1)
      << "no operation of the other replica waited for the migration lock";
  EXPECT_GE(applied, 1);
  EXPECT_EQ(VersionRows(db.dsn()), (Rows{{"c3"}}));
  EXPECT_EQ(SuccessfulUps(db.dsn()), (Rows{{"a1", "1"}, {"b2", "1"}, {"c3", "1"}}));
  EXPECT_EQ(Query(db.dsn(), "SELECT count(*) FROM schemad_history WHERE outcome <> 'success'"),
            (Rows{{"0"}}));
  EXPECT_EQ(AdvisoryLocks(db), 0);
}

TEST_F(ServerTest, SigtermDuringAnUpgradeRollsBackAndReleasesTheLock) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 60);
  SchemadProcess schemad(dir_,
                         MakeConfig(dir_, {"modax"}, {{"site-a", db.dsn()}}, "shutdown_grace: 1s"));
  ASSERT_FALSE(schemad.address().empty()) << schemad.Log();
  std::unique_ptr<Client> client = Connect(ClientFor(schemad.address()));
  EventLog log;
  absl::StatusOr<OperationResult> result;
  std::thread upgrade([&] {
    CallOptions call;
    call.on_event = log.Callback();
    result = client->Upgrade("site-a", PerRevision(), call);
  });
  ASSERT_TRUE(log.WaitFor(StatementOf("b2", 1), absl::Seconds(30))) << schemad.Log();
  EXPECT_EQ(AdvisoryLocks(db), 1);
  schemad.Signal(SIGTERM);
  const int exit_code = schemad.Wait(absl::Seconds(30));
  upgrade.join();
  EXPECT_EQ(exit_code, 0) << schemad.Log();
  EXPECT_FALSE(result.ok());
  // b2 was cancelled after the grace period and rolled back as a whole.
  EXPECT_EQ(log.events().back().kind, OperationEvent::Kind::kOperationFinished);
  EXPECT_EQ(log.events().back().state, OperationState::kCancelled);
  EXPECT_EQ(VersionRows(db.dsn()), (Rows{{"a1"}}));
  EXPECT_FALSE(TableExists(db.dsn(), "t_b2"));
  EXPECT_EQ(Query(db.dsn(), "SELECT count(*) FROM schemad_state"), (Rows{{"0"}}));
  int locks = -1;
  for (int i = 0; i < 100 && locks != 0; ++i) {
    locks = AdvisoryLocks(db);
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(locks, 0);
  // The log names the operation and never the DSN.
  const std::string text = schemad.Log();
  EXPECT_THAT(text, HasSubstr(log.events().front().operation_id));
  EXPECT_THAT(text, HasSubstr("signal=15"));
  EXPECT_THAT(text, Not(HasSubstr(db.cluster().password)));
}

TEST_F(ServerTest, SigtermLetsTheRunningRevisionFinishWithinTheGrace) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 1);
  SchemadProcess schemad(
      dir_, MakeConfig(dir_, {"modax"}, {{"site-a", db.dsn()}}, "shutdown_grace: 30s"));
  ASSERT_FALSE(schemad.address().empty()) << schemad.Log();
  std::unique_ptr<Client> client = Connect(ClientFor(schemad.address()));
  EventLog log;
  std::thread upgrade([&] {
    CallOptions call;
    call.on_event = log.Callback();
    (void)client->Upgrade("site-a", PerRevision(), call);
  });
  ASSERT_TRUE(log.WaitFor(StatementOf("b2", 1), absl::Seconds(30))) << schemad.Log();
  const absl::Time signalled = absl::Now();
  schemad.Signal(SIGTERM);
  upgrade.join();
  // An idle client notices the server's GOAWAY only when gRPC's backup poller
  // runs (every 5s); closing it lets the server finish at once.
  client.reset();
  EXPECT_EQ(schemad.Wait(absl::Seconds(30)), 0) << schemad.Log();
  // b2 sleeps for 1s; stopping takes about that.
  EXPECT_LT(absl::Now() - signalled, absl::Seconds(4)) << schemad.Log();
  EXPECT_EQ(VersionRows(db.dsn()), (Rows{{"b2"}}));
  EXPECT_TRUE(TableExists(db.dsn(), "t_b2_after"));
  EXPECT_FALSE(TableExists(db.dsn(), "t_c3"));
}

// Per command (the default), the unit a graceful stop lets finish is the
// running transaction: a1, b2 and c3 commit together, then the server stops.
TEST_F(ServerTest, SigtermLetsTheRunningTransactionFinishWithinTheGrace) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 1);
  SchemadProcess schemad(
      dir_, MakeConfig(dir_, {"modax"}, {{"site-a", db.dsn()}}, "shutdown_grace: 30s"));
  ASSERT_FALSE(schemad.address().empty()) << schemad.Log();
  std::unique_ptr<Client> client = Connect(ClientFor(schemad.address()));
  EventLog log;
  absl::StatusOr<OperationResult> result;
  std::thread upgrade([&] {
    CallOptions call;
    call.on_event = log.Callback();
    result = client->Upgrade("site-a", {}, call);
  });
  ASSERT_TRUE(log.WaitFor(StatementOf("b2", 1), absl::Seconds(30))) << schemad.Log();
  schemad.Signal(SIGTERM);
  upgrade.join();
  client.reset();
  EXPECT_EQ(schemad.Wait(absl::Seconds(30)), 0) << schemad.Log();
  EXPECT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(VersionRows(db.dsn()), (Rows{{"c3"}}));
  EXPECT_TRUE(TableExists(db.dsn(), "t_c3"));
}

// A datagram socket standing in for systemd's NOTIFY_SOCKET.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    path.copy(address.sun_path, sizeof(address.sun_path) - 1);
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
      ADD_FAILURE() << "cannot bind a datagram socket at " << path;
    }
  }
  ~NotifySocket() {
    if (fd_ >= 0) {
      close(fd_);
    }
  }
  // The next message, or "" when none comes within `timeout`.
  std::string Next(absl::Duration timeout) const {
    pollfd ready{fd_, POLLIN, 0};
    if (poll(&ready, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) != 1) {
      return "";
    }
    char buffer[4096];
    const ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
    return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : "";
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

// Type=notify: READY=1 once the port is bound (with the address in STATUS),
// STOPPING=1 when a shutdown signal arrives; nothing for --check-config.
TEST_F(ServerTest, TellsSystemdWhenReadyAndWhenStopping) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 1);
  NotifySocket notify(dir_.path() + "/notify");
  ASSERT_EQ(setenv("NOTIFY_SOCKET", notify.path().c_str(), 1), 0);
  const std::string yaml = MakeConfig(dir_, {"modax"}, {{"site-a", db.dsn()}});
  {
    SchemadProcess check(dir_, yaml, {"--check-config"}, "check");
    EXPECT_EQ(check.Wait(absl::Seconds(30)), 0) << check.Log();
  }
  SchemadProcess schemad(dir_, yaml);
  unsetenv("NOTIFY_SOCKET");
  ASSERT_FALSE(schemad.address().empty()) << schemad.Log();
  const std::string ready = notify.Next(absl::Seconds(30));
  EXPECT_THAT(ready, HasSubstr("READY=1\n"));
  EXPECT_THAT(ready, HasSubstr("STATUS=serving on " + schemad.address()));
  schemad.Signal(SIGTERM);
  const std::string stopping = notify.Next(absl::Seconds(30));
  EXPECT_THAT(stopping, HasSubstr("STOPPING=1\n"));
  EXPECT_EQ(schemad.Wait(absl::Seconds(30)), 0) << schemad.Log();
  EXPECT_EQ(notify.Next(absl::Milliseconds(100)), "");  // nothing else
}

// WatchdogSec=: schemad pings systemd at half the interval while it runs.
TEST_F(ServerTest, PingsTheSystemdWatchdogWhileItServes) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 0);
  NotifySocket notify(dir_.path() + "/notify");
  ASSERT_EQ(setenv("NOTIFY_SOCKET", notify.path().c_str(), 1), 0);
  ASSERT_EQ(setenv("WATCHDOG_USEC", "200000", 1), 0);  // 0.2 s: a ping every 0.1 s
  SchemadProcess schemad(dir_, MakeConfig(dir_, {"modax"}, {{"site-a", db.dsn()}}));
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  ASSERT_FALSE(schemad.address().empty()) << schemad.Log();
  EXPECT_THAT(notify.Next(absl::Seconds(30)), HasSubstr("READY=1\n"));
  int pings = 0;
  for (std::string message; pings < 5 && !(message = notify.Next(absl::Seconds(5))).empty();) {
    EXPECT_EQ(message, "WATCHDOG=1");
    ++pings;
  }
  EXPECT_EQ(pings, 5);
  schemad.Signal(SIGTERM);
  EXPECT_EQ(schemad.Wait(absl::Seconds(30)), 0) << schemad.Log();
}

// SIGKILL (no grace, no clean-up) while a non-transactional revision runs:
// the mark written before its first statement survives, so a restarted
// schemad reports the database as needing attention and refuses to migrate
// it until an operator resolves it.
TEST_F(ServerTest, SigkillDuringANonTransactionalRevisionNeedsAttentionAfterRestart) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteNonTransactionalChain(dir_, "modax", 60);
  const std::string yaml = MakeConfig(dir_, {"modax"}, {{"site-a", db.dsn()}});
  std::string orphan;
  {
    SchemadProcess schemad(dir_, yaml, {}, "killed");
    ASSERT_FALSE(schemad.address().empty()) << schemad.Log();
    std::unique_ptr<Client> client = Connect(ClientFor(schemad.address()));
    EventLog log;
    absl::StatusOr<OperationResult> result;
    std::thread upgrade([&] {
      CallOptions call;
      call.on_event = log.Callback();
      result = client->Upgrade("site-a", {}, call);
    });
    ASSERT_TRUE(log.WaitFor(StatementOf("b2", 1), absl::Seconds(30))) << schemad.Log();
    orphan = WaitForSleepingBackend(db);
    ASSERT_FALSE(orphan.empty()) << schemad.Log();
    schemad.Signal(SIGKILL);
    EXPECT_EQ(schemad.Wait(absl::Seconds(30)), 128 + SIGKILL);
    upgrade.join();
    EXPECT_FALSE(result.ok());
    EXPECT_THAT(schemad.Log(), Not(HasSubstr(db.cluster().password)));
  }
  // Half done, and visibly so: t_b2 committed, a1 still the version. The
  // orphaned backend ends by itself: schemad's sessions set
  // client_connection_check_interval, so PostgreSQL notices the lost client
  // within about a second instead of when it next talks to it. The
  // migration lock is free (its connection was idle: its backend exited at once).
  EXPECT_EQ(WaitForRows(testing::AdminDsn(),
                        absl::StrCat("SELECT count(*) FROM pg_stat_activity WHERE pid = ", orphan),
                        Rows{{"0"}}, absl::Seconds(30)),
            (Rows{{"0"}}));
  EXPECT_EQ(VersionRows(db.dsn()), (Rows{{"a1"}}));
  EXPECT_TRUE(TableExists(db.dsn(), "t_b2"));
  EXPECT_FALSE(TableExists(db.dsn(), "t_b2_after"));
  EXPECT_EQ(WaitForRows(testing::AdminDsn(),
                        absl::StrCat("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                     "AND database = (SELECT oid FROM pg_database WHERE datname "
                                     "= '",
                                     db.name(), "')"),
                        Rows{{"0"}}),
            (Rows{{"0"}}));

  SchemadProcess restarted(dir_, yaml, {}, "restarted");
  ASSERT_FALSE(restarted.address().empty()) << restarted.Log();
  std::unique_ptr<Client> client = Connect(ClientFor(restarted.address()));
  ASSERT_OK_AND_ASSIGN(DatabaseStatus status, client->GetStatus("site-a"));
  EXPECT_EQ(status.state, DatabaseStatus::State::kNeedsAttention);
  ASSERT_TRUE(status.needs_attention.has_value());
  EXPECT_EQ(status.needs_attention->revision, "b2");
  EXPECT_EQ(status.needs_attention->statements_done, 1);
  EXPECT_EQ(status.needs_attention->statements_total, 3);
  EXPECT_THAT(client->Upgrade("site-a"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("b2"), HasSubstr("interrupted"))));
  EXPECT_THAT(client->EnsureHead("site-a"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("needs attention")));

  // The operator undoes what ran, and says so.
  testing::Exec(db.dsn(), "DROP TABLE t_b2");
  ASSERT_OK(client->Resolve("site-a", /*applied=*/false).status());
  ASSERT_OK_AND_ASSIGN(status, client->GetStatus("site-a"));
  EXPECT_EQ(status.state, DatabaseStatus::State::kBehind);
  EXPECT_EQ(VersionRows(db.dsn()), (Rows{{"a1"}}));
  EXPECT_THAT(restarted.Log(), Not(HasSubstr(db.cluster().password)));
}

// ------------------------------------------------------- big, quiet fleets

// pools.min_idle_sessions: 0 and idle_session_timeout: a 1,000-site config
// (999 of them unreachable) starts without connecting anywhere, and the one
// site used gives its connection back once it has been idle.
TEST_F(ServerTest, AThousandQuietSitesHoldNoConnection) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 0);
  std::vector<DbSpec> dbs = {{"site-a", db.dsn()}};
  const std::string nowhere =
      absl::StrCat("host=127.0.0.1 port=", testing::UnusedLoopbackPort(), " dbname=x user=u");
  for (int i = 0; i < 999; ++i) {
    dbs.push_back({absl::StrCat("quiet-", i), nowhere});
  }
  absl::StatusOr<std::unique_ptr<server::SchemadServer>> started = StartServer(
      dir_,
      MakeConfig(dir_, {"modax"}, dbs, "pools: {min_idle_sessions: 0, idle_session_timeout: 1s}"));
  ASSERT_TRUE(started.ok()) << started.status();
  server_ = *std::move(started);
  client_ = Connect(ClientFor(server_->address()));
  ASSERT_EQ(server_->registry()->databases().size(), 1000u);
  for (const auto& entry : server_->registry()->databases()) {
    EXPECT_EQ(entry->pool().open(), 0) << entry->name();
  }

  ASSERT_OK(client_->EnsureHead("site-a").status());
  ASSERT_OK_AND_ASSIGN(server::DatabaseEntry * site_a, server_->registry()->GetDatabase("site-a"));
  EXPECT_EQ(site_a->pool().open(), 1);
  EXPECT_TRUE(testing::PollUntil([&] { return site_a->pool().open() == 0; }, absl::Seconds(20),
                                 absl::Milliseconds(20)));
  const std::string backends =
      absl::StrCat("SELECT count(*) FROM pg_stat_activity WHERE datname = '", db.name(),
                   "' AND application_name LIKE 'schemad%'");
  EXPECT_EQ(WaitForRows(testing::AdminDsn(), backends, Rows{{"0"}}), (Rows{{"0"}}));
  // Used again, it connects again.
  ASSERT_OK(client_->EnsureHead("site-a").status());
}

// ----------------------------------------------------------------- metrics

// The body of an HTTP/1.0 GET of `path` on 127.0.0.1:`port`; "" when the
// answer is not 200.
std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  std::string response;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    if (write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buffer[4096];
      for (ssize_t n; (n = read(fd, buffer, sizeof buffer)) > 0;) {
        response.append(buffer, static_cast<size_t>(n));
      }
    }
  }
  close(fd);
  const size_t body = response.find("\r\n\r\n");
  if (!absl::StartsWith(response, "HTTP/1.1 200") && !absl::StartsWith(response, "HTTP/1.0 200")) {
    return "";
  }
  return body == std::string::npos ? "" : response.substr(body + 4);
}

// The value of the series `series` (name and labels exactly as exposed, e.g.
// `schemad_sessions{database="site-a",state="idle"}`) in Prometheus' text
// format; -1 when it is absent.
double Sample(const std::string& exposition, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(exposition, '\n')) {
    if (absl::StartsWith(line, series) && line.size() > series.size() &&
        line[series.size()] == ' ') {
      double value = 0;
      return absl::SimpleAtod(line.substr(series.size() + 1), &value) ? value : -2;
    }
  }
  return -1;
}

class MetricsTest : public ServerTest {
 protected:
  // Serves site-a (`db`) and site-down (nothing listens on its port) with
  // metrics on a free port; the gauges refresh only when a test asks.
  void StartWithMetrics(const TestDatabase& db) {
    dir_.Write("secrets/dev", testing::AdminDsn());
    const std::string down_dsn = absl::StrCat("host=127.0.0.1 port=", testing::UnusedLoopbackPort(),
                                              " dbname=x user=u password=Hunter2-metrics");
    absl::StatusOr<std::unique_ptr<server::SchemadServer>> started = StartServer(
        dir_, MakeConfig(dir_, {"modax"},
                         {{"site-a", db.dsn(), "modax"}, {"site-down", down_dsn, "modax"}},
                         "metrics: {listen: \"127.0.0.1:0\", refresh_interval: 1h}\n"
                         "timeouts: {connect_timeout: 2s}\n"
                         "dev_server: {dsn_file: secrets/dev}"));
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = *std::move(started);
    client_ = Connect(ClientFor(server_->address()));
    ASSERT_GT(server_->metrics_port(), 0);
  }
  std::string Scrape() {
    server_->metrics()->RefreshAll();
    return HttpGet(server_->metrics_port(), "/metrics");
  }

  // A scrape in which `series` has reached `want`, or the last one after 10
  // s. An RPC's duration is recorded when the server lets go of the call,
  // which may be just after the client has its answer.
  std::string ScrapeWhenReached(const std::string& series, double want) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    std::string body = Scrape();
    while (Sample(body, series) < want && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
      body = Scrape();
    }
    return body;
  }
};

TEST_F(MetricsTest, DatabaseGaugesFollowMigrationsAndReachability) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 0);
  StartWithMetrics(db);

  std::string body = Scrape();
  ASSERT_FALSE(body.empty());
  EXPECT_EQ(
      Sample(body,
             R"(schemad_database_pending_revisions{database="site-a",migration_set="modax"})"),
      3);
  EXPECT_EQ(Sample(body, R"(schemad_database_reachable{database="site-a"})"), 1);
  EXPECT_EQ(Sample(body, R"(schemad_database_needs_attention{database="site-a"})"), 0);
  EXPECT_EQ(Sample(body, R"(schemad_database_reachable{database="site-down"})"), 0);
  EXPECT_GT(Sample(body, R"(schemad_database_refreshed_timestamp_seconds{database="site-down"})"),
            1.7e9);
  EXPECT_EQ(Sample(body, R"(schemad_sessions{database="site-down",state="in_use"})"), 0);
  // DSNs are not metrics, whatever they hold.
  EXPECT_THAT(body, Not(HasSubstr("Hunter2-metrics")));
  EXPECT_THAT(body, Not(HasSubstr(db.dsn())));

  ASSERT_OK(client_->EnsureHead("site-a").status());
  body = Scrape();
  EXPECT_EQ(
      Sample(body,
             R"(schemad_database_pending_revisions{database="site-a",migration_set="modax"})"),
      0);
  EXPECT_GE(Sample(body, R"(schemad_sessions{database="site-a",state="idle"})"), 1);
  EXPECT_EQ(Sample(body, R"(schemad_sessions{database="site-a",state="in_use"})"), 0);
}

TEST_F(MetricsTest, OperationsRpcsAndLockWaitsAreCountedByOutcome) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteRevision(dir_, "modax", {"a1", "", "CREATE TABLE t_a1 (id int);", "DROP TABLE t_a1;"});
  Rev broken{"b2", "a1", "CREATE TABLE t_b2 (id int);\nSELECT 1/0;", "DROP TABLE t_b2;"};
  broken.transactional = false;  // its first statement stays: needs attention
  WriteRevision(dir_, "modax", broken);
  StartWithMetrics(db);

  UpgradeRequest to_a1;
  to_a1.target = "a1";
  ASSERT_OK(client_->Upgrade("site-a", to_a1, {}).status());
  EXPECT_FALSE(client_->Upgrade("site-a", {}, {}).ok());  // b2 fails: needs attention
  EXPECT_EQ(client_->GetStatus("site-nowhere").status().code(), absl::StatusCode::kNotFound);
  const std::string body = ScrapeWhenReached(
      R"(schemad_rpc_duration_seconds_count{code="NOT_FOUND",method="/schemad.v1.Schemad/GetStatus"})",
      1);
  ASSERT_FALSE(body.empty());

  EXPECT_EQ(Sample(body, R"(schemad_operations_total{kind="upgrade",outcome="success"})"), 1);
  EXPECT_EQ(Sample(body, R"(schemad_operations_total{kind="upgrade",outcome="failed"})"), 1);
  EXPECT_EQ(Sample(body, R"(schemad_operations_running{kind="upgrade"})"), 0);
  EXPECT_EQ(Sample(body, R"(schemad_operation_duration_seconds_count{kind="upgrade"})"), 2);
  EXPECT_EQ(Sample(body, "schemad_lock_wait_seconds_count"), 2);
  EXPECT_EQ(
      Sample(
          body,
          R"(schemad_rpc_duration_seconds_count{code="OK",method="/schemad.v1.Schemad/Upgrade"})"),
      1);
  EXPECT_EQ(
      Sample(
          body,
          R"(schemad_rpc_duration_seconds_count{code="NOT_FOUND",method="/schemad.v1.Schemad/GetStatus"})"),
      1);
  EXPECT_EQ(Sample(body, R"(schemad_database_needs_attention{database="site-a"})"), 1);
  EXPECT_EQ(
      Sample(body,
             R"(schemad_database_pending_revisions{database="site-a",migration_set="modax"})"),
      1);
}

// schemad_fleet_sites follows a running fleet run site by site, and its
// sites leave the gauge with it; schemad_fleet_sites_done_total keeps their
// outcomes.
TEST_F(MetricsTest, FleetSitesAreGaugedWhileTheRunRunsAndCountedByOutcome) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  // a1 waits for an advisory lock the test holds: site-a stays running.
  WriteRevision(dir_, "modax",
                {"a1", "", "SELECT pg_advisory_xact_lock(4242);\nCREATE TABLE t_a1 (id int);",
                 "DROP TABLE t_a1;"});
  StartWithMetrics(db);
  pqxx::connection holder(db.dsn());
  auto holding = std::make_unique<pqxx::work>(holder);
  holding->exec("SELECT pg_advisory_xact_lock(4242)");

  FleetRequest request;
  request.max_parallel = 2;
  request.continue_on_error = true;
  absl::StatusOr<FleetSummary> summary;
  std::thread run([&] { summary = client_->FleetRun(request); });
  // site-down fails at once (nothing listens); site-a waits on the lock.
  std::string body;
  EXPECT_TRUE(testing::PollUntil([&] {
    body = Scrape();
    return Sample(body, R"(schemad_fleet_sites{state="running"})") == 1 &&
           Sample(body, R"(schemad_fleet_sites{state="failed"})") == 1;
  })) << body;
  EXPECT_EQ(Sample(body, R"(schemad_fleet_sites{state="queued"})"), 0);
  EXPECT_EQ(Sample(body, R"(schemad_fleet_sites{state="succeeded"})"), 0);
  EXPECT_EQ(Sample(body, R"(schemad_fleet_sites_done_total{outcome="failed"})"), 1);
  EXPECT_EQ(Sample(body, R"(schemad_operations_running{kind="fleet"})"), 1);

  holding->abort();
  run.join();
  ASSERT_TRUE(summary.ok()) << summary.status();
  body = Scrape();
  for (const char* state : {"queued", "running", "succeeded", "failed", "cancelled", "skipped"}) {
    EXPECT_EQ(Sample(body, absl::StrCat(R"(schemad_fleet_sites{state=")", state, R"("})")), 0)
        << state;
  }
  EXPECT_EQ(Sample(body, R"(schemad_fleet_sites_done_total{outcome="succeeded"})"), 1);
  EXPECT_EQ(Sample(body, R"(schemad_fleet_sites_done_total{outcome="failed"})"), 1);
  EXPECT_EQ(Sample(body, R"(schemad_fleet_sites_done_total{outcome="skipped"})"), 0);
  EXPECT_EQ(Sample(body, R"(schemad_operations_total{kind="fleet",outcome="failed"})"), 1);
  EXPECT_EQ(VersionRows(db.dsn()), (Rows{{"a1"}}));
}

TEST_F(MetricsTest, AMethodSchemadDoesNotServeIsOneSeries) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 0);
  StartWithMetrics(db);
  auto channel = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  for (const char* method : {"/x.Y/Z1", "/x.Y/Z2", "/schemad.v1.Schemad/Nope"}) {
    grpc::ClientContext context;
    grpc::ByteBuffer response;
    grpc::Status status;
    absl::Notification done;
    grpc::Slice empty("");
    const grpc::ByteBuffer request(&empty, 1);
    stub.UnaryCall(&context, method, {}, &request, &response, [&](grpc::Status s) {
      status = std::move(s);
      done.Notify();
    });
    done.WaitForNotification();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED) << method;
  }
  const std::string body = ScrapeWhenReached(
      R"(schemad_rpc_duration_seconds_count{code="UNIMPLEMENTED",method="other"})", 3);
  EXPECT_EQ(
      Sample(body, R"(schemad_rpc_duration_seconds_count{code="UNIMPLEMENTED",method="other"})"),
      3);
  EXPECT_THAT(body, Not(HasSubstr("/x.Y/")));
  EXPECT_THAT(body, Not(HasSubstr("Nope")));
}

// What deploy/observability's alert rules and dashboard query exists in a
// real scrape, and the scrape passes `promtool check metrics` (Prometheus'
// own linter of the exposition format and naming conventions).
TEST_F(MetricsTest, ShippedRulesAndDashboardNameOnlyExportedMetricsAndTheScrapeLints) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 0);
  StartWithMetrics(db);
  ASSERT_OK(client_->EnsureHead("site-a").status());
  // schemad_database_drift appears with a database's first drift check.
  testing::Exec(db.dsn(), "CREATE INDEX t_a1_hand_made_idx ON t_a1 (id)");
  ASSERT_OK_AND_ASSIGN(DriftResult drift, client_->Drift("site-a"));
  const std::string body = Scrape();
  EXPECT_EQ(Sample(body, R"(schemad_database_drift{database="site-a"})"), 1) << body;
  std::set<std::string> exported;
  for (absl::string_view line : absl::StrSplit(body, '\n')) {
    if (absl::ConsumePrefix(&line, "# TYPE ")) {
      exported.insert(std::string(line.substr(0, line.find(' '))));
    }
  }
  EXPECT_GE(exported.size(), 10u) << body;

  for (const std::string file : {"/deploy/observability/schemad-alerts.yaml",
                                 "/deploy/observability/schemad-dashboard.json"}) {
    std::ifstream in(std::string(SCHEMAD_SOURCE_DIR) + file);
    std::stringstream text;
    text << in.rdbuf();
    ASSERT_FALSE(text.str().empty()) << file;
    std::set<std::string> used;
    for (size_t at = text.str().find("schemad_"); at != std::string::npos;
         at = text.str().find("schemad_", at + 1)) {
      if (at > 0 && (std::isalnum(static_cast<unsigned char>(text.str()[at - 1])) ||
                     text.str()[at - 1] == '_')) {
        continue;
      }
      size_t end = at;
      while (
          end < text.str().size() &&
          (std::islower(static_cast<unsigned char>(text.str()[end])) || text.str()[end] == '_')) {
        ++end;
      }
      std::string name = text.str().substr(at, end - at);
      for (const char* suffix : {"_bucket", "_count", "_sum"}) {
        if (absl::EndsWith(name, suffix) &&
            exported.count(name.substr(0, name.size() - strlen(suffix))) > 0) {
          name.resize(name.size() - strlen(suffix));
        }
      }
      used.insert(name);
    }
    EXPECT_GE(used.size(), 3u) << file;
    for (const std::string& name : used) {
      EXPECT_EQ(exported.count(name), 1u) << file << " uses " << name << ", not in /metrics";
    }
  }

  const std::string scrape_file = dir_.Write("scrape.txt", body);
  const std::string lint = absl::StrCat("promtool check metrics < ", scrape_file, " 2>&1");
  FILE* pipe = popen(lint.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buffer[512];
  for (size_t n; (n = fread(buffer, 1, sizeof buffer, pipe)) > 0;) {
    output.append(buffer, n);
  }
  EXPECT_EQ(pclose(pipe), 0) << output;  // promtool is in deploy/install-deps.sh
}

TEST_F(MetricsTest, APortInUseStopsTheStartNamingTheKey) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 0);
  StartWithMetrics(db);
  const int taken = server_->metrics_port();
  absl::StatusOr<std::unique_ptr<server::SchemadServer>> second =
      StartServer(dir_, MakeConfig(dir_, {"modax"}, {{"site-a", db.dsn(), "modax"}},
                                   absl::StrCat("metrics: {listen: \"127.0.0.1:", taken, "\"}")));
  EXPECT_THAT(second, StatusIs(absl::StatusCode::kUnavailable,
                               AllOf(HasSubstr("metrics.listen"), HasSubstr(absl::StrCat(taken)))));
  // The first server still serves.
  EXPECT_FALSE(Scrape().empty());
}

// ------------------------------------- ports, exposure, config, logs (issue 9)

// The key=value fields of a logfmt line (quoted values unescaped), skipping
// free text: enough to count how many `level=` a line really has.
std::vector<std::pair<std::string, std::string>> LogFields(absl::string_view line) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t i = 0;
  while (i < line.size()) {
    const size_t space = line.find(' ', i);
    const size_t equals = line.find('=', i);
    if (equals == absl::string_view::npos) {
      break;
    }
    if (space != absl::string_view::npos && space < equals) {
      i = space + 1;
      continue;
    }
    std::string key(line.substr(i, equals - i));
    std::string value;
    i = equals + 1;
    if (i < line.size() && line[i] == '"') {
      for (++i; i < line.size() && line[i] != '"'; ++i) {
        if (line[i] == '\\' && i + 1 < line.size()) {
          ++i;
        }
        value.push_back(line[i]);
      }
      ++i;
    } else {
      while (i < line.size() && line[i] != ' ') {
        value.push_back(line[i++]);
      }
    }
    out.emplace_back(std::move(key), std::move(value));
    while (i < line.size() && line[i] == ' ') {
      ++i;
    }
  }
  return out;
}

// Defect (issue 9): gRPC sets SO_REUSEPORT, so a second schemad on a port in
// use started and shared it, and `dbs` answered from either at random.
TEST_F(ServerTest, SecondSchemadOnAPortInUseExitsWithTheStartError) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 0);
  const std::string listen = absl::StrCat("127.0.0.1:", testing::UnusedLoopbackPort());
  SchemadProcess first(dir_, MakeConfig(dir_, {"modax"}, {{"site-a", db.dsn()}}, "", listen));
  ASSERT_FALSE(first.address().empty()) << first.Log();
  TempDir other;
  WriteChain(other, "modax", 0);
  SchemadProcess second(other, MakeConfig(other, {"modax"}, {{"site-b", db.dsn()}}, "", listen));
  EXPECT_EQ(second.Wait(absl::Seconds(30)), 3) << second.Out() << second.Log();
  EXPECT_TRUE(second.address().empty());
  EXPECT_THAT(second.Log(), HasSubstr("cannot listen on " + listen));
  // The first one answers, alone.
  std::unique_ptr<Client> client = Connect(ClientFor(first.address()));
  for (int i = 0; i < 5; ++i) {
    ASSERT_OK_AND_ASSIGN(std::vector<DatabaseInfo> dbs, client->ListDatabases({}));
    ASSERT_EQ(dbs.size(), 1u);
    EXPECT_EQ(dbs[0].name, "site-a");
  }
}

// Defect (issue 9): the shipped examples served admin-for-everyone on all
// interfaces.
TEST_F(ServerTest, UnauthenticatedServerOnAllInterfacesDoesNotStart) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 0);
  const std::string open = MakeConfig(dir_, {"modax"}, {{"site-a", db.dsn()}}, "", "0.0.0.0:0");
  {
    SchemadProcess refused(dir_, open);
    EXPECT_EQ(refused.Wait(absl::Seconds(30)), 2) << refused.Log();
    EXPECT_THAT(refused.Log(),
                AllOf(HasSubstr("listen: refusing to serve 0.0.0.0:0 without authentication"),
                      HasSubstr("insecure_allow_unauthenticated: true")));
  }
  {
    SchemadProcess check(dir_, open, {"--check-config"});
    EXPECT_EQ(check.Wait(absl::Seconds(30)), 2) << check.Log();
  }
  {
    SchemadProcess overridden(dir_, MakeConfig(dir_, {"modax"}, {{"site-a", db.dsn()}}),
                              {"--listen", "0.0.0.0:0"});
    EXPECT_EQ(overridden.Wait(absl::Seconds(30)), 2) << overridden.Log();
    EXPECT_THAT(overridden.Log(), HasSubstr("--listen: refusing to serve 0.0.0.0:0"));
  }
  {
    SchemadProcess allowed(dir_, MakeConfig(dir_, {"modax"}, {{"site-a", db.dsn()}},
                                            "insecure_allow_unauthenticated: true", "0.0.0.0:0"));
    ASSERT_FALSE(allowed.address().empty()) << allowed.Log();
    EXPECT_THAT(allowed.Log(), HasSubstr("authentication is off"));
  }
}

// Defects (issue 9): `--check-config` accepted a DSN whose password libpq
// would mis-parse (and printed nothing wrong), and aborted (SIGABRT after
// 5.6 s) on `pools: {rpc_workers: 100000000}`.
TEST_F(ServerTest, CheckConfigRefusesAmbiguousDsnsAndUnboundedPools) {
  WriteChain(dir_, "modax", 0);
  SchemadProcess dsn(
      dir_,
      MakeConfig(dir_, {"modax"},
                 {{"site-c", "postgresql://modax:kq3/LEAKME+pw=@127.0.0.1:5432/site_c"}}),
      {"--check-config"});
  EXPECT_EQ(dsn.Wait(absl::Seconds(30)), 2) << dsn.Out() << dsn.Log();
  EXPECT_THAT(dsn.Log(),
              AllOf(HasSubstr("databases[0].dsn_file: the DSN of database site-c is not a valid "
                              "URI: unescaped '@' or '/' in the user-info"),
                    Not(HasSubstr("LEAKME")), Not(HasSubstr("kq3"))));
  EXPECT_THAT(dsn.Out(), Not(HasSubstr("LEAKME")));
  const absl::Time start = absl::Now();
  SchemadProcess pools(dir_,
                       MakeConfig(dir_, {"modax"}, {{"site-a", "postgresql://app@127.0.0.1:1/x"}},
                                  "pools: {rpc_workers: 100000000}"),
                       {"--check-config"});
  EXPECT_EQ(pools.Wait(absl::Seconds(30)), 2) << pools.Log();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_THAT(pools.Log(), HasSubstr("pools.rpc_workers: 100000000 is out of range: 1 to 1024"));
}

// Defect (issue 9): logfmt values were written unescaped, so
// `x-schemad-who: x" level=error msg="FORGED` forged fields; and JSON logs.
TEST_F(ServerTest, CallersCannotForgeLogFieldsInEitherFormat) {
  WriteChain(dir_, "modax", 0);
  const std::string forged = "x\" level=error msg=\"FORGED";
  for (const std::string format : {"logfmt", "json"}) {
    SCOPED_TRACE(format);
    TestDatabase db;  // behind, so that EnsureHead runs an operation
    ASSERT_TRUE(db.ok());
    // logfmt is the default: the key is left out for it.
    SchemadProcess schemad(dir_, MakeConfig(dir_, {"modax"}, {{"site-a", db.dsn()}},
                                            format == "json" ? "log_format: json" : ""));
    ASSERT_FALSE(schemad.address().empty()) << schemad.Log();
    ClientOptions options = ClientFor(schemad.address());
    options.who = forged;
    std::unique_ptr<Client> client = Connect(options);
    EXPECT_THAT(client->GetStatus("site-x"), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
    EXPECT_OK(client->EnsureHead("site-a").status());
    client.reset();
    schemad.Signal(SIGTERM);
    ASSERT_EQ(schemad.Wait(absl::Seconds(30)), 0) << schemad.Log();
    const std::string log = schemad.Log();
    int who_lines = 0;
    int lines = 0;
    for (absl::string_view line : absl::StrSplit(log, '\n', absl::SkipEmpty())) {
      SCOPED_TRACE(std::string(line));
      ++lines;
      std::string level;
      std::string who;
      int levels = 0;
      if (format == "json") {
        const nlohmann::json json = nlohmann::json::parse(line, nullptr, false);
        ASSERT_FALSE(json.is_discarded());
        ASSERT_TRUE(json["level"].is_string());
        EXPECT_NE(json["level"], "error");
        levels = 1;
        EXPECT_FALSE(json.contains("field_level"));
        if (json.contains("who")) {
          // The JSON text of the value holds the JSON text of `forged`.
          const std::string encoded = nlohmann::json(forged).dump();
          who = json["who"].dump();
          EXPECT_THAT(who, HasSubstr(encoded.substr(1, encoded.size() - 2)));
          who = forged;
        }
      } else {
        for (const auto& [key, value] : LogFields(line)) {
          EXPECT_NE(key, "msg");
          if (key == "level") {
            ++levels;
            level = value;
          } else if (key == "who") {
            who = value;
          }
        }
      }
      EXPECT_EQ(levels, 1);
      EXPECT_NE(level, "error");
      if (!who.empty()) {
        ++who_lines;
        EXPECT_THAT(who, HasSubstr(forged));  // the value intact, inside its field
      }
    }
    EXPECT_GT(lines, 5);
    EXPECT_GE(who_lines, 2);  // rpc failed, operation accepted
  }
}

// Defect (issue 9): `current` through schemad on a database it cannot use
// retried 11 times over 26 s even when retrying cannot help (bad host,
// database name, password); only a database that is down is retried.
TEST_F(ServerTest, PermanentDatabaseErrorsAreNotRetried) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 0);
  const testing::PgCluster& c = db.cluster();
  ASSERT_OK_AND_ASSIGN(
      server_,
      StartServer(
          dir_, MakeConfig(
                    dir_, {"modax"},
                    {{"no-db", testing::ClusterDsn(c, "no_such_db_x", c.password)},
                     {"no-host", absl::StrCat("postgresql://postgres:", c.password,
                                              "@no-such-host.invalid:5432/x")},
                     {"bad-password", testing::ClusterDsn(c, db.name(), "wrong-password-x")},
                     {"down", absl::StrCat("postgresql://postgres:", c.password,
                                           "@127.0.0.1:", testing::UnusedLoopbackPort(), "/x")}})));
  ClientOptions options = ClientFor(server_->address());
  options.retry.enabled = true;  // as schemactl --server does
  options.retry.initial_backoff = absl::Milliseconds(50);
  options.retry.max_elapsed = absl::Seconds(3);
  std::unique_ptr<Client> client = Connect(options);
  for (const std::string name : {"no-db", "no-host", "bad-password"}) {
    SCOPED_TRACE(name);
    const absl::Time start = absl::Now();
    EXPECT_THAT(client->GetStatus(name),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         AllOf(HasSubstr("database " + name), Not(HasSubstr("attempts")),
                               Not(HasSubstr(c.password)))));
    EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  }
  // A database that is down may come back: that is retried.
  EXPECT_THAT(client->GetStatus("down"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("attempts")));
}

// ------------------------------------------------------- schemactl --server

class RemoteCliTest : public ServerTest {
 protected:
  struct Run {
    int code;
    std::string out;
    std::string err;
  };
  cli::GlobalOptions Global(bool json = false) {
    cli::GlobalOptions global;
    global.json = json;
    global.who = "cli-test";
    return global;
  }
  cli::RemoteOptions Remote(const std::string& database = "site-a") {
    cli::RemoteOptions remote;
    remote.server = server_->address();
    remote.database = database;
    remote.timeout = absl::Seconds(10);
    return remote;
  }
  template <typename Fn>
  Run Capture(Fn fn) {
    std::ostringstream out, err;
    const int code = fn(out, err);
    return {code, out.str(), err.str()};
  }
};

// Issue 14: exit codes mean the same through the server as in direct mode:
// a revision's SQL error is 1 (not 3, "not at head"), a role too low is 1
// (not 5, "cannot connect"), an unknown token is 5 (as a rejected password).
TEST_F(RemoteCliTest, ExitCodesMatchDirectMode) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteRevision(dir_, "modax", {"a1", "", "CREATE TABLE t_a1 (id int);", "DROP TABLE t_a1;"});
  WriteRevision(dir_, "modax", {"b2", "a1", "INSERT INTO missing_table VALUES (1);", "SELECT 1;"});
  dir_.Write("tokens",
             "migrator-token-0123456789 migrator site-a-control\n"
             "admin-token-0123456789abc admin oncall\n");
  StartOver(db, "tokens_file: tokens");
  cli::RemoteOptions migrator = Remote();
  migrator.token = "migrator-token-0123456789";
  Run run = Capture([&](std::ostream& out, std::ostream& err) {
    return cli::RunRemoteEnsureHead(Global(), migrator, {}, out, err);
  });
  EXPECT_EQ(run.code, cli::kExitFailed) << run.err;
  EXPECT_THAT(run.err, HasSubstr("missing_table"));
  run = Capture([&](std::ostream& out, std::ostream& err) {
    cli::EnsureHeadOptions check;
    check.no_apply = true;
    return cli::RunRemoteEnsureHead(Global(), migrator, check, out, err);
  });
  EXPECT_EQ(run.code, cli::kExitNotAtHead) << run.err;

  run = Capture([&](std::ostream& out, std::ostream& err) {
    cli::DowngradeOptions downgrade;
    downgrade.target = "base";
    return cli::RunRemoteDowngrade(Global(), migrator, downgrade, out, err);
  });
  EXPECT_EQ(run.code, cli::kExitFailed) << run.err;
  EXPECT_THAT(run.err, HasSubstr("admin"));

  cli::RemoteOptions stranger = Remote();
  stranger.token = "unknown-token-0123456789";
  run = Capture([&](std::ostream& out, std::ostream& err) {
    return cli::RunRemoteCurrent(Global(), stranger, {}, out, err);
  });
  EXPECT_EQ(run.code, cli::kExitUnavailable) << run.err;
  EXPECT_THAT(run.err, Not(HasSubstr("unknown-token-0123456789")));
}

// Issue 14: Ctrl-C stops watching a streamed operation, not the operation;
// the message names the schemactl commands that follow and cancel it.
TEST_F(RemoteCliTest, CtrlCNamesOpsWatchAndOpsCancel) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 2);
  StartOver(db);
  std::atomic<bool> interrupted{false};
  cli::GlobalOptions global = Global();
  global.cancelled = &interrupted;
  std::thread watcher([&] {
    ASSERT_FALSE(WaitForSleepingBackend(db).empty());
    interrupted = true;
  });
  Run run = Capture([&](std::ostream& out, std::ostream& err) {
    return cli::RunRemoteUpgrade(global, Remote(), cli::UpgradeOptions{}, out, err);
  });
  watcher.join();
  EXPECT_NE(run.code, cli::kExitOk);
  EXPECT_THAT(
      run.err,
      AllOf(HasSubstr("stopped watching operation op-"),
            HasSubstr(absl::StrCat("schemactl --server ", server_->address(), " ops watch op-")),
            HasSubstr(" ops cancel op-")));
  // The operation went on without its watcher.
  EXPECT_EQ(WaitForRows(db.dsn(), "SELECT version_num FROM alembic_version", Rows{{"c3"}}),
            (Rows{{"c3"}}));
}

TEST_F(RemoteCliTest, DatabaseVerbsThroughTheServer) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 0);
  StartOver(db);
  Run run = Capture([&](std::ostream& out, std::ostream& err) {
    cli::CurrentOptions current;
    current.check_heads = true;
    return cli::RunRemoteCurrent(Global(), Remote(), current, out, err);
  });
  EXPECT_EQ(run.code, cli::kExitNotAtHead) << run.err;
  run = Capture([&](std::ostream& out, std::ostream& err) {
    cli::EnsureHeadOptions check;
    check.no_apply = true;
    return cli::RunRemoteEnsureHead(Global(), Remote(), check, out, err);
  });
  EXPECT_EQ(run.code, cli::kExitNotAtHead) << run.err;
  run = Capture([&](std::ostream& out, std::ostream& err) {
    cli::UpgradeOptions upgrade;
    upgrade.target = "b2";
    return cli::RunRemoteUpgrade(Global(), Remote(), upgrade, out, err);
  });
  EXPECT_EQ(run.code, cli::kExitOk) << run.err;
  EXPECT_THAT(run.out, HasSubstr("Upgraded 2 revisions"));
  EXPECT_THAT(run.err, HasSubstr("operation op-"));
  run = Capture([&](std::ostream& out, std::ostream& err) {
    return cli::RunRemoteEnsureHead(Global(true), Remote(), {}, out, err);
  });
  EXPECT_EQ(run.code, cli::kExitOk) << run.err;
  EXPECT_THAT(run.out, AllOf(HasSubstr("\"applied\":true"), HasSubstr("\"heads_after\":[\"c3\"]")));
  EXPECT_EQ(VersionRows(db.dsn()), (Rows{{"c3"}}));
  run = Capture([&](std::ostream& out, std::ostream& err) {
    return cli::RunRemoteDbs(Global(), Remote(""), {}, out, err);
  });
  EXPECT_EQ(run.code, cli::kExitOk) << run.err;
  EXPECT_THAT(run.out, AllOf(HasSubstr("site-a"), HasSubstr("at head"), HasSubstr("c3")));
  run = Capture([&](std::ostream& out, std::ostream& err) {
    cli::OpsOptions ops;
    ops.action = "list";
    return cli::RunRemoteOps(Global(true), Remote(""), ops, out, err);
  });
  EXPECT_EQ(run.code, cli::kExitOk) << run.err;
  EXPECT_THAT(run.out, AllOf(HasSubstr("\"operation\":\"upgrade\""),
                             HasSubstr("\"operation\":\"ensure-head\""),
                             HasSubstr("\"state\":\"succeeded\"")));
  // History records the CLI's --who next to the caller.
  run = Capture([&](std::ostream& out, std::ostream& err) {
    cli::HistoryOptions history;
    history.log = true;
    return cli::RunRemoteHistory(Global(), Remote(), history, out, err);
  });
  EXPECT_EQ(run.code, cli::kExitOk) << run.err;
  EXPECT_THAT(run.out, HasSubstr("(cli-test)"));
}

// Issue 14: on a terminal, a revision's progress line through the server
// shows its message, as in direct mode (the messages ride in the plan of
// OperationStarted).
TEST_F(RemoteCliTest, LiveProgressShowsRevisionMessages) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 0);
  StartOver(db);
  cli::GlobalOptions global = Global();
  global.progress_is_terminal = true;
  global.terminal_width = 120;
  const Run run = Capture([&](std::ostream& out, std::ostream& err) {
    return cli::RunRemoteUpgrade(global, Remote(), {}, out, err);
  });
  EXPECT_EQ(run.code, cli::kExitOk) << run.err;
  EXPECT_THAT(run.err, AllOf(HasSubstr("[1/3] a1 revision a1"), HasSubstr("[3/3] c3 revision c3")));
}

// Issue 14: `history`, `history -v`, `current` and `current -v` through the
// server print what direct mode prints on the same database and directory
// (the log stays `history --log`).
TEST_F(RemoteCliTest, HistoryAndCurrentPrintAsInDirectMode) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 0);
  StartOver(db);
  Run run = Capture([&](std::ostream& out, std::ostream& err) {
    cli::UpgradeOptions upgrade;
    upgrade.target = "b2";
    return cli::RunRemoteUpgrade(Global(), Remote(), upgrade, out, err);
  });
  ASSERT_EQ(run.code, cli::kExitOk) << run.err;
  cli::GlobalOptions direct_global = Global();
  direct_global.dsn = db.dsn();
  direct_global.dir = dir_.path() + "/modax";
  for (const bool verbose : {false, true}) {
    SCOPED_TRACE(verbose ? "-v" : "plain");
    cli::HistoryOptions history;
    history.verbose = verbose;
    const Run remote = Capture([&](std::ostream& out, std::ostream& err) {
      return cli::RunRemoteHistory(Global(), Remote(), history, out, err);
    });
    const Run direct = Capture([&](std::ostream& out, std::ostream& err) {
      return cli::RunHistory(direct_global, history, out, err);
    });
    ASSERT_EQ(remote.code, cli::kExitOk) << remote.err;
    ASSERT_EQ(direct.code, cli::kExitOk) << direct.err;
    EXPECT_EQ(remote.out, direct.out);
    EXPECT_THAT(remote.out, AllOf(HasSubstr("c3"), HasSubstr(verbose ? "Rev: b2" : "[pending]")));

    cli::CurrentOptions current;
    current.verbose = verbose;
    const Run remote_current = Capture([&](std::ostream& out, std::ostream& err) {
      return cli::RunRemoteCurrent(Global(), Remote(), current, out, err);
    });
    const Run direct_current = Capture([&](std::ostream& out, std::ostream& err) {
      return cli::RunCurrent(direct_global, current, out, err);
    });
    ASSERT_EQ(remote_current.code, cli::kExitOk) << remote_current.err;
    EXPECT_EQ(remote_current.out, direct_current.out);
    EXPECT_THAT(remote_current.out, HasSubstr("b2"));
  }
}

TEST_F(RemoteCliTest, ExitCodes) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteChain(dir_, "modax", 0);
  StartOver(db);
  const auto current = [&](const cli::RemoteOptions& remote) {
    return Capture([&](std::ostream& out, std::ostream& err) {
      return cli::RunRemoteCurrent(Global(), remote, {}, out, err);
    });
  };
  EXPECT_EQ(current(Remote("site-x")).code, cli::kExitFailed);
  EXPECT_EQ(current(Remote("")).code, cli::kExitUsage);
  cli::RemoteOptions nowhere = Remote();
  nowhere.server = absl::StrCat("127.0.0.1:", testing::UnusedLoopbackPort());
  nowhere.timeout = absl::Milliseconds(500);
  Run run = current(nowhere);
  EXPECT_EQ(run.code, cli::kExitUnavailable) << run.err;
}

// ------------------------------------------------------------------ reload

class ReloadTest : public ServerTest {
 protected:
  // Writes `yaml` to schemad.yaml and serves it; Reload reads that file again.
  void StartFromFile(const std::string& yaml, const std::string& token = "") {
    const std::string path = dir_.Write("schemad.yaml", yaml);
    absl::StatusOr<server::LoadedConfig> config = server::LoadConfigFile(path);
    ASSERT_TRUE(config.ok()) << config.status();
    server::ServerOptions options;
    options.config_path = path;
    if (std::getenv("SCHEMAD_TEST_LOG") != nullptr) {
      options.log_sinks.push_back(std::make_shared<spdlog::sinks::stderr_sink_mt>());
      options.log_level = spdlog::level::debug;
    }
    absl::StatusOr<std::unique_ptr<server::SchemadServer>> started =
        server::SchemadServer::Start(*std::move(config), options);
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = *std::move(started);
    client_ = WithToken(token);
  }
  // Rewrites schemad.yaml and asks the server to reload it.
  absl::StatusOr<ReloadResult> Reload(const std::string& yaml) {
    dir_.Write("schemad.yaml", yaml);
    return client_->Reload();
  }
  std::vector<std::string> Heads() {
    absl::StatusOr<MigrationSetInfo> set = client_->DescribeMigrationSet("modax");
    EXPECT_TRUE(set.ok()) << set.status();
    return set.ok() ? set->heads : std::vector<std::string>{};
  }
};

constexpr char kAdminToken[] = "admin-token-0123456789abc";

TEST_F(ReloadTest, AddsARevisionADatabaseAndATokenWithoutARestart) {
  TestDatabase a;
  TestDatabase b;
  ASSERT_TRUE(a.ok() && b.ok());
  WriteRevision(dir_, "modax", {"a1", "", "CREATE TABLE t_a1 (id int);"});
  dir_.Write("tokens", absl::StrCat(kAdminToken, " admin oncall\n"));
  ASSERT_NO_FATAL_FAILURE(StartFromFile(
      MakeConfig(dir_, {"modax"}, {{"site-a", a.dsn()}}, "tokens_file: tokens"), kAdminToken));
  ASSERT_OK(client_->EnsureHead("site-a").status());
  std::unique_ptr<Client> newcomer = WithToken("newcomer-token-0123456789");
  EXPECT_THAT(newcomer->GetStatus("site-a"),
              StatusIs(absl::StatusCode::kUnauthenticated, ::testing::_));

  // On disk only: nothing changes until the reload.
  WriteRevision(dir_, "modax", {"b2", "a1", "CREATE TABLE t_b2 (id int);"});
  dir_.Write("tokens", absl::StrCat(kAdminToken, " admin oncall\n",
                                    "newcomer-token-0123456789 reader newcomer\n"));
  const std::string two_sites = MakeConfig(
      dir_, {"modax"}, {{"site-a", a.dsn()}, {"site-b", b.dsn()}}, "tokens_file: tokens");
  EXPECT_EQ(Heads(), std::vector<std::string>{"a1"});
  EXPECT_THAT(client_->GetStatus("site-b"), StatusIs(absl::StatusCode::kNotFound, ::testing::_));

  ASSERT_OK_AND_ASSIGN(ReloadResult reloaded, Reload(two_sites));
  EXPECT_EQ(reloaded.generation, 1);
  EXPECT_THAT(reloaded.databases_added, ElementsAre("site-b"));
  EXPECT_TRUE(reloaded.databases_removed.empty());
  EXPECT_THAT(reloaded.migration_sets_changed, ElementsAre("modax"));
  EXPECT_EQ(reloaded.databases, 2);
  EXPECT_EQ(reloaded.tokens, 2);

  EXPECT_EQ(Heads(), std::vector<std::string>{"b2"});
  ASSERT_OK_AND_ASSIGN(DatabaseStatus status, newcomer->GetStatus("site-a"));
  EXPECT_EQ(status.pending, 1);
  ASSERT_OK_AND_ASSIGN(EnsureHeadResult applied, client_->EnsureHead("site-a"));
  EXPECT_EQ(applied.heads, std::vector<std::string>{"b2"});
  ASSERT_OK(client_->EnsureHead("site-b").status());
  EXPECT_EQ(VersionRows(a.dsn()), (Rows{{"b2"}}));
  EXPECT_EQ(VersionRows(b.dsn()), (Rows{{"b2"}}));
  // A reload that changes nothing keeps the warm pool of site-a.
  server::SessionPool* pool_a = &(*server_->registry()->GetDatabase("site-a"))->pool();
  ASSERT_OK_AND_ASSIGN(ReloadResult again, client_->Reload());
  EXPECT_EQ(again.generation, 2);
  EXPECT_TRUE(again.migration_sets_changed.empty());
  EXPECT_EQ(&(*server_->registry()->GetDatabase("site-a"))->pool(), pool_a);
}

TEST_F(ReloadTest, ARemovedDatabaseIsNotServedButItsRunningUpgradeFinishes) {
  TestDatabase a;
  TestDatabase b;
  ASSERT_TRUE(a.ok() && b.ok());
  WriteChain(dir_, "modax", 2);
  ASSERT_NO_FATAL_FAILURE(
      StartFromFile(MakeConfig(dir_, {"modax"}, {{"site-a", a.dsn()}, {"site-b", b.dsn()}})));
  absl::StatusOr<OperationResult> upgraded = absl::UnknownError("not run");
  std::thread upgrade([&] {
    std::unique_ptr<Client> own = WithToken("");
    upgraded = own->Upgrade("site-a");
  });
  ASSERT_NE(WaitForSleepingBackend(a), "");  // b2 runs on site-a
  ASSERT_OK_AND_ASSIGN(ReloadResult reloaded,
                       Reload(MakeConfig(dir_, {"modax"}, {{"site-b", b.dsn()}})));
  EXPECT_THAT(reloaded.databases_removed, ElementsAre("site-a"));
  EXPECT_THAT(client_->GetStatus("site-a"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("site-a")));
  EXPECT_THAT(client_->Upgrade("site-a"), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  upgrade.join();
  ASSERT_TRUE(upgraded.ok()) << upgraded.status();
  EXPECT_EQ(VersionRows(a.dsn()), (Rows{{"c3"}}));
  // Its connections close once the upgrade is done.
  EXPECT_TRUE(testing::PollUntil(
      [&] {
        return Query(testing::AdminDsn(),
                     absl::StrCat("SELECT count(*) FROM pg_stat_activity WHERE datname = '",
                                  a.name(), "' AND application_name LIKE 'schemad%'")) ==
               Rows{{"0"}};
      },
      absl::Seconds(10), absl::Milliseconds(50)));
  ASSERT_OK(client_->EnsureHead("site-b").status());
}

TEST_F(ReloadTest, ABrokenConfigurationIsRefusedNamingWhatAndTheRunningOneKeepsServing) {
  TestDatabase a;
  ASSERT_TRUE(a.ok());
  WriteRevision(dir_, "modax", {"a1", "", "CREATE TABLE t_a1 (id int);"});
  const std::string good = MakeConfig(dir_, {"modax"}, {{"site-a", a.dsn()}});
  ASSERT_NO_FATAL_FAILURE(StartFromFile(good));
  const auto still_serving = [&] {
    EXPECT_EQ(Heads(), std::vector<std::string>{"a1"});
    EXPECT_OK(client_->GetStatus("site-a").status());
  };
  EXPECT_THAT(Reload("databases: [\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("schemad.yaml")));
  still_serving();
  EXPECT_THAT(Reload(MakeConfig(dir_, {"modax"}, {{"site-a", a.dsn(), "nosuchset"}})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("databases[0].migration_set"), HasSubstr("nosuchset"))));
  still_serving();
  EXPECT_THAT(Reload(MakeConfig(dir_, {"modax"}, {{"site-a", a.dsn()}}, "", "127.0.0.1:1")),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("listen cannot change on reload; restart schemad")));
  still_serving();
  dir_.Write("modax/b2_broken.sql", "-- revision: b2\n-- revises: a1\nno upgrade section here\n");
  EXPECT_THAT(Reload(good),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("migration_sets[0] (modax)"), HasSubstr("b2_broken.sql"))));
  still_serving();
  // `schemactl --server ADDR reload`: the server's error, a failing exit code.
  cli::GlobalOptions global;
  cli::RemoteOptions remote;
  remote.server = server_->address();
  remote.timeout = absl::Seconds(10);
  std::ostringstream out, err;
  EXPECT_EQ(cli::RunRemoteReload(global, remote, out, err), cli::kExitFailed);
  EXPECT_THAT(err.str(), HasSubstr("b2_broken.sql"));
  still_serving();

  std::filesystem::remove(dir_.path() + "/modax/b2_broken.sql");
  std::ostringstream reloaded_out, reloaded_err;
  EXPECT_EQ(cli::RunRemoteReload(global, remote, reloaded_out, reloaded_err), cli::kExitOk)
      << reloaded_err.str();
  EXPECT_THAT(reloaded_out.str(), HasSubstr("Reloaded (generation 1)"));  // refusals not counted
}

TEST_F(ReloadTest, ReloadIsForAdminsOnly) {
  TestDatabase a;
  ASSERT_TRUE(a.ok());
  WriteRevision(dir_, "modax", {"a1", "", "SELECT 1;"});
  dir_.Write("tokens",
             absl::StrCat(kAdminToken, " admin oncall\nmigrator-token-0123456789 migrator ci\n"));
  ASSERT_NO_FATAL_FAILURE(StartFromFile(
      MakeConfig(dir_, {"modax"}, {{"site-a", a.dsn()}}, "tokens_file: tokens"), kAdminToken));
  EXPECT_THAT(WithToken("migrator-token-0123456789")->Reload(),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("admin")));
  EXPECT_THAT(WithToken("")->Reload(), StatusIs(absl::StatusCode::kUnauthenticated, ::testing::_));
  EXPECT_OK(client_->Reload().status());
}

TEST_F(ReloadTest, ReloadsAreCountedAndGaugesFollowTheDatabasesOnTheScrape) {
  TestDatabase a;
  TestDatabase b;
  ASSERT_TRUE(a.ok() && b.ok());
  WriteRevision(dir_, "modax", {"a1", "", "SELECT 1;"});
  const std::string metrics = "metrics: {listen: \"127.0.0.1:0\", refresh_interval: 1h}";
  ASSERT_NO_FATAL_FAILURE(
      StartFromFile(MakeConfig(dir_, {"modax"}, {{"site-a", a.dsn()}}, metrics)));
  std::string body = HttpGet(server_->metrics_port(), "/metrics");
  EXPECT_THAT(body, HasSubstr("schemad_config_reload_total{outcome=\"success\"} 0\n"));
  EXPECT_THAT(body, HasSubstr("schemad_config_reload_total{outcome=\"failure\"} 0\n"));

  EXPECT_FALSE(Reload("databases: [\n").ok());
  ASSERT_OK(Reload(MakeConfig(dir_, {"modax"}, {{"site-b", b.dsn()}}, metrics)).status());
  server_->metrics()->RefreshAll();
  body = HttpGet(server_->metrics_port(), "/metrics");
  EXPECT_THAT(body, HasSubstr("schemad_config_reload_total{outcome=\"success\"} 1\n"));
  EXPECT_THAT(body, HasSubstr("schemad_config_reload_total{outcome=\"failure\"} 1\n"));
  EXPECT_THAT(body, HasSubstr("schemad_database_reachable{database=\"site-b\"} 1\n"));
  EXPECT_THAT(body, Not(HasSubstr("database=\"site-a\"")));
}

TEST_F(ReloadTest, SighupReloadsTheSchemadProcessAndTellsSystemd) {
  TestDatabase a;
  ASSERT_TRUE(a.ok());
  WriteRevision(dir_, "modax", {"a1", "", "SELECT 1;"});
  NotifySocket notify(dir_.path() + "/notify");
  ASSERT_EQ(setenv("NOTIFY_SOCKET", notify.path().c_str(), 1), 0);
  const std::string yaml = MakeConfig(dir_, {"modax"}, {{"site-a", a.dsn()}});
  SchemadProcess schemad(dir_, yaml);
  unsetenv("NOTIFY_SOCKET");
  ASSERT_FALSE(schemad.address().empty()) << schemad.Log();
  EXPECT_THAT(notify.Next(absl::Seconds(30)), HasSubstr("READY=1\n"));
  client_ = Connect(ClientFor(schemad.address()));

  WriteRevision(dir_, "modax", {"b2", "a1", "SELECT 2;"});
  schemad.Signal(SIGHUP);
  const std::string reloading = notify.Next(absl::Seconds(30));
  EXPECT_THAT(reloading, HasSubstr("RELOADING=1\n"));
  EXPECT_THAT(reloading, HasSubstr("MONOTONIC_USEC="));
  EXPECT_THAT(notify.Next(absl::Seconds(30)),
              AllOf(HasSubstr("READY=1\n"), HasSubstr("generation 1")));
  EXPECT_EQ(Heads(), std::vector<std::string>{"b2"});

  dir_.Write("schemad.yaml", "databases: [\n");  // SchemadProcess's config file
  schemad.Signal(SIGHUP);
  EXPECT_THAT(notify.Next(absl::Seconds(30)), HasSubstr("RELOADING=1\n"));
  EXPECT_THAT(notify.Next(absl::Seconds(30)), HasSubstr("reload FAILED"));
  EXPECT_THAT(schemad.Log(), HasSubstr("configuration reload failed"));
  EXPECT_EQ(Heads(), std::vector<std::string>{"b2"});  // still serving
  schemad.Signal(SIGTERM);
  EXPECT_EQ(schemad.Wait(absl::Seconds(30)), 0) << schemad.Log();
}

// `watch: true` on the set of `yaml` (MakeConfig's "modax").
std::string Watched(const std::string& yaml) {
  return absl::StrReplaceAll(yaml, {{"directory: modax}", "directory: modax, watch: true}"}});
}

// A revision file written into a watched set's directory is served without
// SIGHUP or Reload; a half-written one is refused (counted, logged) and the
// running configuration kept, and the finished file is then picked up.
TEST_F(ReloadTest, AWatchedSetReloadsWhenItsDirectoryChangesAndSurvivesAHalfWrittenFile) {
  TestDatabase a;
  ASSERT_TRUE(a.ok());
  WriteRevision(dir_, "modax", {"a1", "", "CREATE TABLE t_a1 (id int);"});
  const std::string metrics = "metrics: {listen: \"127.0.0.1:0\", refresh_interval: 1h}";
  ASSERT_NO_FATAL_FAILURE(
      StartFromFile(Watched(MakeConfig(dir_, {"modax"}, {{"site-a", a.dsn()}}, metrics))));
  ASSERT_OK(client_->EnsureHead("site-a").status());
  const auto counted = [&](const std::string& outcome, int n) {
    return absl::StrContains(
        HttpGet(server_->metrics_port(), "/metrics"),
        absl::StrCat("schemad_config_reload_total{outcome=\"", outcome, "\"} ", n, "\n"));
  };
  const auto pending = [&] {
    absl::StatusOr<DatabaseStatus> status = client_->GetStatus("site-a");
    return status.ok() ? status->pending : -1;
  };

  WriteRevision(dir_, "modax", {"b2", "a1", "CREATE TABLE t_b2 (id int);"});
  ASSERT_TRUE(testing::PollUntil([&] { return Heads() == std::vector<std::string>{"b2"}; }));
  EXPECT_EQ(pending(), 1);
  EXPECT_TRUE(testing::PollUntil([&] { return counted("success", 1); }));

  // What a sync caught mid-write leaves: the file cut inside its header
  // (no `-- +upgrade` yet).
  dir_.Write("modax/c3.sql", "-- revision: c3\n-- revises: b");
  ASSERT_TRUE(testing::PollUntil([&] { return counted("failure", 1); }));
  EXPECT_EQ(Heads(), std::vector<std::string>{"b2"});  // still serving
  EXPECT_EQ(pending(), 1);

  WriteRevision(dir_, "modax", {"c3", "b2", "CREATE TABLE t_c3 (id int);"});
  ASSERT_TRUE(testing::PollUntil([&] { return Heads() == std::vector<std::string>{"c3"}; }));
  EXPECT_EQ(pending(), 2);
  EXPECT_TRUE(testing::PollUntil([&] { return counted("success", 2); }));
  ASSERT_OK_AND_ASSIGN(EnsureHeadResult applied, client_->EnsureHead("site-a"));
  EXPECT_EQ(applied.heads, std::vector<std::string>{"c3"});
}

// The watch set follows reloads: a set that loses `watch` is not reloaded
// on a change any more, one that gains it is.
TEST_F(ReloadTest, TheWatchedDirectoriesFollowTheReloadedConfiguration) {
  TestDatabase a;
  ASSERT_TRUE(a.ok());
  WriteRevision(dir_, "modax", {"a1", "", "SELECT 1;"});
  const std::string unwatched = MakeConfig(dir_, {"modax"}, {{"site-a", a.dsn()}});
  ASSERT_NO_FATAL_FAILURE(StartFromFile(unwatched));
  WriteRevision(dir_, "modax", {"b2", "a1", "SELECT 2;"});
  // Watching from this reload on (it loads b2 itself).
  ASSERT_OK_AND_ASSIGN(ReloadResult watching, Reload(Watched(unwatched)));
  EXPECT_EQ(watching.generation, 1);
  EXPECT_EQ(Heads(), std::vector<std::string>{"b2"});
  WriteRevision(dir_, "modax", {"c3", "b2", "SELECT 3;"});
  ASSERT_TRUE(testing::PollUntil([&] { return Heads() == std::vector<std::string>{"c3"}; }));

  // Not watched any more: d4 is not served within four settle times (the
  // watcher would have reloaded after one), only after a reload by hand.
  ASSERT_OK_AND_ASSIGN(ReloadResult unwatching, Reload(unwatched));
  WriteRevision(dir_, "modax", {"d4", "c3", "SELECT 4;"});
  EXPECT_FALSE(testing::PollUntil([&] { return Heads() == std::vector<std::string>{"d4"}; },
                                  absl::Seconds(2)));
  ASSERT_OK_AND_ASSIGN(ReloadResult by_hand, client_->Reload());
  EXPECT_EQ(by_hand.generation, unwatching.generation + 1);
  EXPECT_EQ(Heads(), std::vector<std::string>{"d4"});
}

// The schemad binary: --check-config accepts `watch` and refuses a value
// that is not a boolean, naming the key; a running schemad serves a
// revision written into a watched directory without a signal and stops
// cleanly (its watcher thread included) on SIGTERM.
TEST_F(ReloadTest, SchemadWatchesASetWithoutASignalAndCheckConfigValidatesWatch) {
  TestDatabase a;
  ASSERT_TRUE(a.ok());
  WriteRevision(dir_, "modax", {"a1", "", "SELECT 1;"});
  const std::string yaml = Watched(MakeConfig(dir_, {"modax"}, {{"site-a", a.dsn()}}));
  {
    SchemadProcess check(dir_, yaml, {"--check-config"}, "check");
    EXPECT_EQ(check.Wait(absl::Seconds(30)), 0) << check.Log();
    EXPECT_THAT(check.Out(), HasSubstr("configuration OK"));
  }
  {
    SchemadProcess bad(dir_, absl::StrReplaceAll(yaml, {{"watch: true", "watch: often"}}),
                       {"--check-config"}, "bad");
    EXPECT_EQ(bad.Wait(absl::Seconds(30)), 2) << bad.Log();
    EXPECT_THAT(bad.Log(), HasSubstr("migration_sets[0].watch: expected true or false, got "
                                     "\"often\""));
  }
  SchemadProcess schemad(dir_, yaml);
  ASSERT_FALSE(schemad.address().empty()) << schemad.Log();
  client_ = Connect(ClientFor(schemad.address()));
  WriteRevision(dir_, "modax", {"b2", "a1", "SELECT 2;"});
  ASSERT_TRUE(testing::PollUntil([&] { return Heads() == std::vector<std::string>{"b2"}; }))
      << schemad.Log();
  EXPECT_THAT(schemad.Log(), HasSubstr("migration set directory changed, reloading"));
  schemad.Signal(SIGTERM);
  EXPECT_EQ(schemad.Wait(absl::Seconds(30)), 0) << schemad.Log();
}

}  // namespace
}  // namespace schemad

// ------------------------------------------------------------------- drift

namespace schemad {
namespace {

// Issue 12: Drift through the server, its trace in GetStatus and
// ListDatabases, and fleet drift, with the test cluster as the dev server.
class DriftServerTest : public ::testing::Test {
 protected:
  void Start(const std::string& extra) {
    WriteRevision(dir_, "modax",
                  {"a1", "", "CREATE TABLE devices (id int PRIMARY KEY, name text DEFAULT 'x');",
                   "DROP TABLE devices;"});
    Rev b2{"b2", "a1", "CREATE INDEX CONCURRENTLY devices_name_idx ON devices (name);",
           "DROP INDEX devices_name_idx;"};
    b2.transactional = false;
    WriteRevision(dir_, "modax", b2);
    dir_.Write("secrets/dev", testing::AdminDsn());
    absl::StatusOr<std::unique_ptr<server::SchemadServer>> started = StartServer(
        dir_, MakeConfig(dir_, {"modax"}, {{"site-a", a_.dsn()}, {"site-b", b_.dsn()}}, extra));
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = *std::move(started);
    client_ = Connect(ClientFor(server_->address()));
    ASSERT_NE(client_, nullptr);
    ASSERT_TRUE(client_->Upgrade("site-a").ok());
    ASSERT_TRUE(client_->Upgrade("site-b").ok());
  }

  TempDir dir_;
  TestDatabase a_, b_;
  std::unique_ptr<server::SchemadServer> server_;
  std::unique_ptr<Client> client_;
};

TEST_F(DriftServerTest, WithoutDevServerDriftSaysHowToConfigureOne) {
  Start("");
  EXPECT_THAT(client_->Drift("site-a"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("dev_server")));
  FleetRequest fleet;
  fleet.action = FleetRequest::Action::kDrift;
  EXPECT_THAT(client_->FleetRun(fleet),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("dev_server")));
  EXPECT_THAT(client_->Drift("no-such-site"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no-such-site")));
}

TEST_F(DriftServerTest, DriftIsNamedShownInStatusRepairedAndCheckedAcrossTheFleet) {
  Start("dev_server: {dsn_file: secrets/dev}");
  ASSERT_OK_AND_ASSIGN(DriftResult clean, client_->Drift("site-a"));
  EXPECT_FALSE(clean.drift);
  EXPECT_THAT(clean.rows, ElementsAre("b2"));
  EXPECT_TRUE(clean.differences.empty());
  EXPECT_EQ(clean.repair_sql, "");
  ASSERT_OK_AND_ASSIGN(DatabaseStatus status_a, client_->GetStatus("site-a"));
  ASSERT_TRUE(status_a.drift.has_value());
  EXPECT_FALSE(status_a.drift->drift);
  EXPECT_GT(status_a.drift->checked, absl::Now() - absl::Minutes(5));
  ASSERT_OK_AND_ASSIGN(DatabaseStatus status_b, client_->GetStatus("site-b"));
  EXPECT_FALSE(status_b.drift.has_value());  // never checked

  testing::Exec(b_.dsn(),
                "CREATE INDEX hand_made_idx ON devices (id, name);"
                "ALTER TABLE devices ALTER COLUMN name DROP DEFAULT");
  ASSERT_OK_AND_ASSIGN(DriftResult drifted, client_->Drift("site-b"));
  EXPECT_TRUE(drifted.drift);
  std::vector<std::string> lines;
  for (const SchemaDifference& d : drifted.differences) {
    lines.push_back(absl::StrCat(ToString(d.kind), " ", d.object_kind, " ", d.object,
                                 d.kind == SchemaDifference::Kind::kChanged ? ": " : "",
                                 d.kind == SchemaDifference::Kind::kChanged ? d.description : ""));
  }
  EXPECT_THAT(lines, ::testing::UnorderedElementsAre(
                         "extra index public.hand_made_idx",
                         HasSubstr("changed column public.devices.name: default")));
  ASSERT_OK_AND_ASSIGN(std::vector<DatabaseInfo> listed,
                       client_->ListDatabases(ListDatabasesRequest{{}, true}));
  ASSERT_EQ(listed.size(), 2u);
  ASSERT_TRUE(listed[1].status.has_value() && listed[1].status->drift.has_value());
  EXPECT_TRUE(listed[1].status->drift->drift);
  EXPECT_EQ(listed[1].status->drift->differences, 2);

  // Fleet drift checks every site (a drifted one does not stop the others)
  // and names the objects.
  FleetRequest fleet;
  fleet.action = FleetRequest::Action::kDrift;
  fleet.max_parallel = 1;
  ASSERT_OK_AND_ASSIGN(FleetSummary summary, client_->FleetRun(fleet));
  ASSERT_EQ(summary.sites.size(), 2u);
  EXPECT_EQ(summary.sites[0].outcome, FleetSiteResult::Outcome::kSucceeded);
  EXPECT_EQ(summary.sites[1].outcome, FleetSiteResult::Outcome::kFailed);
  EXPECT_THAT(summary.sites[1].status.message(),
              AllOf(HasSubstr("drift: 2 object(s) of site-b"),
                    HasSubstr("extra index public.hand_made_idx")));

  // The repair DDL takes the site back; its status follows the new check.
  testing::Exec(b_.dsn(), drifted.repair_sql);
  ASSERT_OK_AND_ASSIGN(DriftResult repaired, client_->Drift("site-b"));
  EXPECT_FALSE(repaired.drift) << repaired.differences.size();
  ASSERT_OK_AND_ASSIGN(status_b, client_->GetStatus("site-b"));
  ASSERT_TRUE(status_b.drift.has_value());
  EXPECT_FALSE(status_b.drift->drift);
  // Moving the site's rows makes the last check stale: not shown.
  DowngradeRequest to_a1;
  to_a1.target = "a1";
  ASSERT_TRUE(client_->Downgrade("site-b", to_a1).ok());
  ASSERT_OK_AND_ASSIGN(status_b, client_->GetStatus("site-b"));
  EXPECT_FALSE(status_b.drift.has_value());

  // The dev server's connection dies (a restart, an idle drop): the next
  // check that needs a build (a1 was never built) reopens it.
  EXPECT_EQ(Query(testing::AdminDsn(),
                  absl::StrCat("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE application_name = 'schemad-dev-",
                               getpid(), "'")),
            (Rows{{"1"}}));
  ASSERT_OK_AND_ASSIGN(DriftResult after_restart, client_->Drift("site-b"));
  EXPECT_FALSE(after_restart.drift);
  EXPECT_THAT(after_restart.rows, ElementsAre("a1"));
}

TEST_F(DriftServerTest, SchemactlDriftAndFleetDriftThroughTheServer) {
  Start("dev_server: {dsn_file: secrets/dev}");
  testing::Exec(b_.dsn(), "CREATE TABLE scratch_notes (note text)");
  cli::GlobalOptions global;
  cli::RemoteOptions remote;
  remote.server = server_->address();
  remote.timeout = absl::Seconds(30);
  auto run = [&](const std::function<int(std::ostream&, std::ostream&)>& fn) {
    std::ostringstream out, err;
    const int code = fn(out, err);
    return std::make_tuple(code, out.str(), err.str());
  };
  cli::DriftOptions drift;
  remote.database = "site-a";
  auto [code_a, out_a, err_a] = run([&](std::ostream& out, std::ostream& err) {
    return cli::RunRemoteDrift(global, remote, drift, out, err);
  });
  EXPECT_EQ(code_a, cli::kExitOk) << err_a;
  EXPECT_THAT(out_a, HasSubstr("no drift: site-a has the schema of b2"));
  remote.database = "site-b";
  auto [code_b, out_b, err_b] = run([&](std::ostream& out, std::ostream& err) {
    return cli::RunRemoteDrift(global, remote, drift, out, err);
  });
  EXPECT_EQ(code_b, cli::kExitDrift) << err_b;
  EXPECT_THAT(out_b, HasSubstr("extra table public.scratch_notes"));
  drift.sql = true;
  auto [code_sql, out_sql, err_sql] = run([&](std::ostream& out, std::ostream& err) {
    return cli::RunRemoteDrift(global, remote, drift, out, err);
  });
  EXPECT_EQ(code_sql, cli::kExitDrift) << err_sql;
  EXPECT_THAT(out_sql, HasSubstr("DROP TABLE public.scratch_notes"));

  cli::FleetCliOptions fleet;
  fleet.action = "drift";
  auto [code_f, out_f, err_f] = run([&](std::ostream& out, std::ostream& err) {
    return cli::RunRemoteFleet(global, remote, fleet, out, err);
  });
  EXPECT_EQ(code_f, cli::kExitDrift) << err_f;
  EXPECT_THAT(out_f, HasSubstr("site-a  no drift at b2"));
  EXPECT_THAT(out_f, HasSubstr("site-b  DRIFT  1 object(s) of site-b"));
  EXPECT_THAT(out_f, HasSubstr("1 without drift, 1 with drift, 0 failed"));
}

}  // namespace
}  // namespace schemad
