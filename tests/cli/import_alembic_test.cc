// import-alembic's C++ half without Alembic (client/cli/import_alembic.h):
// the driver's answers checked (every malformed answer a clear error),
// revisions converted (transaction control, irreversible downgrades, the
// review mark), files written all or nothing; and the verb run in-process
// with a stand-in "python" printing a bad answer, which must write nothing.
// The real driver with real Alembic is tests/cli/import_alembic_test.sh.
#include "client/cli/import_alembic.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "client/cli/commands.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/engine/migration_set_config.h"
#include "service/engine/revision_file.h"
#include "tests/testing/status_matchers.h"

namespace schemad::cli::import_alembic {
namespace {

namespace fs = std::filesystem;
using ::schemad::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// A render answer for revisions given as JSON objects (the rest defaulted).
std::string Answer(const std::string& revisions, const std::string& heads = R"(["b1"])") {
  return absl::StrCat(
      R"({"protocol": 1, "alembic": "1.8.1", "sqlalchemy": "1.4.46", "python": "/usr/bin/python3",)",
      R"( "script_location": "alembic", "version_table": "alembic_version",)",
      R"( "transaction_per_migration": false, "heads": )", heads, R"(, "revisions": [)", revisions,
      "]}");
}

std::string Revision(
    const std::string& id, const std::string& down, const std::string& up_sql,
    const std::string& down_step = R"({"sql": "DROP TABLE t;\n", "obtained": "offline"})",
    const std::string& extra = "") {
  return absl::StrCat(R"({"id": ")", id, R"(", "down_revisions": )", down,
                      R"(, "branch_labels": [], "depends_on": [], "message": "Step )", id,
                      R"(", "create_date": "2025-11-03T10:00:00", "path": "alembic/versions/)", id,
                      R"(_step.py", "upgrade": {"sql": )", up_sql,
                      R"(, "obtained": "offline"}, "downgrade": )", down_step,
                      R"(, "warnings": [])", extra, "}");
}

const std::string kA1 = Revision("a1", "[]", R"("CREATE TABLE t (x int);\n")");
const std::string kB1 = Revision("b1", R"(["a1"])", R"("ALTER TABLE t ADD y int;\n")");

TEST(ParseRenderAnswerTest, ReadsTheProject) {
  ASSERT_OK_AND_ASSIGN(DriverProject project, ParseRenderAnswer(Answer(kA1 + "," + kB1)));
  EXPECT_EQ(project.alembic, "1.8.1");
  EXPECT_EQ(project.version_table, "alembic_version");
  EXPECT_FALSE(project.transaction_per_migration);
  EXPECT_THAT(project.heads, ElementsAre("b1"));
  ASSERT_EQ(project.revisions.size(), 2u);
  const DriverRevision& b1 = project.revisions[1];
  EXPECT_EQ(b1.id, "b1");
  EXPECT_THAT(b1.down_revisions, ElementsAre("a1"));
  EXPECT_EQ(b1.message, "Step b1");
  EXPECT_EQ(b1.create_date, "2025-11-03T10:00:00");
  EXPECT_EQ(b1.path, "alembic/versions/b1_step.py");
  EXPECT_EQ(b1.upgrade.obtained, "offline");
  EXPECT_EQ(b1.upgrade.sql, "ALTER TABLE t ADD y int;\n");
  EXPECT_EQ(b1.downgrade.sql, "DROP TABLE t;\n");
}

TEST(ParseRenderAnswerTest, MalformedAnswersAreClearErrors) {
  const auto internal = [](const std::string& text, const std::string& what) {
    EXPECT_THAT(ParseRenderAnswer(text),
                StatusIs(absl::StatusCode::kInternal,
                         AllOf(HasSubstr("the import-alembic driver's answer"), HasSubstr(what))))
        << text;
  };
  internal("", "it is not JSON (it is empty)");
  internal("Traceback (most recent call last):", "it is not JSON: Traceback");
  internal("[1, 2]", "it is not a JSON object");
  internal(R"({"revisions": []})", "\"protocol\": 1");
  internal(R"({"protocol": 2})", "\"protocol\": 1");
  internal(absl::StrReplaceAll(Answer(kA1 + "," + kB1), {{R"("heads": ["b1"])", R"("heads": 3)"}}),
           "\"heads\" is not a list");
  internal(Answer(kA1 + "," + kA1, R"(["a1"])"),
           "for revision a1 does not check out: the "
           "revision is listed twice");
  internal(Answer(kB1 + "," + kA1),
           "for revision b1 does not check out: its down revision a1 is "
           "not listed before it");
  internal(Answer(Revision("a1", "[]", "null")),
           "for revision a1 does not check out: \"upgrade\" "
           "offline has no SQL string");
  internal(
      Answer(Revision("a1", "[]", R"("SELECT 1;")", R"({"sql": null, "obtained": "somehow"})")),
      "\"downgrade\" was obtained 'somehow'");
  internal(Answer(Revision("a1", "[]", R"("SELECT 1;")",
                           R"({"sql": null, "obtained": "irreversible"})")),
           "no \"reason\"");
  internal(Answer(kA1, R"(["zz"])"), "its head zz is not one of its revisions");
  internal(absl::StrReplaceAll(Answer(kA1), {{R"("message": "Step a1")", R"("message": 7)"}}),
           "\"message\" is not a string");
}

TEST(ParseRenderAnswerTest, TheDriversErrorsNameTheRevision) {
  EXPECT_THAT(
      ParseRenderAnswer(
          R"({"protocol": 1, "error": {"kind": "env", "message": "env.py failed: ImportError",)"
          R"( "revision": "a1", "path": "alembic/versions/a1.py"}})"),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               "revision a1 (alembic/versions/a1.py): env.py failed: ImportError"));
  EXPECT_THAT(ParseRenderAnswer(
                  R"({"protocol": 1, "error": {"kind": "no_alembic", "message": "no alembic"}})"),
              StatusIs(absl::StatusCode::kFailedPrecondition, "no alembic"));
  EXPECT_THAT(
      ParseRenderAnswer(R"({"protocol": 1, "error": {"kind": "driver", "message": "KeyError"}})"),
      StatusIs(absl::StatusCode::kInternal, HasSubstr("driver failed: KeyError")));
}

TEST(ParseRenderAnswerTest, NamesSchemadCannotTakeAreRefusedNamingTheFile) {
  EXPECT_THAT(ParseRenderAnswer(Answer(Revision("a-1", "[]", R"("SELECT 1;")"), R"(["a-1"])")),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("alembic/versions/a-1_step.py: revision id 'a-1'"),
                             HasSubstr("rename it in the Alembic project"))));
  EXPECT_THAT(
      ParseRenderAnswer(Answer(
          absl::StrReplaceAll(kA1, {{R"("branch_labels": [])", R"("branch_labels": ["heads"])"}}),
          R"(["a1"])")),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr("branch label 'heads' cannot be one")));
}

TEST(MergeCaptureAnswerTest, KeepsWhyTheStepWasNotOffline) {
  ASSERT_OK_AND_ASSIGN(DriverProject project, ParseRenderAnswer(Answer(kA1, R"(["a1"])")));
  DriverRevision r = project.revisions[0];
  r.upgrade = {std::nullopt, "needs_online", "AttributeError: x"};
  r.downgrade = {std::nullopt, "needs_online", "AttributeError: y"};
  ASSERT_OK(MergeCaptureAnswer(
      R"({"protocol": 1, "upgrade": {"sql": "UPDATE t SET x = 1;", "obtained": "captured"},)"
      R"( "downgrade": {"sql": null, "obtained": "irreversible", "reason": "raises"}})",
      {"upgrade", "downgrade"}, r));
  EXPECT_EQ(r.upgrade.obtained, "captured");
  EXPECT_EQ(r.upgrade.sql, "UPDATE t SET x = 1;");
  EXPECT_EQ(r.upgrade.detail, "AttributeError: x");
  EXPECT_EQ(r.downgrade.obtained, "irreversible");
  EXPECT_EQ(r.downgrade.detail, "raises");
  EXPECT_THAT(MergeCaptureAnswer(R"({"protocol": 1})", {"upgrade"}, r),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("\"upgrade\" is not an object")));
}

DriverRevision Step(const std::string& id, const std::string& up, const std::string& down) {
  DriverRevision r;
  r.id = id;
  r.path = absl::StrCat("alembic/versions/", id, "_step.py");
  r.message = "Step";
  r.upgrade = {up, "offline", ""};
  r.downgrade = {down, "offline", ""};
  return r;
}

TEST(ConvertRevisionTest, CommitMakesTheRevisionNonTransactional) {
  ASSERT_OK_AND_ASSIGN(
      ImportedRevision r,
      ConvertRevision(Step("b2", "COMMIT;\n\nCREATE INDEX CONCURRENTLY i ON t (x);\n\nBEGIN;\n",
                           "COMMIT;\n\nDROP INDEX CONCURRENTLY i;\n")));
  EXPECT_TRUE(r.commits);
  EXPECT_FALSE(r.spec.transactional);
  EXPECT_EQ(r.file_name, "b2_step.sql");
  ASSERT_OK_AND_ASSIGN(engine::Revision parsed,
                       engine::ParseRevisionFile(r.file_name, engine::RenderRevisionFile(r.spec)));
  EXPECT_FALSE(parsed.transactional);
  ASSERT_EQ(parsed.upgrade->statements.size(), 1u);
  EXPECT_EQ(parsed.upgrade->statements[0].text, "CREATE INDEX CONCURRENTLY i ON t (x)");
  ASSERT_EQ(parsed.downgrade->statements.size(), 1u);
  EXPECT_EQ(parsed.downgrade->statements[0].text, "DROP INDEX CONCURRENTLY i");
}

TEST(ConvertRevisionTest, KeepsPercentSignsAndStringsWithSemicolons) {
  ASSERT_OK_AND_ASSIGN(
      ImportedRevision r,
      ConvertRevision(Step("a1", "COMMENT ON TABLE t IS '100% sure; really';\n",
                           "UPDATE t SET x = NULL WHERE y LIKE '%@example.com';\n")));
  EXPECT_TRUE(r.spec.transactional);
  EXPECT_THAT(r.spec.upgrade_sql, HasSubstr("'100% sure; really'"));
  EXPECT_THAT(r.spec.downgrade_sql, HasSubstr("LIKE '%@example.com'"));
}

TEST(ConvertRevisionTest, IrreversibleCapturedAndEmptySteps) {
  DriverRevision step = Step("c1", "", "");
  step.upgrade = {"SELECT id FROM t;\n\nUPDATE t SET x = 1 WHERE id = 1;\n", "captured",
                  "AttributeError: 'NoneType' object has no attribute 'fetchall'"};
  step.downgrade = {std::nullopt, "irreversible", "downgrade() raises NotImplementedError: no"};
  step.down_revisions = {"a1", "b2"};
  step.branch_labels = {"data"};
  step.depends_on = {"x1"};
  ASSERT_OK_AND_ASSIGN(ImportedRevision r, ConvertRevision(step));
  EXPECT_TRUE(r.review());
  EXPECT_EQ(r.downgrade, "none");
  const std::string file = engine::RenderRevisionFile(r.spec);
  EXPECT_THAT(file, HasSubstr("-- +upgrade\n-- captured on an empty database: review."));
  EXPECT_THAT(file, HasSubstr("AttributeError: 'NoneType' object has no attribute 'fetchall'"));
  EXPECT_THAT(file, Not(HasSubstr("+downgrade")));
  ASSERT_OK_AND_ASSIGN(engine::Revision parsed, engine::ParseRevisionFile("c1.sql", file));
  EXPECT_FALSE(parsed.reversible());
  EXPECT_THAT(parsed.revises, ElementsAre("a1", "b2"));
  EXPECT_THAT(parsed.branch_labels, ElementsAre("data"));
  EXPECT_THAT(parsed.depends_on, ElementsAre("x1"));
  EXPECT_EQ(parsed.upgrade->statements.size(), 2u);

  // A merge that runs no SQL: a comment says so (not a placeholder to fill in).
  ASSERT_OK_AND_ASSIGN(ImportedRevision merge, ConvertRevision(Step("m1", "\n", "")));
  EXPECT_THAT(engine::RenderRevisionFile(merge.spec),
              AllOf(HasSubstr("-- Alembic's upgrade() runs no SQL"),
                    HasSubstr("-- Alembic's downgrade() runs no SQL")));
}

TEST(ConvertRevisionTest, NotesNeverReadAsHeaderKeys) {
  DriverRevision step = Step("n1", "SELECT 1;", "");
  // A reason whose words, wrapped, would start a line with `word:`.
  step.downgrade = {std::nullopt, "irreversible",
                    std::string(60, 'x') + " NotImplementedError: revision: message: y"};
  ASSERT_OK_AND_ASSIGN(ImportedRevision r, ConvertRevision(step));
  EXPECT_OK(engine::ParseRevisionFile("n1.sql", engine::RenderRevisionFile(r.spec)).status());
}

TEST(ConvertRevisionTest, SqlThatDoesNotParseNamesTheRevision) {
  EXPECT_THAT(ConvertRevision(Step("a1", "SELEC 1;", "")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("revision a1 (alembic/versions/a1_step.py): the upgrade SQL "
                                       "Alembic rendered does not parse"),
                             HasSubstr("SELEC"))));
}

class WriteImportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device random;
    root_ = fs::temp_directory_path() /
            absl::StrCat("import_alembic_test_", getpid(), "_", random(), "_", random());
    fs::create_directories(root_);
    ASSERT_OK_AND_ASSIGN(project_, ParseRenderAnswer(Answer(kA1 + "," + kB1)));
    for (const DriverRevision& r : project_.revisions) {
      ASSERT_OK_AND_ASSIGN(ImportedRevision converted, ConvertRevision(r));
      revisions_.push_back(std::move(converted));
    }
  }
  void TearDown() override { fs::remove_all(root_); }

  std::vector<std::string> Entries(const fs::path& dir) {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir)) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  fs::path root_;
  DriverProject project_;
  std::vector<ImportedRevision> revisions_;
};

TEST_F(WriteImportTest, WritesFilesThatLoadAsAlembicsGraph) {
  const fs::path out = root_ / "new" / "migrations";
  ASSERT_OK(WriteImport(revisions_, project_, out.string(), false));
  EXPECT_THAT(Entries(out), ElementsAre("a1_step.sql", "b1_step.sql", "schemad.conf"));
  EXPECT_THAT(Entries(root_ / "new"), ElementsAre("migrations"));  // no staging left
  ASSERT_OK_AND_ASSIGN(std::vector<engine::Revision> loaded,
                       engine::LoadRevisionDirectory(out.string()));
  ASSERT_EQ(loaded.size(), 2u);
  EXPECT_THAT(loaded[1].revises, ElementsAre("a1"));
  // env.py's scope (Alembic's default here) becomes the set's.
  ASSERT_OK_AND_ASSIGN(engine::MigrationSetConfig declared,
                       engine::LoadMigrationSetConfig(out.string()));
  EXPECT_EQ(declared.transaction, engine::TransactionScope::kPerCommand);
}

TEST_F(WriteImportTest, TransactionPerMigrationBecomesThePerRevisionScope) {
  project_.transaction_per_migration = true;
  const fs::path out = root_ / "m";
  ASSERT_OK(WriteImport(revisions_, project_, out.string(), false));
  ASSERT_OK_AND_ASSIGN(engine::MigrationSetConfig declared,
                       engine::LoadMigrationSetConfig(out.string()));
  EXPECT_EQ(declared.transaction, engine::TransactionScope::kPerRevision);
}

TEST_F(WriteImportTest, ExistingFilesNeedForceAndAreThenReplaced) {
  const fs::path out = root_ / "m";
  fs::create_directories(out);
  std::ofstream(out / "old.sql") << "-- revision: old\n\n-- +upgrade\nSELECT 1;\n";
  std::ofstream(out / "README.md") << "kept\n";
  const absl::Status refused = WriteImport(revisions_, project_, out.string(), false);
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kInvalidArgument,
                                HasSubstr("already holds revision files (old.sql)")));
  EXPECT_EQ(ExitCodeFor(refused), kExitUsage);
  EXPECT_THAT(Entries(out), ElementsAre("README.md", "old.sql"));
  ASSERT_OK(WriteImport(revisions_, project_, out.string(), true));
  EXPECT_THAT(Entries(out), ElementsAre("README.md", "a1_step.sql", "b1_step.sql", "schemad.conf"));
  // A schemad.conf of its own needs --force too.
  fs::remove(out / "a1_step.sql");
  fs::remove(out / "b1_step.sql");
  EXPECT_THAT(WriteImport(revisions_, project_, out.string(), false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("(schemad.conf)")));
}

TEST_F(WriteImportTest, AGraphThatDiffersFromAlembicsWritesNothing) {
  project_.heads = {"a1"};  // Alembic would say so if b1 did not revise a1
  const fs::path out = root_ / "m";
  const absl::Status status = WriteImport(revisions_, project_, out.string(), false);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInternal,
                               HasSubstr("the written files' heads are [b1], Alembic's [a1]")));
  EXPECT_FALSE(fs::exists(out));
  EXPECT_THAT(Entries(root_), IsEmpty());

  project_.heads = {"b1"};
  project_.revisions[1].down_revisions = {};
  fs::create_directories(out);
  EXPECT_THAT(
      WriteImport(revisions_, project_, out.string(), false),
      StatusIs(absl::StatusCode::kInternal,
               HasSubstr("b1_step.sql: revision b1 loads with revises [a1], Alembic has []")));
  EXPECT_THAT(Entries(out), IsEmpty());
}

TEST_F(WriteImportTest, TwoAlembicFilesOfOneNameGetTheirIds) {
  revisions_[1].file_name = revisions_[0].file_name;
  const fs::path out = root_ / "m";
  ASSERT_OK(WriteImport(revisions_, project_, out.string(), false));
  EXPECT_THAT(Entries(out), ElementsAre("a1_step.sql", "a1_step_b1.sql", "schemad.conf"));
}

// The verb with a stand-in interpreter that prints `answer` whatever it is
// asked: a broken driver writes nothing and says what was wrong.
class RunImportAlembicTest : public WriteImportTest {
 protected:
  struct Output {
    int code = -1;
    std::string out, err;
  };
  Output Run(const std::string& answer, int exit_code = 0) {
    const fs::path python = root_ / "python";
    std::ofstream(root_ / "answer") << answer;
    std::ofstream(python) << "#!/bin/sh\ncat > /dev/null\ncat '" << (root_ / "answer").string()
                          << "'\necho 'driver log line' >&2\nexit " << exit_code << "\n";
    fs::permissions(python, fs::perms::owner_all);
    std::ofstream(root_ / "alembic.ini") << "[alembic]\nscript_location = alembic\n";
    ImportAlembicOptions options;
    options.config = (root_ / "alembic.ini").string();
    options.out = (root_ / "out").string();
    options.python = python.string();
    GlobalOptions global;
    std::ostringstream out, err;
    Output o;
    o.code = RunImportAlembic(global, options, out, err);
    o.out = out.str();
    o.err = err.str();
    return o;
  }
};

TEST_F(RunImportAlembicTest, BadAnswersWriteNothing) {
  for (const std::string& answer :
       {std::string("not json"), std::string(R"({"protocol": 1, "revisions": [)"),
        Answer(kB1 + "," + kA1)}) {
    const Output o = Run(answer);
    EXPECT_EQ(o.code, kExitFailed) << answer;
    EXPECT_THAT(o.err, HasSubstr("schemactl: error: the import-alembic driver's answer"));
    EXPECT_FALSE(fs::exists(root_ / "out"));
  }
  const Output crashed = Run("", 1);
  EXPECT_EQ(crashed.code, kExitFailed);
  EXPECT_THAT(crashed.err,
              AllOf(HasSubstr("exited 1 without an answer"), HasSubstr("driver log line")));
  EXPECT_FALSE(fs::exists(root_ / "out"));
}

TEST_F(RunImportAlembicTest, AGoodAnswerIsWrittenAndReported) {
  const Output o = Run(Answer(kA1 + "," + kB1));
  ASSERT_EQ(o.code, kExitOk) << o.err;
  EXPECT_THAT(o.out, AllOf(HasSubstr("Imported 2 revisions from alembic into"),
                           HasSubstr("a1_step.sql: offline"), HasSubstr("b1_step.sql: offline"),
                           HasSubstr("so does the migration set (schemad.conf: transaction = "
                                     "per-command)")));
  EXPECT_THAT(Entries(root_ / "out"), ElementsAre("a1_step.sql", "b1_step.sql", "schemad.conf"));
}

TEST_F(RunImportAlembicTest, AStepThatNeedsTheDatabaseNeedsScratchDsn) {
  const Output o = Run(Answer(
      kA1 + "," +
      absl::StrReplaceAll(
          kB1,
          {{R"({"sql": "ALTER TABLE t ADD y int;\n", "obtained": "offline"})",
            R"({"sql": null, "obtained": "needs_online", "error": "AttributeError: fetchall"})"}})));
  EXPECT_EQ(o.code, kExitUsage);
  EXPECT_THAT(o.err, AllOf(HasSubstr("b1 (alembic/versions/b1_step.py) upgrade: AttributeError"),
                           HasSubstr("--scratch-dsn local")));
  EXPECT_FALSE(fs::exists(root_ / "out"));
}

}  // namespace
}  // namespace schemad::cli::import_alembic
