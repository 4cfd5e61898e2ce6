#include "service/server/auth.h"

#include <grpcpp/security/auth_context.h>
#include <openssl/sha.h>

#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "service/common/status_macros.h"

namespace schemad::server {
namespace {

constexpr size_t kMinTokenLength = 16;

std::string Digest(absl::string_view token) {
  unsigned char out[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), out);
  return std::string(reinterpret_cast<const char*>(out), sizeof out);
}

bool ParseRole(absl::string_view text, Role* role) {
  if (text == "reader") {
    *role = Role::kReader;
  } else if (text == "migrator") {
    *role = Role::kMigrator;
  } else if (text == "admin") {
    *role = Role::kAdmin;
  } else {
    return false;
  }
  return true;
}

bool Printable(absl::string_view text) {
  for (char c : text) {
    if (c <= ' ' || c >= 0x7f) {
      return false;
    }
  }
  return true;
}

// A client-supplied label, made safe for logs: printable ASCII, bounded.
std::string Sanitize(absl::string_view text) {
  std::string out;
  for (char c : text.substr(0, 128)) {
    out.push_back(c >= ' ' && c < 0x7f ? c : '?');
  }
  return out;
}

std::string Metadata(const grpc::ServerContextBase& context, absl::string_view key) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(grpc::string_ref(key.data(), key.size()));
  if (it == metadata.end()) {
    return "";
  }
  return std::string(it->second.data(), it->second.size());
}

// gRPC's peer string without its ephemeral client port, which would make
// every call of one client a different `who`: "ipv4:10.0.0.7:51234" ->
// "10.0.0.7", "ipv6:[::1]:51234" -> "::1"; anything else as it is.
std::string PeerHost(absl::string_view peer) {
  absl::string_view host = peer;
  if (absl::ConsumePrefix(&host, "ipv4:")) {
    return std::string(host.substr(0, host.rfind(':')));
  }
  if (absl::ConsumePrefix(&host, "ipv6:") && absl::ConsumePrefix(&host, "[")) {
    return std::string(host.substr(0, host.find(']')));
  }
  return std::string(peer);
}

// The TLS client certificate's common name, or the peer's address.
std::string PeerName(const grpc::ServerContextBase& context) {
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth != nullptr && auth->IsPeerAuthenticated()) {
    std::vector<grpc::string_ref> cn = auth->FindPropertyValues("x509_common_name");
    if (!cn.empty()) {
      return absl::StrCat("cn=", Sanitize(absl::string_view(cn[0].data(), cn[0].size())));
    }
  }
  return Sanitize(PeerHost(context.peer()));
}

}  // namespace

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kReader:
      return "reader";
    case Role::kMigrator:
      return "migrator";
    case Role::kAdmin:
      return "admin";
  }
  return "unknown";
}

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::Parse(absl::string_view content) {
  auto auth = std::make_unique<Authenticator>();
  auth->enabled_ = true;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(content, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || absl::StartsWith(line, "#")) {
      continue;
    }
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    const auto error = [line_number](absl::string_view what) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_number, ": ", what));
    };
    if (fields.size() != 3) {
      return error("expected `token role name`");
    }
    if (fields[0].size() < kMinTokenLength || !Printable(fields[0])) {
      return error(
          absl::StrCat("the token must be at least ", kMinTokenLength, " printable characters"));
    }
    Entry entry;
    if (!ParseRole(fields[1], &entry.role)) {
      return error(
          absl::StrCat("unknown role \"", Sanitize(fields[1]), "\" (reader, migrator or admin)"));
    }
    entry.name = std::string(fields[2]);
    if (!auth->tokens_.emplace(Digest(fields[0]), std::move(entry)).second) {
      return error("this token is already listed on an earlier line");
    }
  }
  return auth;
}

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::FromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot read the tokens file"));
  }
  std::ostringstream content;
  content << in.rdbuf();
  absl::StatusOr<std::unique_ptr<Authenticator>> auth = Parse(content.str());
  if (!auth.ok()) {
    return Annotate(auth.status(), path);
  }
  return auth;
}

absl::StatusOr<Identity> Authenticator::Authorize(const grpc::ServerContextBase& context,
                                                  Role needed, absl::string_view method) const {
  Identity identity;
  const std::string client_who = Metadata(context, "x-schemad-who");
  if (!enabled_) {
    identity.role = Role::kAdmin;
    identity.who = PeerName(context);
  } else {
    const std::string header = Metadata(context, "authorization");
    absl::string_view value = header;
    if (header.empty() || !absl::ConsumePrefix(&value, "Bearer ")) {
      return absl::UnauthenticatedError(
          absl::StrCat(method, " needs a bearer token (`authorization: Bearer <token>` metadata)"));
    }
    auto it = tokens_.find(Digest(absl::StripAsciiWhitespace(value)));
    if (it == tokens_.end()) {
      return absl::UnauthenticatedError(absl::StrCat(method, ": unknown bearer token"));
    }
    identity.role = it->second.role;
    identity.name = it->second.name;
    identity.who = it->second.name;
    if (identity.role < needed) {
      return absl::PermissionDeniedError(absl::StrCat(method, " needs role ", RoleName(needed),
                                                      "; token \"", identity.name, "\" has role ",
                                                      RoleName(identity.role)));
    }
  }
  if (!client_who.empty()) {
    absl::StrAppend(&identity.who, " (", Sanitize(client_who), ")");
  }
  return identity;
}

}  // namespace schemad::server
