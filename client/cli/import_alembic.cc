// `schemactl import-alembic` (import_alembic.h): runs the embedded Python
// driver with the project's interpreter, captures the steps that cannot
// render offline on scratch databases, writes the files and reports.
#include "client/cli/import_alembic.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/cli/command_util.h"
#include "client/cli/import_alembic_py.h"
#include "client/cli/output.h"
#include "service/common/status_macros.h"
#include "service/engine/migration_set_config.h"
#include "service/engine/revision_graph.h"
#include "service/store/pq/dev_server.h"

extern char** environ;

namespace schemad::cli {
namespace {

namespace fs = std::filesystem;
using import_alembic::ConvertRevision;
using import_alembic::DriverProject;
using import_alembic::DriverRevision;
using import_alembic::ImportedRevision;
using internal::Io;

// A private directory for the driver script and its input and output
// (mode 0700: the capture request holds a scratch database's password),
// removed with everything in it when the object dies.
class PrivateDir {
 public:
  static absl::StatusOr<std::unique_ptr<PrivateDir>> Create() {
    const char* tmpdir = std::getenv("TMPDIR");
    std::string pattern = absl::StrCat(tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp",
                                       "/schemactl-import-XXXXXX");
    if (mkdtemp(pattern.data()) == nullptr) {
      const int error = errno;
      return absl::FailedPreconditionError(
          absl::StrCat("cannot create a temporary directory: ", std::strerror(error)));
    }
    return std::unique_ptr<PrivateDir>(new PrivateDir(pattern));
  }
  ~PrivateDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  PrivateDir(const PrivateDir&) = delete;
  PrivateDir& operator=(const PrivateDir&) = delete;

  std::string File(absl::string_view name) const { return absl::StrCat(path_, "/", name); }

  absl::Status Write(absl::string_view name, absl::string_view text) const {
    const std::string path = File(name);
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
      const int error = errno;
      return absl::FailedPreconditionError(
          absl::StrCat("cannot write ", path, ": ", std::strerror(error)));
    }
    size_t done = 0;
    while (done < text.size()) {
      const ssize_t n = write(fd, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        close(fd);
        return absl::FailedPreconditionError(absl::StrCat("cannot write ", path));
      }
      done += static_cast<size_t>(n);
    }
    close(fd);
    return absl::OkStatus();
  }

  std::string Read(absl::string_view name) const {
    std::ifstream in(File(name), std::ios::binary);
    std::stringstream buffer;
    buffer << in.rdbuf();
    return buffer.str();
  }

 private:
  explicit PrivateDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// The last `count` lines of `text`, for error messages.
std::string Tail(absl::string_view text, size_t count) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n', absl::SkipWhitespace());
  const size_t from = lines.size() > count ? lines.size() - count : 0;
  return absl::StrJoin(lines.begin() + static_cast<std::ptrdiff_t>(from), lines.end(), "\n  ");
}

// Runs the driver: `python -B import_alembic.py` with `request` on stdin.
class Driver {
 public:
  Driver(const ImportAlembicOptions& options, const PrivateDir& dir,
         const std::atomic<bool>* cancelled)
      : options_(options), dir_(dir), cancelled_(cancelled) {}

  absl::Status Install() { return dir_.Write("import_alembic.py", embedded::kImportAlembicPy); }

  // The driver's stdout. Errors: kExitUsage when --python cannot be run;
  // FAILED_PRECONDITION when it exits without an answer (its stderr's tail
  // in the message); CANCELLED on Ctrl-C.
  absl::StatusOr<std::string> Run(const Json& request) {
    RETURN_IF_ERROR(dir_.Write("request.json", request.dump()));
    const std::string script = dir_.File("import_alembic.py");
    const std::string in = dir_.File("request.json");
    const std::string out = dir_.File("answer.json");
    const std::string err = dir_.File("driver.log");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, in.c_str(), O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    std::vector<std::string> argv = {options_.python, "-B", script};
    std::vector<char*> args;
    for (std::string& arg : argv) args.push_back(arg.data());
    args.push_back(nullptr);
    pid_t pid = -1;
    const int spawned =
        posix_spawnp(&pid, options_.python.c_str(), &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (spawned != 0) {
      return UsageError(absl::StrCat("--python ", options_.python, ": cannot run it (",
                                     std::strerror(spawned),
                                     "); name the project's Python interpreter"));
    }
    int status = 0;
    bool stopped = false;
    for (;;) {
      const pid_t done = waitpid(pid, &status, WNOHANG);
      if (done == pid) break;
      if (done < 0 && errno != EINTR) {
        return absl::InternalError(absl::StrCat("waitpid: ", std::strerror(errno)));
      }
      if (!stopped && cancelled_ != nullptr && cancelled_->load()) {
        kill(pid, SIGTERM);
        stopped = true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(stopped ? 5 : 20));
    }
    // Ctrl-C reaches the driver too (one process group): it may have ended first.
    if (stopped || (cancelled_ != nullptr && cancelled_->load())) {
      return absl::CancelledError("import-alembic cancelled; nothing was written");
    }
    std::string answer = dir_.Read("answer.json");
    log_ = dir_.Read("driver.log");
    const bool exited_ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!exited_ok || answer.empty()) {
      const std::string how = WIFEXITED(status)
                                  ? absl::StrCat("exited ", WEXITSTATUS(status))
                                  : absl::StrCat("was killed by signal ", WTERMSIG(status));
      if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
        return UsageError(absl::StrCat("--python ", options_.python, ": cannot run it"));
      }
      return absl::FailedPreconditionError(
          absl::StrCat("the import-alembic driver (", options_.python, ") ", how,
                       answer.empty() ? " without an answer" : "",
                       log_.empty() ? "" : absl::StrCat("; its last output:\n  ", Tail(log_, 12))));
    }
    return answer;
  }

  // What the last run printed on stderr (env.py's logging, warnings).
  const std::string& log() const { return log_; }

 private:
  const ImportAlembicOptions& options_;
  const PrivateDir& dir_;
  const std::atomic<bool>* cancelled_;
  std::string log_;
};

// The revision `imported` as the engine loads it, for building scratch
// databases.
absl::StatusOr<engine::Revision> Parsed(const ImportedRevision& imported) {
  return engine::ParseRevisionFile(imported.file_name, engine::RenderRevisionFile(imported.spec));
}

// Runs the steps of `revision` the driver could not render offline on a new
// scratch database of `dev`, built up to the revision's parents (or, when
// only the downgrade is missing, to the revision itself) with the converted
// revisions before it, and stores what they executed.
absl::Status Capture(const Io& io, const ImportAlembicOptions& options, Driver& driver,
                     store::DevServer& dev, const std::vector<engine::Revision>& before,
                     DriverRevision& revision) {
  std::vector<std::string> directions;
  if (revision.upgrade.obtained == "needs_online") directions.push_back("upgrade");
  if (revision.downgrade.obtained == "needs_online") directions.push_back("downgrade");

  // The ancestors (through revises and depends_on), in import order.
  std::vector<engine::Revision> revisions = before;
  engine::Revision self;
  self.id = revision.id;
  self.revises = revision.down_revisions;
  self.branch_labels = revision.branch_labels;
  self.depends_on = revision.depends_on;
  self.path = revision.path;
  self.upgrade = engine::SqlSection{};
  revisions.push_back(self);
  ASSIGN_OR_RETURN(const engine::RevisionGraph graph,
                   engine::RevisionGraph::Build(std::move(revisions)));
  const int self_index = graph.IndexOf(revision.id);
  const std::vector<bool> ancestors = graph.AncestorMask({self_index}, true);
  std::vector<const engine::Revision*> apply;
  for (const engine::Revision& r : before) {
    const int index = graph.IndexOf(r.id);
    if (index >= 0 && ancestors[index]) apply.push_back(&r);
  }
  engine::Revision own;
  if (directions.size() == 1 && directions[0] == "downgrade") {
    DriverRevision upgrade_only = revision;
    upgrade_only.downgrade = {std::nullopt, "irreversible", "-"};
    ASSIGN_OR_RETURN(const ImportedRevision converted, ConvertRevision(upgrade_only));
    ASSIGN_OR_RETURN(own, Parsed(converted));
    apply.push_back(&own);
  }

  if (!io.global.quiet && !io.global.json) {
    io.err << "capturing the " << absl::StrJoin(directions, " and ") << " of " << revision.id
           << " (" << revision.path << ") on a scratch database of " << dev.display_name() << " ("
           << apply.size() << " revision(s) below it applied first)\n";
  }
  ASSIGN_OR_RETURN(std::unique_ptr<store::ScratchDatabase> db, dev.CreateScratchDatabase());
  for (const engine::Revision* r : apply) {
    absl::Status applied = dev.ApplySql(*db, r->upgrade->statements, r->path);
    if (!applied.ok()) {
      return Annotate(applied, absl::StrCat("building the scratch database for ", revision.id,
                                            ": the converted upgrade of ", r->id, " failed"));
    }
  }
  Json request;
  request["mode"] = "capture";
  request["config"] = options.config;
  request["name"] = options.name;
  request["x"] = options.x;
  request["revision"] = revision.id;
  request["directions"] = directions;
  request["conninfo"] = db->dsn();
  ASSIGN_OR_RETURN(const std::string answer, driver.Run(request));
  RETURN_IF_ERROR(import_alembic::MergeCaptureAnswer(answer, directions, revision));
  return db->Drop();
}

std::string How(const ImportedRevision& r) {
  std::string how;
  if (r.upgrade == "offline" && r.downgrade == "offline") {
    how = "offline";
  } else {
    const auto words = [](const std::string& obtained) {
      return obtained == "captured" ? std::string("captured on an empty database: review")
                                    : obtained;
    };
    how = absl::StrCat("upgrade ", words(r.upgrade));
    if (r.downgrade != "none") absl::StrAppend(&how, ", downgrade ", words(r.downgrade));
  }
  if (r.downgrade == "none") absl::StrAppend(&how, "; no downgrade (", r.reason, ")");
  if (r.commits) absl::StrAppend(&how, "; non-transactional (Alembic's step commits)");
  return how;
}

absl::StatusOr<int> Import(const Io& io, const ImportAlembicOptions& options) {
  // Flags first: nothing runs for a command line that cannot work.
  std::error_code ec;
  if (options.out.empty()) {
    return UsageError("--out DIR is required: the directory the revision files go to");
  }
  if (!fs::is_regular_file(options.config, ec)) {
    return UsageError(absl::StrCat(
        "--config ", options.config,
        fs::exists(options.config, ec) ? " is not a file" : ": no such file",
        " (the Alembic project's alembic.ini; default alembic.ini, or ALEMBIC_CONFIG)"));
  }
  if (fs::exists(options.out, ec) && !fs::is_directory(options.out, ec)) {
    return UsageError(absl::StrCat("--out ", options.out, " is not a directory"));
  }
  if (!options.force && !import_alembic::RevisionFilesIn(options.out).empty()) {
    return UsageError(absl::StrCat("--out ", options.out,
                                   " already holds revision files; pass --force to replace them"));
  }

  ASSIGN_OR_RETURN(const std::unique_ptr<PrivateDir> dir, PrivateDir::Create());
  Driver driver(options, *dir, io.global.cancelled);
  RETURN_IF_ERROR(driver.Install());
  Json request;
  request["mode"] = "render";
  request["config"] = options.config;
  request["name"] = options.name;
  request["x"] = options.x;
  ASSIGN_OR_RETURN(const std::string answer, driver.Run(request));
  ASSIGN_OR_RETURN(DriverProject project, import_alembic::ParseRenderAnswer(answer));

  // Steps that could not render offline need a scratch database.
  std::vector<std::string> offline_failures;
  for (const DriverRevision& r : project.revisions) {
    for (const auto* step : {&r.upgrade, &r.downgrade}) {
      if (step->obtained == "needs_online") {
        offline_failures.push_back(absl::StrCat(r.id, " (", r.path, ") ",
                                                step == &r.upgrade ? "upgrade" : "downgrade", ": ",
                                                step->detail));
      }
    }
  }
  if (!offline_failures.empty() && options.scratch_dsn.empty()) {
    return UsageError(absl::StrCat(
        offline_failures.size(),
        " step(s) cannot be rendered offline (they query the database, or use it in a way "
        "offline SQL cannot express): ",
        absl::StrJoin(offline_failures, "; "),
        ". Pass --scratch-dsn local (a throwaway cluster of the local PostgreSQL) or "
        "--scratch-dsn DSN (a server where the role may create databases): each such step "
        "then runs on a scratch database and the SQL it executes is kept, marked for review"));
  }
  std::unique_ptr<store::DevServer> dev;
  if (!offline_failures.empty()) {
    absl::StatusOr<std::unique_ptr<store::DevServer>> opened =
        store::DevServer::Open(options.scratch_dsn);
    if (!opened.ok()) {
      return Annotate(
          opened.status(),
          absl::StrCat("--scratch-dsn ", options.scratch_dsn == "local" ? "local" : "(a DSN)"));
    }
    dev = *std::move(opened);
  }

  std::vector<ImportedRevision> imported;
  std::vector<engine::Revision> parsed;
  for (DriverRevision& revision : project.revisions) {
    if (revision.upgrade.obtained == "needs_online" ||
        revision.downgrade.obtained == "needs_online") {
      absl::Status captured = Capture(io, options, driver, *dev, parsed, revision);
      if (!captured.ok()) {
        return absl::Status(captured.code(),
                            internal::ScrubSecrets(captured.message(), options.scratch_dsn));
      }
    }
    ASSIGN_OR_RETURN(ImportedRevision converted, ConvertRevision(revision));
    absl::StatusOr<engine::Revision> loaded = Parsed(converted);
    if (!loaded.ok()) {
      return Annotate(loaded.status(), absl::StrCat("revision ", revision.id, " (", revision.path,
                                                    ") converts to a file that does not load"));
    }
    parsed.push_back(*std::move(loaded));
    imported.push_back(std::move(converted));
  }
  if (dev != nullptr) dev->Close();
  RETURN_IF_ERROR(import_alembic::WriteImport(imported, project, options.out, options.force));

  // The report.
  const int review = static_cast<int>(
      std::count_if(imported.begin(), imported.end(), [](const auto& r) { return r.review(); }));
  const std::string scope = project.transaction_per_migration ? "per-revision" : "per-command";
  if (io.global.json) {
    Json json;
    json["ok"] = true;
    json["directory"] = options.out;
    json["config"] = options.config;
    json["alembic"] = project.alembic;
    json["python"] = project.python;
    json["version_table"] = project.version_table;
    json["transaction"] = scope;
    Json list = Json::array();
    for (const ImportedRevision& r : imported) {
      Json item;
      item["revision"] = r.spec.id;
      item["path"] = (fs::path(options.out) / r.file_name).string();
      item["source"] = r.source;
      item["upgrade"] = r.upgrade;
      item["downgrade"] = r.downgrade;
      item["transactional"] = r.spec.transactional;
      item["review"] = r.review();
      item["reason"] = r.reason.empty() ? Json() : Json(r.reason);
      list.push_back(std::move(item));
    }
    json["revisions"] = std::move(list);
    io.out << JsonText(json) << "\n";
    return kExitOk;
  }
  io.out << "Imported " << imported.size() << (imported.size() == 1 ? " revision" : " revisions")
         << " from " << project.script_location << " into " << options.out << " (Alembic "
         << project.alembic << ", " << project.python << "):\n";
  for (const ImportedRevision& r : imported) {
    io.out << "  " << r.file_name << ": " << How(r) << "\n";
  }
  if (io.global.quiet) {
    return kExitOk;
  }
  if (review > 0) {
    io.out << review << " revision(s) captured on an empty database: review them (the marked "
           << "sections) before they run on a database with rows.\n";
  }
  io.out << "Alembic's env.py runs "
         << (project.transaction_per_migration ? "each revision in its own transaction"
                                               : "a whole upgrade or downgrade in one transaction")
         << ": so does the migration set (" << engine::kMigrationSetConfigFileName
         << ": transaction = " << scope << ").\n";
  if (project.version_table != "alembic_version") {
    io.out << "env.py's version table is " << project.version_table << ": pass --version-table "
           << project.version_table << ".\n";
  }
  return kExitOk;
}

}  // namespace

int RunImportAlembic(const GlobalOptions& global, const ImportAlembicOptions& options,
                     std::ostream& out, std::ostream& err) {
  const Io io{global, out, err};
  return internal::Finish(io, Import(io, options));
}

}  // namespace schemad::cli
