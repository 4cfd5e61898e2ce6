#include "service/schema_build/schema_json.h"

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace schemad::schema {

// nlohmann's field-by-field converters, found by argument-dependent lookup.
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Namespace, name, comment)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Extension, name, schema, version, comment)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(EnumType, schema, name, labels, comment)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(DomainConstraint, name, definition)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(DomainType, schema, name, base_type, default_expr, not_null,
                                   collation, constraints, comment)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(CompositeAttribute, name, type, collation)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(CompositeType, schema, name, attributes, comment)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Sequence, schema, name, data_type, start, increment, min_value,
                                   max_value, cache, cycle, owned_by_table, owned_by_column,
                                   comment)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Column, name, type, default_expr, not_null, identity,
                                   generated_expr, collation, comment)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Table, schema, name, unlogged, partition_key, partition_of,
                                   partition_bound, columns, comment)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Constraint, schema, table, name, kind, definition, comment)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Index, schema, table, name, definition, comment)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(View, schema, name, materialized, definition, depends_on,
                                   comment)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Function, schema, name, identity_arguments, procedure,
                                   definition, comment)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Trigger, schema, table, name, definition, comment)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(DatabaseSchema, schemas, extensions, enums, domains,
                                   composite_types, sequences, tables, constraints, indexes, views,
                                   functions, triggers)

}  // namespace schemad::schema

namespace schemad::schema_build {

std::string SchemaToJson(const schema::DatabaseSchema& schema) {
  nlohmann::json json = schema;
  return json.dump();
}

absl::StatusOr<schema::DatabaseSchema> SchemaFromJson(const std::string& json) {
  try {
    return nlohmann::json::parse(json).get<schema::DatabaseSchema>();
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("not a schema model: ", e.what()));
  }
}

}  // namespace schemad::schema_build
