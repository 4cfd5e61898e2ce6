#include "service/engine/lint.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/engine/revision_file.h"
#include "tests/testing/status_matchers.h"

namespace schemad::engine {
namespace {

using ::schemad::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kPath[] = "migrations/x/a1_x.sql";

// A revision file: header lines, then the upgrade SQL (from line 5 on:
// revision, blank, marker... see below) and a downgrade with one statement.
Revision Parse(const std::string& header, const std::string& upgrade,
               const std::string& downgrade = "-- +downgrade\nSELECT 1;\n") {
  absl::StatusOr<Revision> revision = ParseRevisionFile(
      kPath, absl::StrCat("-- revision: a1\n", header, "-- +upgrade\n", upgrade, "\n", downgrade));
  EXPECT_OK(revision);
  return revision.ok() ? *std::move(revision) : Revision{};
}

std::vector<LintFinding> Lint(const std::vector<Revision>& revisions,
                              const LintConfig& config = {}) {
  std::vector<const Revision*> pointers;
  for (const Revision& r : revisions) {
    pointers.push_back(&r);
  }
  return LintRevisions(pointers, config);
}

std::vector<std::string> Rules(const std::vector<LintFinding>& findings) {
  std::vector<std::string> rules;
  for (const LintFinding& f : findings) {
    rules.push_back(f.rule);
  }
  return rules;
}

// The rules that fire on `upgrade` in a revision with a lock_timeout (so
// that missing-lock-timeout stays out of the way unless asked for).
std::vector<std::string> Fired(const std::string& upgrade,
                               const std::string& header = "-- lock_timeout: 5s\n") {
  return Rules(Lint({Parse(header, upgrade)}));
}

struct RuleCase {
  std::string rule;
  std::string fires;  // upgrade SQL that fires the rule
  std::string safe;   // the safe alternative, which does not
  std::string safe_header = "-- lock_timeout: 5s\n";
  std::string fires_header = "-- lock_timeout: 5s\n";
  friend void PrintTo(const RuleCase& c, std::ostream* os) { *os << c.rule; }
};

class LintRuleTest : public ::testing::TestWithParam<RuleCase> {};

TEST_P(LintRuleTest, FiresAndTheSafeAlternativeDoesNot) {
  const RuleCase& c = GetParam();
  EXPECT_THAT(Fired(c.fires, c.fires_header), ::testing::Contains(c.rule)) << c.fires;
  EXPECT_THAT(Fired(c.safe, c.safe_header), ::testing::Not(::testing::Contains(c.rule))) << c.safe;
}

INSTANTIATE_TEST_SUITE_P(
    Rules, LintRuleTest,
    ::testing::ValuesIn(std::vector<RuleCase>{
        {"create-index-not-concurrently", "CREATE INDEX i ON sensor_data (device_id);",
         "CREATE INDEX CONCURRENTLY i ON sensor_data (device_id);",
         "-- transactional: false\n-- lock_timeout: 5s\n"},
        {"create-index-not-concurrently", "CREATE UNIQUE INDEX i ON s.t (x);",
         "CREATE TABLE s.t (x int);\nCREATE UNIQUE INDEX i ON s.t (x);"},
        {"drop-index-not-concurrently", "DROP INDEX ix_quality;",
         "DROP INDEX CONCURRENTLY ix_quality;", "-- transactional: false\n"},
        {"add-column-volatile-default",
         "ALTER TABLE sensor_data ADD COLUMN token uuid DEFAULT gen_random_uuid();",
         "ALTER TABLE sensor_data ADD COLUMN token uuid;\n"
         "ALTER TABLE sensor_data ALTER COLUMN token SET DEFAULT gen_random_uuid();"},
        {"add-column-volatile-default", "ALTER TABLE sensor_data ADD COLUMN n bigserial;",
         "ALTER TABLE sensor_data ADD COLUMN n int DEFAULT 0;"},
        {"add-column-volatile-default",
         "ALTER TABLE t ADD COLUMN d double precision GENERATED ALWAYS AS (x * 2) STORED;",
         "ALTER TABLE t ADD COLUMN at timestamptz DEFAULT now();"},
        {"alter-column-type", "ALTER TABLE sensor_data ALTER COLUMN id TYPE bigint;",
         "ALTER TABLE sensor_data ADD COLUMN id_new bigint;"},
        {"set-not-null", "ALTER TABLE devices ALTER COLUMN location SET NOT NULL;",
         "ALTER TABLE devices ADD CONSTRAINT location_nn CHECK (location IS NOT NULL);\n"
         "ALTER TABLE devices ALTER COLUMN location SET NOT NULL;"},
        {"constraint-without-not-valid",
         "ALTER TABLE sensor_data ADD CONSTRAINT fk FOREIGN KEY (device_id) REFERENCES devices "
         "(device_id);",
         "ALTER TABLE sensor_data ADD CONSTRAINT fk FOREIGN KEY (device_id) REFERENCES devices "
         "(device_id) NOT VALID;"},
        {"constraint-without-not-valid", "ALTER TABLE t ADD CONSTRAINT c CHECK (x > 0);",
         "ALTER TABLE t ADD CONSTRAINT c CHECK (x > 0) NOT VALID;"},
        {"validate-in-same-transaction",
         "ALTER TABLE t ADD CONSTRAINT c CHECK (x > 0) NOT VALID;\n"
         "ALTER TABLE t VALIDATE CONSTRAINT c;",
         "ALTER TABLE t VALIDATE CONSTRAINT c;"},
        {"unique-without-index", "ALTER TABLE devices ADD CONSTRAINT u UNIQUE (device_id);",
         "ALTER TABLE devices ADD CONSTRAINT u UNIQUE USING INDEX ix_devices_device_id;"},
        {"unique-without-index", "ALTER TABLE t ADD PRIMARY KEY (id);",
         "ALTER TABLE t ADD CONSTRAINT pk PRIMARY KEY USING INDEX t_id;"},
        {"drop-table", "DROP TABLE ai_analysis;",
         "CREATE TABLE scratch (x int);\nDROP TABLE scratch;"},
        {"drop-column", "ALTER TABLE sensor_data DROP COLUMN quality;",
         "ALTER TABLE sensor_data ADD COLUMN quality2 float;"},
        {"truncate", "TRUNCATE sensor_data;", "DELETE FROM sensor_data WHERE id < 100;"},
        {"rename-table", "ALTER TABLE devices RENAME TO machines;",
         "CREATE VIEW machines AS SELECT * FROM devices;"},
        {"rename-column", "ALTER TABLE devices RENAME COLUMN location TO site;",
         "ALTER TABLE devices ADD COLUMN site varchar(100);"},
        {"enum-add-value-in-transaction", "ALTER TYPE mood ADD VALUE 'calm';",
         "ALTER TYPE mood ADD VALUE 'calm';", "-- transactional: false\n"},
        {"missing-lock-timeout", "ALTER TABLE sensor_data ADD COLUMN q float;",
         "ALTER TABLE sensor_data ADD COLUMN q float;", "-- lock_timeout: 2s\n", ""},
        {"missing-lock-timeout", "CREATE INDEX i ON t (x);",
         "SET LOCAL lock_timeout = '2s';\nCREATE INDEX i ON t (x);", "", ""},
        {"update-delete-without-where", "UPDATE devices SET device_type = 'ESP32';",
         "UPDATE devices SET device_type = 'ESP32' WHERE device_type IS NULL;"},
        {"update-delete-without-where", "DELETE FROM safety_status;",
         "DELETE FROM safety_status WHERE timestamp < now() - interval '1 year';"},
    }),
    [](const ::testing::TestParamInfo<RuleCase>& test) {
      std::string name = absl::StrCat(test.param.rule, "_", test.index);
      std::replace(name.begin(), name.end(), '-', '_');
      return name;
    });

TEST(LintTest, FindingNamesRuleSeverityRevisionFileLineStatementAndAlternative) {
  const std::vector<LintFinding> findings =
      Lint({Parse("-- lock_timeout: 5s\n", "SELECT 1;\n\nCREATE INDEX i\n  ON sensor_data (x);")});
  ASSERT_EQ(findings.size(), 1u);
  const LintFinding& f = findings[0];
  EXPECT_EQ(f.rule, "create-index-not-concurrently");
  EXPECT_EQ(f.severity, LintSeverity::kError);
  EXPECT_EQ(f.revision, "a1");
  EXPECT_EQ(f.file, kPath);
  EXPECT_EQ(f.line, 6);  // 1 revision, 2 lock_timeout, 3 marker, 4 SELECT, 5 blank, 6
  EXPECT_EQ(f.statement, "CREATE INDEX i\n  ON sensor_data (x)");
  EXPECT_THAT(f.message, HasSubstr("use CREATE INDEX CONCURRENTLY"));
}

TEST(LintTest, RevisionRules) {
  EXPECT_THAT(Rules(Lint({Parse("", "SELECT 1;", "")})), ElementsAre("no-downgrade"));
  const std::vector<LintFinding> noop =
      Lint({Parse("", "UPDATE devices SET device_type = 'ESP32' WHERE device_type IS NULL;",
                  "-- +downgrade\n-- nothing to undo\n")});
  EXPECT_THAT(Rules(noop), ElementsAre("data-migration-noop-downgrade"));
  EXPECT_EQ(noop[0].severity, LintSeverity::kInfo);
  EXPECT_THAT(Rules(Lint({Parse("", "CREATE TABLE t (x int);", "-- +downgrade\n")})), IsEmpty());
  // An upgrade with nothing in it (comments only) is reported, a merge is not.
  const std::vector<LintFinding> empty = Lint({Parse("", "-- TODO", "-- +downgrade\n")});
  EXPECT_THAT(Rules(empty), ElementsAre("empty-upgrade"));
  EXPECT_EQ(empty[0].severity, LintSeverity::kWarning);
  EXPECT_EQ(empty[0].line, 2);  // the `-- +upgrade` marker
  EXPECT_THAT(Rules(Lint({Parse("-- revises: b, c\n", "", "-- +downgrade\n")})), IsEmpty());
}

TEST(LintTest, SetNotNullAfterACheckValidatedInAnEarlierRevision) {
  Revision add = Parse("-- lock_timeout: 5s\n",
                       "ALTER TABLE devices ADD CONSTRAINT nn CHECK (location IS NOT NULL) NOT "
                       "VALID;");
  Revision validate = Parse("-- lock_timeout: 5s\n", "ALTER TABLE devices VALIDATE CONSTRAINT nn;");
  Revision set =
      Parse("-- lock_timeout: 5s\n", "ALTER TABLE devices ALTER COLUMN location SET NOT NULL;");
  EXPECT_THAT(Rules(Lint({add, validate, set})), IsEmpty());
  EXPECT_THAT(Rules(Lint({add, set})), ElementsAre("set-not-null"));
}

TEST(LintTest, SuppressionOnTheLineBefore) {
  EXPECT_THAT(Fired("-- schemad:lint-ignore\nTRUNCATE t;\nTRUNCATE u;"), ElementsAre("truncate"));
  EXPECT_THAT(Fired("-- schemad:lint-ignore truncate, drop-table\nTRUNCATE t;"), IsEmpty());
  EXPECT_THAT(Fired("-- schemad:lint-ignore drop-table\nTRUNCATE t;"), ElementsAre("truncate"));
  // Only the line directly before counts.
  EXPECT_THAT(Fired("-- schemad:lint-ignore\n\nTRUNCATE t;"), ElementsAre("truncate"));
  // A misspelt rule is itself an error, and silences nothing.
  const std::vector<LintFinding> typo =
      Lint({Parse("-- lock_timeout: 5s\n", "-- schemad:lint-ignore trunkate\nTRUNCATE t;")});
  EXPECT_THAT(Rules(typo), ElementsAre("truncate", "lint-ignore-unknown-rule"));
  EXPECT_EQ(typo[1].severity, LintSeverity::kError);
  EXPECT_EQ(typo[1].line, 4);
  EXPECT_THAT(typo[1].message, HasSubstr("'trunkate'"));
}

TEST(LintTest, HeaderSuppressionForTheWholeRevision) {
  EXPECT_THAT(Fired("TRUNCATE t;\nDROP TABLE u;",
                    "-- lock_timeout: 5s\n-- lint_ignore: truncate, drop-table\n"),
              IsEmpty());
  EXPECT_THAT(Fired("TRUNCATE t;", "-- lock_timeout: 5s\n-- lint_ignore: trunkate\n"),
              ElementsAre("truncate", "lint-ignore-unknown-rule"));
}

TEST(LintTest, ConfigSetsSeverities) {
  ASSERT_OK_AND_ASSIGN(LintConfig config, ParseLintConfig("schemad-lint.conf",
                                                          "# plant fleet policy\n"
                                                          "truncate = error\n"
                                                          "  drop-table=off  \n\n"
                                                          "no-downgrade = warning\n"));
  const std::vector<LintFinding> findings =
      Lint({Parse("-- lock_timeout: 5s\n", "TRUNCATE t;\nDROP TABLE u;", "")}, config);
  ASSERT_THAT(Rules(findings), ElementsAre("no-downgrade", "truncate"));
  EXPECT_EQ(findings[0].severity, LintSeverity::kWarning);
  EXPECT_EQ(findings[1].severity, LintSeverity::kError);
  EXPECT_TRUE(HasLintErrors(findings));
}

TEST(LintTest, ConfigErrorsNameFileAndLine) {
  EXPECT_THAT(ParseLintConfig("c.conf", "truncate = error\ntrunkate = off\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "c.conf:2: unknown rule 'trunkate' "
                       "(see docs/lint.md)"));
  EXPECT_THAT(ParseLintConfig("c.conf", "truncate = fatal\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("c.conf:1: severity")));
  EXPECT_THAT(ParseLintConfig("c.conf", "truncate\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("c.conf:1: expected")));
  EXPECT_THAT(
      ParseLintConfig("c.conf", "truncate = off\ntruncate = info\n"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("c.conf:2: 'truncate' set twice "
                                                             "(first at line 1)")));
  EXPECT_THAT(ParseLintConfig("c.conf", std::string(70000, '#')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("limit")));
}

TEST(LintTest, UnparsedRevisionIsReportedNotAnalysed) {
  EXPECT_THAT(Fired("TRUNCATE t;", "-- parse: false\n"), ElementsAre("not-analysed"));
}

TEST(LintTest, ModaxLintsCleanAtErrorLevel) {
  ASSERT_OK_AND_ASSIGN(std::vector<Revision> revisions,
                       LoadRevisionDirectory(SCHEMAD_SOURCE_DIR "/migrations/modax"));
  ASSERT_OK_AND_ASSIGN(LintConfig config, LoadLintConfig(SCHEMAD_SOURCE_DIR "/migrations/modax"));
  std::vector<const Revision*> pointers;
  for (const Revision& r : revisions) {
    pointers.push_back(&r);
  }
  const std::vector<LintFinding> findings = LintRevisions(pointers, config);
  for (const LintFinding& f : findings) {
    EXPECT_NE(f.severity, LintSeverity::kError) << f.file << ":" << f.line << ": " << f.message;
  }
}

}  // namespace
}  // namespace schemad::engine
