// Text helpers for libpq's messages, shared by the PostgreSQL store's files
// (pq_database.cc, dev_server.cc). Internal to schemad_store_pq.
#ifndef SCHEMAD_SERVICE_STORE_PQ_LIBPQ_TEXT_H_
#define SCHEMAD_SERVICE_STORE_PQ_LIBPQ_TEXT_H_

#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace schemad::store::internal {

// libpq's multi-line messages ("ERROR:  x\nDETAIL:  y\n") on one line,
// each line trimmed, empty lines left out.
inline std::string OneLine(absl::string_view text) {
  std::vector<std::string> parts;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (!line.empty()) parts.emplace_back(line);
  }
  return absl::StrJoin(parts, " ");
}

}  // namespace schemad::store::internal

#endif  // SCHEMAD_SERVICE_STORE_PQ_LIBPQ_TEXT_H_
