// The edit distance behind "did you mean" suggestions (a DSN keyword, a
// schemactl verb).
//
//   EditDistance("upgrad", "upgrade") == 1
//
// Thread-safety: a stateless function.
#ifndef SCHEMAD_SERVICE_COMMON_EDIT_DISTANCE_H_
#define SCHEMAD_SERVICE_COMMON_EDIT_DISTANCE_H_

#include <cstddef>

#include "absl/strings/string_view.h"

namespace schemad {

// Levenshtein distance: the fewest single-byte insertions, deletions and
// substitutions that turn `a` into `b`. O(|a| * |b|) time, O(|b|) memory;
// callers pass short words.
size_t EditDistance(absl::string_view a, absl::string_view b);

}  // namespace schemad

#endif  // SCHEMAD_SERVICE_COMMON_EDIT_DISTANCE_H_
