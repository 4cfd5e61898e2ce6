// Offline SQL: a plan rendered as the script that would run (Alembic's
// `--sql`), version-table DDL/DML and transaction boundaries included, for a
// DBA to review or run with psql.
//
//   ASSIGN_OR_RETURN(Plan plan, PlanUpgrade(graph, {}, "heads"));
//   std::cout << RenderOfflineSql(graph, plan, OfflineSqlOptions{});
//
// Each transactional revision is wrapped in BEGIN/COMMIT together with its
// version-table statements; a non-transactional revision's statements stand
// outside any transaction, followed by its version-table statements in their
// own BEGIN/COMMIT. When the plan starts from no rows the version table's
// CREATE TABLE comes first (IF NOT EXISTS, so the script also runs on a
// database that has it). A downgrade or stamp that leaves no version rows
// ends with DROP TABLE of the version table, as Alembic's offline mode does.
//
// Thread-safety: stateless.
#ifndef SCHEMAD_SERVICE_ENGINE_OFFLINE_SQL_H_
#define SCHEMAD_SERVICE_ENGINE_OFFLINE_SQL_H_

#include <string>

#include "absl/strings/string_view.h"
#include "service/engine/planner.h"
#include "service/engine/revision_graph.h"

namespace schemad::engine {

struct OfflineSqlOptions {
  std::string version_table = "alembic_version";  // may be schema-qualified: "ops.alembic_version"
  bool transaction_per_plan = false;              // one BEGIN/COMMIT around everything
};

std::string RenderOfflineSql(const RevisionGraph& graph, const Plan& plan,
                             const OfflineSqlOptions& options);

// SQL literal and identifier quoting used by the renderer.
std::string QuoteLiteral(absl::string_view value);
std::string QuoteQualifiedIdentifier(absl::string_view name);  // "a.b" -> "a"."b" when needed

}  // namespace schemad::engine

#endif  // SCHEMAD_SERVICE_ENGINE_OFFLINE_SQL_H_
