// The small `KEY = VALUE` files a migration directory may hold beside its
// revisions (schemad.conf, schemad-lint.conf): one setting a line, `#`
// comments and blank lines, at most kMaxSettingsFileBytes.
//
//   ASSIGN_OR_RETURN(std::optional<std::string> text, ReadSettingsFile(path));
//   if (text) {
//     ASSIGN_OR_RETURN(std::vector<SettingLine> lines,
//                      ParseSettingLines(path, *text, "`KEY = VALUE`"));
//   }
//
// Thread-safety: stateless.
#ifndef SCHEMAD_SERVICE_ENGINE_SETTINGS_FILE_H_
#define SCHEMAD_SERVICE_ENGINE_SETTINGS_FILE_H_

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace schemad::engine {

inline constexpr size_t kMaxSettingsFileBytes = 64 << 10;

struct SettingLine {
  int line = 0;  // 1-based
  std::string key;
  std::string value;
};

// The file's content; nullopt when `path` does not exist. INVALID_ARGUMENT
// naming `path` when it is not a regular file of at most
// kMaxSettingsFileBytes or cannot be read.
absl::StatusOr<std::optional<std::string>> ReadSettingsFile(const std::string& path);

// The settings of `content`, in file order, keys and values stripped of
// surrounding whitespace. INVALID_ARGUMENT "path:line: ..." for a line that is
// not `KEY = VALUE` (`shape` tells what is expected), an empty key or value,
// a key set twice, or content over kMaxSettingsFileBytes.
absl::StatusOr<std::vector<SettingLine>> ParseSettingLines(absl::string_view path,
                                                           absl::string_view content,
                                                           absl::string_view shape);

// "path:line: what", for errors in a setting's value or key.
absl::Status SettingError(absl::string_view path, const SettingLine& setting,
                          absl::string_view what);

}  // namespace schemad::engine

#endif  // SCHEMAD_SERVICE_ENGINE_SETTINGS_FILE_H_
