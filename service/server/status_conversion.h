// The one place where an absl::Status becomes a grpc::Status (STYLE.md,
// "Errors"). abseil's and gRPC's canonical codes are the same numbers; the
// .cc file checks that with static_asserts, so the conversion is a cast.
//
//   return reactor->Finish(ToGrpcStatus(result.status()));
//
// Thread-safety: stateless.
#ifndef SCHEMAD_SERVICE_SERVER_STATUS_CONVERSION_H_
#define SCHEMAD_SERVICE_SERVER_STATUS_CONVERSION_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "schemad/v1/schemad.pb.h"

namespace schemad::server {

// Same code, same message, made valid UTF-8 and cut to
// kMaxStatusMessageBytes (wire_safety.h: it travels in metadata). The message
// must already be safe to show (the store and engine never put a DSN or
// password in one).
grpc::Status ToGrpcStatus(const absl::Status& status);

// The status as an in-message Error (code and message, made valid UTF-8 and
// cut to kMaxErrorTextBytes); OK gives code 0.
void ToProtoError(const absl::Status& status, v1::Error* error);
absl::Status FromProtoError(const v1::Error& error);

}  // namespace schemad::server

#endif  // SCHEMAD_SERVICE_SERVER_STATUS_CONVERSION_H_
