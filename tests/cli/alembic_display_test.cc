// schemactl's output against Alembic 1.8.1 itself: every case of
// tests/fixtures/alembic_display_cases.json (what Debian's python3-alembic
// printed for `history [-r RANGE]`, `heads [--resolve-dependencies]`,
// `current` over given version rows, and `downgrade FROM:base --sql`, on
// random and hand-made graphs; tests/fixtures/generate_alembic_cases.py
// --display regenerates it) must come out the same: the same lines in the
// same order (history, heads), the same set of lines (current: Alembic
// prints a set), and for --sql the same revisions run in the same order
// with the script ending in DROP TABLE alembic_version where Alembic's
// does. Where Alembic refused, schemactl refuses.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/cli/command_util.h"
#include "client/cli/commands.h"
#include "client/cli/output.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "service/engine/planner.h"
#include "service/engine/revision_file.h"
#include "service/engine/revision_graph.h"
#include "tests/testing/status_matchers.h"

namespace schemad::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const json& Cases() {
  static const json* cases = [] {
    std::ifstream in(std::string(SCHEMAD_FIXTURES_DIR) + "/alembic_display_cases.json");
    std::stringstream buffer;
    buffer << in.rdbuf();
    return new json(json::parse(buffer.str()));
  }();
  return *cases;
}

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

// The graph's revisions as schemad revision files (empty message, as the
// generator's Alembic files have no docstring; the SQL is what Alembic's
// revisions run: a row into a log table).
class AlembicDisplayTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    std::random_device random;
    dir_ = fs::temp_directory_path() /
           absl::StrCat("schemactl_display_", getpid(), "_", random(), "_", random());
    fs::create_directories(dir_);
    global_.dir = dir_.string();
    global_.who = "tester@test";
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  void WriteGraph(const json& graph) {
    for (const json& node : graph) {
      const std::string rev = node.at("rev").get<std::string>();
      std::string text = absl::StrCat("-- revision: ", rev, "\n");
      const auto revises = node.at("revises").get<std::vector<std::string>>();
      const auto depends_on = node.at("depends_on").get<std::vector<std::string>>();
      const auto labels = node.at("branch_labels").get<std::vector<std::string>>();
      if (!revises.empty()) {
        absl::StrAppend(&text, "-- revises: ", absl::StrJoin(revises, ", "), "\n");
      }
      if (!depends_on.empty()) {
        absl::StrAppend(&text, "-- depends_on: ", absl::StrJoin(depends_on, ", "), "\n");
      }
      if (!labels.empty()) {
        absl::StrAppend(&text, "-- branch_labels: ", absl::StrJoin(labels, ", "), "\n");
      }
      absl::StrAppend(&text, "\n-- +upgrade\nINSERT INTO log (rev, dir) VALUES ('", rev,
                      "', 'up');\n\n-- +downgrade\nINSERT INTO log (rev, dir) VALUES ('", rev,
                      "', 'down');\n");
      std::ofstream(dir_ / (rev + ".sql")) << text;
    }
  }

  struct Output {
    int code = -1;
    std::string out;
    std::string err;
  };
  template <typename Options, typename Fn>
  Output Run(Fn fn, const Options& options) {
    std::ostringstream out, err;
    Output result;
    result.code = fn(global_, options, out, err);
    result.out = out.str();
    result.err = err.str();
    return result;
  }

  fs::path dir_;
  GlobalOptions global_;
};

// The revisions a script runs, in order ("-- Running downgrade X ..."), and
// whether DROP TABLE alembic_version is its last statement but COMMIT.
struct ScriptShape {
  std::vector<std::string> ran;
  bool ends_dropping_version_table = false;
};

ScriptShape ShapeOf(const std::vector<std::string>& lines) {
  ScriptShape shape;
  std::string last;
  for (const std::string& line : lines) {
    absl::string_view text = line;
    if (absl::ConsumePrefix(&text, "-- Running downgrade ")) {
      shape.ran.emplace_back(text.substr(0, text.find_first_of(" :")));
    } else if (!absl::StartsWith(text, "--") && text != "COMMIT;" && text != "BEGIN;") {
      last = line;
    }
  }
  shape.ends_dropping_version_table = last == "DROP TABLE alembic_version;";
  return shape;
}

TEST_P(AlembicDisplayTest, PrintsWhatAlembicPrinted) {
  const json& c = Cases().at("cases").at(GetParam());
  SCOPED_TRACE(c.dump());
  WriteGraph(Cases().at("graphs").at(c.at("graph").get<int>()));
  const std::string command = c.at("command").get<std::string>();
  const bool alembic_ok = c.at("ok").get<bool>();
  std::vector<std::string> expected;
  if (alembic_ok) {
    expected = c.at("output").get<std::vector<std::string>>();
  }

  if (command == "history") {
    HistoryOptions options;
    if (!c.at("range").is_null()) {
      options.range = c.at("range").get<std::string>();
    }
    Output r = Run(RunHistory, options);
    if (!alembic_ok) {
      EXPECT_NE(r.code, kExitOk) << "Alembic refused: " << c.at("error").get<std::string>();
      return;
    }
    ASSERT_EQ(r.code, kExitOk) << r.err;
    EXPECT_EQ(Lines(r.out), expected);
  } else if (command == "heads") {
    HeadsOptions options;
    options.resolve_dependencies = c.at("resolve_dependencies").get<bool>();
    Output r = Run(RunHeads, options);
    ASSERT_TRUE(alembic_ok);
    ASSERT_EQ(r.code, kExitOk) << r.err;
    EXPECT_EQ(Lines(r.out), expected);
  } else if (command == "current") {
    // `current` reads the rows from a database; what it prints for them is
    // EffectiveCurrentHeads in LineFormat::Current (cli_pgtest runs the verb).
    ASSERT_OK_AND_ASSIGN(engine::RevisionGraph graph, internal::LoadGraph(global_));
    const auto rows = c.at("start_heads").get<std::vector<std::string>>();
    ASSERT_OK_AND_ASSIGN(std::vector<int> heads, engine::EffectiveCurrentHeads(graph, rows));
    std::vector<std::string> lines;
    for (int index : heads) {
      lines.push_back(FormatRevisionLine(graph, index, LineFormat::Current()));
    }
    std::sort(lines.begin(), lines.end());
    EXPECT_EQ(lines, expected);
  } else if (command == "downgrade_sql") {
    DowngradeOptions options;
    options.target = c.at("range").get<std::string>();
    options.sql = true;
    options.transaction = "all";  // Alembic's env.py: one BEGIN/COMMIT around the script
    Output r = Run(RunDowngrade, options);
    if (!alembic_ok) {
      EXPECT_NE(r.code, kExitOk) << "Alembic refused: " << c.at("error").get<std::string>();
      return;
    }
    ASSERT_EQ(r.code, kExitOk) << r.err;
    const ScriptShape ours = ShapeOf(Lines(r.out));
    const ScriptShape alembic = ShapeOf(expected);
    EXPECT_EQ(ours.ran, alembic.ran);
    EXPECT_EQ(ours.ends_dropping_version_table, alembic.ends_dropping_version_table) << r.out;
  } else {
    FAIL() << "unknown command " << command;
  }
}

INSTANTIATE_TEST_SUITE_P(AllCases, AlembicDisplayTest,
                         ::testing::Range(0, static_cast<int>(Cases().at("cases").size())));

}  // namespace
}  // namespace schemad::cli
