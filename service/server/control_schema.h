// The control database's own schema (store::kControlSchema): its revisions
// are embedded in the binary, not read from disk, and schemad's own engine
// applies them at start, like any migration set's, under the migration lock
// of the schema's version table (`schemad_control.alembic_version`, with
// schemad_history and friends beside it). So N replicas starting at once
// apply each revision exactly once, and a newer schemad adds revisions that
// an older one's data survives.
//
//   ASSIGN_OR_RETURN(engine::OperationResult applied,
//                    MigrateControlSchema(*control_store, control_dsn, "replica-a"));
//
// Thread-safety: stateless functions.
#ifndef SCHEMAD_SERVICE_SERVER_CONTROL_SCHEMA_H_
#define SCHEMAD_SERVICE_SERVER_CONTROL_SCHEMA_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "service/engine/executor.h"
#include "service/engine/revision_graph.h"
#include "service/store/control_store.h"
#include "service/store/store.h"

namespace schemad::server {

// The embedded revision files: (name, content), oldest first.
const std::vector<std::pair<std::string, std::string>>& ControlSchemaRevisionFiles();

// The graph of the embedded revisions (parsed and checked as any
// migration set's; an error here is a bug of schemad).
absl::StatusOr<engine::RevisionGraph> ControlSchemaGraph();

// Creates the schema (ControlStore::EnsureSchema), then upgrades
// `control_database` — the control database opened with
// TableNames::schema = store::kControlSchema — to the heads of
// ControlSchemaGraph(). `who` goes to the schema's history. A control
// database at a revision this schemad does not know (a newer schemad
// migrated it) is FAILED_PRECONDITION saying so.
absl::StatusOr<engine::OperationResult> MigrateControlSchema(store::ControlStore& control,
                                                             store::Database& control_database,
                                                             const std::string& who);

}  // namespace schemad::server

#endif  // SCHEMAD_SERVICE_SERVER_CONTROL_SCHEMA_H_
