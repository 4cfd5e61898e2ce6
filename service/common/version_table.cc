#include "service/common/version_table.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace schemad {
namespace {

constexpr size_t kMaxIdentifierBytes = 63;  // NAMEDATALEN - 1

bool IsIdentifier(absl::string_view part) {
  if (part.empty() || part.size() > kMaxIdentifierBytes) {
    return false;
  }
  if (!absl::ascii_isalpha(static_cast<unsigned char>(part[0])) && part[0] != '_') {
    return false;
  }
  for (char c : part) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '$') {
      return false;
    }
  }
  return true;
}

// `text` for a message: printable ASCII as is, other bytes as \xNN.
std::string Printable(absl::string_view text) {
  std::string out;
  for (char ch : text.substr(0, 200)) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(ch);
    } else {
      absl::StrAppendFormat(&out, "\\x%02x", c);
    }
  }
  return text.size() > 200 ? absl::StrCat(out, "...") : out;
}

}  // namespace

absl::StatusOr<VersionTableName> ParseVersionTableName(absl::string_view text) {
  const size_t dot = text.find('.');
  VersionTableName name;
  if (dot == absl::string_view::npos) {
    name.table = std::string(text);
  } else {
    name.schema = std::string(text.substr(0, dot));
    name.table = std::string(text.substr(dot + 1));
  }
  if (!IsIdentifier(name.table) || (dot != absl::string_view::npos && !IsIdentifier(name.schema))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", Printable(text),
        "\" is not a table name: expected table or schema.table, each a letter or '_' followed "
        "by letters, digits, '_' or '$', at most 63 bytes"));
  }
  return name;
}

}  // namespace schemad
