#include "service/schema_build/drift.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "service/common/status_macros.h"

namespace schemad::schema_build {

absl::StatusOr<LiveSchema> ReadLiveSchema(store::Session& session) {
  ASSIGN_OR_RETURN(store::DatabaseState state, session.ReadState());
  LiveSchema live;
  live.rows = state.rows;
  if (state.needs_attention.has_value()) {
    live.needs_attention = state.needs_attention->revision;
    return live;
  }
  ASSIGN_OR_RETURN(live.schema, session.InspectSchema());
  return live;
}

DriftReport CompareSchemas(LiveSchema live, const schema::DatabaseSchema& expected) {
  DriftReport report;
  report.rows = std::move(live.rows);
  report.needs_attention = std::move(live.needs_attention);
  if (report.needs_attention.has_value()) return report;
  report.changes = schema::DiffSchemas(expected, live.schema);
  if (!report.changes.empty()) {
    report.repair_sql = schema::RenderSql(schema::DiffSchemas(live.schema, expected));
  }
  return report;
}

absl::StatusOr<DriftReport> CheckDrift(store::Session& session, const engine::RevisionGraph& graph,
                                       SchemaBuilder& builder) {
  ASSIGN_OR_RETURN(LiveSchema live, ReadLiveSchema(session));
  if (live.needs_attention.has_value()) return CompareSchemas(std::move(live), {});
  ASSIGN_OR_RETURN(schema::DatabaseSchema expected, builder.AtRevisions(graph, live.rows));
  return CompareSchemas(std::move(live), expected);
}

absl::string_view DriftKind(const schema::SchemaChange& change) {
  switch (change.action) {
    case schema::ChangeAction::kCreate:
      return "extra";
    case schema::ChangeAction::kDrop:
      return "missing";
    case schema::ChangeAction::kAlter:
      return "changed";
  }
  return "changed";
}

std::string DriftDetail(const schema::SchemaChange& change) {
  // The differ's description names the object again ("alter column
  // public.t.c: type ..."): only what follows.
  absl::string_view what = change.description;
  if (change.action == schema::ChangeAction::kAlter) {
    absl::ConsumePrefix(&what,
                        absl::StrCat("alter ", change.object_kind, " ", change.object, ": "));
  }
  return std::string(what);
}

std::string DriftLine(const schema::SchemaChange& change) {
  std::string line = absl::StrCat(DriftKind(change), " ", change.object_kind, " ", change.object);
  if (change.action == schema::ChangeAction::kAlter)
    absl::StrAppend(&line, ": ", DriftDetail(change));
  return line;
}

}  // namespace schemad::schema_build
