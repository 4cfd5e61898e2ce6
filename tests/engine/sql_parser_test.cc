#include "service/engine/sql_parser.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/engine/sql_splitter.h"
#include "tests/engine/split_cases.h"
#include "tests/testing/status_matchers.h"

namespace schemad::engine {
namespace {

using ::schemad::testing::StatusIs;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::Optional;
using ::testing::SizeIs;
using ::testing::StartsWith;

std::vector<SqlStatement> Statements(const std::vector<ParsedStatement>& parsed) {
  std::vector<SqlStatement> out;
  for (const ParsedStatement& p : parsed) {
    out.push_back(p.statement);
  }
  return out;
}

// --- the splitter's cases ------------------------------------------------------

class ParseSqlSplitTest : public ::testing::TestWithParam<SplitCase> {};

TEST_P(ParseSqlSplitTest, SplitsAsTheSplitterDoes) {
  const SplitCase& c = GetParam();
  ASSERT_OK_AND_ASSIGN(std::vector<ParsedStatement> parsed, ParseSql(c.sql, c.first_line));
  EXPECT_THAT(AsPairs(Statements(parsed)), ElementsAreArray(c.want));
  for (const ParsedStatement& p : parsed) {
    EXPECT_EQ(c.sql.substr(p.offset, p.statement.text.size()), p.statement.text);
    EXPECT_FALSE(p.node_type.empty()) << p.statement.text;
    EXPECT_THAT(p.tree_json, StartsWith(absl::StrCat("{\"", p.node_type, "\":")));
  }
}

INSTANTIATE_TEST_SUITE_P(SplitterCases, ParseSqlSplitTest, ::testing::ValuesIn(Pg15SplitCases()),
                         [](const ::testing::TestParamInfo<SplitCase>& test) {
                           return test.param.name;
                         });

// --- errors ------------------------------------------------------------------

struct ErrorCase {
  std::string name;
  std::string sql;
  int first_line;
  std::string message;  // the whole message
  int line;
  friend void PrintTo(const ErrorCase& c, std::ostream* os) { *os << c.name; }
};

class ParseSqlErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ParseSqlErrorTest, FailsWithParserMessageAndLine) {
  const ErrorCase& c = GetParam();
  absl::StatusOr<std::vector<ParsedStatement>> result = ParseSql(c.sql, c.first_line);
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kInvalidArgument, c.message));
  EXPECT_THAT(SqlErrorLine(result.status()), Optional(c.line));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ParseSqlErrorTest,
    ::testing::ValuesIn(std::vector<ErrorCase>{
        {"Syntax", "SELECT 1;\n\nSELEC 2;", 1, "syntax error at or near \"SELEC\"", 3},
        {"FirstLineOffset", "SELECT 1;\nCREATE TABLE (x int);", 20, "syntax error at or near \"(\"",
         21},
        {"CursorCountsCharacters", "SELECT '\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9',\n,", 1,
         "syntax error at or near \",\"", 2},
        {"EndOfInputIsTheLastLine", "SELECT (1 +\n 2\n\n\n", 1, "syntax error at end of input", 2},
        {"String", "SELECT 1;\nSELECT 'abc;\n", 1,
         "unterminated quoted string at or near \"'abc; \"", 2},
        {"DollarTag", "SELECT 1;\n\nCREATE FUNCTION f() AS $fn$\nBEGIN", 10,
         "unterminated dollar-quoted string at or near \"$fn$ BEGIN\"", 12},
        {"BlockComment", "SELECT 1;\n/* a\n/* b */\n", 1,
         "unterminated /* comment at or near \"/* a /* b */ \"", 2},
        {"AtomicBodyWithoutEnd", "CREATE PROCEDURE p()\nBEGIN ATOMIC\nSELECT 1;\n", 1,
         "syntax error at end of input", 3},
        {"DeepNestingIsRefused", absl::StrCat("SELECT ", std::string(20000, '('), "1"), 1,
         "memory exhausted at or near \"(\"", 1},
        {"NulByte", std::string("SELECT 1;\r\nSELECT 2;\0DROP TABLE bt;", 35), 7,
         "NUL byte at line 8: PostgreSQL would never see what follows it", 8},
        {"SyntaxOfANewerServer", "SELECT 0x1F_FF;", 1,
         "trailing junk after numeric literal at or near \"0x\"", 1},
    }),
    [](const ::testing::TestParamInfo<ErrorCase>& test) { return test.param.name; });

TEST(ParseSqlErrorTest, MessageIsBoundedAndOnOneLine) {
  const std::string sql = absl::StrCat("SELECT '", std::string(100000, 'x'), "\n", "y");
  absl::StatusOr<std::vector<ParsedStatement>> result = ParseSql(sql, 1);
  ASSERT_THAT(result, StatusIs(absl::StatusCode::kInvalidArgument,
                               StartsWith("unterminated quoted string at or near")));
  EXPECT_LE(result.status().message().size(), 210u);
  EXPECT_THAT(result.status().message(), ::testing::Not(HasSubstr("\n")));
}

// --- classification ----------------------------------------------------------

TEST(ParseSqlTest, ClassifiesFromTheTreeNotTheWords) {
  ASSERT_OK_AND_ASSIGN(std::vector<ParsedStatement> parsed,
                       ParseSql("CREATE INDEX CONCURRENTLY i ON t (x);\n"
                                "SELECT 'VACUUM';\n"
                                "/* VACUUM */ ANALYZE t;\n"
                                "END;\n"
                                "ROLLBACK TO SAVEPOINT s;\n"
                                "ALTER TYPE mood ADD VALUE 'ok'",
                                1));
  ASSERT_THAT(parsed, SizeIs(6));
  EXPECT_EQ(parsed[0].node_type, "IndexStmt");
  EXPECT_THAT(parsed[0].transaction_problem,
              Optional(StartsWith("CREATE INDEX CONCURRENTLY cannot run inside a transaction")));
  EXPECT_EQ(parsed[1].transaction_problem, std::nullopt);
  EXPECT_EQ(parsed[2].node_type, "VacuumStmt");
  EXPECT_EQ(parsed[2].transaction_problem, std::nullopt);  // ANALYZE runs in a transaction
  EXPECT_THAT(parsed[3].transaction_problem, Optional(StartsWith("END would end the transaction")));
  EXPECT_EQ(parsed[4].transaction_problem, std::nullopt);
  // PostgreSQL 12+ runs ADD VALUE in a transaction (the new value cannot be
  // used before it commits; lint's enum-add-value rule warns about that).
  EXPECT_EQ(parsed[5].node_type, "AlterEnumStmt");
  EXPECT_EQ(parsed[5].transaction_problem, std::nullopt);
}

TEST(ParseSqlTest, LargeStatementIsCheckedButNotExported) {
  // 1+1+...+1 nests one tree level per term: exporting the tree of a large
  // one would recurse past any stack, so it is classified by keywords.
  std::string deep = "SELECT 1";
  while (deep.size() <= kMaxAnalysedStatementBytes) {
    deep += "+1";
  }
  std::string big = "VACUUM /*";
  big.append(kMaxAnalysedStatementBytes, 'x');
  big += "*/ t";
  ASSERT_OK_AND_ASSIGN(std::vector<ParsedStatement> parsed,
                       ParseSql(absl::StrCat(deep, ";\n", big, ";\nSELECT 1+1+1"), 1));
  ASSERT_THAT(parsed, SizeIs(3));
  EXPECT_EQ(parsed[0].tree_json, "");
  EXPECT_EQ(parsed[0].node_type, "");
  EXPECT_THAT(parsed[1].transaction_problem, Optional(StartsWith("VACUUM cannot run")));
  EXPECT_EQ(parsed[2].node_type, "SelectStmt");

  // The largest analysed statement of the deepest kind exports fine.
  std::string limit = "SELECT 1";
  while (limit.size() + 2 <= kMaxAnalysedStatementBytes) {
    limit += "+1";
  }
  ASSERT_OK_AND_ASSIGN(parsed, ParseSql(limit, 1));
  EXPECT_EQ(parsed[0].node_type, "SelectStmt");
}

TEST(ParseSqlTest, ManyStatementsNumberLinesLinearly) {
  std::string sql;
  constexpr int kStatements = 20000;
  for (int i = 0; i < kStatements; ++i) {
    absl::StrAppend(&sql, "INSERT INTO t VALUES (", i, ", 'a;b', $$x;y$$); -- c;\n");
  }
  ASSERT_OK_AND_ASSIGN(std::vector<ParsedStatement> parsed, ParseSql(sql, 1));
  ASSERT_THAT(parsed, SizeIs(kStatements));
  EXPECT_EQ(parsed.back().statement.line, kStatements);
  EXPECT_EQ(parsed.back().statement.text,
            absl::StrCat("INSERT INTO t VALUES (", kStatements - 1, ", 'a;b', $$x;y$$)"));
}

// --- differential: parser and splitter on every SQL corpus of the repository --

// Inputs the two front ends treat differently on purpose, by file name, with
// the reason. Any other disagreement fails the test.
const std::map<std::string, std::string>& ExplainedDisagreements() {
  static const auto* const kExplained = new std::map<std::string, std::string>{
      {"numbers",
       "PostgreSQL 16's numeric literals (0x1F, 1_000): PostgreSQL 15 rejects them with "
       "\"trailing junk after numeric literal\"; the splitter does not check syntax (a "
       "revision in newer syntax sets `-- parse: false`)"},
  };
  return *kExplained;
}

std::vector<std::filesystem::path> CorpusFiles() {
  namespace fs = std::filesystem;
  const fs::path root = SCHEMAD_SOURCE_DIR;
  std::vector<fs::path> files;
  for (const char* dir : {"migrations", "deploy", "tests/fuzz/corpus/sql_splitter_fuzz",
                          "tests/fuzz/corpus/revision_file_fuzz"}) {
    for (const fs::directory_entry& entry : fs::recursive_directory_iterator(root / dir)) {
      const fs::path& path = entry.path();
      if (entry.is_regular_file() &&
          (path.extension() == ".sql" || absl::StrContains(path.string(), "/corpus/"))) {
        files.push_back(path);
      }
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

// How ParseDepth::kClassify disagrees with kTrees on `sql` (texts, lines,
// transaction classification), or "".
std::string DepthDisagreement(const std::string& sql) {
  const absl::StatusOr<std::vector<ParsedStatement>> trees = ParseSql(sql, 1, ParseDepth::kTrees);
  const absl::StatusOr<std::vector<ParsedStatement>> classified =
      ParseSql(sql, 1, ParseDepth::kClassify);
  if (trees.ok() != classified.ok()) {
    return absl::StrCat("trees: ", trees.status().ToString(),
                        "; classify: ", classified.status().ToString());
  }
  if (!trees.ok()) {
    return "";
  }
  if (trees->size() != classified->size()) {
    return absl::StrCat(trees->size(), " statements with trees, ", classified->size(),
                        " classified");
  }
  for (size_t i = 0; i < trees->size(); ++i) {
    const ParsedStatement& a = (*trees)[i];
    const ParsedStatement& b = (*classified)[i];
    if (a.statement.text != b.statement.text || a.statement.line != b.statement.line ||
        a.offset != b.offset || a.transaction_problem != b.transaction_problem ||
        !b.tree_json.empty() || !b.node_type.empty()) {
      return absl::StrCat("statement ", i, " '", a.statement.text, "': trees say '",
                          a.transaction_problem.value_or("ok"), "', classify says '",
                          b.transaction_problem.value_or("ok"), "' (tree '", b.tree_json, "')");
    }
  }
  return "";
}

// How the two front ends disagree on `sql`, or "" when they agree on every
// statement's text, line and transaction classification (and the parser's
// two depths agree with each other).
std::string Disagreement(const std::string& sql) {
  if (std::string depths = DepthDisagreement(sql); !depths.empty()) {
    return absl::StrCat("parse depths: ", depths);
  }
  const absl::StatusOr<std::vector<SqlStatement>> split = SplitSql(sql, 1);
  const absl::StatusOr<std::vector<ParsedStatement>> parsed = ParseSql(sql, 1);
  if (split.ok() != parsed.ok()) {
    return absl::StrCat("splitter: ", split.status().ToString(),
                        "; parser: ", parsed.status().ToString());
  }
  if (!split.ok()) {
    return "";  // both reject it
  }
  if (split->size() != parsed->size()) {
    return absl::StrCat(split->size(), " statements split, ", parsed->size(), " parsed");
  }
  for (size_t i = 0; i < split->size(); ++i) {
    const SqlStatement& a = (*split)[i];
    const ParsedStatement& b = (*parsed)[i];
    if (a.text != b.statement.text || a.line != b.statement.line) {
      return absl::StrCat("statement ", i, ": split line ", a.line, " '", a.text, "', parsed line ",
                          b.statement.line, " '", b.statement.text, "'");
    }
    if (KeywordTransactionProblem(a.text) != b.transaction_problem) {
      return absl::StrCat("statement ", i, " '", a.text, "': keywords say '",
                          KeywordTransactionProblem(a.text).value_or("ok"), "', tree says '",
                          b.transaction_problem.value_or("ok"), "'");
    }
  }
  return "";
}

TEST(ParserDifferentialTest, AgreesWithTheSplitterOnEveryCorpusOrTheDifferenceIsExplained) {
  const std::vector<std::filesystem::path> files = CorpusFiles();
  ASSERT_GE(files.size(), 50u) << "corpus not found under " << SCHEMAD_SOURCE_DIR;
  int agreed = 0;
  for (const std::filesystem::path& path : files) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream content;
    content << in.rdbuf();
    std::string sql = content.str();
    if (absl::StartsWith(sql, "\xEF\xBB\xBF")) {
      sql.erase(0, 3);  // a byte order mark, which ParseRevisionFile removes first
    }
    const std::string why = Disagreement(sql);
    const std::string name = path.filename().string();
    const auto explained = ExplainedDisagreements().find(name);
    if (why.empty()) {
      ++agreed;
      EXPECT_EQ(explained, ExplainedDisagreements().end()) << name << " agrees now";
    } else {
      EXPECT_NE(explained, ExplainedDisagreements().end()) << path << ": " << why;
    }
  }
  std::cout << agreed << " of " << files.size() << " corpus files agree\n";
}

// Loading a revision parses a statement on its own only when it holds one of
// the words a statement that cannot run in a transaction must hold; in any
// case, any spelling.
TEST(ParseSqlTest, ClassifyDepthFindsEveryProblemTheTreeFinds) {
  const std::vector<std::string> statements = {
      "create index concurrently i on t (x)",
      "Create Unique Index Concurrently i on t (x)",
      "drop index concurrently i",
      "reindex table concurrently t",
      "reindex schema s",
      "reindex system d",
      "vacuum t",
      "VACUUM (ANALYZE) t",
      "analyze t",
      "create database d",
      "drop database d",
      "create tablespace s location '/x'",
      "drop tablespace s",
      "alter system set work_mem = '1MB'",
      "alter database d set tablespace s",
      "alter database d set work_mem = '1MB'",
      "alter table t detach partition p concurrently",
      "cluster",
      "cluster t using i",
      "discard all",
      "discard plans",
      "begin",
      "start transaction",
      "commit",
      "end",
      "abort",
      "rollback",
      "prepare transaction 'x'",
      "commit prepared 'x'",
      "rollback prepared 'x'",
      "savepoint s",
      "select 'commit', \"vacuum\" from system_tables",
      "create table concurrently_log (x int)",
      "select case when true then 1 end",
  };
  for (const std::string& statement : statements) {
    EXPECT_EQ(DepthDisagreement(statement), "") << statement;
  }
  ASSERT_OK_AND_ASSIGN(std::vector<ParsedStatement> parsed,
                       ParseSql("Vacuum t; create table t (x int)", 1, ParseDepth::kClassify));
  ASSERT_THAT(parsed, SizeIs(2));
  EXPECT_THAT(parsed[0].transaction_problem, Optional(StartsWith("VACUUM cannot run")));
  EXPECT_EQ(parsed[0].tree_json, "");
  EXPECT_EQ(parsed[1].transaction_problem, std::nullopt);
}

// Every statement of the transactional-classification table, both ways.
TEST(ParserDifferentialTest, SplitterCasesClassifyTheSame) {
  for (const SplitCase& c : Pg15SplitCases()) {
    EXPECT_EQ(Disagreement(c.sql), "") << c.name;
  }
}

}  // namespace
}  // namespace schemad::engine
