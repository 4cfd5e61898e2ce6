// The schema verbs: diff, drift and `revision --autogenerate` (commands.h).
// Reading a live schema goes through the store seam (Session::InspectSchema);
// building one from SQL or revisions through the SchemaBuilder on a dev
// server; comparing and rendering through service/schema/schema_diff.h.
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cli/command_util.h"
#include "client/cli/commands.h"
#include "client/cli/output.h"
#include "service/common/dsn.h"
#include "service/common/status_macros.h"
#include "service/engine/executor.h"
#include "service/engine/planner.h"
#include "service/engine/revision_graph.h"
#include "service/schema/schema_diff.h"
#include "service/schema/schema_model.h"
#include "service/schema_build/drift.h"
#include "service/schema_build/schema_builder.h"
#include "service/store/pq/dev_server.h"
#include "service/store/pq/pq_database.h"
#include "service/store/store.h"

namespace schemad::cli {

using engine::RevisionGraph;
using internal::Finish;
using internal::Io;
using internal::RowsText;
using schema::DatabaseSchema;
using schema::SchemaChange;

namespace {

// The dev server and builder, opened on first use (a diff of two live
// databases needs neither).
class LazyBuilder {
 public:
  LazyBuilder(std::string dev_dsn, const std::atomic<bool>* cancelled)
      : dev_dsn_(std::move(dev_dsn)), cancelled_(cancelled) {}

  absl::StatusOr<store::DevServer*> Server() {
    RETURN_IF_ERROR(Get().status());
    return dev_.get();
  }

  absl::StatusOr<schema_build::SchemaBuilder*> Get() {
    if (builder_ == nullptr) {
      absl::StatusOr<std::unique_ptr<store::DevServer>> dev = store::DevServer::Open(dev_dsn_);
      if (!dev.ok()) {
        return Annotate(dev.status(),
                        absl::StrCat("--dev-dsn ", dev_dsn_ == "local" ? "local" : "(a DSN)"));
      }
      dev_ = *std::move(dev);
      schema_build::SchemaBuilder::Options options;
      options.cancelled = cancelled_;
      builder_ = std::make_unique<schema_build::SchemaBuilder>(*dev_, options);
    }
    return builder_.get();
  }

 private:
  std::string dev_dsn_;
  const std::atomic<bool>* cancelled_;
  std::unique_ptr<store::DevServer> dev_;
  std::unique_ptr<schema_build::SchemaBuilder> builder_;
};

// The schema the revisions of `graph` build up to `targets` (revision
// symbols; none or "base": an empty database).
absl::StatusOr<DatabaseSchema> SchemaAtRevisions(LazyBuilder& lazy, const RevisionGraph& graph,
                                                 const std::vector<std::string>& targets) {
  ASSIGN_OR_RETURN(schema_build::SchemaBuilder * builder, lazy.Get());
  return builder->AtRevisions(graph, targets);
}

// A DSN rather than DIR@REV or a path: a postgres URI, or key=value
// settings (a '=' is taken as a DSN, so that a password in one is never
// read as a directory or echoed in a message).
bool LooksLikeDsn(absl::string_view side) {
  return absl::StartsWith(side, "postgresql://") || absl::StartsWith(side, "postgres://") ||
         absl::StrContains(side, '=');
}

// A side of `diff` as messages name it: never a DSN's text.
std::string SideName(absl::string_view side) {
  if (LooksLikeDsn(side)) return "a database (DSN)";
  return std::string(side);
}

absl::StatusOr<DatabaseSchema> InspectLive(const GlobalOptions& global) {
  ASSIGN_OR_RETURN(std::unique_ptr<store::Database> database, internal::OpenTargetDatabase(global));
  ASSIGN_OR_RETURN(std::unique_ptr<store::Session> session, internal::ConnectTarget(*database));
  return session->InspectSchema();
}

absl::StatusOr<DatabaseSchema> ResolveSide(const Io& io, absl::string_view side,
                                           LazyBuilder& lazy) {
  if (side == "live") {
    return InspectLive(io.global);
  }
  if (LooksLikeDsn(side)) {
    GlobalOptions global = io.global;
    global.dsn = std::string(side);
    global.dsn_source = "diff";
    return InspectLive(global);
  }
  const size_t at = side.rfind('@');
  std::error_code error;
  if (at != absl::string_view::npos && !std::filesystem::exists(std::string(side), error)) {
    GlobalOptions global = io.global;
    if (at > 0) global.dir = std::string(side.substr(0, at));
    const std::string target(side.substr(at + 1));
    if (target.empty()) {
      return UsageError(absl::StrCat("diff: '", side, "' names no revision after '@'"));
    }
    ASSIGN_OR_RETURN(RevisionGraph graph, internal::LoadGraph(global));
    std::vector<std::string> targets;
    if (target != "base") targets.push_back(target);
    return SchemaAtRevisions(lazy, graph, targets);
  }
  if (!std::filesystem::exists(std::string(side), error)) {
    return UsageError(
        absl::StrCat("diff: '", side,
                     "' is neither `live`, a DSN, DIR@REV nor an existing .sql file or directory"));
  }
  ASSIGN_OR_RETURN(schema_build::SchemaBuilder * builder, lazy.Get());
  return builder->FromDesiredState(std::string(side));
}

Json ChangeJson(const SchemaChange& change) {
  Json json;
  json["action"] = std::string(schema::ChangeActionName(change.action));
  json["object_kind"] = change.object_kind;
  json["object"] = change.object;
  json["safety"] = std::string(schema::ChangeSafetyName(change.safety));
  json["description"] = change.description;
  json["statements"] = internal::StringListJson(change.statements);
  if (!change.hint.empty()) json["hint"] = change.hint;
  return json;
}

absl::StatusOr<int> Diff(const Io& io, const DiffOptions& options) {
  if (options.from.empty() || options.to.empty()) {
    return UsageError("diff: name FROM and TO (live, a DSN, DIR@REV, or a .sql path)");
  }
  LazyBuilder lazy(options.dev_dsn, io.global.cancelled);
  ASSIGN_OR_RETURN(DatabaseSchema from, ResolveSide(io, options.from, lazy));
  ASSIGN_OR_RETURN(DatabaseSchema to, ResolveSide(io, options.to, lazy));
  const std::vector<SchemaChange> changes = schema::DiffSchemas(from, to);
  if (io.global.json) {
    Json json;
    json["from"] = SideName(options.from);
    json["to"] = SideName(options.to);
    json["identical"] = changes.empty();
    json["destructive"] = schema::HasDestructive(changes);
    Json list = Json::array();
    for (const SchemaChange& change : changes) list.push_back(ChangeJson(change));
    json["changes"] = std::move(list);
    io.out << JsonText(json) << "\n";
    return kExitOk;
  }
  if (changes.empty()) {
    if (!io.global.quiet) {
      io.out << "-- no differences: " << SideName(options.from) << " and " << SideName(options.to)
             << " have the same schema\n";
    }
    return kExitOk;
  }
  io.out << "-- " << changes.size() << (changes.size() == 1 ? " change" : " changes") << " from "
         << SideName(options.from) << " to " << SideName(options.to) << "\n"
         << schema::RenderSql(changes);
  return kExitOk;
}

absl::StatusOr<int> Drift(const Io& io, const DriftOptions& options) {
  ASSIGN_OR_RETURN(RevisionGraph graph, internal::LoadGraph(io.global));
  ASSIGN_OR_RETURN(std::unique_ptr<store::Database> database,
                   internal::OpenTargetDatabase(io.global));
  ASSIGN_OR_RETURN(std::unique_ptr<store::Session> session, internal::ConnectTarget(*database));
  LazyBuilder lazy(options.dev_dsn, io.global.cancelled);
  ASSIGN_OR_RETURN(schema_build::SchemaBuilder * builder, lazy.Get());
  ASSIGN_OR_RETURN(schema_build::DriftReport report,
                   schema_build::CheckDrift(*session, graph, *builder));
  session.reset();
  if (report.needs_attention.has_value()) {
    return WithExitCode(
        absl::FailedPreconditionError(absl::StrCat(
            database->DisplayName(), " needs attention: revision ", *report.needs_attention,
            " was interrupted, so its schema is between two revisions; resolve it first "
            "(`schemactl resolve`)")),
        kExitNeedsAttention);
  }
  internal::DriftView view;
  view.database = database->DisplayName();
  view.rows = report.rows;
  view.repair_sql = report.repair_sql;
  for (const SchemaChange& change : report.changes) {
    view.items.push_back({std::string(schema_build::DriftKind(change)), change.object_kind,
                          change.object, schema_build::DriftDetail(change)});
  }
  return internal::PrintDrift(io, view, options.sql);
}

// Names each difference of `changes` (expected -> actual), one per line.
std::string DifferenceLines(const std::vector<SchemaChange>& changes) {
  std::string lines;
  for (const SchemaChange& change : changes) {
    absl::StrAppend(&lines, "    ", schema_build::DriftLine(change), "\n");
  }
  return lines;
}

// A downgrade target that undoes exactly `revision` from `rows`: one of its
// parents (or base for a root) or REV-1, whichever the planner turns into
// that single step; "" when none does (e.g. the parent has other children
// applied since).
std::string DowngradeTargetFor(const RevisionGraph& graph, int revision,
                               const std::vector<std::string>& rows) {
  std::vector<std::string> candidates = graph.revision(revision).revises;
  if (candidates.empty()) candidates.push_back("base");
  candidates.push_back(absl::StrCat(graph.id(revision), "-1"));
  for (const std::string& candidate : candidates) {
    absl::StatusOr<engine::Plan> plan = engine::PlanDowngrade(graph, rows, candidate);
    if (plan.ok() && plan->steps.size() == 1 && plan->steps[0].revision == revision) {
      return candidate;
    }
  }
  return "";
}

absl::StatusOr<int> Verify(const Io& io, const VerifyOptions& options) {
  ASSIGN_OR_RETURN(RevisionGraph graph, internal::LoadGraph(io.global));
  if (graph.empty()) {
    return UsageError(absl::StrCat(io.global.dir, " holds no revision files (*.sql)"));
  }
  ASSIGN_OR_RETURN(engine::Plan plan, engine::PlanUpgrade(graph, {}, "heads"));
  LazyBuilder lazy(options.dev_dsn, io.global.cancelled);
  ASSIGN_OR_RETURN(schema_build::SchemaBuilder * builder, lazy.Get());
  std::optional<DatabaseSchema> desired;
  if (!options.schema.empty()) {
    ASSIGN_OR_RETURN(desired, builder->FromDesiredState(options.schema));
  }
  ASSIGN_OR_RETURN(store::DevServer * dev, lazy.Server());
  ASSIGN_OR_RETURN(std::unique_ptr<store::ScratchDatabase> scratch, dev->CreateScratchDatabase());
  ASSIGN_OR_RETURN(std::unique_ptr<store::Database> database,
                   store::OpenPqDatabase(scratch->dsn(), store::PqOptions{}));
  ASSIGN_OR_RETURN(std::unique_ptr<store::Session> session, database->Connect());
  engine::ExecutorOptions executor_options;
  executor_options.who = io.global.who.empty() ? DefaultWho() : io.global.who;
  engine::Executor executor(graph, *database, std::move(executor_options));
  auto fail = [&](const std::string& message) {
    io.out << "FAILED\n";
    return WithExitCode(absl::FailedPreconditionError(message), kExitFailed);
  };

  ASSIGN_OR_RETURN(DatabaseSchema before, session->InspectSchema());
  std::vector<std::string> rows;
  int irreversible = 0;
  // Ctrl-C stops between statements; the scratch database is dropped.
  engine::CallControl control;
  control.cancelled = io.global.cancelled;
  for (const engine::PlanStep& step : plan.steps) {
    const engine::Revision& revision = graph.revision(step.revision);
    if (control.cancelled != nullptr && control.cancelled->load()) {
      return absl::CancelledError(absl::StrCat("verify cancelled before revision ", revision.id,
                                               "; nothing is left on the dev server"));
    }
    if (!io.global.quiet) io.out << revision.id << " " << revision.message << ": " << std::flush;
    RETURN_IF_ERROR(executor.Upgrade(*session, revision.id, control).status());
    ASSIGN_OR_RETURN(DatabaseSchema after, session->InspectSchema());
    if (!revision.downgrade.has_value()) {
      ++irreversible;
      if (!io.global.quiet) io.out << "up; irreversible (declared), not downgraded\n";
      before = std::move(after);
      rows = step.rows_after;
      continue;
    }
    const std::string target = DowngradeTargetFor(graph, step.revision, step.rows_after);
    if (target.empty()) {
      return fail(absl::StrCat("revision ", revision.id,
                               ": no downgrade target undoes it alone from ",
                               RowsText(step.rows_after)));
    }
    RETURN_IF_ERROR(executor.Downgrade(*session, target, control).status());
    ASSIGN_OR_RETURN(DatabaseSchema restored, session->InspectSchema());
    const std::vector<SchemaChange> left = schema::DiffSchemas(before, restored);
    if (!left.empty()) {
      return fail(absl::StrCat(
          "revision ", revision.id, " (", revision.path,
          "): its downgrade does not restore the schema before its upgrade; after the "
          "downgrade the database has\n",
          DifferenceLines(left),
          "write the downgrade that undoes each, or remove the downgrade section to declare the "
          "revision irreversible"));
    }
    RETURN_IF_ERROR(executor.Upgrade(*session, revision.id, control).status());
    ASSIGN_OR_RETURN(DatabaseSchema again, session->InspectSchema());
    const std::vector<SchemaChange> differs = schema::DiffSchemas(after, again);
    if (!differs.empty()) {
      return fail(absl::StrCat("revision ", revision.id, " (", revision.path,
                               "): upgrading again after its downgrade builds another schema:\n",
                               DifferenceLines(differs)));
    }
    if (!io.global.quiet) io.out << "up, down (schema restored), up again: OK\n";
    before = std::move(again);
    rows = step.rows_after;
  }
  if (desired.has_value()) {
    const std::vector<SchemaChange> differs = schema::DiffSchemas(*desired, before);
    if (!differs.empty()) {
      return WithExitCode(absl::FailedPreconditionError(absl::StrCat(
                              "the schema at ", RowsText(rows), " is not the desired state in ",
                              options.schema, ":\n", DifferenceLines(differs))),
                          kExitFailed);
    }
  }
  if (!io.global.quiet) {
    io.out << "verified " << plan.steps.size()
           << (plan.steps.size() == 1 ? " revision" : " revisions");
    if (irreversible > 0) io.out << " (" << irreversible << " irreversible)";
    if (desired.has_value()) io.out << "; the head schema is " << options.schema;
    io.out << "\n";
  }
  return kExitOk;
}

}  // namespace

namespace internal {

int PrintDrift(const Io& io, const DriftView& view, bool sql) {
  const std::string rows = RowsText(view.rows);
  const int exit_code = view.items.empty() ? kExitOk : kExitDrift;
  if (sql) {
    io.out << "-- takes " << view.database << " back to the schema of " << rows << "\n"
           << view.repair_sql;
    return exit_code;
  }
  if (io.global.json) {
    Json json;
    json["database"] = view.database;
    json["rows"] = StringListJson(view.rows);
    json["drift"] = !view.items.empty();
    Json list = Json::array();
    for (const DriftView::Item& item : view.items) {
      Json entry;
      entry["kind"] = item.kind;
      entry["object_kind"] = item.object_kind;
      entry["object"] = item.object;
      entry["description"] = item.detail;
      list.push_back(std::move(entry));
    }
    json["differences"] = std::move(list);
    io.out << JsonText(json) << "\n";
    return exit_code;
  }
  if (view.items.empty()) {
    if (!io.global.quiet) {
      io.out << "no drift: " << view.database << " has the schema of " << rows << "\n";
    }
    return kExitOk;
  }
  io.out << "drift: " << view.database << " differs from the schema of " << rows << " in "
         << view.items.size() << (view.items.size() == 1 ? " object" : " objects") << ":\n";
  for (const DriftView::Item& item : view.items) {
    io.out << "  " << item.kind << " " << item.object_kind << " " << item.object;
    if (item.kind == "changed") io.out << ": " << item.detail;
    io.out << "\n";
  }
  io.out << "(`schemactl drift --sql` prints the DDL that takes it back)\n";
  return kExitDrift;
}

absl::StatusOr<AutogeneratedBodies> AutogenerateBodies(const RevisionGraph& graph,
                                                       const std::vector<std::string>& revises,
                                                       const RevisionOptions& options) {
  if (options.schema.empty()) {
    return UsageError("revision --autogenerate: --schema PATH (the desired state) is required");
  }
  std::error_code error;
  if (!std::filesystem::exists(options.schema, error)) {
    return UsageError(absl::StrCat("--schema: ", options.schema, " does not exist"));
  }
  LazyBuilder lazy(options.dev_dsn, nullptr);
  ASSIGN_OR_RETURN(DatabaseSchema current, SchemaAtRevisions(lazy, graph, revises));
  ASSIGN_OR_RETURN(schema_build::SchemaBuilder * builder, lazy.Get());
  ASSIGN_OR_RETURN(DatabaseSchema desired, builder->FromDesiredState(options.schema));
  const std::vector<SchemaChange> up = schema::DiffSchemas(current, desired);
  AutogeneratedBodies bodies;
  if (up.empty()) return bodies;
  if (schema::HasDestructive(up) && !options.allow_destructive) {
    std::string list;
    for (const SchemaChange& change : up) {
      if (change.safety == schema::ChangeSafety::kDestructive) {
        absl::StrAppend(&list, "\n  ", change.description);
      }
    }
    return WithExitCode(
        absl::FailedPreconditionError(absl::StrCat(
            "the desired state in ", options.schema, " loses data:", list,
            "\nnothing written; pass --allow-destructive to write these changes anyway")),
        kExitFailed);
  }
  const std::string from = revises.empty() ? "<base>" : RowsText(revises);
  bodies.upgrade_sql =
      absl::StrCat("-- autogenerated by schemactl from ", options.schema, " (schema at ", from,
                   "); review before applying\n", schema::RenderSql(up));
  bodies.downgrade_sql = schema::RenderSql(schema::DiffSchemas(desired, current));
  bodies.changes = static_cast<int>(up.size());
  return bodies;
}

}  // namespace internal

int RunDiff(const GlobalOptions& global, const DiffOptions& options, std::ostream& out,
            std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, Diff(io, options));
}

int RunDrift(const GlobalOptions& global, const DriftOptions& options, std::ostream& out,
             std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, Drift(io, options));
}

int RunVerify(const GlobalOptions& global, const VerifyOptions& options, std::ostream& out,
              std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, Verify(io, options));
}

}  // namespace schemad::cli
