#include "service/engine/migration_set_config.h"

#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "service/common/status_macros.h"
#include "service/engine/settings_file.h"

namespace schemad::engine {

absl::string_view TransactionScopeName(TransactionScope scope) {
  return scope == TransactionScope::kPerCommand ? "per-command" : "per-revision";
}

std::optional<TransactionScope> ParseTransactionScope(absl::string_view text) {
  if (text == "per-command" || text == "all") {
    return TransactionScope::kPerCommand;
  }
  if (text == "per-revision") {
    return TransactionScope::kPerRevision;
  }
  return std::nullopt;
}

absl::StatusOr<MigrationSetConfig> ParseMigrationSetConfig(absl::string_view path,
                                                           absl::string_view content) {
  ASSIGN_OR_RETURN(std::vector<SettingLine> settings,
                   ParseSettingLines(path, content, "`KEY = VALUE`"));
  MigrationSetConfig config;
  for (const SettingLine& setting : settings) {
    if (setting.key != "transaction") {
      return SettingError(
          path, setting,
          absl::StrCat("unknown key '", setting.key.substr(0, 64), "'; the keys are: transaction"));
    }
    config.transaction = ParseTransactionScope(setting.value);
    if (!config.transaction.has_value()) {
      return SettingError(path, setting,
                          absl::StrCat("transaction must be per-command or per-revision, not '",
                                       setting.value.substr(0, 64), "'"));
    }
  }
  return config;
}

absl::StatusOr<MigrationSetConfig> LoadMigrationSetConfig(const std::string& dir) {
  const std::string path =
      (std::filesystem::path(dir) / std::string(kMigrationSetConfigFileName)).string();
  ASSIGN_OR_RETURN(std::optional<std::string> content, ReadSettingsFile(path));
  if (!content.has_value()) {
    return MigrationSetConfig{};
  }
  return ParseMigrationSetConfig(path, *content);
}

absl::StatusOr<TransactionScope> ResolveTransactionScope(const std::string& dir,
                                                         std::optional<TransactionScope> given) {
  // Read even when `given` decides: a broken file is an error either way.
  ASSIGN_OR_RETURN(MigrationSetConfig declared, LoadMigrationSetConfig(dir));
  return given.value_or(declared.transaction.value_or(kDefaultTransactionScope));
}

}  // namespace schemad::engine
