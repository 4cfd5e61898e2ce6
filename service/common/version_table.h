// The name of Alembic's version table as a user gives it (schemad's
// `version_table` setting, schemactl's --version-table): `table` or
// `schema.table`, each part an unquoted PostgreSQL identifier — a letter or
// '_', then letters, digits, '_' or '$', at most 63 bytes. The one validator
// of that name: the server configuration and the CLI both use it, so a name
// one accepts the other accepts.
//
//   ASSIGN_OR_RETURN(VersionTableName name, ParseVersionTableName("ops.alembic_version"));
//   // name.schema == "ops", name.table == "alembic_version"
//
// Thread-safety: stateless.
#ifndef SCHEMAD_COMMON_VERSION_TABLE_H_
#define SCHEMAD_COMMON_VERSION_TABLE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace schemad {

struct VersionTableName {
  std::string schema;  // "" when not qualified
  std::string table;
};

// INVALID_ARGUMENT `"x y" is not a table name: ...` (the name shown with
// non-printable bytes escaped) when `text` is not `table` or `schema.table`.
absl::StatusOr<VersionTableName> ParseVersionTableName(absl::string_view text);

}  // namespace schemad

#endif  // SCHEMAD_COMMON_VERSION_TABLE_H_
