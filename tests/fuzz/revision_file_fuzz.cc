// Fuzzes ParseRevisionFile (service/engine/revision_file.h): the input is the
// text of one revision file.
//
// Properties checked beyond "no crash, no undefined behaviour, no leak":
//   - an error is INVALID_ARGUMENT whose message starts "path:line: " with a
//     line within the file;
//   - a parsed revision has an id, a checksum, an upgrade section, and
//     statements whose lines lie within the file, in order;
//   - RenderRevisionFile of the parsed fields parses back to the same
//     header fields and the same statements (the round trip `schemactl
//     revision` relies on);
//   - ParseDuration of the input (the header's duration grammar) is either
//     an error or a finite, non-negative duration.
//
// Thread-safety: libFuzzer calls it from one thread.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "service/engine/revision.h"
#include "service/engine/revision_file.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using schemad::engine::Revision;
using schemad::engine::SqlSection;
using schemad::engine::SqlStatement;

constexpr absl::string_view kPath = "fuzz/0001_input.sql";

int CountLines(absl::string_view text) {
  int lines = 1;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\n' || (text[i] == '\r' && (i + 1 == text.size() || text[i + 1] != '\n'))) {
      ++lines;
    }
  }
  return lines;
}

void CheckError(const absl::Status& status, int last_line) {
  FUZZ_CHECK(status.code() == absl::StatusCode::kInvalidArgument) << status;
  absl::string_view message = status.message();
  FUZZ_CHECK(absl::ConsumePrefix(&message, kPath) && absl::ConsumePrefix(&message, ":")) << status;
  const size_t colon = message.find(": ");
  FUZZ_CHECK(colon != absl::string_view::npos) << status;
  int line = 0;
  FUZZ_CHECK(absl::SimpleAtoi(message.substr(0, colon), &line)) << status;
  FUZZ_CHECK(line >= 1 && line <= last_line) << status;
}

void CheckSection(const SqlSection& section, int last_line) {
  FUZZ_CHECK(section.line >= 1 && section.line <= last_line) << section.line;
  int previous = section.line + 1;  // statements start after the marker line
  for (const SqlStatement& s : section.statements) {
    FUZZ_CHECK(!s.text.empty());
    FUZZ_CHECK(s.line >= previous && s.line <= last_line) << s.line << " after " << previous;
    previous = s.line;
  }
}

std::vector<std::string> Texts(const std::optional<SqlSection>& section) {
  std::vector<std::string> out;
  if (section.has_value()) {
    for (const SqlStatement& s : section->statements) {
      out.push_back(s.text);
    }
  }
  return out;
}

void CheckRoundTrip(const Revision& parsed) {
  schemad::engine::NewRevisionSpec spec;
  spec.id = parsed.id;
  spec.revises = parsed.revises;
  spec.branch_labels = parsed.branch_labels;
  spec.depends_on = parsed.depends_on;
  spec.message = parsed.message;
  spec.created = parsed.created;
  spec.transactional = parsed.transactional;
  spec.upgrade_sql = parsed.upgrade->body;
  spec.downgrade_sql = parsed.downgrade.has_value() ? parsed.downgrade->body : "";
  spec.reversible = parsed.reversible();
  const std::string rendered = schemad::engine::RenderRevisionFile(spec);
  absl::StatusOr<Revision> again = schemad::engine::ParseRevisionFile(kPath, rendered);
  FUZZ_CHECK(again.ok()) << again.status() << "\n--- rendered:\n" << rendered;
  FUZZ_CHECK(again->id == parsed.id);
  FUZZ_CHECK(again->revises == parsed.revises);
  FUZZ_CHECK(again->branch_labels == parsed.branch_labels);
  FUZZ_CHECK(again->depends_on == parsed.depends_on);
  FUZZ_CHECK(again->message == parsed.message) << "'" << again->message << "'";
  FUZZ_CHECK(again->created == parsed.created) << "'" << again->created << "'";
  FUZZ_CHECK(again->transactional == parsed.transactional);
  FUZZ_CHECK(Texts(again->upgrade) == Texts(parsed.upgrade)) << "\n--- rendered:\n" << rendered;
  FUZZ_CHECK(again->reversible() == parsed.reversible());
  if (parsed.downgrade.has_value()) {
    FUZZ_CHECK(Texts(again->downgrade) == Texts(parsed.downgrade)) << "\n--- rendered:\n"
                                                                   << rendered;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view content(reinterpret_cast<const char*>(data), size);
  const int last_line = CountLines(content);

  absl::StatusOr<Revision> revision = schemad::engine::ParseRevisionFile(kPath, content);
  if (!revision.ok()) {
    CheckError(revision.status(), last_line);
  } else {
    FUZZ_CHECK(!revision->id.empty());
    FUZZ_CHECK(!revision->checksum.empty());
    FUZZ_CHECK(revision->id_line >= 1 && revision->id_line <= last_line);
    FUZZ_CHECK(revision->upgrade.has_value());
    CheckSection(*revision->upgrade, last_line);
    if (revision->downgrade.has_value()) {
      CheckSection(*revision->downgrade, last_line);
      FUZZ_CHECK(revision->downgrade->line > revision->upgrade->line);
    }
    CheckRoundTrip(*revision);
  }

  absl::StatusOr<absl::Duration> duration = schemad::engine::ParseDuration(content);
  if (duration.ok()) {
    FUZZ_CHECK(*duration >= absl::ZeroDuration() && *duration < absl::InfiniteDuration())
        << *duration;
  } else {
    FUZZ_CHECK(duration.status().code() == absl::StatusCode::kInvalidArgument);
  }
  return 0;
}
