// A gmock ClientConnection, for unit tests of code that uses schemad::Client
// (a control layer's start-up, say) without a server. Installed with the SDK;
// the test links GTest::gmock.
//
//   #include "schemad/mocks/mock_client_connection.h"
//
//   auto mock = std::make_shared<schemad_mocks::MockClientConnection>();
//   EXPECT_CALL(*mock, EnsureHead)
//       .WillOnce(testing::Return(absl::UnavailableError("schemad restarting")))
//       .WillOnce(testing::Return(schemad::EnsureHeadResult{}));
//   schemad::Client client(mock);
//   EXPECT_TRUE(schemad::WaitForHead(client, "site-a", absl::Seconds(5)).ok());
//
// A call with no expectation returns gmock's default: an absl::StatusOr
// holding UNKNOWN, so an unexpected call fails loudly, not silently.
#ifndef SCHEMAD_CLIENT_SDK_SCHEMAD_MOCKS_MOCK_CLIENT_CONNECTION_H_
#define SCHEMAD_CLIENT_SDK_SCHEMAD_MOCKS_MOCK_CLIENT_CONNECTION_H_

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "schemad/client.h"

namespace schemad_mocks {

class MockClientConnection : public schemad::ClientConnection {
 public:
  MOCK_METHOD(absl::StatusOr<schemad::EnsureHeadResult>, EnsureHead,
              (const std::string&, const schemad::EnsureHeadOptions&, const schemad::CallOptions&),
              (override));
  MOCK_METHOD(absl::StatusOr<schemad::OperationResult>, Upgrade,
              (const std::string&, const schemad::UpgradeRequest&, const schemad::CallOptions&),
              (override));
  MOCK_METHOD(absl::StatusOr<schemad::OperationResult>, Downgrade,
              (const std::string&, const schemad::DowngradeRequest&, const schemad::CallOptions&),
              (override));
  MOCK_METHOD(absl::StatusOr<schemad::OperationResult>, Merge,
              (const std::string&, const schemad::MergeRequest&, const schemad::CallOptions&),
              (override));
  MOCK_METHOD(absl::StatusOr<schemad::FleetSummary>, FleetRun,
              (const schemad::FleetRequest&, const schemad::CallOptions&), (override));
  MOCK_METHOD(absl::StatusOr<schemad::OperationResult>, WatchOperation,
              (const std::string&, const schemad::CallOptions&), (override));
  MOCK_METHOD(absl::StatusOr<schemad::OperationResult>, Stamp,
              (const std::string&, const std::vector<std::string>&, bool,
               const schemad::CallOptions&),
              (override));
  MOCK_METHOD(absl::StatusOr<schemad::OperationResult>, Resolve,
              (const std::string&, bool, const schemad::CallOptions&), (override));
  MOCK_METHOD(absl::StatusOr<schemad::PlanResult>, Plan,
              (const schemad::PlanRequest&, const schemad::CallOptions&), (override));
  MOCK_METHOD(absl::StatusOr<schemad::DatabaseStatus>, GetStatus,
              (const std::string&, const schemad::CallOptions&), (override));
  MOCK_METHOD(absl::StatusOr<std::vector<schemad::HistoryEntry>>, History,
              (const std::string&, int, const schemad::CallOptions&), (override));
  MOCK_METHOD(absl::StatusOr<schemad::MigrationSetInfo>, DescribeMigrationSet,
              (const std::string&, const std::string&, const schemad::CallOptions&), (override));
  MOCK_METHOD(absl::StatusOr<std::vector<schemad::DatabaseInfo>>, ListDatabases,
              (const schemad::ListDatabasesRequest&, const schemad::CallOptions&), (override));
  MOCK_METHOD(absl::StatusOr<schemad::ValidationResult>, Validate,
              (const std::string&, const schemad::CallOptions&), (override));
  MOCK_METHOD(absl::StatusOr<schemad::RepairResult>, Repair,
              (const std::string&, const schemad::CallOptions&), (override));
  MOCK_METHOD(absl::StatusOr<schemad::DriftResult>, Drift,
              (const std::string&, const schemad::CallOptions&), (override));
  MOCK_METHOD(absl::StatusOr<std::vector<schemad::OperationInfo>>, ListOperations,
              (const std::string&, bool, int, const schemad::CallOptions&), (override));
  MOCK_METHOD(absl::StatusOr<schemad::OperationInfo>, CancelOperation,
              (const std::string&, const schemad::CallOptions&), (override));
  MOCK_METHOD(absl::StatusOr<schemad::ReloadResult>, Reload, (const schemad::CallOptions&),
              (override));
  MOCK_METHOD(absl::StatusOr<bool>, CheckHealth, (const std::string&, const schemad::CallOptions&),
              (override));
  MOCK_METHOD(absl::StatusOr<bool>, CheckServiceHealth,
              (const std::string&, const schemad::CallOptions&), (override));
};

}  // namespace schemad_mocks

#endif  // SCHEMAD_CLIENT_SDK_SCHEMAD_MOCKS_MOCK_CLIENT_CONNECTION_H_
