#include "service/engine/sql_splitter.h"

#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace schemad::engine {
namespace {

using ::schemad::testing::StatusIs;
using ::testing::ElementsAreArray;
using ::testing::Optional;
using ::testing::SizeIs;

// Statements as (text, line) pairs, for readable expectations.
using Split = std::vector<std::pair<std::string, int>>;

Split AsPairs(const std::vector<SqlStatement>& statements) {
  Split out;
  for (const SqlStatement& s : statements) {
    out.emplace_back(s.text, s.line);
  }
  return out;
}

struct SplitCase {
  std::string name;
  std::string sql;
  int first_line;
  Split want;
  friend void PrintTo(const SplitCase& c, std::ostream* os) { *os << c.name; }
};

class SplitSqlTest : public ::testing::TestWithParam<SplitCase> {};

TEST_P(SplitSqlTest, Splits) {
  const SplitCase& c = GetParam();
  ASSERT_OK_AND_ASSIGN(std::vector<SqlStatement> statements, SplitSql(c.sql, c.first_line));
  EXPECT_THAT(AsPairs(statements), ElementsAreArray(c.want));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SplitSqlTest,
    ::testing::ValuesIn(std::vector<SplitCase>{
        {"Empty", "", 1, {}},
        {"OnlyWhitespace", "  \n\t\n ", 1, {}},
        {"OnlyComments", "-- a\n/* b */\n-- c;\n", 1, {}},
        {"EmptyStatementsDropped", ";;\n ; -- x\n;", 1, {}},
        {"TwoStatements",
         "CREATE TABLE t (x int);\nINSERT INTO t VALUES (1);\n",
         1,
         {{"CREATE TABLE t (x int)", 1}, {"INSERT INTO t VALUES (1)", 2}}},
        {"TrailingStatementWithoutSemicolon",
         "SELECT 1;\n  SELECT 2  \n",
         1,
         {{"SELECT 1", 1}, {"SELECT 2", 2}}},
        {"FirstLineOffset", "\n\nSELECT 1;\nSELECT 2;", 10, {{"SELECT 1", 12}, {"SELECT 2", 13}}},
        {"MultiLineStatementReportsFirstLine",
         "\nCREATE TABLE t (\n  x int\n);\n",
         1,
         {{"CREATE TABLE t (\n  x int\n)", 2}}},
        {"SemicolonInString",
         "INSERT INTO t VALUES ('a;b');SELECT 1",
         1,
         {{"INSERT INTO t VALUES ('a;b')", 1}, {"SELECT 1", 1}}},
        {"DoubledQuoteInString",
         "SELECT 'it''s; fine';SELECT 2",
         1,
         {{"SELECT 'it''s; fine'", 1}, {"SELECT 2", 1}}},
        {"BackslashIsLiteralInStandardString",
         "SELECT 'C:\\';SELECT 2",
         1,
         {{"SELECT 'C:\\'", 1}, {"SELECT 2", 1}}},
        {"EStringBackslashEscapedQuote",
         "SELECT E'it\\'s; fine';SELECT 2",
         1,
         {{"SELECT E'it\\'s; fine'", 1}, {"SELECT 2", 1}}},
        {"LowerCaseEStringEscapedBackslash",
         "SELECT e'a\\\\';SELECT 2",
         1,
         {{"SELECT e'a\\\\'", 1}, {"SELECT 2", 1}}},
        {"EStringDoubledQuote",
         "SELECT E'a''b;c';SELECT 2",
         1,
         {{"SELECT E'a''b;c'", 1}, {"SELECT 2", 1}}},
        {"IdentifierEndingInEIsNotAnEPrefix",
         "SELECT 'x' AS some;SELECT 'a\\';SELECT 3",
         1,
         {{"SELECT 'x' AS some", 1}, {"SELECT 'a\\'", 1}, {"SELECT 3", 1}}},
        {"BitAndHexStrings",
         "SELECT B'1;0', X'1;F';SELECT 2",
         1,
         {{"SELECT B'1;0', X'1;F'", 1}, {"SELECT 2", 1}}},
        {"UnicodeStringAndIdentifier",
         "SELECT U&'d\\0061t;a', U&\"a;b\";SELECT 2",
         1,
         {{"SELECT U&'d\\0061t;a', U&\"a;b\"", 1}, {"SELECT 2", 1}}},
        {"QuotedIdentifier",
         "CREATE TABLE \"odd;name\" (\"a\"\"b;\" int);SELECT 2",
         1,
         {{"CREATE TABLE \"odd;name\" (\"a\"\"b;\" int)", 1}, {"SELECT 2", 1}}},
        {"MultiLineString",
         "SELECT 'a\nb;\nc';\nSELECT 2;",
         1,
         {{"SELECT 'a\nb;\nc'", 1}, {"SELECT 2", 4}}},
        {"DollarQuotedBody",
         "CREATE FUNCTION f() RETURNS int AS $$\nBEGIN\n  RETURN 1;\nEND;\n$$ LANGUAGE plpgsql;\n"
         "SELECT f();",
         1,
         {{"CREATE FUNCTION f() RETURNS int AS $$\nBEGIN\n  RETURN 1;\nEND;\n$$ LANGUAGE plpgsql",
           1},
          {"SELECT f()", 6}}},
        {"TaggedDollarBodyContainingOtherTagsAndQuotes",
         "DO $fn$ BEGIN EXECUTE $$SELECT ';'$$; PERFORM 'x''; -- '; END $fn$;SELECT 2",
         1,
         {{"DO $fn$ BEGIN EXECUTE $$SELECT ';'$$; PERFORM 'x''; -- '; END $fn$", 1},
          {"SELECT 2", 1}}},
        {"DollarTagIsCaseSensitive",
         "SELECT $a$ $A$; $a$;SELECT 2",
         1,
         {{"SELECT $a$ $A$; $a$", 1}, {"SELECT 2", 1}}},
        {"DollarTagWithDigitsAndUnderscore",
         "SELECT $_t1$;$_t1$;SELECT 2",
         1,
         {{"SELECT $_t1$;$_t1$", 1}, {"SELECT 2", 1}}},
        {"PositionalParametersAreNotTags",
         "PREPARE p AS SELECT $1, $2;EXECUTE p(1, 2)",
         1,
         {{"PREPARE p AS SELECT $1, $2", 1}, {"EXECUTE p(1, 2)", 1}}},
        {"DollarInsideIdentifierStartsNothing",
         "SELECT a$b$c, x$$;SELECT 2",
         1,
         {{"SELECT a$b$c, x$$", 1}, {"SELECT 2", 1}}},
        {"LineComment",
         "SELECT 1 -- not the end; 'nor a quote\n;SELECT 2",
         1,
         {{"SELECT 1 -- not the end; 'nor a quote", 1}, {"SELECT 2", 2}}},
        {"LineCommentAfterLastStatementDropped",
         "SELECT 1; -- done\n-- really;\n",
         1,
         {{"SELECT 1", 1}}},
        {"SameLineCommentAfterSemicolonBelongsToNoStatement",
         "SELECT 1; -- one\nSELECT 2;\t-- two; really\r\n-- about three\nSELECT 3; /* x */ SELECT "
         "4",
         1,
         {{"SELECT 1", 1},
          {"SELECT 2", 2},
          {"-- about three\nSELECT 3", 4},
          {"/* x */ SELECT 4", 4}}},
        {"LeadingCommentKeptInTextLineIsFirstCode",
         "SELECT 1;\n-- explain the next one\n/* and more */\nSELECT 2;",
         1,
         {{"SELECT 1", 1}, {"-- explain the next one\n/* and more */\nSELECT 2", 4}}},
        {"HintCommentKept",
         "/*+ SeqScan(t) */ SELECT * FROM t",
         1,
         {{"/*+ SeqScan(t) */ SELECT * FROM t", 1}}},
        {"NestedBlockComment",
         "SELECT /* a /* b; */ still; comment */ 1;SELECT 2",
         1,
         {{"SELECT /* a /* b; */ still; comment */ 1", 1}, {"SELECT 2", 1}}},
        {"BlockCommentSpanningLines",
         "/* one\ntwo;\nthree */ SELECT 1;",
         1,
         {{"/* one\ntwo;\nthree */ SELECT 1", 3}}},
        {"CrLfLineEndings",
         "SELECT 1;\r\nSELECT\r\n  2;\r\n\r\nSELECT 3;",
         1,
         {{"SELECT 1", 1}, {"SELECT\r\n  2", 2}, {"SELECT 3", 5}}},
        {"LoneCrLineEndings",
         "SELECT 1;\rSELECT 2;\r\rSELECT 3",
         1,
         {{"SELECT 1", 1}, {"SELECT 2", 2}, {"SELECT 3", 4}}},
        {"SemicolonInParentheses",
         "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b "
         "VALUES (2));SELECT 2",
         1,
         {{"CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b "
           "VALUES (2))",
           1},
          {"SELECT 2", 1}}},
        {"SqlStandardFunctionBody",
         "CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT 1;\n  SELECT "
         "CASE WHEN true THEN 2 END;\nEND;\nSELECT f();",
         1,
         {{"CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT 1;\n  SELECT "
           "CASE WHEN true THEN 2 END;\nEND",
           1},
          {"SELECT f()", 6}}},
        {"SqlStandardProcedureBodyOrReplace",
         "create or replace procedure p() begin atomic insert into t values (1); end;select 2",
         1,
         {{"create or replace procedure p() begin atomic insert into t values (1); end", 1},
          {"select 2", 1}}},
        {"TransactionBeginIsNotABody",
         "BEGIN;\nSELECT CASE WHEN true THEN 1 END;\nCOMMIT;",
         1,
         {{"BEGIN", 1}, {"SELECT CASE WHEN true THEN 1 END", 2}, {"COMMIT", 3}}},
        {"NumbersWithLetters",
         "SELECT 1e5, 0x1F, 1_000;SELECT 2",
         1,
         {{"SELECT 1e5, 0x1F, 1_000", 1}, {"SELECT 2", 1}}},
        {"CommentMarkersInsideStringsAndIdentifiers",
         "SELECT '--', '/*', \"--x\";SELECT 2",
         1,
         {{"SELECT '--', '/*', \"--x\"", 1}, {"SELECT 2", 1}}},
        {"NonAsciiIdentifiers",
         "CREATE TABLE caf\xC3\xA9 (\xC3\xA9t\xC3\xA9$ int);SELECT 2",
         1,
         {{"CREATE TABLE caf\xC3\xA9 (\xC3\xA9t\xC3\xA9$ int)", 1}, {"SELECT 2", 1}}},
    }),
    [](const ::testing::TestParamInfo<SplitCase>& test) { return test.param.name; });

struct ErrorCase {
  std::string name;
  std::string sql;
  int first_line;
  std::string message;  // the whole message
  int line;
  friend void PrintTo(const ErrorCase& c, std::ostream* os) { *os << c.name; }
};

class SplitSqlErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(SplitSqlErrorTest, FailsNamingConstructAndLine) {
  const ErrorCase& c = GetParam();
  absl::StatusOr<std::vector<SqlStatement>> result = SplitSql(c.sql, c.first_line);
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kInvalidArgument, c.message));
  EXPECT_THAT(SqlErrorLine(result.status()), Optional(c.line));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SplitSqlErrorTest,
    ::testing::ValuesIn(std::vector<ErrorCase>{
        {"String", "SELECT 1;\nSELECT 'abc;\n", 1, "unterminated quoted string starting at line 2",
         2},
        {"StringEndingInDoubledQuote", "SELECT 'ab''", 1,
         "unterminated quoted string starting at line 1", 1},
        {"EStringWithEscapedQuote", "SELECT E'it\\'s", 1,
         "unterminated quoted string starting at line 1", 1},
        {"QuotedIdentifier", "SELECT \"abc", 5, "unterminated quoted identifier starting at line 5",
         5},
        {"DollarTag", "SELECT 1;\n\nCREATE FUNCTION f() AS $fn$\nBEGIN\n$$ END\n", 10,
         "unterminated dollar-quoted string $fn$ starting at line 12", 12},
        {"EmptyDollarTag", "DO $$ BEGIN", 1,
         "unterminated dollar-quoted string $$ starting at line 1", 1},
        {"BlockComment", "SELECT 1;\n/* a\n/* b */\n", 1,
         "unterminated /* comment starting at line 2", 2},
        {"Parenthesis", "SELECT 1;\nSELECT (1 +\n(2);\nSELECT 3;", 1,
         "unclosed parenthesis starting at line 2", 2},
        {"AtomicBody", "CREATE PROCEDURE p()\nBEGIN ATOMIC\nSELECT 1;\n", 1,
         "BEGIN ... END function body without END starting at line 2", 2},
        // libpq sends a statement as a C string: what follows a NUL never runs.
        {"NulByte", std::string("SELECT 1;\r\nSELECT 2;\0DROP TABLE bt;", 35), 7,
         "NUL byte at line 8: PostgreSQL would never see what follows it", 8},
        {"NulInsideString", std::string("SELECT 'a\0b'", 12), 1,
         "NUL byte at line 1: PostgreSQL would never see what follows it", 1},
    }),
    [](const ::testing::TestParamInfo<ErrorCase>& test) { return test.param.name; });

TEST(SqlErrorLineTest, NulloptForOtherStatuses) {
  EXPECT_EQ(SqlErrorLine(absl::OkStatus()), std::nullopt);
  EXPECT_EQ(SqlErrorLine(absl::InvalidArgumentError("x")), std::nullopt);
}

TEST(SplitSqlTest, LargeInputSplitsEveryStatement) {
  std::string sql;
  constexpr int kStatements = 100000;
  for (int i = 0; i < kStatements; ++i) {
    absl::StrAppend(&sql, "INSERT INTO t VALUES (", i, ", 'a;b', $$x;y$$); -- c;\n");
  }
  ASSERT_OK_AND_ASSIGN(std::vector<SqlStatement> statements, SplitSql(sql, 1));
  ASSERT_EQ(statements.size(), kStatements);
  EXPECT_EQ(statements.back().line, kStatements);
  EXPECT_EQ(statements.back().text,
            absl::StrCat("INSERT INTO t VALUES (", kStatements - 1, ", 'a;b', $$x;y$$)"));
}

TEST(SplitSqlTest, ManyDollarSignsStayLinear) {
  // A long body full of near-miss delimiters must not go quadratic.
  std::string sql = "SELECT $body$";
  for (int i = 0; i < 200000; ++i) {
    sql += "$bod ";
  }
  sql += "$body$";
  ASSERT_OK_AND_ASSIGN(std::vector<SqlStatement> statements, SplitSql(sql, 1));
  EXPECT_THAT(statements, SizeIs(1));
}

}  // namespace
}  // namespace schemad::engine
