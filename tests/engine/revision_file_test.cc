#include "service/engine/revision_file.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/engine/checksum.h"
#include "service/engine/revision.h"
#include "tests/testing/status_matchers.h"

namespace schemad::engine {
namespace {

using ::schemad::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;
using ::testing::Optional;
using ::testing::SizeIs;
using ::testing::StartsWith;

constexpr char kPath[] = "migrations/modax/3f2a_add.sql";

std::vector<std::string> Texts(const SqlSection& section) {
  std::vector<std::string> texts;
  for (const SqlStatement& s : section.statements) {
    texts.push_back(s.text);
  }
  return texts;
}

// A valid file with the given extra header lines and sections.
std::string File(const std::string& extra_header, const std::string& sections) {
  return absl::StrCat("-- revision: abc123\n", extra_header, "\n", sections);
}

TEST(ParseRevisionFileTest, ParsesDesignExample) {
  constexpr char kContent[] =
      "-- revision: 3f2a9c1b7d4e\n"              // 1
      "-- revises: 1c9e8b7a6f5d\n"               // 2
      "-- branch_labels: timeseries\n"           // 3
      "-- depends_on: 8a7b6c5d4e3f\n"            // 4
      "-- message: Add sensor_data table\n"      // 5
      "-- created: 2025-12-09T14:00:00Z\n"       // 6
      "-- transactional: true\n"                 // 7
      "-- lock_timeout: 5s\n"                    // 8
      "\n"                                       // 9
      "-- +upgrade\n"                            // 10
      "CREATE TABLE sensor_data (id bigint);\n"  // 11
      "CREATE INDEX ON sensor_data (id);\n"      // 12
      "\n"                                       // 13
      "-- +downgrade\n"                          // 14
      "DROP TABLE sensor_data;\n";               // 15
  ASSERT_OK_AND_ASSIGN(Revision r, ParseRevisionFile(kPath, kContent));
  EXPECT_EQ(r.id, "3f2a9c1b7d4e");
  EXPECT_THAT(r.revises, ElementsAre("1c9e8b7a6f5d"));
  EXPECT_THAT(r.branch_labels, ElementsAre("timeseries"));
  EXPECT_THAT(r.depends_on, ElementsAre("8a7b6c5d4e3f"));
  EXPECT_EQ(r.message, "Add sensor_data table");
  EXPECT_EQ(r.created, "2025-12-09T14:00:00Z");
  EXPECT_TRUE(r.transactional);
  EXPECT_THAT(r.lock_timeout, Optional(absl::Seconds(5)));
  EXPECT_EQ(r.statement_timeout, std::nullopt);
  EXPECT_EQ(r.path, kPath);
  EXPECT_EQ(r.id_line, 1);
  EXPECT_EQ(r.Where(), absl::StrCat(kPath, ":1"));

  ASSERT_TRUE(r.upgrade.has_value());
  EXPECT_EQ(r.upgrade->line, 10);
  EXPECT_EQ(r.upgrade->body,
            "CREATE TABLE sensor_data (id bigint);\nCREATE INDEX ON sensor_data (id);\n\n");
  EXPECT_THAT(Texts(*r.upgrade), ElementsAre("CREATE TABLE sensor_data (id bigint)",
                                             "CREATE INDEX ON sensor_data (id)"));
  EXPECT_EQ(r.upgrade->statements[0].line, 11);
  EXPECT_EQ(r.upgrade->statements[1].line, 12);

  ASSERT_TRUE(r.downgrade.has_value());
  EXPECT_TRUE(r.reversible());
  EXPECT_EQ(r.downgrade->line, 14);
  EXPECT_THAT(Texts(*r.downgrade), ElementsAre("DROP TABLE sensor_data"));
  EXPECT_EQ(r.downgrade->statements[0].line, 15);

  EXPECT_EQ(r.checksum, RevisionChecksum(r.upgrade, r.downgrade));
  EXPECT_THAT(r.checksum, MatchesRegex("[0-9a-f]{64}"));
}

TEST(ParseRevisionFileTest, MinimalFileHasDefaults) {
  ASSERT_OK_AND_ASSIGN(Revision r, ParseRevisionFile(kPath, "-- revision: a1\n-- +upgrade\n"));
  EXPECT_EQ(r.id, "a1");
  EXPECT_THAT(r.revises, IsEmpty());
  EXPECT_THAT(r.branch_labels, IsEmpty());
  EXPECT_THAT(r.depends_on, IsEmpty());
  EXPECT_EQ(r.message, "");
  EXPECT_TRUE(r.transactional);
  EXPECT_EQ(r.lock_timeout, std::nullopt);
  ASSERT_TRUE(r.upgrade.has_value());
  EXPECT_THAT(r.upgrade->statements, IsEmpty());
  EXPECT_EQ(r.downgrade, std::nullopt);
  EXPECT_FALSE(r.reversible());
}

TEST(ParseRevisionFileTest, ListsAreTrimmedAndKeepOrder) {
  ASSERT_OK_AND_ASSIGN(
      Revision r, ParseRevisionFile(kPath, File("-- revises:  b2 ,a1,c3\n-- branch_labels: x_y\n"
                                                "-- depends_on: a1 , lbl\n",
                                                "-- +upgrade\n")));
  EXPECT_THAT(r.revises, ElementsAre("b2", "a1", "c3"));
  EXPECT_THAT(r.branch_labels, ElementsAre("x_y"));
  EXPECT_THAT(r.depends_on, ElementsAre("a1", "lbl"));
}

TEST(ParseRevisionFileTest, HeaderAllowsCommentsAndBlankLines) {
  constexpr char kContent[] =
      "-- Copyright Example Corp.\n"
      "\n"
      "--\n"
      "-- Note - this one is slow on big tables\n"
      "-- https://example.com/ticket/1\n"
      "-- 2025: the year of the sensor\n"
      "  -- revision:abc   \n"
      "--message:  Spaces   inside stay \n"
      "   \t\n"
      "  -- +upgrade  \n"
      "SELECT 1;\n";
  ASSERT_OK_AND_ASSIGN(Revision r, ParseRevisionFile(kPath, kContent));
  EXPECT_EQ(r.id, "abc");
  EXPECT_EQ(r.id_line, 7);
  EXPECT_EQ(r.message, "Spaces   inside stay");
  ASSERT_TRUE(r.upgrade.has_value());
  EXPECT_EQ(r.upgrade->line, 10);
  EXPECT_EQ(r.upgrade->statements.at(0).line, 11);
}

TEST(ParseRevisionFileTest, HeaderLinesAfterUpgradeAreSqlComments) {
  ASSERT_OK_AND_ASSIGN(
      Revision r, ParseRevisionFile(kPath, File("", "-- +upgrade\n-- revises: zzz\nSELECT 1;\n")));
  EXPECT_THAT(r.revises, IsEmpty());
  EXPECT_THAT(Texts(*r.upgrade), ElementsAre("-- revises: zzz\nSELECT 1"));
}

TEST(ParseRevisionFileTest, NoDowngradeIsIrreversibleEmptyDowngradeIsNoOp) {
  ASSERT_OK_AND_ASSIGN(Revision irreversible,
                       ParseRevisionFile(kPath, File("", "-- +upgrade\nSELECT 1;\n")));
  EXPECT_EQ(irreversible.downgrade, std::nullopt);

  ASSERT_OK_AND_ASSIGN(
      Revision no_op,
      ParseRevisionFile(kPath, File("", "-- +upgrade\nSELECT 1;\n-- +downgrade\n-- nothing\n")));
  ASSERT_TRUE(no_op.downgrade.has_value());
  EXPECT_THAT(no_op.downgrade->statements, IsEmpty());
  EXPECT_TRUE(no_op.reversible());

  ASSERT_OK_AND_ASSIGN(Revision marker_last,
                       ParseRevisionFile(kPath, File("", "-- +upgrade\nSELECT 1;\n-- +downgrade")));
  ASSERT_TRUE(marker_last.downgrade.has_value());
  EXPECT_EQ(marker_last.downgrade->body, "");

  EXPECT_NE(irreversible.checksum, no_op.checksum);
}

TEST(ParseRevisionFileTest, DowngradeSectionCanBeEmptyRightAfterUpgrade) {
  ASSERT_OK_AND_ASSIGN(Revision r,
                       ParseRevisionFile(kPath, File("", "-- +upgrade\n-- +downgrade\n")));
  EXPECT_EQ(r.upgrade->body, "");
  EXPECT_EQ(r.downgrade->body, "");
}

TEST(ParseRevisionFileTest, CrLfAndLfGiveSameRevisionAndChecksum) {
  const std::string lf =
      File("-- message: m\n",
           "-- +upgrade\nCREATE TABLE t (\n  x int\n);\n\n-- +downgrade\nDROP TABLE t;\n");
  const std::string crlf = absl::StrReplaceAll(lf, {{"\n", "\r\n"}});
  const std::string cr = absl::StrReplaceAll(lf, {{"\n", "\r"}});
  ASSERT_OK_AND_ASSIGN(Revision a, ParseRevisionFile(kPath, lf));
  ASSERT_OK_AND_ASSIGN(Revision b, ParseRevisionFile(kPath, crlf));
  ASSERT_OK_AND_ASSIGN(Revision c, ParseRevisionFile(kPath, cr));
  EXPECT_EQ(a.checksum, b.checksum);
  EXPECT_EQ(a.checksum, c.checksum);
  EXPECT_EQ(b.message, "m");
  EXPECT_EQ(b.downgrade->line, 9);
  EXPECT_EQ(c.downgrade->statements.at(0).line, 10);
  EXPECT_EQ(b.upgrade->statements.at(0).line, 5);
}

TEST(ParseRevisionFileTest, ByteOrderMarkIsIgnored) {
  ASSERT_OK_AND_ASSIGN(Revision r,
                       ParseRevisionFile(kPath, "\xEF\xBB\xBF-- revision: a1\n-- +upgrade\n"));
  EXPECT_EQ(r.id, "a1");
}

// Issue 9, defect 5: a NUL byte silently cut a statement short (the DROP
// after it never ran, yet 2 statements were reported applied), and invalid
// UTF-8 in a header passed `check` and then broke JSON and the service.
TEST(ParseRevisionFileTest, NulByteIsAnErrorNamingLineAndColumn) {
  using std::string_literals::operator""s;
  const std::string content = "-- revision: a1\n-- +upgrade\nSELECT 1;\0DROP TABLE bt;\n"s;
  EXPECT_THAT(ParseRevisionFile(kPath, content),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith(absl::StrCat(kPath, ":3: NUL byte at column 10"))));
}

TEST(ParseRevisionFileTest, NulByteInHeaderOrCommentIsAnError) {
  using std::string_literals::operator""s;
  const std::string header = "-- revision: a1\n-- message: a\0b\n-- +upgrade\n"s;
  EXPECT_THAT(ParseRevisionFile(kPath, header),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith(absl::StrCat(kPath, ":2: NUL byte at column 14"))));
}

TEST(ParseRevisionFileTest, InvalidUtf8IsAnErrorNamingLineAndByte) {
  struct Case {
    std::string content;
    std::string want;
  };
  const std::vector<Case> cases = {
      {"-- revision: a1\n-- message: bad \xff\n-- +upgrade\n",
       ":2: invalid UTF-8 (byte 0xFF at column 17)"},
      {"-- revision: a1\r\n-- +upgrade\r\nSELECT 'caf\xe9';\r\n",  // Latin-1
       ":3: invalid UTF-8 (byte 0xE9 at column 12)"},
      {"-- revision: a1\n-- +upgrade\n-- \xc0\xaf overlong\n",
       ":3: invalid UTF-8 (byte 0xC0 at column 4)"},
      {"-- revision: a1\n-- +upgrade\n-- +downgrade\nSELECT '\xed\xa0\x80';\n",  // surrogate
       ":4: invalid UTF-8 (byte 0xED at column 9)"},
      {"-- revision: a1\n-- +upgrade\nSELECT '\xf0\x9f\x98';",  // incomplete sequence
       ":3: invalid UTF-8 (byte 0xF0 at column 9)"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(ParseRevisionFile(kPath, c.content),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(StartsWith(absl::StrCat(kPath, c.want)),
                               HasSubstr("revision files must be UTF-8"))))
        << c.content;
  }
}

TEST(ParseRevisionFileTest, ValidUtf8Loads) {
  ASSERT_OK_AND_ASSIGN(
      Revision revision,
      ParseRevisionFile(kPath,
                        "\xEF\xBB\xBF-- revision: a1\n-- message: Gr\xc3\xb6\xc3\x9f"
                        "e \xe2\x82\xac \xf0\x9f\x98\x80\n-- +upgrade\n"
                        "COMMENT ON TABLE t IS '\xe6\xb8\xa9\xe5\xba\xa6';\n"));
  EXPECT_EQ(revision.message,
            "Gr\xc3\xb6\xc3\x9f"
            "e \xe2\x82\xac \xf0\x9f\x98\x80");
  EXPECT_THAT(Texts(*revision.upgrade),
              ElementsAre("COMMENT ON TABLE t IS '\xe6\xb8\xa9\xe5\xba\xa6'"));
}

TEST(ParseRevisionFileTest, StatementsAreSplitWithFileLines) {
  constexpr char kContent[] =
      "-- revision: a1\n"                                     // 1
      "-- +upgrade\n"                                         // 2
      "CREATE FUNCTION f() RETURNS int AS $fn$\n"             // 3
      "BEGIN RETURN 1; END;\n"                                // 4
      "$fn$ LANGUAGE plpgsql;\n"                              // 5
      "/* a; */ INSERT INTO t VALUES ('x;y'), (E'\\';');\n";  // 6
  ASSERT_OK_AND_ASSIGN(Revision r, ParseRevisionFile(kPath, kContent));
  ASSERT_THAT(r.upgrade->statements, SizeIs(2));
  EXPECT_EQ(r.upgrade->statements[0].line, 3);
  EXPECT_EQ(r.upgrade->statements[1].line, 6);
}

TEST(ParseRevisionFileTest, NonTransactionalRevisionMayUseConcurrently) {
  ASSERT_OK_AND_ASSIGN(
      Revision r,
      ParseRevisionFile(kPath, File("-- transactional: false\n",
                                    "-- +upgrade\nCREATE INDEX CONCURRENTLY i ON t (x);\n"
                                    "-- +downgrade\nDROP INDEX CONCURRENTLY i;\n")));
  EXPECT_FALSE(r.transactional);
}

TEST(ParseRevisionFileTest, ChecksumIgnoresTrailingWhitespaceButNotBodyChanges) {
  ASSERT_OK_AND_ASSIGN(Revision a, ParseRevisionFile(kPath, File("", "-- +upgrade\nSELECT 1;\n")));
  ASSERT_OK_AND_ASSIGN(Revision b,
                       ParseRevisionFile(kPath, File("", "-- +upgrade\nSELECT 1;   \n\n\t\n")));
  ASSERT_OK_AND_ASSIGN(Revision c, ParseRevisionFile(kPath, File("", "-- +upgrade\nSELECT 2;\n")));
  ASSERT_OK_AND_ASSIGN(Revision d, ParseRevisionFile(kPath, File("-- message: other\n",
                                                                 "-- +upgrade\nSELECT 1;\n")));
  EXPECT_EQ(a.checksum, b.checksum);
  EXPECT_NE(a.checksum, c.checksum);
  EXPECT_EQ(a.checksum, d.checksum);  // the header is not hashed
}

// --- durations ---------------------------------------------------------------

struct DurationCase {
  std::string text;
  absl::Duration want;
  friend void PrintTo(const DurationCase& c, std::ostream* os) { *os << c.text; }
};

class TimeoutTest : public ::testing::TestWithParam<DurationCase> {};

TEST_P(TimeoutTest, Parses) {
  ASSERT_OK_AND_ASSIGN(
      Revision r,
      ParseRevisionFile(kPath, File(absl::StrCat("-- lock_timeout: ", GetParam().text,
                                                 "\n-- statement_timeout: ", GetParam().text, "\n"),
                                    "-- +upgrade\n")));
  EXPECT_THAT(r.lock_timeout, Optional(GetParam().want));
  EXPECT_THAT(r.statement_timeout, Optional(GetParam().want));
}

INSTANTIATE_TEST_SUITE_P(
    Durations, TimeoutTest,
    ::testing::Values(
        DurationCase{"5s", absl::Seconds(5)}, DurationCase{"500ms", absl::Milliseconds(500)},
        DurationCase{"2min", absl::Minutes(2)}, DurationCase{"1m", absl::Minutes(1)},
        DurationCase{"1h", absl::Hours(1)}, DurationCase{"0", absl::ZeroDuration()},
        DurationCase{"0s", absl::ZeroDuration()}, DurationCase{"250us", absl::Microseconds(250)},
        DurationCase{"1d", absl::Hours(24)}, DurationCase{"1.5s", absl::Milliseconds(1500)},
        DurationCase{"5 s", absl::Seconds(5)}, DurationCase{"1h30min", absl::Minutes(90)},
        DurationCase{"1m 30s", absl::Seconds(90)}));

// --- errors ------------------------------------------------------------------

struct ErrorCase {
  std::string name;
  std::string content;
  int line;
  std::string what;  // a substring of the message after "path:line: "
  friend void PrintTo(const ErrorCase& c, std::ostream* os) { *os << c.name; }
};

class ParseErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ParseErrorTest, NamesFileLineAndProblem) {
  const ErrorCase& c = GetParam();
  EXPECT_THAT(
      ParseRevisionFile(kPath, c.content),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(StartsWith(absl::StrCat(kPath, ":", c.line, ": ")), HasSubstr(c.what))));
}

INSTANTIATE_TEST_SUITE_P(
    Header, ParseErrorTest,
    ::testing::ValuesIn(std::vector<ErrorCase>{
        {"UnknownKey", "-- revision: a1\n\n\n-- revison: a1\n-- +upgrade\n", 4,
         "unknown header key 'revison' (known: revision, revises, branch_labels, depends_on, "
         "message, created, transactional, lock_timeout, statement_timeout, parse, lint_ignore)"},
        {"KeysAreCaseSensitive", "-- revision: a1\n-- Revises: a0\n-- +upgrade\n", 2,
         "unknown header key 'Revises'"},
        {"HyphenatedKey", "-- revision: a1\n-- branch-labels: x\n-- +upgrade\n", 2,
         "unknown header key 'branch-labels'"},
        {"CommentReadingLikeAKey", "-- revision: a1\n-- TODO: later\n-- +upgrade\n", 2,
         "unknown header key 'TODO'"},
        {"UnknownKeyWithEmptyValue", "-- revision: a1\n-- note:\n-- +upgrade\n", 2,
         "unknown header key 'note'"},
        {"DuplicateKey", "-- revision: a1\n-- revises: a0\n-- revises: b0\n-- +upgrade\n", 3,
         "duplicate header key 'revises' (first at line 2)"},
        {"DuplicateRevision", "-- revision: a1\n-- revision: a1\n-- +upgrade\n", 2,
         "duplicate header key 'revision' (first at line 1)"},
        {"MissingRevision", "-- message: hi\n-- +upgrade\nSELECT 1;\n", 1,
         "missing required header `-- revision: <id>`"},
        {"EmptyFile", "", 1, "missing required header"},
        {"MissingUpgrade", "-- revision: a1\n-- message: hi\n\n", 3, "no `-- +upgrade` line"},
        {"DowngradeBeforeUpgrade", "-- revision: a1\n-- +downgrade\n-- +upgrade\n", 2,
         "`-- +downgrade` before `-- +upgrade`"},
        {"DowngradeTwice",
         "-- revision: a1\n-- +upgrade\n-- +downgrade\nSELECT 1;\n-- +downgrade\n", 5,
         "second `-- +downgrade` (first at line 3)"},
        {"UpgradeTwice", "-- revision: a1\n-- +upgrade\nSELECT 1;\n-- +upgrade\n", 4,
         "second `-- +upgrade` (first at line 2)"},
        {"UpgradeAfterDowngrade", "-- revision: a1\n-- +upgrade\n-- +downgrade\n-- +upgrade\n", 4,
         "second `-- +upgrade` (first at line 2)"},
        {"SqlBeforeUpgrade", "-- revision: a1\nCREATE TABLE t (x int);\n-- +upgrade\n", 2,
         "SQL before `-- +upgrade`"},
        {"BlockCommentBeforeUpgrade", "-- revision: a1\n/* note */\n-- +upgrade\n", 2,
         "SQL before `-- +upgrade`"},
        {"EmptyRevision", "-- revision:\n-- +upgrade\n", 1,
         "empty value for header key 'revision'"},
        {"EmptyRevisionWithSpaces", "-- revision:   \n-- +upgrade\n", 1, "empty value"},
        {"InvalidRevisionChars", "-- revision: 3f2a-9c\n-- +upgrade\n", 1,
         "invalid revision id '3f2a-9c': use only letters, digits and '_'"},
        {"RevisionWithSpace", "-- revision: ab cd\n-- +upgrade\n", 1,
         "invalid revision id 'ab cd'"},
        {"RevisionTooLong", "-- revision: 0123456789abcdef0123456789abcdef0\n-- +upgrade\n", 1,
         "longer than 32 characters"},
        {"RevisionIsTargetKeyword", "-- revision: heads\n-- +upgrade\n", 1,
         "invalid revision id 'heads': it is a target keyword"},
        {"EmptyListEntry", "-- revision: a1\n-- revises: a0,,b0\n-- +upgrade\n", 2,
         "empty entry in 'revises' list"},
        {"TrailingCommaInList", "-- revision: a1\n-- depends_on: a0, \n-- +upgrade\n", 2,
         "empty entry in 'depends_on' list"},
        {"EmptyList", "-- revision: a1\n-- revises:\n-- +upgrade\n", 2,
         "empty value for header key 'revises'"},
        {"SpaceSeparatedList", "-- revision: a1\n-- revises: a0 b0\n-- +upgrade\n", 2,
         "invalid revision id 'a0 b0'"},
        {"DuplicateListEntry", "-- revision: a1\n-- revises: a0, a0\n-- +upgrade\n", 2,
         "'a0' appears twice in 'revises' list"},
        {"InvalidLabel", "-- revision: a1\n-- branch_labels: ts@x\n-- +upgrade\n", 2,
         "invalid label 'ts@x'"},
        {"LabelIsTargetKeyword", "-- revision: a1\n-- branch_labels: base\n-- +upgrade\n", 2,
         "invalid label 'base': it is a target keyword"},
        {"InvalidDependsOn", "-- revision: a1\n-- depends_on: a+1\n-- +upgrade\n", 2,
         "invalid revision id or label 'a+1'"},
        {"TransactionalNotBool", "-- revision: a1\n-- transactional: yes\n-- +upgrade\n", 2,
         "transactional must be true or false, not 'yes'"},
        {"TransactionalUpperCase", "-- revision: a1\n-- transactional: False\n-- +upgrade\n", 2,
         "transactional must be true or false"},
        {"NegativeDuration", "-- revision: a1\n-- lock_timeout: -5s\n-- +upgrade\n", 2,
         "invalid duration '-5s': must not be negative"},
        {"DurationWithoutUnit", "-- revision: a1\n-- lock_timeout: 5000\n-- +upgrade\n", 2,
         "invalid duration '5000': a unit is required"},
        {"DurationUnknownUnit", "-- revision: a1\n-- statement_timeout: 5sec\n-- +upgrade\n", 2,
         "invalid duration '5sec': unknown unit 'sec'"},
        {"DurationNotANumber", "-- revision: a1\n-- statement_timeout: soon\n-- +upgrade\n", 2,
         "invalid duration 'soon': expected a number"},
        {"DurationTwoDots", "-- revision: a1\n-- lock_timeout: 1.2.3s\n-- +upgrade\n", 2,
         "invalid duration '1.2.3s'"},
        {"DurationTooLarge",
         "-- revision: a1\n-- lock_timeout: 99999999999999999999999h\n-- +upgrade\n", 2,
         "too large"},
    }),
    [](const ::testing::TestParamInfo<ErrorCase>& test) { return test.param.name; });

INSTANTIATE_TEST_SUITE_P(
    Sections, ParseErrorTest,
    ::testing::ValuesIn(std::vector<ErrorCase>{
        {"MarkerWithoutSpace", "-- revision: a1\n-- +upgrade\nSELECT 1;\n--+downgrade\nSELECT 2;\n",
         4, "malformed section marker '--+downgrade': write exactly `-- +downgrade`"},
        {"MarkerCapitalised", "-- revision: a1\n-- +Upgrade\n", 2,
         "malformed section marker '-- +Upgrade': write exactly `-- +upgrade`"},
        {"MarkerWithoutPlus", "-- revision: a1\n-- +upgrade\n--  downgrade\n", 3,
         "malformed section marker"},
        {"GooseMarker", "-- revision: a1\n-- +upgrade\nSELECT 1;\n-- +goose Down\n", 4,
         "of another migration tool"},
        {"GooseStatementBegin", "-- revision: a1\n-- +upgrade\n--  +goose   StatementBegin\n", 3,
         "of another migration tool"},
        {"SqlMigrateMarker", "-- revision: a1\n-- +upgrade\n-- +migrate Down\n", 3,
         "of another migration tool"},
        {"DbmateMarker", "-- revision: a1\n-- +upgrade\n-- migrate:down\n", 3,
         "of another migration tool"},
        {"UnterminatedDollarInUpgrade",
         "-- revision: a1\n-- +upgrade\nSELECT 1;\n\nCREATE FUNCTION f() AS $fn$\nBEGIN\n", 5,
         "unterminated dollar-quoted string at or near \"$fn$ BEGIN \""},
        {"UnterminatedStringInDowngrade",
         "-- revision: a1\n-- +upgrade\n-- +downgrade\nSELECT 1;\nSELECT 'x;\n", 5,
         "unterminated quoted string at or near \"'x; \" (PostgreSQL 15's parser; for syntax it "
         "does not know, set `-- parse: false`)"},
        {"DollarBodyCutByMarker", "-- revision: a1\n-- +upgrade\nDO $$\n-- +downgrade\n$$;\n", 3,
         "unterminated dollar-quoted string at or near \"$$ \""},
        {"UnterminatedComment", "-- revision: a1\n-- +upgrade\n\n/* a /* b */\n", 4,
         "unterminated /* comment at or near \"/* a /* b */ \""},
        {"SyntaxError", "-- revision: a1\n-- +upgrade\nSELECT 1;\n\nSELEC 2;\n", 5,
         "syntax error at or near \"SELEC\" (PostgreSQL 15's parser"},
        {"SyntaxErrorLineCountsCharactersNotBytes",
         "-- revision: a1\n-- +upgrade\nSELECT '\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9',\n\n,;\n", 5,
         "syntax error at or near \",\""},
        {"SyntaxErrorAtEndOfInput", "-- revision: a1\n-- +upgrade\nSELECT (1\n\n-- +downgrade\n", 3,
         "syntax error at end of input"},
        {"ParserMessageIsBounded",
         absl::StrCat("-- revision: a1\n-- +upgrade\nSELECT 1;\nSELECT '", std::string(5000, 'x')),
         4, "unterminated quoted string at or near \"'xxxxxxxx"},
        // With `-- parse: false`, the hand-written splitter's messages.
        {"UnparsedUnterminatedString",
         "-- revision: a1\n-- parse: false\n-- +upgrade\n-- +downgrade\nSELECT 1;\nSELECT 'x;\n", 6,
         "unterminated quoted string starting at line 6"},
        {"UnparsedDollarBodyCutByMarker",
         "-- revision: a1\n-- parse: false\n-- +upgrade\nDO $$\n-- +downgrade\n$$;\n", 4,
         "unterminated dollar-quoted string $$ starting at line 4"},
        {"ParseNotBool", "-- revision: a1\n-- parse: no\n-- +upgrade\n", 2,
         "parse must be true or false, not 'no'"},
    }),
    [](const ::testing::TestParamInfo<ErrorCase>& test) { return test.param.name; });

// --- statements that cannot run in a transaction -----------------------------

struct StatementCase {
  std::string statement;
  std::string what;  // empty: allowed in a transactional revision
  friend void PrintTo(const StatementCase& c, std::ostream* os) { *os << c.statement; }
};

class TransactionalStatementTest : public ::testing::TestWithParam<StatementCase> {};

TEST_P(TransactionalStatementTest, RejectedOnlyWhenTransactional) {
  const StatementCase& c = GetParam();
  // The statement starts on line 6, in the downgrade section.
  const std::string sections =
      absl::StrCat("-- +upgrade\nSELECT 1;\n-- +downgrade\n", c.statement, ";\nSELECT 2;\n");
  const absl::StatusOr<Revision> transactional = ParseRevisionFile(kPath, File("", sections));
  if (c.what.empty()) {
    EXPECT_OK(transactional);
  } else {
    EXPECT_THAT(transactional,
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(StartsWith(absl::StrCat(kPath, ":6: ")), HasSubstr(c.what),
                               HasSubstr("set `-- transactional: false`"))));
  }
  EXPECT_OK(ParseRevisionFile(kPath, File("-- transactional: false\n", sections)));
  // Differential: the keyword classification of `-- parse: false` agrees
  // with the parse tree's on every statement here.
  const absl::StatusOr<Revision> unparsed =
      ParseRevisionFile(kPath, File("-- parse: false\n", sections));
  EXPECT_EQ(unparsed.status().message(),
            absl::StrReplaceAll(transactional.status().message(), {{":6: ", ":7: "}}));
}

INSTANTIATE_TEST_SUITE_P(
    Statements, TransactionalStatementTest,
    ::testing::ValuesIn(std::vector<StatementCase>{
        {"CREATE INDEX CONCURRENTLY i ON t (x)",
         "CREATE INDEX CONCURRENTLY cannot run inside a transaction"},
        {"create unique index concurrently if not exists i on t (x)",
         "CREATE UNIQUE INDEX CONCURRENTLY cannot run inside a transaction"},
        {"/* build it online */ CREATE INDEX\n  CONCURRENTLY i ON t (x)",
         "CREATE INDEX CONCURRENTLY"},
        {"DROP INDEX CONCURRENTLY IF EXISTS i", "DROP INDEX CONCURRENTLY"},
        {"REINDEX INDEX CONCURRENTLY i", "REINDEX INDEX CONCURRENTLY"},
        {"reindex (verbose) table concurrently t", "REINDEX TABLE CONCURRENTLY"},
        {"REINDEX SCHEMA public", "REINDEX SCHEMA"},
        {"REINDEX DATABASE app", "REINDEX DATABASE"},
        {"REINDEX SYSTEM app", "REINDEX SYSTEM"},
        {"VACUUM", "VACUUM"},
        {"vacuum (analyze) t", "VACUUM"},
        {"CREATE DATABASE app2", "CREATE DATABASE"},
        {"DROP DATABASE IF EXISTS app2", "DROP DATABASE"},
        {"CREATE TABLESPACE ts LOCATION '/x'", "CREATE TABLESPACE"},
        {"DROP TABLESPACE ts", "DROP TABLESPACE"},
        {"ALTER SYSTEM SET work_mem = '64MB'", "ALTER SYSTEM"},
        {"ALTER DATABASE app SET TABLESPACE ts", "ALTER DATABASE ... SET TABLESPACE"},
        {"ALTER TABLE ONLY m.\"Measurements\" DETACH PARTITION m.p2024 CONCURRENTLY",
         "ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY"},
        {"CLUSTER", "CLUSTER without a table"},
        {"CLUSTER VERBOSE", "CLUSTER without a table"},
        {"DISCARD ALL", "DISCARD ALL"},
        {"COMMIT", "COMMIT would end the transaction"},
        {"BEGIN", "BEGIN would end the transaction"},
        {"START TRANSACTION ISOLATION LEVEL SERIALIZABLE", "START TRANSACTION"},
        {"END", "END would end the transaction"},
        {"ROLLBACK", "ROLLBACK would end the transaction"},
        {"ABORT", "ABORT"},
        {"PREPARE TRANSACTION 'x'", "PREPARE TRANSACTION"},
        {"COMMIT PREPARED 'x'", "COMMIT PREPARED cannot run inside a transaction"},
        {"ROLLBACK PREPARED 'x'", "ROLLBACK PREPARED"},
        // Allowed in a transaction:
        {"CREATE INDEX i ON t (x)", ""},
        {"CREATE UNIQUE INDEX i ON t (\"concurrently\")", ""},
        {"DROP INDEX i", ""},
        {"REINDEX INDEX i", ""},
        {"REINDEX TABLE t", ""},
        {"ANALYZE t", ""},
        {"CLUSTER t USING i", ""},
        {"CLUSTER VERBOSE t", ""},
        {"ALTER TABLE t DETACH PARTITION p", ""},
        {"ALTER TABLE t DETACH PARTITION p FINALIZE", ""},
        {"ALTER TABLE t ADD COLUMN \"concurrently\" int", ""},
        {"ALTER DATABASE app SET work_mem = '64MB'", ""},
        {"SELECT 'VACUUM'", ""},
        {"-- VACUUM\nSELECT 1", ""},
        {"-- +gooseberry season\n-- +migrate the data first\n-- upgrade the rows\nSELECT 1", ""},
        {"DISCARD PLANS", ""},
        {"SAVEPOINT s", ""},
        {"ROLLBACK TO SAVEPOINT s", ""},
        {"ROLLBACK WORK TO s", ""},
        {"RELEASE SAVEPOINT s", ""},
        {"CREATE FUNCTION f() RETURNS void LANGUAGE sql BEGIN ATOMIC SELECT 1; END", ""},
        {"DO $$ BEGIN PERFORM 1; END $$", ""},
    }));

TEST(TransactionalStatementTest, LeadingLineCommentsAreSkippedAndLineIsTheStatements) {
  EXPECT_THAT(ParseRevisionFile(kPath, File("",
                                            "-- +upgrade\nSELECT 1;\n-- build it online\n"
                                            "-- (big table)\nCREATE INDEX CONCURRENTLY i ON "
                                            "t (x);\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith(absl::StrCat(kPath, ":7: CREATE INDEX CONCURRENTLY"))));
}

// --- rendering ---------------------------------------------------------------

TEST(RenderRevisionFileTest, RoundTripsEveryField) {
  NewRevisionSpec spec;
  spec.id = "3f2a9c1b7d4e";
  spec.revises = {"1c9e8b7a6f5d", "0a1b2c3d4e5f"};
  spec.branch_labels = {"timeseries"};
  spec.depends_on = {"8a7b6c5d4e3f", "other_label"};
  spec.message = "Add sensor_data table: now with comments";
  spec.created = "2025-12-09T14:00:00Z";
  spec.transactional = false;
  spec.upgrade_sql = "CREATE TABLE sensor_data (id bigint);\nCREATE INDEX CONCURRENTLY i ON s (x);";
  spec.downgrade_sql = "DROP TABLE sensor_data;\n\n";

  const std::string file = RenderRevisionFile(spec);
  ASSERT_OK_AND_ASSIGN(Revision r, ParseRevisionFile("x.sql", file));
  EXPECT_EQ(r.id, spec.id);
  EXPECT_EQ(r.revises, spec.revises);
  EXPECT_EQ(r.branch_labels, spec.branch_labels);
  EXPECT_EQ(r.depends_on, spec.depends_on);
  EXPECT_EQ(r.message, spec.message);
  EXPECT_EQ(r.created, spec.created);
  EXPECT_EQ(r.transactional, spec.transactional);
  EXPECT_THAT(Texts(*r.upgrade), ElementsAre("CREATE TABLE sensor_data (id bigint)",
                                             "CREATE INDEX CONCURRENTLY i ON s (x)"));
  ASSERT_TRUE(r.downgrade.has_value());
  EXPECT_THAT(Texts(*r.downgrade), ElementsAre("DROP TABLE sensor_data"));
  EXPECT_THAT(file, HasSubstr("-- transactional: false\n"));
}

TEST(RenderRevisionFileTest, MinimalSpecWritesPlaceholdersAndOmitsEmptyKeys) {
  NewRevisionSpec spec;
  spec.id = "a1b2c3d4e5f6";
  const std::string file = RenderRevisionFile(spec);
  EXPECT_EQ(file,
            "-- revision: a1b2c3d4e5f6\n"
            "\n"
            "-- +upgrade\n"
            "-- write the upgrade SQL here\n"
            "\n"
            "-- +downgrade\n"
            "-- write the downgrade SQL here. Left empty, downgrading is a no-op;\n"
            "-- delete this section, marker included, to make the revision irreversible.\n");
  ASSERT_OK_AND_ASSIGN(Revision r, ParseRevisionFile("x.sql", file));
  EXPECT_EQ(r.id, spec.id);
  EXPECT_TRUE(r.transactional);
  EXPECT_THAT(r.upgrade->statements, IsEmpty());
  ASSERT_TRUE(r.downgrade.has_value());
  EXPECT_THAT(r.downgrade->statements, IsEmpty());
}

TEST(RenderRevisionFileTest, IrreversibleWithNotes) {
  NewRevisionSpec spec;
  spec.id = "a1b2c3d4e5f6";
  spec.upgrade_sql = "CREATE TABLE t (x int);\n";
  spec.downgrade_sql = "DROP TABLE t;";  // ignored: not reversible
  spec.reversible = false;
  spec.notes = {"Imported from Alembic (versions/a1.py).", "No downgrade - downgrade() raises."};
  const std::string file = RenderRevisionFile(spec);
  EXPECT_EQ(file,
            "-- revision: a1b2c3d4e5f6\n"
            "--\n"
            "-- Imported from Alembic (versions/a1.py).\n"
            "-- No downgrade - downgrade() raises.\n"
            "\n"
            "-- +upgrade\n"
            "CREATE TABLE t (x int);\n");
  ASSERT_OK_AND_ASSIGN(Revision r, ParseRevisionFile("x.sql", file));
  EXPECT_FALSE(r.reversible());
  EXPECT_THAT(Texts(*r.upgrade), ElementsAre("CREATE TABLE t (x int)"));
}

TEST(RenderRevisionFileTest, MessageLineBreaksBecomeSpaces) {
  NewRevisionSpec spec;
  spec.id = "a1";
  spec.message = "two\nlines";
  ASSERT_OK_AND_ASSIGN(Revision r, ParseRevisionFile("x.sql", RenderRevisionFile(spec)));
  EXPECT_EQ(r.message, "two lines");
}

TEST(RevisionFileNameTest, Slugs) {
  EXPECT_EQ(RevisionFileName("3f2a9c1b7d4e", "Add sensor_data table!"),
            "3f2a9c1b7d4e_add_sensor_data_table.sql");
  EXPECT_EQ(RevisionFileName("a1", ""), "a1.sql");
  EXPECT_EQ(RevisionFileName("a1", "  --!! "), "a1.sql");
  EXPECT_EQ(RevisionFileName("a1", "Caf\xC3\xA9 au lait"), "a1_caf_au_lait.sql");
  EXPECT_EQ(RevisionFileName("a1", "a very long message that goes on and on beyond forty chars"),
            "a1_a_very_long_message_that_goes_on_and_on.sql");
  EXPECT_EQ(RevisionFileName("a1", "0123456789012345678901234567890123456789 x"),
            "a1_0123456789012345678901234567890123456789.sql");
  EXPECT_EQ(RevisionFileName("a1", "012345678901234567890123456789012345678 x"),
            "a1_012345678901234567890123456789012345678.sql");
}

TEST(NewRevisionIdTest, TwelveLowerCaseHexDigitsAndRandom) {
  std::set<std::string> ids;
  for (int i = 0; i < 100; ++i) {
    const std::string id = NewRevisionId();
    EXPECT_THAT(id, MatchesRegex("[0-9a-f]{12}"));
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 100u);
}

// --- Revision::Where and checksums -------------------------------------------

TEST(RevisionTest, WhereNamesFileOrId) {
  Revision r;
  r.id = "abc";
  EXPECT_EQ(r.Where(), "revision abc");
  r.path = "m/abc.sql";
  r.id_line = 3;
  EXPECT_EQ(r.Where(), "m/abc.sql:3");
}

TEST(ChecksumTest, Sha256KnownVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(ChecksumTest, HashesDocumentedString) {
  using std::string_literals::operator""s;
  SqlSection up;
  up.body = "SELECT 1;\r\nSELECT 2;\r\n\r\n";
  SqlSection down;
  down.body = "SELECT 3;\rSELECT 4; \n";
  EXPECT_EQ(RevisionChecksum(up, down),
            Sha256Hex("upgrade\nSELECT 1;\nSELECT 2;\0downgrade\nSELECT 3;\nSELECT 4;"s));
  EXPECT_EQ(RevisionChecksum(up, std::nullopt),
            Sha256Hex("upgrade\nSELECT 1;\nSELECT 2;\0irreversible"s));
  EXPECT_EQ(RevisionChecksum(std::nullopt, std::nullopt), Sha256Hex("upgrade\n\0irreversible"s));
}

TEST(ChecksumTest, InnerWhitespaceCounts) {
  SqlSection a;
  a.body = "SELECT 1;\n";
  SqlSection b;
  b.body = "SELECT  1;\n";
  EXPECT_NE(RevisionChecksum(a, std::nullopt), RevisionChecksum(b, std::nullopt));
}

// The revision of a file whose upgrade section is `up` (downgrade `down`).
Revision RevisionWith(const std::string& up, const std::string& down = "DROP TABLE a;",
                      const std::string& header = "") {
  absl::StatusOr<Revision> revision =
      ParseRevisionFile("m/a.sql", absl::StrCat("-- revision: a1\n", header, "\n-- +upgrade\n", up,
                                                "\n-- +downgrade\n", down, "\n"));
  EXPECT_TRUE(revision.ok()) << revision.status();
  return revision.ok() ? *std::move(revision) : Revision{};
}

TEST(FingerprintTest, CommentsWhitespaceAndCaseAreCosmetic) {
  const std::string base = RevisionFingerprint(
      RevisionWith("CREATE TABLE a (id int, v text DEFAULT 'x');\nCREATE INDEX i ON a (v);"));
  EXPECT_EQ(base.size(), 64u);
  EXPECT_EQ(RevisionFingerprint(RevisionWith(
                "-- a table\ncreate table A (\n  id INT, /* value */ v TEXT default 'x'\n);\n\n"
                "create index I on a(v);  -- for lookups")),
            base);
  // Anything that changes what PostgreSQL runs changes the fingerprint.
  for (const char* real : {
           "CREATE TABLE a (id int, v text DEFAULT 'y');\nCREATE INDEX i ON a (v);",
           "CREATE TABLE a (id bigint, v text DEFAULT 'x');\nCREATE INDEX i ON a (v);",
           "CREATE TABLE \"A\" (id int, v text DEFAULT 'x');\nCREATE INDEX i ON a (v);",
           "CREATE TABLE a (id int, v text DEFAULT 'x');",
           "CREATE INDEX i ON a (v);\nCREATE TABLE a (id int, v text DEFAULT 'x');",
       }) {
    EXPECT_NE(RevisionFingerprint(RevisionWith(real)), base) << real;
  }
  EXPECT_NE(RevisionFingerprint(RevisionWith(
                "CREATE TABLE a (id int, v text DEFAULT 'x');\nCREATE INDEX i ON a (v);",
                "DROP TABLE b;")),
            base);
  // Without the parser there is no fingerprint: every edit is a change.
  EXPECT_EQ(RevisionFingerprint(
                RevisionWith("CREATE TABLE a (id int);", "DROP TABLE a;", "-- parse: false\n")),
            "");
}

// --- LoadRevisionDirectory ---------------------------------------------------

// A fresh directory under the system temp dir, removed with its contents.
class TempDir {
 public:
  TempDir() {
    std::random_device device;
    path_ = std::filesystem::temp_directory_path() /
            absl::StrCat("schemad_revision_file_test_", device(), "_", device());
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  void Write(const std::string& name, const std::string& content) const {
    std::ofstream(path_ / name, std::ios::binary) << content;
  }

 private:
  std::filesystem::path path_;
};

std::string Minimal(const std::string& id) {
  return absl::StrCat("-- revision: ", id, "\n-- +upgrade\nSELECT 1;\n");
}

TEST(LoadRevisionDirectoryTest, LoadsSqlFilesSortedByName) {
  TempDir dir;
  dir.Write("b_second.sql", Minimal("bbb"));
  dir.Write("a_first.sql", Minimal("aaa"));
  dir.Write("README.md", "not a revision");
  dir.Write("notes.sql.bak", "not a revision");
  dir.Write(".hidden.sql", "not a revision");
  dir.Write("._a_first.sql", "\0\x05\x16\x07 AppleDouble");
  std::filesystem::create_directory(dir.path() / "sub");
  dir.Write("sub/c_third.sql", Minimal("ccc"));

  ASSERT_OK_AND_ASSIGN(std::vector<Revision> revisions, LoadRevisionDirectory(dir.path().string()));
  ASSERT_THAT(revisions, SizeIs(2));
  EXPECT_EQ(revisions[0].id, "aaa");
  EXPECT_EQ(revisions[0].path, (dir.path() / "a_first.sql").string());
  EXPECT_EQ(revisions[1].id, "bbb");
  EXPECT_EQ(revisions[1].Where(), absl::StrCat((dir.path() / "b_second.sql").string(), ":1"));
}

TEST(LoadRevisionDirectoryTest, EmptyDirectoryHasNoRevisions) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(std::vector<Revision> revisions, LoadRevisionDirectory(dir.path().string()));
  EXPECT_THAT(revisions, IsEmpty());
}

TEST(LoadRevisionDirectoryTest, ReturnsFirstErrorInFileNameOrder) {
  TempDir dir;
  dir.Write("1_ok.sql", Minimal("aaa"));
  dir.Write("3_bad.sql", "-- revision: ccc\n-- colour: red\n-- +upgrade\n");
  dir.Write("2_bad.sql", "-- revision: bbb\n\n-- +upgrade\nSELECT 'x\n");
  EXPECT_THAT(LoadRevisionDirectory(dir.path().string()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith(absl::StrCat((dir.path() / "2_bad.sql").string(),
                                               ":4: unterminated quoted string"))));
}

TEST(LoadRevisionDirectoryTest, MissingDirectoryIsNotFound) {
  TempDir dir;
  const std::string missing = (dir.path() / "nope").string();
  EXPECT_THAT(LoadRevisionDirectory(missing),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(missing)));
}

TEST(LoadRevisionDirectoryTest, FileIsNotADirectory) {
  TempDir dir;
  dir.Write("a.sql", Minimal("aaa"));
  const std::string file = (dir.path() / "a.sql").string();
  EXPECT_THAT(LoadRevisionDirectory(file),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(file)));
}

TEST(LoadRevisionDirectoryTest, SymlinkToAFileIsLoaded) {
  TempDir dir;
  dir.Write("real.txt", Minimal("aaa"));
  std::filesystem::create_symlink(dir.path() / "real.txt", dir.path() / "a_link.sql");
  ASSERT_OK_AND_ASSIGN(std::vector<Revision> revisions, LoadRevisionDirectory(dir.path().string()));
  ASSERT_THAT(revisions, SizeIs(1));
  EXPECT_EQ(revisions[0].id, "aaa");
}

// Issue 9, defect 8: these were silently skipped, so a revision went missing.
TEST(LoadRevisionDirectoryTest, DanglingSymlinkIsAnErrorNamingIt) {
  TempDir dir;
  dir.Write("a_ok.sql", Minimal("aaa"));
  std::filesystem::create_symlink(dir.path() / "gone.sql", dir.path() / "b_link.sql");
  const std::string link = (dir.path() / "b_link.sql").string();
  EXPECT_THAT(LoadRevisionDirectory(dir.path().string()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(absl::StrCat("'", link, "' is a symbolic link to nothing")),
                             HasSubstr("gone.sql"))));
}

TEST(LoadRevisionDirectoryTest, DirectoryNamedSqlIsAnErrorNamingIt) {
  TempDir dir;
  dir.Write("a_ok.sql", Minimal("aaa"));
  std::filesystem::create_directory(dir.path() / "nested.sql");
  const std::string nested = (dir.path() / "nested.sql").string();
  EXPECT_THAT(LoadRevisionDirectory(dir.path().string()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(absl::StrCat("'", nested, "' is a directory"))));
}

TEST(LoadRevisionDirectoryTest, FifoNamedSqlIsAnErrorNotAHang) {
  TempDir dir;
  const std::string fifo = (dir.path() / "a_pipe.sql").string();
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_THAT(LoadRevisionDirectory(dir.path().string()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(absl::StrCat("'", fifo, "' is not a regular file"))));
}

TEST(LoadRevisionDirectoryTest, OversizedFileIsAnErrorNamingIt) {
  TempDir dir;
  const std::filesystem::path big = dir.path() / "a_big.sql";
  dir.Write("a_big.sql", Minimal("aaa"));
  std::filesystem::resize_file(big, (64u << 20) + 1);  // sparse: no disk used
  EXPECT_THAT(LoadRevisionDirectory(dir.path().string()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(big.string()), HasSubstr("the limit is 67108864"))));
}

TEST(LoadRevisionDirectoryTest, InvalidUtf8FileIsAnErrorNamingFileAndLine) {
  TempDir dir;
  dir.Write("a_bad.sql", "-- revision: aaa\n-- message: bad \xff\n-- +upgrade\nSELECT 1;\n");
  EXPECT_THAT(
      LoadRevisionDirectory(dir.path().string()),
      StatusIs(absl::StatusCode::kInvalidArgument,
               StartsWith(absl::StrCat((dir.path() / "a_bad.sql").string(), ":2: invalid UTF-8"))));
}

TEST(LoadRevisionDirectoryTest, LoadsManyFilesQuickly) {
  TempDir dir;
  constexpr int kFiles = 2000;
  for (int i = 0; i < kFiles; ++i) {
    dir.Write(absl::StrCat(100000 + i, "_r.sql"),
              absl::StrCat("-- revision: r", i, "\n",
                           i > 0 ? absl::StrCat("-- revises: r", i - 1, "\n") : "",
                           "-- message: step\n\n-- +upgrade\nCREATE TABLE t", i,
                           " (id bigint, note text DEFAULT 'a;b');\n"
                           "CREATE FUNCTION f",
                           i,
                           "() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\n"
                           "\n-- +downgrade\nDROP TABLE t",
                           i, ";\n"));
  }
  const absl::Time start = absl::Now();
  ASSERT_OK_AND_ASSIGN(std::vector<Revision> revisions, LoadRevisionDirectory(dir.path().string()));
  const absl::Duration elapsed = absl::Now() - start;
  ASSERT_THAT(revisions, SizeIs(kFiles));
  EXPECT_EQ(revisions.back().id, absl::StrCat("r", kFiles - 1));
  // Generous (sanitizers, loaded CI machines); a 10,000-file set takes well under a second.
  EXPECT_LT(elapsed, absl::Seconds(5));
}

}  // namespace
}  // namespace schemad::engine
