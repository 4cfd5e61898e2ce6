// schemad's log lines: `key=value` (logfmt) text whose values cannot forge
// fields, and the JSON form of the same lines.
//
//   log->info("rpc failed method={} who={} error={}", method, LogValue(who),
//             LogValue(status.message()));
//   // ... who="x\" level=error msg=\"FORGED" error="..."
//
// LogValue writes a value bare when it is a plain word (letters, digits and
// `_ . : / @ + - , ( )`), otherwise in double quotes with `"`, `\`, control
// characters and non-UTF-8 bytes escaped — so a value never ends its field or
// the line. Every value that comes from outside schemad (callers' metadata,
// targets, error texts, file paths, PostgreSQL's application names) goes
// through it.
//
// JsonLogFormatter (config `log_format: json`) writes each line as one JSON
// object: {"ts","level","logger","msg", then the line's key=value fields}.
// The fields are parsed back from the logfmt text; a field named like one of
// the four fixed keys is renamed `field_<name>`.
//
// Also lets spdlog/fmt format absl::string_view (abseil 20220623's own type).
//
// Thread-safety: LogValue is a view; JsonLogFormatter is used under spdlog's
// sink lock, like any formatter.
#ifndef SCHEMAD_SERVICE_SERVER_LOG_FORMAT_H_
#define SCHEMAD_SERVICE_SERVER_LOG_FORMAT_H_

#include <fmt/format.h>

#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "spdlog/formatter.h"

template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <typename FormatContext>
  auto format(absl::string_view s, FormatContext& ctx) const -> decltype(ctx.out()) {
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};

namespace schemad::server {

// A logfmt value (see the file comment). Holds a view: format it in the
// same statement.
struct LogValue {
  explicit LogValue(absl::string_view text_in) : text(text_in) {}
  absl::string_view text;
};

// `text` as a logfmt value: bare or quoted and escaped.
std::string LogfmtValue(absl::string_view text);

// One log line's message (free text, then key=value fields) as the parts
// JsonLogFormatter writes; exposed for tests.
std::string LogLineToJson(absl::string_view timestamp, absl::string_view level,
                          absl::string_view logger, absl::string_view message);

class JsonLogFormatter final : public spdlog::formatter {
 public:
  // spdlog::formatter:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override;
  std::unique_ptr<spdlog::formatter> clone() const override;
};

}  // namespace schemad::server

template <>
struct fmt::formatter<schemad::server::LogValue> : fmt::formatter<fmt::string_view> {
  template <typename FormatContext>
  auto format(const schemad::server::LogValue& v, FormatContext& ctx) const -> decltype(ctx.out()) {
    const std::string text = schemad::server::LogfmtValue(v.text);
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(text), ctx);
  }
};

#endif  // SCHEMAD_SERVICE_SERVER_LOG_FORMAT_H_
