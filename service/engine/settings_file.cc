#include "service/engine/settings_file.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace schemad::engine {

absl::StatusOr<std::optional<std::string>> ReadSettingsFile(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    return std::nullopt;
  }
  if (!fs::is_regular_file(path, ec) || fs::file_size(path, ec) > kMaxSettingsFileBytes || ec) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a regular file of at most ", kMaxSettingsFileBytes, " bytes"));
  }
  std::ifstream in(path, std::ios::binary);
  std::string content;
  char buffer[4096];
  while (in.read(buffer, sizeof(buffer)) || in.gcount() > 0) {
    content.append(buffer, static_cast<size_t>(in.gcount()));
  }
  if (in.bad() || !in.eof()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read ", path));
  }
  return content;
}

absl::StatusOr<std::vector<SettingLine>> ParseSettingLines(absl::string_view path,
                                                           absl::string_view content,
                                                           absl::string_view shape) {
  if (content.size() > kMaxSettingsFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", content.size(), " bytes; the limit is ", kMaxSettingsFileBytes));
  }
  std::vector<SettingLine> settings;
  std::map<std::string, int> seen;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(content, '\n')) {
    ++number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') {
      continue;
    }
    const std::vector<absl::string_view> parts = absl::StrSplit(line, absl::MaxSplits('=', 1));
    SettingLine setting;
    setting.line = number;
    if (parts.size() == 2) {
      setting.key = std::string(absl::StripAsciiWhitespace(parts[0]));
      setting.value = std::string(absl::StripAsciiWhitespace(parts[1]));
    }
    if (setting.key.empty() || setting.value.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", number, ": expected ", shape));
    }
    if (const auto it = seen.find(setting.key); it != seen.end()) {
      return SettingError(path, setting,
                          absl::StrCat("'", setting.key.substr(0, 64),
                                       "' set twice (first at line ", it->second, ")"));
    }
    seen[setting.key] = number;
    settings.push_back(std::move(setting));
  }
  return settings;
}

absl::Status SettingError(absl::string_view path, const SettingLine& setting,
                          absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ":", setting.line, ": ", what));
}

}  // namespace schemad::engine
