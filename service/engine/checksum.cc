#include "service/engine/checksum.h"

#include <nettle/sha2.h>
#include <nettle/version.h>

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "service/engine/pg_query_json.h"
#include "service/engine/sql_parser.h"

namespace schemad::engine {
namespace {

// Appends `body` to `out` with line endings made "\n" and trailing
// whitespace removed.
void AppendNormalized(absl::string_view body, std::string& out) {
  size_t end = body.size();
  while (end > 0 && (body[end - 1] == ' ' || body[end - 1] == '\t' || body[end - 1] == '\n' ||
                     body[end - 1] == '\r' || body[end - 1] == '\f' || body[end - 1] == '\v')) {
    --end;
  }
  out.reserve(out.size() + end);
  for (size_t i = 0; i < end; ++i) {
    if (body[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < end && body[i + 1] == '\n') {
        ++i;
      }
    } else {
      out.push_back(body[i]);
    }
  }
}

// Removes every "location" key from `node` and its descendants.
void StripLocations(pg_query_json::Json& node) {
  if (node.is_object()) {
    node.erase("location");
    for (auto& [key, value] : node.items()) {
      StripLocations(value);
    }
  } else if (node.is_array()) {
    for (pg_query_json::Json& item : node) {
      StripLocations(item);
    }
  }
}

// Appends T(section) (see RevisionFingerprint); false when it does not parse.
bool AppendMeaning(const SqlSection& section, std::string& out) {
  absl::StatusOr<std::vector<ParsedStatement>> parsed =
      ParseSql(section.body, section.line + 1, ParseDepth::kTrees);
  if (!parsed.ok()) {
    return false;
  }
  for (const ParsedStatement& statement : *parsed) {
    if (statement.tree_json.empty()) {
      out.append("text ");
      AppendNormalized(statement.statement.text, out);
    } else {
      pg_query_json::Json tree =
          pg_query_json::Json::parse(statement.tree_json, nullptr, /*allow_exceptions=*/false);
      StripLocations(tree);
      out.append(tree.dump());
    }
    out.push_back('\n');
  }
  return true;
}

}  // namespace

std::string Sha256Hex(absl::string_view data) {
  // Nettle, not OpenSSL: see service/CMakeLists.txt.
  sha256_ctx context;
  sha256_init(&context);
  sha256_update(&context, data.size(), reinterpret_cast<const uint8_t*>(data.data()));
  uint8_t digest[SHA256_DIGEST_SIZE];
#if NETTLE_VERSION_MAJOR >= 4
  sha256_digest(&context, digest);  // Nettle 4 dropped the length argument
#else
  sha256_digest(&context, SHA256_DIGEST_SIZE, digest);
#endif
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * SHA256_DIGEST_SIZE);
  for (size_t i = 0; i < SHA256_DIGEST_SIZE; ++i) {
    hex.push_back(kHex[digest[i] >> 4]);
    hex.push_back(kHex[digest[i] & 0x0f]);
  }
  return hex;
}

std::string RevisionChecksum(const std::optional<SqlSection>& upgrade,
                             const std::optional<SqlSection>& downgrade) {
  std::string data = "upgrade\n";
  if (upgrade.has_value()) {
    AppendNormalized(upgrade->body, data);
  }
  if (downgrade.has_value()) {
    data.append("\0downgrade\n", 11);
    AppendNormalized(downgrade->body, data);
  } else {
    data.append("\0irreversible", 13);
  }
  return Sha256Hex(data);
}

std::string RevisionFingerprint(const Revision& revision) {
  if (!revision.parse) {
    return "";
  }
  std::string data = "upgrade\n";
  if (revision.upgrade.has_value() && !AppendMeaning(*revision.upgrade, data)) {
    return "";
  }
  if (revision.downgrade.has_value()) {
    data.append("\0downgrade\n", 11);
    if (!AppendMeaning(*revision.downgrade, data)) {
      return "";
    }
  } else {
    data.append("\0irreversible", 13);
  }
  return Sha256Hex(data);
}

}  // namespace schemad::engine
