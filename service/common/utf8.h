// UTF-8 checks and repairs for text that crosses a boundary where only valid
// UTF-8 may go (protobuf `string` fields, JSON, revision files), and a cut
// that bounds text without splitting a character.
//
//   if (std::optional<size_t> bad = FindInvalidUtf8(text)) { ...reject... }
//   response.set_error(ToValidUtf8(postgres_message));   // U+FFFD for bad bytes
//   log->info("target={}", TruncateUtf8(target, 256));
//
// Valid means RFC 3629: no overlong forms, no surrogates (U+D800..U+DFFF),
// nothing above U+10FFFF. U+0000 (a NUL byte) is valid UTF-8; callers that
// cannot carry it check for it themselves.
//
// Thread-safety: stateless functions.
#ifndef SCHEMAD_SERVICE_COMMON_UTF8_H_
#define SCHEMAD_SERVICE_COMMON_UTF8_H_

#include <cstddef>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace schemad {

// The offset of the first byte of `text` that is not part of a valid UTF-8
// sequence, or nullopt when all of `text` is valid.
std::optional<size_t> FindInvalidUtf8(absl::string_view text);

inline bool IsValidUtf8(absl::string_view text) { return !FindInvalidUtf8(text).has_value(); }

// `text` with every invalid part replaced by U+FFFD (one per maximal invalid
// subpart, as Unicode's "substitution of maximal subparts" and Python's
// errors="replace" do); valid text comes back unchanged.
std::string ToValidUtf8(absl::string_view text);

// Makes `text` valid in place (as ToValidUtf8); true when it changed.
bool MakeValidUtf8(std::string* text);

// `text` when it has at most `max_bytes` bytes; otherwise its longest prefix
// of at most `max_bytes` bytes that ends on a character boundary, followed by
// "... (N bytes in all)". Invalid bytes are not repaired here.
std::string TruncateUtf8(absl::string_view text, size_t max_bytes);

}  // namespace schemad

#endif  // SCHEMAD_SERVICE_COMMON_UTF8_H_
