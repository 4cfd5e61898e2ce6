// schemactl under faults, end to end: the real binary ($SCHEMACTL) run as
// subprocesses against a fresh PostgreSQL database per test
// (tests/testing/pg_fixture.h), the way operators and deploy jobs run it —
// many at once, killed with SIGKILL mid-revision, blocked by another
// session's lock, with wrong credentials — and real Alembic (Debian's
// python3-alembic under /usr/bin/python3) handing the same database back and
// forth with schemactl. The in-process command tests are cli_pgtest.cc.
//
// The binary is $SCHEMACTL, else the one this build made (SCHEMAD_SCHEMACTL).
// Without a cluster, without the binary, or without Alembic these tests
// fail; they never skip.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/pg_fixture.h"
#include "tests/testing/ports.h"

extern char** environ;

namespace schemad::cli {
namespace {

namespace fs = std::filesystem;
using ::schemad::testing::Exec;
using ::schemad::testing::Query;
using ::schemad::testing::Rows;
using ::schemad::testing::TestDatabase;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// Exit codes, as docs/cli.md documents them (the binary is what is tested).
constexpr int kOk = 0;
constexpr int kFailed = 1;
constexpr int kUsage = 2;
constexpr int kNotAtHead = 3;
constexpr int kNeedsAttention = 4;
constexpr int kUnavailable = 5;

// ------------------------------------------------------------ processes

struct Output {
  int code = -1;   // exit code; -1 when killed by a signal
  int signal = 0;  // the signal that killed it
  std::string out;
  std::string err;
  absl::Duration took;
};

std::ostream& operator<<(std::ostream& os, const Output& o) {
  return os << "exit " << o.code << " signal " << o.signal << "\n--- stdout\n"
            << o.out << "--- stderr\n"
            << o.err;
}

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// A child process with stdout and stderr in files (no pipes to drain).
class Process {
 public:
  // Runs argv[0] (a path) with the test's environment minus what could point
  // it elsewhere (SCHEMAD_*, SCHEMACTL_*, DATABASE_URL, PG*, PYTHON*, TERM,
  // NO_COLOR), plus
  // `env`, in the directory `cwd` (empty: the test's).
  Process(const std::vector<std::string>& argv, const std::vector<std::string>& env,
          const fs::path& scratch, const fs::path& cwd = {}) {
    static std::atomic<int> counter{0};
    const std::string base = absl::StrCat("proc", counter.fetch_add(1));
    out_path_ = scratch / (base + ".out");
    err_path_ = scratch / (base + ".err");
    std::vector<std::string> environment;
    for (char** e = environ; *e != nullptr; ++e) {
      const absl::string_view entry(*e);
      if (absl::StartsWith(entry, "SCHEMAD_") || absl::StartsWith(entry, "SCHEMACTL_") ||
          absl::StartsWith(entry, "DATABASE_URL=") || absl::StartsWith(entry, "TERM=") ||
          absl::StartsWith(entry, "NO_COLOR=") || absl::StartsWith(entry, "PG") ||
          absl::StartsWith(entry, "PYTHON")) {
        continue;
      }
      environment.emplace_back(entry);
    }
    environment.insert(environment.end(), env.begin(), env.end());
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
    if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());
    posix_spawn_file_actions_addopen(&actions, 1, out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0600);
    posix_spawn_file_actions_addopen(&actions, 2, err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0600);
    start_ = absl::Now();
    const int rc = posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      ADD_FAILURE() << "cannot start " << argv[0] << ": " << std::strerror(rc);
      pid_ = -1;
    }
  }
  ~Process() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  // What the process has written to stderr so far.
  std::string ErrSoFar() const { return ReadAll(err_path_); }

  // Waits for the process; after `timeout` kills it and records a failure.
  Output Wait(absl::Duration timeout = absl::Seconds(60)) {
    Output output;
    if (pid_ <= 0) {
      return output;
    }
    int status = 0;
    const absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      const pid_t done = waitpid(pid_, &status, WNOHANG);
      if (done == pid_) {
        break;
      }
      if (absl::Now() > deadline) {
        ADD_FAILURE() << "process " << pid_ << " still running after "
                      << absl::FormatDuration(timeout) << "; killed";
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        break;
      }
      absl::SleepFor(absl::Milliseconds(5));
    }
    pid_ = -1;
    output.took = absl::Now() - start_;
    if (WIFEXITED(status)) {
      output.code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
      output.signal = WTERMSIG(status);
    }
    output.out = ReadAll(out_path_);
    output.err = ReadAll(err_path_);
    return output;
  }

 private:
  pid_t pid_ = -1;
  absl::Time start_;
  fs::path out_path_;
  fs::path err_path_;
};

// Polls `sql` until it returns `want` (or `timeout` passes); the last answer.
Rows WaitForRows(const std::string& dsn, const std::string& sql, const Rows& want,
                 absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  Rows rows = Query(dsn, sql);
  while (rows != want && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
    rows = Query(dsn, sql);
  }
  return rows;
}

// Samples, from its own connection, whether a revision's version row and its
// table are visible together (both read by one statement, so under one
// snapshot), until destroyed; records every sample where they are not.
class HalfStateSampler {
 public:
  // `versions`: the version rows that mean the revision is applied (it and
  // its descendants); `table`: a table it creates; `log_rev`: the value it
  // inserts into log.rev.
  HalfStateSampler(const std::string& dsn, const std::vector<std::string>& versions,
                   const std::string& table, const std::string& log_rev)
      : thread_([this, dsn, versions, table, log_rev] { Loop(dsn, versions, table, log_rev); }) {}
  ~HalfStateSampler() { Stop(); }

  // Stops sampling; the samples that showed a half-applied revision.
  std::vector<std::string> Stop() {
    stop_ = true;
    if (thread_.joinable()) {
      thread_.join();
    }
    return half_states_;
  }
  int samples() const { return samples_; }

 private:
  void Loop(const std::string& dsn, const std::vector<std::string>& versions,
            const std::string& table, const std::string& log_rev) {
    try {
      pqxx::connection conn(dsn);
      std::vector<std::string> quoted;
      for (const std::string& version : versions) {
        quoted.push_back(conn.quote(version));
      }
      const std::string sql =
          absl::StrCat("SELECT EXISTS (SELECT 1 FROM alembic_version WHERE version_num IN (",
                       absl::StrJoin(quoted, ", "),
                       ")), EXISTS (SELECT 1 FROM pg_class WHERE relname = ", conn.quote(table),
                       " AND relnamespace = 'public'::regnamespace), "
                       "EXISTS (SELECT 1 FROM log WHERE rev = ",
                       conn.quote(log_rev), ")");
      while (!stop_) {
        pqxx::nontransaction tx(conn);
        const pqxx::row row = tx.exec1(sql);
        const std::string sample = absl::StrCat(row[0].c_str(), row[1].c_str(), row[2].c_str());
        if (sample != "fff" && sample != "ttt") {
          half_states_.push_back(sample);
        }
        ++samples_;
        tx.commit();
        absl::SleepFor(absl::Milliseconds(10));
      }
    } catch (const std::exception& e) {
      half_states_.push_back(absl::StrCat("sampler failed: ", e.what()));
    }
  }

  std::atomic<bool> stop_{false};
  std::atomic<int> samples_{0};
  std::vector<std::string> half_states_;
  std::thread thread_;
};

// Advisory locks held in the current database (other tests may share the cluster).
constexpr char kAdvisoryLocks[] =
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND "
    "database = (SELECT oid FROM pg_database WHERE datname = current_database())";

// ------------------------------------------------------------- fixture

class CliFaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(db_.ok());
    // $SCHEMACTL, else the binary of this build tree.
    const char* schemactl = std::getenv("SCHEMACTL");
    schemactl_ = schemactl != nullptr && *schemactl != '\0' ? schemactl : SCHEMAD_SCHEMACTL;
    ASSERT_EQ(access(schemactl_.c_str(), X_OK), 0)
        << "SCHEMACTL=" << schemactl_ << " is not an executable file";
    std::random_device random;
    scratch_ = fs::temp_directory_path() /
               absl::StrCat("schemactl_faults_", getpid(), "_", random(), "_", random());
    dir_ = scratch_ / "migrations";
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(scratch_, ignored);
  }

  // Writes DIR/<id>_rev.sql; returns its file name.
  std::string Write(const std::string& id, const std::string& revises, const std::string& up,
                    const std::string& down, const std::string& extra_headers = "") {
    std::string text = absl::StrCat("-- revision: ", id, "\n");
    if (!revises.empty()) {
      absl::StrAppend(&text, "-- revises: ", revises, "\n");
    }
    absl::StrAppend(&text, "-- message: revision ", id, "\n", extra_headers, "-- +upgrade\n", up,
                    "\n\n-- +downgrade\n", down, "\n");
    const std::string name = id + "_rev.sql";
    std::ofstream(dir_ / name) << text;
    return name;
  }

  // The 1-based line of the first line of DIR/`name` that contains `needle`.
  int LineOf(const std::string& name, const std::string& needle) {
    const std::vector<std::string> lines = absl::StrSplit(ReadAll(dir_ / name), '\n');
    for (size_t i = 0; i < lines.size(); ++i) {
      if (absl::StrContains(lines[i], needle)) {
        return static_cast<int>(i) + 1;
      }
    }
    ADD_FAILURE() << needle << " is not in " << name;
    return 0;
  }

  std::vector<std::string> Argv(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {schemactl_,    "--dsn",       db_.dsn(),
                                     "--dir",       dir_.string(), "--who",
                                     "faults@test", "--lock-wait", "30s"};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  std::unique_ptr<Process> Start(const std::vector<std::string>& args) {
    return std::make_unique<Process>(Argv(args), std::vector<std::string>{}, scratch_);
  }
  // Runs schemactl to the end; the cluster's password must not show anywhere.
  Output Schemactl(const std::vector<std::string>& args,
                   absl::Duration timeout = absl::Seconds(60)) {
    Output output = Process(Argv(args), {}, scratch_).Wait(timeout);
    ExpectNoPassword(output);
    return output;
  }
  // Runs schemactl with `args` only (no --dsn, --dir added) and `env`.
  // (`program`, when given, runs instead of schemactl: argv is `program`.)
  Output SchemactlRaw(const std::vector<std::string>& args, const std::vector<std::string>& env,
                      const std::vector<std::string>& program = {}) {
    std::vector<std::string> argv =
        program.empty() ? std::vector<std::string>{schemactl_} : program;
    argv.insert(argv.end(), args.begin(), args.end());
    Output output = Process(argv, env, scratch_).Wait();
    ExpectNoPassword(output);
    return output;
  }
  void ExpectNoPassword(const Output& output) {
    EXPECT_THAT(output.out, Not(HasSubstr(db_.cluster().password)));
    EXPECT_THAT(output.err, Not(HasSubstr(db_.cluster().password)));
  }

  Rows Q(const std::string& sql) { return Query(db_.dsn(), sql); }
  Rows VersionRows() { return Q("SELECT version_num FROM alembic_version ORDER BY 1"); }
  bool TableExists(const std::string& name) {
    return Q(absl::StrCat("SELECT to_regclass('public.", name, "') IS NOT NULL")) == Rows{{"t"}};
  }
  Rows LogRows() { return Q("SELECT rev FROM log ORDER BY id"); }
  // Successful 'up' runs per revision, from schemad_history.
  Rows SuccessfulUps() {
    return Q(
        "SELECT revision, count(*) FROM schemad_history WHERE direction = 'up' AND "
        "outcome = 'success' GROUP BY revision ORDER BY min(id)");
  }

  TestDatabase db_;
  std::string schemactl_;
  fs::path scratch_;
  fs::path dir_;
};

constexpr char kLogTable[] =
    "CREATE TABLE log (id serial PRIMARY KEY, rev text NOT NULL, "
    "dir text NOT NULL DEFAULT 'up', "
    "tool text DEFAULT split_part(current_setting('application_name'), ' ', 1));";

std::string Rev(int i) { return absl::StrCat("f", i, "f", i, "f", i, "f", i, "f", i, "f", i); }

// Revision i (1-based) of a linear chain: table t_i and a log row. Revision 1
// also creates the log table.
std::string UpSql(int i, const std::string& extra = "") {
  return absl::StrCat(i == 1 ? kLogTable : "", i == 1 ? "\n" : "", "CREATE TABLE t_", i,
                      " (id int);\nINSERT INTO log (rev) VALUES ('", Rev(i), "');", extra);
}
std::string DownSql(int i) {
  return i == 1 ? "DROP TABLE log;" : absl::StrCat("DROP TABLE t_", i, ";");
}

// ------------------------------------------------------- (a) concurrency

// The number of `{"event":"waiting_for_lock",...}` progress lines in `err`
// (--json progress: one JSON object a line).
int LockWaitEvents(const std::string& err) {
  int count = 0;
  for (absl::string_view line : absl::StrSplit(err, '\n')) {
    count +=
        absl::StartsWith(line, "{") && absl::StrContains(line, "\"event\":\"waiting_for_lock\"")
            ? 1
            : 0;
  }
  return count;
}

// Issue 14: usage errors say what is wrong, in text and, with --json, as
// JSON; a verb that would create schemad's tables refuses a directory with
// no revision files before connecting; --dir is not silently ignored with
// --server.
TEST_F(CliFaultsTest, UsageErrorsNameTheProblemInTextAndJson) {
  const Output typo = Schemactl({"upgrad"});
  EXPECT_EQ(typo.code, kUsage);
  EXPECT_THAT(typo.err, HasSubstr("unknown command 'upgrad'; did you mean 'upgrade'?"));
  const Output unknown = SchemactlRaw({"--lock-wait", "5s", "frobnicate"}, {});
  EXPECT_EQ(unknown.code, kUsage);
  EXPECT_THAT(unknown.err,
              AllOf(HasSubstr("unknown command 'frobnicate'"), Not(HasSubstr("did you mean"))));

  const Output json = Schemactl({"--json", "curent"});
  EXPECT_EQ(json.code, kUsage);
  const nlohmann::json parsed = nlohmann::json::parse(json.out, nullptr, false);
  ASSERT_TRUE(parsed.is_object()) << json.out;
  EXPECT_EQ(parsed["ok"], false);
  EXPECT_EQ(parsed["error"]["exit_code"], kUsage);
  EXPECT_THAT(parsed["error"]["message"].get<std::string>(), HasSubstr("did you mean 'current'?"));
  const nlohmann::json bad_flag =
      nlohmann::json::parse(Schemactl({"--json", "--bogus", "current"}).out, nullptr, false);
  ASSERT_TRUE(bad_flag.is_object());
  EXPECT_THAT(bad_flag["error"]["message"].get<std::string>(), HasSubstr("--bogus"));

  const fs::path empty = dir_ / "empty";
  fs::create_directories(empty);
  const Output nothing = SchemactlRaw({"--dsn", db_.dsn(), "--dir", empty.string(), "upgrade"}, {});
  EXPECT_EQ(nothing.code, kUsage);
  EXPECT_THAT(nothing.err, AllOf(HasSubstr(empty.string()), HasSubstr("no revision files")));
  EXPECT_FALSE(TableExists("alembic_version"));
  EXPECT_FALSE(TableExists("schemad_history"));

  const Output both = SchemactlRaw(
      {"--server", "127.0.0.1:1", "--database", "a", "--dir", dir_.string(), "current"}, {});
  EXPECT_EQ(both.code, kUsage);
  EXPECT_THAT(both.err, HasSubstr("--dir names a local migration directory"));
}

// schemactl.ini (project_config.h): found from a subdirectory, paths taken
// from its own directory, the DSN kept out of every message; an environment
// variable beats it and a flag beats both; a bad setting is a usage error
// naming file and line.
TEST_F(CliFaultsTest, ProjectSettingsAreFoundUpwardsAndYieldToEnvironmentAndFlags) {
  const fs::path project = scratch_ / "project";
  const fs::path deep = project / "src" / "control_layer";
  fs::create_directories(project / "db" / "revisions");
  fs::create_directories(deep);
  fs::create_directories(scratch_ / "other");
  const auto write = [](const fs::path& path, const std::string& text) {
    std::ofstream(path) << text;
  };
  write(project / "db" / "revisions" / "p1.sql",
        "-- revision: p1p1p1p1p1p1\n\n-- +upgrade\nCREATE TABLE public.p1 (id int);\n\n"
        "-- +downgrade\nDROP TABLE public.p1;\n");
  write(scratch_ / "other" / "o1.sql",
        "-- revision: o1o1o1o1o1o1\n\n-- +upgrade\nSELECT 1;\n\n-- +downgrade\nSELECT 1;\n");
  write(
      project / "schemactl.ini",
      absl::StrCat("# the project's settings\n[schemactl]\ndir = db/revisions   ; from this file\n",
                   "dsn = ", db_.dsn(), "\nlock-wait = 5s\n"));
  const auto run = [&](const std::vector<std::string>& args, const std::vector<std::string>& env,
                       const fs::path& cwd) {
    std::vector<std::string> argv = {schemactl_};
    argv.insert(argv.end(), args.begin(), args.end());
    Output output = Process(argv, env, scratch_, cwd).Wait(absl::Seconds(60));
    ExpectNoPassword(output);
    return output;
  };

  Output up = run({"upgrade"}, {}, deep);
  ASSERT_EQ(up.code, 0) << up.err;
  EXPECT_EQ(VersionRows(), (Rows{{"p1p1p1p1p1p1"}}));
  EXPECT_EQ(run({"heads"}, {}, deep).out, "p1p1p1p1p1p1 (head)\n");
  // The environment beats the file, a flag beats both.
  const std::string other = (scratch_ / "other").string();
  EXPECT_EQ(run({"heads"}, {"SCHEMAD_DIR=" + other}, deep).out, "o1o1o1o1o1o1 (head)\n");
  EXPECT_EQ(run({"--dir", other, "heads"}, {"SCHEMAD_DIR=/nowhere"}, deep).out,
            "o1o1o1o1o1o1 (head)\n");
  // A DSN from the file is named by where it came from, never quoted.
  write(scratch_ / "bad-dsn.ini",
        "[schemactl]\ndsn = postgresql://u:pw@h:notaport/x\ndir = project/db/revisions\n");
  Output bad_dsn =
      run({"current"}, {"SCHEMACTL_CONFIG=" + (scratch_ / "bad-dsn.ini").string()}, deep);
  EXPECT_EQ(bad_dsn.code, kUsage);
  EXPECT_THAT(bad_dsn.err, AllOf(HasSubstr("bad-dsn.ini:2: dsn"), Not(HasSubstr("pw"))));
  // --config none: no file (the default directory does not exist here).
  Output none = run({"--config", "none", "heads"}, {}, deep);
  EXPECT_NE(none.code, 0);
  EXPECT_THAT(none.err, HasSubstr("migrations"));
  // Mistakes name the file and line, and change nothing.
  write(project / "schemactl.ini", "[schemactl]\ndir = db/revisions\ndri = x\n");
  Output typo = run({"upgrade"}, {}, deep);
  EXPECT_EQ(typo.code, kUsage);
  EXPECT_THAT(typo.err, HasSubstr("schemactl.ini:3: unknown setting 'dri'; did you mean 'dir'?"));
  write(project / "schemactl.ini", "[schemactl]\nlock-wait = soon\n");
  EXPECT_THAT(run({"heads"}, {}, deep).err, HasSubstr("schemactl.ini:2: lock-wait"));
  write(project / "schemactl.ini", "[alembic]\nscript_location = x\n");
  EXPECT_THAT(run({"heads"}, {}, deep).err,
              HasSubstr("schemactl.ini:1: unknown section '[alembic]'"));
  EXPECT_EQ(VersionRows(), (Rows{{"p1p1p1p1p1p1"}}));
}

// Issue 14: a server and a DSN both set: the more specific wins (a flag over
// the environment), and given the same way it is a usage error naming both,
// never a silent choice.
TEST_F(CliFaultsTest, ServerOrDsnTheMoreSpecificWinsAndATieIsAnError) {
  Write("r1r1r1r1r1r1", "", "CREATE TABLE public.t1 (id int);", "DROP TABLE public.t1;");
  const Output up = Schemactl({"upgrade"});
  ASSERT_EQ(up.code, 0) << up.err;
  const std::string nowhere = absl::StrCat("127.0.0.1:", testing::UnusedLoopbackPort());
  // --dsn (flag) over SCHEMAD_SERVER (environment): runs on the database.
  const Output direct = SchemactlRaw({"--dsn", db_.dsn(), "--dir", dir_.string(), "current"},
                                     {"SCHEMAD_SERVER=" + nowhere, "SCHEMAD_DATABASE=site-a"});
  EXPECT_EQ(direct.code, 0) << direct.err;
  EXPECT_THAT(direct.out, HasSubstr("(head)"));
  // --server (flag) over SCHEMAD_DSN (environment): goes to the server,
  // which is not there.
  const Output remote =
      SchemactlRaw({"--server", nowhere, "--database", "site-a", "--timeout", "1s", "current"},
                   {"SCHEMAD_DSN=" + db_.dsn()});
  EXPECT_EQ(remote.code, kUnavailable) << remote.err;
  EXPECT_THAT(remote.err, HasSubstr(nowhere));
  // The same level: a usage error that names both and quotes no DSN.
  const Output tie =
      SchemactlRaw({"current"}, {"SCHEMAD_SERVER=" + nowhere, "SCHEMAD_DATABASE=site-a",
                                 "SCHEMAD_DSN=" + db_.dsn(), "SCHEMAD_DIR=" + dir_.string()});
  EXPECT_EQ(tie.code, kUsage);
  EXPECT_THAT(tie.err, AllOf(HasSubstr("both a server and a DSN are given in the environment"),
                             HasSubstr("SCHEMAD_DSN")));
}

// Issue 14: colour only for a terminal, never with NO_COLOR or into a pipe
// unless asked (--color=always), off with --color=never. The terminal is a
// pseudo-terminal from script(1).
TEST_F(CliFaultsTest, ColourOnATerminalUnlessNoColorOrNever) {
  const std::string red_error = "\033[1;31mschemactl: error:\033[0m";
  const std::vector<std::string> failing = {"--dir", (scratch_ / "nowhere").string(), "heads"};
  const auto on_terminal = [&](const std::string& flags, std::vector<std::string> env) {
    env.push_back("TERM=xterm-256color");
    std::string command = absl::StrCat(schemactl_, " ", flags);
    for (const std::string& arg : failing) absl::StrAppend(&command, " ", arg);
    return SchemactlRaw({}, env, {"/usr/bin/script", "-qec", command, "/dev/null"});
  };
  EXPECT_THAT(on_terminal("", {}).out, HasSubstr(red_error));
  EXPECT_THAT(on_terminal("", {"NO_COLOR=1"}).out,
              AllOf(Not(HasSubstr("\033[")), HasSubstr("schemactl: error:")));
  EXPECT_THAT(on_terminal("--color=never", {}).out, Not(HasSubstr("\033[")));
  std::vector<std::string> args = {"--color=always"};
  args.insert(args.end(), failing.begin(), failing.end());
  EXPECT_THAT(SchemactlRaw(args, {}).err, HasSubstr(red_error));        // into a pipe, as asked
  EXPECT_THAT(SchemactlRaw(failing, {}).err, Not(HasSubstr("\033[")));  // a pipe: none
  args[0] = "--color=sometimes";
  EXPECT_EQ(SchemactlRaw(args, {}).code, kUsage);
}

TEST_F(CliFaultsTest, TwentyConcurrentEnsureHeadApplyEachRevisionOnce) {
  // Revision 1 is applied; revisions 2..6 (five) are pending. Revision 2
  // reads table `gate`, which the test holds locked: whoever takes the
  // migration lock first stays inside revision 2 until the test lets go, so
  // the other racers find the database behind and must wait for the lock.
  // The test lets go only once every other racer has reported that wait:
  // the racers provably overlapped, whatever the scheduling.
  Write(Rev(1), "", UpSql(1, "\nCREATE TABLE gate (id int);"), DownSql(1));
  Write(Rev(2), Rev(1), UpSql(2, "\nSELECT count(*) FROM gate;"), DownSql(2));
  for (int i = 3; i <= 6; ++i) {
    Write(Rev(i), Rev(i - 1), UpSql(i), DownSql(i));
  }
  ASSERT_EQ(Schemactl({"upgrade", Rev(1)}).code, kOk);
  pqxx::connection gatekeeper(db_.dsn());
  auto gate = std::make_unique<pqxx::work>(gatekeeper);
  gate->exec("LOCK TABLE gate IN ACCESS EXCLUSIVE MODE");

  constexpr int kRacers = 20;
  std::vector<std::unique_ptr<Process>> racers;
  for (int i = 0; i < kRacers; ++i) {
    racers.push_back(Start({"--json", "ensure-head"}));
  }
  // One racer's revision 2 waits for the gate ...
  EXPECT_EQ(
      WaitForRows(db_.dsn(),
                  "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                  "AND application_name LIKE 'schemactl op-%' AND wait_event_type = 'Lock' AND "
                  "query LIKE '%FROM gate%'",
                  Rows{{"1"}}, absl::Seconds(30)),
      (Rows{{"1"}}));
  // ... and every other racer waits for the migration lock it holds.
  int waiting = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  for (;;) {
    waiting = 0;
    for (const auto& racer : racers) {
      waiting += LockWaitEvents(racer->ErrSoFar()) > 0 ? 1 : 0;
    }
    if (waiting == kRacers - 1 || absl::Now() > deadline) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(waiting, kRacers - 1) << "racers that reported waiting for the migration lock";
  gate->abort();
  gate.reset();

  int applied_all = 0;
  int revisions_run = 0;
  int waited = 0;
  for (auto& racer : racers) {
    const Output output = racer->Wait();
    ExpectNoPassword(output);
    ASSERT_EQ(output.code, kOk) << output;
    const nlohmann::json json = nlohmann::json::parse(output.out, nullptr, false);
    ASSERT_FALSE(json.is_discarded()) << output;
    EXPECT_EQ(json["ok"], true);
    EXPECT_EQ(json["heads_after"], nlohmann::json::array({Rev(6)}));
    const int run = json["revisions_run"].get<int>();
    revisions_run += run;
    applied_all += run == 5 ? 1 : 0;
    if (LockWaitEvents(output.err) > 0) {
      ++waited;
      // A racer that waited took the lock after the winner, re-read the
      // state under it and found nothing left to do.
      EXPECT_EQ(run, 0) << output;
      EXPECT_EQ(json["took_lock"], true) << output;
    }
  }
  // One racer applied all five, under the lock; the others waited for it
  // and found them applied.
  EXPECT_EQ(applied_all, 1);
  EXPECT_EQ(revisions_run, 5);
  EXPECT_EQ(waited, kRacers - 1);
  EXPECT_EQ(VersionRows(), (Rows{{Rev(6)}}));
  EXPECT_EQ(LogRows(), (Rows{{Rev(1)}, {Rev(2)}, {Rev(3)}, {Rev(4)}, {Rev(5)}, {Rev(6)}}));
  EXPECT_EQ(SuccessfulUps(), (Rows{{Rev(1), "1"},
                                   {Rev(2), "1"},
                                   {Rev(3), "1"},
                                   {Rev(4), "1"},
                                   {Rev(5), "1"},
                                   {Rev(6), "1"}}));
  EXPECT_EQ(Q("SELECT count(*) FROM schemad_history WHERE outcome <> 'success'"), (Rows{{"0"}}));
  // Every racer has exited: no advisory lock is left, nor any connection.
  EXPECT_EQ(WaitForRows(db_.dsn(), kAdvisoryLocks, Rows{{"0"}}), (Rows{{"0"}}));
  EXPECT_EQ(WaitForRows(db_.dsn(),
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                        "current_database() AND application_name LIKE 'schemactl%'",
                        Rows{{"0"}}),
            (Rows{{"0"}}));
}

// ----------------------------------------------- (b) failure in revision 3

TEST_F(CliFaultsTest, FailureInRevisionThreeOfFiveStopsAtTwoAndResumesAfterTheFix) {
  for (int i = 1; i <= 5; ++i) {
    if (i == 3) {
      continue;
    }
    Write(Rev(i), i == 1 ? "" : Rev(i - 1), UpSql(i), DownSql(i));
  }
  // The error is on the third line of a multi-line statement: PostgreSQL's
  // position, not the statement's first line, gives the line.
  const std::string broken = Write(Rev(3), Rev(2),
                                   UpSql(3,
                                         "\nINSERT INTO log (rev)\n  SELECT 'x'\n"
                                         "  FROM log WHERE no_such_column = 1;"),
                                   DownSql(3));
  const int line = LineOf(broken, "no_such_column");

  const Output failed = Schemactl({"--json", "upgrade", "--transaction", "per-revision"});
  EXPECT_EQ(failed.code, kFailed) << failed;
  EXPECT_THAT(failed.err, AllOf(HasSubstr(absl::StrCat("revision ", Rev(3), " failed at ")),
                                HasSubstr(absl::StrCat(broken, ":", line, ": SQLSTATE 42703")),
                                HasSubstr("no_such_column")));
  const nlohmann::json json = nlohmann::json::parse(failed.out, nullptr, false);
  ASSERT_FALSE(json.is_discarded()) << failed;
  EXPECT_EQ(json["ok"], false);
  EXPECT_EQ(json["error"]["exit_code"], kFailed);
  EXPECT_EQ(json["error"]["code"], "FAILED_PRECONDITION");

  // At revision 2: revision 3's table and log row were rolled back with it.
  EXPECT_EQ(VersionRows(), (Rows{{Rev(2)}}));
  EXPECT_EQ(LogRows(), (Rows{{Rev(1)}, {Rev(2)}}));
  EXPECT_FALSE(TableExists("t_3"));
  EXPECT_EQ(Q(absl::StrCat("SELECT count(*) FROM schemad_history WHERE revision = '", Rev(3),
                           "' AND direction = 'up' AND outcome = 'failed' AND error LIKE '%",
                           broken, ":", line, "%42703%'")),
            (Rows{{"1"}}));
  EXPECT_EQ(Schemactl({"current", "--check-heads"}).code, kNotAtHead);

  // Fixed (the failed revision was never applied, so editing it is fine).
  Write(Rev(3), Rev(2), UpSql(3), DownSql(3));
  const Output fixed = Schemactl({"upgrade"});
  ASSERT_EQ(fixed.code, kOk) << fixed;
  EXPECT_THAT(fixed.out, HasSubstr("Upgraded 3 revisions"));
  EXPECT_EQ(VersionRows(), (Rows{{Rev(5)}}));
  EXPECT_EQ(LogRows(), (Rows{{Rev(1)}, {Rev(2)}, {Rev(3)}, {Rev(4)}, {Rev(5)}}));
  EXPECT_EQ(Q(absl::StrCat("SELECT outcome FROM schemad_history WHERE revision = '", Rev(3),
                           "' ORDER BY id")),
            (Rows{{"failed"}, {"success"}}));
  EXPECT_EQ(Schemactl({"current", "--check-heads"}).code, kOk);
}

// --------------------------------------------------- (c) SIGKILL mid-revision

// r1: log table; r2: table x, a log row, then a sleep as long as
// sleep_config says (a table the test controls, so a re-run need not sleep);
// r3: table y. With sleep_config.no_check, r2 first turns PostgreSQL's
// client_connection_check_interval off for its session, as on a server
// that has no such check (before PostgreSQL 14, or not on Linux): its
// statement then outlives a killed client.
class CliFaultsSigkillTest : public CliFaultsTest {
 protected:
  void SetUp() override {
    CliFaultsTest::SetUp();
    if (HasFatalFailure()) {
      return;
    }
    Exec(db_.dsn(),
         "CREATE TABLE sleep_config (seconds float8, no_check bool); "
         "INSERT INTO sleep_config VALUES (0, false)");
    Write(Rev(1), "", kLogTable, "DROP TABLE log;");
    Write(Rev(2), Rev(1),
          absl::StrCat("CREATE TABLE x (id int);\nINSERT INTO log (rev) VALUES ('", Rev(2), "');\n",
                       kNoCheck, "\nSELECT pg_sleep((SELECT seconds FROM sleep_config));"),
          "DROP TABLE x;");
    Write(Rev(3), Rev(2),
          absl::StrCat("CREATE TABLE y (id int);\nINSERT INTO log (rev) VALUES ('", Rev(3), "');"),
          "DROP TABLE y;");
    ASSERT_EQ(Schemactl({"upgrade", Rev(1)}).code, kOk);
  }

  static constexpr char kNoCheck[] =
      "SELECT set_config('client_connection_check_interval', '0', false) "
      "FROM sleep_config WHERE no_check;";

  void SetSleep(int seconds, bool no_check = false) {
    Exec(db_.dsn(), absl::StrCat("UPDATE sleep_config SET seconds = ", seconds,
                                 ", no_check = ", no_check ? "true" : "false"));
  }

  // Starts `schemactl upgrade` (or `args`), waits until its backend runs a
  // statement with `pg_sleep`, kills the process with SIGKILL; the backend
  // pid that was running it. killed_operation_: the run's operation id.
  std::string KillDuringTheSleep(const std::vector<std::string>& args = {"upgrade"}) {
    std::unique_ptr<Process> victim = Start(args);
    // schemactl's session names the run: "schemactl op-0123456789abcdef".
    const std::string sleeping =
        "SELECT pid, application_name FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name LIKE 'schemactl%' AND state = 'active' AND query LIKE "
        "'%pg_sleep%'";
    Rows rows;
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (rows.empty() && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
      rows = Q(sleeping);
    }
    if (rows.size() != 1) {
      ADD_FAILURE() << "schemactl never reached the sleep of " << Rev(2);
      return "";
    }
    EXPECT_EQ(kill(victim->pid(), SIGKILL), 0);
    const Output killed = victim->Wait();
    EXPECT_EQ(killed.signal, SIGKILL) << killed;
    const std::string& name = rows[0][1];
    killed_operation_ = absl::StartsWith(name, "schemactl op-") ? name.substr(10) : "";
    EXPECT_THAT(killed_operation_, Not(IsEmpty())) << "the session is not tagged: " << name;
    return rows[0][0];
  }

  // Whether backend `pid` is gone within `timeout`.
  bool GoneWithin(const std::string& pid, absl::Duration timeout) {
    return WaitForRows(db_.dsn(),
                       absl::StrCat("SELECT count(*) FROM pg_stat_activity WHERE pid = ", pid),
                       Rows{{"0"}}, timeout) == Rows{{"0"}};
  }

  // The `interrupted` history rows: operation id and error.
  Rows InterruptedRuns() {
    return Q(
        "SELECT operation_id, error FROM schemad_history WHERE outcome = 'interrupted' "
        "ORDER BY id");
  }

  std::string killed_operation_;
};

TEST_F(CliFaultsSigkillTest, KilledClientsRevisionStopsWithItAndIsRecordedAsInterrupted) {
  HalfStateSampler sampler(db_.dsn(), {Rev(2), Rev(3)}, "x", Rev(2));
  SetSleep(60);
  const std::string orphan = KillDuringTheSleep();
  ASSERT_FALSE(orphan.empty());
  // PostgreSQL notices within client_connection_check_interval (1s) that
  // the client is gone and ends the statement and the transaction; without
  // it the backend would sleep on for a minute.
  EXPECT_TRUE(GoneWithin(orphan, absl::Seconds(10)))
      << "the backend of the killed schemactl still runs its statement";
  EXPECT_EQ(VersionRows(), (Rows{{Rev(1)}}));
  EXPECT_FALSE(TableExists("x"));
  EXPECT_THAT(LogRows(), IsEmpty());
  EXPECT_EQ(WaitForRows(db_.dsn(), kAdvisoryLocks, Rows{{"0"}}), (Rows{{"0"}}));

  // The next run records the run that died, then does the work.
  SetSleep(0);
  const Output next = Schemactl({"upgrade"});
  ASSERT_EQ(next.code, kOk) << next;
  EXPECT_EQ(VersionRows(), (Rows{{Rev(3)}}));
  EXPECT_EQ(LogRows(), (Rows{{Rev(2)}, {Rev(3)}}));
  EXPECT_EQ(SuccessfulUps(), (Rows{{Rev(1), "1"}, {Rev(2), "1"}, {Rev(3), "1"}}));
  const Rows interrupted = InterruptedRuns();
  ASSERT_EQ(interrupted.size(), 1u) << "no history row for the killed run";
  EXPECT_EQ(interrupted[0][0], killed_operation_);
  EXPECT_THAT(interrupted[0][1], AllOf(HasSubstr("(upgrade"), HasSubstr("faults@test"),
                                       HasSubstr(absl::StrCat("pid ", orphan))));
  EXPECT_EQ(Q("SELECT count(*) FROM schemad_run"), (Rows{{"0"}}));
  EXPECT_THAT(sampler.Stop(), IsEmpty()) << "samples with r2's version row, table x and log row "
                                            "not all visible or all invisible";
  EXPECT_GT(sampler.samples(), 10);
}

// Issue 14: per command, the revisions before the one killed share its
// transaction: a SIGKILL mid-run leaves the database where the command
// started (here at base: not even r1's log table), nothing committed.
TEST_F(CliFaultsSigkillTest, KilledPerCommandRunLeavesTheDatabaseWhereItStarted) {
  ASSERT_EQ(Schemactl({"downgrade", "base"}).code, kOk);
  ASSERT_EQ(VersionRows(), Rows{});
  SetSleep(60);
  const std::string orphan = KillDuringTheSleep({"upgrade", "--transaction", "per-command"});
  ASSERT_FALSE(orphan.empty());
  EXPECT_TRUE(GoneWithin(orphan, absl::Seconds(10)));
  EXPECT_EQ(VersionRows(), Rows{});
  EXPECT_FALSE(TableExists("log"));
  EXPECT_FALSE(TableExists("x"));
  EXPECT_EQ(WaitForRows(db_.dsn(), kAdvisoryLocks, Rows{{"0"}}), (Rows{{"0"}}));

  SetSleep(0);
  const Output next = Schemactl({"upgrade", "--transaction", "per-command"});
  ASSERT_EQ(next.code, kOk) << next;
  EXPECT_EQ(VersionRows(), (Rows{{Rev(3)}}));
  EXPECT_EQ(LogRows(), (Rows{{Rev(2)}, {Rev(3)}}));
  ASSERT_EQ(InterruptedRuns().size(), 1u);
  EXPECT_EQ(InterruptedRuns()[0][0], killed_operation_);
  EXPECT_EQ(Q("SELECT count(*) FROM schemad_run"), (Rows{{"0"}}));
}

TEST_F(CliFaultsSigkillTest, NeverHalfAppliedAndTheNextRunRefusesWhileTheOrphanRuns) {
  HalfStateSampler sampler(db_.dsn(), {Rev(2), Rev(3)}, "x", Rev(2));
  SetSleep(30, /*no_check=*/true);
  const std::string orphan = KillDuringTheSleep();
  ASSERT_FALSE(orphan.empty());

  // The client is gone but, without the connection check, its backend still
  // runs the sleep inside the revision's open transaction: nothing of r2 is
  // visible.
  EXPECT_EQ(Q(absl::StrCat("SELECT state, wait_event FROM pg_stat_activity WHERE pid = ", orphan)),
            (Rows{{"active", "PgSleep"}}));
  EXPECT_EQ(VersionRows(), (Rows{{Rev(1)}}));
  EXPECT_FALSE(TableExists("x"));
  EXPECT_THAT(LogRows(), IsEmpty());
  // The lock's own connection was idle: the kernel closed it, PostgreSQL
  // noticed at once, and the migration lock is free.
  EXPECT_EQ(WaitForRows(db_.dsn(), kAdvisoryLocks, Rows{{"0"}}), (Rows{{"0"}}));

  // The next run gets the lock, finds the earlier run's session still
  // running, and refuses, naming it: it applies nothing.
  SetSleep(0);
  for (const std::vector<std::string>& verb :
       {std::vector<std::string>{"upgrade"}, std::vector<std::string>{"ensure-head"}}) {
    const Output refused = Schemactl(verb);
    EXPECT_EQ(refused.code, kFailed) << refused;
    EXPECT_THAT(refused.err,
                AllOf(HasSubstr("an earlier run"), HasSubstr(killed_operation_),
                      HasSubstr(absl::StrCat("pid ", orphan, " (schemactl ", killed_operation_,
                                             ") from 127.0.0.1")),
                      HasSubstr("active: SELECT pg_sleep((SELECT seconds FROM sleep_config))"),
                      HasSubstr(absl::StrCat("pg_terminate_backend(", orphan, ")"))));
  }
  EXPECT_EQ(VersionRows(), (Rows{{Rev(1)}}));
  EXPECT_FALSE(TableExists("x"));

  // The operator ends the orphan; the next run records it and finishes.
  EXPECT_EQ(Q(absl::StrCat("SELECT pg_terminate_backend(", orphan, ")")), (Rows{{"t"}}));
  EXPECT_TRUE(GoneWithin(orphan, absl::Seconds(10)));
  const Output finished = Schemactl({"upgrade"});
  ASSERT_EQ(finished.code, kOk) << finished;
  EXPECT_EQ(VersionRows(), (Rows{{Rev(3)}}));
  EXPECT_TRUE(TableExists("x"));
  EXPECT_EQ(LogRows(), (Rows{{Rev(2)}, {Rev(3)}}));
  EXPECT_EQ(SuccessfulUps(), (Rows{{Rev(1), "1"}, {Rev(2), "1"}, {Rev(3), "1"}}));
  ASSERT_EQ(InterruptedRuns().size(), 1u);
  EXPECT_EQ(InterruptedRuns()[0][0], killed_operation_);

  EXPECT_THAT(sampler.Stop(), IsEmpty()) << "samples with r2's version row, table x and log row "
                                            "not all visible or all invisible";
  EXPECT_GT(sampler.samples(), 10);
}

TEST_F(CliFaultsSigkillTest, NextRunGoesOnOnceTheOrphanHasEnded) {
  HalfStateSampler sampler(db_.dsn(), {Rev(2), Rev(3)}, "x", Rev(2));
  SetSleep(3, /*no_check=*/true);
  const std::string orphan = KillDuringTheSleep();
  ASSERT_FALSE(orphan.empty());
  SetSleep(0);
  // Refused while the orphan sleeps; PostgreSQL rolls its transaction back
  // when the sleep ends and the backend finds its client gone.
  EXPECT_EQ(Schemactl({"upgrade"}).code, kFailed);
  EXPECT_TRUE(GoneWithin(orphan, absl::Seconds(20)));
  const Output next = Schemactl({"upgrade"});
  ASSERT_EQ(next.code, kOk) << next;
  EXPECT_EQ(VersionRows(), (Rows{{Rev(3)}}));
  EXPECT_EQ(LogRows(), (Rows{{Rev(2)}, {Rev(3)}}));
  EXPECT_EQ(SuccessfulUps(), (Rows{{Rev(1), "1"}, {Rev(2), "1"}, {Rev(3), "1"}}));
  EXPECT_EQ(InterruptedRuns().size(), 1u);
  EXPECT_THAT(sampler.Stop(), IsEmpty());
}

// ------------------------------------- (d) non-transactional: needs attention

TEST_F(CliFaultsTest, NonTransactionalFailureBlocksUntilResolvedApplied) {
  Write(Rev(1), "", UpSql(1), DownSql(1));
  Write(Rev(2), Rev(1),
        "CREATE TABLE nt (id int);\nCREATE INDEX CONCURRENTLY nt_id ON nt (id);\n"
        "INSERT INTO missing_table VALUES (1);",
        "DROP TABLE nt;", "-- transactional: false\n");
  Write(Rev(3), Rev(2), UpSql(3), DownSql(3));

  const Output failed = Schemactl({"upgrade"});
  EXPECT_EQ(failed.code, kNeedsAttention) << failed;
  EXPECT_THAT(failed.err, AllOf(HasSubstr("42P01"), HasSubstr("needs attention"),
                                HasSubstr("schemactl resolve")));
  EXPECT_EQ(VersionRows(), (Rows{{Rev(1)}}));

  // Blocked for every verb that would migrate; `current` says why.
  EXPECT_EQ(Schemactl({"upgrade"}).code, kNeedsAttention);
  EXPECT_EQ(Schemactl({"ensure-head"}).code, kNeedsAttention);
  EXPECT_EQ(Schemactl({"current", "--check-heads"}).code, kNeedsAttention);
  const Output status = Schemactl({"--json", "current"});
  const nlohmann::json json = nlohmann::json::parse(status.out, nullptr, false);
  ASSERT_FALSE(json.is_discarded()) << status;
  EXPECT_EQ(json["needs_attention"]["revision"], Rev(2));
  EXPECT_THAT(json["needs_attention"]["error"].get<std::string>(), HasSubstr("42P01"));
  EXPECT_EQ(Schemactl({"resolve"}).code, kUsage);
  EXPECT_EQ(Schemactl({"resolve", "--applied", "--rolled-back"}).code, kUsage);

  // The operator finishes by hand what failed (here: nothing more to do) and
  // records the revision as applied.
  const Output resolved = Schemactl({"resolve", "--applied"});
  ASSERT_EQ(resolved.code, kOk) << resolved;
  EXPECT_EQ(VersionRows(), (Rows{{Rev(2)}}));
  EXPECT_EQ(Schemactl({"resolve", "--applied"}).code, kFailed);  // nothing left to resolve
  const Output up = Schemactl({"upgrade"});
  ASSERT_EQ(up.code, kOk) << up;
  EXPECT_EQ(VersionRows(), (Rows{{Rev(3)}}));
  EXPECT_EQ(Q(absl::StrCat("SELECT outcome FROM schemad_history WHERE revision = '", Rev(2),
                           "' ORDER BY id")),
            (Rows{{"needs_attention"}, {"applied"}}));
}

TEST_F(CliFaultsSigkillTest, KilledNonTransactionalRevisionNeedsAttentionUntilRolledBack) {
  // r2 again, now non-transactional: its first statement commits by itself.
  Write(Rev(2), Rev(1),
        absl::StrCat("CREATE TABLE x (id int);\nSELECT pg_sleep((SELECT seconds FROM "
                     "sleep_config));\nINSERT INTO log (rev) VALUES ('",
                     Rev(2), "');"),
        "DROP TABLE x;", "-- transactional: false\n");
  SetSleep(30);
  const std::string orphan = KillDuringTheSleep();
  ASSERT_FALSE(orphan.empty());
  EXPECT_TRUE(TableExists("x"));  // half done, and visibly so:
  // The statement that was running stops with its client.
  EXPECT_TRUE(GoneWithin(orphan, absl::Seconds(10)));

  const Output blocked = Schemactl({"upgrade"});
  EXPECT_EQ(blocked.code, kNeedsAttention) << blocked;
  EXPECT_THAT(blocked.err,
              AllOf(HasSubstr(Rev(2)), HasSubstr("interrupted"), HasSubstr("schemactl resolve")));
  EXPECT_EQ(Schemactl({"current", "--check-heads"}).code, kNeedsAttention);

  // The operator undoes what ran, and says so.
  Exec(db_.dsn(), "DROP TABLE x");
  const Output resolved = Schemactl({"resolve", "--rolled-back"});
  ASSERT_EQ(resolved.code, kOk) << resolved;
  EXPECT_EQ(VersionRows(), (Rows{{Rev(1)}}));
  // History tells what happened: the killed run, then the resolution.
  EXPECT_EQ(Q(absl::StrCat("SELECT outcome, operation_id = '", killed_operation_,
                           "' FROM schemad_history WHERE revision = '", Rev(2), "' ORDER BY id")),
            (Rows{{"interrupted", "t"}, {"rolled_back", "f"}}));
  EXPECT_THAT(InterruptedRuns()[0][1],
              HasSubstr(absl::StrCat("during non-transactional revision ", Rev(2),
                                     " (up) after 1 of 3 statement(s)")));
  SetSleep(0);
  const Output up = Schemactl({"upgrade"});
  ASSERT_EQ(up.code, kOk) << up;
  EXPECT_EQ(VersionRows(), (Rows{{Rev(3)}}));
  EXPECT_EQ(LogRows(), (Rows{{Rev(2)}, {Rev(3)}}));
}

TEST_F(CliFaultsSigkillTest, ResolveRefusesWhileTheKilledRunsStatementStillRuns) {
  // The issue's case: a killed client's non-transactional INSERT goes on
  // (here: on a server without the connection check) and commits after the
  // operator has resolved; the next upgrade runs it again. Now resolve and
  // upgrade refuse while it runs, and it runs once.
  Write(Rev(2), Rev(1),
        absl::StrCat(kNoCheck, "\nINSERT INTO log (rev) SELECT '", Rev(2),
                     "' FROM pg_sleep((SELECT seconds FROM sleep_config));\n"
                     "CREATE TABLE x (id int);"),
        "DROP TABLE x;", "-- transactional: false\n");
  SetSleep(8, /*no_check=*/true);
  const std::string orphan = KillDuringTheSleep();
  ASSERT_FALSE(orphan.empty());
  const auto names_the_orphan =
      AllOf(HasSubstr(absl::StrCat("pid ", orphan, " (schemactl ", killed_operation_, ")")),
            HasSubstr("INSERT INTO log (rev) SELECT"),
            HasSubstr(absl::StrCat("pg_terminate_backend(", orphan, ")")));

  const Output resolve = Schemactl({"resolve", "--rolled-back"});
  EXPECT_EQ(resolve.code, kNeedsAttention) << resolve;  // it still does
  EXPECT_THAT(resolve.err, AllOf(HasSubstr("still active"), names_the_orphan));
  const Output upgrade = Schemactl({"upgrade"});
  EXPECT_EQ(upgrade.code, kNeedsAttention) << upgrade;
  // The mark's run may still be running (its session is there): the upgrade
  // waits for the lock and refuses as resolve does.
  EXPECT_THAT(upgrade.err, AllOf(HasSubstr("still active"), names_the_orphan));
  EXPECT_EQ(Q("SELECT statements_done FROM schemad_state"), (Rows{{"1"}}));

  // The orphan finishes its INSERT, which commits although nobody reads the
  // result: the operator sees that, does the rest by hand, and says so.
  EXPECT_TRUE(GoneWithin(orphan, absl::Seconds(30)));
  EXPECT_EQ(LogRows(), (Rows{{Rev(2)}}));
  Exec(db_.dsn(), "CREATE TABLE x (id int)");
  const Output resolved = Schemactl({"resolve", "--applied"});
  ASSERT_EQ(resolved.code, kOk) << resolved;
  SetSleep(0);
  const Output up = Schemactl({"upgrade"});
  ASSERT_EQ(up.code, kOk) << up;
  EXPECT_EQ(VersionRows(), (Rows{{Rev(3)}}));
  EXPECT_EQ(LogRows(), (Rows{{Rev(2)}, {Rev(3)}}));  // each once
  EXPECT_EQ(Q(absl::StrCat("SELECT outcome FROM schemad_history WHERE revision = '", Rev(2),
                           "' ORDER BY id")),
            (Rows{{"interrupted"}, {"applied"}}));
}

// ------------------------------- (c') one version table under two names

TEST_F(CliFaultsTest, OneTableUnderTwoNamesIsOneLock) {
  // `alembic_version` and `public.alembic_version` are one table: runs
  // configured either way exclude each other, and a non-transactional
  // revision runs once.
  Write(Rev(1), "", kLogTable, "DROP TABLE log;");
  Write(Rev(2), Rev(1),
        absl::StrCat("INSERT INTO log (rev) VALUES ('", Rev(2),
                     "');\nSELECT pg_sleep(1.5);\nCREATE TABLE t_2 (id int);"),
        "DROP TABLE t_2;", "-- transactional: false\n");
  ASSERT_EQ(Schemactl({"upgrade", Rev(1)}).code, kOk);
  std::unique_ptr<Process> bare = Start({"upgrade"});
  std::unique_ptr<Process> qualified =
      Start({"--version-table", "public.alembic_version", "upgrade"});
  const Output bare_out = bare->Wait();
  const Output qualified_out = qualified->Wait();
  EXPECT_EQ(bare_out.code, kOk) << bare_out;
  EXPECT_EQ(qualified_out.code, kOk) << qualified_out;
  EXPECT_EQ(LogRows(), (Rows{{Rev(2)}}));
  EXPECT_EQ(VersionRows(), (Rows{{Rev(2)}}));
  EXPECT_EQ(Q("SELECT count(*) FROM schemad_state"), (Rows{{"0"}}));
  EXPECT_EQ(SuccessfulUps(), (Rows{{Rev(1), "1"}, {Rev(2), "1"}}));
  // Either name reads the whole history.
  for (const char* name : {"alembic_version", "public.alembic_version"}) {
    const Output history = Schemactl({"--version-table", name, "--json", "history", "--log"});
    ASSERT_EQ(history.code, kOk) << history;
    const nlohmann::json json = nlohmann::json::parse(history.out, nullptr, false);
    ASSERT_FALSE(json.is_discarded()) << history;
    EXPECT_EQ(json["records"].size(), 2u) << history;
  }
}

// ------------------------------------------- (e) blocked by another session

TEST_F(CliFaultsTest, LockTimeoutNamesTheBlockerAndAppliesNothing) {
  Write(Rev(1), "", absl::StrCat(kLogTable, "\nCREATE TABLE devices (id int);"),
        "DROP TABLE devices; DROP TABLE log;");
  const std::string blocked_file =
      Write(Rev(2), Rev(1),
            absl::StrCat("CREATE TABLE y (id int);\nINSERT INTO log (rev) VALUES ('", Rev(2),
                         "');\nALTER TABLE devices ADD COLUMN name text;"),
            "DROP TABLE y; ALTER TABLE devices DROP COLUMN name;");
  ASSERT_EQ(Schemactl({"upgrade", Rev(1)}).code, kOk);

  pqxx::connection holder(db_.dsn() + "?application_name=ops-console");
  const std::string holder_pid = absl::StrCat(holder.backendpid());
  auto holding = std::make_unique<pqxx::work>(holder);
  holding->exec("LOCK TABLE devices IN ACCESS EXCLUSIVE MODE");

  const Output failed = Schemactl({"--lock-timeout", "1s", "upgrade"});
  EXPECT_EQ(failed.code, kFailed) << failed;
  EXPECT_GE(failed.took, absl::Seconds(1));
  EXPECT_LT(failed.took, absl::Seconds(10));
  const std::string blocker =
      absl::StrCat("blocked by pid ", holder_pid,
                   " (ops-console) from 127.0.0.1, "
                   "idle in transaction: LOCK TABLE devices IN ACCESS EXCLUSIVE MODE");
  EXPECT_THAT(
      failed.err,
      AllOf(HasSubstr(absl::StrCat(blocked_file, ":", LineOf(blocked_file, "ALTER TABLE devices"),
                                   ": SQLSTATE 55P03: canceling statement due to lock "
                                   "timeout; ")),
            HasSubstr(blocker)));
  // Nothing of r2: no version row, no table y, no column, no log row.
  EXPECT_EQ(VersionRows(), (Rows{{Rev(1)}}));
  EXPECT_FALSE(TableExists("y"));
  EXPECT_EQ(Q("SELECT count(*) FROM information_schema.columns WHERE table_name = 'devices'"),
            (Rows{{"1"}}));
  EXPECT_THAT(LogRows(), IsEmpty());
  // History keeps the diagnosis.
  EXPECT_EQ(Q(absl::StrCat("SELECT count(*) FROM schemad_history WHERE revision = '", Rev(2),
                           "' AND outcome = 'failed' AND error LIKE '%", blocker, "%'")),
            (Rows{{"1"}}));

  // Once the other session lets go, the same command goes through.
  holding->abort();
  holding.reset();
  const Output after = Schemactl({"--lock-timeout", "1s", "upgrade"});
  ASSERT_EQ(after.code, kOk) << after;
  EXPECT_EQ(VersionRows(), (Rows{{Rev(2)}}));
}

// --------------------------------- (f) changed files and bad credentials

TEST_F(CliFaultsTest, EditedAppliedRevisionIsRefusedUntilAllowed) {
  for (int i = 1; i <= 3; ++i) {
    Write(Rev(i), i == 1 ? "" : Rev(i - 1), UpSql(i), DownSql(i));
  }
  ASSERT_EQ(Schemactl({"upgrade", Rev(2)}).code, kOk);
  Write(Rev(2), Rev(1), UpSql(2, "\nCREATE INDEX t_2_id ON t_2 (id);"), DownSql(2));

  const Output refused = Schemactl({"upgrade"});
  EXPECT_EQ(refused.code, kFailed) << refused;
  EXPECT_THAT(refused.err, AllOf(HasSubstr(Rev(2)), HasSubstr("--allow-changed")));
  EXPECT_EQ(VersionRows(), (Rows{{Rev(2)}}));
  EXPECT_EQ(Schemactl({"ensure-head"}).code, kFailed);
  const Output validate = Schemactl({"validate"});
  EXPECT_EQ(validate.code, kFailed) << validate;
  EXPECT_THAT(validate.out, AllOf(HasSubstr("changed"), HasSubstr(Rev(2))));
  EXPECT_EQ(VersionRows(), (Rows{{Rev(2)}}));

  const Output allowed = Schemactl({"upgrade", "--allow-changed"});
  ASSERT_EQ(allowed.code, kOk) << allowed;
  EXPECT_EQ(VersionRows(), (Rows{{Rev(3)}}));
  EXPECT_EQ(LogRows(), (Rows{{Rev(1)}, {Rev(2)}, {Rev(3)}}));
}

TEST_F(CliFaultsTest, BadCredentialsAndUnreachableHostsExitFiveWithoutSecrets) {
  Write(Rev(1), "", UpSql(1), DownSql(1));
  const std::string wrong = "Wr0ngSecr3tForFaults";
  const std::string port = db_.cluster().port;
  const std::string dir = dir_.string();
  const std::string uri =
      absl::StrCat("postgresql://postgres:", wrong, "@127.0.0.1:", port, "/", db_.name());
  const std::string key_value = absl::StrCat("host=127.0.0.1 port=", port, " dbname=", db_.name(),
                                             " user=postgres password=", wrong);
  struct Case {
    std::string what;
    std::vector<std::string> args;
    std::vector<std::string> env;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"wrong password, URI flag", {"--dsn", uri, "--dir", dir, "upgrade"}, {}, "authentication"},
      {"wrong password, key=value flag, --json",
       {"--json", "--dsn", key_value, "--dir", dir, "ensure-head"},
       {},
       "authentication"},
      {"wrong password from SCHEMAD_DSN",
       {"--dir", dir, "current"},
       {"SCHEMAD_DSN=" + uri},
       "authentication"},
      {"wrong password from DATABASE_URL",
       {"--dir", dir, "upgrade"},
       {"DATABASE_URL=" + uri},
       "authentication"},
      {"refused port",
       {"--dsn", absl::StrCat("postgresql://app:", wrong, "@127.0.0.1:1/site"), "--dir", dir,
        "upgrade"},
       {},
       "cannot connect"},
      {"unroutable host",
       {"--dsn", absl::StrCat("postgresql://app:", wrong, "@192.0.2.1:5432/site?connect_timeout=2"),
        "--dir", dir, "upgrade"},
       {},
       "cannot connect"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    const Output output = SchemactlRaw(c.args, c.env);
    EXPECT_EQ(output.code, kUnavailable) << output;
    EXPECT_THAT(output.err, HasSubstr(c.says));
    EXPECT_THAT(output.out + output.err, Not(HasSubstr(wrong)));
    EXPECT_LT(output.took, absl::Seconds(15));
    if (absl::StrContains(absl::StrJoin(c.args, " "), "--json")) {
      const nlohmann::json json = nlohmann::json::parse(output.out, nullptr, false);
      ASSERT_FALSE(json.is_discarded()) << output;
      EXPECT_EQ(json["error"]["exit_code"], kUnavailable);
    }
  }
  EXPECT_THAT(Q("SELECT to_regclass('alembic_version')"), (Rows{{"<null>"}}));
}

// ------------------------------------------- (g) Alembic, and back again

constexpr char kPython[] = "/usr/bin/python3";

constexpr char kAlembicEnv[] = R"(from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config
connectable = engine_from_config(config.get_section(config.config_ini_section),
                                 prefix='sqlalchemy.', poolclass=pool.NullPool)
with connectable.connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
)";

// `python3 alembic_run.py COMMAND ARGS...`: the alembic command on the
// environment next to it, the database URL from $ALEMBIC_URL.
constexpr char kAlembicRun[] = R"(import os
import sys
from alembic import command
from alembic.config import Config

config = Config()
config.set_main_option('script_location', os.path.dirname(os.path.abspath(__file__)))
config.set_main_option('sqlalchemy.url', os.environ['ALEMBIC_URL'].replace('%', '%%'))
getattr(command, sys.argv[1])(config, *sys.argv[2:])
)";

// The same four revisions as SQL files for schemactl and as Python files for
// Alembic, with the same ids and the same SQL. Every run of a revision, in
// either direction, appends (rev, dir, tool) to log; tool is the client's
// application_name ("schemactl" or "alembic").
class CliFaultsAlembicTest : public CliFaultsTest {
 protected:
  void SetUp() override {
    CliFaultsTest::SetUp();
    if (HasFatalFailure()) {
      return;
    }
    ASSERT_EQ(access(kPython, X_OK), 0)
        << kPython << " not found (Debian's python3 with python3-alembic is needed)";
    alembic_dir_ = scratch_ / "alembic";
    fs::create_directories(alembic_dir_ / "versions");
    std::ofstream(alembic_dir_ / "env.py") << kAlembicEnv;
    std::ofstream(alembic_dir_ / "alembic_run.py") << kAlembicRun;
    for (int i = 1; i <= 4; ++i) {
      const std::string revises = i == 1 ? "" : Rev(i - 1);
      const std::string up =
          absl::StrCat(i == 1 ? kLogTable : "", "\nCREATE TABLE t_", i,
                       " (id int);\nINSERT INTO log (rev) VALUES ('", Rev(i), "');");
      const std::string down = absl::StrCat(
          "DROP TABLE t_", i, ";\nINSERT INTO log (rev, dir) VALUES ('", Rev(i), "', 'down');");
      Write(Rev(i), revises, up, down);
      std::ofstream(alembic_dir_ / "versions" / (Rev(i) + ".py"))
          << "from alembic import op\n\nrevision = '" << Rev(i)
          << "'\ndown_revision = " << (revises.empty() ? "None" : absl::StrCat("'", revises, "'"))
          << "\nbranch_labels = None\ndepends_on = None\n\n\ndef upgrade():\n    op.execute('''"
          << up << "''')\n\n\ndef downgrade():\n    op.execute('''" << down << "''')\n";
    }
  }

  Output Alembic(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {kPython, "-B", (alembic_dir_ / "alembic_run.py").string()};
    argv.insert(argv.end(), args.begin(), args.end());
    Output output =
        Process(argv, {absl::StrCat("ALEMBIC_URL=", db_.dsn(), "?application_name=alembic")},
                scratch_)
            .Wait();
    if (output.code != kOk && absl::StrContains(output.err, "No module named")) {
      ADD_FAILURE() << kPython << " cannot import alembic: apt-get install python3-alembic "
                    << "python3-sqlalchemy python3-psycopg2";
    }
    return output;
  }

  Rows Log() { return Q("SELECT rev, dir, tool FROM log ORDER BY id"); }

  // alembic_version as Alembic creates it: one varchar(32) column, the _pkc key.
  void ExpectAlembicsVersionTable() {
    EXPECT_EQ(Q("SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute "
                "WHERE attrelid = 'alembic_version'::regclass AND attnum > 0 AND NOT attisdropped"),
              (Rows{{"version_num", "character varying(32)", "t"}}));
    EXPECT_EQ(Q("SELECT conname, contype FROM pg_constraint "
                "WHERE conrelid = 'alembic_version'::regclass"),
              (Rows{{"alembic_version_pkc", "p"}}));
  }

  fs::path alembic_dir_;
};

TEST_F(CliFaultsAlembicTest, AlembicThenSchemactlThenAlembic) {
  // Alembic migrates a site to r2.
  const Output first = Alembic({"upgrade", Rev(2)});
  ASSERT_EQ(first.code, kOk) << first;
  EXPECT_EQ(VersionRows(), (Rows{{Rev(2)}}));

  // schemactl adopts it as it is and continues to r3.
  const Output current = Schemactl({"current"});
  EXPECT_EQ(current.code, kOk) << current;
  EXPECT_EQ(current.out, absl::StrCat(Rev(2), "\n"));
  const Output up = Schemactl({"upgrade", Rev(3)});
  ASSERT_EQ(up.code, kOk) << up;
  EXPECT_THAT(up.out, HasSubstr("Upgraded 1 revision"));
  EXPECT_EQ(VersionRows(), (Rows{{Rev(3)}}));
  ExpectAlembicsVersionTable();

  // Alembic takes it back from there: applies r4 only.
  const Output more = Alembic({"upgrade", "head"});
  ASSERT_EQ(more.code, kOk) << more;
  const Output alembic_current = Alembic({"current"});
  ASSERT_EQ(alembic_current.code, kOk) << alembic_current;
  EXPECT_THAT(alembic_current.out, HasSubstr(absl::StrCat(Rev(4), " (head)")));
  EXPECT_EQ(Schemactl({"current"}).out, absl::StrCat(Rev(4), " (head)\n"));
  const Output validate = Schemactl({"validate"});
  EXPECT_EQ(validate.code, kOk) << validate;

  // Alembic can also undo what schemactl applied, and schemactl redo it.
  const Output down = Alembic({"downgrade", Rev(2)});
  ASSERT_EQ(down.code, kOk) << down;
  EXPECT_EQ(VersionRows(), (Rows{{Rev(2)}}));
  const Output again = Schemactl({"upgrade"});
  ASSERT_EQ(again.code, kOk) << again;
  EXPECT_EQ(VersionRows(), (Rows{{Rev(4)}}));
  ExpectAlembicsVersionTable();

  EXPECT_EQ(Log(), (Rows{{Rev(1), "up", "alembic"},
                         {Rev(2), "up", "alembic"},
                         {Rev(3), "up", "schemactl"},
                         {Rev(4), "up", "alembic"},
                         {Rev(4), "down", "alembic"},
                         {Rev(3), "down", "alembic"},
                         {Rev(3), "up", "schemactl"},
                         {Rev(4), "up", "schemactl"}}));
  EXPECT_TRUE(TableExists("t_4"));
}

TEST_F(CliFaultsAlembicTest, SchemactlFirstThenAlembic) {
  // A version table schemactl created is one Alembic takes as its own.
  const Output up = Schemactl({"upgrade", Rev(2)});
  ASSERT_EQ(up.code, kOk) << up;
  ExpectAlembicsVersionTable();

  const Output more = Alembic({"upgrade", "head"});
  ASSERT_EQ(more.code, kOk) << more;
  EXPECT_EQ(VersionRows(), (Rows{{Rev(4)}}));
  const Output down = Alembic({"downgrade", Rev(1)});
  ASSERT_EQ(down.code, kOk) << down;
  EXPECT_EQ(VersionRows(), (Rows{{Rev(1)}}));

  const Output current = Schemactl({"current"});
  EXPECT_EQ(current.out, absl::StrCat(Rev(1), "\n"));
  const Output again = Schemactl({"upgrade"});
  ASSERT_EQ(again.code, kOk) << again;
  EXPECT_EQ(VersionRows(), (Rows{{Rev(4)}}));
  EXPECT_EQ(Log(), (Rows{{Rev(1), "up", "schemactl"},
                         {Rev(2), "up", "schemactl"},
                         {Rev(3), "up", "alembic"},
                         {Rev(4), "up", "alembic"},
                         {Rev(4), "down", "alembic"},
                         {Rev(3), "down", "alembic"},
                         {Rev(2), "down", "alembic"},
                         {Rev(2), "up", "schemactl"},
                         {Rev(3), "up", "schemactl"},
                         {Rev(4), "up", "schemactl"}}));
}

}  // namespace
}  // namespace schemad::cli
