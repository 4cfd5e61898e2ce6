// schemad under hostile and careless input (issue 9, defects 5 and 6): bytes
// that are not UTF-8 coming back from PostgreSQL, request fields of any size,
// and revisions with very many statements. Real servers on 127.0.0.1:0, real
// PostgreSQL, the C++ SDK (and the raw stub where the SDK would hide the wire).
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/cli/remote_commands.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "schemad/client.h"
#include "schemad/v1/schemad.grpc.pb.h"
#include "service/common/utf8.h"
#include "service/server/config.h"
#include "service/server/server.h"
#include "spdlog/sinks/ostream_sink.h"
#include "tests/testing/pg_fixture.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace schemad {
namespace {

using ::schemad::testing::Exec;
using ::schemad::testing::Query;
using ::schemad::testing::Rows;
using ::schemad::testing::StatusIs;
using ::schemad::testing::TempDir;
using ::schemad::testing::TestDatabase;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Le;
using ::testing::Not;
using ::testing::SizeIs;

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

// A database with SQL_ASCII encoding: PostgreSQL stores and returns bytes as
// they come, so a revision can make it send text that is not UTF-8 (as a
// server with another client_encoding would).
class SqlAsciiDatabase {
 public:
  SqlAsciiDatabase() {
    testing::PgCluster cluster;
    if (!testing::ReadPgCluster(&cluster)) {
      return;
    }
    name_ = absl::StrCat("schemad_t_ascii_", getpid(), "_", absl::ToUnixNanos(absl::Now()));
    Exec(testing::AdminDsn(), absl::StrCat("CREATE DATABASE ", name_,
                                           " ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' "
                                           "TEMPLATE template0"));
    dsn_ = testing::ClusterDsn(cluster, name_, cluster.password);
  }
  ~SqlAsciiDatabase() {
    if (!name_.empty()) {
      Exec(testing::AdminDsn(), absl::StrCat("DROP DATABASE IF EXISTS ", name_, " WITH (FORCE)"));
    }
  }
  bool ok() const { return !dsn_.empty(); }
  const std::string& dsn() const { return dsn_; }

 private:
  std::string name_;
  std::string dsn_;
};

// Log lines of a server, for the tests whose subject is what gets logged.
class LogCapture {
 public:
  spdlog::sink_ptr sink() { return std::make_shared<spdlog::sinks::ostream_sink_mt>(out_); }
  std::vector<std::string> Lines() {
    std::lock_guard<std::mutex> lock(mu_);
    return absl::StrSplit(out_.str(), '\n', absl::SkipEmpty());
  }

 private:
  std::mutex mu_;
  std::ostringstream out_;
};

class InputTest : public ::testing::Test {
 protected:
  void WriteRevision(const std::string& id, const std::string& revises, const std::string& up,
                     bool transactional = true) {
    dir_.Write(absl::StrCat("modax/", id, ".sql"),
               absl::StrCat("-- revision: ", id, "\n",
                            revises.empty() ? "" : absl::StrCat("-- revises: ", revises, "\n"),
                            transactional ? "" : "-- transactional: false\n", "-- message: ", id,
                            "\n\n-- +upgrade\n", up, "\n\n-- +downgrade\nSELECT 1;\n"));
  }

  void Start(const std::string& dsn, const std::string& extra = "") {
    std::filesystem::create_directories(dir_.path() + "/modax");
    dir_.Write("secrets/site-a", dsn);
    const std::string yaml = absl::StrCat(
        "listen: 127.0.0.1:0\n", extra,
        "\nmigration_sets:\n  - {name: modax, directory: modax}\n"
        "databases:\n  - name: site-a\n    migration_set: modax\n    dsn_file: secrets/site-a\n");
    server::ConfigSources sources;
    sources.base_dir = dir_.path();
    sources.getenv = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
    absl::StatusOr<server::LoadedConfig> config = server::ParseConfig(yaml, sources);
    ASSERT_TRUE(config.ok()) << config.status();
    server::ServerOptions options;
    options.log_sinks.push_back(log_.sink());
    options.log_level = spdlog::level::debug;
    absl::StatusOr<std::unique_ptr<server::SchemadServer>> started =
        server::SchemadServer::Start(*std::move(config), options);
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = *std::move(started);
    ClientOptions client_options;
    client_options.target = server_->address();
    client_options.retry.enabled = false;
    client_options.who = "input_pgtest";
    ASSERT_OK_AND_ASSIGN(client_, Client::Connect(client_options));
    stub_ = v1::Schemad::NewStub(
        grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
  }

  static std::unique_ptr<grpc::ClientContext> Context() {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return context;
  }

  // An Upgrade through the raw stub: the status, and the events read.
  grpc::Status RawUpgrade(const v1::UpgradeRequest& request,
                          std::vector<v1::OperationEvent>* events = nullptr) {
    std::unique_ptr<grpc::ClientContext> context = Context();
    std::unique_ptr<grpc::ClientReader<v1::OperationEvent>> reader =
        stub_->Upgrade(context.get(), request);
    v1::OperationEvent event;
    while (reader->Read(&event)) {
      if (events != nullptr) {
        events->push_back(event);
      }
    }
    return reader->Finish();
  }

  TempDir dir_;
  LogCapture log_;
  std::unique_ptr<server::SchemadServer> server_;
  std::unique_ptr<Client> client_;
  std::unique_ptr<v1::Schemad::Stub> stub_;
};

// ------------------------------------------------------------ defect 5

// Issue 9, defect 5: text that is not UTF-8 reached protobuf (and the CLI's
// JSON); the upgrade stream then hung after the operation had finished.
TEST_F(InputTest, InvalidUtf8FromPostgresReachesClientsAsReplacementCharacters) {
  SqlAsciiDatabase db;
  ASSERT_TRUE(db.ok());
  WriteRevision("a1", "", "CREATE TABLE t_a1 (id int);");
  // chr(255) in a SQL_ASCII database is the single byte 0xFF.
  WriteRevision("b2", "a1", "DO $$ BEGIN RAISE EXCEPTION 'broken %', chr(255); END $$;");
  ASSERT_NO_FATAL_FAILURE(Start(db.dsn()));

  std::vector<OperationEvent> events;
  CallOptions call;
  call.deadline = absl::Seconds(60);
  call.on_event = [&events](const OperationEvent& e) { events.push_back(e); };
  const absl::Time start = absl::Now();
  absl::StatusOr<OperationResult> result = client_->Upgrade("site-a", {}, call);
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));  // an answer, not the deadline
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kFailedPrecondition,
                               HasSubstr(absl::StrCat("broken ", kReplacement))));
  EXPECT_TRUE(IsValidUtf8(result.status().message()));
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().kind, OperationEvent::Kind::kOperationFinished);
  EXPECT_THAT(events.back().status.message(), HasSubstr(absl::StrCat("broken ", kReplacement)));
  const std::string op_id = events.front().operation_id;

  // The replay, the operation list and the history say the same, validly.
  ASSERT_OK_AND_ASSIGN(std::vector<OperationInfo> ops, client_->ListOperations());
  ASSERT_THAT(ops, SizeIs(1));
  EXPECT_THAT(ops[0].error.message(), HasSubstr(absl::StrCat("broken ", kReplacement)));
  EXPECT_THAT(client_->WatchOperation(op_id),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(kReplacement)));
  ASSERT_OK_AND_ASSIGN(std::vector<HistoryEntry> history, client_->History("site-a"));
  ASSERT_FALSE(history.empty());
  EXPECT_EQ(history.front().outcome, "failed");
  EXPECT_THAT(history.front().error, HasSubstr(absl::StrCat("broken ", kReplacement)));

  // And the CLI's --json output is valid JSON.
  cli::GlobalOptions global;
  global.json = true;
  cli::RemoteOptions remote;
  remote.server = server_->address();
  remote.database = "site-a";
  remote.timeout = absl::Seconds(30);
  std::ostringstream out, err;
  cli::HistoryOptions history_options;
  history_options.log = true;
  EXPECT_EQ(cli::RunRemoteHistory(global, remote, history_options, out, err), cli::kExitOk)
      << err.str();
  const nlohmann::json json = nlohmann::json::parse(out.str(), nullptr, false);
  ASSERT_FALSE(json.is_discarded()) << out.str();
  EXPECT_THAT(json.dump(), HasSubstr("broken"));
}

TEST_F(InputTest, InvalidUtf8InANeedsAttentionMarkIsRepaired) {
  SqlAsciiDatabase db;
  ASSERT_TRUE(db.ok());
  WriteRevision("a1", "",
                "CREATE TABLE t_a1 (id int);\n"
                "DO $$ BEGIN RAISE EXCEPTION 'half done %', chr(254); END $$;",
                /*transactional=*/false);
  ASSERT_NO_FATAL_FAILURE(Start(db.dsn()));
  CallOptions call;
  call.deadline = absl::Seconds(60);
  EXPECT_THAT(client_->Upgrade("site-a", {}, call),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(kReplacement)));
  ASSERT_OK_AND_ASSIGN(DatabaseStatus status, client_->GetStatus("site-a"));
  ASSERT_TRUE(status.needs_attention.has_value());
  EXPECT_THAT(status.needs_attention->error, HasSubstr(absl::StrCat("half done ", kReplacement)));
  ASSERT_OK_AND_ASSIGN(std::vector<DatabaseInfo> dbs, client_->ListDatabases({{}, true}));
  ASSERT_THAT(dbs, SizeIs(1));
  ASSERT_TRUE(dbs[0].status.has_value() && dbs[0].status->needs_attention.has_value());
  EXPECT_THAT(dbs[0].status->needs_attention->error, HasSubstr(kReplacement));
}

// ------------------------------------------------------------ defect 6

// Issue 9, defect 6: request fields had no bounds; twenty 120 KB targets,
// kept by their operations for 24 hours, made ListOperations fail for
// everyone ("Received message larger than max").
TEST_F(InputTest, OversizedFieldsAreRefusedNamingFieldAndLimit) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteRevision("a1", "", "SELECT 1;");
  ASSERT_NO_FATAL_FAILURE(Start(db.dsn()));
  const std::string big(120 << 10, 'x');

  UpgradeRequest upgrade;
  upgrade.target = big;
  EXPECT_THAT(client_->Upgrade("site-a", upgrade),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("UpgradeRequest.target has 122880 bytes; the limit is 512")));
  DowngradeRequest downgrade;
  downgrade.target = big;
  EXPECT_THAT(client_->Downgrade("site-a", downgrade),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("DowngradeRequest.target has 122880 bytes; the limit is 512")));
  MergeRequest merge;
  merge.revision = big;
  EXPECT_THAT(client_->Merge("site-a", merge),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("MergeRequest.revision")));
  EXPECT_THAT(client_->EnsureHead(std::string(200, 'd')),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("EnsureHeadRequest.database has 200 bytes; the limit is 128")));
  EXPECT_THAT(client_->Stamp("site-a", std::vector<std::string>(65, "heads")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("StampRequest.revisions has 65 entries; the limit is 64")));
  EXPECT_THAT(client_->Stamp("site-a", {"heads", big}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("StampRequest.revisions[1] has 122880 bytes")));
  PlanRequest plan;
  plan.migration_set = "modax";
  plan.from_rows = std::vector<std::string>(300, "a1");
  EXPECT_THAT(client_->Plan(plan),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("PlanRequest.from_rows has 300 entries; the limit is 256")));
  EXPECT_THAT(client_->History("site-a", 20000),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("HistoryRequest.limit is 20000; the limit is 10000")));
  EXPECT_THAT(client_->WatchOperation(std::string(100, 'o')),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("WatchOperationRequest.operation_id has 100 bytes")));
  EXPECT_THAT(client_->CancelOperation(std::string(100, 'o')),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("CancelOperationRequest.operation_id has 100 bytes")));
  ListDatabasesRequest list;
  for (int i = 0; i < 65; ++i) {
    list.label_selector[absl::StrCat("k", i)] = "v";
  }
  EXPECT_THAT(client_->ListDatabases(list),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("ListDatabasesRequest.label_selector has 65 entries")));
  FleetRequest fleet;
  fleet.selector = std::string(2000, 's');
  EXPECT_THAT(client_->FleetRun(fleet),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("FleetRunRequest.selector has 2000 bytes; the limit is 1024")));
  FleetRequest parallel;
  parallel.max_parallel = 100000;
  EXPECT_THAT(client_->FleetRun(parallel),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("FleetRunRequest.max_parallel is 100000; the limit is 1000")));
  UpgradeRequest waits;
  waits.lock_wait = absl::Hours(24 * 365);
  EXPECT_THAT(client_->Upgrade("site-a", waits),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("UpgradeRequest.lock_wait is 31536000s; the limit is 604800s")));
  // A line break in a target would forge log lines.
  UpgradeRequest forged;
  forged.target = "heads\nlevel=error msg=forged";
  EXPECT_THAT(client_->Upgrade("site-a", forged),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("UpgradeRequest.target holds a control character (byte 0x0A")));
  v1::ListOperationsRequest page;
  page.set_limit(501);
  v1::ListOperationsResponse ignored;
  grpc::Status raw = stub_->ListOperations(Context().get(), page, &ignored);
  EXPECT_EQ(raw.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(raw.error_message(), HasSubstr("ListOperationsRequest.limit is 501"));

  // Nothing was stored: no operation was started by any of them.
  ASSERT_OK_AND_ASSIGN(std::vector<OperationInfo> ops, client_->ListOperations());
  EXPECT_THAT(ops, IsEmpty());
  // And no log line carries the oversized values.
  for (const std::string& line : log_.Lines()) {
    EXPECT_LT(line.size(), 4096u) << line.substr(0, 200);
  }
}

TEST_F(InputTest, RequestsOverTheMessageLimitAreRefusedByGrpc) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteRevision("a1", "", "SELECT 1;");
  ASSERT_NO_FATAL_FAILURE(Start(db.dsn()));
  v1::UpgradeRequest request;
  request.set_database("site-a");
  request.set_target(std::string(3 << 20, 'x'));  // 3 MB: under gRPC's default of 4 MiB
  const grpc::Status status = RawUpgrade(request);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("262144"));
  ASSERT_OK_AND_ASSIGN(std::vector<OperationInfo> ops, client_->ListOperations());
  EXPECT_THAT(ops, IsEmpty());
}

TEST_F(InputTest, OpsListAnswersAfterManyLargeRequestsAndPages) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  WriteRevision("a1", "", "SELECT 1;");
  // An error message of 100 KB: kept with its operation, it is cut.
  WriteRevision("b2", "a1", "DO $$ BEGIN RAISE EXCEPTION '%', repeat('e', 100000); END $$;");
  ASSERT_NO_FATAL_FAILURE(Start(db.dsn()));
  for (int i = 0; i < 20; ++i) {
    v1::UpgradeRequest request;
    request.set_database("site-a");
    request.set_target(std::string(120 << 10, 'x'));
    EXPECT_EQ(RawUpgrade(request).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  // The call's status travels in metadata (8 KiB for clients): cut to 1 KiB;
  // a 100 KB message used to replace the error with a metadata-size error.
  absl::StatusOr<OperationResult> failed_upgrade = client_->Upgrade("site-a");
  EXPECT_THAT(failed_upgrade, StatusIs(absl::StatusCode::kFailedPrecondition,
                                       AllOf(HasSubstr("eeee"), HasSubstr("bytes in all)"))));
  EXPECT_LT(failed_upgrade.status().message().size(), 1100u);
  for (int i = 0; i < 24; ++i) {
    ASSERT_OK(client_->Stamp("site-a", {i % 2 == 0 ? "a1" : "base"}).status());
  }

  // One answer for everyone, within gRPC's default 4 MiB, the long error cut.
  v1::ListOperationsRequest request;
  v1::ListOperationsResponse response;
  grpc::Status status = stub_->ListOperations(Context().get(), request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.operations_size(), 25);
  EXPECT_TRUE(response.next_page_token().empty());
  const v1::OperationInfo& failed = response.operations(24);
  EXPECT_EQ(failed.state(), v1::OPERATION_STATE_FAILED);
  EXPECT_THAT(failed.error().message(),
              AllOf(HasSubstr("eeee"), HasSubstr("bytes in all)"), SizeIs(Le(8192 + 64))));

  // Pages of 10: every operation once, newest first, across operations
  // started between the pages.
  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    v1::ListOperationsRequest paged;
    paged.set_limit(10);
    paged.set_page_token(token);
    v1::ListOperationsResponse page;
    status = stub_->ListOperations(Context().get(), paged, &page);
    ASSERT_TRUE(status.ok()) << status.error_message();
    for (const v1::OperationInfo& op : page.operations()) {
      seen.push_back(op.operation_id());
    }
    token = page.next_page_token();
    if (++pages == 1) {
      ASSERT_OK(client_->Stamp("site-a", {"a1"}).status());  // newer: not on later pages
    }
  } while (!token.empty());
  EXPECT_EQ(pages, 3);
  ASSERT_THAT(seen, SizeIs(25));
  for (int i = 0; i < 25; ++i) {
    EXPECT_EQ(seen[i], response.operations(i).operation_id());
  }
  v1::ListOperationsRequest bad_token;
  bad_token.set_page_token("nonsense");
  status = stub_->ListOperations(Context().get(), bad_token, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // The SDK follows the pages.
  ASSERT_OK_AND_ASSIGN(std::vector<OperationInfo> all, client_->ListOperations());
  EXPECT_THAT(all, SizeIs(26));
  // Log lines stay bounded although the error is 100 KB.
  for (const std::string& line : log_.Lines()) {
    EXPECT_LT(line.size(), 4096u) << line.substr(0, 200);
  }
}

// Issue 9, defect 6: every event of an operation was kept (a 530,000-statement
// revision left schemad at 340 MB, 524 MB after one `ops watch` replay).
TEST_F(InputTest, LongRevisionsKeepABoundedNumberOfEvents) {
  TestDatabase db;
  ASSERT_TRUE(db.ok());
  std::string five_thousand, fifty_thousand;
  for (int i = 0; i < 5000; ++i) {
    absl::StrAppend(&five_thousand, "SELECT 1;\n");
  }
  for (int i = 0; i < 50000; ++i) {
    absl::StrAppend(&fifty_thousand, "SELECT 2;\n");
  }
  WriteRevision("a1", "", five_thousand);
  WriteRevision("b2", "a1", fifty_thousand);
  ASSERT_NO_FATAL_FAILURE(Start(db.dsn()));

  // Live, a stream delivers every event or says how many it skipped.
  int64_t live = 0;
  int64_t live_dropped = 0;
  CallOptions call;
  call.deadline = absl::Minutes(5);
  call.on_event = [&](const OperationEvent& e) {
    ++live;
    live_dropped += e.events_dropped_before;
  };
  UpgradeRequest to_a1;
  to_a1.target = "a1";
  ASSERT_OK_AND_ASSIGN(OperationResult small, client_->Upgrade("site-a", to_a1, call));
  ASSERT_OK_AND_ASSIGN(OperationResult large, client_->Upgrade("site-a", {}, call));
  EXPECT_EQ(large.revisions_run, 1);
  // accepted, started, lock acquired, revision started/finished, finished.
  EXPECT_EQ(live + live_dropped, (5000 + 6) + (50000 + 6));

  // What the operations keep does not grow with the revision's size.
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<server::Operation> small_op,
                       server_->operations().Find(small.operation_id));
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<server::Operation> large_op,
                       server_->operations().Find(large.operation_id));
  EXPECT_EQ(small_op->emitted_events(), 5006);
  EXPECT_EQ(large_op->emitted_events(), 50006);
  EXPECT_EQ(small_op->kept_events(), 256 + 6);
  EXPECT_EQ(large_op->kept_events(), 256 + 6);

  // The list says so; a replay delivers what was kept and the gap.
  ASSERT_OK_AND_ASSIGN(std::vector<OperationInfo> ops, client_->ListOperations());
  ASSERT_THAT(ops, SizeIs(2));
  EXPECT_EQ(ops[0].operation_id, large.operation_id);
  EXPECT_EQ(ops[0].event_count, 50006);
  EXPECT_EQ(ops[0].events_dropped, 50006 - (256 + 6));
  std::vector<OperationEvent> replay;
  CallOptions watch;
  watch.on_event = [&replay](const OperationEvent& e) { replay.push_back(e); };
  ASSERT_OK_AND_ASSIGN(OperationResult watched, client_->WatchOperation(large.operation_id, watch));
  EXPECT_THAT(watched.heads, ElementsAre("b2"));
  ASSERT_THAT(replay, SizeIs(256 + 6));
  int64_t dropped = 0;
  for (size_t i = 0; i < replay.size(); ++i) {
    dropped += replay[i].events_dropped_before;
    const int64_t previous = i == 0 ? -1 : replay[i - 1].sequence;
    EXPECT_EQ(replay[i].sequence, previous + 1 + replay[i].events_dropped_before);
  }
  EXPECT_EQ(dropped, 50006 - (256 + 6));
  // Summary events are never dropped: the revision's end and the finish come last.
  EXPECT_EQ(replay[replay.size() - 2].kind, OperationEvent::Kind::kRevisionFinished);
  EXPECT_EQ(replay.back().kind, OperationEvent::Kind::kOperationFinished);
  EXPECT_EQ(replay[replay.size() - 2].events_dropped_before, 50000 - 256);

  // `ops watch` says how many events it does not show.
  cli::GlobalOptions global;
  cli::RemoteOptions remote;
  remote.server = server_->address();
  remote.timeout = absl::Seconds(30);
  cli::OpsOptions ops_watch;
  ops_watch.action = "watch";
  ops_watch.operation_id = large.operation_id;
  std::ostringstream out, err;
  EXPECT_EQ(cli::RunRemoteOps(global, remote, ops_watch, out, err), cli::kExitOk) << err.str();
  EXPECT_THAT(err.str(), HasSubstr(absl::StrCat("(", 50000 - 256,
                                                " statement or lock-wait events "
                                                "not shown")));
}

}  // namespace
}  // namespace schemad
