// The properties of service/common/dsn.h that a fuzzer (and the unit tests)
// check on arbitrary input. A libFuzzer target is one line:
//
//   extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
//     return schemad::dsn::FuzzDsnOneInput(data, size);
//   }
//
// Seeds: tests/fuzz/corpus/dsn_fuzz/. Thread-safety: stateless.
#ifndef SCHEMAD_COMMON_DSN_FUZZ_H_
#define SCHEMAD_COMMON_DSN_FUZZ_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "service/common/dsn.h"

namespace schemad::dsn {

namespace fuzz_internal {

inline std::map<std::string, std::string> SettingsWithoutSecrets(const Dsn& dsn) {
  std::map<std::string, std::string> out;
  for (const Setting& s : dsn.settings()) {
    if (!IsSecretKeyword(s.keyword)) {
      out[s.keyword] = s.value;
    }
  }
  return out;
}

inline std::map<std::string, std::string> AllSettings(const Dsn& dsn) {
  std::map<std::string, std::string> out;
  for (const Setting& s : dsn.settings()) {
    out[s.keyword] = s.value;
  }
  return out;
}

}  // namespace fuzz_internal

// "" when every property holds for `text`, else what broke:
//  - an error message contains no byte of a kind that only the input can
//    contribute (non-ASCII, control characters, and !#$&*+<>^`{|}~"\ — none
//    of which dsn.cc's messages use), i.e. no part of the input is quoted;
//  - a parsed DSN's ToConninfo() parses back to the same settings;
//  - Redacted() parses back to the same settings minus password and
//    sslpassword, and contains no `password` setting.
inline std::string CheckDsnInvariants(absl::string_view text) {
  absl::StatusOr<Dsn> dsn = ParseDsn(text);
  if (!dsn.ok()) {
    for (char ch : dsn.status().message()) {
      const auto c = static_cast<unsigned char>(ch);
      if (c >= 0x80 || c < 0x20 ||
          absl::string_view("!#$&*+<>^`{|}~\"\\").find(ch) != absl::string_view::npos) {
        return absl::StrCat("error message quotes the input: ", dsn.status().message());
      }
    }
    return "";
  }
  // A DSN that sets nothing (`postgresql://`: libpq's defaults) has an
  // empty conninfo, which ParseDsn refuses as empty.
  absl::StatusOr<Dsn> again =
      dsn->settings().empty() ? ParseDsn("postgresql://") : ParseDsn(dsn->ToConninfo());
  if (!again.ok()) {
    return absl::StrCat("ToConninfo does not parse: ", again.status().message());
  }
  if (fuzz_internal::AllSettings(*again) != fuzz_internal::AllSettings(*dsn)) {
    return "ToConninfo parses to other settings";
  }
  const std::string redacted = Redacted(*dsn);
  absl::StatusOr<Dsn> shown = ParseDsn(redacted);
  if (!shown.ok()) {
    // A DSN of secrets only redacts to nothing.
    if (!fuzz_internal::SettingsWithoutSecrets(*dsn).empty() || !redacted.empty()) {
      return absl::StrCat("Redacted does not parse: ", shown.status().message());
    }
    return "";
  }
  if (shown->Find("password") != nullptr || shown->Find("sslpassword") != nullptr) {
    return "Redacted keeps a password";
  }
  if (fuzz_internal::SettingsWithoutSecrets(*shown) !=
      fuzz_internal::SettingsWithoutSecrets(*dsn)) {
    return "Redacted parses to other settings";
  }
  return "";
}

// libFuzzer's entry: aborts (a finding) when a property breaks.
inline int FuzzDsnOneInput(const uint8_t* data, size_t size) {
  const std::string problem =
      CheckDsnInvariants(absl::string_view(reinterpret_cast<const char*>(data), size));
  if (!problem.empty()) {
    std::fprintf(stderr, "dsn property broken: %s\n", problem.c_str());
    std::abort();
  }
  return 0;
}

}  // namespace schemad::dsn

#endif  // SCHEMAD_COMMON_DSN_FUZZ_H_
