// The SDK's streamed calls against a scripted server (real gRPC on
// 127.0.0.1:0, a fake Schemad handler): whatever the server sends, a call
// ends with a status instead of hanging.
#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schemad/client.h"
#include "schemad/v1/schemad.grpc.pb.h"
#include "tests/testing/status_matchers.h"

namespace schemad {
namespace {

using ::schemad::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kOperationId[] = "op-00000000000000ab";

v1::OperationEvent Event(int64_t sequence) {
  v1::OperationEvent event;
  event.set_operation_id(kOperationId);
  event.set_database("site-a");
  event.set_sequence(sequence);
  return event;
}

// Upgrade answers with the scripted events, then `status`.
class ScriptedSchemad final : public v1::Schemad::Service {
 public:
  ScriptedSchemad(std::vector<v1::OperationEvent> events, grpc::Status status)
      : events_(std::move(events)), status_(std::move(status)) {}

  grpc::Status Upgrade(grpc::ServerContext*, const v1::UpgradeRequest*,
                       grpc::ServerWriter<v1::OperationEvent>* writer) override {
    for (const v1::OperationEvent& event : events_) {
      if (!writer->Write(event)) {
        break;
      }
    }
    return status_;
  }

 private:
  std::vector<v1::OperationEvent> events_;
  grpc::Status status_;
};

class SdkStreamTest : public ::testing::Test {
 protected:
  void Serve(std::vector<v1::OperationEvent> events, grpc::Status status = grpc::Status::OK) {
    service_ = std::make_unique<ScriptedSchemad>(std::move(events), std::move(status));
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ClientOptions options;
    options.target = absl::StrCat("127.0.0.1:", port);
    options.retry.enabled = false;
    ASSERT_OK_AND_ASSIGN(client_, Client::Connect(options));
  }
  void TearDown() override {
    client_.reset();
    if (server_ != nullptr) {
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    }
  }

  std::unique_ptr<ScriptedSchemad> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<Client> client_;
};

// Issue 9, defect 5: `schemactl --server ... upgrade` hung after the operation
// had finished when an event carried invalid UTF-8 (a revision's message):
// gRPC's typed reader reported only "no more messages" for the event that did
// not parse, and Finish then waited for the status behind the unread events.
TEST_F(SdkStreamTest, AnEventThatDoesNotParseEndsTheCallAtOnce) {
  std::vector<v1::OperationEvent> events;
  events.push_back(Event(0));
  events.back().mutable_accepted()->set_target("heads");
  events.push_back(Event(1));
  v1::PlannedStep* step = events.back().mutable_started()->add_plan();
  step->set_revision("a1");
  step->set_message("bad \xff");  // serialised anyway; no client can parse it
  for (int i = 0; i < 50; ++i) {
    events.push_back(Event(2 + i));
    events.back().mutable_statement_started()->set_statement_index(i);
  }
  events.push_back(Event(52));
  events.back().mutable_finished()->set_state(v1::OPERATION_STATE_SUCCEEDED);
  Serve(std::move(events));

  std::vector<int64_t> seen;
  CallOptions call;
  call.deadline = absl::Seconds(60);
  call.on_event = [&seen](const OperationEvent& e) { seen.push_back(e.sequence); };
  const absl::Time start = absl::Now();
  absl::StatusOr<OperationResult> result = client_->Upgrade("site-a", {}, call);
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));  // not the deadline
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kInternal,
                               AllOf(HasSubstr("not a valid schemad.v1.OperationEvent"),
                                     HasSubstr("after event 0"), HasSubstr(kOperationId))));
  EXPECT_THAT(seen, ElementsAre(0));
}

TEST_F(SdkStreamTest, AnEventThatDoesNotParseFirstEndsTheCallToo) {
  std::vector<v1::OperationEvent> events;
  events.push_back(Event(0));
  events.back().mutable_accepted()->set_who("caf\xe9");
  for (int i = 1; i < 20; ++i) {
    events.push_back(Event(i));
    events.back().mutable_statement_started()->set_statement_index(i);
  }
  Serve(std::move(events));
  CallOptions call;
  call.deadline = absl::Seconds(60);
  const absl::Time start = absl::Now();
  EXPECT_THAT(client_->Upgrade("site-a", {}, call),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("after no event")));
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
}

TEST_F(SdkStreamTest, ValidStreamGivesTheResultAndTheDroppedCounts) {
  std::vector<v1::OperationEvent> events;
  events.push_back(Event(0));
  events.back().mutable_accepted()->set_target("heads");
  events.push_back(Event(1));
  events.back().mutable_started()->add_rows_before("a1");
  events.push_back(Event(7));
  events.back().set_events_dropped_before(5);
  events.back().mutable_statement_started()->set_statement_index(6);
  events.push_back(Event(8));
  events.back().mutable_finished()->set_state(v1::OPERATION_STATE_SUCCEEDED);
  events.back().mutable_finished()->add_heads("b2");
  events.back().mutable_finished()->set_revisions_run(1);
  Serve(std::move(events));

  std::vector<int64_t> dropped;
  CallOptions call;
  call.on_event = [&dropped](const OperationEvent& e) {
    dropped.push_back(e.events_dropped_before);
  };
  ASSERT_OK_AND_ASSIGN(OperationResult result, client_->Upgrade("site-a", {}, call));
  EXPECT_EQ(result.operation_id, kOperationId);
  EXPECT_THAT(result.rows_before, ElementsAre("a1"));
  EXPECT_THAT(result.heads, ElementsAre("b2"));
  EXPECT_EQ(result.revisions_run, 1);
  EXPECT_THAT(dropped, ElementsAre(0, 0, 5, 0));
}

TEST_F(SdkStreamTest, ServerErrorWithoutEventsIsTheCallsStatus) {
  Serve({}, grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown database \"site-z\""));
  EXPECT_THAT(client_->Upgrade("site-z"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("site-z")));
}

TEST_F(SdkStreamTest, ServerErrorAfterEventsIsTheCallsStatus) {
  std::vector<v1::OperationEvent> events;
  events.push_back(Event(0));
  events.back().mutable_accepted()->set_target("heads");
  events.push_back(Event(1));
  events.back().mutable_finished()->set_state(v1::OPERATION_STATE_FAILED);
  Serve(std::move(events), grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "SQL error"));
  EXPECT_THAT(client_->Upgrade("site-a"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("SQL error")));
}

}  // namespace
}  // namespace schemad
