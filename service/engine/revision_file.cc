#include "service/engine/revision_file.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "service/common/status_macros.h"
#include "service/common/utf8.h"
#include "service/engine/checksum.h"
#include "service/engine/sql_parser.h"
#include "service/engine/sql_splitter.h"

namespace schemad::engine {
namespace {

constexpr absl::string_view kUpgradeMarker = "-- +upgrade";
constexpr absl::string_view kDowngradeMarker = "-- +downgrade";
constexpr absl::string_view kUtf8Bom = "\xEF\xBB\xBF";
constexpr size_t kMaxIdLength = 32;  // alembic_version.version_num varchar(32)
constexpr size_t kMaxSlugLength = 40;
constexpr uintmax_t kMaxFileBytes = 64u << 20;  // see revision_file.h

enum Key {
  kRevision,
  kRevises,
  kBranchLabels,
  kDependsOn,
  kMessage,
  kCreated,
  kTransactional,
  kLockTimeout,
  kStatementTimeout,
  kParse,
  kLintIgnore,
  kKeyCount,
};

constexpr std::array<absl::string_view, kKeyCount> kKeyNames = {
    "revision",      "revises",      "branch_labels",     "depends_on", "message",     "created",
    "transactional", "lock_timeout", "statement_timeout", "parse",      "lint_ignore",
};

std::optional<Key> FindKey(absl::string_view name) {
  for (int key = 0; key < kKeyCount; ++key) {
    if (kKeyNames[key] == name) {
      return static_cast<Key>(key);
    }
  }
  return std::nullopt;
}

bool IsIdChar(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_'; }

absl::Status FileError(absl::string_view path, int line, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ":", line, ": ", what));
}

// One line of the file: [begin, end) is its text, `next` where the next line
// starts (after "\n", "\r\n" or "\r").
struct Line {
  size_t begin = 0;
  size_t end = 0;
  size_t next = 0;
};

std::vector<Line> SplitLines(absl::string_view content) {
  std::vector<Line> lines;
  size_t begin = 0;
  while (begin < content.size()) {
    size_t end = content.find_first_of("\r\n", begin);
    if (end == absl::string_view::npos) {
      lines.push_back(Line{begin, content.size(), content.size()});
      break;
    }
    size_t next = end + 1;
    if (content[end] == '\r' && next < content.size() && content[next] == '\n') {
      ++next;
    }
    lines.push_back(Line{begin, end, next});
    begin = next;
  }
  return lines;
}

// A `--` line that is almost a section marker, or another tool's marker:
// as a comment it would silently merge two sections.
std::optional<std::string> MarkerLookalikeProblem(absl::string_view trimmed) {
  if (!absl::StartsWith(trimmed, "--")) {
    return std::nullopt;
  }
  absl::string_view rest = trimmed;
  while (absl::ConsumePrefix(&rest, "-")) {
  }
  rest = absl::StripLeadingAsciiWhitespace(rest);
  const bool plus = absl::ConsumePrefix(&rest, "+");
  rest = absl::StripLeadingAsciiWhitespace(rest);
  if (absl::EqualsIgnoreCase(rest, "upgrade") || absl::EqualsIgnoreCase(rest, "downgrade")) {
    const bool up = absl::EqualsIgnoreCase(rest, "upgrade");
    return absl::StrCat("malformed section marker '", trimmed, "': write exactly `",
                        up ? kUpgradeMarker : kDowngradeMarker, "`");
  }
  // goose: `-- +goose Down`; sql-migrate: `-- +migrate Down`; dbmate: `-- migrate:down`.
  std::vector<absl::string_view> words =
      absl::StrSplit(rest, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  words.resize(2);
  const bool other_tool = plus ? (absl::EqualsIgnoreCase(words[0], "goose") ||
                                  absl::EqualsIgnoreCase(words[0], "migrate")) &&
                                     (absl::EqualsIgnoreCase(words[1], "up") ||
                                      absl::EqualsIgnoreCase(words[1], "down") ||
                                      absl::EqualsIgnoreCase(words[1], "statementbegin") ||
                                      absl::EqualsIgnoreCase(words[1], "statementend"))
                               : absl::StartsWithIgnoreCase(rest, "migrate:");
  if (other_tool) {
    return absl::StrCat("section marker '", trimmed, "' of another migration tool: use `",
                        kUpgradeMarker, "` and `", kDowngradeMarker, "`");
  }
  return std::nullopt;
}

// Checks an id or label; `what` names it for the message ("revision id").
absl::Status CheckName(absl::string_view name, absl::string_view what) {
  if (name.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("empty ", what));
  }
  if (!std::all_of(name.begin(), name.end(), IsIdChar)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid ", what, " '", name, "': use only letters, digits and '_'"));
  }
  if (name == "head" || name == "heads" || name == "base") {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid ", what, " '", name, "': it is a target keyword"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ParseList(absl::string_view value, absl::string_view key,
                                                   absl::string_view item) {
  std::vector<std::string> items;
  for (absl::string_view entry : absl::StrSplit(value, ',')) {
    entry = absl::StripAsciiWhitespace(entry);
    if (entry.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("empty entry in '", key, "' list"));
    }
    if (absl::Status status = CheckName(entry, item); !status.ok()) {
      return status;
    }
    if (std::find(items.begin(), items.end(), entry) != items.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", entry, "' appears twice in '", key, "' list"));
    }
    items.emplace_back(entry);
  }
  return items;
}

// Splits a section into section.statements, turning an error into
// "path:line: ...": with PostgreSQL's parser (ParseSql), or with the
// hand-written splitter when the revision opts out (`-- parse: false`).
// Appends each statement that cannot run in a transaction, as (line, why),
// to `problems`.
absl::Status SplitSection(absl::string_view path, bool parse, SqlSection& section,
                          std::vector<std::pair<int, std::string>>& problems) {
  const int first_line = section.line + 1;
  if (!parse) {
    absl::StatusOr<std::vector<SqlStatement>> statements = SplitSql(section.body, first_line);
    if (!statements.ok()) {
      return FileError(path, SqlErrorLine(statements.status()).value_or(section.line),
                       statements.status().message());
    }
    section.statements = *std::move(statements);
    for (const SqlStatement& statement : section.statements) {
      if (std::optional<std::string> problem = KeywordTransactionProblem(statement.text)) {
        problems.emplace_back(statement.line, *std::move(problem));
      }
    }
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<ParsedStatement>> parsed =
      ParseSql(section.body, first_line, ParseDepth::kClassify);
  if (!parsed.ok()) {
    return FileError(path, SqlErrorLine(parsed.status()).value_or(section.line),
                     absl::StrCat(parsed.status().message(),
                                  " (PostgreSQL 15's parser; for syntax it does not know, set "
                                  "`-- parse: false`)"));
  }
  section.statements.clear();
  section.statements.reserve(parsed->size());
  for (ParsedStatement& statement : *parsed) {
    if (statement.transaction_problem.has_value()) {
      problems.emplace_back(statement.statement.line, *std::move(statement.transaction_problem));
    }
    section.statements.push_back(std::move(statement.statement));
  }
  return absl::OkStatus();
}

// Header state while parsing.
class HeaderParser {
 public:
  HeaderParser(absl::string_view path, Revision& revision) : path_(path), revision_(revision) {}

  // Parses one trimmed header-area line.
  absl::Status ParseLine(absl::string_view trimmed, int line) {
    if (trimmed.empty()) {
      return absl::OkStatus();
    }
    if (!absl::StartsWith(trimmed, "--")) {
      return FileError(path_, line,
                       absl::StrCat("SQL before `", kUpgradeMarker,
                                    "`: the header holds only `-- key: value` lines, `--` "
                                    "comments and blank lines"));
    }
    absl::string_view rest = absl::StripLeadingAsciiWhitespace(trimmed.substr(2));
    size_t n = 0;
    while (n < rest.size() && (IsIdChar(rest[n]) || (n > 0 && rest[n] == '-'))) {
      ++n;
    }
    if (n == 0 || absl::ascii_isdigit(static_cast<unsigned char>(rest[0]))) {
      return absl::OkStatus();  // a comment
    }
    const absl::string_view name = rest.substr(0, n);
    absl::string_view after = absl::StripLeadingAsciiWhitespace(rest.substr(n));
    if (!absl::ConsumePrefix(&after, ":")) {
      return absl::OkStatus();  // a comment
    }
    const std::optional<Key> key = FindKey(name);
    if (!key.has_value()) {
      if (!after.empty() && !absl::ascii_isspace(static_cast<unsigned char>(after[0]))) {
        return absl::OkStatus();  // a comment such as `-- https://...`
      }
      return FileError(path_, line,
                       absl::StrCat("unknown header key '", name,
                                    "' (known: ", absl::StrJoin(kKeyNames, ", "), ")"));
    }
    if (seen_line_[*key] != 0) {
      return FileError(
          path_, line,
          absl::StrCat("duplicate header key '", name, "' (first at line ", seen_line_[*key], ")"));
    }
    seen_line_[*key] = line;
    const absl::string_view value = absl::StripAsciiWhitespace(after);
    if (value.empty()) {
      return FileError(path_, line, absl::StrCat("empty value for header key '", name, "'"));
    }
    const absl::Status status = SetValue(*key, value, line);
    if (!status.ok()) {
      return FileError(path_, line, status.message());
    }
    return absl::OkStatus();
  }

  int seen_line(Key key) const { return seen_line_[key]; }

 private:
  absl::Status SetValue(Key key, absl::string_view value, int line) {
    switch (key) {
      case kRevision:
        if (absl::Status status = CheckName(value, "revision id"); !status.ok()) {
          return status;
        }
        if (value.size() > kMaxIdLength) {
          return absl::InvalidArgumentError(
              absl::StrCat("revision id '", value, "' is longer than ", kMaxIdLength,
                           " characters (alembic_version.version_num is varchar(32))"));
        }
        revision_.id = std::string(value);
        revision_.id_line = line;
        return absl::OkStatus();
      case kRevises: {
        ASSIGN_OR_RETURN(revision_.revises, ParseList(value, "revises", "revision id"));
        return absl::OkStatus();
      }
      case kBranchLabels: {
        ASSIGN_OR_RETURN(revision_.branch_labels, ParseList(value, "branch_labels", "label"));
        return absl::OkStatus();
      }
      case kDependsOn: {
        ASSIGN_OR_RETURN(revision_.depends_on,
                         ParseList(value, "depends_on", "revision id or label"));
        return absl::OkStatus();
      }
      case kMessage:
        revision_.message = std::string(value);
        return absl::OkStatus();
      case kCreated:
        revision_.created = std::string(value);
        return absl::OkStatus();
      case kTransactional:
        if (value == "true" || value == "false") {
          revision_.transactional = value == "true";
          return absl::OkStatus();
        }
        return absl::InvalidArgumentError(
            absl::StrCat("transactional must be true or false, not '", value, "'"));
      case kLockTimeout: {
        ASSIGN_OR_RETURN(revision_.lock_timeout, ParseDuration(value));
        return absl::OkStatus();
      }
      case kStatementTimeout: {
        ASSIGN_OR_RETURN(revision_.statement_timeout, ParseDuration(value));
        return absl::OkStatus();
      }
      case kParse:
        if (value == "true" || value == "false") {
          revision_.parse = value == "true";
          return absl::OkStatus();
        }
        return absl::InvalidArgumentError(
            absl::StrCat("parse must be true or false, not '", value, "'"));
      case kLintIgnore:
        for (absl::string_view rule : absl::StrSplit(value, ',')) {
          rule = absl::StripAsciiWhitespace(rule);
          const bool valid = !rule.empty() && std::all_of(rule.begin(), rule.end(), [](char c) {
            return absl::ascii_islower(static_cast<unsigned char>(c)) ||
                   absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '-';
          });
          if (!valid) {
            return absl::InvalidArgumentError(
                absl::StrCat("lint_ignore takes lint rule names (lower-case letters, digits, "
                             "'-'), comma-separated, not '",
                             value, "'"));
          }
          revision_.lint_ignore.emplace_back(rule);
        }
        return absl::OkStatus();
      case kKeyCount:
        break;
    }
    return absl::InternalError("unhandled header key");
  }

  absl::string_view path_;
  Revision& revision_;
  std::array<int, kKeyCount> seen_line_{};  // 0: not seen
};

// A NUL byte or invalid UTF-8 anywhere in the file, as "path:line: ...". A NUL
// would silently end the statement libpq sends (the rest never runs);
// invalid UTF-8 cannot travel in the service's messages or JSON, and
// PostgreSQL with UTF8 encoding rejects it.
absl::Status CheckBytes(absl::string_view path, absl::string_view content) {
  const size_t nul = content.find('\0');
  const std::optional<size_t> invalid = FindInvalidUtf8(content.substr(0, nul));
  if (nul == absl::string_view::npos && !invalid.has_value()) {
    return absl::OkStatus();
  }
  const size_t at = invalid.value_or(nul);
  int line = 1;
  size_t line_start = 0;
  for (size_t i = 0; i < at; ++i) {
    if (content[i] == '\n' ||
        (content[i] == '\r' && (i + 1 >= content.size() || content[i + 1] != '\n'))) {
      ++line;
      line_start = i + 1;
    }
  }
  const size_t column = at - line_start + 1;
  if (invalid.has_value()) {
    return FileError(
        path, line,
        absl::StrFormat("invalid UTF-8 (byte 0x%02X at column %d): revision files must be UTF-8",
                        static_cast<unsigned char>(content[at]), column));
  }
  return FileError(path, line,
                   absl::StrCat("NUL byte at column ", column,
                                ": a revision file is text, and PostgreSQL would never see what "
                                "follows a NUL in a statement"));
}

// `text` on one line: line breaks become spaces.
std::string OneLine(absl::string_view text) {
  std::string out(text);
  std::replace_if(
      out.begin(), out.end(), [](char c) { return c == '\n' || c == '\r'; }, ' ');
  return out;
}

void AppendSection(absl::string_view marker, absl::string_view sql, absl::string_view placeholder,
                   std::string& out) {
  absl::StrAppend(&out, marker, "\n");
  const absl::string_view trimmed = absl::StripTrailingAsciiWhitespace(sql);
  if (absl::StripLeadingAsciiWhitespace(trimmed).empty()) {
    absl::StrAppend(&out, placeholder, "\n");
  } else {
    absl::StrAppend(&out, trimmed, "\n");
  }
}

// The size of the revision file at `path`. Every `*.sql` entry of a
// migration directory is a revision, so one that is not a regular file (a
// dangling symlink, a directory, a fifo...) is an error rather than silently
// skipped: a revision would be missing.
absl::StatusOr<uintmax_t> RevisionFileSize(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status target = fs::status(path, ec);  // follows symlinks
  if (target.type() == fs::file_type::not_found) {
    std::error_code link_ec;
    const fs::path link = fs::read_symlink(path, link_ec);
    return absl::InvalidArgumentError(absl::StrCat(
        "revision file '", path, "' is a symbolic link to nothing",
        link_ec ? "" : absl::StrCat(" (", link.string(), ")"), ": fix or remove the link"));
  }
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read revision file '", path, "': ", ec.message()));
  }
  if (target.type() == fs::file_type::directory) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", path,
                     "' is a directory: every *.sql entry of a migration directory must be a "
                     "revision file (rename the directory)"));
  }
  if (target.type() != fs::file_type::regular) {
    return absl::InvalidArgumentError(
        absl::StrCat("revision file '", path, "' is not a regular file"));
  }
  const uintmax_t size = fs::file_size(path, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read revision file '", path, "': ", ec.message()));
  }
  return size;
}

absl::StatusOr<std::string> ReadFile(const std::string& path, uintmax_t size) {
  if (size > kMaxFileBytes) {
    return absl::InvalidArgumentError(absl::StrCat("revision file '", path, "' has ", size,
                                                   " bytes; the limit is ", kMaxFileBytes));
  }
  std::ifstream in(path, std::ios::binary);
  std::string content;
  char buffer[1 << 16];
  while (in.read(buffer, sizeof(buffer)) || in.gcount() > 0) {
    content.append(buffer, static_cast<size_t>(in.gcount()));
  }
  if (!in.eof() || in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read revision file '", path, "'"));
  }
  if (content.size() > kMaxFileBytes) {  // it grew while read
    return absl::InvalidArgumentError(
        absl::StrCat("revision file '", path, "' has more than ", kMaxFileBytes, " bytes"));
  }
  return content;
}

}  // namespace

absl::StatusOr<absl::Duration> ParseDuration(absl::string_view text) {
  const auto invalid = [text](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("invalid duration '", text, "': ", why,
                                                   " (e.g. 500ms, 5s, 2min, 1h; units: us, ms, s, ",
                                                   "min or m, h, d)"));
  };
  if (absl::StartsWith(text, "-")) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid duration '", text, "': must not be negative"));
  }
  if (text == "0") {
    return absl::ZeroDuration();
  }
  if (text.empty()) {
    return invalid("empty");
  }
  absl::Duration total = absl::ZeroDuration();
  absl::string_view rest = text;
  while (!rest.empty()) {
    size_t n = 0;
    while (n < rest.size() &&
           (absl::ascii_isdigit(static_cast<unsigned char>(rest[n])) || rest[n] == '.')) {
      ++n;
    }
    double number = 0;
    if (n == 0 || !absl::SimpleAtod(rest.substr(0, n), &number)) {
      return invalid("expected a number");
    }
    rest = absl::StripLeadingAsciiWhitespace(rest.substr(n));
    size_t u = 0;
    while (u < rest.size() && absl::ascii_isalpha(static_cast<unsigned char>(rest[u]))) {
      ++u;
    }
    const absl::string_view unit = rest.substr(0, u);
    absl::Duration scale;
    if (unit == "us") {
      scale = absl::Microseconds(1);
    } else if (unit == "ms") {
      scale = absl::Milliseconds(1);
    } else if (unit == "s") {
      scale = absl::Seconds(1);
    } else if (unit == "min" || unit == "m") {
      scale = absl::Minutes(1);
    } else if (unit == "h") {
      scale = absl::Hours(1);
    } else if (unit == "d") {
      scale = absl::Hours(24);
    } else if (unit.empty()) {
      return invalid("a unit is required");
    } else {
      return invalid(absl::StrCat("unknown unit '", unit, "'"));
    }
    total += number * scale;
    rest = absl::StripLeadingAsciiWhitespace(rest.substr(u));
  }
  if (total == absl::InfiniteDuration()) {
    return invalid("too large");
  }
  return total;
}

absl::StatusOr<Revision> ParseRevisionFile(absl::string_view path, absl::string_view content) {
  absl::ConsumePrefix(&content, kUtf8Bom);
  RETURN_IF_ERROR(CheckBytes(path, content));
  const std::vector<Line> lines = SplitLines(content);

  Revision revision;
  revision.path = std::string(path);
  HeaderParser header(path, revision);
  std::optional<size_t> upgrade;    // index in `lines` of the marker
  std::optional<size_t> downgrade;  // index in `lines` of the marker
  for (size_t i = 0; i < lines.size(); ++i) {
    const int number = static_cast<int>(i) + 1;
    const absl::string_view trimmed =
        absl::StripAsciiWhitespace(content.substr(lines[i].begin, lines[i].end - lines[i].begin));
    if (trimmed == kUpgradeMarker) {
      if (upgrade.has_value()) {
        return FileError(
            path, number,
            absl::StrCat("second `", kUpgradeMarker, "` (first at line ", *upgrade + 1, ")"));
      }
      upgrade = i;
      continue;
    }
    if (trimmed == kDowngradeMarker) {
      if (!upgrade.has_value()) {
        return FileError(path, number,
                         absl::StrCat("`", kDowngradeMarker, "` before `", kUpgradeMarker, "`"));
      }
      if (downgrade.has_value()) {
        return FileError(
            path, number,
            absl::StrCat("second `", kDowngradeMarker, "` (first at line ", *downgrade + 1, ")"));
      }
      downgrade = i;
      continue;
    }
    if (std::optional<std::string> problem = MarkerLookalikeProblem(trimmed)) {
      return FileError(path, number, *problem);
    }
    if (!upgrade.has_value()) {
      if (absl::Status status = header.ParseLine(trimmed, number); !status.ok()) {
        return status;
      }
    }
  }
  if (header.seen_line(kRevision) == 0) {
    return FileError(path, 1, "missing required header `-- revision: <id>`");
  }
  if (!upgrade.has_value()) {
    return FileError(path, std::max<int>(1, static_cast<int>(lines.size())),
                     absl::StrCat("no `", kUpgradeMarker, "` line: the SQL of a revision follows `",
                                  kUpgradeMarker, "` (and optionally `", kDowngradeMarker, "`)"));
  }

  const auto section = [&](size_t marker, size_t end) {
    SqlSection s;
    s.line = static_cast<int>(marker) + 1;
    const size_t begin = lines[marker].next;
    s.body = std::string(content.substr(begin, end - begin));
    return s;
  };
  revision.upgrade =
      section(*upgrade, downgrade.has_value() ? lines[*downgrade].begin : content.size());
  std::vector<std::pair<int, std::string>> problems;  // (line, why) in file order
  RETURN_IF_ERROR(SplitSection(path, revision.parse, *revision.upgrade, problems));
  if (downgrade.has_value()) {
    revision.downgrade = section(*downgrade, content.size());
    RETURN_IF_ERROR(SplitSection(path, revision.parse, *revision.downgrade, problems));
  }
  if (revision.transactional && !problems.empty()) {
    return FileError(path, problems.front().first, problems.front().second);
  }
  revision.checksum = RevisionChecksum(revision.upgrade, revision.downgrade);
  return revision;
}

absl::StatusOr<std::vector<Revision>> LoadRevisionDirectory(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status status = fs::status(dir, ec);
  if (status.type() == fs::file_type::not_found) {
    return absl::NotFoundError(absl::StrCat("migration directory '", dir, "' does not exist"));
  }
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read migration directory '", dir, "': ", ec.message()));
  }
  if (status.type() != fs::file_type::directory) {
    return absl::InvalidArgumentError(
        absl::StrCat("migration directory '", dir, "' is not a directory"));
  }

  std::vector<std::string> names;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (!name.empty() && name[0] != '.' && absl::EndsWith(name, ".sql")) {
      names.push_back(std::move(name));
    }
  }
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read migration directory '", dir, "': ", ec.message()));
  }
  std::sort(names.begin(), names.end());

  std::vector<Revision> revisions;
  revisions.reserve(names.size());
  for (const std::string& name : names) {
    const std::string path = (fs::path(dir) / name).string();
    ASSIGN_OR_RETURN(const uintmax_t size, RevisionFileSize(path));
    absl::StatusOr<std::string> content = ReadFile(path, size);
    if (!content.ok()) {
      return content.status();
    }
    ASSIGN_OR_RETURN(Revision revision, ParseRevisionFile(path, *content));
    revisions.push_back(std::move(revision));
  }
  return revisions;
}

std::string RenderRevisionFile(const NewRevisionSpec& spec) {
  std::string out = absl::StrCat("-- revision: ", spec.id, "\n");
  const auto list = [&out](absl::string_view key, const std::vector<std::string>& items) {
    if (!items.empty()) {
      absl::StrAppend(&out, "-- ", key, ": ", absl::StrJoin(items, ", "), "\n");
    }
  };
  list("revises", spec.revises);
  list("branch_labels", spec.branch_labels);
  list("depends_on", spec.depends_on);
  if (!spec.message.empty()) {
    absl::StrAppend(&out, "-- message: ", OneLine(spec.message), "\n");
  }
  if (!spec.created.empty()) {
    absl::StrAppend(&out, "-- created: ", OneLine(spec.created), "\n");
  }
  if (!spec.transactional) {
    absl::StrAppend(&out, "-- transactional: false\n");
  }
  if (!spec.notes.empty()) {
    out += "--\n";
    for (const std::string& note : spec.notes) {
      absl::StrAppend(&out, "-- ", note, "\n");
    }
  }
  out += "\n";
  AppendSection(kUpgradeMarker, spec.upgrade_sql, "-- write the upgrade SQL here", out);
  if (!spec.reversible) {
    return out;
  }
  out += "\n";
  AppendSection(kDowngradeMarker, spec.downgrade_sql,
                "-- write the downgrade SQL here. Left empty, downgrading is a no-op;\n"
                "-- delete this section, marker included, to make the revision irreversible.",
                out);
  return out;
}

namespace {

std::string Slug(const std::string& message) {
  std::string slug;
  for (const char c : message) {
    if (absl::ascii_isalnum(static_cast<unsigned char>(c))) {
      slug.push_back(absl::ascii_tolower(static_cast<unsigned char>(c)));
    } else if (!slug.empty() && slug.back() != '_') {
      slug.push_back('_');
    }
  }
  if (slug.size() > kMaxSlugLength) {
    slug.resize(kMaxSlugLength);
  }
  while (!slug.empty() && slug.back() == '_') {
    slug.pop_back();
  }
  return slug;
}

}  // namespace

std::string RevisionFileName(const std::string& id, const std::string& message) {
  const std::string slug = Slug(message);
  return slug.empty() ? absl::StrCat(id, ".sql") : absl::StrCat(id, "_", slug, ".sql");
}

absl::StatusOr<std::string> RevisionFileName(absl::string_view file_template, const std::string& id,
                                             const std::string& message, absl::Time created) {
  const absl::TimeZone utc = absl::UTCTimeZone();
  const std::map<std::string, std::string, std::less<>> tokens = {
      {"id", id},
      {"slug", Slug(message)},
      {"year", absl::FormatTime("%Y", created, utc)},
      {"month", absl::FormatTime("%m", created, utc)},
      {"day", absl::FormatTime("%d", created, utc)},
      {"hour", absl::FormatTime("%H", created, utc)},
      {"minute", absl::FormatTime("%M", created, utc)},
      {"second", absl::FormatTime("%S", created, utc)},
  };
  std::string name;
  for (size_t i = 0; i < file_template.size(); ++i) {
    const char c = file_template[i];
    if (c == '{') {
      const size_t close = file_template.find('}', i);
      if (close == absl::string_view::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat("file template '", file_template, "': '{' without '}'"));
      }
      const absl::string_view token = file_template.substr(i + 1, close - i - 1);
      const auto found = tokens.find(token);
      if (found == tokens.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("file template '", file_template, "': unknown token {", token,
                         "} (tokens: {id} {slug} {year} {month} {day} {hour} {minute} {second})"));
      }
      name += found->second;
      i = close;
    } else if (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' ||
               c == '.') {
      name.push_back(c);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("file template '", file_template, "': character '", std::string(1, c),
                       "' (letters, digits, '_', '-', '.' and {tokens} only)"));
    }
  }
  std::string collapsed;
  for (const char c : name) {
    if (c == '_' && (collapsed.empty() || collapsed.back() == '_')) continue;
    collapsed.push_back(c);
  }
  while (!collapsed.empty() && collapsed.back() == '_') collapsed.pop_back();
  if (collapsed.empty() || collapsed == "." || collapsed == "..") {
    return absl::InvalidArgumentError(
        absl::StrCat("file template '", file_template, "' gives an empty file name"));
  }
  return absl::StrCat(collapsed, ".sql");
}

std::string NewRevisionId() {
  std::random_device device;
  const uint64_t bits = (static_cast<uint64_t>(device()) << 32) | device();
  return absl::StrFormat("%012x", bits & 0xffffffffffffULL);
}

}  // namespace schemad::engine
