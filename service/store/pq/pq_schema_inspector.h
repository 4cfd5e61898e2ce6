// The schema inspector: a PostgreSQL database's schema as the canonical model
// (service/schema/schema_model.h), read from the catalog.
//
//   InspectOptions options;
//   options.excluded_tables = {"alembic_version", "schemad_history", ...};
//   ASSIGN_OR_RETURN(schema::DatabaseSchema live, InspectPqSchema(connection, options));
//
// One query per object kind (about a dozen in all, whatever the number of
// objects), all in one READ ONLY REPEATABLE READ transaction, so the model is
// one consistent snapshot. Inside it, SET LOCAL pins search_path = '' (every
// name PostgreSQL's deparsers print is schema-qualified), DateStyle,
// IntervalStyle, TimeZone = 'UTC' and extra_float_digits (literals in
// defaults and partition bounds print the same whatever the session's
// settings), so the session's own settings are as they were afterwards.
//
// What is read and what is left out is the model's contract (schema_model.h);
// in addition this inspector leaves out
//  - tables named in `excluded_tables`, in every schema, with their columns,
//    constraints, indexes, triggers and the sequences they own;
//  - indexes of materialized views and triggers on views (not modelled);
//  - inheritance (INHERITS) of a non-partition child: its inherited columns
//    are left out like a partition's, the link itself is not modelled.
//
// Thread-safety: uses `connection`, which must not be used by another thread
// meanwhile; no transaction may be open on it.
#ifndef SCHEMAD_SERVICE_STORE_PQ_PQ_SCHEMA_INSPECTOR_H_
#define SCHEMAD_SERVICE_STORE_PQ_PQ_SCHEMA_INSPECTOR_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "service/schema/schema_model.h"

namespace pqxx {
class connection_base;
}  // namespace pqxx

namespace schemad::store {

struct InspectOptions {
  // Table names (unquoted, as stored) left out in every schema: Alembic's
  // version table and schemad's bookkeeping tables.
  std::vector<std::string> excluded_tables;
};

// The schema of the database `connection` is connected to. Errors:
// UNAVAILABLE when the connection is closed or breaks ("connection lost:
// ..."), the SQLSTATE's code otherwise (FAILED_PRECONDITION for most, e.g. a
// permission denied on a catalog function), with the server's message; never
// the connection string.
absl::StatusOr<schema::DatabaseSchema> InspectPqSchema(pqxx::connection_base& connection,
                                                       const InspectOptions& options);

}  // namespace schemad::store

#endif  // SCHEMAD_SERVICE_STORE_PQ_PQ_SCHEMA_INSPECTOR_H_
