// Fleet operations end to end: one in-process schemad with many site
// databases in the test cluster, FleetRun through the generated gRPC stub.
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "client/cli/remote_commands.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schemad/v1/schemad.grpc.pb.h"
#include "service/server/config.h"
#include "service/server/server.h"
#include "spdlog/sinks/ringbuffer_sink.h"
#include "tests/testing/pg_fixture.h"
#include "tests/testing/poll.h"
#include "tests/testing/ports.h"
#include "tests/testing/temp_dir.h"

namespace schemad {
namespace {

using ::schemad::testing::PollUntil;
using ::schemad::testing::Query;
using ::schemad::testing::Rows;
using ::schemad::testing::TempDir;
using ::schemad::testing::TestDatabase;
using ::testing::HasSubstr;
using ::testing::Not;

// Three revisions; `slow` makes r2 sleep (for cancel tests). The set
// declares (schemad.conf) that each revision commits on its own, so that a
// site that fails at r3 stays at r2: what these tests look at.
void WriteRevisions(const TempDir& dir, bool slow) {
  dir.Write("fleet/schemad.conf", "transaction = per-revision\n");
  dir.Write("fleet/r1.sql",
            "-- revision: r1\n-- message: r1\n\n-- +upgrade\nCREATE TABLE t1 (a int);\n\n"
            "-- +downgrade\nDROP TABLE t1;\n");
  dir.Write("fleet/r2.sql",
            absl::StrCat("-- revision: r2\n-- revises: r1\n-- message: r2\n\n-- +upgrade\n",
                         slow ? "SELECT pg_sleep(2);\n" : "",
                         "ALTER TABLE t1 ADD COLUMN b int;\n\n-- +downgrade\n"
                         "ALTER TABLE t1 DROP COLUMN b;\n"));
  dir.Write("fleet/r3.sql",
            "-- revision: r3\n-- revises: r2\n-- message: r3\n\n-- +upgrade\nCREATE TABLE t3 (a "
            "int);\n\n-- +downgrade\nDROP TABLE t3;\n");
}

struct Site {
  std::string name;
  std::string dsn;
  std::string labels;  // YAML flow map body
};

class Fleet {
 public:
  Fleet(const std::vector<Site>& sites, bool slow_revisions,
        server::ServerOptions options = server::ServerOptions()) {
    WriteRevisions(dir_, slow_revisions);
    // connect_timeout as by default: 30 sites connect at once on a loaded
    // 2-core machine, under ASan too (the unreachable site is refused at once).
    std::string yaml =
        "listen: 127.0.0.1:0\n"
        "timeouts: {lock_wait: 2s, lock_timeout: 1s, connect_timeout: 10s}\n"
        "pools: {max_sessions_per_database: 2, min_idle_sessions: 1}\n"
        "migration_sets:\n  - {name: fleet, directory: fleet}\ndatabases:\n";
    for (const Site& site : sites) {
      dir_.Write("secrets/" + site.name, site.dsn);
      absl::StrAppend(&yaml, "  - name: ", site.name,
                      "\n    migration_set: fleet\n    dsn_file: secrets/", site.name,
                      "\n    labels: {", site.labels, "}\n");
    }
    server::ConfigSources sources;
    sources.base_dir = dir_.path();
    sources.getenv = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
    absl::StatusOr<server::LoadedConfig> config = server::ParseConfig(yaml, sources);
    EXPECT_TRUE(config.ok()) << config.status();
    if (!config.ok()) {
      return;
    }
    absl::StatusOr<std::unique_ptr<server::SchemadServer>> server =
        server::SchemadServer::Start(*std::move(config), std::move(options));
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) {
      return;
    }
    server_ = *std::move(server);
    stub_ = v1::Schemad::NewStub(
        grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
  }
  bool ok() const { return stub_ != nullptr; }
  v1::Schemad::Stub& stub() { return *stub_; }
  const std::string& address() const { return server_->address(); }

 private:
  TempDir dir_;
  std::unique_ptr<server::SchemadServer> server_;
  std::unique_ptr<v1::Schemad::Stub> stub_;
};

struct FleetStream {
  std::vector<v1::OperationEvent> events;
  grpc::Status status;
  std::string operation_id;
  v1::FleetSummary summary;
  std::map<std::string, v1::FleetSiteResult> results;  // from the summary
  int max_running = 0;  // sites started and not yet finished, at most
};

// Runs a fleet request to the end; `on_event` sees every event as it comes.
FleetStream RunFleet(v1::Schemad::Stub& stub, const v1::FleetRunRequest& request,
                     const std::function<void(const v1::OperationEvent&)>& on_event = nullptr) {
  FleetStream out;
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<v1::OperationEvent>> reader = stub.FleetRun(&context, request);
  v1::OperationEvent event;
  int running = 0;
  while (reader->Read(&event)) {
    if (event.has_accepted()) {
      out.operation_id = event.operation_id();
    }
    if (event.has_fleet()) {
      switch (event.fleet().kind()) {
        case v1::FleetEvent::KIND_SITE_STARTED:
          out.max_running = std::max(out.max_running, ++running);
          break;
        case v1::FleetEvent::KIND_SITE_FINISHED:
        case v1::FleetEvent::KIND_SITE_FAILED:
          --running;
          break;
        case v1::FleetEvent::KIND_SUMMARY:
          out.summary = event.fleet().summary();
          for (const v1::FleetSiteResult& r : out.summary.sites()) {
            out.results[r.site()] = r;
          }
          break;
        default:
          break;
      }
    }
    if (on_event) {
      on_event(event);
    }
    out.events.push_back(event);
  }
  out.status = reader->Finish();
  return out;
}

v1::FleetRunRequest Upgrade(const std::string& selector, int parallel) {
  v1::FleetRunRequest request;
  request.set_action(v1::FLEET_ACTION_UPGRADE);
  request.set_selector(selector);
  request.set_max_parallel(parallel);
  return request;
}

// Backends schemad holds in the test's databases (every schemad
// connection's application_name starts with "schemad"; other tests may run
// servers against the same cluster at the same time), in two counts: the
// sessions and lock connections ("schemad", "schemad lock"), and the
// BlockerMonitor connections ("schemad monitor", opened only while a
// statement with a lock_timeout has run for half of it).
struct Backends {
  int sessions_and_locks = -1;
  int monitors = -1;
};
Backends SchemadBackends(const std::vector<std::unique_ptr<TestDatabase>>& dbs) {
  std::string names;
  for (const std::unique_ptr<TestDatabase>& db : dbs) {
    absl::StrAppend(&names, names.empty() ? "" : ",", "'", db->name(), "'");
  }
  Rows rows = Query(
      testing::AdminDsn(),
      absl::StrCat("SELECT count(*) FILTER (WHERE application_name NOT LIKE '% monitor'), "
                   "count(*) FILTER (WHERE application_name LIKE '% monitor') "
                   "FROM pg_stat_activity WHERE application_name LIKE 'schemad%' AND datname IN (",
                   names, ")"));
  Backends backends;
  if (rows.size() == 1) {
    backends.sessions_and_locks = std::stoi(rows[0][0]);
    backends.monitors = std::stoi(rows[0][1]);
  }
  return backends;
}

Rows VersionRows(const std::string& dsn) {
  return Query(dsn, "SELECT version_num FROM alembic_version ORDER BY 1");
}

bool TableExists(const std::string& dsn, const std::string& table) {
  Rows rows = Query(dsn, absl::StrCat("SELECT to_regclass('", table, "') IS NOT NULL"));
  return !rows.empty() && rows[0][0] == "t";
}

std::string SiteName(int i) { return absl::StrCat("site-", i < 10 ? "0" : "", i); }

// ------------------------------------------------------------------- tests

TEST(FleetTest, UpgradesManySitesWithBoundedParallelismAndBackends) {
  constexpr int kSites = 30;
  constexpr int kParallel = 8;
  std::vector<std::unique_ptr<TestDatabase>> dbs;
  std::vector<Site> sites;
  for (int i = 0; i < kSites; ++i) {
    dbs.push_back(std::make_unique<TestDatabase>());
    ASSERT_TRUE(dbs.back()->ok());
    sites.push_back({SiteName(i), dbs.back()->dsn(),
                     absl::StrCat("region: ", i % 2 == 0 ? "eu" : "us", ", env: prod")});
  }
  Fleet fleet(sites, /*slow_revisions=*/false);
  ASSERT_TRUE(fleet.ok());
  // The pools warm in the background: one idle session per database.
  int baseline = SchemadBackends(dbs).sessions_and_locks;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(30);
       baseline != kSites && absl::Now() < deadline;) {
    absl::SleepFor(absl::Milliseconds(20));
    baseline = SchemadBackends(dbs).sessions_and_locks;
  }
  ASSERT_EQ(baseline, kSites) << "warm pooled sessions";

  std::atomic<bool> done{false};
  std::atomic<int> peak{0};
  std::atomic<int> peak_monitors{0};
  std::atomic<int> samples{0};
  std::thread sampler([&] {
    while (!done.load()) {
      const Backends now = SchemadBackends(dbs);
      peak.store(std::max(peak.load(), now.sessions_and_locks));
      peak_monitors.store(std::max(peak_monitors.load(), now.monitors));
      ++samples;
      absl::SleepFor(absl::Milliseconds(10));
    }
  });
  const FleetStream run = RunFleet(fleet.stub(), Upgrade("env=prod", kParallel));
  done.store(true);
  sampler.join();

  ASSERT_TRUE(run.status.ok()) << run.status.error_message();
  EXPECT_THAT(run.operation_id, HasSubstr("op-"));
  EXPECT_EQ(run.summary.succeeded(), kSites);
  EXPECT_EQ(run.summary.failed(), 0);
  EXPECT_LE(run.max_running, kParallel);
  EXPECT_GE(run.max_running, 2);
  for (int i = 0; i < kSites; ++i) {
    EXPECT_EQ(VersionRows(dbs[static_cast<size_t>(i)]->dsn()), (Rows{{"r3"}})) << SiteName(i);
    EXPECT_EQ(run.results.at(SiteName(i)).revisions_run(), 3);
  }
  // The design's bound: a running site uses its database's warm pooled
  // session, plus the engine's lock connection for the run (so at most one
  // backend more per running site), plus a BlockerMonitor connection only
  // while one of its statements has waited for half its lock_timeout.
  // A leak of one connection per site would exceed it.
  std::cerr << "backends: baseline " << baseline << ", peak " << peak.load() << " + "
            << peak_monitors.load() << " monitor(s), " << samples.load() << " samples\n";
  EXPECT_GT(samples.load(), 0);
  EXPECT_GE(peak.load(), baseline + 1);  // the sampler saw sites running
  EXPECT_LE(peak.load(), baseline + kParallel);
  EXPECT_LE(peak_monitors.load(), kParallel);
  // Afterwards only the warm pools remain.
  Backends after = SchemadBackends(dbs);
  for (const absl::Time deadline = absl::Now() + absl::Seconds(10);
       after.sessions_and_locks != kSites && absl::Now() < deadline;) {
    absl::SleepFor(absl::Milliseconds(20));
    after = SchemadBackends(dbs);
  }
  EXPECT_EQ(after.sessions_and_locks, kSites);

  // Per-site events are tagged with the site.
  const bool has_site_events =
      std::any_of(run.events.begin(), run.events.end(), [](const v1::OperationEvent& e) {
        return e.has_fleet() && e.fleet().kind() == v1::FleetEvent::KIND_SITE_EVENT &&
               e.fleet().event().has_revision_started() && !e.fleet().site().empty();
      });
  EXPECT_TRUE(has_site_events);

  // A label selector picks a subset; at head nothing runs.
  const FleetStream again = RunFleet(fleet.stub(), Upgrade("region=eu", kParallel));
  ASSERT_TRUE(again.status.ok()) << again.status.error_message();
  EXPECT_EQ(again.summary.sites_size(), kSites / 2);
  EXPECT_EQ(again.summary.succeeded(), kSites / 2);
  for (const v1::FleetSiteResult& r : again.summary.sites()) {
    EXPECT_EQ(r.revisions_run(), 0) << r.site();
  }

  // The fleet operation is an operation: watchable again by id.
  grpc::ClientContext context;
  v1::WatchOperationRequest watch;
  watch.set_operation_id(run.operation_id);
  auto reader = fleet.stub().WatchOperation(&context, watch);
  v1::OperationEvent event;
  size_t replayed = 0;
  bool saw_summary = false;
  while (reader->Read(&event)) {
    ++replayed;
    saw_summary =
        saw_summary || (event.has_fleet() && event.fleet().kind() == v1::FleetEvent::KIND_SUMMARY &&
                        event.fleet().summary().succeeded() == kSites);
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(replayed, run.events.size());
  EXPECT_TRUE(saw_summary);
}

// A site that cannot be reached while schemad starts (here: its database
// does not exist yet) gets its warm pooled session once it is back: the
// warm-up is retried, it does not wait for the site's first caller.
TEST(FleetTest, ASiteDownAtStartUpIsWarmOnceItIsBack) {
  TestDatabase anchor;
  ASSERT_TRUE(anchor.ok());
  const std::string late_name = anchor.name() + "_late";
  const std::string late_dsn =
      testing::ClusterDsn(anchor.cluster(), late_name, anchor.cluster().password);
  struct DropLate {
    ~DropLate() {
      testing::Exec(testing::AdminDsn(), "DROP DATABASE IF EXISTS " + name + " WITH (FORCE)");
    }
    std::string name;
  } drop_late{late_name};

  auto log = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(1000);
  auto log_text = [&log] { return absl::StrJoin(log->last_formatted(), ""); };
  server::ServerOptions options;
  options.log_sinks.push_back(log);
  options.log_level = spdlog::level::info;
  Fleet fleet({{"late", late_dsn, "env: prod"}}, /*slow_revisions=*/false, options);
  ASSERT_TRUE(fleet.ok());
  auto log_has = [&log_text](const std::string& text) {
    return [&log_text, text] { return absl::StrContains(log_text(), text); };
  };
  auto warm_sessions = [&] {
    Rows rows = Query(testing::AdminDsn(),
                      absl::StrCat("SELECT count(*) FROM pg_stat_activity WHERE datname = '",
                                   late_name, "' AND application_name LIKE 'schemad%'"));
    return rows.size() == 1 ? std::stoi(rows[0][0]) : -1;
  };
  ASSERT_TRUE(PollUntil(log_has("database not reachable yet name=late"))) << log_text();
  EXPECT_EQ(warm_sessions(), 0);

  testing::Exec(testing::AdminDsn(), "CREATE DATABASE " + late_name);
  EXPECT_TRUE(PollUntil([&] { return warm_sessions() == 1; }));
  EXPECT_TRUE(PollUntil(log_has("database reachable name=late failed_attempts="))) << log_text();
  EXPECT_THAT(log_text(), Not(HasSubstr(anchor.cluster().password)));
}

TEST(FleetTest, CanaryFailureStopsTheRolloutBeforeOtherSitesStart) {
  std::vector<std::unique_ptr<TestDatabase>> dbs;
  std::vector<Site> sites;
  for (int i = 0; i < 6; ++i) {
    dbs.push_back(std::make_unique<TestDatabase>());
    ASSERT_TRUE(dbs.back()->ok());
    sites.push_back({SiteName(i), dbs.back()->dsn(), i == 3 ? "canary: yes" : "env: prod"});
  }
  testing::Exec(dbs[3]->dsn(), "CREATE TABLE t3 (x int)");  // r3 fails on the canary
  Fleet fleet(sites, /*slow_revisions=*/false);
  ASSERT_TRUE(fleet.ok());

  v1::FleetRunRequest request = Upgrade("", 4);
  request.set_canary_selector("canary");
  const FleetStream run = RunFleet(fleet.stub(), request);
  EXPECT_EQ(run.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(run.summary.failed(), 1);
  EXPECT_EQ(run.summary.skipped(), 5);
  EXPECT_EQ(run.results.at(SiteName(3)).outcome(), v1::FleetSiteResult::OUTCOME_FAILED);
  EXPECT_THAT(run.results.at(SiteName(3)).error().message(), HasSubstr("already exists"));
  for (int i : {0, 1, 2, 4, 5}) {
    const v1::FleetSiteResult& r = run.results.at(SiteName(i));
    EXPECT_EQ(r.outcome(), v1::FleetSiteResult::OUTCOME_SKIPPED) << SiteName(i);
    EXPECT_THAT(r.error().message(), HasSubstr("canary")) << SiteName(i);
    EXPECT_FALSE(TableExists(dbs[static_cast<size_t>(i)]->dsn(), "t1")) << SiteName(i);
  }
  std::vector<std::string> started;
  for (const v1::OperationEvent& e : run.events) {
    if (e.has_fleet() && e.fleet().kind() == v1::FleetEvent::KIND_SITE_STARTED) {
      started.push_back(e.fleet().site());
    }
  }
  EXPECT_THAT(started, ::testing::ElementsAre(SiteName(3)));  // the canary, and only it
}

TEST(FleetTest, ContinueOnErrorWithBrokenUnreachableAndLockedSites) {
  std::vector<std::unique_ptr<TestDatabase>> dbs;
  std::vector<Site> sites;
  for (int i = 0; i < 10; ++i) {
    dbs.push_back(std::make_unique<TestDatabase>());
    ASSERT_TRUE(dbs.back()->ok());
    sites.push_back({SiteName(i), dbs.back()->dsn(), "env: prod"});
  }
  dbs.push_back(std::make_unique<TestDatabase>());
  ASSERT_TRUE(dbs.back()->ok());
  const std::string broken_dsn = dbs.back()->dsn();
  sites.push_back({"broken", broken_dsn, "env: prod"});
  testing::Exec(broken_dsn, "CREATE TABLE t3 (x int)");
  dbs.push_back(std::make_unique<TestDatabase>());
  ASSERT_TRUE(dbs.back()->ok());
  const std::string locked_dsn = dbs.back()->dsn();
  sites.push_back({"locked", locked_dsn, "env: prod"});
  const testing::PgCluster& cluster = dbs.back()->cluster();
  sites.push_back({"unreachable",
                   absl::StrCat("postgresql://postgres:", cluster.password,
                                "@127.0.0.1:", testing::UnusedLoopbackPort(), "/nowhere"),
                   "env: prod"});
  Fleet fleet(sites, /*slow_revisions=*/false);
  ASSERT_TRUE(fleet.ok());

  // The locked site is at r1; another session holds t1 while r2 wants it,
  // until the fleet has run.
  v1::FleetRunRequest first = Upgrade("name=locked", 1);
  first.set_target("r1");
  ASSERT_TRUE(RunFleet(fleet.stub(), first).status.ok());
  pqxx::connection holder(locked_dsn + "?application_name=ops-console");
  const std::string holder_pid = absl::StrCat(holder.backendpid());
  auto holding = std::make_unique<pqxx::work>(holder);
  holding->exec("LOCK TABLE t1 IN ACCESS EXCLUSIVE MODE");

  v1::FleetRunRequest request = Upgrade("env=prod", 4);
  request.set_continue_on_error(true);
  const FleetStream run = RunFleet(fleet.stub(), request);
  holding->abort();
  holding.reset();

  EXPECT_EQ(run.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(run.status.error_message(), HasSubstr("3 of 13 site(s) failed"));
  EXPECT_EQ(run.summary.succeeded(), 10);
  EXPECT_EQ(run.summary.failed(), 3);
  EXPECT_EQ(run.summary.skipped(), 0);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(run.results.at(SiteName(i)).outcome(), v1::FleetSiteResult::OUTCOME_SUCCEEDED);
    EXPECT_EQ(VersionRows(dbs[static_cast<size_t>(i)]->dsn()), (Rows{{"r3"}}));
  }
  const v1::FleetSiteResult& broken = run.results.at("broken");
  EXPECT_EQ(broken.outcome(), v1::FleetSiteResult::OUTCOME_FAILED);
  EXPECT_EQ(broken.error().code(), static_cast<int>(grpc::StatusCode::FAILED_PRECONDITION));
  EXPECT_THAT(broken.error().message(), HasSubstr("already exists"));
  EXPECT_EQ(VersionRows(broken_dsn), (Rows{{"r2"}}));  // r1, r2 applied; r3 rolled back

  const v1::FleetSiteResult& locked = run.results.at("locked");
  EXPECT_EQ(locked.outcome(), v1::FleetSiteResult::OUTCOME_FAILED);
  EXPECT_EQ(locked.error().code(), static_cast<int>(grpc::StatusCode::ABORTED))
      << locked.error().message();
  EXPECT_THAT(locked.error().message(), HasSubstr("locked"));
  // The site's error names who blocks it (lock_timeout: 1s, then 55P03).
  EXPECT_THAT(locked.error().message(),
              ::testing::AllOf(HasSubstr("SQLSTATE 55P03"),
                               HasSubstr(absl::StrCat("blocked by pid ", holder_pid,
                                                      " (ops-console) from 127.0.0.1, idle in "
                                                      "transaction: LOCK TABLE t1 IN ACCESS "
                                                      "EXCLUSIVE MODE")),
                               Not(HasSubstr(cluster.password))));
  EXPECT_EQ(VersionRows(locked_dsn), (Rows{{"r1"}}));

  const v1::FleetSiteResult& unreachable = run.results.at("unreachable");
  EXPECT_EQ(unreachable.outcome(), v1::FleetSiteResult::OUTCOME_FAILED);
  EXPECT_EQ(unreachable.error().code(), static_cast<int>(grpc::StatusCode::UNAVAILABLE))
      << unreachable.error().message();
  EXPECT_THAT(unreachable.error().message(), HasSubstr("unreachable"));
}

TEST(FleetTest, CancelMidFleetCancelsRunningSitesAndSkipsQueuedOnes) {
  std::vector<std::unique_ptr<TestDatabase>> dbs;
  std::vector<Site> sites;
  for (int i = 0; i < 8; ++i) {
    dbs.push_back(std::make_unique<TestDatabase>());
    ASSERT_TRUE(dbs.back()->ok());
    sites.push_back({SiteName(i), dbs.back()->dsn(), "env: prod"});
  }
  Fleet fleet(sites, /*slow_revisions=*/true);
  ASSERT_TRUE(fleet.ok());

  std::atomic<bool> cancel_sent{false};
  std::string op_id;
  const absl::Time start = absl::Now();
  const FleetStream run = RunFleet(fleet.stub(), Upgrade("", 2), [&](const v1::OperationEvent& e) {
    if (e.has_accepted()) {
      op_id = e.operation_id();
    }
    if (!cancel_sent.load() && e.has_fleet() &&
        e.fleet().kind() == v1::FleetEvent::KIND_SITE_EVENT &&
        e.fleet().event().has_statement_started() &&
        e.fleet().event().statement_started().revision() == "r2") {
      cancel_sent.store(true);
      grpc::ClientContext context;
      v1::CancelOperationRequest cancel;
      cancel.set_operation_id(op_id);
      v1::OperationInfo info;
      const grpc::Status status = fleet.stub().CancelOperation(&context, cancel, &info);
      EXPECT_TRUE(status.ok()) << status.error_message();
    }
  });
  EXPECT_TRUE(cancel_sent.load());
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_EQ(run.status.error_code(), grpc::StatusCode::CANCELLED) << run.status.error_message();
  EXPECT_EQ(run.summary.failed(), 0);
  EXPECT_EQ(run.summary.succeeded(), 0);  // r2 sleeps 2 s; the cancel comes at once
  EXPECT_GE(run.summary.cancelled(), 1);
  EXPECT_LE(run.summary.cancelled(), 2);  // at most the two running sites
  EXPECT_EQ(run.summary.cancelled() + run.summary.skipped(), 8);
  ASSERT_EQ(run.results.size(), 8u);
  for (int i = 0; i < 8; ++i) {
    SCOPED_TRACE(SiteName(i));
    const v1::FleetSiteResult& r = run.results.at(SiteName(i));
    const std::string& dsn = dbs[static_cast<size_t>(i)]->dsn();
    // Whatever the outcome: never r2 or r3, and r1's table exactly when r1
    // is the version.
    EXPECT_FALSE(TableExists(dsn, "t3"));
    EXPECT_EQ(Query(dsn,
                    "SELECT count(*) FROM information_schema.columns WHERE table_name = "
                    "'t1' AND column_name = 'b'"),
              (Rows{{"0"}}));
    const bool has_r1 = TableExists(dsn, "alembic_version") && VersionRows(dsn) == Rows{{"r1"}};
    EXPECT_EQ(TableExists(dsn, "t1"), has_r1);
    switch (r.outcome()) {
      case v1::FleetSiteResult::OUTCOME_SKIPPED:
        // Queued at the cancel: never started.
        EXPECT_THAT(r.error().message(), HasSubstr("cancelled"));
        EXPECT_FALSE(TableExists(dsn, "alembic_version"));
        break;
      case v1::FleetSiteResult::OUTCOME_CANCELLED:
        // The revision running at the cancel rolled back: r2 (r1 committed)
        // or, for a site that had only just started, r1 (nothing applied).
        // Also when the cancel landed in one of the executor's own
        // statements (creating the tables, BEGIN, the version row, history):
        // PostgreSQL's SQLSTATE 57014 there is the cancel.
        EXPECT_EQ(r.error().code(), static_cast<int>(grpc::StatusCode::CANCELLED))
            << r.error().message();
        EXPECT_THAT(r.error().message(), HasSubstr("cancel"));
        break;
      default:
        ADD_FAILURE() << "outcome " << v1::FleetSiteResult::Outcome_Name(r.outcome());
    }
  }
}

struct CliRun {
  int code = 0;
  std::string out;
  std::string err;
};

template <typename Fn>
CliRun Capture(Fn fn) {
  std::ostringstream out, err;
  const int code = fn(out, err);
  return {code, out.str(), err.str()};
}

TEST(FleetTest, SchemactlFleetVerbs) {
  std::vector<std::unique_ptr<TestDatabase>> dbs;
  std::vector<Site> sites;
  for (int i = 0; i < 4; ++i) {
    dbs.push_back(std::make_unique<TestDatabase>());
    ASSERT_TRUE(dbs.back()->ok());
    sites.push_back({SiteName(i), dbs.back()->dsn(), i == 3 ? "env: test" : "env: prod"});
  }
  testing::Exec(dbs[2]->dsn(), "CREATE TABLE t3 (x int)");
  Fleet fleet(sites, /*slow_revisions=*/false);
  ASSERT_TRUE(fleet.ok());
  cli::GlobalOptions global;
  global.who = "fleet-cli-test";
  cli::RemoteOptions remote;
  remote.server = fleet.address();
  remote.timeout = absl::Seconds(10);

  cli::FleetCliOptions options;
  options.action = "status";
  options.selector = "env=prod";
  CliRun run = Capture([&](std::ostream& out, std::ostream& err) {
    return cli::RunRemoteFleet(global, remote, options, out, err);
  });
  EXPECT_EQ(run.code, cli::kExitOk) << run.err;
  EXPECT_THAT(run.out, HasSubstr("3 site(s): 3 behind"));
  EXPECT_THAT(run.out, Not(HasSubstr(SiteName(3))));

  options.action = "upgrade";
  options.parallel = 2;
  options.continue_on_error = true;
  run = Capture([&](std::ostream& out, std::ostream& err) {
    return cli::RunRemoteFleet(global, remote, options, out, err);
  });
  EXPECT_EQ(run.code, cli::kExitFailed) << run.err;
  EXPECT_THAT(run.out, HasSubstr("2 succeeded, 1 failed, 0 skipped"));
  EXPECT_THAT(run.out, HasSubstr("already exists"));
  // The failed site shows where it stands (r1 and r2 committed before r3
  // failed), not a <base> it is not at (issue 14).
  EXPECT_THAT(run.out, HasSubstr(SiteName(2) + "  failed  at r2  ("));
  EXPECT_THAT(run.err, HasSubstr(SiteName(2) + ": failed at r2: "));
  EXPECT_THAT(run.err, HasSubstr(SiteName(0) + ": succeeded"));

  // `ops watch` of the finished fleet operation replays it with the
  // per-site view (issue 14), not only the operation's outcome.
  const size_t accepted = run.err.find("fleet operation op-");
  ASSERT_NE(accepted, std::string::npos) << run.err;
  const std::string op_id =
      run.err.substr(accepted + 16, run.err.find(' ', accepted + 16) - accepted - 16);
  cli::OpsOptions watch;
  watch.action = "watch";
  watch.operation_id = op_id;
  CliRun watched = Capture([&](std::ostream& out, std::ostream& err) {
    return cli::RunRemoteOps(global, remote, watch, out, err);
  });
  EXPECT_THAT(watched.err, AllOf(HasSubstr("stage "), HasSubstr(SiteName(0) + ": succeeded at "),
                                 HasSubstr(SiteName(2) + ": failed at ")))
      << op_id;

  // fleet validate names the revisions whose files no longer match what
  // was applied (issue 14), not only how many.
  testing::Exec(dbs[0]->dsn(),
                "UPDATE schemad_history SET checksum = repeat('0', 64), fingerprint = repeat('0', "
                "64) WHERE revision = 'r1'");
  options.action = "validate";
  options.selector = "name=site-00|site-01";
  run = Capture([&](std::ostream& out, std::ostream& err) {
    return cli::RunRemoteFleet(global, remote, options, out, err);
  });
  EXPECT_EQ(run.code, cli::kExitFailed) << run.out << run.err;
  EXPECT_THAT(
      run.out,
      AllOf(HasSubstr("1 applied revision(s) do not match their files: r1 (changed)"),
            HasSubstr("1 succeeded, 1 failed"), HasSubstr(SiteName(1) + "  succeeded  r3 -> r3")));

  options.action = "ensure-head";
  options.selector = "name=site-00|site-01";
  global.json = true;
  run = Capture([&](std::ostream& out, std::ostream& err) {
    return cli::RunRemoteFleet(global, remote, options, out, err);
  });
  EXPECT_EQ(run.code, cli::kExitOk) << run.err;
  EXPECT_THAT(run.out, HasSubstr("\"succeeded\":2"));
  EXPECT_THAT(run.out, HasSubstr("\"outcome\":\"succeeded\""));

  options.action = "status";
  options.selector = "";
  run = Capture([&](std::ostream& out, std::ostream& err) {
    return cli::RunRemoteFleet(global, remote, options, out, err);
  });
  EXPECT_EQ(run.code, cli::kExitOk) << run.err;
  EXPECT_THAT(run.out, HasSubstr("\"at head\":2"));
}

}  // namespace
}  // namespace schemad
