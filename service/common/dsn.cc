#include "service/common/dsn.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "service/common/edit_distance.h"

namespace schemad::dsn {
namespace {

constexpr absl::string_view kUriPrefix = "postgresql://";
constexpr absl::string_view kShortUriPrefix = "postgres://";

// libpq's isspace() for conninfo strings (the C locale).
bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

absl::Status Invalid(absl::string_view message) { return absl::InvalidArgumentError(message); }

absl::Status UriError(absl::string_view what) {
  return Invalid(absl::StrCat("is not a valid URI: ", what));
}

absl::Status KeyValueError(absl::string_view what) {
  return Invalid(absl::StrCat("is not a valid key=value DSN: ", what));
}

// "; did you mean 'sslmode'?" when `word` is a near miss of a keyword; the
// word itself is never quoted (it may be part of a password).
std::string DidYouMean(absl::string_view word) {
  if (word.size() > 40) {
    return "";
  }
  const std::string lower = absl::AsciiStrToLower(word);
  for (const std::string& keyword : Keywords()) {
    if (lower == keyword || EditDistance(lower, keyword) <= 2) {
      return absl::StrCat("; did you mean '", keyword, "'?");
    }
  }
  return "";
}

bool HexValue(char c, int* value) {
  if (c >= '0' && c <= '9') {
    *value = c - '0';
  } else if (c >= 'a' && c <= 'f') {
    *value = c - 'a' + 10;
  } else if (c >= 'A' && c <= 'F') {
    *value = c - 'A' + 10;
  } else {
    return false;
  }
  return true;
}

// libpq's conninfo_uri_decode. `part` names the URI part in errors.
absl::StatusOr<std::string> UriDecode(absl::string_view text, absl::string_view part) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    int hi = 0;
    int lo = 0;
    if (i + 2 >= text.size() || !HexValue(text[i + 1], &hi) || !HexValue(text[i + 2], &lo)) {
      return UriError(absl::StrCat("a '%' not followed by two hex digits in the ", part,
                                   "; write a literal '%' as %25"));
    }
    const int c = (hi << 4) | lo;
    if (c == 0) {
      return UriError(absl::StrCat("%00 in the ", part, " (a NUL byte is not allowed)"));
    }
    out.push_back(static_cast<char>(c));
    i += 2;
  }
  return out;
}

bool IsUnreserved(unsigned char c) {
  return absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

std::string PercentEncode(absl::string_view text, bool lower_hex = false) {
  static constexpr char kUpper[] = "0123456789ABCDEF";
  static constexpr char kLower[] = "0123456789abcdef";
  const char* digits = lower_hex ? kLower : kUpper;
  std::string out;
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (IsUnreserved(c)) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(digits[c >> 4]);
      out.push_back(digits[c & 15]);
    }
  }
  return out;
}

// libpq's parse_int_param: optional whitespace, an int, optional whitespace.
bool ParseLibpqInt(absl::string_view text, int64_t* out) {
  size_t i = 0;
  while (i < text.size() && IsSpace(text[i])) {
    ++i;
  }
  bool negative = false;
  if (i < text.size() && (text[i] == '+' || text[i] == '-')) {
    negative = text[i] == '-';
    ++i;
  }
  const size_t digits_start = i;
  int64_t value = 0;
  while (i < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[i]))) {
    value = value * 10 + (text[i] - '0');
    if (value > 2147483648LL) {
      return false;
    }
    ++i;
  }
  if (i == digits_start) {
    return false;
  }
  while (i < text.size() && IsSpace(text[i])) {
    ++i;
  }
  if (i != text.size()) {
    return false;
  }
  value = negative ? -value : value;
  if (value > 2147483647LL || value < -2147483648LL) {
    return false;
  }
  *out = value;
  return true;
}

struct Enumeration {
  const char* keyword;
  std::vector<std::string> values;
  bool case_insensitive;
  bool empty_ok;
};

const std::vector<Enumeration>& Enumerations() {
  static const auto* kEnumerations = new std::vector<Enumeration>{
      {"sslmode",
       {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"},
       false,
       false},
      {"gssencmode", {"disable", "prefer", "require"}, false, false},
      {"channel_binding", {"disable", "prefer", "require"}, false, false},
      {"target_session_attrs",
       {"any", "read-write", "read-only", "primary", "standby", "prefer-standby"},
       false,
       false},
      {"ssl_min_protocol_version", {"TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"}, true, true},
      {"ssl_max_protocol_version", {"TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"}, true, true},
  };
  return *kEnumerations;
}

constexpr const char* kIntegerKeywords[] = {"connect_timeout",  "keepalives",
                                            "keepalives_idle",  "keepalives_interval",
                                            "keepalives_count", "tcp_user_timeout"};

std::string OrList(const std::vector<std::string>& values) {
  if (values.size() <= 1) {
    return values.empty() ? "" : values[0];
  }
  return absl::StrCat(absl::StrJoin(values.begin(), values.end() - 1, ", "), " or ", values.back());
}

size_t ListSize(absl::string_view list) {
  return static_cast<size_t>(std::count(list.begin(), list.end(), ',')) + 1;
}

// The values libpq checks only when it connects, and then quotes in its
// error: checked here, without quoting them.
absl::Status ValidateValues(const Dsn& dsn) {
  for (const Enumeration& e : Enumerations()) {
    const std::string* value = dsn.Find(e.keyword);
    if (value == nullptr || (value->empty() && e.empty_ok)) {
      continue;
    }
    const bool known = std::any_of(e.values.begin(), e.values.end(), [&](const std::string& v) {
      return e.case_insensitive ? absl::EqualsIgnoreCase(v, *value) : v == *value;
    });
    if (!known) {
      return Invalid(absl::StrCat("has a bad ", e.keyword, ": expected ", OrList(e.values)));
    }
  }
  for (const char* keyword : kIntegerKeywords) {
    const std::string* value = dsn.Find(keyword);
    int64_t number = 0;
    if (value != nullptr && !ParseLibpqInt(*value, &number)) {
      return Invalid(
          absl::StrCat("has a bad ", keyword, ": expected an integer",
                       absl::string_view(keyword) == "connect_timeout" ? " (seconds)" : ""));
    }
  }
  if (const std::string* ports = dsn.Find("port"); ports != nullptr) {
    for (absl::string_view port : absl::StrSplit(*ports, ',')) {
      int64_t number = 0;
      if (!port.empty() && (!ParseLibpqInt(port, &number) || number < 1 || number > 65535)) {
        return Invalid(
            "has a bad port: expected a number from 1 to 65535 (or one per host, separated by "
            "commas)");
      }
    }
    const std::string* host = dsn.Find("host");
    if (host == nullptr || host->empty()) {
      host = dsn.Find("hostaddr");
    }
    const size_t hosts = host == nullptr || host->empty() ? 1 : ListSize(*host);
    const size_t port_count = ListSize(*ports);
    if (port_count != 1 && port_count != hosts) {
      return Invalid(absl::StrCat("has ", port_count, " ports for ", hosts,
                                  " host(s): give one port, or one per host"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

// ------------------------------------------------------------------ Parser

class Parser {
 public:
  static absl::StatusOr<Dsn> Parse(absl::string_view text) {
    Parser parser;
    return parser.Run(text);
  }

  // The secret spellings seen while parsing `text`, whether or not it parses.
  static Dsn SecretsOf(absl::string_view text) {
    Parser parser;
    (void)parser.Run(text);
    return std::move(parser.dsn_);
  }

 private:
  absl::StatusOr<Dsn> Run(absl::string_view text) {
    Parser& parser = *this;
    text = absl::StripAsciiWhitespace(text);
    if (text.empty()) {
      return Invalid("is empty");
    }
    if (text.find('\0') != absl::string_view::npos) {
      return Invalid("contains a NUL byte");
    }
    absl::Status status;
    if (absl::StartsWith(text, kUriPrefix)) {
      status = parser.ParseUri(text, kUriPrefix.size());
    } else if (absl::StartsWith(text, kShortUriPrefix)) {
      status = parser.ParseUri(text, kShortUriPrefix.size());
    } else {
      status = parser.ParseKeyValue(text);
    }
    if (!status.ok()) {
      return status;
    }
    if (absl::Status values = ValidateValues(parser.dsn_); !values.ok()) {
      return values;
    }
    return parser.dsn_;
  }

  // For a URI refused as ambiguous: what an RFC 3986 reader would take as
  // the password (after the first ':' of `userinfo`, which runs to the last
  // '@'), and its pieces, so that ScrubDsnSecrets can still find them.
  void RecordIntendedPassword(absl::string_view userinfo) {
    const size_t colon = userinfo.find(':');
    if (colon == absl::string_view::npos) {
      return;
    }
    const absl::string_view password = userinfo.substr(colon + 1);
    dsn_.AddSecretSpelling(std::string(password));
    for (absl::string_view piece : absl::StrSplit(password, absl::ByAnyChar("/@?:"))) {
      if (piece.size() >= 4) {
        dsn_.AddSecretSpelling(std::string(piece));
      }
    }
  }

  // libpq's conninfo_storeval (requiressl translated, keyword checked).
  absl::Status Store(absl::string_view keyword, std::string value, bool from_uri_query,
                     size_t position, absl::string_view raw_value) {
    std::string key(keyword);
    if (key == "requiressl") {
      key = "sslmode";
      value = !value.empty() && value[0] == '1' ? "require" : "prefer";
    }
    const std::vector<std::string>& keywords = Keywords();
    if (std::find(keywords.begin(), keywords.end(), key) == keywords.end()) {
      const std::string hint = DidYouMean(keyword);
      if (from_uri_query) {
        return UriError(
            absl::StrCat("query parameter ", position, " is not a libpq connection option", hint));
      }
      return KeyValueError(absl::StrCat("the option at character ", position,
                                        " is not a libpq connection option", hint));
    }
    if (IsSecretKeyword(key)) {
      dsn_.AddSecretSpelling(std::string(raw_value));
      dsn_.AddSecretSpelling(value);
    }
    dsn_.Set(std::move(key), std::move(value));
    return absl::OkStatus();
  }

  // A URI part, percent-decoded, stored unless empty (libpq skips empty parts).
  absl::Status StoreUriPart(absl::string_view keyword, absl::string_view raw,
                            absl::string_view part) {
    if (raw.empty()) {
      return absl::OkStatus();
    }
    absl::StatusOr<std::string> decoded = UriDecode(raw, part);
    if (!decoded.ok()) {
      return decoded.status();
    }
    return Store(keyword, *std::move(decoded), false, 0, raw);
  }

  // libpq's conninfo_uri_parse_options, plus the refusals of ambiguous text.
  absl::Status ParseUri(absl::string_view s, size_t start) {
    dsn_.uri_ = true;
    const size_t end = s.size();
    const auto at = [&](size_t i) { return i < end ? s[i] : '\0'; };
    size_t p = start;
    // Look ahead for the user-info designator, as libpq does: an '@' before
    // any '/' (libpq does not stop at '?').
    size_t q = start;
    while (q < end && s[q] != '@' && s[q] != '/') {
      ++q;
    }
    if (q < end && s[q] == '@') {
      const absl::string_view userinfo = s.substr(start, q - start);
      if (userinfo.find('?') != absl::string_view::npos) {
        // `user:pa?ss@host` and `host?application_name=a@b` look the same to
        // libpq, which takes both as user-info.
        RecordIntendedPassword(s.substr(start, s.rfind('@') - start));
        return UriError(
            "unescaped '?' in the user-info (user:password@), or an '@' in a query with no "
            "'/' before it; percent-encode '?' as %3F and '@' as %40");
      }
      const size_t colon = userinfo.find(':');
      if (absl::Status st = StoreUriPart("user", userinfo.substr(0, colon), "user name");
          !st.ok()) {
        return st;
      }
      if (colon != absl::string_view::npos) {
        const absl::string_view password = userinfo.substr(colon + 1);
        // Even a password that fails to decode is kept out of every message.
        dsn_.AddSecretSpelling(std::string(password));
        if (absl::Status st = StoreUriPart("password", password, "password"); !st.ok()) {
          return st;
        }
      }
      p = q + 1;
    }
    // An '@' left before the query means the user-info was cut short: part
    // of the password would become the host, port or database name.
    const size_t query = s.find('?', p);
    const absl::string_view before_query =
        s.substr(p, (query == absl::string_view::npos ? end : query) - p);
    if (before_query.find('@') != absl::string_view::npos) {
      RecordIntendedPassword(s.substr(start, s.rfind('@') - start));
      return UriError(
          "unescaped '@' or '/' in the user-info (user:password@); percent-encode the password "
          "('@' as %40, '/' as %2F, '?' as %3F)");
    }
    std::string hosts;
    std::string ports;
    char prevchar = '\0';
    for (;;) {
      absl::string_view host;
      if (at(p) == '[') {
        const size_t host_start = ++p;
        while (p < end && s[p] != ']') {
          ++p;
        }
        if (p >= end) {
          return UriError(absl::StrCat("no ']' after the IPv6 address at character ", host_start));
        }
        if (p == host_start) {
          return UriError("an empty IPv6 address '[]'");
        }
        host = s.substr(host_start, p - host_start);
        ++p;
        const char c = at(p);
        if (c != '\0' && c != ':' && c != '/' && c != '?' && c != ',') {
          return UriError(absl::StrCat("unexpected character at position ", p + 1,
                                       " after an IPv6 address (expected ':', '/', '?' or ',')"));
        }
      } else {
        const size_t host_start = p;
        while (p < end && s[p] != ':' && s[p] != '/' && s[p] != '?' && s[p] != ',') {
          ++p;
        }
        host = s.substr(host_start, p - host_start);
      }
      prevchar = at(p);
      absl::StrAppend(&hosts, host);
      if (prevchar == ':') {
        const size_t port_start = ++p;
        while (p < end && s[p] != '/' && s[p] != '?' && s[p] != ',') {
          ++p;
        }
        prevchar = at(p);
        absl::StrAppend(&ports, s.substr(port_start, p - port_start));
      }
      if (prevchar != ',') {
        break;
      }
      ++p;
      hosts.push_back(',');
      ports.push_back(',');
    }
    if (absl::Status st = StoreUriPart("host", hosts, "host"); !st.ok()) {
      return st;
    }
    if (absl::Status st = StoreUriPart("port", ports, "port"); !st.ok()) {
      return st;
    }
    if (prevchar != '\0' && prevchar != '?') {
      const size_t dbname_start = ++p;
      while (p < end && s[p] != '?') {
        ++p;
      }
      prevchar = at(p);
      if (absl::Status st =
              StoreUriPart("dbname", s.substr(dbname_start, p - dbname_start), "database name");
          !st.ok()) {
        return st;
      }
    }
    if (prevchar != '\0') {
      return ParseUriQuery(s.substr(p + 1));
    }
    return absl::OkStatus();
  }

  // libpq's conninfo_uri_parse_params.
  absl::Status ParseUriQuery(absl::string_view params) {
    if (params.empty()) {
      return absl::OkStatus();
    }
    const std::vector<absl::string_view> pieces = absl::StrSplit(params, '&');
    for (size_t index = 1; index <= pieces.size(); ++index) {
      const absl::string_view param = pieces[index - 1];
      // libpq stops at the end of the text, so one trailing '&' is fine;
      // an empty parameter anywhere else is refused.
      if (param.empty() && index == pieces.size() && index > 1) {
        break;
      }
      const size_t equals = param.find('=');
      if (equals == absl::string_view::npos) {
        return UriError(absl::StrCat("query parameter ", index, " has no '='"));
      }
      const absl::string_view raw_key = param.substr(0, equals);
      const absl::string_view raw_value = param.substr(equals + 1);
      if (raw_value.find('=') != absl::string_view::npos) {
        return UriError(
            absl::StrCat("query parameter ", index, " has a second '='; percent-encode it as %3D"));
      }
      absl::StatusOr<std::string> key = UriDecode(raw_key, "query");
      if (!key.ok()) {
        return key.status();
      }
      // The value may be a password: keep every spelling out of messages
      // before anything can fail.
      const bool secret = IsSecretKeyword(*key);
      if (secret) {
        dsn_.AddSecretSpelling(std::string(raw_value));
      }
      absl::StatusOr<std::string> value = UriDecode(raw_value, "query");
      if (!value.ok()) {
        return value.status();
      }
      if (*key == "ssl" && *value == "true") {
        *key = "sslmode";
        *value = "require";
      }
      if (absl::Status st = Store(*key, *std::move(value), true, index, raw_value); !st.ok()) {
        return st;
      }
    }
    return absl::OkStatus();
  }

  // libpq's conninfo_parse.
  absl::Status ParseKeyValue(absl::string_view s) {
    const size_t end = s.size();
    size_t i = 0;
    while (i < end) {
      if (IsSpace(s[i])) {
        ++i;
        continue;
      }
      const size_t name_start = i;
      while (i < end && s[i] != '=' && !IsSpace(s[i])) {
        ++i;
      }
      const absl::string_view name = s.substr(name_start, i - name_start);
      while (i < end && IsSpace(s[i])) {
        ++i;
      }
      if (i >= end || s[i] != '=') {
        if (name_start == 0 && i >= end) {
          return KeyValueError(
              "no '=' anywhere; a DSN is a URI (postgresql://user@host:port/dbname) or "
              "key=value pairs (host=... dbname=...)");
        }
        return KeyValueError(absl::StrCat("missing '=' after the word at character ",
                                          name_start + 1, " (a value with spaces needs 'quotes')"));
      }
      ++i;
      while (i < end && IsSpace(s[i])) {
        ++i;
      }
      std::string value;
      const size_t value_start = i;
      if (i < end && s[i] == '\'') {
        ++i;
        bool closed = false;
        while (i < end) {
          if (s[i] == '\\') {
            ++i;
            if (i < end) {
              value.push_back(s[i++]);
            }
            continue;
          }
          if (s[i] == '\'') {
            ++i;
            closed = true;
            break;
          }
          value.push_back(s[i++]);
        }
        if (!closed) {
          if (IsSecretKeyword(name)) {
            dsn_.AddSecretSpelling(std::string(s.substr(value_start + 1)));
            dsn_.AddSecretSpelling(value);
          }
          return KeyValueError(
              absl::StrCat("the quoted value at character ", value_start + 1, " has no closing '"));
        }
      } else {
        while (i < end && !IsSpace(s[i])) {
          if (s[i] == '\\') {
            ++i;
            if (i < end) {
              value.push_back(s[i++]);
            }
          } else {
            value.push_back(s[i++]);
          }
        }
      }
      const absl::string_view raw = s.substr(value_start, i - value_start);
      if (absl::Status st = Store(name, std::move(value), false, name_start + 1, raw); !st.ok()) {
        return st;
      }
    }
    return absl::OkStatus();
  }

  Dsn dsn_;
};

// --------------------------------------------------------------------- Dsn

const std::string* Dsn::Find(absl::string_view keyword) const {
  for (const Setting& s : settings_) {
    if (s.keyword == keyword) {
      return &s.value;
    }
  }
  return nullptr;
}

std::string Dsn::Get(absl::string_view keyword) const {
  const std::string* value = Find(keyword);
  return value == nullptr ? std::string() : *value;
}

void Dsn::Set(std::string keyword, std::string value) {
  for (Setting& s : settings_) {
    if (s.keyword == keyword) {
      s.value = std::move(value);
      return;
    }
  }
  settings_.push_back({std::move(keyword), std::move(value)});
}

void Dsn::AddSecretSpelling(std::string spelling) {
  if (spelling.empty()) {
    return;
  }
  std::vector<std::string> forms = {spelling, PercentEncode(spelling),
                                    PercentEncode(spelling, /*lower_hex=*/true)};
  std::string quoted = QuoteConninfoValue(spelling);
  forms.push_back(quoted.substr(1, quoted.size() - 2));
  for (std::string& form : forms) {
    if (!form.empty() && std::find(secret_spellings_.begin(), secret_spellings_.end(), form) ==
                             secret_spellings_.end()) {
      secret_spellings_.push_back(std::move(form));
    }
  }
  std::stable_sort(secret_spellings_.begin(), secret_spellings_.end(),
                   [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
}

std::string Dsn::ToConninfo() const {
  std::vector<std::string> parts;
  parts.reserve(settings_.size());
  for (const Setting& s : settings_) {
    parts.push_back(absl::StrCat(s.keyword, "=", QuoteConninfoValue(s.value)));
  }
  return absl::StrJoin(parts, " ");
}

std::string Dsn::Scrub(absl::string_view text) const {
  std::string out(text);
  for (const std::string& secret : secret_spellings_) {
    absl::StrReplaceAll({{secret, "***"}}, &out);
  }
  return out;
}

// ------------------------------------------------------------------ public

absl::StatusOr<Dsn> ParseDsn(absl::string_view text) { return Parser::Parse(text); }

std::string ScrubDsnSecrets(absl::string_view text, absl::string_view dsn_text) {
  return Parser::SecretsOf(dsn_text).Scrub(text);
}

std::string ScrubSecret(absl::string_view text, absl::string_view secret) {
  Dsn holder;
  holder.AddSecretSpelling(std::string(secret));
  return holder.Scrub(text);
}

std::string QuoteConninfoValue(absl::string_view value) {
  std::string out = "'";
  for (char c : value) {
    if (c == '\'' || c == '\\') {
      out.push_back('\\');
    }
    out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

const std::vector<std::string>& Keywords() {
  // PQconndefaults() of libpq 15, in its order.
  static const auto* kKeywords = new std::vector<std::string>{"service",
                                                              "user",
                                                              "password",
                                                              "passfile",
                                                              "channel_binding",
                                                              "connect_timeout",
                                                              "dbname",
                                                              "host",
                                                              "hostaddr",
                                                              "port",
                                                              "client_encoding",
                                                              "options",
                                                              "application_name",
                                                              "fallback_application_name",
                                                              "keepalives",
                                                              "keepalives_idle",
                                                              "keepalives_interval",
                                                              "keepalives_count",
                                                              "tcp_user_timeout",
                                                              "sslmode",
                                                              "sslcompression",
                                                              "sslcert",
                                                              "sslkey",
                                                              "sslpassword",
                                                              "sslrootcert",
                                                              "sslcrl",
                                                              "sslcrldir",
                                                              "sslsni",
                                                              "requirepeer",
                                                              "ssl_min_protocol_version",
                                                              "ssl_max_protocol_version",
                                                              "gssencmode",
                                                              "krbsrvname",
                                                              "gsslib",
                                                              "replication",
                                                              "target_session_attrs"};
  return *kKeywords;
}

bool IsSecretKeyword(absl::string_view keyword) {
  return keyword == "password" || keyword == "sslpassword";
}

std::string Redacted(const Dsn& dsn) {
  if (!dsn.is_uri()) {
    std::vector<std::string> parts;
    for (const Setting& s : dsn.settings()) {
      if (IsSecretKeyword(s.keyword)) {
        continue;
      }
      const bool plain = !s.value.empty() &&
                         std::none_of(s.value.begin(), s.value.end(),
                                      [](char c) { return IsSpace(c) || c == '\'' || c == '\\'; });
      parts.push_back(absl::StrCat(s.keyword, "=", plain ? s.value : QuoteConninfoValue(s.value)));
    }
    return absl::StrJoin(parts, " ");
  }
  // URI: user, hosts with their ports and the database in the usual places
  // when they are plain enough; everything else as query parameters.
  std::string out(kUriPrefix);
  std::vector<std::string> params;
  const std::string* user = dsn.Find("user");
  const std::string* host = dsn.Find("host");
  const std::string* port = dsn.Find("port");
  const std::string* dbname = dsn.Find("dbname");
  if (user != nullptr && !user->empty()) {
    absl::StrAppend(&out, PercentEncode(*user), "@");
  }
  bool port_done = false;
  // Hosts in the authority only when that parses back to the same settings:
  // libpq gives an authority host list a port list (`a,b` -> port `,`), so
  // a host list without a port (from `%2C` or `?host=a,b`) stays a query
  // parameter.
  const bool host_in_authority = host != nullptr && !host->empty() &&
                                 (port != nullptr || host->find(',') == std::string::npos);
  if (host_in_authority) {
    const std::vector<std::string> hosts = absl::StrSplit(*host, ',');
    std::vector<std::string> ports;
    if (port != nullptr && !port->empty()) {
      ports = absl::StrSplit(*port, ',');
    }
    const bool paired = ports.size() == hosts.size();
    std::vector<std::string> rendered;
    for (size_t i = 0; i < hosts.size(); ++i) {
      const bool ipv6_literal =
          hosts[i].find(':') != std::string::npos &&
          hosts[i].find_first_not_of("0123456789abcdefABCDEF:.") == std::string::npos;
      std::string h = ipv6_literal ? absl::StrCat("[", hosts[i], "]") : PercentEncode(hosts[i]);
      if (paired && !ports[i].empty()) {
        absl::StrAppend(&h, ":", PercentEncode(ports[i]));
      }
      rendered.push_back(std::move(h));
    }
    absl::StrAppend(&out, absl::StrJoin(rendered, ","));
    port_done = paired;
  } else if (host != nullptr) {
    params.push_back(absl::StrCat("host=", PercentEncode(*host)));
  }
  if (dbname != nullptr && !dbname->empty()) {
    absl::StrAppend(&out, "/", PercentEncode(*dbname));
  } else if (dbname != nullptr) {
    params.push_back("dbname=");
  }
  for (const Setting& s : dsn.settings()) {
    if (IsSecretKeyword(s.keyword) || s.keyword == "host" || s.keyword == "dbname" ||
        (s.keyword == "user" && !s.value.empty()) || (s.keyword == "port" && port_done)) {
      continue;
    }
    params.push_back(absl::StrCat(PercentEncode(s.keyword), "=", PercentEncode(s.value)));
  }
  if (!params.empty()) {
    absl::StrAppend(&out, dbname == nullptr || dbname->empty() ? "/" : "", "?",
                    absl::StrJoin(params, "&"));
  }
  return out;
}

std::string RedactDsn(absl::string_view text) {
  absl::StatusOr<Dsn> dsn = ParseDsn(text);
  return dsn.ok() ? Redacted(*dsn) : std::string("(a DSN that does not parse)");
}

}  // namespace schemad::dsn
