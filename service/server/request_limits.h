// The bounds of every request field (the table in docs/service.md,
// "Limits"). A handler checks its request with CheckRequest before it logs,
// looks up or stores anything taken from it, so nothing a caller sends can
// grow schemad's memory, its operations (kept for hours) or its log lines
// without bound.
//
//   RETURN_IF_ERROR(CheckRequest(*request));  // INVALID_ARGUMENT naming field and limit
//
// Strings are already valid UTF-8 (protobuf refuses to parse a request whose
// `string` field is not). Single-line fields (names, targets, selectors, ids)
// must not hold control characters, so they cannot forge log lines.
//
// Thread-safety: stateless functions.
#ifndef SCHEMAD_SERVICE_SERVER_REQUEST_LIMITS_H_
#define SCHEMAD_SERVICE_SERVER_REQUEST_LIMITS_H_

#include <cstddef>

#include "absl/status/status.h"
#include "schemad/v1/schemad.pb.h"
#include "service/server/config.h"

namespace schemad::server {

// The largest request message schemad accepts (gRPC's max receive message
// size): well above the largest request the field limits below allow, far
// below gRPC's default of 4 MiB. A larger one is refused by gRPC itself with
// RESOURCE_EXHAUSTED before schemad sees it.
inline constexpr int kMaxRequestBytes = 256 << 10;

inline constexpr size_t kMaxNameBytes = 128;       // database, migration set (as in the config)
inline constexpr size_t kMaxTargetBytes = 512;     // a target, merge revision, version row
inline constexpr size_t kMaxTargets = 64;          // Stamp, Plan, FleetRun targets
inline constexpr size_t kMaxFromRows = 256;        // Plan from_rows
inline constexpr size_t kMaxSelectorBytes = 1024;  // FleetRun selector, canary_selector
inline constexpr size_t kMaxLabelSelectors = 64;   // ListDatabases label_selector entries
// A label key or value in a selector: kMaxLabelBytes (config.h), as configured.
inline constexpr size_t kMaxOperationIdBytes = 64;     // "op-" + 16 hex digits, with room
inline constexpr size_t kMaxPageTokenBytes = 64;       // ListOperations page_token
inline constexpr int kMaxHistoryLimit = 10000;         // History limit
inline constexpr int kDefaultHistoryLimit = 1000;      // History limit <= 0
inline constexpr int kMaxOperationsPage = 500;         // ListOperations limit
inline constexpr int kDefaultOperationsPage = 100;     // ListOperations limit <= 0
inline constexpr int kMaxFleetParallel = 1000;         // FleetRun max_parallel
inline constexpr int kMaxCanaryCount = 10000;          // FleetRun canary_count
inline constexpr int kMaxDurationSeconds = 7 * 86400;  // lock_wait, site_timeout

absl::Status CheckRequest(const v1::EnsureHeadRequest& request);
absl::Status CheckRequest(const v1::UpgradeRequest& request);
absl::Status CheckRequest(const v1::DowngradeRequest& request);
absl::Status CheckRequest(const v1::MergeRequest& request);
absl::Status CheckRequest(const v1::StampRequest& request);
absl::Status CheckRequest(const v1::ResolveRequest& request);
absl::Status CheckRequest(const v1::PlanRequest& request);
absl::Status CheckRequest(const v1::GetStatusRequest& request);
absl::Status CheckRequest(const v1::HistoryRequest& request);
absl::Status CheckRequest(const v1::DescribeMigrationSetRequest& request);
absl::Status CheckRequest(const v1::ListDatabasesRequest& request);
absl::Status CheckRequest(const v1::ValidateRequest& request);
absl::Status CheckRequest(const v1::RepairRequest& request);
absl::Status CheckRequest(const v1::DriftRequest& request);
absl::Status CheckRequest(const v1::WatchOperationRequest& request);
absl::Status CheckRequest(const v1::ListOperationsRequest& request);
absl::Status CheckRequest(const v1::CancelOperationRequest& request);
absl::Status CheckRequest(const v1::FleetRunRequest& request);

}  // namespace schemad::server

#endif  // SCHEMAD_SERVICE_SERVER_REQUEST_LIMITS_H_
