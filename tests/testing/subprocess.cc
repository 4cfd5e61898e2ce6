#include "tests/testing/subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

extern char** environ;

namespace schemad::testing {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

int CodeOf(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

pid_t Spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env,
            const std::string& out, const std::string& err) {
  std::vector<std::string> args = argv;
  std::vector<char*> c_argv;
  for (std::string& arg : args) {
    c_argv.push_back(arg.data());
  }
  c_argv.push_back(nullptr);
  std::vector<std::string> variables;
  for (char** e = environ; *e != nullptr; ++e) {
    variables.emplace_back(*e);
  }
  variables.insert(variables.end(), env.begin(), env.end());
  std::vector<char*> c_env;
  for (std::string& variable : variables) {
    c_env.push_back(variable.data());
  }
  c_env.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid = -1;
  if (posix_spawn(&pid, c_argv[0], &actions, nullptr, c_argv.data(), c_env.data()) != 0) {
    pid = -1;
  }
  posix_spawn_file_actions_destroy(&actions);
  return pid;
}

}  // namespace

ProcessResult RunProcess(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                         absl::Duration timeout) {
  char tmpl[] = "/tmp/schemad_subprocess_XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string out = dir + "/out";
  const std::string err = dir + "/err";
  ProcessResult result;
  const pid_t pid = Spawn(argv, env, out, err);
  if (pid > 0) {
    const absl::Time end = absl::Now() + timeout;
    int status = 0;
    for (;;) {
      if (waitpid(pid, &status, WNOHANG) == pid) {
        result.code = CodeOf(status);
        break;
      }
      if (absl::Now() > end) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        break;
      }
      absl::SleepFor(absl::Milliseconds(5));
    }
  }
  result.out = ReadAll(out);
  result.err = ReadAll(err);
  unlink(out.c_str());
  unlink(err.c_str());
  rmdir(dir.c_str());
  return result;
}

BackgroundProcess::BackgroundProcess(const std::vector<std::string>& argv, const std::string& dir,
                                     const std::string& name)
    : out_path_(absl::StrCat(dir, "/", name, ".out")),
      err_path_(absl::StrCat(dir, "/", name, ".err")) {
  pid_ = Spawn(argv, {}, out_path_, err_path_);
  exited_ = pid_ <= 0;
}

BackgroundProcess::~BackgroundProcess() {
  if (!exited_) {
    kill(pid_, SIGKILL);
    Reap(/*block=*/true);
  }
}

bool BackgroundProcess::Reap(bool block) {
  int status = 0;
  if (!exited_ && waitpid(pid_, &status, block ? 0 : WNOHANG) == pid_) {
    exited_ = true;
    code_ = CodeOf(status);
  }
  return exited_;
}

std::string BackgroundProcess::WaitForOutput(const std::string& prefix, absl::Duration timeout) {
  const absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    const std::string out = Out();
    const size_t at = out.find(prefix);
    const size_t newline = at == std::string::npos ? at : out.find('\n', at);
    if (newline != std::string::npos) {
      return out.substr(at + prefix.size(), newline - at - prefix.size());
    }
    if (Reap(/*block=*/false)) {
      return "";
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return "";
}

void BackgroundProcess::Signal(int signal) const {
  if (!exited_) {
    kill(pid_, signal);
  }
}

int BackgroundProcess::Wait(absl::Duration timeout) {
  const absl::Time end = absl::Now() + timeout;
  while (!Reap(/*block=*/false)) {
    if (absl::Now() > end) {
      return -1;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return code_;
}

std::string BackgroundProcess::Out() const { return ReadAll(out_path_); }
std::string BackgroundProcess::Err() const { return ReadAll(err_path_); }

}  // namespace schemad::testing
