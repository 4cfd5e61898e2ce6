// Drift: what a database's live schema has, lacks or has changed against
// the schema its version rows should produce (the revisions applied, built
// on a dev server by SchemaBuilder). The one implementation behind
// `schemactl drift`, the Drift RPC and the fleet's drift action.
//
//   ASSIGN_OR_RETURN(DriftReport report, CheckDrift(*session, graph, builder));
//   if (report.needs_attention) ...;           // not compared: resolve first
//   for (const schema::SchemaChange& c : report.changes) std::cout << DriftLine(c);
//
// A change is expected -> live: kCreate is an extra object on the site,
// kDrop a missing one, kAlter a changed one.
//
// Thread-safety: as SchemaBuilder (one thread at a time per builder).
#ifndef SCHEMAD_SERVICE_SCHEMA_BUILD_DRIFT_H_
#define SCHEMAD_SERVICE_SCHEMA_BUILD_DRIFT_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "service/engine/revision_graph.h"
#include "service/schema/schema_diff.h"
#include "service/schema_build/schema_builder.h"
#include "service/store/store.h"

namespace schemad::schema_build {

struct DriftReport {
  std::vector<std::string> rows;  // the version rows compared against, sorted
  // Set when an interrupted non-transactional revision left the schema
  // between two revisions: nothing was compared (changes empty).
  std::optional<std::string> needs_attention;
  std::vector<schema::SchemaChange> changes;  // expected -> live
  // DDL that takes the live schema back to the expected one; "" without drift.
  std::string repair_sql;
  bool drifted() const { return !changes.empty(); }
};

// A database's side of a drift check: its version rows and live schema.
struct LiveSchema {
  std::vector<std::string> rows;               // sorted
  std::optional<std::string> needs_attention;  // the interrupted revision; schema not read
  schema::DatabaseSchema schema;
};

// Reads `session`'s version rows and (unless it needs attention) its schema.
// Errors are the database's (the store's statuses).
absl::StatusOr<LiveSchema> ReadLiveSchema(store::Session& session);

// The drift of `live` against `expected`, the schema its rows should
// produce (empty changes when it needs attention: nothing is compared).
DriftReport CompareSchemas(LiveSchema live, const schema::DatabaseSchema& expected);

// ReadLiveSchema, then the expected schema at its rows from `builder`
// (unless it needs attention), then CompareSchemas.
absl::StatusOr<DriftReport> CheckDrift(store::Session& session, const engine::RevisionGraph& graph,
                                       SchemaBuilder& builder);

// "extra", "missing" or "changed".
absl::string_view DriftKind(const schema::SchemaChange& change);

// What changed, without the object's name: "type text -> character
// varying(100)" for a changed object; the differ's description otherwise.
std::string DriftDetail(const schema::SchemaChange& change);

// "extra index public.hand_made_idx", "changed column public.t.c: type ..."
std::string DriftLine(const schema::SchemaChange& change);

}  // namespace schemad::schema_build

#endif  // SCHEMAD_SERVICE_SCHEMA_BUILD_DRIFT_H_
