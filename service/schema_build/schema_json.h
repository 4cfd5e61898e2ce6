// The schema model (schema/schema_model.h) as JSON, for the schema cache
// (schema_builder.h): every field of every object, so that
// FromJson(ToJson(s)) == s.
//
// Thread-safety: stateless.
#ifndef SCHEMAD_SERVICE_SCHEMA_BUILD_SCHEMA_JSON_H_
#define SCHEMAD_SERVICE_SCHEMA_BUILD_SCHEMA_JSON_H_

#include <string>

#include "absl/status/statusor.h"
#include "service/schema/schema_model.h"

namespace schemad::schema_build {

std::string SchemaToJson(const schema::DatabaseSchema& schema);

// INVALID_ARGUMENT when `json` is not a model SchemaToJson wrote.
absl::StatusOr<schema::DatabaseSchema> SchemaFromJson(const std::string& json);

}  // namespace schemad::schema_build

#endif  // SCHEMAD_SERVICE_SCHEMA_BUILD_SCHEMA_JSON_H_
