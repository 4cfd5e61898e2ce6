// What schemad sends must be valid for its receivers: protobuf `string`
// fields must be valid UTF-8 (a C++ or Go client fails to parse a message
// that is not; a sync C++ stream reader then waits forever for the status
// behind the unread messages), and free text such as an error message must be
// bounded (gRPC clients refuse messages over 4 MiB, metadata over 8 KiB).
// Text schemad does not control — PostgreSQL error messages and rows (a
// database with another encoding), file names, configuration values — goes
// through here on its way out:
//
//   MakeWireSafe(&response);                        // each response and event, once
//   error->set_message(WireErrorText(status.message()));
//
// Thread-safety: stateless functions.
#ifndef SCHEMAD_SERVICE_SERVER_WIRE_SAFETY_H_
#define SCHEMAD_SERVICE_SERVER_WIRE_SAFETY_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace schemad::server {

// Error and free-text messages are cut to this many bytes ("... (N bytes in
// all)" follows the cut): a PostgreSQL error raised by a revision can be
// arbitrarily long, and operations keep their errors for hours.
inline constexpr size_t kMaxErrorTextBytes = 8 << 10;

// Replaces invalid UTF-8 in every `string` field of `message`, nested
// messages, repeated fields and maps included, with U+FFFD. Cheap when
// everything is valid (one read-only pass). Returns the number of fields it
// changed.
int MakeWireSafe(google::protobuf::Message* message);

// A gRPC status message travels in the call's trailing metadata
// (grpc-message, percent-encoded: up to three bytes per byte), which clients
// refuse beyond 8 KiB by default: a longer message would replace the error
// with "received initial metadata size exceeds limit". The whole text stays
// available in the operation's events (kMaxErrorTextBytes).
inline constexpr size_t kMaxStatusMessageBytes = 1 << 10;

// `text` made valid UTF-8 and cut to `max_bytes`.
std::string WireErrorText(absl::string_view text, size_t max_bytes = kMaxErrorTextBytes);

}  // namespace schemad::server

#endif  // SCHEMAD_SERVICE_SERVER_WIRE_SAFETY_H_
