// Several schemad replicas sharing one control database (issue 10): real
// `schemad` processes, real PostgreSQL (a control database and a site
// database per test), the C++ SDK and the generated stub as clients.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <atomic>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schemad/client.h"
#include "schemad/v1/schemad.grpc.pb.h"
#include "service/server/config.h"
#include "service/server/server.h"
#include "tests/testing/pg_fixture.h"
#include "tests/testing/poll.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace schemad {
namespace {

using ::schemad::testing::BackgroundProcess;
using ::schemad::testing::PollUntil;
using ::schemad::testing::Query;
using ::schemad::testing::Rows;
using ::schemad::testing::StatusIs;
using ::schemad::testing::TempDir;
using ::schemad::testing::TestDatabase;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// a1, then b2 that sleeps `sleep_seconds` between two statements, then c3.
// The set commits each revision on its own (schemad.conf), so that what a
// replica finished before it stopped stays: what these tests look at.
void WriteChain(const TempDir& dir, double sleep_seconds) {
  dir.Write("modax/schemad.conf", "transaction = per-revision\n");
  const auto write = [&dir](const std::string& id, const std::string& revises,
                            const std::string& up, const std::string& down) {
    dir.Write(absl::StrCat("modax/", id, ".sql"),
              absl::StrCat("-- revision: ", id, "\n",
                           revises.empty() ? "" : absl::StrCat("-- revises: ", revises, "\n"),
                           "\n-- +upgrade\n", up, "\n\n-- +downgrade\n", down, "\n"));
  };
  write("a1", "", "CREATE TABLE t_a1 (id int);", "DROP TABLE t_a1;");
  write("b2", "a1",
        absl::StrCat("CREATE TABLE t_b2 (id int);\nSELECT pg_sleep(", sleep_seconds,
                     ");\nCREATE TABLE t_b2_after (id int);"),
        "DROP TABLE t_b2_after;\nDROP TABLE t_b2;");
  write("c3", "b2", "CREATE TABLE t_c3 (id int);", "DROP TABLE t_c3;");
}

// A configuration of one site over `site`, sharing the control database at
// `control_dsn` (none when "") as replica `replica`; the DSN is kept in the
// secret file `control_secret`.
std::string MakeConfigFor(const TempDir& dir, const TestDatabase& site,
                          const std::string& control_dsn, const std::string& control_secret,
                          const std::string& replica, const std::string& lease) {
  // Written once: a replica started before may be reading them.
  const auto write_once = [&dir](const std::string& name, const std::string& content) {
    if (!std::filesystem::exists(dir.path() + "/" + name)) dir.Write(name, content);
  };
  write_once("secrets/site-a", site.dsn());
  std::string yaml =
      "listen: 127.0.0.1:0\n"
      "timeouts: {lock_timeout: 0}\n"
      "migration_sets:\n  - {name: modax, directory: modax}\n"
      "databases:\n  - {name: site-a, migration_set: modax, dsn_file: secrets/site-a}\n";
  if (!control_dsn.empty()) {
    write_once(control_secret, control_dsn);
    absl::StrAppend(&yaml, "control_database: {dsn_file: ", control_secret, ", lease: ", lease,
                    "}\nreplica_name: ", replica, "\n");
  }
  return yaml;
}

// A configuration of one site over `site`, sharing the control database
// `control` (none when nullptr) as replica `replica`.
std::string MakeConfig(const TempDir& dir, const TestDatabase& site, const TestDatabase* control,
                       const std::string& replica, const std::string& lease = "3s") {
  return MakeConfigFor(dir, site, control == nullptr ? "" : control->dsn(), "secrets/control",
                       replica, lease);
}

// A `schemad` process with its own configuration file in `dir`.
class Replica {
 public:
  Replica(const TempDir& dir, const std::string& name, const std::string& yaml)
      : process_(
            {SCHEMAD_BINARY, "--config", dir.Write(name + ".yaml", yaml), "--log-level", "debug"},
            dir.path(), name) {}
  // Waits until it serves; its address ("" when it did not start).
  const std::string& WaitServing() {
    if (address_.empty()) {
      address_ = process_.WaitForOutput("schemad listening on ", absl::Seconds(60));
    }
    return address_;
  }
  std::unique_ptr<Client> Connect() const {
    ClientOptions options;
    options.target = address_;
    options.retry.enabled = false;
    options.who = "control_pgtest";
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }
  std::unique_ptr<v1::Schemad::Stub> Stub() const {
    return v1::Schemad::NewStub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  }
  BackgroundProcess& process() { return process_; }
  std::string Log() const { return process_.Err(); }

 private:
  BackgroundProcess process_;
  std::string address_;
};

// The threads of a test that make calls to its replicas. When the test
// ends early (a failed ASSERT) with some still running, the replicas are
// killed first, so that those calls end and the threads can be joined
// (a joinable std::thread would abort the test binary and leave the
// schemad processes behind).
class Calls {
 public:
  explicit Calls(std::vector<Replica*> replicas) : replicas_(std::move(replicas)) {}
  ~Calls() {
    bool running = false;
    for (std::thread& t : threads_) running = running || t.joinable();
    if (!running) return;
    for (Replica* replica : replicas_) replica->process().Signal(SIGKILL);
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  // Runs `fn` on a new thread; Join(index) waits for it.
  size_t Start(std::function<void()> fn) {
    threads_.emplace_back(std::move(fn));
    return threads_.size() - 1;
  }
  void Join(size_t index) { threads_[index].join(); }

 private:
  std::vector<Replica*> replicas_;
  std::deque<std::thread> threads_;
};

// Collects a stream's events; lets a test wait for one.
class EventLog {
 public:
  std::function<void(const OperationEvent&)> Callback() {
    return [this](const OperationEvent& e) {
      absl::MutexLock lock(&mu_);
      events_.push_back(e);
    };
  }
  bool WaitFor(const std::function<bool(const OperationEvent&)>& pred, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto cond = [&]() {
      for (const OperationEvent& e : events_) {
        if (pred(e)) return true;
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

bool IsStatement(const OperationEvent& e, const std::string& revision, int index) {
  return e.kind == OperationEvent::Kind::kStatementStarted && e.revision == revision &&
         e.statement_index == index;
}

// The pid of the schemad backend of `db` sleeping in b2's pg_sleep, or "".
std::string WaitForSleepingBackend(const TestDatabase& db) {
  const std::string sql =
      absl::StrCat("SELECT pid FROM pg_stat_activity WHERE datname = '", db.name(),
                   "' AND application_name LIKE 'schemad op-%' AND wait_event = 'PgSleep'");
  std::string pid;
  PollUntil([&] {
    const Rows rows = Query(testing::AdminDsn(), sql);
    if (rows.size() == 1) pid = rows[0][0];
    return !pid.empty();
  });
  return pid;
}

v1::ListOperationsResponse ListThroughStub(const Replica& replica) {
  v1::ListOperationsResponse response;
  grpc::ClientContext context;
  v1::ListOperationsRequest request;
  const grpc::Status status = replica.Stub()->ListOperations(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response;
}

// The operation `id` as `client` lists it, when it does.
std::optional<OperationInfo> Listed(Client& client, const std::string& id) {
  absl::StatusOr<std::vector<OperationInfo>> ops = client.ListOperations("site-a");
  if (!ops.ok()) return std::nullopt;
  for (const OperationInfo& op : *ops) {
    if (op.operation_id == id) return op;
  }
  return std::nullopt;
}

// Started on A, listed, watched and cancelled through B.
TEST(ControlDatabaseTest, AnOperationOfOneReplicaIsListedWatchedAndCancelledThroughAnother) {
  TestDatabase control;
  TestDatabase site;
  ASSERT_TRUE(control.ok() && site.ok());
  TempDir dir;
  WriteChain(dir, 60);
  Replica a(dir, "replica-a", MakeConfig(dir, site, &control, "replica-a"));
  Replica b(dir, "replica-b", MakeConfig(dir, site, &control, "replica-b"));
  ASSERT_FALSE(a.WaitServing().empty()) << a.Log();
  ASSERT_FALSE(b.WaitServing().empty()) << b.Log();
  std::unique_ptr<Client> on_a = a.Connect();
  std::unique_ptr<Client> on_b = b.Connect();
  // What the calls on other threads use, declared before them.
  EventLog upgrade_events;
  absl::StatusOr<OperationResult> upgraded;
  EventLog watched;
  absl::StatusOr<OperationResult> watch_result;
  std::string id;
  Calls calls({&a, &b});

  const size_t upgrade = calls.Start([&] {
    CallOptions call;
    call.on_event = upgrade_events.Callback();
    upgraded = on_a->Upgrade("site-a", {}, call);
  });
  ASSERT_TRUE(upgrade_events.WaitFor(
      [](const OperationEvent& e) { return IsStatement(e, "b2", 1); }, absl::Seconds(30)))
      << a.Log();
  ASSERT_FALSE(WaitForSleepingBackend(site).empty());
  id = upgrade_events.events().front().operation_id;

  // B lists A's operation, running inside b2, from the control database.
  std::optional<OperationInfo> listed;
  ASSERT_TRUE(PollUntil([&] {
    listed = Listed(*on_b, id);
    return listed.has_value() && listed->current_revision == "b2";
  })) << b.Log();
  EXPECT_EQ(listed->state, OperationState::kRunning);
  EXPECT_EQ(listed->replica, "replica-a");
  EXPECT_EQ(listed->kind, OperationKind::kUpgrade);
  EXPECT_EQ(listed->revisions_run, 1);
  EXPECT_EQ(listed->step_index, 1);
  EXPECT_EQ(listed->step_count, 3);
  const v1::ListOperationsResponse through_stub = ListThroughStub(b);
  EXPECT_EQ(through_stub.mode(), v1::OPERATIONS_MODE_CONTROL_DATABASE);
  EXPECT_EQ(through_stub.replica(), "replica-b");

  // B watches it: the events A kept (accepted, a1, b2's first statements),
  // then live ones.
  const size_t watch = calls.Start([&] {
    CallOptions call;
    call.on_event = watched.Callback();
    watch_result = on_b->WatchOperation(id, call);
  });
  ASSERT_TRUE(watched.WaitFor([](const OperationEvent& e) { return IsStatement(e, "b2", 1); },
                              absl::Seconds(30)))
      << b.Log();
  {
    const std::vector<OperationEvent> replayed = watched.events();
    ASSERT_FALSE(replayed.empty());
    EXPECT_EQ(replayed.front().kind, OperationEvent::Kind::kAccepted);
    EXPECT_EQ(replayed.front().sequence, 0);
    for (size_t i = 1; i < replayed.size(); ++i) {
      EXPECT_EQ(replayed[i].sequence, replayed[i - 1].sequence + 1) << "a gap in the replay";
    }
  }

  // B cancels it; A, which runs it, cancels its statement: b2 rolls back.
  ASSERT_OK_AND_ASSIGN(OperationInfo cancelled, on_b->CancelOperation(id));
  EXPECT_TRUE(cancelled.cancel_requested);
  EXPECT_EQ(cancelled.replica, "replica-a");
  calls.Join(upgrade);
  calls.Join(watch);
  EXPECT_THAT(upgraded, StatusIs(absl::StatusCode::kCancelled, ::testing::_));
  EXPECT_THAT(watch_result, StatusIs(absl::StatusCode::kCancelled, ::testing::_));
  // The watcher saw the live end: b2 failing, then `finished` CANCELLED.
  const std::vector<OperationEvent> seen = watched.events();
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().kind, OperationEvent::Kind::kOperationFinished);
  EXPECT_EQ(seen.back().state, OperationState::kCancelled);
  EXPECT_EQ(seen.back().sequence, upgrade_events.events().back().sequence);
  EXPECT_EQ(Query(site.dsn(), "SELECT version_num FROM alembic_version"), (Rows{{"a1"}}));
  EXPECT_EQ(Query(site.dsn(), "SELECT to_regclass('t_b2') IS NULL"), (Rows{{"t"}}));

  // Both replicas tell the same story.
  for (Client* client : {on_a.get(), on_b.get()}) {
    std::optional<OperationInfo> done;
    ASSERT_TRUE(PollUntil([&] {
      done = Listed(*client, id);
      return done.has_value() && done->state == OperationState::kCancelled;
    }));
    EXPECT_EQ(done->replica, "replica-a");
    EXPECT_TRUE(done->cancel_requested);
    EXPECT_EQ(done->error.code(), absl::StatusCode::kCancelled);
  }
  // A cancel of a finished operation, through either replica.
  EXPECT_THAT(on_b->CancelOperation(id),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already finished")));
  EXPECT_THAT(on_b->CancelOperation("op-0000000000000000"),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_THAT(on_b->WatchOperation("op-0000000000000000"),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  // The control database keeps the events schema-qualified, in order.
  EXPECT_EQ(Query(control.dsn(),
                  absl::StrCat("SELECT kind FROM schemad_control.events WHERE operation_id = '", id,
                               "' ORDER BY sequence LIMIT 1")),
            (Rows{{"accepted"}}));
  EXPECT_THAT(a.Log() + b.Log(), Not(HasSubstr(control.cluster().password)));
}

// The control database drops every connection of both replicas (as in a
// restart) while an operation runs: the operation goes on, its writes are
// retried on new connections, and the other replica still lists, watches
// and cancels it.
TEST(ControlDatabaseTest, LosingTheControlConnectionsMidOperationLosesNothing) {
  TestDatabase control;
  TestDatabase site;
  ASSERT_TRUE(control.ok() && site.ok());
  TempDir dir;
  WriteChain(dir, 60);
  Replica a(dir, "replica-a", MakeConfig(dir, site, &control, "replica-a"));
  Replica b(dir, "replica-b", MakeConfig(dir, site, &control, "replica-b"));
  ASSERT_FALSE(a.WaitServing().empty()) << a.Log();
  ASSERT_FALSE(b.WaitServing().empty()) << b.Log();
  std::unique_ptr<Client> on_a = a.Connect();
  std::unique_ptr<Client> on_b = b.Connect();
  EventLog events;
  absl::StatusOr<OperationResult> upgraded;
  Calls calls({&a, &b});

  const size_t upgrade = calls.Start([&] {
    CallOptions call;
    call.on_event = events.Callback();
    upgraded = on_a->Upgrade("site-a", {}, call);
  });
  ASSERT_TRUE(events.WaitFor([](const OperationEvent& e) { return IsStatement(e, "b2", 0); },
                             absl::Seconds(30)));
  const std::string id = events.events().front().operation_id;
  const std::string terminate = absl::StrCat(
      "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '",
      control.name(), "' AND application_name LIKE 'schemad control%'");
  ASSERT_NE(Query(testing::AdminDsn(), terminate), (Rows{{"0"}}));
  // b2's next statement is written on a new connection; B sees it.
  ASSERT_FALSE(WaitForSleepingBackend(site).empty());
  std::optional<OperationInfo> listed;
  ASSERT_TRUE(PollUntil([&] {
    listed = Listed(*on_b, id);
    return listed.has_value() && listed->current_revision == "b2" && listed->revisions_run == 1;
  })) << a.Log()
      << b.Log();
  EXPECT_EQ(listed->state, OperationState::kRunning);
  (void)Query(testing::AdminDsn(), terminate);  // once more, B's too
  ASSERT_OK_AND_ASSIGN(OperationInfo cancelled, on_b->CancelOperation(id));
  EXPECT_TRUE(cancelled.cancel_requested);
  calls.Join(upgrade);
  EXPECT_THAT(upgraded, StatusIs(absl::StatusCode::kCancelled, ::testing::_));
  // Nothing was lost: every event A kept is in the control database.
  ASSERT_TRUE(PollUntil([&] {
    std::optional<OperationInfo> done = Listed(*on_b, id);
    return done.has_value() && done->state == OperationState::kCancelled;
  }));
  EXPECT_EQ(Query(control.dsn(),
                  absl::StrCat("SELECT count(*) = max(sequence) + 1 FROM schemad_control.events "
                               "WHERE operation_id = '",
                               id, "'")),
            (Rows{{"t"}}));
}

// A replica killed mid-operation: once its lease runs out, another marks
// its operation abandoned, saying how far it got; watchers see the end.
TEST(ControlDatabaseTest, AKilledReplicasOperationIsAbandonedAfterItsLease) {
  TestDatabase control;
  TestDatabase site;
  ASSERT_TRUE(control.ok() && site.ok());
  TempDir dir;
  WriteChain(dir, 60);
  Replica a(dir, "replica-a", MakeConfig(dir, site, &control, "replica-a"));
  Replica b(dir, "replica-b", MakeConfig(dir, site, &control, "replica-b"));
  ASSERT_FALSE(a.WaitServing().empty()) << a.Log();
  ASSERT_FALSE(b.WaitServing().empty()) << b.Log();
  std::unique_ptr<Client> on_a = a.Connect();
  std::unique_ptr<Client> on_b = b.Connect();
  EventLog events;
  EventLog watched;
  absl::StatusOr<OperationResult> watch_result;
  std::string id;
  Calls calls({&a, &b});

  const size_t upgrade = calls.Start([&] {
    CallOptions call;
    call.on_event = events.Callback();
    (void)on_a->Upgrade("site-a", {}, call);
  });
  ASSERT_TRUE(events.WaitFor([](const OperationEvent& e) { return IsStatement(e, "b2", 1); },
                             absl::Seconds(30)));
  ASSERT_FALSE(WaitForSleepingBackend(site).empty());
  id = events.events().front().operation_id;
  ASSERT_TRUE(PollUntil([&] {
    std::optional<OperationInfo> op = Listed(*on_b, id);
    return op.has_value() && op->current_revision == "b2";
  }));
  const size_t watch = calls.Start([&] {
    CallOptions call;
    call.on_event = watched.Callback();
    watch_result = on_b->WatchOperation(id, call);
  });
  ASSERT_TRUE(watched.WaitFor([](const OperationEvent& e) { return IsStatement(e, "b2", 1); },
                              absl::Seconds(30)));

  const absl::Time killed = absl::Now();
  a.process().Signal(SIGKILL);
  EXPECT_EQ(a.process().Wait(absl::Seconds(30)), 128 + SIGKILL);
  calls.Join(upgrade);

  std::optional<OperationInfo> abandoned;
  ASSERT_TRUE(PollUntil(
      [&] {
        abandoned = Listed(*on_b, id);
        return abandoned.has_value() && abandoned->state == OperationState::kAbandoned;
      },
      absl::Seconds(30)))
      << b.Log();
  // Not before the lease (3s) could have run out.
  EXPECT_GE(absl::Now() - killed, absl::Seconds(1));
  EXPECT_EQ(abandoned->error.code(), absl::StatusCode::kAborted);
  EXPECT_THAT(abandoned->error.message(),
              AllOf(HasSubstr("replica replica-a stopped renewing its lease"),
                    HasSubstr("had run 1 revision(s)"), HasSubstr("in revision b2 (step 2 of 3)")));
  EXPECT_TRUE(abandoned->finished.has_value());
  calls.Join(watch);
  EXPECT_THAT(watch_result, StatusIs(absl::StatusCode::kAborted, HasSubstr("replica-a")));
  ASSERT_FALSE(watched.events().empty());
  EXPECT_EQ(watched.events().back().kind, OperationEvent::Kind::kOperationFinished);
  EXPECT_EQ(watched.events().back().state, OperationState::kAbandoned);
  EXPECT_THAT(b.Log(), HasSubstr(absl::StrCat("operation abandoned op=", id)));
  testing::ProcessResult listed =
      testing::RunProcess({SCHEMAD_SCHEMACTL, "--server", b.WaitServing(), "ops", "list"});
  EXPECT_EQ(listed.code, 0) << listed.err;
  EXPECT_THAT(listed.out, AllOf(HasSubstr(id), HasSubstr("abandoned"), HasSubstr("on replica-a"),
                                HasSubstr("stopped renewing its lease")));

  // The site's own state is the truth: a1 committed, b2 did not; B says so.
  ASSERT_OK_AND_ASSIGN(DatabaseStatus status, on_b->GetStatus("site-a"));
  EXPECT_THAT(status.current_heads, ::testing::ElementsAre("a1"));
  EXPECT_EQ(status.state, DatabaseStatus::State::kBehind);
}

// A fleet run whose replica is killed mid-way: abandoned after the lease,
// with the sites it had finished; resumed through another replica with
// `schemactl fleet resume`, which skips them. Every site ends at head with
// each revision applied once.
TEST(ControlDatabaseTest, AnAbandonedFleetRunIsResumedThroughAnotherReplicaSkippingDoneSites) {
  TestDatabase control;
  std::vector<std::unique_ptr<TestDatabase>> sites;
  for (int i = 0; i < 3; ++i) sites.push_back(std::make_unique<TestDatabase>());
  ASSERT_TRUE(control.ok());
  TempDir dir;
  // b2 reads `gate`, which the test holds locked on site-2 only. Each
  // revision commits on its own (the default is per command).
  dir.Write("modax/schemad.conf", "transaction = per-revision\n");
  dir.Write("modax/a1.sql",
            "-- revision: a1\n\n-- +upgrade\nCREATE TABLE t_a1 (id int);\n\n-- +downgrade\n"
            "DROP TABLE t_a1;\n");
  dir.Write("modax/b2.sql",
            "-- revision: b2\n-- revises: a1\n\n-- +upgrade\nCREATE TABLE t_b2 (id int);\n"
            "SELECT count(*) FROM gate;\n\n-- +downgrade\nDROP TABLE t_b2;\n");
  dir.Write("modax/c3.sql",
            "-- revision: c3\n-- revises: b2\n\n-- +upgrade\nCREATE TABLE t_c3 (id int);\n\n"
            "-- +downgrade\nDROP TABLE t_c3;\n");
  dir.Write("secrets/control", control.dsn());
  std::string databases;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(sites[i]->ok());
    testing::Exec(sites[i]->dsn(), "CREATE TABLE gate (id int)");
    const std::string name = absl::StrCat("site-", i + 1);
    dir.Write("secrets/" + name, sites[i]->dsn());
    absl::StrAppend(&databases, "  - {name: ", name, ", migration_set: modax, dsn_file: secrets/",
                    name, ", labels: {env: prod}}\n");
  }
  const auto config = [&](const std::string& replica) {
    return absl::StrCat(
        "listen: 127.0.0.1:0\ntimeouts: {lock_timeout: 0}\n"
        "migration_sets:\n  - {name: modax, directory: modax}\ndatabases:\n",
        databases,
        "control_database: {dsn_file: secrets/control, lease: 3s}\nreplica_name: ", replica, "\n");
  };
  Replica a(dir, "replica-a", config("replica-a"));
  Replica b(dir, "replica-b", config("replica-b"));
  ASSERT_FALSE(a.WaitServing().empty()) << a.Log();
  ASSERT_FALSE(b.WaitServing().empty()) << b.Log();
  std::unique_ptr<Client> on_a = a.Connect();
  std::unique_ptr<Client> on_b = b.Connect();

  pqxx::connection gatekeeper(sites[1]->dsn());
  auto gate = std::make_unique<pqxx::work>(gatekeeper);
  gate->exec("LOCK TABLE gate IN ACCESS EXCLUSIVE MODE");
  std::string fleet_id;
  absl::Mutex id_mu;
  Calls calls({&a, &b});
  const size_t fleet = calls.Start([&] {
    FleetRequest request;
    request.selector = "env=prod";
    request.max_parallel = 1;
    CallOptions call;
    call.on_event = [&](const OperationEvent& e) {
      absl::MutexLock lock(&id_mu);
      if (fleet_id.empty()) fleet_id = e.operation_id;
    };
    (void)on_a->FleetRun(request, call);
  });
  // site-1 done (and written through), site-2 inside b2 at the gate.
  ASSERT_TRUE(PollUntil([&] {
    return Query(sites[1]->dsn(),
                 "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
                 "application_name LIKE 'schemad op-%' AND wait_event_type = 'Lock'") ==
           Rows{{"1"}};
  })) << a.Log();
  ASSERT_TRUE(PollUntil([&] {
    return Query(control.dsn(), "SELECT site, outcome FROM schemad_control.fleet_sites") ==
           Rows{{"site-1", "succeeded"}};
  }));
  {
    absl::MutexLock lock(&id_mu);
    ASSERT_FALSE(fleet_id.empty());
  }
  a.process().Signal(SIGKILL);
  EXPECT_EQ(a.process().Wait(absl::Seconds(30)), 128 + SIGKILL);
  calls.Join(fleet);

  std::optional<OperationInfo> abandoned;
  ASSERT_TRUE(PollUntil(
      [&] {
        absl::StatusOr<std::vector<OperationInfo>> ops = on_b->ListOperations();
        abandoned.reset();
        for (const OperationInfo& op : ops.ok() ? *ops : std::vector<OperationInfo>{}) {
          if (op.operation_id == fleet_id) abandoned = op;
        }
        return abandoned.has_value() && abandoned->state == OperationState::kAbandoned;
      },
      absl::Seconds(30)))
      << b.Log();
  EXPECT_THAT(abandoned->error.message(), HasSubstr("1 site(s) had finished"));
  // A's orphaned backend goes away; the gate opens.
  gate->abort();
  gate.reset();
  ASSERT_TRUE(PollUntil([&] {
    return Query(sites[1]->dsn(),
                 "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
                 "application_name LIKE 'schemad op-%'") == Rows{{"0"}};
  }));
  EXPECT_EQ(Query(sites[1]->dsn(), "SELECT version_num FROM alembic_version"), (Rows{{"a1"}}));

  testing::ProcessResult resumed = testing::RunProcess(
      {SCHEMAD_SCHEMACTL, "--server", b.WaitServing(), "fleet", "resume", fleet_id});
  EXPECT_EQ(resumed.code, 0) << resumed.out << resumed.err << b.Log();
  EXPECT_THAT(resumed.out,
              AllOf(HasSubstr("site-2"), HasSubstr("site-3"), Not(HasSubstr("site-1"))));
  for (const auto& site : sites) {
    EXPECT_EQ(Query(site->dsn(), "SELECT version_num FROM alembic_version"), (Rows{{"c3"}}));
    EXPECT_EQ(Query(site->dsn(),
                    "SELECT revision, count(*) FROM schemad_history WHERE direction = 'up' AND "
                    "outcome = 'success' GROUP BY 1 ORDER BY 1"),
              (Rows{{"a1", "1"}, {"b2", "1"}, {"c3", "1"}}));
  }
  // Once only; and only fleet runs that were abandoned.
  FleetRequest again;
  again.resume = fleet_id;
  EXPECT_THAT(on_b->FleetRun(again), StatusIs(absl::StatusCode::kFailedPrecondition,
                                              HasSubstr("was resumed already, by op-")));
  // The resuming run itself finished (succeeded): nothing to resume.
  FleetRequest not_abandoned;
  not_abandoned.resume =
      Query(control.dsn(), absl::StrCat("SELECT resumed_by FROM schemad_control.operations "
                                        "WHERE id = '",
                                        fleet_id, "'"))[0][0];
  ASSERT_TRUE(PollUntil([&] {
    return Query(control.dsn(),
                 absl::StrCat("SELECT state FROM schemad_control.operations WHERE id = '",
                              not_abandoned.resume, "'")) == Rows{{"succeeded"}};
  }));
  EXPECT_THAT(on_b->FleetRun(not_abandoned),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not abandoned")));
}

// Three replicas started at once: each of the control schema's revisions is
// applied once (the engine's migration lock), each replica registered.
TEST(ControlDatabaseTest, ReplicasStartingTogetherCreateTheControlSchemaOnce) {
  TestDatabase control;
  TestDatabase site;
  ASSERT_TRUE(control.ok() && site.ok());
  TempDir dir;
  WriteChain(dir, 0);
  std::vector<std::unique_ptr<Replica>> replicas;
  for (const char* name : {"r1", "r2", "r3"}) {
    replicas.push_back(std::make_unique<Replica>(dir, name, MakeConfig(dir, site, &control, name)));
  }
  for (auto& replica : replicas) {
    ASSERT_FALSE(replica->WaitServing().empty()) << replica->Log();
  }
  EXPECT_EQ(Query(control.dsn(), "SELECT version_num FROM schemad_control.alembic_version"),
            (Rows{{"control_0002"}}));
  EXPECT_EQ(Query(control.dsn(),
                  "SELECT revision, direction, outcome, count(*) FROM "
                  "schemad_control.schemad_history GROUP BY 1, 2, 3 ORDER BY 1"),
            (Rows{{"control_0001", "up", "success", "1"}, {"control_0002", "up", "success", "1"}}));
  EXPECT_EQ(Query(control.dsn(), "SELECT name FROM schemad_control.replicas ORDER BY 1"),
            (Rows{{"r1"}, {"r2"}, {"r3"}}));
  // Nothing of schemad's outside its schema.
  EXPECT_EQ(Query(control.dsn(),
                  "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = "
                  "c.relnamespace WHERE n.nspname = 'public'"),
            (Rows{{"0"}}));
  // A restart of r1 under its name: a fresh registration, nothing abandoned.
  replicas[0]->process().Signal(SIGTERM);
  EXPECT_EQ(replicas[0]->process().Wait(absl::Seconds(30)), 0) << replicas[0]->Log();
  Replica again(dir, "r1-again", MakeConfig(dir, site, &control, "r1"));
  ASSERT_FALSE(again.WaitServing().empty()) << again.Log();
  EXPECT_THAT(again.Log(), HasSubstr("abandoned_at_start=0"));
  EXPECT_EQ(Query(control.dsn(), "SELECT count(*) FROM schemad_control.schemad_history"),
            (Rows{{"2"}}));
  // A control schema a newer schemad migrated (a revision this one does not
  // know) stops the start, saying so.
  testing::Exec(control.dsn(),
                "UPDATE schemad_control.alembic_version SET version_num = 'control_9999'");
  testing::ProcessResult newer = testing::RunProcess(
      {SCHEMAD_BINARY, "--config", dir.Write("newer.yaml", MakeConfig(dir, site, &control, "r9"))});
  EXPECT_EQ(newer.code, 2);
  EXPECT_THAT(newer.err, AllOf(HasSubstr("control_database:"), HasSubstr("control_9999"),
                               HasSubstr("a newer schemad migrated it")));
}

// EnsureHead at head costs the control database nothing: with every
// connection schemad held there terminated, fifty calls open none; an
// EnsureHead that applies is recorded. With the control database refusing
// connections the listing comes from memory and says so; without a control
// database it says it is this replica's memory.
// Readiness (health service "schemad.ready") follows the control database:
// NOT_SERVING once a lease renewal fails, SERVING again once one works;
// liveness ("") and EnsureHead at head are not affected meanwhile.
TEST(ControlDatabaseTest, ReadinessFollowsTheControlDatabase) {
  TestDatabase control;
  TestDatabase site;
  ASSERT_TRUE(control.ok() && site.ok());
  TempDir dir;
  WriteChain(dir, 0);
  Replica a(dir, "replica-a", MakeConfig(dir, site, &control, "replica-a", "2s"));
  ASSERT_FALSE(a.WaitServing().empty()) << a.Log();
  std::unique_ptr<Client> client = a.Connect();
  ASSERT_OK_AND_ASSIGN(bool ready, client->CheckReady());
  EXPECT_TRUE(ready);
  ASSERT_OK(client->EnsureHead("site-a").status());

  testing::Exec(testing::AdminDsn(),
                absl::StrCat("ALTER DATABASE ", control.name(), " WITH ALLOW_CONNECTIONS false"));
  testing::Exec(testing::AdminDsn(),
                absl::StrCat("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                             "datname = '",
                             control.name(), "'"));
  // A renewal every lease/3: within a few seconds one fails.
  EXPECT_TRUE(PollUntil([&] {
    absl::StatusOr<bool> now = client->CheckReady();
    return now.ok() && !*now;
  })) << a.Log();
  ASSERT_OK_AND_ASSIGN(bool live, client->CheckHealth());
  EXPECT_TRUE(live);
  ASSERT_OK_AND_ASSIGN(EnsureHeadResult head, client->EnsureHead("site-a"));
  EXPECT_FALSE(head.applied);

  testing::Exec(testing::AdminDsn(),
                absl::StrCat("ALTER DATABASE ", control.name(), " WITH ALLOW_CONNECTIONS true"));
  EXPECT_TRUE(PollUntil([&] {
    absl::StatusOr<bool> now = client->CheckReady();
    return now.ok() && *now;
  })) << a.Log();
  EXPECT_THAT(a.Log(),
              AllOf(HasSubstr("this replica is not ready"), HasSubstr("this replica is ready"),
                    Not(HasSubstr(control.cluster().password))));
}

TEST(ControlDatabaseTest, EnsureHeadAtHeadCostsTheControlDatabaseNothing) {
  TestDatabase control;
  TestDatabase site;
  ASSERT_TRUE(control.ok() && site.ok());
  TempDir dir;
  WriteChain(dir, 0);
  Replica a(dir, "replica-a", MakeConfig(dir, site, &control, "replica-a", "1h"));
  ASSERT_FALSE(a.WaitServing().empty()) << a.Log();
  std::unique_ptr<Client> client = a.Connect();
  ASSERT_OK_AND_ASSIGN(EnsureHeadResult applied, client->EnsureHead("site-a"));
  ASSERT_TRUE(applied.applied);
  ASSERT_TRUE(PollUntil([&] {
    return Query(control.dsn(),
                 absl::StrCat("SELECT state, revisions_run FROM schemad_control.operations "
                              "WHERE id = '",
                              applied.operation_id, "'")) == Rows{{"succeeded", "3"}};
  }));

  // Listing waits for this replica's queued writes: none is left to write.
  ASSERT_OK(client->ListOperations().status());
  const std::string control_backends =
      absl::StrCat("SELECT count(*) FROM pg_stat_activity WHERE datname = '", control.name(),
                   "' AND application_name LIKE 'schemad control%'");
  testing::Exec(testing::AdminDsn(),
                absl::StrCat("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                             "datname = '",
                             control.name(), "' AND application_name LIKE 'schemad control%'"));
  ASSERT_TRUE(
      PollUntil([&] { return Query(testing::AdminDsn(), control_backends) == Rows{{"0"}}; }));
  for (int i = 0; i < 50; ++i) {
    ASSERT_OK_AND_ASSIGN(EnsureHeadResult head, client->EnsureHead("site-a"));
    ASSERT_FALSE(head.applied);
  }
  EXPECT_EQ(Query(testing::AdminDsn(), control_backends), (Rows{{"0"}}));
  EXPECT_EQ(Query(control.dsn(), "SELECT count(*) FROM schemad_control.operations"), (Rows{{"1"}}));
  // The control database is back for what needs it (a reconnect).
  ASSERT_OK_AND_ASSIGN(std::vector<OperationInfo> listed, client->ListOperations());
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].operation_id, applied.operation_id);
  EXPECT_EQ(listed[0].state, OperationState::kSucceeded);

  // The control database refusing connections: the listing says so and
  // answers from this replica's memory; EnsureHead does not notice.
  testing::Exec(testing::AdminDsn(),
                absl::StrCat("ALTER DATABASE ", control.name(), " WITH ALLOW_CONNECTIONS false"));
  testing::Exec(testing::AdminDsn(),
                absl::StrCat("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                             "datname = '",
                             control.name(), "'"));
  ASSERT_OK(client->EnsureHead("site-a").status());
  const v1::ListOperationsResponse unreachable = ListThroughStub(a);
  EXPECT_EQ(unreachable.mode(), v1::OPERATIONS_MODE_CONTROL_DATABASE_UNREACHABLE);
  ASSERT_EQ(unreachable.operations_size(), 1);
  EXPECT_EQ(unreachable.operations(0).operation_id(), applied.operation_id);
  EXPECT_EQ(unreachable.operations(0).replica(), "replica-a");
  EXPECT_THAT(a.Log(), AllOf(HasSubstr("ListOperations from memory"),
                             Not(HasSubstr(control.cluster().password))));
  testing::Exec(testing::AdminDsn(),
                absl::StrCat("ALTER DATABASE ", control.name(), " WITH ALLOW_CONNECTIONS true"));

  Replica alone(dir, "alone", MakeConfig(dir, site, nullptr, ""));
  ASSERT_FALSE(alone.WaitServing().empty()) << alone.Log();
  const v1::ListOperationsResponse memory = ListThroughStub(alone);
  EXPECT_EQ(memory.mode(), v1::OPERATIONS_MODE_MEMORY);
  EXPECT_EQ(memory.operations_size(), 0);
}

// --check-config checks the control database's settings without connecting.
TEST(ControlDatabaseTest, CheckConfigValidatesTheControlDatabaseWithoutTouchingIt) {
  TestDatabase site;
  ASSERT_TRUE(site.ok());
  TempDir dir;
  WriteChain(dir, 0);
  dir.Write("secrets/site-a", site.dsn());
  dir.Write("secrets/control", "postgresql://u:s3cret@127.0.0.1:1/none");  // nothing listens
  const std::string base =
      "listen: 127.0.0.1:0\nmigration_sets:\n  - {name: modax, directory: modax}\n"
      "databases:\n  - {name: site-a, migration_set: modax, dsn_file: secrets/site-a}\n";
  const std::string good =
      dir.Write("good.yaml", base + "control_database: {dsn_file: secrets/control, lease: 10s}\n");
  testing::ProcessResult ok =
      testing::RunProcess({SCHEMAD_BINARY, "--config", good, "--check-config"});
  EXPECT_EQ(ok.code, 0) << ok.err;
  const std::string bad =
      dir.Write("bad.yaml", base + "control_database: {dsn_file: secrets/control, lease: 1s}\n");
  testing::ProcessResult refused =
      testing::RunProcess({SCHEMAD_BINARY, "--config", bad, "--check-config"});
  EXPECT_EQ(refused.code, 2);
  EXPECT_THAT(refused.err, AllOf(HasSubstr("control_database.lease: 1s is out of range"),
                                 Not(HasSubstr("s3cret"))));
  // Serving needs it: an unreachable control database stops the start.
  testing::ProcessResult unreachable = testing::RunProcess({SCHEMAD_BINARY, "--config", good});
  EXPECT_EQ(unreachable.code, 3) << unreachable.err;
  EXPECT_THAT(unreachable.err, AllOf(HasSubstr("control_database:"), Not(HasSubstr("s3cret"))));
}

// A PostgreSQL cluster of the test's own (tests/testing/pg_cluster.sh),
// apart from the one holding the sites, for a control database that the
// test stops (fast shutdown: every backend ended, connections refused) and
// starts again on the same port, as a restart of the control database's
// server. Stopped when it goes.
class OwnCluster {
 public:
  OwnCluster() : ok_(Run("start")) {
    port_ = std::string(absl::StripAsciiWhitespace(dir_.Read("port")));
    password_ = std::string(absl::StripAsciiWhitespace(dir_.Read("password")));
    ok_ = ok_ && !port_.empty() && !password_.empty();
  }
  ~OwnCluster() { (void)Run("stop"); }
  OwnCluster(const OwnCluster&) = delete;
  OwnCluster& operator=(const OwnCluster&) = delete;

  bool ok() const { return ok_; }
  const std::string& password() const { return password_; }
  // `dbname` as `user` (the superuser `postgres` by default).
  std::string Dsn(const std::string& dbname, const std::string& user = "postgres",
                  const std::string& password = "") const {
    return absl::StrCat("postgresql://", user, ":", password.empty() ? password_ : password,
                        "@127.0.0.1:", port_, "/", dbname);
  }
  // Stops it; true once it refuses connections.
  bool Stop() { return Run("stop") && !Accepts(); }
  // Starts it again; true once it is back on its port.
  bool Start() {
    return Run("start") && std::string(absl::StripAsciiWhitespace(dir_.Read("port"))) == port_ &&
           Accepts();
  }

 private:
  bool Run(const std::string& command) {
    const testing::ProcessResult run =
        testing::RunProcess({SCHEMAD_PG_CLUSTER, command, dir_.path()});
    EXPECT_EQ(run.code, 0) << "pg_cluster.sh " << command << ": " << run.out << run.err;
    return run.code == 0;
  }
  bool Accepts() const {
    try {
      pqxx::connection conn(Dsn("postgres"));
      return conn.is_open();
    } catch (const std::exception&) {
      return false;
    }
  }

  TempDir dir_;
  bool ok_ = false;
  std::string port_;
  std::string password_;
};

// Whether `client`'s replica answers readiness (schemad.ready) with `ready`.
bool ReadyIs(Client& client, bool ready) {
  absl::StatusOr<bool> now = client.CheckReady();
  return now.ok() && *now == ready;
}

// Liveness of some replicas, checked from a thread of its own every 50 ms
// until Stop() (or its end): how many checks, and how many were not SERVING.
class LivenessMonitor {
 public:
  explicit LivenessMonitor(const std::vector<Replica*>& replicas) {
    for (Replica* replica : replicas) clients_.push_back(replica->Connect());
    thread_ = std::thread([this] {
      (void)PollUntil(
          [this] {
            for (const std::unique_ptr<Client>& client : clients_) {
              absl::StatusOr<bool> live = client->CheckHealth();
              ++checks_;
              if (!live.ok() || !*live) ++failures_;
            }
            return stop_.load();
          },
          absl::Minutes(2), absl::Milliseconds(50));
    });
  }
  ~LivenessMonitor() { Stop(); }
  LivenessMonitor(const LivenessMonitor&) = delete;
  LivenessMonitor& operator=(const LivenessMonitor&) = delete;

  // Ends the checks (waits for the one running).
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int checks() const { return checks_; }
  int failures() const { return failures_; }

 private:
  std::vector<std::unique_ptr<Client>> clients_;
  std::atomic<bool> stop_{false};
  std::atomic<int> checks_{0};
  std::atomic<int> failures_{0};
  std::thread thread_;
};

// The events of a finished operation as replayed through `client`: from
// sequence 0 without a gap, a single `finished` event last.
void ExpectWholeReplay(Client& client, const std::string& id, OperationState state) {
  EventLog replayed;
  CallOptions call;
  call.on_event = replayed.Callback();
  const absl::StatusOr<OperationResult> watched = client.WatchOperation(id, call);
  EXPECT_EQ(watched.ok(), state == OperationState::kSucceeded) << watched.status();
  const std::vector<OperationEvent> events = replayed.events();
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events.front().kind, OperationEvent::Kind::kAccepted);
  EXPECT_EQ(events.front().sequence, 0);
  for (size_t i = 1; i < events.size(); ++i) {
    EXPECT_EQ(events[i].sequence, events[i - 1].sequence + 1) << "a gap in the replay";
    if (i + 1 < events.size()) {
      EXPECT_NE(events[i].kind, OperationEvent::Kind::kOperationFinished)
          << "a `finished` event at sequence " << events[i].sequence << " before the end";
    }
  }
  EXPECT_EQ(events.back().kind, OperationEvent::Kind::kOperationFinished);
  EXPECT_EQ(events.back().state, state);
}

// The control database in a cluster of its own, stopped and started again
// on its port while two replicas idle: readiness follows it on both,
// liveness and EnsureHead at head do not notice, an operation run while it
// is down is written once it is back, and then an operation of one replica
// is listed and watched (live) through the other, as are the earlier ones.
TEST(ControlDatabaseRestartTest, AnIdleRestartTurnsReadinessOffAndOnAndLosesNothing) {
  OwnCluster cluster;
  ASSERT_TRUE(cluster.ok());
  testing::Exec(cluster.Dsn("postgres"), "CREATE DATABASE control");
  TestDatabase site;
  ASSERT_TRUE(site.ok());
  TempDir dir;
  WriteChain(dir, 2);
  const std::string control = cluster.Dsn("control");
  Replica a(dir, "replica-a",
            MakeConfigFor(dir, site, control, "secrets/control", "replica-a", "2s"));
  Replica b(dir, "replica-b",
            MakeConfigFor(dir, site, control, "secrets/control", "replica-b", "2s"));
  ASSERT_FALSE(a.WaitServing().empty()) << a.Log();
  ASSERT_FALSE(b.WaitServing().empty()) << b.Log();
  std::unique_ptr<Client> on_a = a.Connect();
  std::unique_ptr<Client> on_b = b.Connect();
  ASSERT_OK_AND_ASSIGN(EnsureHeadResult before, on_a->EnsureHead("site-a"));
  ASSERT_TRUE(before.applied);
  for (Client* client : {on_a.get(), on_b.get()}) {
    ASSERT_TRUE(ReadyIs(*client, true));
  }
  LivenessMonitor liveness({&a, &b});

  ASSERT_TRUE(cluster.Stop());
  // A renewal every lease/3: each replica turns not ready within one.
  for (Client* client : {on_a.get(), on_b.get()}) {
    EXPECT_TRUE(PollUntil([&] { return ReadyIs(*client, false); })) << a.Log() << b.Log();
  }
  testing::ProcessResult health =
      testing::RunProcess({SCHEMAD_SCHEMACTL, "--server", a.WaitServing(), "health", "--ready"});
  EXPECT_EQ(health.code, 1) << health.out << health.err;
  EXPECT_THAT(health.out, HasSubstr("NOT_SERVING"));
  for (Client* client : {on_a.get(), on_b.get()}) {
    ASSERT_OK_AND_ASSIGN(EnsureHeadResult head, client->EnsureHead("site-a"));
    EXPECT_FALSE(head.applied);
    EXPECT_THAT(head.heads, ::testing::ElementsAre("c3"));
  }
  // Listing answers from the replica's memory, saying so.
  const v1::ListOperationsResponse from_memory = ListThroughStub(a);
  EXPECT_EQ(from_memory.mode(), v1::OPERATIONS_MODE_CONTROL_DATABASE_UNREACHABLE);
  ASSERT_EQ(from_memory.operations_size(), 1);
  EXPECT_EQ(from_memory.operations(0).operation_id(), before.operation_id);
  // Operations run meanwhile; their writes wait.
  DowngradeRequest down;
  down.target = "a1";
  ASSERT_OK_AND_ASSIGN(OperationResult downgraded, on_a->Downgrade("site-a", down, {}));

  ASSERT_TRUE(cluster.Start());
  for (Client* client : {on_a.get(), on_b.get()}) {
    EXPECT_TRUE(PollUntil([&] { return ReadyIs(*client, true); })) << a.Log() << b.Log();
  }
  liveness.Stop();
  EXPECT_EQ(liveness.failures(), 0) << "of " << liveness.checks() << " liveness checks";
  EXPECT_GT(liveness.checks(), 0);

  // Started on A now: B lists it running, inside b2, and watches it to its
  // end.
  EventLog upgrade_events;
  absl::StatusOr<OperationResult> upgraded;
  Calls calls({&a, &b});
  const size_t upgrade = calls.Start([&] {
    CallOptions call;
    call.on_event = upgrade_events.Callback();
    upgraded = on_a->Upgrade("site-a", {}, call);
  });
  ASSERT_TRUE(upgrade_events.WaitFor(
      [](const OperationEvent& e) { return IsStatement(e, "b2", 1); }, absl::Seconds(30)))
      << a.Log();
  const std::string id = upgrade_events.events().front().operation_id;
  ASSERT_TRUE(PollUntil([&] {
    std::optional<OperationInfo> listed = Listed(*on_b, id);
    return listed.has_value() && listed->state == OperationState::kRunning &&
           listed->current_revision == "b2";
  })) << b.Log();
  EventLog watched;
  CallOptions watch_call;
  watch_call.on_event = watched.Callback();
  EXPECT_OK(on_b->WatchOperation(id, watch_call).status());
  calls.Join(upgrade);
  ASSERT_OK(upgraded.status());
  ASSERT_FALSE(watched.events().empty());
  EXPECT_EQ(watched.events().back().kind, OperationEvent::Kind::kOperationFinished);
  EXPECT_EQ(watched.events().back().state, OperationState::kSucceeded);
  EXPECT_EQ(watched.events().back().sequence, upgrade_events.events().back().sequence);
  EXPECT_EQ(Query(site.dsn(), "SELECT version_num FROM alembic_version"), (Rows{{"c3"}}));

  // And, replayed whole through B: the one from before the restart, the one
  // run while the control database was down, this one.
  for (const std::string& op : {before.operation_id, downgraded.operation_id, id}) {
    std::optional<OperationInfo> listed;
    ASSERT_TRUE(PollUntil([&] {
      listed = Listed(*on_b, op);
      return listed.has_value() && listed->state == OperationState::kSucceeded;
    })) << b.Log();
    EXPECT_EQ(listed->replica, "replica-a");
    ExpectWholeReplay(*on_b, op, OperationState::kSucceeded);
  }
  EXPECT_EQ(ListThroughStub(b).mode(), v1::OPERATIONS_MODE_CONTROL_DATABASE);
  EXPECT_THAT(a.Log() + b.Log(),
              AllOf(HasSubstr("this replica is not ready"), HasSubstr("this replica is ready"),
                    Not(HasSubstr(cluster.password()))));
}

// The control database's cluster stopped while A runs an upgrade (inside
// b2's pg_sleep) and started again. A is kept out a little longer (its
// role may not log in), so that B, finding A's lease expired, marks the
// operation abandoned; A, once back, writes the true state over the mark
// while b2 still runs. The upgrade completes on the site, each revision
// once, and B lists it succeeded and replays it whole.
TEST(ControlDatabaseRestartTest, ARestartMidOperationLosesNothingAndTheTruthOverwritesTheMark) {
  OwnCluster cluster;
  ASSERT_TRUE(cluster.ok());
  testing::Exec(cluster.Dsn("postgres"), "CREATE DATABASE control");
  testing::Exec(cluster.Dsn("postgres"),
                "CREATE ROLE replica_a LOGIN SUPERUSER PASSWORD 'replica-a-secret'");
  TestDatabase site;
  ASSERT_TRUE(site.ok());
  TempDir dir;
  WriteChain(dir, 12);
  Replica a(dir, "replica-a",
            MakeConfigFor(dir, site, cluster.Dsn("control", "replica_a", "replica-a-secret"),
                          "secrets/control-a", "replica-a", "2s"));
  Replica b(
      dir, "replica-b",
      MakeConfigFor(dir, site, cluster.Dsn("control"), "secrets/control-b", "replica-b", "2s"));
  ASSERT_FALSE(a.WaitServing().empty()) << a.Log();
  ASSERT_FALSE(b.WaitServing().empty()) << b.Log();
  std::unique_ptr<Client> on_a = a.Connect();
  std::unique_ptr<Client> on_b = b.Connect();
  EventLog events;
  absl::StatusOr<OperationResult> upgraded;
  Calls calls({&a, &b});

  const size_t upgrade = calls.Start([&] {
    CallOptions call;
    call.on_event = events.Callback();
    upgraded = on_a->Upgrade("site-a", {}, call);
  });
  ASSERT_TRUE(events.WaitFor([](const OperationEvent& e) { return IsStatement(e, "b2", 1); },
                             absl::Seconds(30)))
      << a.Log();
  const std::string sleeping = WaitForSleepingBackend(site);
  ASSERT_FALSE(sleeping.empty());
  const std::string id = events.events().front().operation_id;
  ASSERT_TRUE(PollUntil([&] {
    std::optional<OperationInfo> op = Listed(*on_b, id);
    return op.has_value() && op->current_revision == "b2";
  })) << b.Log();
  const auto still_sleeping = [&] {
    return Query(testing::AdminDsn(),
                 absl::StrCat("SELECT count(*) FROM pg_stat_activity WHERE pid = ", sleeping,
                              " AND wait_event = 'PgSleep'")) == Rows{{"1"}};
  };

  // Its sessions go on until the stop ends them; after, it may not log in.
  testing::Exec(cluster.Dsn("postgres"), "ALTER ROLE replica_a NOLOGIN");
  ASSERT_TRUE(cluster.Stop());
  for (Client* client : {on_a.get(), on_b.get()}) {
    EXPECT_TRUE(PollUntil([&] { return ReadyIs(*client, false); })) << a.Log() << b.Log();
  }
  ASSERT_TRUE(cluster.Start());
  EXPECT_TRUE(PollUntil([&] { return ReadyIs(*on_b, true); })) << b.Log();
  // B marks A's operation abandoned once A's lease (2s) has run out.
  std::optional<OperationInfo> marked;
  ASSERT_TRUE(PollUntil([&] {
    marked = Listed(*on_b, id);
    return marked.has_value() && marked->state == OperationState::kAbandoned;
  })) << b.Log();
  EXPECT_THAT(marked->error.message(), HasSubstr("replica replica-a stopped renewing its lease"));
  ASSERT_TRUE(still_sleeping()) << "b2's sleep ended before the mark: make it longer";
  EXPECT_TRUE(ReadyIs(*on_a, false));

  // A is let back in: it is ready again and writes the truth over the
  // mark while b2 still sleeps.
  testing::Exec(cluster.Dsn("postgres"), "ALTER ROLE replica_a LOGIN");
  EXPECT_TRUE(PollUntil([&] { return ReadyIs(*on_a, true); })) << a.Log();
  std::optional<OperationInfo> rewritten;
  EXPECT_TRUE(PollUntil([&] {
    rewritten = Listed(*on_b, id);
    return rewritten.has_value() && rewritten->state == OperationState::kRunning;
  })) << a.Log();
  EXPECT_TRUE(still_sleeping()) << "the mark stayed until b2's next statement";
  if (rewritten.has_value()) {
    EXPECT_EQ(rewritten->current_revision, "b2");
    EXPECT_FALSE(rewritten->finished.has_value());
  }

  calls.Join(upgrade);
  ASSERT_OK(upgraded.status());
  EXPECT_EQ(upgraded->revisions_run, 3);
  EXPECT_EQ(Query(site.dsn(), "SELECT version_num FROM alembic_version"), (Rows{{"c3"}}));
  EXPECT_EQ(Query(site.dsn(),
                  "SELECT revision, count(*) FROM schemad_history WHERE direction = 'up' GROUP BY "
                  "1 ORDER BY 1"),
            (Rows{{"a1", "1"}, {"b2", "1"}, {"c3", "1"}}));
  std::optional<OperationInfo> done;
  ASSERT_TRUE(PollUntil([&] {
    done = Listed(*on_b, id);
    return done.has_value() && done->state == OperationState::kSucceeded;
  })) << a.Log();
  EXPECT_EQ(done->replica, "replica-a");
  EXPECT_EQ(done->revisions_run, 3);
  EXPECT_EQ(done->error.code(), absl::StatusCode::kOk);
  EXPECT_EQ(done->event_count, events.events().back().sequence + 1);
  ExpectWholeReplay(*on_b, id, OperationState::kSucceeded);
  // Every event A streamed is in the control database, once, in order.
  EXPECT_EQ(Query(cluster.Dsn("control"),
                  absl::StrCat("SELECT count(*), max(sequence), count(*) FILTER (WHERE kind = "
                               "'finished') FROM schemad_control.events WHERE operation_id = '",
                               id, "'")),
            (Rows{{absl::StrCat(events.events().size()),
                   absl::StrCat(events.events().back().sequence), "1"}}));
  EXPECT_THAT(a.Log() + b.Log(),
              AllOf(Not(HasSubstr(cluster.password())), Not(HasSubstr("replica-a-secret"))));
}

}  // namespace
}  // namespace schemad
