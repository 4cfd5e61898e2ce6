// Fuzzes ParseSql (service/engine/sql_parser.h), PostgreSQL's parser as
// schemad's SQL front end, with arbitrary bytes: revision files are untrusted
// input, and libpg_query is C code fed straight from them.
//
// Properties checked beyond "no crash, no undefined behaviour, no leak":
//   - each statement's text is non-empty, trimmed, and the input at its offset;
//   - statements come in input order and their lines lie within the input;
//   - an analysed statement has a node type and a tree naming it; one larger
//     than kMaxAnalysedStatementBytes has neither;
//   - an error is INVALID_ARGUMENT with a line (SqlErrorLine) within the
//     input and a message of at most 203 bytes on one line.
//
// Thread-safety: libFuzzer calls it from one thread.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "service/common/utf8.h"
#include "service/engine/sql_parser.h"
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
  // Revision files are UTF-8 (ParseRevisionFile refuses anything else first).
  if (schemad::FindInvalidUtf8(sql).has_value()) {
    return 0;
  }
  const int last_line = kFirstLine + CountLines(sql) - 1;
  absl::StatusOr<std::vector<schemad::engine::ParsedStatement>> statements =
      schemad::engine::ParseSql(sql, kFirstLine);
  if (!statements.ok()) {
    FUZZ_CHECK(statements.status().code() == absl::StatusCode::kInvalidArgument)
        << statements.status();
    const std::optional<int> line = schemad::engine::SqlErrorLine(statements.status());
    FUZZ_CHECK(line.has_value()) << statements.status();
    FUZZ_CHECK(*line >= kFirstLine && *line <= last_line) << *line << " " << statements.status();
    FUZZ_CHECK(statements.status().message().size() <= 203) << statements.status();
    FUZZ_CHECK(!absl::StrContains(statements.status().message(), "\n")) << statements.status();
    return 0;
  }
  int previous_line = kFirstLine;
  size_t previous_end = 0;
  for (size_t i = 0; i < statements->size(); ++i) {
    const schemad::engine::ParsedStatement& s = (*statements)[i];
    const std::string& text = s.statement.text;
    FUZZ_CHECK(!text.empty()) << "statement " << i;
    FUZZ_CHECK(absl::StripAsciiWhitespace(text) == text) << "statement " << i;
    FUZZ_CHECK(s.offset >= previous_end && sql.substr(s.offset, text.size()) == text)
        << "statement " << i << " at " << s.offset;
    FUZZ_CHECK(s.statement.line >= previous_line && s.statement.line <= last_line)
        << "statement " << i << " line " << s.statement.line << " after " << previous_line;
    if (text.size() > schemad::engine::kMaxAnalysedStatementBytes) {
      FUZZ_CHECK(s.node_type.empty() && s.tree_json.empty()) << "statement " << i;
    } else {
      FUZZ_CHECK(!s.node_type.empty()) << "statement " << i;
      FUZZ_CHECK(absl::StartsWith(s.tree_json, absl::StrCat("{\"", s.node_type, "\":")))
          << "statement " << i;
    }
    previous_line = s.statement.line;
    previous_end = s.offset + text.size();
  }
  return 0;
}
