// schemactl.ini: a project's schemactl settings, like Alembic's alembic.ini
// (docs/cli.md, "Project settings"). Internal to schemactl.
//
//   # schemactl.ini, at the top of the project
//   [schemactl]
//   dir = migrations/modax          ; relative to this file
//   version-table = alembic_version
//   transaction = per-command
//   dev-dsn = local
//   file-template = {year}{month}{day}_{hour}{minute}_{slug}
//
// Found by walking up from the working directory (the first schemactl.ini),
// or named by --config FILE / SCHEMACTL_CONFIG (`none`: no file). A setting
// is a long flag's name without `--`; a flag on the command line beats its
// environment variable, which beats this file, which beats the default.
//
// Thread-safety: stateless.
#ifndef SCHEMAD_CLIENT_CLI_PROJECT_CONFIG_H_
#define SCHEMAD_CLIENT_CLI_PROJECT_CONFIG_H_

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace schemad::cli {

inline constexpr char kProjectConfigName[] = "schemactl.ini";
inline constexpr size_t kMaxProjectConfigBytes = 64 * 1024;

struct ProjectSetting {
  std::string key;    // e.g. "dir"
  std::string value;  // trimmed; never empty
  int line = 0;       // 1-based, for messages ("schemactl.ini:3: ...")
};

struct ProjectConfig {
  std::string path;  // as found or named
  std::vector<ProjectSetting> settings;

  // "PATH:LINE", for messages about one setting.
  std::string Where(const ProjectSetting& setting) const;
};

// Parses a schemactl.ini text: blank lines, comments (a line starting with
// `#` or `;`), one `[schemactl]` section header before the settings, and
// `key = value` lines (a `#` or `;` after whitespace starts a comment).
// INVALID_ARGUMENT naming `path` and the line for anything else: another
// section, a line without `=`, an empty key or value, a key given twice,
// text that is not UTF-8. Keys are not checked here (the caller knows them).
absl::StatusOr<ProjectConfig> ParseProjectConfig(const std::string& path, const std::string& text);

// The project's settings: the file `named` names (when not empty; "none":
// no file), else the first kProjectConfigName in `start` or a directory
// above it. nullopt when there is none. Errors name the file: not a regular
// file, larger than kMaxProjectConfigBytes, unreadable, or ParseProjectConfig's.
absl::StatusOr<std::optional<ProjectConfig>> LoadProjectConfig(const std::string& named,
                                                               const std::filesystem::path& start);

}  // namespace schemad::cli

#endif  // SCHEMAD_CLIENT_CLI_PROJECT_CONFIG_H_
