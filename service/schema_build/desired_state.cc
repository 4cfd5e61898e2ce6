#include "service/schema_build/desired_state.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "service/common/status_macros.h"
#include "service/engine/checksum.h"
#include "service/engine/sql_splitter.h"

namespace schemad::schema_build {
namespace {

constexpr std::uintmax_t kMaxFileBytes = 64u << 20;

// The first `count` words of `statement`, upper-cased, after the comments
// and whitespace that may lead it.
std::vector<std::string> LeadingWords(absl::string_view text, size_t count) {
  std::vector<std::string> words;
  size_t i = 0;
  while (i < text.size() && words.size() < count) {
    const char c = text[i];
    if (absl::ascii_isspace(static_cast<unsigned char>(c))) {
      ++i;
    } else if (text.substr(i, 2) == "--") {
      const size_t end = text.find('\n', i);
      i = end == absl::string_view::npos ? text.size() : end + 1;
    } else if (text.substr(i, 2) == "/*") {
      const size_t end = text.find("*/", i + 2);
      i = end == absl::string_view::npos ? text.size() : end + 2;
    } else {
      size_t end = i;
      while (end < text.size() &&
             (absl::ascii_isalnum(static_cast<unsigned char>(text[end])) || text[end] == '_')) {
        ++end;
      }
      if (end == i) break;  // punctuation: no more words
      words.push_back(absl::AsciiStrToUpper(text.substr(i, end - i)));
      i = end;
    }
  }
  return words;
}

// `ALTER <object> ... OWNER TO <role>`: the last three words.
bool IsOwnerTo(absl::string_view text) {
  std::vector<absl::string_view> words =
      absl::StrSplit(text, absl::ByAnyChar(" \t\r\n"), absl::SkipEmpty());
  return words.size() >= 4 && absl::EqualsIgnoreCase(words[words.size() - 3], "OWNER") &&
         absl::EqualsIgnoreCase(words[words.size() - 2], "TO");
}

enum class Verdict { kKeep, kLeaveOut, kRefuse };

Verdict Classify(const engine::SqlStatement& statement) {
  const std::vector<std::string> words = LeadingWords(statement.text, 3);
  if (words.empty()) return Verdict::kKeep;
  const std::string& first = words[0];
  if (first == "GRANT" || first == "REVOKE") return Verdict::kLeaveOut;
  if (first == "ALTER" && words.size() >= 2) {
    if (words[1] == "DEFAULT") return Verdict::kLeaveOut;  // ALTER DEFAULT PRIVILEGES
    if (words[1] == "SYSTEM") return Verdict::kRefuse;
    if (IsOwnerTo(statement.text)) return Verdict::kLeaveOut;
  }
  if ((first == "CREATE" || first == "ALTER" || first == "DROP") && words.size() >= 2) {
    const std::string& object = words[1];
    // CREATE USER MAPPING is per database (postgres_fdw; pg_dump emits it).
    const bool user_mapping = object == "USER" && words.size() >= 3 && words[2] == "MAPPING";
    if (object == "DATABASE" || object == "ROLE" || (object == "USER" && !user_mapping) ||
        object == "GROUP" || object == "TABLESPACE") {
      return Verdict::kRefuse;
    }
  }
  return Verdict::kKeep;
}

absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path) {
  std::error_code error;
  const std::uintmax_t size = std::filesystem::file_size(path, error);
  if (error) {
    return absl::NotFoundError(absl::StrCat(path.string(), ": cannot read: ", error.message()));
  }
  if (size > kMaxFileBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": ", size,
                                                   " bytes; a desired-state file may have at most ",
                                                   kMaxFileBytes, " (64 MiB)"));
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in && !in.eof()) return absl::NotFoundError(absl::StrCat(path.string(), ": cannot read"));
  return text.str();
}

}  // namespace

absl::StatusOr<std::vector<engine::SqlStatement>> DesiredStatements(absl::string_view sql,
                                                                    absl::string_view path) {
  // psql meta-commands are lines, not SQL: pg_dump's \restrict and
  // \unrestrict are blanked (keeping the line numbers), others refused.
  std::vector<std::string> lines = absl::StrSplit(sql, '\n');
  for (size_t i = 0; i < lines.size(); ++i) {
    if (!absl::StartsWith(lines[i], "\\")) continue;
    if (absl::StartsWith(lines[i], "\\restrict") || absl::StartsWith(lines[i], "\\unrestrict")) {
      lines[i].clear();
      continue;
    }
    const std::string command = lines[i].substr(0, lines[i].find_first_of(" \t\r"));
    return absl::InvalidArgumentError(absl::StrCat(
        path, ":", i + 1, ": psql meta-command ", command,
        " is not SQL; a desired state is plain SQL (pg_dump --schema-only output, or DDL)"));
  }
  absl::StatusOr<std::vector<engine::SqlStatement>> split =
      engine::SplitSql(absl::StrJoin(lines, "\n"), 1);
  if (!split.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", split.status().message()));
  }
  std::vector<engine::SqlStatement> kept;
  for (engine::SqlStatement& statement : *split) {
    switch (Classify(statement)) {
      case Verdict::kKeep:
        kept.push_back(std::move(statement));
        break;
      case Verdict::kLeaveOut:
        break;
      case Verdict::kRefuse: {
        const std::vector<std::string> words = LeadingWords(statement.text, 2);
        return absl::InvalidArgumentError(
            absl::StrCat(path, ":", statement.line, ": ", absl::StrJoin(words, " "),
                         " acts on the server, not on a schema; a desired state may not hold it"));
      }
    }
  }
  return kept;
}

absl::StatusOr<std::vector<DesiredStateFile>> LoadDesiredState(const std::string& path) {
  std::error_code error;
  const std::filesystem::file_status status = std::filesystem::status(path, error);
  if (error || !std::filesystem::exists(status)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such file or directory"));
  }
  std::vector<std::string> paths;
  if (std::filesystem::is_directory(status)) {
    for (const auto& entry : std::filesystem::directory_iterator(path, error)) {
      if (entry.is_regular_file() && entry.path().extension() == ".sql") {
        paths.push_back((std::filesystem::path(path) / entry.path().filename()).string());
      }
    }
    if (error) return absl::NotFoundError(absl::StrCat(path, ": cannot list: ", error.message()));
    if (paths.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path,
                       ": a directory without *.sql files; a desired state is a .sql file "
                       "or a directory of them"));
    }
    std::sort(paths.begin(), paths.end());
  } else {
    paths.push_back(path);
  }
  std::vector<DesiredStateFile> files;
  for (const std::string& file_path : paths) {
    ASSIGN_OR_RETURN(std::string text, ReadFile(file_path));
    DesiredStateFile file;
    file.path = file_path;
    file.sha256 = engine::Sha256Hex(text);
    ASSIGN_OR_RETURN(file.statements, DesiredStatements(text, file_path));
    files.push_back(std::move(file));
  }
  return files;
}

}  // namespace schemad::schema_build
