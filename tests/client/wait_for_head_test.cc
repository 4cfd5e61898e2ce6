// WaitForHead's retry loop over a Client whose connection is the shipped
// gmock (schemad/mocks/mock_client_connection.h): which errors it retries,
// which it returns at once, and what its deadline error says. The same loop
// runs over the gRPC connection in ServerTest.WaitForHead* and sdk_consumer.
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schemad/client.h"
#include "schemad/mocks/mock_client_connection.h"
#include "tests/testing/status_matchers.h"

namespace schemad {
namespace {

using ::schemad::testing::StatusIs;
using ::schemad_mocks::MockClientConnection;
using ::testing::_;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Return;
using ::testing::StrictMock;

// Short backoff, so that a retried test takes milliseconds.
ClientOptions FastRetries() {
  ClientOptions options;
  options.retry.initial_backoff = absl::Milliseconds(1);
  options.retry.max_backoff = absl::Milliseconds(2);
  return options;
}

TEST(WaitForHeadTest, RetriesWhatMayPassAndReturnsOkAtHead) {
  auto mock = std::make_shared<StrictMock<MockClientConnection>>();
  EXPECT_CALL(*mock, EnsureHead("site-a", _, _))
      .WillOnce(Return(absl::UnavailableError("schemad restarting")))
      .WillOnce(Return(absl::AbortedError("lock_timeout")))
      .WillOnce(Return(absl::ResourceExhaustedError("overloaded")))
      .WillOnce(Return(absl::DeadlineExceededError("lock wait")))
      .WillOnce(Return(EnsureHeadResult{}));
  Client client(mock, FastRetries());
  EXPECT_TRUE(WaitForHead(client, "site-a", absl::Seconds(30)).ok());
}

TEST(WaitForHeadTest, EachAttemptGetsWhatIsLeftOfTheDeadline) {
  auto mock = std::make_shared<StrictMock<MockClientConnection>>();
  const absl::Time start = absl::Now();
  EXPECT_CALL(*mock, EnsureHead("site-a", _, _))
      .WillOnce([&](const std::string&, const EnsureHeadOptions& options,
                    const CallOptions& call) -> absl::StatusOr<EnsureHeadResult> {
        EXPECT_FALSE(options.no_apply);  // WaitForHead applies where the server allows
        EXPECT_GT(call.deadline, absl::Seconds(9));
        EXPECT_LE(call.deadline, absl::Seconds(10));
        return EnsureHeadResult{};
      });
  Client client(mock, FastRetries());
  EXPECT_TRUE(WaitForHead(client, "site-a", absl::Seconds(10)).ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST(WaitForHeadTest, ReturnsARefusalAtOnce) {
  for (const absl::Status& refusal :
       {absl::FailedPreconditionError("behind head and may not be upgraded here"),
        absl::NotFoundError("unknown database site-a"),
        absl::PermissionDeniedError("role reader may not apply"),
        absl::UnauthenticatedError("unknown token")}) {
    auto mock = std::make_shared<StrictMock<MockClientConnection>>();
    EXPECT_CALL(*mock, EnsureHead("site-a", _, _)).WillOnce(Return(refusal));
    Client client(mock, FastRetries());
    EXPECT_EQ(WaitForHead(client, "site-a", absl::Seconds(30)), refusal);
  }
}

TEST(WaitForHeadTest, DeadlineNamesTheOperationStillRunningAndTheLastError) {
  auto mock = std::make_shared<StrictMock<MockClientConnection>>();
  EXPECT_CALL(*mock, EnsureHead("site-a", _, _))
      .WillRepeatedly(Return(absl::DeadlineExceededError("lock wait of 1s ran out")));
  OperationInfo running;
  running.operation_id = "op-7";
  running.kind = OperationKind::kEnsureHead;
  running.target = "heads";
  running.who = "site-a-control-layer";
  running.state = OperationState::kRunning;
  running.current_revision = "b2";
  running.step_index = 1;
  running.step_count = 3;
  EXPECT_CALL(*mock, ListOperations("site-a", /*running_only=*/true, /*limit=*/1, _))
      .WillOnce([&](const std::string&, bool, int,
                    const CallOptions& call) -> absl::StatusOr<std::vector<OperationInfo>> {
        EXPECT_LE(call.deadline, absl::Seconds(1));  // a short question past the deadline
        return std::vector<OperationInfo>{running};
      });
  Client client(mock, FastRetries());
  EXPECT_THAT(WaitForHead(client, "site-a", absl::Milliseconds(50)),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       AllOf(HasSubstr("database site-a did not reach head within 50ms"),
                             HasSubstr("still running on the server: operation op-7 "
                                       "(ensure-head heads, by site-a-control-layer)"),
                             HasSubstr("revision b2, step 2 of 3"),
                             HasSubstr("last error: DEADLINE_EXCEEDED: lock wait of 1s ran out"))));
}

TEST(WaitForHeadTest, DoesNotAskAnUnreachableServerWhatStillRuns) {
  // StrictMock: a ListOperations call would fail the test.
  auto mock = std::make_shared<StrictMock<MockClientConnection>>();
  EXPECT_CALL(*mock, EnsureHead("site-a", _, _))
      .WillRepeatedly(Return(absl::UnavailableError("connection refused")));
  Client client(mock, FastRetries());
  EXPECT_THAT(WaitForHead(client, "site-a", absl::Milliseconds(50)),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       AllOf(HasSubstr("last error: UNAVAILABLE: connection refused"),
                             Not(HasSubstr("still running")))));
}

// The last attempt, cut short by the wait's own deadline while it connected,
// does not hide why the attempts before it failed.
TEST(WaitForHeadTest, AnAttemptCutShortByTheDeadlineKeepsTheErrorBeforeIt) {
  auto mock = std::make_shared<StrictMock<MockClientConnection>>();
  EXPECT_CALL(*mock, EnsureHead("site-a", _, _))
      .WillOnce(Return(absl::UnavailableError("connection refused")))
      .WillRepeatedly([](const std::string&, const EnsureHeadOptions&,
                         const CallOptions& call) -> absl::StatusOr<EnsureHeadResult> {
        absl::SleepFor(call.deadline);  // the whole remaining deadline
        return absl::DeadlineExceededError("Deadline Exceeded");
      });
  Client client(mock, FastRetries());
  EXPECT_THAT(WaitForHead(client, "site-a", absl::Milliseconds(50)),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       AllOf(HasSubstr("last error: UNAVAILABLE: connection refused"),
                             Not(HasSubstr("still running")))));
}

TEST(ClientTest, ForwardsEachCallToItsConnectionWithItsArguments) {
  auto mock = std::make_shared<StrictMock<MockClientConnection>>();
  CallOptions call;
  call.deadline = absl::Seconds(7);
  const auto has_deadline = [](absl::Duration d) {
    return ::testing::Field(&CallOptions::deadline, d);
  };
  EXPECT_CALL(*mock, Stamp("site-a", std::vector<std::string>{"a1", "b1"}, true,
                           has_deadline(absl::Seconds(7))))
      .WillOnce(Return(absl::InvalidArgumentError("unknown revision b1")));
  EXPECT_CALL(*mock, History("site-a", 25, has_deadline(absl::ZeroDuration())))
      .WillOnce(Return(std::vector<HistoryEntry>(2)));
  EXPECT_CALL(*mock, CheckHealth("modax", _)).WillOnce(Return(true));
  Client client(mock);
  EXPECT_THAT(client.Stamp("site-a", {"a1", "b1"}, /*purge=*/true, call),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown revision b1")));
  absl::StatusOr<std::vector<HistoryEntry>> history = client.History("site-a", 25);
  ASSERT_TRUE(history.ok());
  EXPECT_EQ(history->size(), 2u);
  absl::StatusOr<bool> serving = client.CheckHealth("modax");
  ASSERT_TRUE(serving.ok());
  EXPECT_TRUE(*serving);
}

}  // namespace
}  // namespace schemad
