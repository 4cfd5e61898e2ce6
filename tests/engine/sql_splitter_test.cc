#include "service/engine/sql_splitter.h"

#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/split_cases.h"
#include "tests/testing/status_matchers.h"

namespace schemad::engine {
namespace {

using ::schemad::testing::StatusIs;
using ::testing::ElementsAreArray;
using ::testing::Optional;
using ::testing::SizeIs;

class SplitSqlTest : public ::testing::TestWithParam<SplitCase> {};

TEST_P(SplitSqlTest, Splits) {
  const SplitCase& c = GetParam();
  ASSERT_OK_AND_ASSIGN(std::vector<SqlStatement> statements, SplitSql(c.sql, c.first_line));
  EXPECT_THAT(AsPairs(statements), ElementsAreArray(c.want));
}

INSTANTIATE_TEST_SUITE_P(Cases, SplitSqlTest, ::testing::ValuesIn(SplitCases()),
                         [](const ::testing::TestParamInfo<SplitCase>& test) {
                           return test.param.name;
                         });

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
