// service/common/dsn.h against libpq itself: what libpq 15's PQconninfoParse
// accepts we parse to the same settings, and we refuse where libpq would
// mis-parse a password or only fail when connecting (quoting the value).
#include "service/common/dsn.h"

#include <libpq-fe.h>

#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/common/dsn_fuzz.h"
#include "tests/testing/status_matchers.h"

namespace schemad::dsn {
namespace {

using ::schemad::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

using Settings = std::map<std::string, std::string>;

// libpq's own reading of `text`, or nullopt when it refuses it.
std::optional<Settings> Libpq(const std::string& text) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(text.c_str(), &error);
  if (error != nullptr) {
    PQfreemem(error);
  }
  if (options == nullptr) {
    return std::nullopt;
  }
  Settings out;
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val != nullptr) {
      out[o->keyword] = o->val;
    }
  }
  PQconninfoFree(options);
  return out;
}

Settings Ours(const Dsn& dsn) {
  Settings out;
  for (const Setting& s : dsn.settings()) {
    out[s.keyword] = s.value;
  }
  return out;
}

// Every character that means something in a URI or a conninfo string, and
// some that are not ASCII.
const char kNastyPassword[] = "p/w@x:y?z#[a]b%c+d=e&f'g\"h\\i j\xc3\xa4\xe2\x82\xac";

std::string PercentEncodeAll(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (absl::ascii_isalnum(c)) {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

TEST(ParseDsnTest, AcceptsWhatLibpqAcceptsWithTheSameSettings) {
  const std::vector<std::string> accepted = {
      "postgresql://app:s3cret@db:5432/site_a",
      "postgres://app@db/site_a?sslmode=require&connect_timeout=3",
      "postgresql://",
      "postgresql:///site?host=%2Ftmp",
      "postgresql://u:p:ss@host/db",  // ':' in a password is fine
      "postgresql://u:p#x@host/db",
      "postgresql://u:p[x]@host/db",
      "postgresql://u:a b@h/db",
      "postgresql://u:\xc3\xbcn@h/db",
      "postgresql://u:p%40ss%2Fw@h/db",
      "postgresql://u@[::1]:5432,h2:7/db",
      "postgresql://h1,h2:5433/db",
      "postgresql://h/db?application_name=a@b",
      "postgresql://h/db?",
      "postgresql://h/db?port=5433&",
      "postgresql://h?ssl=true",
      "postgresql://h/db?requiressl=1",
      "postgresql://h:/db",
      "postgresql://u:@h/db",
      "postgresql://:p@h/db",
      "postgresql://%41/d%2Fb",
      "postgresql://h/db?%70ort=5",
      "host=db port=5432 user=app password=s3cret dbname=site_a",
      "host = db   dbname='my db'",
      "password='with space \\' quote' host=h",
      "password=a\\ b",
      "host='' dbname=x",
      "host=h port=",
      "requiressl=0 sslmode=require",
      "host=a,b port=1,2",
      "host=127.0.0.1,b port=1,",
      "port=' 5432 ' connect_timeout=' 3 ' keepalives=+1",
      "ssl_min_protocol_version=tlsv1.2 ssl_max_protocol_version=''",
      "sslmode=verify-full sslrootcert=/etc/ca.pem target_session_attrs=prefer-standby",
      absl::StrCat("postgresql://app:", PercentEncodeAll(kNastyPassword), "@h/db"),
      absl::StrCat("postgresql://app@h/db?password=", PercentEncodeAll(kNastyPassword)),
      absl::StrCat("host=h password=", QuoteConninfoValue(kNastyPassword)),
  };
  for (const std::string& text : accepted) {
    SCOPED_TRACE(text);
    absl::StatusOr<Dsn> dsn = ParseDsn(text);
    ASSERT_TRUE(dsn.ok()) << dsn.status();
    std::optional<Settings> libpq = Libpq(text);
    ASSERT_TRUE(libpq.has_value());
    EXPECT_EQ(Ours(*dsn), *libpq);
    EXPECT_EQ(CheckDsnInvariants(text), "");
  }
}

TEST(ParseDsnTest, NastyPasswordsRoundTripInEveryForm) {
  for (const std::string& text :
       {absl::StrCat("postgresql://app:", PercentEncodeAll(kNastyPassword), "@h:5432/db"),
        absl::StrCat("postgres://app@h/db?password=", PercentEncodeAll(kNastyPassword)),
        absl::StrCat("host=h user=app password=", QuoteConninfoValue(kNastyPassword))}) {
    SCOPED_TRACE(text);
    ASSERT_OK_AND_ASSIGN(Dsn dsn, ParseDsn(text));
    EXPECT_EQ(dsn.Get("password"), kNastyPassword);
    EXPECT_THAT(Redacted(dsn), AllOf(Not(HasSubstr("password")), Not(HasSubstr("p/w@x")),
                                     Not(HasSubstr(PercentEncodeAll(kNastyPassword)))));
    // Scrub removes the password however it was written.
    const std::string echoed =
        absl::StrCat("a ", kNastyPassword, " b ", text, " c ", QuoteConninfoValue(kNastyPassword));
    const std::string scrubbed = dsn.Scrub(echoed);
    EXPECT_THAT(scrubbed,
                AllOf(Not(HasSubstr(kNastyPassword)),
                      Not(HasSubstr(PercentEncodeAll(kNastyPassword))), Not(HasSubstr("p/w@x"))));
    // The conninfo handed to libpq carries it intact.
    std::optional<Settings> libpq = Libpq(dsn.ToConninfo());
    ASSERT_TRUE(libpq.has_value());
    EXPECT_EQ((*libpq)["password"], kNastyPassword);
  }
}

// The defect: libpq reads `kq3` as the port and `LEAKME+pw=@host:5432/site_c`
// as the database name, which every message then printed.
TEST(ParseDsnTest, UnescapedSlashOrAtInThePasswordIsRefusedWithoutQuotingIt) {
  struct Case {
    std::string text;
    std::string secret;
  };
  const std::vector<Case> cases = {
      {"postgresql://modax:kq3/LEAKME+pw=@host:5432/site_c", "LEAKME"},
      {"postgresql://modax:kq3/LEAKME+pw=@host:5432/site_c", "kq3"},
      {"postgresql://u:p@ssLEAKME@host/db", "ssLEAKME"},
      {"postgresql://me@corp:LEAKME@host/db", "LEAKME"},
      {"postgresql://u:a/b/LEAKME@h", "LEAKME"},
      {"postgresql://u:LEAK?ME@h/db", "LEAK"},
      {"postgresql://h:5432?application_name=LEAKME@b", "LEAKME"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    EXPECT_THAT(ParseDsn(c.text),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("not a valid URI"), HasSubstr("user-info"),
                               HasSubstr("percent-encode"), Not(HasSubstr(c.secret)))));
    EXPECT_EQ(RedactDsn(c.text), "(a DSN that does not parse)");
  }
}

TEST(ParseDsnTest, MalformedValuesAreRefusedInBothForms) {
  struct Case {
    std::string text;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"host=db port=notaport", "bad port"},
      {"postgresql://db/x?port=notaport", "bad port"},
      {"postgresql://db:notaport/x", "bad port"},
      {"host=db port=0", "bad port"},
      {"host=db port=65536", "bad port"},
      {"host=a,b port=1,2,3", "3 ports for 2 host(s)"},
      {"host=db sslmode=bogus", "bad sslmode: expected disable, allow, prefer, require"},
      {"postgresql://db/x?sslmode=bogus", "bad sslmode"},
      {"host=db sslmode=''", "bad sslmode"},
      {"host=db connect_timeout=abc", "bad connect_timeout: expected an integer"},
      {"postgresql://db/x?connect_timeout=abc", "bad connect_timeout"},
      {"host=db connect_timeout=99999999999", "bad connect_timeout"},
      {"host=db keepalives=x", "bad keepalives"},
      {"host=db gssencmode=x", "bad gssencmode"},
      {"host=db channel_binding=x", "bad channel_binding"},
      {"host=db target_session_attrs=x", "bad target_session_attrs"},
      {"host=db ssl_min_protocol_version=x", "bad ssl_min_protocol_version"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    EXPECT_THAT(ParseDsn(c.text), StatusIs(absl::StatusCode::kInvalidArgument,
                                           AllOf(HasSubstr(c.message), Not(HasSubstr("notaport")),
                                                 Not(HasSubstr("bogus")), Not(HasSubstr("abc")))));
  }
}

TEST(ParseDsnTest, SyntaxErrorsNameThePlaceNeverTheText) {
  struct Case {
    std::string text;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"", "is empty"},
      {"   ", "is empty"},
      {"mydbLEAK", "no '=' anywhere"},
      {"host=db password=LEAK ME", "missing '=' after the word at character 23"},
      {"host=db password='LEAK", "quoted value at character 18 has no closing '"},
      {"host=db sslmdoe=require", "did you mean 'sslmode'"},
      {"host=db LEAKME=1", "not a libpq connection option"},
      {"tty=x", "not a libpq connection option"},
      {"postgresql://u:LE%zzAK@h/db", "'%' not followed by two hex digits in the password"},
      {"postgresql://u:LE%00AK@h/db", "%00 in the password"},
      {"postgresql://h/db?password=LE%zzAK", "not followed by two hex digits in the query"},
      {"postgresql://h/db?password=LEAK&ME", "query parameter 2 has no '='"},
      {"postgresql://h/db?password=LEAK=ME", "query parameter 1 has a second '='"},
      {"postgresql://h/db?port=1&&", "query parameter 2 has no '='"},
      {"postgresql://h/db?LEAKME=1", "query parameter 1 is not a libpq connection option"},
      {"postgresql://h?ssl=false", "not a libpq connection option"},
      {"postgresql://[::1/LEAK", "no ']' after the IPv6 address"},
      {"postgresql://[]/db", "empty IPv6 address"},
      {"postgresql://[::1]LEAK/db", "unexpected character at position 19"},
      {std::string("host=db\0LEAK", 12), "NUL byte"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    EXPECT_THAT(ParseDsn(c.text), StatusIs(absl::StatusCode::kInvalidArgument,
                                           AllOf(HasSubstr(c.message), Not(HasSubstr("LEAK")))));
    if (c.text.find('\0') == std::string::npos && !c.text.empty() && c.text != "   ") {
      EXPECT_FALSE(Libpq(c.text).has_value() && ParseDsn(c.text).ok());
    }
  }
}

TEST(RedactedTest, KeepsTheFormAndDropsSecrets) {
  EXPECT_EQ(RedactDsn("postgresql://app:s3cret@db:5432/site_a"), "postgresql://app@db:5432/site_a");
  EXPECT_EQ(
      RedactDsn("postgres://app:s3cret@db/site_a?sslmode=require&password=x&connect_timeout=3"),
      "postgresql://app@db/site_a?sslmode=require&connect_timeout=3");
  EXPECT_EQ(RedactDsn("postgresql://app@db/site_a?password=s3cret"), "postgresql://app@db/site_a");
  EXPECT_EQ(RedactDsn("postgresql://db:5432/site_a"), "postgresql://db:5432/site_a");
  EXPECT_EQ(RedactDsn("postgresql://app:p%40ss@[::1]:5432,h2:7/x"),
            "postgresql://app@[::1]:5432,h2:7/x");
  EXPECT_EQ(RedactDsn("host=db port=5432 user=app password=s3cret dbname=site_a"),
            "host=db port=5432 user=app dbname=site_a");
  EXPECT_EQ(RedactDsn("host=db password = 'with space \\' quote' dbname='my site'"),
            "host=db dbname='my site'");
  EXPECT_EQ(RedactDsn("password=s3cret"), "");
  EXPECT_EQ(RedactDsn("host=db password='unterminated s3cret"), "(a DSN that does not parse)");
}

// Found by dsn_fuzz: a host list without ports (a percent-encoded ',' in a
// URI, or `host=a,b` in a query) was shown as `a,b`, which parses to an
// added `port=,`.
TEST(RedactedTest, HostListWithoutPortsParsesBackToTheSameSettings) {
  for (const std::string text :
       {"postgresql://mo%2connect_timeout=/site_c", "postgresql://a%2Cb/x?sslmode=require",
        "postgresql:///x?host=a,b&user=u", "postgresql://u:p@h1%2C%3A%3A1/x"}) {
    SCOPED_TRACE(text);
    ASSERT_OK_AND_ASSIGN(Dsn dsn, ParseDsn(text));
    const std::string shown = Redacted(dsn);
    ASSERT_OK_AND_ASSIGN(Dsn again, ParseDsn(shown));
    Settings expected = Ours(dsn);
    expected.erase("password");
    EXPECT_EQ(Ours(again), expected) << shown;
    const std::optional<Settings> libpq = Libpq(shown);
    ASSERT_TRUE(libpq.has_value()) << shown;
    EXPECT_EQ(*libpq, expected) << shown;
    EXPECT_EQ(CheckDsnInvariants(text), "");
  }
}

TEST(ScrubTest, ReplacesEverySpellingLongestFirst) {
  ASSERT_OK_AND_ASSIGN(Dsn dsn, ParseDsn("postgresql://app:p%40ss%2Fw0rd@db/x"));
  EXPECT_EQ(dsn.Get("password"), "p@ss/w0rd");
  EXPECT_EQ(dsn.Scrub("a p@ss/w0rd b p%40ss%2Fw0rd c p%40ss%2fw0rd"), "a *** b *** c ***");
  ASSERT_OK_AND_ASSIGN(dsn, ParseDsn("host=db password='it\\'s'"));
  EXPECT_EQ(dsn.Scrub("x it's y it\\'s"), "x *** y ***");
  ASSERT_OK_AND_ASSIGN(dsn, ParseDsn("host=db"));
  EXPECT_EQ(dsn.Scrub("nothing here"), "nothing here");
}

// A small deterministic fuzz run beside the libFuzzer target: random text
// from URI and conninfo pieces. Properties: dsn_fuzz.h's invariants, and
// libpq agreement (anything we accept, libpq accepts with the same settings;
// anything libpq refuses, we refuse).
TEST(ParseDsnTest, RandomTextKeepsThePropertiesAndAgreesWithLibpq) {
  const std::vector<std::string> keywords = {
      "host", "port",       "password", "user",    "dbname",   "sslmode",    "connect_timeout",
      "ssl",  "requiressl", "tty",      "options", "hostaddr", "sslpassword"};
  const std::vector<std::string> pieces = {
      "=",   "&",        "?",    "/",      "@",    ":",    ",",       "[",       "]",
      "%",   "%4",       "%41",  "%00",    "%zz",  "'",    "\\",      " ",       "\t",
      "#",   "+",        "\"",   "a",      "b",    "1",    "5432",    "require", "true",
      "::1", "\xc3\xa4", "\xff", "-c x=1", "host", "port", "password"};
  std::mt19937 rng(20260125);
  const auto pick = [&rng](const std::vector<std::string>& from) {
    return from[std::uniform_int_distribution<size_t>(0, from.size() - 1)(rng)];
  };
  std::uniform_int_distribution<int> length(0, 6);
  int accepted = 0;
  for (int i = 0; i < 6000; ++i) {
    std::string text;
    if (i % 2 == 0) {  // URI-shaped
      text = i % 4 == 0 ? "postgresql://" : "postgres://";
      for (int j = length(rng) + 1; j > 0; --j) {
        text += pick(rng() % 3 == 0 ? keywords : pieces);
      }
    } else {  // key=value-shaped
      for (int k = length(rng) / 2 + 1; k > 0; --k) {
        text += pick(keywords) + (rng() % 4 == 0 ? " = " : "=");
        for (int j = length(rng); j > 0; --j) {
          text += pick(pieces);
        }
        text += " ";
      }
    }
    SCOPED_TRACE(text);
    ASSERT_EQ(CheckDsnInvariants(text), "");
    const std::string trimmed(absl::StripAsciiWhitespace(text));
    absl::StatusOr<Dsn> ours = ParseDsn(text);
    std::optional<Settings> libpq = Libpq(trimmed);
    if (ours.ok()) {
      ++accepted;
      ASSERT_TRUE(libpq.has_value());
      ASSERT_EQ(Ours(*ours), *libpq);
    }
    if (!libpq.has_value()) {
      ASSERT_FALSE(ours.ok());
    }
  }
  EXPECT_GT(accepted, 600);  // the generator reaches the accepting paths
}

}  // namespace
}  // namespace schemad::dsn
