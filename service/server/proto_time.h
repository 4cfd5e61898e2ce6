// absl::Duration / absl::Time <-> google.protobuf.Duration / Timestamp.
//
//   ToProto(absl::Seconds(5), event.mutable_waited());
//   absl::Duration d = FromProto(config.shutdown_grace());
//
// Thread-safety: stateless.
#ifndef SCHEMAD_SERVICE_SERVER_PROTO_TIME_H_
#define SCHEMAD_SERVICE_SERVER_PROTO_TIME_H_

#include <google/protobuf/duration.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include <cstdint>

#include "absl/time/time.h"

namespace schemad::server {

inline void ToProto(absl::Duration d, google::protobuf::Duration* out) {
  if (d == absl::InfiniteDuration()) {
    d = absl::Seconds(315576000000);  // the largest value Duration allows
  }
  const int64_t seconds = absl::IDivDuration(d, absl::Seconds(1), &d);
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(d)));
}

inline absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

inline void ToProto(absl::Time t, google::protobuf::Timestamp* out) {
  const timespec ts = absl::ToTimespec(t);
  out->set_seconds(ts.tv_sec);
  out->set_nanos(static_cast<int32_t>(ts.tv_nsec));
}

inline absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

}  // namespace schemad::server

#endif  // SCHEMAD_SERVICE_SERVER_PROTO_TIME_H_
