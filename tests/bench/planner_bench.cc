// Planner benchmark (issue 2): generates a 10,000-revision linear directory
// and a 2,000-revision branchy one, then measures loading (read, split and
// classify with PostgreSQL's parser, checksum), graph building, planning
// `upgrade heads` from base and `downgrade base` from head, and linting
// every revision (issue 13), best of N runs. The same linear set with
// `-- parse: false` (the hand-written splitter and keyword classification)
// is loaded beside it, the load time before the parser. With --schemactl PATH
// it also times the whole `schemactl --dir D plan upgrade heads --from base`
// process.
//
//   build/release/tests/planner_bench --schemactl build/release/client/schemactl
//
// Prints one line per measurement: name, milliseconds (best of runs).
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "service/engine/lint.h"
#include "service/engine/planner.h"
#include "service/engine/revision_file.h"
#include "service/engine/revision_graph.h"

namespace fs = std::filesystem;
using schemad::engine::LoadRevisionDirectory;
using schemad::engine::PlanDowngrade;
using schemad::engine::PlanUpgrade;
using schemad::engine::RevisionGraph;

namespace {

std::string Id(int i) {
  return absl::StrFormat("%012x", 0xa00000000000ULL + static_cast<uint64_t>(i) * 7919);
}

void WriteRevision(const fs::path& dir, int i, const std::vector<std::string>& revises,
                   const std::string& label, bool parse = true) {
  std::ofstream out(dir / absl::StrCat(Id(i), "_rev_", i, ".sql"));
  out << "-- revision: " << Id(i) << "\n";
  if (!parse) {
    out << "-- parse: false\n";
  }
  if (!revises.empty()) {
    out << "-- revises: ";
    for (size_t k = 0; k < revises.size(); ++k) {
      out << (k ? ", " : "") << revises[k];
    }
    out << "\n";
  }
  if (!label.empty()) {
    out << "-- branch_labels: " << label << "\n";
  }
  out << "-- message: generated revision " << i << "\n\n-- +upgrade\n"
      << "CREATE TABLE t_" << i << " (id bigserial primary key, device_id varchar(50) not null, "
      << "ts timestamptz not null, v double precision[]);\n"
      << "CREATE INDEX ix_t_" << i << "_dev_ts ON t_" << i << "(device_id, ts);\n\n"
      << "-- +downgrade\nDROP TABLE t_" << i << ";\n";
}

fs::path MakeLinear(const fs::path& root, int n, bool parse = true) {
  fs::path dir = root / absl::StrCat("linear_", n, parse ? "" : "_noparse");
  fs::create_directories(dir);
  for (int i = 0; i < n; ++i) {
    WriteRevision(dir, i, i == 0 ? std::vector<std::string>{} : std::vector<std::string>{Id(i - 1)},
                  "", parse);
  }
  return dir;
}

// Branchy: every 10th revision opens a side branch of 5 that is merged back.
fs::path MakeBranchy(const fs::path& root, int n) {
  fs::path dir = root / absl::StrCat("branchy_", n);
  fs::create_directories(dir);
  std::string trunk;
  int i = 0;
  while (i < n) {
    WriteRevision(dir, i,
                  trunk.empty() ? std::vector<std::string>{} : std::vector<std::string>{trunk}, "");
    trunk = Id(i++);
    if (i % 10 == 1 && i + 7 < n) {
      const std::string fork = trunk;
      std::string side = fork;
      for (int k = 0; k < 5; ++k) {
        WriteRevision(dir, i, {side}, "");
        side = Id(i++);
      }
      WriteRevision(dir, i, {fork}, "");
      std::string other = Id(i++);
      WriteRevision(dir, i, {side, other}, "");
      trunk = Id(i++);
    }
  }
  return dir;
}

double BestMs(int runs, const std::function<void()>& fn) {
  double best = 1e18;
  for (int r = 0; r < runs; ++r) {
    auto start = std::chrono::steady_clock::now();
    fn();
    double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    best = std::min(best, ms);
  }
  return best;
}

int RunProcess(const std::vector<std::string>& argv) {
  std::fflush(stdout);  // or the child flushes our buffered lines again
  pid_t pid = fork();
  if (pid == 0) {
    freopen("/dev/null", "w", stdout);
    std::vector<char*> args;
    for (const std::string& a : argv) {
      args.push_back(const_cast<char*>(a.c_str()));
    }
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void Measure(const std::string& name, const fs::path& dir, const std::string& schemactl) {
  std::vector<schemad::engine::Revision> revisions;
  double load = BestMs(5, [&] { revisions = *LoadRevisionDirectory(dir.string()); });
  const size_t count = revisions.size();
  RevisionGraph graph;
  double build = BestMs(5, [&] { graph = std::move(*RevisionGraph::Build(revisions)); });
  size_t steps = 0;
  double up = BestMs(5, [&] { steps = PlanUpgrade(graph, {}, "heads")->steps.size(); });
  const std::vector<std::string> heads = PlanUpgrade(graph, {}, "heads")->rows_after;
  double down = BestMs(5, [&] { (void)PlanDowngrade(graph, heads, "base")->steps.size(); });
  // The generated files sort parents first, the order lint reads them in.
  std::vector<const schemad::engine::Revision*> ordered;
  for (const schemad::engine::Revision& revision : revisions) {
    ordered.push_back(&revision);
  }
  size_t findings = 0;
  double lint = BestMs(3, [&] {
    findings = schemad::engine::LintRevisions(ordered, schemad::engine::LintConfig{}).size();
  });
  std::printf(
      "%-24s revisions=%zu load_ms=%.1f build_ms=%.1f plan_upgrade_ms=%.1f (%zu steps) "
      "plan_downgrade_ms=%.1f lint_ms=%.1f (%zu findings)\n",
      name.c_str(), count, load, build, up, steps, down, lint, findings);
  if (!schemactl.empty()) {
    int rc = 0;
    double process = BestMs(5, [&] {
      rc = RunProcess({schemactl, "--dir", dir.string(), "plan", "upgrade", "heads", "--from",
                       "base", "--json"});
    });
    std::printf("%-24s schemactl_plan_process_ms=%.1f exit=%d\n", name.c_str(), process, rc);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string schemactl;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--schemactl" && i + 1 < argc) {
      schemactl = argv[++i];
    }
  }
  fs::path root = fs::temp_directory_path() / absl::StrCat("schemad-planner-bench-", getpid());
  fs::create_directories(root);
  Measure("linear-10000", MakeLinear(root, 10000), schemactl);
  Measure("linear-10000-parse-false", MakeLinear(root, 10000, /*parse=*/false), schemactl);
  Measure("branchy-2000", MakeBranchy(root, 2000), schemactl);
  fs::remove_all(root);
  return 0;
}
