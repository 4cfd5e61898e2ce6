// Bearer-token authentication and role-based authorisation for schemad's RPCs.
//
// Tokens file (`tokens_file` in the config): one token per line,
//
//   # token                            role      name
//   3q2+7wXlQ0u1f6mJ...                reader    grafana
//   c29tZS1taWdyYXRvci10b2tlbg...      migrator  site-a-control-layer
//   YWRtaW4tdG9rZW4tZm9yLW9wcw...      admin     ops-oncall
//
// separated by spaces or tabs; `#` starts a comment line; blank lines are
// ignored. Tokens are at least 16 characters of printable ASCII without
// spaces, each unique; roles are reader, migrator and admin (cumulative:
// reader < migrator < admin); the name (no spaces) is what history records as
// who asked. Clients send `authorization: Bearer <token>`.
//
// Without a tokens file authentication is off: every caller is admin (the
// server logs a warning at start).
//
// Tokens are kept only as SHA-256 digests and never appear in a message or
// log line.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<Authenticator> auth, Authenticator::FromFile(path));
//   absl::StatusOr<Identity> who = auth->Authorize(context, Role::kMigrator);
//
// Thread-safety: immutable after construction; Authorize may be called from
// any thread.
#ifndef SCHEMAD_SERVICE_SERVER_AUTH_H_
#define SCHEMAD_SERVICE_SERVER_AUTH_H_

#include <grpcpp/server_context.h>

#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace schemad::server {

enum class Role { kReader = 1, kMigrator = 2, kAdmin = 3 };
absl::string_view RoleName(Role role);

// Who is calling, as far as the server can tell.
struct Identity {
  Role role = Role::kAdmin;
  std::string name;  // token name, or "" without tokens
  std::string who;   // for history and logs: token name or TLS common name or peer,
                     // plus the client's `x-schemad-who` in parentheses when sent
};

class Authenticator {
 public:
  // Authentication off: everyone is admin.
  Authenticator() = default;

  // Parses a tokens file's content. INVALID_ARGUMENT "line N: what is wrong"
  // (never quoting a token).
  static absl::StatusOr<std::unique_ptr<Authenticator>> Parse(absl::string_view content);
  // Reads and parses `path`; errors are prefixed with the path.
  static absl::StatusOr<std::unique_ptr<Authenticator>> FromFile(const std::string& path);

  bool enabled() const { return enabled_; }
  int token_count() const { return static_cast<int>(tokens_.size()); }

  // The caller's identity when its token's role is at least `needed`.
  // UNAUTHENTICATED: no `authorization: Bearer` metadata or an unknown token;
  // PERMISSION_DENIED: the role is too low (the message names both roles).
  absl::StatusOr<Identity> Authorize(const grpc::ServerContextBase& context, Role needed,
                                     absl::string_view method) const;

 private:
  struct Entry {
    Role role;
    std::string name;
  };
  bool enabled_ = false;
  absl::flat_hash_map<std::string, Entry> tokens_;  // by SHA-256 digest (raw bytes)
};

}  // namespace schemad::server

#endif  // SCHEMAD_SERVICE_SERVER_AUTH_H_
