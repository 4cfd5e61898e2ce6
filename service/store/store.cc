#include "service/store/store.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace schemad::store {

std::string LockHolder::Describe() const {
  std::string out = absl::StrCat("pid ", pid);
  if (!application_name.empty()) {
    absl::StrAppend(&out, " (", application_name, ")");
  }
  // Empty for a Unix-socket client, and when we may not see the holder's address.
  if (!client_address.empty()) {
    absl::StrAppend(&out, " from ", client_address);
  }
  if (since != absl::InfinitePast() && since != absl::InfiniteFuture()) {
    absl::StrAppend(&out, " since ",
                    absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", since, absl::UTCTimeZone()));
  }
  return out;
}

std::string BackendActivity::Describe() const {
  std::string out = backend.Describe();
  if (!state.empty()) {
    absl::StrAppend(&out, ", ", state);
  }
  if (!query.empty()) {
    absl::StrAppend(&out, ": ", query);
  }
  return out;
}

}  // namespace schemad::store
