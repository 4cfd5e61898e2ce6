#include "service/common/utf8.h"

#include <cstdint>

#include "absl/strings/str_cat.h"

namespace schemad {
namespace {

constexpr absl::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// One sequence at the start of `text` (not empty): `valid` and its length, or
// not valid and the length of its maximal subpart (the longest prefix of a
// valid sequence, at least one byte).
struct Sequence {
  bool valid = false;
  size_t length = 1;
};

Sequence ReadSequence(absl::string_view text) {
  const auto byte = [&text](size_t i) { return static_cast<uint8_t>(text[i]); };
  const uint8_t lead = byte(0);
  if (lead < 0x80) {
    return {true, 1};
  }
  size_t need = 0;
  uint8_t low = 0x80;  // range of the second byte (Unicode 15, table 3-7)
  uint8_t high = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    need = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    need = 3;
    low = lead == 0xE0 ? 0xA0 : 0x80;   // no overlong forms
    high = lead == 0xED ? 0x9F : 0xBF;  // no surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    need = 4;
    low = lead == 0xF0 ? 0x90 : 0x80;   // no overlong forms
    high = lead == 0xF4 ? 0x8F : 0xBF;  // nothing above U+10FFFF
  } else {
    return {false, 1};  // a continuation byte, C0, C1 or F5..FF
  }
  for (size_t i = 1; i < need; ++i) {
    if (i >= text.size()) {
      return {false, i};
    }
    const uint8_t b = byte(i);
    const bool in_range = i == 1 ? (b >= low && b <= high) : (b >= 0x80 && b <= 0xBF);
    if (!in_range) {
      return {false, i};
    }
  }
  return {true, need};
}

}  // namespace

std::optional<size_t> FindInvalidUtf8(absl::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    // ASCII runs are the common case.
    if (static_cast<uint8_t>(text[i]) < 0x80) {
      ++i;
      continue;
    }
    const Sequence s = ReadSequence(text.substr(i));
    if (!s.valid) {
      return i;
    }
    i += s.length;
  }
  return std::nullopt;
}

std::string ToValidUtf8(absl::string_view text) {
  std::optional<size_t> bad = FindInvalidUtf8(text);
  if (!bad.has_value()) {
    return std::string(text);
  }
  std::string out(text.substr(0, *bad));
  out.reserve(text.size() + 8);
  size_t i = *bad;
  while (i < text.size()) {
    const Sequence s = ReadSequence(text.substr(i));
    if (s.valid) {
      out.append(text.data() + i, s.length);
    } else {
      out.append(kReplacement.data(), kReplacement.size());
    }
    i += s.length;
  }
  return out;
}

bool MakeValidUtf8(std::string* text) {
  if (IsValidUtf8(*text)) {
    return false;
  }
  *text = ToValidUtf8(*text);
  return true;
}

std::string TruncateUtf8(absl::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) {
    return std::string(text);
  }
  size_t cut = max_bytes;
  // Back up over the continuation bytes of the character the cut would split
  // (at most three: a longer run is invalid anyway).
  for (int i = 0; i < 3 && cut > 0 && (static_cast<uint8_t>(text[cut]) & 0xC0) == 0x80; ++i) {
    --cut;
  }
  return absl::StrCat(text.substr(0, cut), "... (", text.size(), " bytes in all)");
}

}  // namespace schemad
