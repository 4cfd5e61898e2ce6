#include "service/server/resource_limits.h"

#include <sys/resource.h>

namespace schemad::server {

OpenFileLimit RaiseOpenFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return {};
  }
  OpenFileLimit out{static_cast<uint64_t>(limit.rlim_cur), static_cast<uint64_t>(limit.rlim_cur)};
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) == 0) {
      out.soft = static_cast<uint64_t>(limit.rlim_cur);
    }
  }
  return out;
}

}  // namespace schemad::server
