// schemactl's database verbs end to end through the command functions, on a
// fresh PostgreSQL database per test (tests/testing/pg_fixture.h).
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/cli/commands.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/pg_fixture.h"

namespace schemad::cli {
namespace {

namespace fs = std::filesystem;
using ::schemad::testing::ClusterDsn;
using ::schemad::testing::Exec;
using ::schemad::testing::Query;
using ::schemad::testing::Rows;
using ::schemad::testing::TestDatabase;
using ::testing::AllOf;
using ::testing::AnyOf;
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

constexpr char kR1[] = "a1a1a1a1a1a1";
constexpr char kR2[] = "b2b2b2b2b2b2";
constexpr char kR3[] = "c3c3c3c3c3c3";

class CliPgTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(db_.ok());
    std::random_device random;
    dir_ = fs::temp_directory_path() /
           absl::StrCat("schemactl_pgtest_", getpid(), "_", random(), "_", random());
    fs::create_directories(dir_);
    global_.dir = dir_.string();
    global_.dsn = db_.dsn();
    global_.who = "tester@test";
    global_.lock_wait = absl::Seconds(10);
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  void Write(const std::string& id, const std::string& revises, const std::string& message,
             const std::string& up, const std::optional<std::string>& down,
             const std::string& extra = "") {
    std::string text = absl::StrCat("-- revision: ", id, "\n");
    if (!revises.empty()) {
      absl::StrAppend(&text, "-- revises: ", revises, "\n");
    }
    absl::StrAppend(&text, "-- message: ", message, "\n", extra, "\n-- +upgrade\n", up, "\n");
    if (down.has_value()) {
      absl::StrAppend(&text, "\n-- +downgrade\n", *down, "\n");
    }
    std::ofstream(dir_ / (id + "_rev.sql")) << text;
  }
  // r1: table a; r2: table b; r3: table c.
  void WriteLinear() {
    Write(kR1, "", "create a", "CREATE TABLE a (id int);", "DROP TABLE a;");
    Write(kR2, kR1, "create b", "CREATE TABLE b (id int);", "DROP TABLE b;");
    Write(kR3, kR2, "create c", "CREATE TABLE c (id int);", "DROP TABLE c;");
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
  Output Upgrade(const std::string& target = "heads") {
    UpgradeOptions options;
    options.target = target;
    return Run(RunUpgrade, options);
  }
  Output Downgrade(const std::string& target) {
    DowngradeOptions options;
    options.target = target;
    return Run(RunDowngrade, options);
  }
  Output Current(bool check_heads = false) {
    CurrentOptions options;
    options.check_heads = check_heads;
    return Run(RunCurrent, options);
  }

  Rows VersionRows() {
    return Query(db_.dsn(), "SELECT version_num FROM alembic_version ORDER BY 1");
  }
  bool TableExists(const std::string& name) {
    return Query(db_.dsn(), absl::StrCat("SELECT to_regclass('public.", name, "') IS NOT NULL")) ==
           Rows{{"t"}};
  }
  nlohmann::json Json(const std::string& text) {
    nlohmann::json json = nlohmann::json::parse(text, nullptr, false);
    EXPECT_FALSE(json.is_discarded()) << text;
    return json;
  }

  TestDatabase db_;
  fs::path dir_;
  GlobalOptions global_;
};

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

// Issue 14: `current` lists, as `alembic current` does, the revisions the
// rows imply through depends_on, not only the rows: here the only row is
// e2 (on its own base e1, which depends on r2), and r2 shows up as an
// "(effective head)" (nothing revises it; e1 depends on it).
TEST_F(CliPgTest, CurrentListsHeadsImpliedByDependsOn) {
  Write(kR1, "", "create a", "CREATE TABLE a (id int);", "DROP TABLE a;");
  Write(kR2, kR1, "create b", "CREATE TABLE b (id int);", "DROP TABLE b;");
  Write("e1e1e1e1e1e1", "", "other line", "CREATE TABLE e (id int);", "DROP TABLE e;",
        absl::StrCat("-- depends_on: ", kR2, "\n-- branch_labels: eline\n"));
  Write("e2e2e2e2e2e2", "e1e1e1e1e1e1", "more", "CREATE TABLE f (id int);", "DROP TABLE f;");
  ASSERT_EQ(Upgrade("eline@head").code, kExitOk);
  EXPECT_EQ(VersionRows(), (Rows{{"e2e2e2e2e2e2"}}));

  Output current = Current();
  ASSERT_EQ(current.code, kExitOk) << current.err;
  EXPECT_THAT(Lines(current.out),
              ::testing::UnorderedElementsAre(absl::StrCat(kR2, " (effective head)"),
                                              "e2e2e2e2e2e2 (head)"));
  global_.json = true;
  nlohmann::json json = Json(Current().out);
  EXPECT_EQ(json["rows"], nlohmann::json::array({"e2e2e2e2e2e2"}));
  EXPECT_EQ(json["current"], nlohmann::json::array({kR2, "e2e2e2e2e2e2"}));
}

TEST_F(CliPgTest, UpgradeCurrentDowngrade) {
  WriteLinear();
  Output before = Current();
  EXPECT_EQ(before.code, kExitOk) << before.err;
  EXPECT_EQ(before.out, "");
  EXPECT_THAT(before.err, HasSubstr("at base"));
  EXPECT_EQ(Current(/*check_heads=*/true).code, kExitNotAtHead);

  Output up = Upgrade();
  ASSERT_EQ(up.code, kExitOk) << up.err;
  EXPECT_THAT(up.out, AllOf(StartsWith("Upgraded 3 revisions"), HasSubstr(kR3)));
  // Not a terminal: plain progress lines on stderr, no carriage returns.
  EXPECT_THAT(up.err, AllOf(HasSubstr(kR1), Not(HasSubstr("\r"))));
  EXPECT_EQ(VersionRows(), (Rows{{kR3}}));
  EXPECT_TRUE(TableExists("c"));

  Output current = Current();
  EXPECT_EQ(current.code, kExitOk) << current.err;
  EXPECT_EQ(current.out, absl::StrCat(kR3, " (head)\n"));
  EXPECT_EQ(Current(/*check_heads=*/true).code, kExitOk);

  Output again = Upgrade();
  EXPECT_EQ(again.code, kExitOk);
  EXPECT_THAT(again.out, StartsWith("Nothing to do"));

  Output down = Downgrade("-1");
  ASSERT_EQ(down.code, kExitOk) << down.err;
  EXPECT_THAT(down.out, StartsWith("Downgraded 1 revision"));
  EXPECT_EQ(VersionRows(), (Rows{{kR2}}));
  EXPECT_FALSE(TableExists("c"));
  EXPECT_EQ(Current(/*check_heads=*/true).code, kExitNotAtHead);

  ASSERT_EQ(Downgrade("base").code, kExitOk);
  EXPECT_THAT(VersionRows(), IsEmpty());
  EXPECT_FALSE(TableExists("a"));
}

TEST_F(CliPgTest, JsonResults) {
  WriteLinear();
  global_.json = true;
  Output up = Upgrade(kR2);
  ASSERT_EQ(up.code, kExitOk) << up.err;
  nlohmann::json json = Json(up.out);
  EXPECT_EQ(json["ok"], true);
  EXPECT_EQ(json["operation"], "upgrade");
  EXPECT_EQ(json["heads_before"], nlohmann::json::array());
  EXPECT_EQ(json["heads_after"], nlohmann::json::array({kR2}));
  EXPECT_EQ(json["revisions_run"], 2);
  EXPECT_EQ(json["steps"].size(), 2u);
  EXPECT_THAT(json["operation_id"].get<std::string>(), StartsWith("op-"));
  // Progress as JSON lines on stderr.
  for (const std::string& line : Lines(up.err)) {
    EXPECT_TRUE(Json(line).contains("event")) << line;
  }

  Output current = Current();
  nlohmann::json status = Json(current.out);
  EXPECT_EQ(status["rows"], nlohmann::json::array({kR2}));
  EXPECT_EQ(status["heads"], nlohmann::json::array({kR3}));
  EXPECT_EQ(status["at_head"], false);
  EXPECT_EQ(status["pending"], 1);
  EXPECT_TRUE(status["needs_attention"].is_null());
  EXPECT_THAT(current.out, Not(HasSubstr(db_.cluster().password)));

  // `plan` with a DSN and no --from plans from the database.
  PlanOptions plan;
  plan.direction = "upgrade";
  plan.target = "heads";
  Output planned = Run(RunPlan, plan);
  ASSERT_EQ(planned.code, kExitOk) << planned.err;
  EXPECT_EQ(Json(planned.out)["steps"], nlohmann::json::parse(absl::StrCat(
                                            R"([{"revision":")", kR3, R"(","direction":"up"}])")));
}

TEST_F(CliPgTest, StampRunsNoSql) {
  WriteLinear();
  StampOptions options;
  options.revisions = {kR2};
  Output stamped = Run(RunStamp, options);
  ASSERT_EQ(stamped.code, kExitOk) << stamped.err;
  EXPECT_THAT(stamped.out, HasSubstr(kR2));
  EXPECT_EQ(VersionRows(), (Rows{{kR2}}));
  EXPECT_FALSE(TableExists("a"));

  Output up = Upgrade();
  ASSERT_EQ(up.code, kExitOk) << up.err;
  EXPECT_TRUE(TableExists("c"));
  EXPECT_FALSE(TableExists("a"));

  options.revisions = {"base"};
  ASSERT_EQ(Run(RunStamp, options).code, kExitOk);
  EXPECT_THAT(VersionRows(), IsEmpty());

  options.revisions = {"ffff"};
  EXPECT_EQ(Run(RunStamp, options).code, kExitFailed);
}

TEST_F(CliPgTest, StampPurgeReplacesEveryRow) {
  Write(kR1, "", "root", "SELECT 1;", "SELECT 1;");
  Write(kR2, kR1, "left", "SELECT 1;", "SELECT 1;");
  Write(kR3, kR1, "right", "SELECT 1;", "SELECT 1;");
  ASSERT_EQ(Upgrade().code, kExitOk);
  EXPECT_EQ(VersionRows(), (Rows{{kR2}, {kR3}}));
  StampOptions options;
  options.revisions = {kR1};
  options.purge = true;
  ASSERT_EQ(Run(RunStamp, options).code, kExitOk);
  EXPECT_EQ(VersionRows(), (Rows{{kR1}}));
}

TEST_F(CliPgTest, HistoryShowsAppliedMarksDatesAndLog) {
  WriteLinear();
  ASSERT_EQ(Upgrade(kR2).code, kExitOk);
  Output history = Run(RunHistory, HistoryOptions{});
  ASSERT_EQ(history.code, kExitOk) << history.err;
  const std::vector<std::string> lines = Lines(history.out);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_THAT(lines[0], AllOf(StartsWith(absl::StrCat(kR2, " -> ", kR3, " (head), create c")),
                              HasSubstr("[pending]")));
  EXPECT_THAT(lines[1], AllOf(HasSubstr(absl::StrCat(kR2, " (current)")), HasSubstr("[applied 20"),
                              HasSubstr(" in ")));
  EXPECT_THAT(lines[2], HasSubstr("[applied 20"));

  HistoryOptions verbose;
  verbose.verbose = true;
  EXPECT_THAT(Run(RunHistory, verbose).out,
              AllOf(HasSubstr("Applied: no"), HasSubstr("by tester@test")));

  HistoryOptions range;
  range.range = "current:";
  EXPECT_EQ(Lines(Run(RunHistory, range).out).size(), 2u);

  HistoryOptions log;
  log.log = true;
  Output records = Run(RunHistory, log);
  ASSERT_EQ(records.code, kExitOk) << records.err;
  EXPECT_EQ(Lines(records.out).size(), 2u);
  EXPECT_THAT(records.out, AllOf(HasSubstr("up"), HasSubstr("success"), HasSubstr(kR1),
                                 HasSubstr("tester@test")));

  global_.json = true;
  nlohmann::json json = Json(Run(RunHistory, HistoryOptions{}).out);
  ASSERT_EQ(json["revisions"].size(), 3u);
  EXPECT_EQ(json["revisions"][0]["applied"], false);
  EXPECT_EQ(json["revisions"][1]["applied"], true);
  EXPECT_EQ(json["revisions"][1]["current"], true);
  EXPECT_TRUE(json["revisions"][1]["applied_at"].is_string());
  EXPECT_EQ(json["rows"], nlohmann::json::array({kR2}));
}

TEST_F(CliPgTest, EnsureHead) {
  WriteLinear();
  ASSERT_EQ(Upgrade(kR1).code, kExitOk);
  Output check = Run(RunEnsureHead, EnsureHeadOptions{/*no_apply=*/true});
  EXPECT_EQ(check.code, kExitNotAtHead) << check.err;
  EXPECT_THAT(check.err, AllOf(HasSubstr(kR2), HasSubstr(kR3)));
  EXPECT_EQ(VersionRows(), (Rows{{kR1}}));

  Output apply = Run(RunEnsureHead, EnsureHeadOptions{});
  ASSERT_EQ(apply.code, kExitOk) << apply.err;
  EXPECT_EQ(VersionRows(), (Rows{{kR3}}));

  Output at_head = Run(RunEnsureHead, EnsureHeadOptions{});
  EXPECT_EQ(at_head.code, kExitOk);
  EXPECT_EQ(at_head.out, absl::StrCat("At head: ", kR3, "\n"));
  EXPECT_EQ(Run(RunEnsureHead, EnsureHeadOptions{true}).code, kExitOk);
}

TEST_F(CliPgTest, ValidateAndChangedFiles) {
  WriteLinear();
  ASSERT_EQ(Upgrade(kR2).code, kExitOk);
  Output ok = Run(RunValidate, ValidateOptions{});
  EXPECT_EQ(ok.code, kExitOk) << ok.err;
  EXPECT_THAT(ok.out, HasSubstr("OK: 2 applied"));

  Write(kR1, "", "create a", "CREATE TABLE a (id bigint);", "DROP TABLE a;");
  Output changed = Run(RunValidate, ValidateOptions{});
  EXPECT_EQ(changed.code, kExitFailed);
  EXPECT_THAT(changed.out, AllOf(HasSubstr("changed"), HasSubstr(kR1)));

  global_.json = true;
  nlohmann::json json = Json(Run(RunValidate, ValidateOptions{}).out);
  EXPECT_EQ(json["ok"], false);
  EXPECT_EQ(json["issues"][0]["kind"], "changed");
  EXPECT_EQ(json["issues"][0]["revision"], kR1);
  global_.json = false;

  Output refused = Upgrade();
  EXPECT_EQ(refused.code, kExitFailed);
  EXPECT_THAT(refused.err, AllOf(HasSubstr(kR1), HasSubstr("--allow-changed")));
  EXPECT_EQ(VersionRows(), (Rows{{kR2}}));

  UpgradeOptions allow;
  allow.allow_changed = true;
  ASSERT_EQ(Run(RunUpgrade, allow).code, kExitOk);
  EXPECT_EQ(VersionRows(), (Rows{{kR3}}));
}

// Issue 13: an edit of comments, whitespace or keyword case is cosmetic
// (reported, not refused); any other edit is a change that `repair`
// re-records with an audit row naming who and both checksums.
TEST_F(CliPgTest, CosmeticEditsAndRepair) {
  WriteLinear();
  ASSERT_EQ(Upgrade(kR2).code, kExitOk);
  const Rows applied = Query(db_.dsn(), absl::StrCat("SELECT checksum FROM schemad_history WHERE "
                                                     "revision = '",
                                                     kR1, "' AND direction = 'up'"));
  ASSERT_EQ(applied.size(), 1u);
  const std::string first_checksum = applied[0][0];

  Write(kR1, "", "create a", "-- the first table\ncreate   table A (\n  id INT\n);",
        "DROP TABLE a;");
  Output cosmetic = Run(RunValidate, ValidateOptions{});
  EXPECT_EQ(cosmetic.code, kExitOk) << cosmetic.err;
  EXPECT_THAT(cosmetic.out, AllOf(HasSubstr("cosmetic"), HasSubstr(kR1), HasSubstr("OK: 2")));
  global_.json = true;
  EXPECT_EQ(Json(Run(RunValidate, ValidateOptions{}).out)["issues"][0]["kind"], "cosmetic");
  global_.json = false;
  ASSERT_EQ(Upgrade().code, kExitOk) << "a cosmetic edit does not block upgrade";
  EXPECT_EQ(VersionRows(), (Rows{{kR3}}));

  Write(kR1, "", "create a", "CREATE TABLE a (id bigint);", "DROP TABLE a;");
  Output changed = Run(RunValidate, ValidateOptions{});
  EXPECT_EQ(changed.code, kExitFailed);
  EXPECT_THAT(changed.out, AllOf(HasSubstr("changed"), HasSubstr(kR1)));

  Output repaired = Run(RunRepair, RepairOptions{});
  ASSERT_EQ(repaired.code, kExitOk) << repaired.err;
  EXPECT_THAT(repaired.out,
              AllOf(HasSubstr("repaired"), HasSubstr(kR1), HasSubstr(first_checksum.substr(0, 12)),
                    HasSubstr("1 checksum(s) re-recorded")));
  const Rows audit = Query(db_.dsn(),
                           "SELECT revision, who, previous_checksum, checksum = previous_checksum, "
                           "outcome, rows_before = rows_after FROM schemad_history WHERE "
                           "direction = 'repair'");
  EXPECT_EQ(audit, (Rows{{kR1, "tester@test", first_checksum, "f", "success", "t"}}));
  EXPECT_EQ(VersionRows(), (Rows{{kR3}}));

  Output clean = Run(RunValidate, ValidateOptions{});
  EXPECT_EQ(clean.code, kExitOk) << clean.out;
  EXPECT_THAT(clean.out, AllOf(Not(HasSubstr("changed")), Not(HasSubstr("cosmetic"))));
  global_.json = true;
  nlohmann::json again = Json(Run(RunRepair, RepairOptions{}).out);
  EXPECT_EQ(again["repaired"], nlohmann::json::array());
  EXPECT_EQ(again["not_repaired"], nlohmann::json::array());
  global_.json = false;

  // An applied revision whose file is gone cannot be repaired.
  fs::remove(dir_ / absl::StrCat(kR3, "_rev.sql"));
  Output missing = Run(RunRepair, RepairOptions{});
  EXPECT_EQ(missing.code, kExitFailed);
  EXPECT_THAT(missing.out, AllOf(HasSubstr("not repaired"), HasSubstr(kR3)));
}

// A history table made by an earlier schemad (without the fingerprint and
// previous_checksum columns) still reads, and gains them at the next run.
TEST_F(CliPgTest, HistoryTableOfAnEarlierVersionGainsTheNewColumns) {
  WriteLinear();
  ASSERT_EQ(Upgrade(kR1).code, kExitOk);
  Query(db_.dsn(),
        "ALTER TABLE schemad_history DROP COLUMN fingerprint, DROP COLUMN previous_checksum");
  Write(kR1, "", "create a", "CREATE TABLE a (id int); -- same", "DROP TABLE a;");
  Output validate = Run(RunValidate, ValidateOptions{});
  EXPECT_EQ(validate.code, kExitFailed) << "no fingerprint recorded: any edit is a change";
  EXPECT_THAT(validate.out, HasSubstr("changed"));
  UpgradeOptions allow;
  allow.allow_changed = true;
  ASSERT_EQ(Run(RunUpgrade, allow).code, kExitOk);
  EXPECT_EQ(Query(db_.dsn(),
                  "SELECT count(*) FROM schemad_history WHERE fingerprint IS NOT NULL AND "
                  "previous_checksum IS NULL"),
            (Rows{{"2"}}));
}

TEST_F(CliPgTest, SqlErrorNamesFileLineAndSqlstate) {
  Write(kR1, "", "create a", "CREATE TABLE a (id int);", "DROP TABLE a;");
  Write(kR2, kR1, "broken", "CREATE TABLE b (id int);\nINSERT INTO missing_table VALUES (1);",
        "DROP TABLE b;");
  Output failed = Upgrade();
  EXPECT_EQ(failed.code, kExitFailed);
  EXPECT_THAT(failed.err, AllOf(HasSubstr(kR2), HasSubstr("b2b2b2b2b2b2_rev.sql:"),
                                HasSubstr("42P01"), HasSubstr("missing_table")));
  // Stated once (issue 14): the progress line says which revision failed,
  // the error line says why.
  EXPECT_THAT(failed.err, HasSubstr(absl::StrCat("] ", kR2, " failed after ")));
  size_t mentions = 0;
  for (size_t at = failed.err.find("42P01"); at != std::string::npos;
       at = failed.err.find("42P01", at + 1)) {
    ++mentions;
  }
  EXPECT_EQ(mentions, 1u) << failed.err;
  // Per command (the default, Alembic's): r1 rolled back with r2.
  EXPECT_EQ(VersionRows(), Rows{});
  EXPECT_FALSE(TableExists("b"));

  // Fixed: the upgrade finishes.
  Write(kR2, kR1, "fixed", "CREATE TABLE b (id int);", "DROP TABLE b;");
  ASSERT_EQ(Upgrade().code, kExitOk);
  EXPECT_EQ(VersionRows(), (Rows{{kR2}}));
}

TEST_F(CliPgTest, NeedsAttentionAndResolve) {
  Write(kR1, "", "create a", "CREATE TABLE a (id int);", "DROP TABLE a;");
  Write(kR2, kR1, "concurrent index",
        "CREATE INDEX CONCURRENTLY a_id ON a (id);\nINSERT INTO missing_table VALUES (1);",
        "DROP INDEX CONCURRENTLY a_id;", "-- transactional: false\n");
  Output failed = Upgrade();
  EXPECT_EQ(failed.code, kExitNeedsAttention) << failed.err;
  EXPECT_THAT(failed.err, AllOf(HasSubstr("needs attention"), HasSubstr("resolve")));
  EXPECT_EQ(VersionRows(), (Rows{{kR1}}));

  Output current = Current();
  EXPECT_EQ(current.code, kExitOk);
  EXPECT_THAT(current.err, AllOf(HasSubstr("warning"), HasSubstr("needs attention")));
  EXPECT_EQ(Current(/*check_heads=*/true).code, kExitNeedsAttention);
  global_.json = true;
  nlohmann::json status = Json(Current().out);
  EXPECT_EQ(status["needs_attention"]["revision"], kR2);
  EXPECT_EQ(status["needs_attention"]["statements_done"], 1);
  global_.json = false;

  EXPECT_EQ(Upgrade().code, kExitNeedsAttention);  // blocked
  EXPECT_EQ(Run(RunEnsureHead, EnsureHeadOptions{}).code, kExitNeedsAttention);
  EXPECT_EQ(Run(RunResolve, ResolveOptions{}).code, kExitUsage);

  // The operator undoes what ran and resolves as rolled back; history records it.
  Exec(db_.dsn(), "DROP INDEX a_id");
  Output resolved = Run(RunResolve, ResolveOptions{false, true});
  ASSERT_EQ(resolved.code, kExitOk) << resolved.err;
  EXPECT_EQ(VersionRows(), (Rows{{kR1}}));
  HistoryOptions log;
  log.log = true;
  EXPECT_THAT(Run(RunHistory, log).out, AllOf(HasSubstr("resolve"), HasSubstr("rolled_back")));
  EXPECT_EQ(Run(RunResolve, ResolveOptions{false, true}).code, kExitFailed);  // nothing to resolve

  // After fixing the file, the upgrade goes through.
  Write(kR2, kR1, "concurrent index", "CREATE INDEX CONCURRENTLY a_id ON a (id);",
        "DROP INDEX CONCURRENTLY a_id;", "-- transactional: false\n");
  Output up = Upgrade();
  ASSERT_EQ(up.code, kExitOk) << up.err;
  EXPECT_EQ(VersionRows(), (Rows{{kR2}}));
}

TEST_F(CliPgTest, ResolveApplied) {
  Write(kR1, "", "create a", "CREATE TABLE a (id int);", "DROP TABLE a;");
  Write(kR2, kR1, "two steps", "CREATE TABLE b (id int);\nINSERT INTO missing_table VALUES (1);",
        "DROP TABLE b;", "-- transactional: false\n");
  ASSERT_EQ(Upgrade().code, kExitNeedsAttention);
  Output resolved = Run(RunResolve, ResolveOptions{true, false});
  ASSERT_EQ(resolved.code, kExitOk) << resolved.err;
  EXPECT_EQ(VersionRows(), (Rows{{kR2}}));
  EXPECT_EQ(Current(/*check_heads=*/true).code, kExitOk);
}

TEST_F(CliPgTest, LockWaitTimesOutNamingTheHolder) {
  Write(kR1, "", "slow", "SELECT pg_sleep(3);", "SELECT 1;");
  Output slow;
  std::thread holder([&] {
    GlobalOptions global = global_;
    global.quiet = true;
    std::ostringstream out, err;
    slow.code = RunUpgrade(global, UpgradeOptions{}, out, err);
    slow.err = err.str();
  });
  // Wait until the slow upgrade holds the lock (its statement sleeps).
  bool holding = false;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(20);
       !holding && absl::Now() < deadline;) {
    holding = Query(db_.dsn(),
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND "
                    "query LIKE '%pg_sleep(3)%' AND pid <> pg_backend_pid()") == Rows{{"1"}};
    if (!holding) {
      absl::SleepFor(absl::Milliseconds(20));
    }
  }
  EXPECT_TRUE(holding) << "the slow upgrade never reached its pg_sleep";
  global_.lock_wait = absl::Milliseconds(300);
  Output waiter = Run(RunEnsureHead, EnsureHeadOptions{});
  holder.join();
  EXPECT_EQ(slow.code, kExitOk) << slow.err;
  EXPECT_EQ(waiter.code, kExitUnavailable) << waiter.err;
  EXPECT_THAT(waiter.err, AllOf(HasSubstr("schemactl"), HasSubstr("pid")));
}

// Issue 14: `--transaction per-command` is Alembic's default scope: a
// revision failing late leaves the database where the command started, with
// one `failed` history row; per revision, the revisions before it stay.
TEST_F(CliPgTest, PerCommandFailureLeavesTheDatabaseWhereItStarted) {
  Write(kR1, "", "create a", "CREATE TABLE a (id int);", "DROP TABLE a;");
  Write(kR2, kR1, "create b", "CREATE TABLE b (id int);", "DROP TABLE b;");
  Write(kR3, kR2, "broken", "CREATE TABLE c (id int);\nSELECT 1/0;", "DROP TABLE c;");
  UpgradeOptions options;
  options.transaction = "per-command";
  Output failed = Run(RunUpgrade, options);
  EXPECT_EQ(failed.code, kExitFailed) << failed.err;
  EXPECT_THAT(failed.err, AllOf(HasSubstr("22012"), HasSubstr("rolled back")));
  EXPECT_EQ(VersionRows(), Rows{});
  EXPECT_FALSE(TableExists("a"));
  EXPECT_EQ(Query(db_.dsn(), "SELECT revision, outcome FROM schemad_history ORDER BY id"),
            (Rows{{kR3, "failed"}}));

  options.transaction = "per-revision";
  EXPECT_EQ(Run(RunUpgrade, options).code, kExitFailed);
  EXPECT_EQ(VersionRows(), (Rows{{kR2}}));
  EXPECT_TRUE(TableExists("a"));
}

// A non-transactional revision inside a per-command run: what came before
// commits, it runs on its own, what follows is a new transaction.
TEST_F(CliPgTest, PerCommandRunsANonTransactionalRevisionBetweenTransactions) {
  Write(kR1, "", "create a", "CREATE TABLE a (id int);", "DROP TABLE a;");
  Write(kR2, kR1, "index a", "CREATE INDEX CONCURRENTLY a_id ON a (id);",
        "DROP INDEX CONCURRENTLY a_id;", "-- transactional: false\n");
  Write(kR3, kR2, "create b", "CREATE TABLE b (id int);", "DROP TABLE b;");
  UpgradeOptions options;
  options.transaction = "per-command";
  Output up = Run(RunUpgrade, options);
  ASSERT_EQ(up.code, kExitOk) << up.err;
  EXPECT_EQ(VersionRows(), (Rows{{kR3}}));
  DowngradeOptions down;
  down.target = "base";
  down.transaction = "per-command";
  Output back = Run(RunDowngrade, down);
  ASSERT_EQ(back.code, kExitOk) << back.err;
  EXPECT_EQ(VersionRows(), Rows{});
  EXPECT_FALSE(TableExists("a"));
}

TEST_F(CliPgTest, TransactionAllAndSchemaQualifiedVersionTable) {
  WriteLinear();
  Exec(db_.dsn(), "CREATE SCHEMA ops");
  global_.version_table = "ops.alembic_version";
  UpgradeOptions options;
  options.transaction = "all";
  Output up = Run(RunUpgrade, options);
  ASSERT_EQ(up.code, kExitOk) << up.err;
  EXPECT_EQ(Query(db_.dsn(), "SELECT version_num FROM ops.alembic_version"), (Rows{{kR3}}));
  EXPECT_EQ(Current().out, absl::StrCat(kR3, " (head)\n"));
}

TEST_F(CliPgTest, WrongPasswordIsNeverPrinted) {
  WriteLinear();
  const std::string wrong = "Wr0ngPassw0rdXYZ";
  global_.dsn = absl::StrCat("postgresql://postgres:", wrong, "@127.0.0.1:", db_.cluster().port,
                             "/", db_.name());
  global_.json = true;
  Output r = Current();
  EXPECT_EQ(r.code, kExitUnavailable) << r.err;
  EXPECT_THAT(r.err, HasSubstr("authentication"));
  EXPECT_THAT(r.err + r.out, Not(HasSubstr(wrong)));
  // Nor the right one, in any output of a successful run.
  global_.dsn = db_.dsn();
  global_.json = false;
  Output up = Upgrade();
  ASSERT_EQ(up.code, kExitOk);
  EXPECT_THAT(up.err + up.out, Not(HasSubstr(db_.cluster().password)));
}

TEST_F(CliPgTest, UnreachableDatabaseExitsFiveWithoutPassword) {
  WriteLinear();
  // Port 1 on loopback: connection refused.
  global_.dsn = "postgresql://app:s3cr3tpass@127.0.0.1:1/site";
  global_.json = true;
  Output r = Run(RunCurrent, CurrentOptions{});
  EXPECT_EQ(r.code, kExitUnavailable) << r.err;
  EXPECT_THAT(r.err, Not(HasSubstr("s3cr3tpass")));
  EXPECT_THAT(r.out, Not(HasSubstr("s3cr3tpass")));
  EXPECT_EQ(Json(r.out)["error"]["exit_code"], kExitUnavailable);
  global_.dsn = "host=127.0.0.1 port=1 user=app password=s3cr3tpass dbname=site";
  Output kv = Run(RunEnsureHead, EnsureHeadOptions{});
  EXPECT_EQ(kv.code, kExitUnavailable) << kv.err;
  EXPECT_THAT(kv.err + kv.out, Not(HasSubstr("s3cr3tpass")));
}

// Defect (issue 9): a password with an unescaped '/' or '@' made libpq read
// part of it as port and database name, and the error printed them. Now
// it, and malformed values, are usage errors that quote nothing.
TEST_F(CliPgTest, AmbiguousOrMalformedDsnIsAUsageErrorThatQuotesNothing) {
  WriteLinear();
  global_.json = true;
  const std::string port = db_.cluster().port;
  struct Case {
    std::string dsn;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"postgresql://modax:kq3/LEAKME+pw=@127.0.0.1:" + port + "/site_c",
       "--dsn: the DSN is not a valid URI: unescaped '@' or '/' in the user-info (user:password@); "
       "percent-encode the password"},
      {"postgresql://modax:LE@KME@127.0.0.1:" + port + "/site_c", "not a valid URI"},
      {"host=127.0.0.1 port=notaport password=LEAKME", "--dsn: the DSN has a bad port"},
      {"postgresql://u:LEAKME@127.0.0.1/x?port=notaport", "has a bad port"},
      {"host=127.0.0.1 sslmode=bogus password=LEAKME", "has a bad sslmode"},
      {"postgresql://u:LEAKME@127.0.0.1/x?sslmode=bogus", "has a bad sslmode"},
      {"host=127.0.0.1 connect_timeout=abc password=LEAKME", "has a bad connect_timeout"},
      {"postgresql://u:LEAKME@127.0.0.1/x?connect_timeout=abc", "has a bad connect_timeout"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.dsn);
    global_.dsn = c.dsn;
    Output r = Current();
    EXPECT_EQ(r.code, kExitUsage) << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.message));
    EXPECT_EQ(Json(r.out)["error"]["exit_code"], kExitUsage);
    for (const char* secret : {"LEAKME", "kq3", "notaport", "bogus", "abc"}) {
      EXPECT_THAT(r.err + r.out, Not(HasSubstr(secret)));
    }
  }
  global_.dsn_source = "DATABASE_URL";
  global_.dsn = cases[0].dsn;
  EXPECT_THAT(Current().err, HasSubstr("DATABASE_URL: the DSN is not a valid URI"));
}

// Defect (issue 9): the CLI took version-table names the server refuses.
TEST_F(CliPgTest, VersionTableNamesAreTheServersRule) {
  WriteLinear();
  global_.dsn = db_.dsn();
  global_.version_table = "my table";
  Output r = Current();
  EXPECT_EQ(r.code, kExitUsage) << r.err;
  EXPECT_THAT(r.err, HasSubstr("--version-table: \"my table\" is not a table name"));
  global_.version_table = "ops.alembic_version";
  Exec(db_.dsn(), "CREATE SCHEMA ops");
  EXPECT_EQ(Current().code, kExitOk);
}

// A database that does not exist, or a host that does not resolve: exit 5
// (cannot use the database), at once and without the password.
TEST_F(CliPgTest, PermanentConnectFailuresExitFive) {
  WriteLinear();
  const std::string password = db_.cluster().password;
  for (const std::string& dsn :
       {ClusterDsn(db_.cluster(), "no_such_db_x", password),
        absl::StrCat("postgresql://postgres:", password, "@no-such-host.invalid:5432/x")}) {
    SCOPED_TRACE(dsn);
    global_.dsn = dsn;
    Output r = Current();
    EXPECT_EQ(r.code, kExitUnavailable) << r.err;
    EXPECT_THAT(r.err, AnyOf(HasSubstr("does not exist"), HasSubstr("does not resolve")));
    EXPECT_THAT(r.err + r.out, Not(HasSubstr(password)));
  }
}

TEST_F(CliPgTest, AdoptsAlembicVersionTable) {
  WriteLinear();
  // A database that Alembic migrated up to r1: its table, its row, r1's schema.
  Exec(db_.dsn(),
       "CREATE TABLE alembic_version (version_num varchar(32) NOT NULL, "
       "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num));"
       "INSERT INTO alembic_version VALUES ('a1a1a1a1a1a1');"
       "CREATE TABLE a (id int);");
  Output current = Current();
  EXPECT_EQ(current.out, absl::StrCat(kR1, "\n"));
  ASSERT_EQ(Upgrade().code, kExitOk);
  EXPECT_EQ(VersionRows(), (Rows{{kR3}}));
  Output validate = Run(RunValidate, ValidateOptions{});
  EXPECT_EQ(validate.code, kExitOk) << validate.out;
  EXPECT_THAT(validate.out, AllOf(HasSubstr("no checksum"), HasSubstr(kR1)));
}

}  // namespace
// Issue 12: verify on a DSN dev server; Ctrl-C (the cancel flag) stops it
// between revisions and leaves no scratch database behind.
TEST_F(CliPgTest, VerifyRunsEachRevisionUpDownUpAndStopsCleanlyWhenCancelled) {
  Write("a1", "", "devices", "CREATE TABLE devices (id int PRIMARY KEY);", "DROP TABLE devices;");
  Write("b2", "a1", "index", "CREATE INDEX devices_id_idx ON devices (id);",
        "DROP INDEX devices_id_idx;");
  const std::string scratch_left =
      absl::StrCat("SELECT count(*) FROM pg_database WHERE datname LIKE 'schemad\\_scratch\\_",
                   getpid(), "\\_%'");
  VerifyOptions options;
  options.dev_dsn = testing::AdminDsn();
  Output verified = Run(RunVerify, options);
  EXPECT_EQ(verified.code, kExitOk) << verified.err;
  EXPECT_THAT(verified.out, HasSubstr("verified 2 revisions"));
  EXPECT_EQ(testing::Query(testing::AdminDsn(), scratch_left), (testing::Rows{{"0"}}));

  std::atomic<bool> cancelled{true};
  global_.cancelled = &cancelled;
  Output stopped = Run(RunVerify, options);
  EXPECT_NE(stopped.code, kExitOk);
  EXPECT_THAT(stopped.err, HasSubstr("verify cancelled before revision a1"));
  EXPECT_EQ(testing::Query(testing::AdminDsn(), scratch_left), (testing::Rows{{"0"}}));
  global_.cancelled = nullptr;
}

}  // namespace schemad::cli
