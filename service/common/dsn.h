// PostgreSQL DSNs — `postgresql://` URIs and `key=value` conninfo strings —
// parsed exactly as libpq 15 parses them (PostgreSQL docs, "Connection
// Strings"; fe-connect.c's conninfo_parse and conninfo_uri_parse_options),
// refused where libpq would silently mis-parse them, and rendered without
// their secrets. The one DSN module: schemactl, the server configuration and
// the PostgreSQL store all use it, so all three accept the same DSNs and
// none has a scrubber of its own.
//
//   ASSIGN_OR_RETURN(Dsn dsn, ParseDsn(text));   // INVALID_ARGUMENT naming no secret
//   std::string conninfo = dsn.ToConninfo();      // for PQconnectdb, password included
//   log << Redacted(dsn);                         // postgresql://app@db:5432/site_a
//   std::string safe = dsn.Scrub(libpq_error);    // every spelling of the password -> ***
//
// What is refused beyond libpq's own errors (each a usage error):
//   - a URI whose user-info holds an unescaped '@', '/' or '?': libpq would
//     take part of the password as host, port or database name (that is how
//     `postgresql://app:kq3/x+y=@db/site` leaked); percent-encode them;
//   - values libpq would only reject when connecting, with the value quoted
//     in its message: port (integers 1..65535, as many as hosts), the
//     integer options (connect_timeout, keepalives*, tcp_user_timeout) and
//     the enumerations (sslmode, gssencmode, channel_binding,
//     target_session_attrs, ssl_min/max_protocol_version).
// Error messages quote nothing from the input but libpq's own keywords and
// character positions, so a mistyped DSN cannot print its password.
//
// Pure: no libpq, no I/O, no environment. Thread-safety: stateless functions;
// a Dsn is a value.
#ifndef SCHEMAD_COMMON_DSN_H_
#define SCHEMAD_COMMON_DSN_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace schemad::dsn {

// One setting as libpq would store it: keyword (always one of libpq's) and
// the decoded value (URI percent-escapes and conninfo quoting removed).
struct Setting {
  std::string keyword;
  std::string value;
};

class Dsn {
 public:
  bool is_uri() const { return uri_; }
  // Every setting the text made, once per keyword (a later one replaces an
  // earlier one, as in libpq), in the order the keywords first appeared.
  const std::vector<Setting>& settings() const { return settings_; }
  // The value of `keyword`, or nullptr when the DSN does not set it.
  const std::string* Find(absl::string_view keyword) const;
  // The value of `keyword`, or "".
  std::string Get(absl::string_view keyword) const;

  // `key='value' ...` for PQconnectdb: every setting, quoted for conninfo.
  // Holds the password: never show it.
  std::string ToConninfo() const;

  // `text` with every spelling of the DSN's secrets (password and
  // sslpassword: decoded, as written in the DSN, percent-encoded, conninfo-
  // quoted) replaced by "***". Defence in depth for text that came from
  // libpq or a server; schemad's own messages never contain a secret.
  std::string Scrub(absl::string_view text) const;

  // The secret values (decoded), longest first; for tests and Scrub.
  const std::vector<std::string>& secrets() const { return secret_spellings_; }

 private:
  friend class Parser;
  friend std::string ScrubSecret(absl::string_view text, absl::string_view secret);
  friend std::string ScrubDsnSecrets(absl::string_view text, absl::string_view dsn_text);
  void Set(std::string keyword, std::string value);
  void AddSecretSpelling(std::string spelling);

  bool uri_ = false;
  std::vector<Setting> settings_;
  std::vector<std::string> secret_spellings_;  // longest first, unique, non-empty
};

// Parses `text` (surrounding whitespace is ignored). INVALID_ARGUMENT for
// empty text, libpq's syntax errors, the ambiguous URIs and the bad values
// listed above; the message says what is wrong and how to fix it, quoting no
// part of `text` except libpq keywords.
absl::StatusOr<Dsn> ParseDsn(absl::string_view text);

// The DSN without its secrets, in its own form: a URI stays a URI
// (`postgresql://app@db:5432/site_a?sslmode=require`, values
// percent-encoded), key=value stays key=value. Parses again to the same
// settings minus password and sslpassword.
std::string Redacted(const Dsn& dsn);

// Redacted(ParseDsn(text)), or "(a DSN that does not parse)".
std::string RedactDsn(absl::string_view text);

// `text` with the secrets of the DSN `dsn_text` scrubbed as Dsn::Scrub does;
// also for a DSN that does not parse (what looks like its password then, as
// far as the parser got, and for an ambiguous URI every piece of what an
// RFC 3986 reader would take as the password). For callers that hold the
// DSN's text, such as schemactl's error printer.
std::string ScrubDsnSecrets(absl::string_view text, absl::string_view dsn_text);

// `text` with every spelling of one secret value (as is, percent-encoded,
// conninfo-quoted) replaced by "***"; `text` itself when `secret` is empty.
std::string ScrubSecret(absl::string_view text, absl::string_view secret);

// `value` quoted for a conninfo string: '...' with ' and \ escaped.
std::string QuoteConninfoValue(absl::string_view value);

// The keywords libpq 15 knows (PQconndefaults), and whether one is secret.
const std::vector<std::string>& Keywords();
bool IsSecretKeyword(absl::string_view keyword);

}  // namespace schemad::dsn

#endif  // SCHEMAD_COMMON_DSN_H_
