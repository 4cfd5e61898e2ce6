// The differ and renderer: model A -> model B (schema_model.h) as an ordered
// list of changes, each rendered as the PostgreSQL DDL that makes A into B
// and marked with what it costs a live database.
//
//   std::vector<SchemaChange> up = DiffSchemas(live, wanted);
//   std::vector<SchemaChange> down = DiffSchemas(wanted, live);  // the inverse
//   std::string sql = RenderSql(up);
//   // ALTER TABLE public.sensor_data ADD COLUMN calibration double precision;
//   // CREATE INDEX idx_device ON public.sensor_data USING btree (device_id);
//
// Order (dependency-aware; running the statements in order on a database
// whose schema is A leaves it with schema B):
//   first the drops of what depends on tables, dependents first: triggers,
//   views (a view before the views it reads), foreign keys (also a dropped
//   table's key to another dropped table), other constraints, indexes,
//   columns and identities, tables (partitions before their parent);
//   then creations and changes, dependencies first: schemas, extensions,
//   enums, domains, composite types, sequences, functions (except LANGUAGE
//   sql ones, whose bodies are checked against the tables they read: those
//   come after the views), tables (parents before partitions), columns,
//   sequence ownership, primary keys, unique, check and exclusion
//   constraints, foreign keys, indexes, views (a view after those it reads),
//   triggers, comments;
//   last the drops of what columns, defaults and triggers may have used
//   until then: sequences, functions, composite types, domains, enums,
//   extensions, schemas.
// A changed object that PostgreSQL cannot alter in place (an index, a
// constraint, a trigger, a view, a partition key) is dropped and created; an
// enum losing or reordering labels, and a composite type losing or changing
// attributes while a column stores it, are re-created and their columns
// converted (through text; attribute by attribute); a
// view is also re-created when a view it reads is, and around a change of
// type or a drop of a column of a table it reads.
//
// Columns are matched by name and their position is ignored: PostgreSQL
// cannot reorder columns, and an added column always goes last. Renames are
// never guessed: a dropped and an added object of the same shape stay a drop
// and a create, with a hint suggesting the rename.
//
// Thread-safety: pure functions.
#ifndef SCHEMAD_SERVICE_SCHEMA_SCHEMA_DIFF_H_
#define SCHEMAD_SERVICE_SCHEMA_SCHEMA_DIFF_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "service/schema/schema_model.h"

namespace schemad::schema {

enum class ChangeAction { kCreate, kDrop, kAlter };

// What a change costs on a database that holds data.
enum class ChangeSafety {
  kSafe,         // catalog-only, or on an object this diff creates
  kRewrite,      // rewrites or scans a table, or blocks writes on it while it runs
  kDestructive,  // loses data: a dropped table, column or sequence, a narrowed type
};

// "create", "drop", "alter"; "safe", "rewrite", "destructive".
absl::string_view ChangeActionName(ChangeAction action);
absl::string_view ChangeSafetyName(ChangeSafety safety);

struct SchemaChange {
  ChangeAction action = ChangeAction::kCreate;
  std::string object_kind;  // "table", "column", "index", "constraint", "view", ...
  std::string object;       // its key: "public.sensor_data.device_id"
  ChangeSafety safety = ChangeSafety::kSafe;
  std::string description;              // one line: "add column public.t.c double precision"
  std::vector<std::string> statements;  // DDL, each without the final ";"
  std::string hint;                     // e.g. a possible rename; "" = none
};

// The changes that make `from` into `to`; empty when the schemas are the same
// (up to column order).
std::vector<SchemaChange> DiffSchemas(const DatabaseSchema& from, const DatabaseSchema& to);

// Whether any change is kDestructive.
bool HasDestructive(const std::vector<SchemaChange>& changes);

// The statements of `changes` in order, each ended with ";\n". A destructive
// change is preceded by a `-- DESTRUCTIVE: <description>` comment, a change
// with a hint by `-- hint: <hint>`, a rewrite by `-- REWRITE: ...`.
std::string RenderSql(const std::vector<SchemaChange>& changes);

// PostgreSQL's quoting of an identifier: as is when it is lower case letters,
// digits, '_' and '$', does not start with a digit or '$' and is not a
// keyword PostgreSQL would quote; otherwise in double quotes, inner quotes
// doubled.
std::string QuoteIdent(absl::string_view name);
// "schema.name", each part quoted as QuoteIdent does.
std::string QualifiedName(absl::string_view schema, absl::string_view name);
// An SQL string literal: 'it''s'; E'' form never needed (standard strings).
std::string QuoteLiteral(absl::string_view text);

}  // namespace schemad::schema

#endif  // SCHEMAD_SERVICE_SCHEMA_SCHEMA_DIFF_H_
