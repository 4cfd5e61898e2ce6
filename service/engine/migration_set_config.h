// What a migration set declares about itself beside its revisions, in the
// optional file DIR/schemad.conf (the format of settings_file.h):
//
//   # How upgrade, downgrade and ensure-head commit (docs/user-guide.md §5).
//   transaction = per-command
//
// Keys:
//   transaction  per-command (Alembic's default env.py: a command's
//                transactional revisions commit together; `all` is an older
//                name) or per-revision (each revision commits on its own, as
//                Alembic's transaction_per_migration=True). Default: per-command.
//
// Who decides, most specific first: the command (`schemactl --transaction`,
// an RPC's transaction_mode), the project or server configuration
// (schemactl.ini `transaction`, schemad.yaml migration_sets[].transaction),
// this file, the default.
//
// Thread-safety: stateless.
#ifndef SCHEMAD_SERVICE_ENGINE_MIGRATION_SET_CONFIG_H_
#define SCHEMAD_SERVICE_ENGINE_MIGRATION_SET_CONFIG_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace schemad::engine {

// Transaction scope of upgrade/downgrade/ensure-head (ExecutorOptions).
enum class TransactionScope { kPerCommand, kPerRevision };

// Alembic's default, and schemad's.
inline constexpr TransactionScope kDefaultTransactionScope = TransactionScope::kPerCommand;

// "per-command" or "per-revision".
absl::string_view TransactionScopeName(TransactionScope scope);

// Parses per-command (or its older name `all`) and per-revision; nullopt otherwise.
std::optional<TransactionScope> ParseTransactionScope(absl::string_view text);

inline constexpr absl::string_view kMigrationSetConfigFileName = "schemad.conf";

struct MigrationSetConfig {
  std::optional<TransactionScope> transaction;  // nullopt: not declared
};

// INVALID_ARGUMENT "path:line: ..." for an unknown key, a bad value, a key set
// twice or a line that is not `KEY = VALUE`.
absl::StatusOr<MigrationSetConfig> ParseMigrationSetConfig(absl::string_view path,
                                                           absl::string_view content);

// DIR/schemad.conf parsed, or nothing declared when there is none.
absl::StatusOr<MigrationSetConfig> LoadMigrationSetConfig(const std::string& dir);

// The scope a command on the set in `dir` runs with: `given` (by the
// command or a configuration), else what DIR/schemad.conf declares, else
// kDefaultTransactionScope. Errors as LoadMigrationSetConfig's, also when
// `given` decides.
absl::StatusOr<TransactionScope> ResolveTransactionScope(const std::string& dir,
                                                         std::optional<TransactionScope> given);

}  // namespace schemad::engine

#endif  // SCHEMAD_SERVICE_ENGINE_MIGRATION_SET_CONFIG_H_
