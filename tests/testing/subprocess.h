// Real binaries as subprocesses for tests: run one to completion and keep
// what it printed, or run one in the background (a server) and stop it.
//
//   ProcessResult r = RunProcess({SCHEMACTL, "--json", "current"}, {"SCHEMAD_DSN=..."});
//   BackgroundProcess schemad({SCHEMAD_BINARY, "--config", path}, dir);
//   std::string address = schemad.WaitForOutput("schemad listening on ", absl::Seconds(30));
//
// Output goes to files (no pipes to drain). Thread-safety: one thread per object.
#ifndef SCHEMAD_TESTS_TESTING_SUBPROCESS_H_
#define SCHEMAD_TESTS_TESTING_SUBPROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/time/time.h"

namespace schemad::testing {

struct ProcessResult {
  int code = -1;  // exit status, 128 + signal, or -1 (did not start, or killed at the timeout)
  std::string out;
  std::string err;
};

// Runs `argv` with stdin from /dev/null and `env` ("NAME=value") added to
// the environment, until it exits or `timeout` passes (then SIGKILL, -1).
ProcessResult RunProcess(const std::vector<std::string>& argv,
                         const std::vector<std::string>& env = {},
                         absl::Duration timeout = absl::Minutes(2));

class BackgroundProcess {
 public:
  // Starts `argv`; stdout and stderr go to files in `dir`, named after `name`.
  BackgroundProcess(const std::vector<std::string>& argv, const std::string& dir,
                    const std::string& name = "process");
  ~BackgroundProcess();  // SIGKILL when still running
  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;

  // The rest of the first stdout line that starts with `prefix`, once it is
  // there; "" when the process exits or `timeout` passes first.
  std::string WaitForOutput(const std::string& prefix, absl::Duration timeout);
  void Signal(int signal) const;
  // The exit status (as ProcessResult::code), or -1 after `timeout`.
  int Wait(absl::Duration timeout);
  std::string Out() const;
  std::string Err() const;

 private:
  bool Reap(bool block);
  pid_t pid_ = -1;
  bool exited_ = false;
  int code_ = -1;
  std::string out_path_;
  std::string err_path_;
};

}  // namespace schemad::testing

#endif  // SCHEMAD_TESTS_TESTING_SUBPROCESS_H_
