#include "service/server/status_conversion.h"

#include <string>

#include "service/server/wire_safety.h"

namespace schemad::server {
namespace {

template <absl::StatusCode A, grpc::StatusCode G>
constexpr bool SameCode() {
  return static_cast<int>(A) == static_cast<int>(G);
}

static_assert(SameCode<absl::StatusCode::kOk, grpc::StatusCode::OK>());
static_assert(SameCode<absl::StatusCode::kCancelled, grpc::StatusCode::CANCELLED>());
static_assert(SameCode<absl::StatusCode::kUnknown, grpc::StatusCode::UNKNOWN>());
static_assert(SameCode<absl::StatusCode::kInvalidArgument, grpc::StatusCode::INVALID_ARGUMENT>());
static_assert(SameCode<absl::StatusCode::kDeadlineExceeded, grpc::StatusCode::DEADLINE_EXCEEDED>());
static_assert(SameCode<absl::StatusCode::kNotFound, grpc::StatusCode::NOT_FOUND>());
static_assert(SameCode<absl::StatusCode::kAlreadyExists, grpc::StatusCode::ALREADY_EXISTS>());
static_assert(SameCode<absl::StatusCode::kPermissionDenied, grpc::StatusCode::PERMISSION_DENIED>());
static_assert(
    SameCode<absl::StatusCode::kResourceExhausted, grpc::StatusCode::RESOURCE_EXHAUSTED>());
static_assert(
    SameCode<absl::StatusCode::kFailedPrecondition, grpc::StatusCode::FAILED_PRECONDITION>());
static_assert(SameCode<absl::StatusCode::kAborted, grpc::StatusCode::ABORTED>());
static_assert(SameCode<absl::StatusCode::kOutOfRange, grpc::StatusCode::OUT_OF_RANGE>());
static_assert(SameCode<absl::StatusCode::kUnimplemented, grpc::StatusCode::UNIMPLEMENTED>());
static_assert(SameCode<absl::StatusCode::kInternal, grpc::StatusCode::INTERNAL>());
static_assert(SameCode<absl::StatusCode::kUnavailable, grpc::StatusCode::UNAVAILABLE>());
static_assert(SameCode<absl::StatusCode::kDataLoss, grpc::StatusCode::DATA_LOSS>());
static_assert(SameCode<absl::StatusCode::kUnauthenticated, grpc::StatusCode::UNAUTHENTICATED>());

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) {
    return grpc::Status::OK;
  }
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      WireErrorText(status.message(), kMaxStatusMessageBytes));
}

void ToProtoError(const absl::Status& status, v1::Error* error) {
  error->set_code(static_cast<int>(status.code()));
  error->set_message(WireErrorText(status.message()));
}

absl::Status FromProtoError(const v1::Error& error) {
  return absl::Status(static_cast<absl::StatusCode>(error.code()), error.message());
}

}  // namespace schemad::server
