// Reading libpg_query's parse-tree JSON (pg_query_parse) without exceptions:
// every accessor answers "absent" (nullptr, false, "", an empty list) for a
// missing key or a value of another type. Shared by the SQL front end
// (sql_parser.cc) and the linter (lint.cc); internal to the engine.
//
// Thread-safety: stateless.
#ifndef SCHEMAD_SERVICE_ENGINE_PG_QUERY_JSON_H_
#define SCHEMAD_SERVICE_ENGINE_PG_QUERY_JSON_H_

#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace schemad::engine::pg_query_json {

using Json = nlohmann::json;

// The value of `key` in the object `node`, or nullptr.
inline const Json* Field(const Json& node, const char* key) {
  if (!node.is_object()) {
    return nullptr;
  }
  const auto it = node.find(key);
  return it == node.end() ? nullptr : &*it;
}

// True when `key` holds the boolean true.
inline bool BoolField(const Json& node, const char* key) {
  const Json* value = Field(node, key);
  return value != nullptr && value->is_boolean() && value->get<bool>();
}

// The string `key`, or "".
inline std::string StringField(const Json& node, const char* key) {
  const Json* value = Field(node, key);
  return value != nullptr && value->is_string() ? value->get<std::string>() : std::string();
}

// The elements of the array `key` (empty when absent).
inline const std::vector<Json>& Items(const Json& node, const char* key) {
  static const auto* const kEmpty = new std::vector<Json>();
  const Json* value = Field(node, key);
  return value != nullptr && value->is_array() ? value->get_ref<const Json::array_t&>() : *kEmpty;
}

}  // namespace schemad::engine::pg_query_json

#endif  // SCHEMAD_SERVICE_ENGINE_PG_QUERY_JSON_H_
