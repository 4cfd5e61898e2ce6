// Fuzzes DSN parsing and scrubbing (service/common/dsn.h): the input is the
// text of a DSN, a `postgresql://` URI or a `key=value` conninfo string.
//
// Properties checked beyond "no crash, no undefined behaviour, no leak":
//   - service/common/dsn_fuzz.h's (FuzzDsnOneInput): an error quotes no part
//     of the input; ToConninfo() and Redacted() parse back to the same
//     settings, Redacted() without password and sslpassword;
//   - a parsed DSN scrubs its own password and sslpassword out of a text
//     that holds them between two bytes no secret contains (unless the
//     secret is made of '*' only, which "***" contains);
//   - RedactDsn and ScrubDsnSecrets (also for DSNs that do not parse, as
//     schemactl's error printer calls it) do not crash.
//
// Thread-safety: libFuzzer calls it from one thread.
#include "service/common/dsn_fuzz.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "service/common/dsn.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

bool AllStars(absl::string_view secret) {
  return secret.find_first_not_of('*') == absl::string_view::npos;
}

// A one-byte string found in none of `spellings`, if there is one.
std::optional<std::string> FenceByte(const std::vector<std::string>& spellings) {
  for (int byte = 1; byte < 256; ++byte) {
    const std::string fence(1, static_cast<char>(byte));
    if (fence != "*" && std::none_of(spellings.begin(), spellings.end(), [&](const std::string& s) {
          return absl::StrContains(s, fence);
        })) {
      return fence;
    }
  }
  return std::nullopt;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  schemad::dsn::FuzzDsnOneInput(data, size);

  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  (void)schemad::dsn::RedactDsn(text);
  (void)schemad::dsn::ScrubDsnSecrets(absl::StrCat("connect to ", text, " failed"), text);

  absl::StatusOr<schemad::dsn::Dsn> dsn = schemad::dsn::ParseDsn(text);
  if (!dsn.ok()) {
    return 0;
  }
  // The secret goes between two bytes that no spelling of any secret holds,
  // so that the "***" mask cannot join the text around it into the secret
  // again (a password "* " and the text "*** rejected" would): what is left
  // of the secret must come from the secret itself.
  const auto fence = FenceByte(dsn->secrets());
  if (!fence.has_value()) {
    return 0;
  }
  for (absl::string_view keyword : {"password", "sslpassword"}) {
    const std::string* secret = dsn->Find(keyword);
    if (secret == nullptr || secret->empty() || AllStars(*secret)) {
      continue;
    }
    const std::string scrubbed = dsn->Scrub(absl::StrCat(*fence, *secret, *fence));
    FUZZ_CHECK(!absl::StrContains(scrubbed, *secret)) << keyword << " survives Scrub";
  }
  return 0;
}
