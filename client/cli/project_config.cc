#include "client/cli/project_config.h"

#include <sys/stat.h>

#include <fstream>
#include <set>
#include <sstream>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "service/common/utf8.h"

namespace schemad::cli {
namespace {

absl::Status LineError(const std::string& path, int line, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ":", line, ": ", what));
}

// The text before a comment: `;` or `#` at the start or after whitespace.
absl::string_view WithoutComment(absl::string_view line) {
  for (size_t i = 0; i < line.size(); ++i) {
    if ((line[i] == '#' || line[i] == ';') &&
        (i == 0 || absl::ascii_isspace(static_cast<unsigned char>(line[i - 1])))) {
      return line.substr(0, i);
    }
  }
  return line;
}

}  // namespace

std::string ProjectConfig::Where(const ProjectSetting& setting) const {
  return absl::StrCat(path, ":", setting.line);
}

absl::StatusOr<ProjectConfig> ParseProjectConfig(const std::string& path, const std::string& text) {
  if (const std::optional<size_t> bad = FindInvalidUtf8(text)) {
    const int line = 1 + static_cast<int>(std::count(text.begin(), text.begin() + *bad, '\n'));
    return LineError(path, line, "not UTF-8 text");
  }
  ProjectConfig config;
  config.path = path;
  bool in_section = false;
  std::set<std::string> seen;
  int number = 0;
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    ++number;
    const absl::string_view line = absl::StripAsciiWhitespace(WithoutComment(raw));
    if (line.empty()) continue;
    if (line.front() == '[') {
      if (line != "[schemactl]") {
        return LineError(
            path, number,
            absl::StrCat("unknown section '", line, "' (the only section is [schemactl])"));
      }
      in_section = true;
      continue;
    }
    const size_t equals = line.find('=');
    if (equals == absl::string_view::npos) {
      return LineError(path, number, "expected `key = value`");
    }
    if (!in_section) {
      return LineError(path, number, "a setting before the [schemactl] section header");
    }
    ProjectSetting setting;
    setting.key = std::string(absl::StripAsciiWhitespace(line.substr(0, equals)));
    setting.value = std::string(absl::StripAsciiWhitespace(line.substr(equals + 1)));
    setting.line = number;
    if (setting.key.empty()) {
      return LineError(path, number, "a setting without a name");
    }
    if (setting.value.empty()) {
      return LineError(path, number, absl::StrCat("'", setting.key, "' has no value"));
    }
    if (!seen.insert(setting.key).second) {
      return LineError(path, number, absl::StrCat("'", setting.key, "' is set twice"));
    }
    config.settings.push_back(std::move(setting));
  }
  return config;
}

absl::StatusOr<std::optional<ProjectConfig>> LoadProjectConfig(const std::string& named,
                                                               const std::filesystem::path& start) {
  if (named == "none") return std::nullopt;
  std::string path = named;
  if (path.empty()) {
    std::error_code error;
    for (std::filesystem::path dir = start; !dir.empty(); dir = dir.parent_path()) {
      const std::filesystem::path candidate = dir / kProjectConfigName;
      if (std::filesystem::exists(candidate, error)) {
        path = candidate.string();
        break;
      }
      if (dir == dir.root_path()) break;
    }
    if (path.empty()) return std::nullopt;
  }
  struct stat info {};
  if (stat(path.c_str(), &info) != 0) {
    return absl::NotFoundError(absl::StrCat(path, ": no such file (--config, SCHEMACTL_CONFIG)"));
  }
  if (!S_ISREG(info.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  if (static_cast<size_t>(info.st_size) > kMaxProjectConfigBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": larger than ", kMaxProjectConfigBytes / 1024, " KiB"));
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in.good() && !in.eof()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot be read"));
  }
  absl::StatusOr<ProjectConfig> config = ParseProjectConfig(path, text.str());
  if (!config.ok()) return config.status();
  return std::optional<ProjectConfig>(*std::move(config));
}

}  // namespace schemad::cli
