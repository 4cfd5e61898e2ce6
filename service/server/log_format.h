// Lets spdlog/fmt format absl::string_view (abseil 20220623's own type, not
// std::string_view), so log lines can take absl::Status::message() directly:
//
//   log->info("rpc failed error=\"{}\"", status.message());
//
// Thread-safety: n/a (a formatter specialisation).
#ifndef SCHEMAD_SERVICE_SERVER_LOG_FORMAT_H_
#define SCHEMAD_SERVICE_SERVER_LOG_FORMAT_H_

#include <fmt/format.h>

#include "absl/strings/string_view.h"

template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <typename FormatContext>
  auto format(absl::string_view s, FormatContext& ctx) const -> decltype(ctx.out()) {
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};

#endif  // SCHEMAD_SERVICE_SERVER_LOG_FORMAT_H_
