// Fuzzes SplitSql (service/engine/sql_splitter.h) with arbitrary bytes.
//
// Properties checked beyond "no crash, no undefined behaviour, no leak":
//   - each statement's text is non-empty, trimmed, and a piece of the input;
//   - statements come in input order and their lines lie within the input;
//   - an error is INVALID_ARGUMENT with a line (SqlErrorLine) within the input.
//
// Thread-safety: libFuzzer calls it from one thread.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/string_view.h"
#include "service/engine/sql_splitter.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

constexpr int kFirstLine = 7;  // not 1, so that an off-by-first-line shows

// Lines in `text`: 1 + line breaks ("\n", "\r\n" or a lone "\r").
int CountLines(absl::string_view text) {
  int lines = 1;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\n' || (text[i] == '\r' && (i + 1 == text.size() || text[i + 1] != '\n'))) {
      ++lines;
    }
  }
  return lines;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view sql(reinterpret_cast<const char*>(data), size);
  const int last_line = kFirstLine + CountLines(sql) - 1;
  absl::StatusOr<std::vector<schemad::engine::SqlStatement>> statements =
      schemad::engine::SplitSql(sql, kFirstLine);
  if (!statements.ok()) {
    FUZZ_CHECK(statements.status().code() == absl::StatusCode::kInvalidArgument)
        << statements.status();
    const std::optional<int> line = schemad::engine::SqlErrorLine(statements.status());
    FUZZ_CHECK(line.has_value()) << statements.status();
    FUZZ_CHECK(*line >= kFirstLine && *line <= last_line) << *line << " " << statements.status();
    return 0;
  }
  int previous_line = kFirstLine;
  for (size_t i = 0; i < statements->size(); ++i) {
    const schemad::engine::SqlStatement& s = (*statements)[i];
    FUZZ_CHECK(!s.text.empty()) << "statement " << i;
    FUZZ_CHECK(absl::StripAsciiWhitespace(s.text) == s.text) << "statement " << i;
    FUZZ_CHECK(sql.find(s.text) != absl::string_view::npos) << "statement " << i;
    FUZZ_CHECK(s.line >= previous_line && s.line <= last_line)
        << "statement " << i << " line " << s.line << " after " << previous_line;
    previous_line = s.line;
  }
  return 0;
}
