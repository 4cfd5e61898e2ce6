// How a control layer unit-tests its start-up without a server: the SDK's
// MockClientConnection (schemad/mocks/mock_client_connection.h) behind a
// schemad::Client. Built in the tree (ctest) and, against an installed SDK,
// by tests/consumer.
#include "control_layer_startup.h"

#include <memory>
#include <sstream>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schemad/client.h"
#include "schemad/mocks/mock_client_connection.h"

namespace {

using ::schemad_mocks::MockClientConnection;
using ::testing::_;
using ::testing::HasSubstr;
using ::testing::Return;

schemad::ClientOptions QuickRetries() {
  schemad::ClientOptions options;
  options.retry.initial_backoff = absl::Milliseconds(1);
  options.retry.max_backoff = absl::Milliseconds(1);
  return options;
}

TEST(ControlLayerStartup, StartsOnceSchemadIsBackAndTheDatabaseIsAtHead) {
  auto mock = std::make_shared<MockClientConnection>();
  EXPECT_CALL(*mock, EnsureHead("site-a", _, _))
      .WillOnce(Return(absl::UnavailableError("schemad restarting")))
      .WillOnce(Return(schemad::EnsureHeadResult{}));
  schemad::Client client(mock, QuickRetries());
  std::ostringstream log;
  EXPECT_TRUE(control_layer::SchemaReady(client, "site-a", absl::Seconds(10), log));
  EXPECT_THAT(log.str(), HasSubstr("database site-a is at head; starting"));
}

TEST(ControlLayerStartup, DoesNotStartWhenTheDatabaseNeedsAttention) {
  auto mock = std::make_shared<MockClientConnection>();
  EXPECT_CALL(*mock, EnsureHead("site-a", _, _))
      .WillOnce(Return(absl::FailedPreconditionError("revision b2 failed; needs attention")));
  schemad::Client client(mock, QuickRetries());
  std::ostringstream log;
  EXPECT_FALSE(control_layer::SchemaReady(client, "site-a", absl::Seconds(10), log));
  EXPECT_THAT(log.str(), HasSubstr("not at head: FAILED_PRECONDITION: revision b2 failed"));
}

}  // namespace
