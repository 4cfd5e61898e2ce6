// The statement-splitting cases that both SQL front ends must pass: the
// hand-written splitter (sql_splitter_test.cc) and PostgreSQL's parser
// (sql_parser_test.cc) split each the same way.
#ifndef SCHEMAD_TESTS_ENGINE_SPLIT_CASES_H_
#define SCHEMAD_TESTS_ENGINE_SPLIT_CASES_H_

#include <algorithm>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "service/engine/revision.h"

namespace schemad::engine {

// Statements as (text, line) pairs, for readable expectations.
using Split = std::vector<std::pair<std::string, int>>;

inline Split AsPairs(const std::vector<SqlStatement>& statements) {
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
  bool pg15 = true;  // false: SQL PostgreSQL 15 rejects (the splitter does not check syntax)
  friend void PrintTo(const SplitCase& c, std::ostream* os) { *os << c.name; }
};

// Every case.
inline std::vector<SplitCase> SplitCases() {
  return {
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
       {{"CREATE FUNCTION f() RETURNS int AS $$\nBEGIN\n  RETURN 1;\nEND;\n$$ LANGUAGE plpgsql", 1},
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
       {{"SELECT 1e5, 0x1F, 1_000", 1}, {"SELECT 2", 1}},
       /*pg15=*/false},  // PostgreSQL 16's literals: "trailing junk after numeric literal"
      {"CommentMarkersInsideStringsAndIdentifiers",
       "SELECT '--', '/*', \"--x\";SELECT 2",
       1,
       {{"SELECT '--', '/*', \"--x\"", 1}, {"SELECT 2", 1}}},
      {"NonAsciiIdentifiers",
       "CREATE TABLE caf\xC3\xA9 (\xC3\xA9t\xC3\xA9$ int);SELECT 2",
       1,
       {{"CREATE TABLE caf\xC3\xA9 (\xC3\xA9t\xC3\xA9$ int)", 1}, {"SELECT 2", 1}}},
  };
}

// The cases PostgreSQL 15 parses.
inline std::vector<SplitCase> Pg15SplitCases() {
  std::vector<SplitCase> cases = SplitCases();
  cases.erase(
      std::remove_if(cases.begin(), cases.end(), [](const SplitCase& c) { return !c.pg15; }),
      cases.end());
  return cases;
}

}  // namespace schemad::engine

#endif  // SCHEMAD_TESTS_ENGINE_SPLIT_CASES_H_
