// schemactl's offline verbs, run in-process on temporary migration
// directories (no database), plus its exit-code mapping, flag parsing and
// progress display.
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/cli/command_util.h"
#include "client/cli/commands.h"
#include "client/cli/output.h"
#include "client/cli/project_config.h"
#include "client/cli/remote_commands.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "service/engine/revision_file.h"
#include "service/engine/revision_graph.h"
#include "tests/testing/ports.h"
#include "tests/testing/status_matchers.h"

namespace schemad::cli {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;

struct Output {
  int code = -1;
  std::string out;
  std::string err;
};

// A revision file. `revises` comma-separated ("" for a root); `down` nullopt:
// irreversible.
std::string RevisionText(const std::string& id, const std::string& revises,
                         const std::string& message, const std::string& extra = "",
                         const std::string& up = "CREATE TABLE t (a int);",
                         const std::optional<std::string>& down = "DROP TABLE t;") {
  std::string text = absl::StrCat("-- revision: ", id, "\n");
  if (!revises.empty()) {
    absl::StrAppend(&text, "-- revises: ", revises, "\n");
  }
  absl::StrAppend(&text, "-- message: ", message, "\n", extra, "\n-- +upgrade\n", up, "\n");
  if (down.has_value()) {
    absl::StrAppend(&text, "\n-- +downgrade\n", *down, "\n");
  }
  return text;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device random;
    dir_ = fs::temp_directory_path() /
           absl::StrCat("schemactl_test_", getpid(), "_", random(), "_", random());
    fs::create_directories(dir_);
    global_.dir = dir_.string();
    global_.who = "tester@test";
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
  }
  void WriteRevision(const std::string& id, const std::string& revises, const std::string& message,
                     const std::string& extra = "") {
    Write(id + "_rev.sql", RevisionText(id, revises, message, extra));
  }
  // a1 -> b2 -> c3 (linear).
  void WriteLinear() {
    WriteRevision("a1a1a1a1a1a1", "", "first");
    WriteRevision("b2b2b2b2b2b2", "a1a1a1a1a1a1", "second");
    WriteRevision("c3c3c3c3c3c3", "b2b2b2b2b2b2", "third");
  }
  // a1 -> {b2 (label feature), c3}: two heads.
  void WriteTwoHeads() {
    WriteRevision("a1a1a1a1a1a1", "", "root");
    WriteRevision("b2b2b2b2b2b2", "a1a1a1a1a1a1", "feature work", "-- branch_labels: feature\n");
    WriteRevision("c3c3c3c3c3c3", "a1a1a1a1a1a1", "main work");
  }
  std::vector<std::string> SqlFiles() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir_)) {
      if (entry.path().extension() == ".sql") {
        names.push_back(entry.path().filename().string());
      }
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  template <typename Options, typename Fn>
  Output Run(Fn fn, const Options& options) {
    std::ostringstream out, err;
    Output result;
    result.code = fn(global_, options, out, err);
    result.out = out.str();
    result.err = err.str();
    return result;
  }
  Output Heads(HeadsOptions options = {}) { return Run(RunHeads, options); }
  Output Branches(BranchesOptions options = {}) { return Run(RunBranches, options); }
  Output History(HistoryOptions options = {}) { return Run(RunHistory, options); }
  Output Show(const std::string& revision) { return Run(RunShow, ShowOptions{revision}); }
  Output Check(CheckOptions options = {}) { return Run(RunCheck, options); }
  Output Revision(RevisionOptions options) { return Run(RunRevision, options); }
  Output Merge(MergeOptions options) { return Run(RunMerge, options); }
  Output Plan(PlanOptions options) { return Run(RunPlan, options); }

  nlohmann::json Json(const std::string& text) {
    nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(json.is_discarded()) << text;
    return json;
  }

  fs::path dir_;
  GlobalOptions global_;
};

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

// ------------------------------------------------------------------ heads

TEST_F(CliTest, HeadsOfLinearGraph) {
  WriteLinear();
  Output r = Heads();
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "c3c3c3c3c3c3 (head)\n");
  EXPECT_EQ(r.err, "");
}

TEST_F(CliTest, HeadsShowsEveryHeadWithLabels) {
  WriteTwoHeads();
  Output r = Heads();
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_THAT(Lines(r.out), ElementsAre("b2b2b2b2b2b2 (feature) (head)", "c3c3c3c3c3c3 (head)"));
}

TEST_F(CliTest, HeadsVerboseAndJson) {
  WriteLinear();
  Output verbose = Heads(HeadsOptions{true});
  EXPECT_THAT(verbose.out,
              AllOf(StartsWith("Rev: c3c3c3c3c3c3 (head)\n"), HasSubstr("Parent: b2b2b2b2b2b2\n"),
                    HasSubstr("Path: "), HasSubstr("    third\n")));
  global_.json = true;
  Output json = Heads();
  ASSERT_EQ(json.code, kExitOk);
  nlohmann::json parsed = Json(json.out);
  ASSERT_EQ(parsed["heads"].size(), 1u);
  EXPECT_EQ(parsed["heads"][0]["revision"], "c3c3c3c3c3c3");
  EXPECT_EQ(parsed["heads"][0]["revises"], nlohmann::json::array({"b2b2b2b2b2b2"}));
  EXPECT_EQ(parsed["heads"][0]["transactional"], true);
}

TEST_F(CliTest, EmptyDirectoryHasNoHeads) {
  Output r = Heads();
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_EQ(r.out, "");
}

TEST_F(CliTest, MissingDirectoryFails) {
  global_.dir = (dir_ / "nope").string();
  Output r = Heads();
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_THAT(r.err,
              AllOf(StartsWith("schemactl: error: "), HasSubstr("nope"), HasSubstr("--dir")));
}

TEST_F(CliTest, BrokenFileNamesFileAndLine) {
  WriteRevision("a1a1a1a1a1a1", "", "first");
  Write("b2_bad.sql",
        "-- revision: b2b2b2b2b2b2\n-- revises: a1a1a1a1a1a1\n-- colour: red\n"
        "-- +upgrade\nSELECT 1;\n");
  Output r = Heads();
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_THAT(r.err, HasSubstr("b2_bad.sql:3"));
}

// Issue 9, defect 5: invalid UTF-8 in a header passed `check` and aborted
// `--json heads` (an uncaught JSON exception, exit 134).
TEST_F(CliTest, InvalidUtf8HeaderIsALoadErrorEvenWithJson) {
  WriteRevision("a1a1a1a1a1a1", "", "bad \xff");
  global_.json = true;
  for (const Output& r : {Heads(), Check()}) {
    EXPECT_EQ(r.code, kExitFailed) << r.err;
    EXPECT_THAT(r.err, HasSubstr("a1a1a1a1a1a1_rev.sql:2: invalid UTF-8 (byte 0xFF at column 17)"));
    nlohmann::json json = Json(r.out);
    EXPECT_EQ(json["ok"], false);
    EXPECT_THAT(json["error"]["message"].get<std::string>(), HasSubstr("must be UTF-8"));
  }
}

TEST_F(CliTest, RevisionWithInvalidUtf8MessageIsRefused) {
  RevisionOptions options;
  options.message = "caf\xe9";
  Output r = Revision(options);
  EXPECT_EQ(r.code, kExitUsage) << r.err;
  EXPECT_THAT(r.err, HasSubstr("invalid UTF-8"));
  EXPECT_THAT(SqlFiles(), IsEmpty());
}

// --------------------------------------------------------------- branches

TEST_F(CliTest, BranchesListsBranchPointsAndChildren) {
  WriteTwoHeads();
  Output r = Branches();
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_THAT(Lines(r.out), ElementsAre("a1a1a1a1a1a1 (branchpoint)",
                                        "             -> b2b2b2b2b2b2 (feature) (head)",
                                        "             -> c3c3c3c3c3c3 (head)"));
  global_.json = true;
  nlohmann::json json = Json(Branches().out);
  ASSERT_EQ(json["branches"].size(), 1u);
  EXPECT_EQ(json["branches"][0]["revision"], "a1a1a1a1a1a1");
  EXPECT_EQ(json["branches"][0]["next"], nlohmann::json::array({"b2b2b2b2b2b2", "c3c3c3c3c3c3"}));
}

TEST_F(CliTest, BranchesOfLinearGraphIsEmpty) {
  WriteLinear();
  Output r = Branches();
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_EQ(r.out, "");
}

// ---------------------------------------------------------------- history

TEST_F(CliTest, HistoryIsNewestFirstInAlembicFormat) {
  WriteLinear();
  Output r = History();
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(Lines(r.out),
              ElementsAre("b2b2b2b2b2b2 -> c3c3c3c3c3c3 (head), third",
                          "a1a1a1a1a1a1 -> b2b2b2b2b2b2, second", "<base> -> a1a1a1a1a1a1, first"));
}

TEST_F(CliTest, HistoryMarksBranchAndMergePointsAndDependencies) {
  WriteTwoHeads();
  WriteRevision("d4d4d4d4d4d4", "b2b2b2b2b2b2,c3c3c3c3c3c3", "merge");
  WriteRevision("e5e5e5e5e5e5", "", "other root", "-- depends_on: a1a1a1a1a1a1\n");
  Output r = History();
  ASSERT_EQ(r.code, kExitOk) << r.err;
  const std::vector<std::string> lines = Lines(r.out);
  EXPECT_THAT(lines,
              ::testing::Contains("b2b2b2b2b2b2, c3c3c3c3c3c3 -> d4d4d4d4d4d4 (feature) (head) "
                                  "(mergepoint), merge"));
  // A label stops at the branch point below it (Alembic).
  EXPECT_THAT(lines, ::testing::Contains("<base> -> a1a1a1a1a1a1 (branchpoint), root"));
  EXPECT_THAT(lines,
              ::testing::Contains("<base> (a1a1a1a1a1a1) -> e5e5e5e5e5e5 (head), other root"));
  // Newest first: every revision comes before its parents.
  const auto position = [&](const std::string& id) {
    return std::find_if(lines.begin(), lines.end(),
                        [&](const std::string& line) {
                          return line.find("-> " + id) != std::string::npos;
                        }) -
           lines.begin();
  };
  EXPECT_LT(position("d4d4d4d4d4d4"), position("b2b2b2b2b2b2"));
  EXPECT_LT(position("d4d4d4d4d4d4"), position("c3c3c3c3c3c3"));
  EXPECT_LT(position("c3c3c3c3c3c3"), position("a1a1a1a1a1a1"));
  EXPECT_LT(position("e5e5e5e5e5e5"), position("a1a1a1a1a1a1"));
}

TEST_F(CliTest, HistoryVerboseShowsFileCreatedDependsOnTransactional) {
  WriteRevision("a1a1a1a1a1a1", "", "first");
  WriteRevision("b2b2b2b2b2b2", "a1a1a1a1a1a1", "second",
                "-- created: 2025-12-09T14:00:00Z\n-- transactional: false\n"
                "-- depends_on: a1a1a1a1a1a1\n");
  Output r = History(HistoryOptions{true, "", false, 0});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(
      r.out,
      AllOf(HasSubstr("Rev: b2b2b2b2b2b2 (head)\n"), HasSubstr("Also depends on: a1a1a1a1a1a1\n"),
            HasSubstr("Created: 2025-12-09T14:00:00Z\n"), HasSubstr("Transactional: false\n"),
            HasSubstr((dir_ / "b2b2b2b2b2b2_rev.sql").string()), HasSubstr("Parent: <base>\n")));
}

TEST_F(CliTest, HistoryRange) {
  WriteLinear();
  WriteRevision("d4d4d4d4d4d4", "c3c3c3c3c3c3", "fourth");
  HistoryOptions options;
  options.range = "b2b2:c3c3";
  Output r = History(options);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(Lines(r.out), ElementsAre("b2b2b2b2b2b2 -> c3c3c3c3c3c3, third",
                                        "a1a1a1a1a1a1 -> b2b2b2b2b2b2, second"));
  options.range = "c3c3:";
  EXPECT_EQ(Lines(History(options).out).size(), 2u);
  options.range = ":b2b2";
  EXPECT_EQ(Lines(History(options).out).size(), 2u);

  options.range = "b2b2";  // no colon
  EXPECT_EQ(History(options).code, kExitUsage);
  options.range = "current:";  // needs a database
  Output current = History(options);
  EXPECT_EQ(current.code, kExitUsage);
  EXPECT_THAT(current.err, HasSubstr("--dsn"));
  options.range = "zzzz:";
  EXPECT_EQ(History(options).code, kExitFailed);
}

TEST_F(CliTest, HistoryJson) {
  WriteLinear();
  global_.json = true;
  Output r = History();
  ASSERT_EQ(r.code, kExitOk);
  nlohmann::json json = Json(r.out);
  ASSERT_EQ(json["revisions"].size(), 3u);
  EXPECT_EQ(json["revisions"][0]["revision"], "c3c3c3c3c3c3");
  EXPECT_EQ(json["revisions"][2]["revises"], nlohmann::json::array());
  EXPECT_FALSE(json.contains("rows"));  // no database
}

// ------------------------------------------------------------------- show

TEST_F(CliTest, ShowByPrefixAndLabel) {
  WriteTwoHeads();
  Output r = Show("b2b2");
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out,
              AllOf(StartsWith("Rev: b2b2b2b2b2b2 (head)\n"), HasSubstr("Branch names: feature\n"),
                    HasSubstr("Upgrade: 1 statement\n"), HasSubstr("Downgrade: 1 statement\n"),
                    HasSubstr("Checksum: ")));
  EXPECT_THAT(Show("feature@head").out, StartsWith("Rev: b2b2b2b2b2b2"));
  Output heads = Show("heads");
  EXPECT_THAT(heads.out, AllOf(HasSubstr("Rev: b2b2b2b2b2b2"), HasSubstr("Rev: c3c3c3c3c3c3")));
  Output root = Show("a1a1a1a1a1a1");
  EXPECT_THAT(root.out, HasSubstr("Branches into: b2b2b2b2b2b2, c3c3c3c3c3c3\n"));
}

TEST_F(CliTest, ShowErrors) {
  WriteTwoHeads();
  Output unknown = Show("ffff");
  EXPECT_EQ(unknown.code, kExitFailed);
  EXPECT_THAT(unknown.err, HasSubstr("ffff"));
  EXPECT_EQ(Show("head").code, kExitFailed);  // several heads
  EXPECT_EQ(Show("base").code, kExitFailed);
}

TEST_F(CliTest, ShowIrreversibleAndJson) {
  Write("a1.sql", RevisionText("a1a1a1a1a1a1", "", "one way", "", "SELECT 1;", std::nullopt));
  EXPECT_THAT(Show("a1a1").out, HasSubstr("Downgrade: none (irreversible)"));
  global_.json = true;
  nlohmann::json json = Json(Show("a1a1").out);
  EXPECT_EQ(json["revisions"][0]["reversible"], false);
  EXPECT_TRUE(json["revisions"][0]["downgrade_statements"].is_null());
}

// ------------------------------------------------------------------ check

TEST_F(CliTest, CheckSingleHead) {
  WriteLinear();
  Output r = Check();
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_EQ(r.out, "OK: 3 revisions, head c3c3c3c3c3c3\n");
}

TEST_F(CliTest, CheckMultipleHeadsExitsNotAtHead) {
  WriteTwoHeads();
  Output r = Check();
  EXPECT_EQ(r.code, kExitNotAtHead);
  EXPECT_THAT(r.err, AllOf(HasSubstr("multiple heads"), HasSubstr("b2b2b2b2b2b2"),
                           HasSubstr("c3c3c3c3c3c3"), HasSubstr("merge")));
  EXPECT_EQ(Check(CheckOptions{true}).code, kExitOk);

  global_.json = true;
  Output json = Check();
  EXPECT_EQ(json.code, kExitNotAtHead);
  nlohmann::json parsed = Json(json.out);
  EXPECT_EQ(parsed["ok"], false);
  EXPECT_EQ(parsed["error"]["exit_code"], kExitNotAtHead);
  EXPECT_EQ(parsed["heads"], nlohmann::json::array({"b2b2b2b2b2b2", "c3c3c3c3c3c3"}));
  EXPECT_EQ(parsed["revisions"], 3);
}

TEST_F(CliTest, CheckGraphErrors) {
  WriteRevision("a1a1a1a1a1a1", "", "first");
  WriteRevision("b2b2b2b2b2b2", "ffffffffffff", "orphan");
  Output r = Check();
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_THAT(r.err, HasSubstr("ffffffffffff"));

  global_.json = true;
  Output json = Check();
  nlohmann::json parsed = Json(json.out);
  EXPECT_EQ(parsed["ok"], false);
  EXPECT_EQ(parsed["error"]["code"], "NOT_FOUND");
}

TEST_F(CliTest, CheckCycle) {
  WriteRevision("a1a1a1a1a1a1", "b2b2b2b2b2b2", "a");
  WriteRevision("b2b2b2b2b2b2", "a1a1a1a1a1a1", "b");
  Output r = Check();
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_THAT(r.err, HasSubstr("cycle"));
}

// --------------------------------------------------------------- revision

TEST_F(CliTest, RevisionFilesAreDatePrefixedByDefaultAndFollowTheTemplate) {
  RevisionOptions options;
  options.message = "Add sensor_data table";
  options.id = "a1a1a1a1a1a1";
  Output first = Revision(options);
  ASSERT_EQ(first.code, kExitOk) << first.err;
  EXPECT_THAT(first.out,
              ::testing::MatchesRegex(".*/20[0-9]{6}_[0-9]{4}_a1a1a1a1a1a1_add_sensor_data_"
                                      "table\\.sql\n"));
  // The guide's spelling: no id; an empty slug leaves no stray '_'.
  options.message = "!!";
  options.id = "b2b2b2b2b2b2";
  options.file_template = "{year}{month}{day}_{hour}{minute}_{slug}";
  Output second = Revision(options);
  ASSERT_EQ(second.code, kExitOk) << second.err;
  EXPECT_THAT(second.out, ::testing::MatchesRegex(".*/20[0-9]{6}_[0-9]{4}\\.sql\n"));
  // A bad template is a usage error naming the token, and writes nothing.
  options.id = "c3c3c3c3c3c3";
  for (const char* bad : {"{id}_{nope}", "{id}/{slug}", "{id"}) {
    options.file_template = bad;
    Output refused = Revision(options);
    EXPECT_EQ(refused.code, kExitUsage) << bad;
    EXPECT_THAT(refused.err, HasSubstr("--file-template")) << bad;
  }
  EXPECT_EQ(Heads().out, "b2b2b2b2b2b2 (head)\n");
}

TEST_F(CliTest, RevisionInEmptyDirectoryThenOnTop) {
  RevisionOptions options;
  options.file_template = "{id}_{slug}";  // names these tests can spell
  options.message = "Create sensor table";
  options.id = "a1a1a1a1a1a1";
  Output first = Revision(options);
  ASSERT_EQ(first.code, kExitOk) << first.err;
  const fs::path path = dir_ / "a1a1a1a1a1a1_create_sensor_table.sql";
  EXPECT_EQ(first.out, path.string() + "\n");
  ASSERT_TRUE(fs::exists(path));

  options.message = "Add index";
  options.id = "";
  Output second = Revision(options);
  ASSERT_EQ(second.code, kExitOk) << second.err;
  ASSERT_EQ(SqlFiles().size(), 2u);

  // The new file parses, revises the old head and has a fresh 12-hex id.
  std::ifstream in(Lines(second.out)[0]);
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<engine::Revision> parsed =
      engine::ParseRevisionFile(Lines(second.out)[0], text.str());
  ASSERT_OK(parsed);
  EXPECT_THAT(parsed->revises, ElementsAre("a1a1a1a1a1a1"));
  EXPECT_THAT(parsed->id, ::testing::MatchesRegex("[0-9a-f]{12}"));
  EXPECT_EQ(parsed->message, "Add index");
  EXPECT_TRUE(parsed->transactional);
  EXPECT_FALSE(parsed->created.empty());

  Output check = Check();
  EXPECT_EQ(check.code, kExitOk) << check.err;
  EXPECT_THAT(check.out, HasSubstr(parsed->id));
}

TEST_F(CliTest, RevisionOptionsAreWritten) {
  WriteLinear();
  RevisionOptions options;
  options.file_template = "{id}_{slug}";  // names these tests can spell
  options.message = "Concurrent index";
  options.id = "d4d4d4d4d4d4";
  options.branch_labels = {"indexes"};
  options.depends_on = {"a1a1"};  // a prefix: written as the full id
  options.non_transactional = true;
  options.created = "2025-12-09T14:00:00Z";
  Output r = Revision(options);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  std::ifstream in(dir_ / "d4d4d4d4d4d4_concurrent_index.sql");
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_THAT(
      text.str(),
      AllOf(HasSubstr("-- revision: d4d4d4d4d4d4\n"), HasSubstr("-- revises: c3c3c3c3c3c3\n"),
            HasSubstr("-- branch_labels: indexes\n"), HasSubstr("-- depends_on: a1a1a1a1a1a1\n"),
            HasSubstr("-- transactional: false\n"),
            HasSubstr("-- created: 2025-12-09T14:00:00Z\n")));
  // A label stays a label.
  options.id = "e5e5e5e5e5e5";
  options.branch_labels = {};
  options.depends_on = {"indexes"};
  options.head = "d4d4";
  ASSERT_EQ(Revision(options).code, kExitOk);
  std::ifstream in2(dir_ / "e5e5e5e5e5e5_concurrent_index.sql");
  std::stringstream text2;
  text2 << in2.rdbuf();
  EXPECT_THAT(text2.str(), HasSubstr("-- depends_on: indexes\n"));
  EXPECT_EQ(Check().code, kExitOk);
}

TEST_F(CliTest, RevisionRefusesNonHeadUnlessSplice) {
  WriteLinear();
  RevisionOptions options;
  options.file_template = "{id}_{slug}";  // names these tests can spell
  options.message = "branch";
  options.head = "a1a1";
  Output refused = Revision(options);
  EXPECT_EQ(refused.code, kExitFailed);
  EXPECT_THAT(refused.err, AllOf(HasSubstr("not a head"), HasSubstr("--splice")));
  EXPECT_EQ(SqlFiles().size(), 3u);

  options.splice = true;
  options.id = "f6f6f6f6f6f6";
  Output spliced = Revision(options);
  ASSERT_EQ(spliced.code, kExitOk) << spliced.err;
  EXPECT_THAT(Lines(Heads().out), ElementsAre("c3c3c3c3c3c3 (head)", "f6f6f6f6f6f6 (head)"));
  EXPECT_EQ(Check().code, kExitNotAtHead);
}

TEST_F(CliTest, RevisionWithSeveralHeadsNeedsHead) {
  WriteTwoHeads();
  RevisionOptions options;
  options.message = "next";
  Output r = Revision(options);
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_THAT(r.err, AllOf(HasSubstr("multiple heads"), HasSubstr("--head")));
  options.head = "feature@head";
  Output labelled = Revision(options);
  ASSERT_EQ(labelled.code, kExitOk) << labelled.err;
  // `--head base` starts a new root.
  options.head = "base";
  options.message = "new root";
  ASSERT_EQ(Revision(options).code, kExitOk);
  EXPECT_EQ(SqlFiles().size(), 5u);
  EXPECT_EQ(Lines(Heads().out).size(), 3u);
}

TEST_F(CliTest, RevisionUsageErrors) {
  WriteLinear();
  RevisionOptions options;
  EXPECT_EQ(Revision(options).code, kExitUsage);  // no message
  options.message = "dup";
  options.id = "c3c3c3c3c3c3";
  EXPECT_EQ(Revision(options).code, kExitUsage);  // id exists
  options.id = "not valid!";
  EXPECT_EQ(Revision(options).code, kExitUsage);  // bad id
  options.id = "";
  options.branch_labels = {"head"};  // a keyword
  EXPECT_EQ(Revision(options).code, kExitUsage);
  options.branch_labels = {};
  options.depends_on = {"zzzz"};
  EXPECT_EQ(Revision(options).code, kExitFailed);  // unknown dependency
  EXPECT_EQ(SqlFiles().size(), 3u);                // nothing written

  global_.dir = (dir_ / "missing").string();
  options.depends_on = {};
  Output missing = Revision(options);
  EXPECT_EQ(missing.code, kExitFailed);
  EXPECT_THAT(missing.err, HasSubstr("does not exist"));
}

TEST_F(CliTest, RevisionLabelCollisionIsRefused) {
  WriteTwoHeads();
  RevisionOptions options;
  options.message = "again";
  options.head = "c3c3";
  options.branch_labels = {"feature"};  // already b2's
  Output r = Revision(options);
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("feature"));
  EXPECT_EQ(SqlFiles().size(), 3u);
}

TEST_F(CliTest, RevisionJson) {
  WriteLinear();
  global_.json = true;
  RevisionOptions options;
  options.file_template = "{id}_{slug}";  // names these tests can spell
  options.message = "Add things";
  options.id = "d4d4d4d4d4d4";
  Output r = Revision(options);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  nlohmann::json json = Json(r.out);
  EXPECT_EQ(json["revision"], "d4d4d4d4d4d4");
  EXPECT_EQ(json["path"], (dir_ / "d4d4d4d4d4d4_add_things.sql").string());
  EXPECT_EQ(json["revises"], nlohmann::json::array({"c3c3c3c3c3c3"}));
}

// ------------------------------------------------------------------ merge

TEST_F(CliTest, MergeHeadsThenCheckPasses) {
  WriteTwoHeads();
  MergeOptions options;
  options.file_template = "{id}_{slug}";  // names these tests can spell
  options.message = "merge feature";
  options.revisions = {"heads"};
  options.id = "d4d4d4d4d4d4";
  Output r = Merge(options);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, (dir_ / "d4d4d4d4d4d4_merge_feature.sql").string() + "\n");
  Output check = Check();
  EXPECT_EQ(check.code, kExitOk) << check.err;
  EXPECT_EQ(Heads().out, "d4d4d4d4d4d4 (feature) (head)\n");
  EXPECT_THAT(History().out,
              StartsWith("b2b2b2b2b2b2, c3c3c3c3c3c3 -> d4d4d4d4d4d4 (feature) (head) "
                         "(mergepoint), merge feature\n"));
  // Merging a merge revision's upgrade is a no-op, and it is reversible.
  Output plan = Plan(PlanOptions{"upgrade", "heads", std::string("b2b2b2b2b2b2,c3c3c3c3c3c3")});
  EXPECT_THAT(plan.out, HasSubstr("d4d4d4d4d4d4"));
}

TEST_F(CliTest, MergeNamedRevisions) {
  WriteTwoHeads();
  MergeOptions options;
  options.file_template = "{id}_{slug}";  // names these tests can spell
  options.message = "join";
  options.revisions = {"c3c3", "feature@head"};
  options.branch_labels = {"joined"};
  options.id = "d4d4d4d4d4d4";
  ASSERT_EQ(Merge(options).code, kExitOk);
  std::ifstream in(dir_ / "d4d4d4d4d4d4_join.sql");
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_THAT(text.str(), AllOf(HasSubstr("-- revises: c3c3c3c3c3c3, b2b2b2b2b2b2\n"),
                                HasSubstr("-- branch_labels: joined\n")));
}

TEST_F(CliTest, MergeErrors) {
  WriteTwoHeads();
  MergeOptions options;
  options.message = "m";
  options.revisions = {"a1a1", "b2b2"};
  Output not_head = Merge(options);
  EXPECT_EQ(not_head.code, kExitFailed);
  EXPECT_THAT(not_head.err, HasSubstr("not a head"));
  options.revisions = {"b2b2"};
  Output one = Merge(options);
  EXPECT_EQ(one.code, kExitFailed);
  EXPECT_THAT(one.err, HasSubstr("nothing to merge"));
  options.revisions = {};
  EXPECT_EQ(Merge(options).code, kExitUsage);
  options.message = "";
  options.revisions = {"heads"};
  EXPECT_EQ(Merge(options).code, kExitUsage);
  EXPECT_EQ(SqlFiles().size(), 3u);
}

// ------------------------------------------------------------------- plan

TEST_F(CliTest, PlanJsonUpgradeFromBase) {
  WriteLinear();
  global_.json = true;
  Output r = Plan(PlanOptions{"upgrade", "heads", std::nullopt});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  // Exactly one JSON object, "steps" then "heads_after" first.
  EXPECT_THAT(r.out, StartsWith("{\"steps\":[{\"revision\":\"a1a1a1a1a1a1\",\"direction\":\"up\"},"
                                "{\"revision\":\"b2b2b2b2b2b2\",\"direction\":\"up\"},"
                                "{\"revision\":\"c3c3c3c3c3c3\",\"direction\":\"up\"}],"
                                "\"heads_after\":[\"c3c3c3c3c3c3\"]"));
  EXPECT_EQ(Lines(r.out).size(), 1u);
  EXPECT_EQ(r.err, "");
}

TEST_F(CliTest, PlanJsonDowngradeFromRows) {
  WriteLinear();
  global_.json = true;
  Output r = Plan(PlanOptions{"downgrade", "a1a1", std::string("c3c3c3c3c3c3")});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  nlohmann::json json = Json(r.out);
  EXPECT_EQ(json["steps"], nlohmann::json::parse(
                               R"([{"revision":"c3c3c3c3c3c3","direction":"down"},
                                   {"revision":"b2b2b2b2b2b2","direction":"down"}])"));
  EXPECT_EQ(json["heads_after"], nlohmann::json::array({"a1a1a1a1a1a1"}));
  // --from base: nothing to downgrade.
  Output base = Plan(PlanOptions{"downgrade", "base", std::string("base")});
  ASSERT_EQ(base.code, kExitOk) << base.err;
  EXPECT_EQ(Json(base.out)["steps"], nlohmann::json::array());
}

TEST_F(CliTest, PlanFromSeveralRowsAndPrefixes) {
  WriteTwoHeads();
  global_.json = true;
  Output r = Plan(PlanOptions{"upgrade", "heads", std::string("b2b2")});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  nlohmann::json json = Json(r.out);
  EXPECT_EQ(json["steps"],
            nlohmann::json::parse(R"([{"revision":"c3c3c3c3c3c3","direction":"up"}])"));
  EXPECT_EQ(json["heads_after"], nlohmann::json::array({"b2b2b2b2b2b2", "c3c3c3c3c3c3"}));
  EXPECT_EQ(json["heads_before"], nlohmann::json::array({"b2b2b2b2b2b2"}));
}

TEST_F(CliTest, PlanRefusedExitsNonZeroWithReasonOnStderr) {
  Write("a1.sql", RevisionText("a1a1a1a1a1a1", "", "one way", "", "SELECT 1;", std::nullopt));
  WriteRevision("b2b2b2b2b2b2", "a1a1a1a1a1a1", "second");
  Output irreversible = Plan(PlanOptions{"downgrade", "base", std::string("b2b2b2b2b2b2")});
  EXPECT_EQ(irreversible.code, kExitFailed);
  EXPECT_THAT(irreversible.err, AllOf(HasSubstr("a1a1a1a1a1a1"), HasSubstr("plan refused")));
  EXPECT_EQ(irreversible.out, "");

  global_.json = true;
  Output json = Plan(PlanOptions{"downgrade", "base", std::string("b2b2b2b2b2b2")});
  EXPECT_EQ(json.code, kExitFailed);
  EXPECT_THAT(json.err, HasSubstr("a1a1a1a1a1a1"));
  nlohmann::json parsed = Json(json.out);
  EXPECT_EQ(parsed["ok"], false);
  EXPECT_EQ(parsed["error"]["code"], "FAILED_PRECONDITION");
  EXPECT_EQ(parsed["error"]["exit_code"], 1);
}

TEST_F(CliTest, PlanRefusals) {
  WriteTwoHeads();
  // `head` with several heads.
  Output head = Plan(PlanOptions{"upgrade", "head", std::nullopt});
  EXPECT_EQ(head.code, kExitFailed);
  EXPECT_THAT(head.err, HasSubstr("head"));
  // Unknown target, unknown row, ambiguous relative move.
  EXPECT_EQ(Plan(PlanOptions{"upgrade", "ffff", std::nullopt}).code, kExitFailed);
  EXPECT_EQ(Plan(PlanOptions{"upgrade", "heads", std::string("ffffffffffff")}).code, kExitFailed);
  EXPECT_EQ(Plan(PlanOptions{"upgrade", "+5", std::string("c3c3c3c3c3c3")}).code, kExitFailed);
}

TEST_F(CliTest, PlanUsageErrors) {
  WriteLinear();
  EXPECT_EQ(Plan(PlanOptions{"sideways", "heads", std::nullopt}).code, kExitUsage);
  EXPECT_EQ(Plan(PlanOptions{"upgrade", "", std::nullopt}).code, kExitUsage);
  Output no_from = Plan(PlanOptions{"downgrade", "base", std::nullopt});
  EXPECT_EQ(no_from.code, kExitUsage);
  EXPECT_THAT(no_from.err, AllOf(HasSubstr("--from"), HasSubstr("--dsn")));
  EXPECT_EQ(Plan(PlanOptions{"upgrade", "heads", std::string("a1a1,,b2b2")}).code, kExitUsage);
  PlanOptions bad_transaction{"upgrade", "heads", std::nullopt};
  bad_transaction.transaction = "some";
  EXPECT_EQ(Plan(bad_transaction).code, kExitUsage);
}

TEST_F(CliTest, PlanHumanOutput) {
  WriteLinear();
  Output r = Plan(PlanOptions{"upgrade", "+2", std::nullopt});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(
      Lines(r.out),
      ElementsAre("Plan: upgrade +2 from <base>, 2 revisions", "  up    a1a1a1a1a1a1  first",
                  "  up    b2b2b2b2b2b2  second", "Heads after: b2b2b2b2b2b2"));
  Output none = Plan(PlanOptions{"upgrade", "heads", std::string("c3c3")});
  EXPECT_THAT(none.out, StartsWith("Nothing to do"));
}

TEST_F(CliTest, PlanSql) {
  WriteLinear();
  PlanOptions options{"upgrade", "heads", std::nullopt};
  options.sql = true;
  Output r = Plan(options);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out,
              AllOf(HasSubstr("CREATE TABLE"), HasSubstr("alembic_version"), HasSubstr("BEGIN;"),
                    HasSubstr("CREATE TABLE t (a int)"), HasSubstr("COMMIT;")));
  global_.version_table = "ops.versions";
  EXPECT_THAT(Plan(options).out, HasSubstr("ops.versions"));
  global_.json = true;
  nlohmann::json json = Json(Plan(options).out);
  EXPECT_TRUE(json["sql"].is_string());
  EXPECT_EQ(json["steps"].size(), 3u);
}

// ------------------------------------------------ offline upgrade/downgrade

TEST_F(CliTest, UpgradeSqlFromTo) {
  WriteLinear();
  UpgradeOptions options;
  options.sql = true;
  options.target = "a1a1:c3c3";
  Output r = Run(RunUpgrade, options);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, AllOf(HasSubstr("b2b2b2b2b2b2"), HasSubstr("c3c3c3c3c3c3"),
                           Not(HasSubstr("Running upgrade a1a1a1a1a1a1"))));
  EXPECT_THAT(r.out, HasSubstr("UPDATE alembic_version SET version_num='b2b2b2b2b2b2'"));
  options.target = "heads";  // from base
  EXPECT_THAT(Run(RunUpgrade, options).out, HasSubstr("INSERT INTO alembic_version"));
}

TEST_F(CliTest, DowngradeSqlNeedsFromTo) {
  WriteLinear();
  DowngradeOptions options;
  options.sql = true;
  options.target = "-1";
  Output usage = Run(RunDowngrade, options);
  EXPECT_EQ(usage.code, kExitUsage);
  EXPECT_THAT(usage.err, HasSubstr("FROM:TO"));
  options.target = "c3c3c3c3c3c3:a1a1";
  Output r = Run(RunDowngrade, options);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, AllOf(HasSubstr("DROP TABLE t"),
                           HasSubstr("UPDATE alembic_version SET version_num='a1a1a1a1a1a1'")));
}

TEST_F(CliTest, DatabaseVerbsWithoutDsnAreUsageErrors) {
  WriteLinear();
  Output current = Run(RunCurrent, CurrentOptions{});
  EXPECT_EQ(current.code, kExitUsage);
  EXPECT_THAT(current.err, AllOf(HasSubstr("--dsn"), HasSubstr("SCHEMAD_DSN")));
  EXPECT_EQ(Run(RunUpgrade, UpgradeOptions{}).code, kExitUsage);
  EXPECT_EQ(Run(RunDowngrade, DowngradeOptions{"base", false, "per-revision"}).code, kExitUsage);
  EXPECT_EQ(Run(RunStamp, StampOptions{{"heads"}, false}).code, kExitUsage);
  EXPECT_EQ(Run(RunEnsureHead, EnsureHeadOptions{}).code, kExitUsage);
  EXPECT_EQ(Run(RunValidate, ValidateOptions{}).code, kExitUsage);
  EXPECT_EQ(Run(RunResolve, ResolveOptions{true, false}).code, kExitUsage);
  EXPECT_EQ(Run(RunResolve, ResolveOptions{true, true}).code, kExitUsage);
  EXPECT_EQ(Run(RunHistory, HistoryOptions{false, "", true, 0}).code, kExitUsage);
  // Online targets never take FROM:TO.
  global_.dsn = "postgresql://u@127.0.0.1:1/db";
  EXPECT_EQ(Run(RunUpgrade, UpgradeOptions{"a1:b2", false, false, "per-revision"}).code,
            kExitUsage);
}

// ------------------------------------------------- exit codes and flags

TEST(ExitCodeTest, MapsStatusCodes) {
  EXPECT_EQ(ExitCodeFor(absl::OkStatus()), kExitOk);
  EXPECT_EQ(ExitCodeFor(absl::UnavailableError("x")), kExitUnavailable);
  EXPECT_EQ(ExitCodeFor(absl::DeadlineExceededError("lock")), kExitUnavailable);
  EXPECT_EQ(ExitCodeFor(absl::PermissionDeniedError("auth")), kExitUnavailable);
  EXPECT_EQ(ExitCodeFor(absl::FailedPreconditionError("x")), kExitFailed);
  EXPECT_EQ(ExitCodeFor(absl::InvalidArgumentError("x")), kExitFailed);
  EXPECT_EQ(ExitCodeFor(absl::NotFoundError("x")), kExitFailed);
  EXPECT_EQ(ExitCodeFor(absl::AbortedError("x")), kExitFailed);
  EXPECT_EQ(ExitCodeFor(absl::UnknownError("x")), kExitFailed);
  EXPECT_EQ(ExitCodeFor(UsageError("x")), kExitUsage);
  EXPECT_EQ(ExitCodeFor(WithExitCode(absl::FailedPreconditionError("x"), kExitNotAtHead)),
            kExitNotAtHead);
  EXPECT_EQ(ExitCodeFor(WithExitCode(absl::FailedPreconditionError("x"), kExitNeedsAttention)),
            kExitNeedsAttention);
  // Marking an OK status does nothing.
  EXPECT_EQ(ExitCodeFor(WithExitCode(absl::OkStatus(), kExitUsage)), kExitOk);
}

TEST(ParseDurationFlagTest, Grammar) {
  EXPECT_EQ(*ParseDurationFlag("--lock-wait", "60s"), absl::Seconds(60));
  EXPECT_EQ(*ParseDurationFlag("--lock-wait", "500ms"), absl::Milliseconds(500));
  EXPECT_EQ(*ParseDurationFlag("--lock-wait", "2min"), absl::Minutes(2));
  EXPECT_EQ(*ParseDurationFlag("--lock-wait", "2m"), absl::Minutes(2));
  EXPECT_EQ(*ParseDurationFlag("--lock-wait", "1h30min"), absl::Minutes(90));
  EXPECT_EQ(*ParseDurationFlag("--lock-wait", "1.5s"), absl::Milliseconds(1500));
  EXPECT_EQ(*ParseDurationFlag("--lock-wait", "0"), absl::ZeroDuration());
  for (const char* bad : {"5", "-1s", "", "5 parsecs", "s", "1h x"}) {
    absl::StatusOr<absl::Duration> parsed = ParseDurationFlag("--lock-timeout", bad);
    EXPECT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(ExitCodeFor(parsed.status()), kExitUsage) << bad;
    EXPECT_THAT(parsed.status().message(), HasSubstr("--lock-timeout")) << bad;
  }
}

TEST(ScrubSecretsTest, RemovesPasswords) {
  using internal::ScrubSecrets;
  EXPECT_EQ(
      ScrubSecrets("failed for postgresql://app:hunter22@db/x", "postgresql://app:hunter22@db/x"),
      "failed for postgresql://app:***@db/x");
  EXPECT_EQ(ScrubSecrets("pw hunter22", "host=db password=hunter22 dbname=x"), "pw ***");
  EXPECT_EQ(ScrubSecrets("pw 'p a s s'", "host=db password='p a s s'"), "pw ***");
  EXPECT_EQ(ScrubSecrets("pw p a s s", "host=db password='p a s s'"), "pw ***");
  // A DSN that does not parse: what an RFC 3986 reader takes as the password.
  EXPECT_EQ(ScrubSecrets("db LEAKME+pw=@host", "postgresql://modax:kq3/LEAKME+pw=@host:5432/c"),
            "db ***@host");
  EXPECT_EQ(ScrubSecrets("p@ss:w", "postgresql://app:p%40ss%3Aw@db/x"), "***");
  EXPECT_EQ(ScrubSecrets("x secretpw", "postgresql://db/x?password=secretpw"), "x ***");
  EXPECT_EQ(ScrubSecrets("nothing here", "postgresql://app@db/x"), "nothing here");
  EXPECT_EQ(ScrubSecrets("nothing here", ""), "nothing here");
}

// --------------------------------------------------------------- output

TEST(OutputTest, JsonTimesHaveMilliseconds) {
  EXPECT_EQ(JsonTimeText(absl::FromUnixMillis(1733752803125)), "2024-12-09T14:00:03.125Z");
  EXPECT_EQ(TimeText(absl::FromUnixMillis(1733752803125)), "2024-12-09T14:00:03Z");
}

TEST(OutputTest, DurationText) {
  EXPECT_EQ(DurationText(absl::Microseconds(420)), "0.4 ms");
  EXPECT_EQ(DurationText(absl::Microseconds(7460)), "7.5 ms");
  EXPECT_EQ(DurationText(absl::Milliseconds(54)), "54 ms");
  EXPECT_EQ(DurationText(absl::Milliseconds(350)), "350 ms");
  EXPECT_EQ(DurationText(absl::Milliseconds(6050)), "6.05 s");
  EXPECT_EQ(DurationText(absl::Milliseconds(12345)), "12.3 s");
  EXPECT_EQ(DurationText(absl::Seconds(123)), "2 min 03 s");
  EXPECT_EQ(DurationText(absl::Minutes(62)), "1 h 02 min");
  EXPECT_EQ(DurationText(-absl::Seconds(1)), "0 ms");
}

// Text schemactl does not control (database error messages, history rows from
// a database with another encoding) must not abort JSON output.
TEST(OutputTest, JsonTextReplacesInvalidUtf8) {
  Json json;
  json["error"] = "bad \xff byte";
  json["ok"] = "caf\xc3\xa9";
  const std::string text = JsonText(json);
  nlohmann::json parsed = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(parsed.is_discarded()) << text;
  EXPECT_EQ(parsed["error"], "bad \xef\xbf\xbd byte");
  EXPECT_EQ(parsed["ok"], "caf\xc3\xa9");
  EXPECT_EQ(text.find('\n'), std::string::npos);
}

TEST(OutputTest, FitWidthKeepsUtf8Whole) {
  EXPECT_EQ(FitWidth("abcdef", 3), "abc");
  EXPECT_EQ(FitWidth("abc", 10), "abc");
  EXPECT_EQ(FitWidth("abc", 0), "abc");
  EXPECT_EQ(FitWidth("a\xc3\xa9z", 2), "a");  // é is two bytes
}

engine::Event MakeEvent(engine::Event::Kind kind) {
  engine::Event event;
  event.kind = kind;
  event.operation_id = "op-1";
  event.operation = "upgrade";
  event.target = "heads";
  event.revision = "b2b2b2b2b2b2";
  event.step_index = 1;
  event.step_count = 2;
  event.statement_count = 7;
  return event;
}

// What the executor (or, through a server, the operation's OperationStarted)
// announces first: the plan, with each revision's message.
engine::Event PlanStarted() {
  engine::Event event = MakeEvent(engine::Event::Kind::kOperationStarted);
  event.plan = {
      engine::PlannedStep{"a1a1a1a1a1a1", engine::Direction::kUp, "a.sql", 1, true, "first"},
      engine::PlannedStep{"b2b2b2b2b2b2", engine::Direction::kUp, "b.sql", 7, true,
                          "add sensor table"}};
  return event;
}

TEST(ProgressSinkTest, LiveLineIsRewrittenInPlace) {
  std::ostringstream out;
  {
    ProgressSink sink(out, {ProgressSink::Mode::kLive, 80, /*ticker=*/false});
    sink.OnEvent(PlanStarted());
    sink.OnEvent(MakeEvent(engine::Event::Kind::kRevisionStarted));
    engine::Event statement = MakeEvent(engine::Event::Kind::kStatementStarted);
    statement.statement_index = 2;
    sink.OnEvent(statement);
    engine::Event finished = MakeEvent(engine::Event::Kind::kRevisionFinished);
    finished.duration = absl::Milliseconds(1200);
    sink.OnEvent(finished);
  }
  const std::string text = out.str();
  EXPECT_THAT(text, HasSubstr("\r[2/2] b2b2b2b2b2b2 add sensor table  statement 3/7  "));
  EXPECT_THAT(text, HasSubstr("[2/2] b2b2b2b2b2b2 add sensor table  7 statements  1.20 s\n"));
  EXPECT_THAT(text, HasSubstr("\x1b[K"));
}

TEST(ProgressSinkTest, LiveLineFitsTheTerminal) {
  std::ostringstream out;
  ProgressSink sink(out, {ProgressSink::Mode::kLive, 40, false});
  sink.OnEvent(PlanStarted());
  engine::Event statement = MakeEvent(engine::Event::Kind::kRevisionStarted);
  sink.OnEvent(statement);
  const std::string text = out.str();
  const size_t start = text.rfind('\r');
  const size_t end = text.find("\x1b[K", start);
  ASSERT_NE(start, std::string::npos);
  ASSERT_NE(end, std::string::npos);
  EXPECT_LE(end - start - 1, 39u);
  EXPECT_THAT(text.substr(start + 1, end - start - 1), StartsWith("[2/2] b2b2b2b2b2b2 add"));
}

TEST(ProgressSinkTest, PlainAndJsonLines) {
  std::ostringstream plain;
  {
    ProgressSink sink(plain, {ProgressSink::Mode::kPlain, 0, false});
    sink.OnEvent(MakeEvent(engine::Event::Kind::kRevisionStarted));
    sink.OnEvent(MakeEvent(engine::Event::Kind::kStatementStarted));  // not printed
    sink.OnEvent(MakeEvent(engine::Event::Kind::kRevisionFinished));
  }
  EXPECT_EQ(Lines(plain.str()).size(), 2u);
  EXPECT_THAT(plain.str(), Not(HasSubstr("\r")));

  std::ostringstream json;
  {
    ProgressSink sink(json, {ProgressSink::Mode::kJsonLines, 0, false});
    sink.OnEvent(MakeEvent(engine::Event::Kind::kRevisionStarted));
    sink.OnEvent(MakeEvent(engine::Event::Kind::kStatementStarted));
  }
  const std::vector<std::string> lines = Lines(json.str());
  ASSERT_EQ(lines.size(), 2u);
  nlohmann::json first = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(first["event"], "revision_started");
  EXPECT_EQ(first["step"], 2);
  EXPECT_EQ(first["steps"], 2);
  EXPECT_EQ(nlohmann::json::parse(lines[1])["event"], "statement_started");

  std::ostringstream none;
  {
    ProgressSink sink(none, {ProgressSink::Mode::kNone, 0, false});
    sink.OnEvent(MakeEvent(engine::Event::Kind::kRevisionStarted));
  }
  EXPECT_EQ(none.str(), "");
}

// A stream buffer (no put area: every write reaches it) that keeps what is
// written and lets a test wait, without a data race with the writer, until a
// number of carriage returns arrived.
class CarriageReturnCounter : public std::streambuf {
 public:
  // True once `count` '\r' were written; false after `timeout`.
  bool WaitFor(int count, absl::Duration timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return arrived_.wait_for(lock, absl::ToChronoMilliseconds(timeout),
                             [&] { return returns_ >= count; });
  }
  std::string Text() {
    std::lock_guard<std::mutex> lock(mu_);
    return text_;
  }

 protected:
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    std::lock_guard<std::mutex> lock(mu_);
    text_.append(s, static_cast<size_t>(n));
    returns_ += static_cast<int>(std::count(s, s + n, '\r'));
    arrived_.notify_all();
    return n;
  }
  int_type overflow(int_type c) override {
    if (traits_type::eq_int_type(c, traits_type::eof())) {
      return traits_type::not_eof(c);
    }
    const char ch = traits_type::to_char_type(c);
    xsputn(&ch, 1);
    return c;
  }

 private:
  std::mutex mu_;
  std::condition_variable arrived_;
  std::string text_;
  int returns_ = 0;
};

TEST(ProgressSinkTest, TickerRedrawsAndStopsCleanly) {
  CarriageReturnCounter buffer;
  std::ostream out(&buffer);
  ProgressSink sink(out, {ProgressSink::Mode::kLive, 80, /*ticker=*/true});
  sink.OnEvent(MakeEvent(engine::Event::Kind::kRevisionStarted));
  // The event draws the line once (one '\r'); then only the ticker (every
  // 250 ms) draws it: three '\r' mean two redraws without any event.
  EXPECT_TRUE(buffer.WaitFor(3, absl::Seconds(10))) << buffer.Text();
  sink.Finish();  // clears the line and joins the ticker
  const std::string text = buffer.Text();
  EXPECT_GE(std::count(text.begin(), text.end(), '\r'), 4);
  EXPECT_THAT(text, ::testing::EndsWith("\r\x1b[K"));
}

TEST(NewestFirstTest, ChildrenBeforeParents) {
  std::vector<engine::Revision> revisions(5);
  revisions[0].id = "r0";
  revisions[1].id = "r1";
  revisions[1].revises = {"r0"};
  revisions[2].id = "r2";
  revisions[2].revises = {"r0"};
  revisions[3].id = "r3";
  revisions[3].revises = {"r1", "r2"};
  revisions[4].id = "r4";
  revisions[4].depends_on = {"r2"};
  ASSERT_OK_AND_ASSIGN(engine::RevisionGraph graph,
                       engine::RevisionGraph::Build(std::move(revisions)));
  const std::vector<int> order = internal::NewestFirst(graph);
  ASSERT_EQ(order.size(), 5u);
  std::vector<int> position(5);
  for (int i = 0; i < 5; ++i) {
    position[order[i]] = i;
  }
  for (int i = 0; i < graph.size(); ++i) {
    for (int parent : graph.node(i).all_down) {
      EXPECT_LT(position[i], position[parent]) << graph.id(i) << " vs " << graph.id(parent);
    }
  }
}

}  // namespace
// ------------------------------------------------------------------- lint

TEST_F(CliTest, LintReportsFindingsAndExitsSixOnErrors) {
  Write("a1_rev.sql",
        "-- revision: a1\n-- +upgrade\nCREATE TABLE t (x int);\n-- +downgrade\n"
        "DROP TABLE t;\n");
  Write("b2_rev.sql",
        "-- revision: b2\n-- revises: a1\n-- lock_timeout: 5s\n-- +upgrade\n"
        "CREATE INDEX i ON t (x);\n-- +downgrade\nDROP INDEX i;\n");
  Output r = Run(RunLint, LintOptions{});
  EXPECT_EQ(r.code, kExitLintErrors);
  EXPECT_THAT(r.out, HasSubstr("b2_rev.sql:5: error: [create-index-not-concurrently]"));
  EXPECT_THAT(r.out, HasSubstr("1 error, 0 warnings, 0 infos"));

  global_.json = true;
  r = Run(RunLint, LintOptions{});
  const nlohmann::json json = Json(r.out);
  ASSERT_EQ(json["findings"].size(), 1u);
  EXPECT_EQ(json["findings"][0]["rule"], "create-index-not-concurrently");
  EXPECT_EQ(json["findings"][0]["severity"], "error");
  EXPECT_EQ(json["findings"][0]["revision"], "b2");
  EXPECT_EQ(json["findings"][0]["line"], 5);
  global_.json = false;

  LintOptions sarif;
  sarif.sarif = true;
  r = Run(RunLint, sarif);
  EXPECT_EQ(Json(r.out)["runs"][0]["results"][0]["level"], "error");

  LintOptions first;
  first.range = "a1";
  EXPECT_EQ(Run(RunLint, first).code, kExitOk);
  LintOptions since;
  since.since = "a1";
  EXPECT_EQ(Run(RunLint, since).code, kExitLintErrors);

  r = Check();
  EXPECT_EQ(r.code, kExitLintErrors);
  EXPECT_THAT(r.err, HasSubstr("lint: 1 error"));

  // `revision` on top warns about b2's finding and still writes the file.
  RevisionOptions next;
  next.message = "next";
  r = Revision(next);
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_THAT(r.err, HasSubstr("warning: lint findings"));
  EXPECT_THAT(r.err, HasSubstr("[create-index-not-concurrently]"));
}

// ------------------------------------------------------------------ diff

// A diff side with key=value settings is a DSN, never a directory or a path:
// its password appears in no message, also with an '@' in it.
TEST_F(CliTest, DiffNeverEchoesTheDsnOfASide) {
  for (const std::string side :
       {"host=127.0.0.1 port=1 user=app password=pa@ss-w0rd connect_timeout=1",
        "postgresql://app:pa%40ss-w0rd@127.0.0.1:1/site?connect_timeout=1"}) {
    DiffOptions options;
    options.from = side;
    options.to = (dir_ / "nowhere.sql").string();
    Output result = Run(RunDiff, options);
    EXPECT_NE(result.code, 0) << side;
    EXPECT_THAT(result.out + result.err, Not(HasSubstr("pa@ss-w0rd"))) << side;
    EXPECT_THAT(result.out + result.err, Not(HasSubstr("pa%40ss-w0rd"))) << side;
    EXPECT_THAT(result.err, Not(HasSubstr("nowhere.sql"))) << side;  // FROM failed first
  }
}

}  // namespace schemad::cli

namespace schemad::cli {
namespace {

TEST(ProjectConfigTest, ReadsSettingsCommentsAndLineNumbers) {
  absl::StatusOr<ProjectConfig> config =
      ParseProjectConfig("p/schemactl.ini",
                         "# a comment\n\n[schemactl]\n  dir = db/revisions   ; trailing comment\n"
                         "dsn = postgresql://h/db#frag\nfile-template={id}_{slug}\n");
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_EQ(config->settings.size(), 3u);
  EXPECT_EQ(config->settings[0].key, "dir");
  EXPECT_EQ(config->settings[0].value, "db/revisions");
  EXPECT_EQ(config->Where(config->settings[0]), "p/schemactl.ini:4");
  EXPECT_EQ(config->settings[1].value, "postgresql://h/db#frag");  // '#' not after a space
  EXPECT_EQ(config->settings[2].value, "{id}_{slug}");
}

TEST(ProjectConfigTest, MistakesNameFileAndLine) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"dir = x\n", "f.ini:1: a setting before the [schemactl] section header"},
      {"[schemactl]\n[alembic]\n", "f.ini:2: unknown section '[alembic]'"},
      {"[schemactl]\ndir\n", "f.ini:2: expected `key = value`"},
      {"[schemactl]\n = x\n", "f.ini:2: a setting without a name"},
      {"[schemactl]\ndir =\n", "f.ini:2: 'dir' has no value"},
      {"[schemactl]\ndir = a\ndir = b\n", "f.ini:3: 'dir' is set twice"},
      {"[schemactl]\n\ndir = \xff\n", "f.ini:3: not UTF-8 text"},
  };
  for (const auto& [text, message] : cases) {
    absl::StatusOr<ProjectConfig> config = ParseProjectConfig("f.ini", text);
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(std::string(config.status().message()), HasSubstr(message)) << text;
  }
}

TEST(ProjectConfigTest, FoundInTheNearestDirectoryUpwardsOrNamedOrNone) {
  const fs::path root = fs::temp_directory_path() / absl::StrCat("schemactl_ini_", getpid());
  fs::remove_all(root);
  fs::create_directories(root / "a" / "b" / "c");
  std::ofstream(root / "schemactl.ini") << "[schemactl]\ndir = outer\n";
  std::ofstream(root / "a" / "schemactl.ini") << "[schemactl]\ndir = inner\n";
  absl::StatusOr<std::optional<ProjectConfig>> found =
      LoadProjectConfig("", root / "a" / "b" / "c");
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->path, (root / "a" / "schemactl.ini").string());
  EXPECT_EQ((*found)->settings[0].value, "inner");
  found = LoadProjectConfig((root / "schemactl.ini").string(), root / "a");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->settings[0].value, "outer");
  found = LoadProjectConfig("none", root / "a");
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE(found->has_value());
  EXPECT_EQ(LoadProjectConfig((root / "missing.ini").string(), root).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(LoadProjectConfig(root.string(), root).status().code(),
            absl::StatusCode::kInvalidArgument);  // a directory
  std::ofstream(root / "big.ini") << std::string(kMaxProjectConfigBytes + 1, '#');
  EXPECT_THAT(std::string(LoadProjectConfig((root / "big.ini").string(), root).status().message()),
              HasSubstr("larger than 64 KiB"));
  fs::remove_all(root);
}

}  // namespace
}  // namespace schemad::cli

namespace schemad::cli {
namespace {

TEST(FleetLiveBlockTest, FitsTheTerminalAndShowsEachSitesElapsedTime) {
  const absl::Time now = absl::FromUnixSeconds(1000);
  std::vector<internal::FleetRunningSite> running;
  for (int i = 0; i < 40; ++i) {
    running.push_back({absl::StrCat("site-", i), "revision b2 (2/3)", now - absl::Seconds(i)});
  }
  internal::FleetCounts counts;
  counts.done = 3;
  counts.queued = 7;
  // 40 running sites on 24 rows: 22 site lines (the last one a summary) and
  // the counts, 23 in all, so the cursor's line stays on the screen.
  std::vector<std::string> block = internal::FleetLiveBlock(running, counts, 80, 24, now);
  ASSERT_EQ(block.size(), 23u);
  EXPECT_EQ(block[0], "  site-0: revision b2 (2/3)  0 ms");
  EXPECT_EQ(block[5], "  site-5: revision b2 (2/3)  5.00 s");
  EXPECT_EQ(block[21], "  ... and 19 more running");
  EXPECT_EQ(block[22], "running 40, done 3, failed 0, queued 7, skipped 0");
  // A resize to 8 rows and 20 columns: 6 site lines, each cut to 19 columns.
  block = internal::FleetLiveBlock(running, counts, 20, 8, now);
  ASSERT_EQ(block.size(), 7u);
  EXPECT_EQ(block[5], "  ... and 35 more r");
  for (const std::string& line : block) EXPECT_LE(line.size(), 19u) << line;
  // Few sites: all of them, no summary line.
  running.resize(2);
  block = internal::FleetLiveBlock(running, counts, 80, 24, now);
  ASSERT_EQ(block.size(), 3u);
  EXPECT_EQ(block[1], "  site-1: revision b2 (2/3)  1.00 s");
}

}  // namespace
}  // namespace schemad::cli

namespace schemad::cli {
namespace {

// A wrong --dir (missing, or without a revision file) is told from the
// listing, before any login: the database here is a socket that would hold a
// login until connect_timeout, and it must see no connection at all.
TEST(DirectModeTest, AWrongDirIsToldBeforeAnyLogin) {
  int port = 0;
  const int listener = schemad::testing::ListenOnUnusedLoopbackPort(&port);
  ASSERT_GE(listener, 0);
  const fs::path empty =
      fs::temp_directory_path() / absl::StrCat("schemactl_no_revisions_", getpid());
  fs::create_directories(empty);
  GlobalOptions global;
  global.dsn = absl::StrCat("host=127.0.0.1 port=", port, " dbname=x user=u connect_timeout=2");
  for (const fs::path& dir : {empty, empty / "missing"}) {
    global.dir = dir.string();
    std::ostringstream out, err;
    EXPECT_NE(RunCurrent(global, CurrentOptions{}, out, err), kExitOk) << dir;
    EXPECT_THAT(err.str(), HasSubstr(dir.string()));
    pollfd pending{listener, POLLIN, 0};
    EXPECT_EQ(poll(&pending, 1, 0), 0) << "a login was tried with --dir " << dir;
  }
  close(listener);
  fs::remove_all(empty);
}

}  // namespace
}  // namespace schemad::cli
