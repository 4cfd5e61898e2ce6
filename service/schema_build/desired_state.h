// A desired state: the SQL a team keeps as its declared schema, a `.sql`
// file or a directory of them (`pg_dump --schema-only` output works), read
// into the statements that build it on a scratch database.
//
//   ASSIGN_OR_RETURN(std::vector<DesiredStateFile> files, LoadDesiredState("schema/"));
//   for (const DesiredStateFile& file : files) dev.ApplySql(db, file.statements, file.path);
//
// What is read:
//  - a file: that file; a directory: its `*.sql` files (not its
//    subdirectories), in byte order of their names;
//  - statements split as psql would (engine/sql_splitter.h), each with its
//    line in its file.
// What is left out, because the schema model has no owners or privileges:
// `ALTER ... OWNER TO`, `GRANT`, `REVOKE`, `ALTER DEFAULT PRIVILEGES`; and
// pg_dump's `\restrict` / `\unrestrict` lines.
// What is refused (INVALID_ARGUMENT naming file and line): any other psql
// meta-command (a line starting with a backslash), and statements that act
// on the server rather than on a schema (CREATE/ALTER/DROP DATABASE, ROLE,
// USER, GROUP, TABLESPACE; ALTER SYSTEM), which a dev server must not run.
// NOT_FOUND when the path does not exist; INVALID_ARGUMENT for a directory
// without `*.sql` files, a file over 64 MiB, or SQL that does not split.
//
// Pure apart from reading the files. Thread-safety: stateless.
#ifndef SCHEMAD_SERVICE_SCHEMA_BUILD_DESIRED_STATE_H_
#define SCHEMAD_SERVICE_SCHEMA_BUILD_DESIRED_STATE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "service/engine/revision.h"

namespace schemad::schema_build {

struct DesiredStateFile {
  std::string path;  // as given, or the directory joined with the file name
  std::vector<engine::SqlStatement> statements;
  std::string sha256;  // of the file's bytes (cache keys)
};

absl::StatusOr<std::vector<DesiredStateFile>> LoadDesiredState(const std::string& path);

// The statements of `sql` (from `path`, for messages) as LoadDesiredState
// keeps them. Exposed for tests.
absl::StatusOr<std::vector<engine::SqlStatement>> DesiredStatements(absl::string_view sql,
                                                                    absl::string_view path);

}  // namespace schemad::schema_build

#endif  // SCHEMAD_SERVICE_SCHEMA_BUILD_DESIRED_STATE_H_
