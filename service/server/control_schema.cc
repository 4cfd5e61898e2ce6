#include "service/server/control_schema.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "service/common/status_macros.h"
#include "service/engine/revision_file.h"

namespace schemad::server {
namespace {

// Revision 1: the tables of control_store.h. Every name schema-qualified.
constexpr char kRevision1[] = R"sql(-- revision: control_0001
-- message: operations, their events, fleet sites, replicas and their leases

-- +upgrade
CREATE TABLE schemad_control.replicas (
  name text PRIMARY KEY,
  incarnation text NOT NULL,
  host text NOT NULL,
  pid int NOT NULL,
  schemad_version text NOT NULL,
  registered timestamptz NOT NULL,
  renewed timestamptz NOT NULL,
  lease_expires timestamptz NOT NULL,
  released timestamptz
);

CREATE TABLE schemad_control.operations (
  id text PRIMARY KEY,
  kind text NOT NULL,
  database text NOT NULL,
  target text NOT NULL,
  who text NOT NULL,
  replica text NOT NULL,
  state text NOT NULL
    CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'abandoned')),
  created timestamptz NOT NULL,
  started timestamptz,
  finished timestamptz,
  cancel_requested boolean NOT NULL DEFAULT false,
  error_code int NOT NULL DEFAULT 0,
  error text,
  heads text[] NOT NULL DEFAULT '{}',
  current_revision text,
  step_index int NOT NULL DEFAULT 0,
  step_count int NOT NULL DEFAULT 0,
  revisions_run int NOT NULL DEFAULT 0,
  event_count bigint NOT NULL DEFAULT 0,
  events_dropped bigint NOT NULL DEFAULT 0,
  request bytea
);
CREATE INDEX operations_newest ON schemad_control.operations (created DESC, id DESC);
CREATE INDEX operations_unfinished ON schemad_control.operations (replica)
  WHERE state IN ('queued', 'running');

CREATE TABLE schemad_control.events (
  operation_id text NOT NULL REFERENCES schemad_control.operations (id) ON DELETE CASCADE,
  sequence bigint NOT NULL,
  kind text NOT NULL,
  written timestamptz NOT NULL DEFAULT pg_catalog.now(),
  payload bytea NOT NULL,
  PRIMARY KEY (operation_id, sequence)
);

CREATE TABLE schemad_control.fleet_sites (
  operation_id text NOT NULL REFERENCES schemad_control.operations (id) ON DELETE CASCADE,
  site text NOT NULL,
  outcome text NOT NULL,
  revisions_run int NOT NULL DEFAULT 0,
  error text,
  payload bytea NOT NULL,
  PRIMARY KEY (operation_id, site)
);

-- +downgrade
DROP TABLE schemad_control.fleet_sites;
DROP TABLE schemad_control.events;
DROP TABLE schemad_control.operations;
DROP TABLE schemad_control.replicas;
)sql";

// Revision 2: which operation resumed an abandoned fleet run (fleet resume).
constexpr char kRevision2[] = R"sql(-- revision: control_0002
-- revises: control_0001
-- message: operations resumed by another (fleet resume)

-- +upgrade
ALTER TABLE schemad_control.operations ADD COLUMN resumed_by text;

-- +downgrade
ALTER TABLE schemad_control.operations DROP COLUMN resumed_by;
)sql";

}  // namespace

const std::vector<std::pair<std::string, std::string>>& ControlSchemaRevisionFiles() {
  static const auto* files = new std::vector<std::pair<std::string, std::string>>{
      {"control_0001_operations.sql", kRevision1},
      {"control_0002_resumed_by.sql", kRevision2},
  };
  return *files;
}

absl::StatusOr<engine::RevisionGraph> ControlSchemaGraph() {
  std::vector<engine::Revision> revisions;
  for (const auto& [name, content] : ControlSchemaRevisionFiles()) {
    ASSIGN_OR_RETURN(engine::Revision revision,
                     engine::ParseRevisionFile(absl::StrCat("(built in) ", name), content));
    revisions.push_back(std::move(revision));
  }
  return engine::RevisionGraph::Build(std::move(revisions));
}

absl::StatusOr<engine::OperationResult> MigrateControlSchema(store::ControlStore& control,
                                                             store::Database& control_database,
                                                             const std::string& who) {
  RETURN_IF_ERROR(control.EnsureSchema());
  ASSIGN_OR_RETURN(engine::RevisionGraph graph, ControlSchemaGraph());
  engine::ExecutorOptions options;
  options.who = who;
  options.lock_wait = absl::Minutes(5);  // another replica applying the same revisions
  engine::Executor executor(graph, control_database, options);
  ASSIGN_OR_RETURN(std::unique_ptr<store::Session> session, control_database.Connect());
  ASSIGN_OR_RETURN(engine::DatabaseStatus status, executor.Status(*session));
  if (!status.row_error.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the control database's schema is at revision(s) ",
                     absl::StrJoin(status.rows, ", "), ", which this schemad does not know (",
                     status.row_error, "): a newer schemad migrated it; run that version"));
  }
  return executor.Upgrade(*session, "heads");
}

}  // namespace schemad::server
