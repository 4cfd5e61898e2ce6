// A property of schemad under SIGKILL, checked on random revision graphs:
// whatever moment `schemactl` or `schemad` (the real binaries, run as
// subprocesses) is killed at, and after the operator's recovery (resolve
// where the database needs attention, then `upgrade heads`),
//   - every statement of every revision took effect at most once,
//   - alembic_version matches what ran: an applied revision's effects are all
//     there; a transactional revision's are all there or none is,
//   - needs-attention is set exactly when a non-transactional revision
//     started and did not finish (and then names it),
//   - a run that died is recorded in schemad_history as `interrupted`,
// and in the end the database is at heads with every effect exactly once.
//
// Each seed (a ctest entry of its own) draws a graph — linear stretches,
// branches, merges; some revisions non-transactional — of revisions whose
// statements each insert one row into `log` (the side effect that is
// counted), with short sleeps between them so that kills land mid-revision;
// then kills one or two runs at random moments. The seeds are fixed: a
// failure names its seed and replays the same graph and kill delays.
//
// The binaries are $SCHEMACTL / $SCHEMAD, else the ones this build made.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/pg_fixture.h"

extern char** environ;

namespace schemad::cli {
namespace {

namespace fs = std::filesystem;
using ::schemad::testing::Exec;
using ::schemad::testing::Query;
using ::schemad::testing::Rows;
using ::schemad::testing::TestDatabase;

constexpr int kOk = 0;
constexpr int kNeedsAttention = 4;

std::string Binary(const char* env, const char* built) {
  const char* value = std::getenv(env);
  return value != nullptr && *value != '\0' ? value : built;
}

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// A child process, its output in files; killed (SIGKILL) when destroyed.
class Process {
 public:
  Process(const std::vector<std::string>& argv, const fs::path& out, const fs::path& err)
      : out_(out), err_(err) {
    std::vector<std::string> environment;
    for (char** e = environ; *e != nullptr; ++e) {
      const absl::string_view entry(*e);
      if (!absl::StartsWith(entry, "SCHEMAD_") && !absl::StartsWith(entry, "DATABASE_URL=") &&
          !absl::StartsWith(entry, "PG")) {
        environment.emplace_back(entry);
      }
    }
    std::vector<char*> args;
    for (const std::string& a : argv) {
      args.push_back(const_cast<char*>(a.c_str()));
    }
    args.push_back(nullptr);
    std::vector<char*> envp;
    for (const std::string& e : environment) {
      envp.push_back(const_cast<char*>(e.c_str()));
    }
    envp.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), envp.data()) != 0) {
      ADD_FAILURE() << "cannot start " << argv[0];
      pid_ = -1;
    }
    posix_spawn_file_actions_destroy(&actions);
  }
  ~Process() { Kill(); }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  void Kill() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }
  // The exit code (-1 after a signal or a timeout, which is a failure).
  int Wait(absl::Duration timeout = absl::Seconds(30)) {
    const absl::Time deadline = absl::Now() + timeout;
    int status = 0;
    while (pid_ > 0 && waitpid(pid_, &status, WNOHANG) != pid_) {
      if (absl::Now() > deadline) {
        ADD_FAILURE() << "process still running after " << timeout << ": " << Output();
        Kill();
        return -1;
      }
      absl::SleepFor(absl::Milliseconds(5));
    }
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  std::string Output() const { return ReadAll(out_) + ReadAll(err_); }
  std::string Stdout() const { return ReadAll(out_); }

 private:
  pid_t pid_ = -1;
  fs::path out_;
  fs::path err_;
};

// ------------------------------------------------------------------ graph

struct Revision {
  std::string id;
  std::vector<std::string> revises;
  bool transactional = true;
  int statements = 1;  // side effects: INSERT INTO log (rev, stmt) VALUES (id, 1..n)
};

// 4..8 revisions from one root: linear steps, branches from any revision,
// merges of two heads; a third non-transactional.
std::vector<Revision> RandomGraph(std::mt19937& rng) {
  const int count = 4 + static_cast<int>(rng() % 5);
  std::vector<Revision> revisions;
  std::vector<std::string> heads;
  for (int i = 1; i <= count; ++i) {
    Revision rev;
    rev.id = absl::StrCat("rev", i < 10 ? "0" : "", i);
    rev.transactional = rng() % 3 != 0;
    rev.statements = 1 + static_cast<int>(rng() % 3);
    if (i > 1) {
      const int roll = static_cast<int>(rng() % 10);
      if (roll < 3 && heads.size() >= 2) {  // merge two heads
        const size_t a = rng() % heads.size();
        size_t b = rng() % (heads.size() - 1);
        b += b >= a ? 1 : 0;
        rev.revises = {heads[a], heads[b]};
        heads.erase(heads.begin() + static_cast<std::ptrdiff_t>(std::max(a, b)));
        heads.erase(heads.begin() + static_cast<std::ptrdiff_t>(std::min(a, b)));
      } else if (roll < 5) {  // branch from any revision
        const std::string& parent = revisions[rng() % revisions.size()].id;
        rev.revises = {parent};
        heads.erase(std::remove(heads.begin(), heads.end(), parent), heads.end());
      } else {  // linear, from a head
        const size_t h = rng() % heads.size();
        rev.revises = {heads[h]};
        heads.erase(heads.begin() + static_cast<std::ptrdiff_t>(h));
      }
    }
    heads.push_back(rev.id);
    revisions.push_back(rev);
  }
  return revisions;
}

std::string Describe(const std::vector<Revision>& graph) {
  std::vector<std::string> parts;
  for (const Revision& r : graph) {
    parts.push_back(absl::StrCat(absl::StrJoin(r.revises, "+"), "->", r.id,
                                 r.transactional ? "" : "(nt)", "x", r.statements));
  }
  return absl::StrJoin(parts, " ");
}

// ----------------------------------------------------------------- fixture

class CrashPropertyTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(db_.ok());
    schemactl_ = Binary("SCHEMACTL", SCHEMAD_SCHEMACTL);
    schemad_ = Binary("SCHEMAD", SCHEMAD_BINARY);
    ASSERT_EQ(access(schemactl_.c_str(), X_OK), 0) << schemactl_;
    ASSERT_EQ(access(schemad_.c_str(), X_OK), 0) << schemad_;
    std::random_device random;
    scratch_ = fs::temp_directory_path() /
               absl::StrCat("schemad_crash_", getpid(), "_", random(), "_", random());
    dir_ = scratch_ / "migrations";
    fs::create_directories(dir_);
    rng_.seed(static_cast<unsigned>(GetParam()) * 2654435761U);
    graph_ = RandomGraph(rng_);
    for (const Revision& rev : graph_) {
      by_id_[rev.id] = &rev;
      WriteRevision(rev);
    }
    Exec(db_.dsn(),
         "CREATE TABLE log (id serial PRIMARY KEY, rev text NOT NULL, stmt int NOT NULL, "
         "undone bool NOT NULL DEFAULT false, "
         "tool text DEFAULT split_part(current_setting('application_name'), ' ', 1))");
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(scratch_, ignored);
  }

  void WriteRevision(const Revision& rev) {
    std::string text = absl::StrCat("-- revision: ", rev.id, "\n");
    if (!rev.revises.empty()) {
      absl::StrAppend(&text, "-- revises: ", absl::StrJoin(rev.revises, ", "), "\n");
    }
    absl::StrAppend(&text, "-- message: ", rev.id, "\n");
    if (!rev.transactional) {
      absl::StrAppend(&text, "-- transactional: false\n");
    }
    absl::StrAppend(&text, "\n-- +upgrade\n");
    for (int i = 1; i <= rev.statements; ++i) {
      absl::StrAppend(&text, "SELECT pg_sleep(0.0", 2 + rng_() % 8, ");\n");
      absl::StrAppend(&text, "INSERT INTO log (rev, stmt) VALUES ('", rev.id, "', ", i, ");\n");
    }
    absl::StrAppend(&text, "\n-- +downgrade\nSELECT 1;\n");
    std::ofstream(dir_ / (rev.id + ".sql")) << text;
  }

  std::unique_ptr<Process> Start(const std::vector<std::string>& argv) {
    const std::string base = absl::StrCat("p", ++processes_);
    return std::make_unique<Process>(argv, scratch_ / (base + ".out"), scratch_ / (base + ".err"));
  }
  std::vector<std::string> Direct(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {schemactl_,    "--dsn", db_.dsn(),    "--dir",
                                     dir_.string(), "--who", "crash@test", "--no-progress"};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  // Runs schemactl --dsn to the end.
  std::pair<int, std::string> Schemactl(const std::vector<std::string>& args) {
    std::unique_ptr<Process> p = Start(Direct(args));
    const int code = p->Wait();
    return {code, p->Output()};
  }

  // Starts schemad on 127.0.0.1:0 over the database; its address.
  std::string StartSchemad() {
    std::ofstream(scratch_ / "dsn") << db_.dsn();
    fs::permissions(scratch_ / "dsn", fs::perms::owner_read | fs::perms::owner_write);
    std::ofstream(scratch_ / "schemad.yaml")
        << "listen: 127.0.0.1:0\nmigration_sets:\n  - {name: crash, directory: " << dir_.string()
        << "}\ndatabases:\n  - name: site\n    migration_set: crash\n    dsn_file: "
        << (scratch_ / "dsn").string() << "\n";
    schemad_process_ = Start({schemad_, "--config", (scratch_ / "schemad.yaml").string()});
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (absl::Now() < deadline) {
      const std::string text = schemad_process_->Stdout();
      const size_t at = text.find("listening on ");
      if (at != std::string::npos && text.find('\n', at) != std::string::npos) {
        return text.substr(at + 13, text.find('\n', at) - at - 13);
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    ADD_FAILURE() << "schemad did not start: " << schemad_process_->Output();
    return "";
  }

  // Starts `upgrade heads` through schemactl or through schemad and kills
  // that binary after `delay`.
  void KilledRun(bool kill_schemad, absl::Duration delay) {
    if (!kill_schemad) {
      std::unique_ptr<Process> run = Start(Direct({"upgrade", "heads"}));
      absl::SleepFor(delay);
      run->Kill();
      return;
    }
    const std::string address = StartSchemad();
    ASSERT_FALSE(address.empty());
    std::unique_ptr<Process> client = Start({schemactl_, "--server", address, "--database", "site",
                                             "--no-progress", "upgrade", "heads"});
    absl::SleepFor(delay);
    schemad_process_->Kill();
    client->Kill();  // it would retry, waiting for its server to come back
  }

  // ---------------------------------------------------------- the state

  struct State {
    std::set<std::string> rows;                       // alembic_version
    std::map<std::pair<std::string, int>, int> done;  // (rev, stmt) -> live log rows
    std::string marked;                               // needs-attention revision, "" when none
    std::string run;                                  // operation id left in schemad_run
  };

  State Read() {
    State state;
    // A run killed early may not have created schemad's tables yet.
    const Rows exist = Query(db_.dsn(),
                             "SELECT to_regclass('alembic_version') IS NOT NULL AND "
                             "to_regclass('schemad_state') IS NOT NULL AND "
                             "to_regclass('schemad_run') IS NOT NULL");
    const bool tables = exist == Rows{{"t"}};
    for (const auto& row :
         tables ? Query(db_.dsn(), "SELECT version_num FROM alembic_version") : Rows{}) {
      state.rows.insert(row[0]);
    }
    for (const auto& row :
         Query(db_.dsn(), "SELECT rev, stmt, count(*) FROM log WHERE NOT undone GROUP BY 1, 2")) {
      state.done[{row[0], std::stoi(row[1])}] = std::stoi(row[2]);
    }
    if (!tables) {
      return state;
    }
    const Rows marked = Query(db_.dsn(), "SELECT revision FROM schemad_state");
    state.marked = marked.empty() ? "" : marked[0][0];
    const Rows run = Query(db_.dsn(), "SELECT operation_id FROM schemad_run");
    state.run = run.empty() ? "" : run[0][0];
    return state;
  }

  // Revisions applied according to the version rows: theirs and their ancestors.
  std::set<std::string> Applied(const std::set<std::string>& rows) {
    std::set<std::string> applied;
    std::vector<std::string> todo(rows.begin(), rows.end());
    while (!todo.empty()) {
      const std::string id = todo.back();
      todo.pop_back();
      if (!applied.insert(id).second) {
        continue;
      }
      for (const std::string& parent : by_id_.at(id)->revises) {
        todo.push_back(parent);
      }
    }
    return applied;
  }

  int DoneCount(const State& state, const Revision& rev) {
    int done = 0;
    for (int i = 1; i <= rev.statements; ++i) {
      auto it = state.done.find({rev.id, i});
      done += it != state.done.end() ? 1 : 0;
    }
    return done;
  }

  // The properties, at any moment when no run is in progress.
  void CheckInvariants(const State& state, const std::string& when) {
    SCOPED_TRACE(when);
    const std::set<std::string> applied = Applied(state.rows);
    for (const auto& [key, count] : state.done) {
      EXPECT_EQ(count, 1) << "statement " << key.second << " of " << key.first << " took effect "
                          << count << " times";
    }
    for (const Revision& rev : graph_) {
      const int done = DoneCount(state, rev);
      if (applied.count(rev.id) > 0) {
        EXPECT_EQ(done, rev.statements) << rev.id << " is in alembic_version but not all of it ran";
      } else if (rev.transactional) {
        EXPECT_EQ(done, 0) << "transactional " << rev.id << " half applied";
      } else if (done > 0) {
        EXPECT_EQ(state.marked, rev.id)
            << "non-transactional " << rev.id << " stopped part-way without a needs-attention mark";
      }
    }
    if (!state.marked.empty()) {
      const Revision& rev = *by_id_.at(state.marked);
      EXPECT_FALSE(rev.transactional) << "needs attention for transactional " << rev.id;
      EXPECT_EQ(applied.count(rev.id), 0u) << "needs attention for applied " << rev.id;
    }
  }

  // Waits until no session of a run is left (PostgreSQL's connection check
  // ends a killed client's statement within about a second).
  void WaitForRunsToStop() {
    const std::string tagged =
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
        "(application_name LIKE 'schemactl op-%' OR application_name LIKE 'schemad op-%')";
    Rows left = Query(db_.dsn(), tagged);
    for (const absl::Time deadline = absl::Now() + absl::Seconds(10);
         left != Rows{{"0"}} && absl::Now() < deadline;) {
      absl::SleepFor(absl::Milliseconds(20));
      left = Query(db_.dsn(), tagged);
    }
    ASSERT_EQ(left, Rows{{"0"}}) << "a killed run's session outlived its client by 10s";
  }

  // What an operator does: settle an interrupted revision by hand (finish
  // it, or undo it) and say so with resolve, then upgrade heads.
  void Recover() {
    for (int attempt = 0; attempt < 4; ++attempt) {
      const auto [code, output] = Schemactl({"upgrade", "heads"});
      if (code == kOk) {
        return;
      }
      ASSERT_EQ(code, kNeedsAttention) << output;
      const State state = Read();
      ASSERT_FALSE(state.marked.empty()) << output;
      const Revision& rev = *by_id_.at(state.marked);
      if (rng_() % 2 == 0) {
        for (int i = 1; i <= rev.statements; ++i) {
          if (state.done.count({rev.id, i}) == 0) {
            Exec(db_.dsn(), absl::StrCat("INSERT INTO log (rev, stmt, tool) VALUES ('", rev.id,
                                         "', ", i, ", 'operator')"));
          }
        }
        const auto [resolved, resolve_output] = Schemactl({"resolve", "--applied"});
        ASSERT_EQ(resolved, kOk) << resolve_output;
      } else {
        Exec(db_.dsn(), absl::StrCat("UPDATE log SET undone = true WHERE rev = '", rev.id, "'"));
        const auto [resolved, resolve_output] = Schemactl({"resolve", "--rolled-back"});
        ASSERT_EQ(resolved, kOk) << resolve_output;
      }
    }
    FAIL() << "still not at heads after 4 rounds of recovery";
  }

  TestDatabase db_;
  std::string schemactl_;
  std::string schemad_;
  fs::path scratch_;
  fs::path dir_;
  std::mt19937 rng_;
  std::vector<Revision> graph_;
  std::map<std::string, const Revision*> by_id_;
  std::unique_ptr<Process> schemad_process_;
  int processes_ = 0;
};

TEST_P(CrashPropertyTest, EveryRevisionRunsAtMostOnceWhateverIsKilledWhen) {
  SCOPED_TRACE(absl::StrCat("seed ", GetParam(), ": ", Describe(graph_)));
  // One killed run, or two: the second starts from whatever the first left
  // (a database that needs attention refuses it at once).
  std::set<std::string> killed_runs;
  const int kills = 1 + GetParam() % 2;
  for (int k = 0; k < kills; ++k) {
    const bool kill_schemad = (GetParam() / 2 + k) % 2 == 1;
    const absl::Duration delay = absl::Milliseconds(static_cast<int>(rng_() % 1200));
    SCOPED_TRACE(absl::StrCat("kill ", k + 1, ": ", kill_schemad ? "schemad" : "schemactl",
                              " after ", absl::FormatDuration(delay)));
    KilledRun(kill_schemad, delay);
    WaitForRunsToStop();
    if (HasFatalFailure()) {
      return;
    }
    const State state = Read();
    CheckInvariants(state, "after the kill");
    if (!state.run.empty()) {
      killed_runs.insert(state.run);
    }
  }
  Recover();
  if (HasFatalFailure()) {
    return;
  }
  const State recovered = Read();
  CheckInvariants(recovered, "after recovery");
  std::set<std::string> heads;
  std::set<std::string> parents;
  for (const Revision& rev : graph_) {
    heads.insert(rev.id);
    parents.insert(rev.revises.begin(), rev.revises.end());
  }
  for (const std::string& parent : parents) {
    heads.erase(parent);
  }
  EXPECT_EQ(recovered.rows, heads);
  EXPECT_EQ(recovered.marked, "");
  EXPECT_EQ(recovered.run, "");
  for (const Revision& rev : graph_) {
    EXPECT_EQ(DoneCount(recovered, rev), rev.statements) << rev.id;
  }
  // Every run that died was recorded, once, by the run that noticed it.
  RecordProperty("killed_runs_left_behind", static_cast<int>(killed_runs.size()));
  for (const std::string& operation : killed_runs) {
    EXPECT_EQ(Query(db_.dsn(), absl::StrCat("SELECT count(*) FROM schemad_history WHERE "
                                            "outcome = 'interrupted' AND operation_id = '",
                                            operation, "'")),
              (Rows{{"1"}}))
        << "no `interrupted` history row for " << operation;
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, CrashPropertyTest, ::testing::Range(1, 13));

}  // namespace
}  // namespace schemad::cli
