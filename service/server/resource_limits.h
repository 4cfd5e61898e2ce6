// The process limits schemad adjusts at start.
//
// Thread-safety: call once at start, before threads depend on the limit.
#ifndef SCHEMAD_SERVICE_SERVER_RESOURCE_LIMITS_H_
#define SCHEMAD_SERVICE_SERVER_RESOURCE_LIMITS_H_

#include <cstdint>

namespace schemad::server {

// RLIMIT_NOFILE's soft limit before and after RaiseOpenFileLimit (0 when
// it could not be read).
struct OpenFileLimit {
  uint64_t before = 0;
  uint64_t soft = 0;
};

// Raises the soft limit on open files to the hard limit (each pooled
// session is a socket; the usual soft limit of 1024 runs out near 128 sites
// at 8 sessions each). SchemadServer::Start calls it.
OpenFileLimit RaiseOpenFileLimit();

}  // namespace schemad::server

#endif  // SCHEMAD_SERVICE_SERVER_RESOURCE_LIMITS_H_
