// import-alembic's pure half (import_alembic.h): the driver's answers
// checked and read, revisions converted to files, the files written all or
// nothing. No processes and no databases here; import_alembic.cc runs the
// driver and the scratch databases.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/cli/command_util.h"
#include "client/cli/import_alembic.h"
#include "client/cli/output.h"
#include "service/common/status_macros.h"
#include "service/engine/migration_set_config.h"
#include "service/engine/revision_graph.h"
#include "service/engine/sql_parser.h"

namespace schemad::cli::import_alembic {
namespace {

namespace fs = std::filesystem;

constexpr int kProtocol = 1;
constexpr size_t kMaxIdLength = 32;  // alembic_version.version_num is varchar(32)
constexpr size_t kNoteWidth = 76;

absl::Status Protocol(absl::string_view what, absl::string_view revision = {}) {
  return absl::InternalError(
      absl::StrCat("the import-alembic driver's answer ",
                   revision.empty() ? "" : absl::StrCat("for revision ", revision, " "),
                   "does not check out: ", what));
}

// The driver's {"error": {...}}: the project's problem (FAILED_PRECONDITION)
// or the driver's own (INTERNAL).
absl::Status DriverError(const Json& error) {
  const auto text = [&](const char* key) {
    const auto found = error.find(key);
    return found != error.end() && found->is_string() ? found->get<std::string>() : std::string();
  };
  const std::string kind = text("kind");
  std::string message = text("message");
  if (message.empty()) message = "(no message)";
  const std::string revision = text("revision");
  const std::string path = text("path");
  if (!revision.empty() && !absl::StrContains(message, revision)) {
    message = absl::StrCat("revision ", revision, path.empty() ? "" : absl::StrCat(" (", path, ")"),
                           ": ", message);
  }
  if (kind == "driver" || kind.empty()) {
    return absl::InternalError(absl::StrCat("the import-alembic driver failed: ", message));
  }
  return absl::FailedPreconditionError(message);
}

absl::StatusOr<Json> ReadAnswer(absl::string_view text) {
  Json json = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    std::string start(text.substr(0, 200));
    return Protocol(absl::StrCat("it is not JSON",
                                 start.empty() ? " (it is empty)" : absl::StrCat(": ", start)));
  }
  if (!json.is_object()) {
    return Protocol("it is not a JSON object");
  }
  const auto protocol = json.find("protocol");
  if (protocol == json.end() || !protocol->is_number_integer() ||
      protocol->get<int>() != kProtocol) {
    return Protocol(absl::StrCat("it does not say \"protocol\": ", kProtocol,
                                 " (a driver of another schemactl?)"));
  }
  if (const auto error = json.find("error"); error != json.end()) {
    if (!error->is_object()) {
      return Protocol("\"error\" is not an object");
    }
    return DriverError(*error);
  }
  return json;
}

absl::StatusOr<std::string> String(const Json& object, const char* key, absl::string_view revision,
                                   bool null_is_empty = false) {
  const auto found = object.find(key);
  if (found == object.end()) {
    return Protocol(absl::StrCat("no \"", key, "\""), revision);
  }
  if (found->is_null() && null_is_empty) {
    return std::string();
  }
  if (!found->is_string()) {
    return Protocol(absl::StrCat("\"", key, "\" is not a string"), revision);
  }
  return found->get<std::string>();
}

absl::StatusOr<std::vector<std::string>> Strings(const Json& object, const char* key,
                                                 absl::string_view revision) {
  const auto found = object.find(key);
  if (found == object.end() || !found->is_array()) {
    return Protocol(absl::StrCat("\"", key, "\" is not a list"), revision);
  }
  std::vector<std::string> out;
  for (const Json& item : *found) {
    if (!item.is_string()) {
      return Protocol(absl::StrCat("\"", key, "\" holds something that is not a string"), revision);
    }
    out.push_back(item.get<std::string>());
  }
  return out;
}

// `name` as schemad's revision files take an id or a label: [A-Za-z0-9_],
// not a target keyword, an id at most 32 characters.
absl::Status CheckName(absl::string_view name, absl::string_view what, const std::string& where) {
  const bool chars_ok = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
  const bool keyword = name == "head" || name == "heads" || name == "base";
  if (!chars_ok || keyword || (what == "revision id" && name.size() > kMaxIdLength)) {
    return absl::FailedPreconditionError(
        absl::StrCat(where, ": ", what, " '", name, "' cannot be one in a schemad revision file (",
                     keyword ? "it is a target keyword"
                             : "letters, digits and '_' only; a revision id at most 32 characters",
                     "): rename it in the Alembic project first"));
  }
  return absl::OkStatus();
}

absl::StatusOr<DriverStep> ReadStep(const Json& object, const char* key, absl::string_view revision,
                                    const std::set<std::string>& allowed) {
  const auto found = object.find(key);
  if (found == object.end() || !found->is_object()) {
    return Protocol(absl::StrCat("\"", key, "\" is not an object"), revision);
  }
  DriverStep step;
  ASSIGN_OR_RETURN(step.obtained, String(*found, "obtained", revision));
  if (allowed.count(step.obtained) == 0) {
    return Protocol(absl::StrCat("\"", key, "\" was obtained '", step.obtained, "', not ",
                                 absl::StrJoin(allowed, " or ")),
                    revision);
  }
  const auto sql = found->find("sql");
  const bool has_sql = step.obtained == "offline" || step.obtained == "captured";
  if (sql == found->end() || !(has_sql ? sql->is_string() : sql->is_null())) {
    return Protocol(
        absl::StrCat("\"", key, "\" ", step.obtained, " has ", has_sql ? "no SQL string" : "SQL"),
        revision);
  }
  if (has_sql) {
    step.sql = sql->get<std::string>();
  }
  const char* detail = step.obtained == "needs_online"   ? "error"
                       : step.obtained == "irreversible" ? "reason"
                                                         : nullptr;
  if (detail != nullptr) {
    ASSIGN_OR_RETURN(step.detail, String(*found, detail, revision));
  }
  return step;
}

absl::StatusOr<DriverRevision> ReadRevision(const Json& item, const std::set<std::string>& before) {
  if (!item.is_object()) {
    return Protocol("a revision is not an object");
  }
  DriverRevision r;
  ASSIGN_OR_RETURN(r.id, String(item, "id", ""));
  ASSIGN_OR_RETURN(r.path, String(item, "path", r.id));
  const std::string where = absl::StrCat("revision ", r.id, " (", r.path, ")");
  RETURN_IF_ERROR(CheckName(r.id, "revision id", r.path));
  if (before.count(r.id) > 0) {
    return Protocol("the revision is listed twice", r.id);
  }
  ASSIGN_OR_RETURN(r.down_revisions, Strings(item, "down_revisions", r.id));
  ASSIGN_OR_RETURN(r.branch_labels, Strings(item, "branch_labels", r.id));
  ASSIGN_OR_RETURN(r.depends_on, Strings(item, "depends_on", r.id));
  for (const std::string& down : r.down_revisions) {
    if (before.count(down) == 0) {
      return Protocol(absl::StrCat("its down revision ", down, " is not listed before it"), r.id);
    }
  }
  for (const std::string& label : r.branch_labels) {
    RETURN_IF_ERROR(CheckName(label, "branch label", where));
  }
  for (const std::string& dep : r.depends_on) {
    RETURN_IF_ERROR(CheckName(dep, "depends_on entry", where));
  }
  ASSIGN_OR_RETURN(r.message, String(item, "message", r.id));
  ASSIGN_OR_RETURN(r.create_date, String(item, "create_date", r.id, /*null_is_empty=*/true));
  ASSIGN_OR_RETURN(r.upgrade, ReadStep(item, "upgrade", r.id, {"offline", "needs_online"}));
  ASSIGN_OR_RETURN(r.downgrade,
                   ReadStep(item, "downgrade", r.id, {"offline", "needs_online", "irreversible"}));
  ASSIGN_OR_RETURN(r.warnings, Strings(item, "warnings", r.id));
  return r;
}

// `text` as comment lines of at most kNoteWidth characters (longer words
// stay whole), none starting with `word:` (which the header would read as a
// key): such a word stays on the line before.
std::vector<std::string> Wrap(absl::string_view text) {
  std::vector<std::string> lines;
  std::string line;
  for (absl::string_view word : absl::StrSplit(text, absl::ByAnyChar(" \n\t"), absl::SkipEmpty())) {
    const bool key_like = [&] {
      absl::string_view w = word;
      if (!absl::ConsumeSuffix(&w, ":") || w.empty() ||
          absl::ascii_isdigit(static_cast<unsigned char>(w[0]))) {
        return false;
      }
      return std::all_of(w.begin(), w.end(), [](char c) {
        return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
      });
    }();
    if (!line.empty() && line.size() + 1 + word.size() > kNoteWidth && !key_like) {
      lines.push_back(std::move(line));
      line.clear();
    }
    absl::StrAppend(&line, line.empty() ? "" : " ", word);
  }
  if (!line.empty()) lines.push_back(std::move(line));
  return lines;
}

// `sql` split by PostgreSQL's parser, transaction control dropped.
struct CleanSql {
  std::string text;
  int statements = 0;
  bool commits = false;  // a BEGIN/COMMIT was there
};

absl::StatusOr<CleanSql> Clean(absl::string_view sql) {
  ASSIGN_OR_RETURN(const std::vector<engine::ParsedStatement> parsed, engine::ParseSql(sql, 1));
  CleanSql out;
  std::vector<std::string> kept;
  for (const engine::ParsedStatement& statement : parsed) {
    if (statement.node_type == "TransactionStmt") {
      const Json tree = Json::parse(statement.tree_json, nullptr, false);
      std::string kind;
      if (tree.is_object()) {
        const auto node = tree.find("TransactionStmt");
        if (node != tree.end() && node->is_object()) kind = node->value("kind", std::string());
      }
      if (kind == "TRANS_STMT_BEGIN" || kind == "TRANS_STMT_START" || kind == "TRANS_STMT_COMMIT") {
        out.commits = true;
        continue;
      }
    }
    kept.push_back(statement.statement.text);
  }
  out.statements = static_cast<int>(kept.size());
  for (const std::string& text : kept) {
    absl::StrAppend(&out.text, out.text.empty() ? "" : "\n", text, ";\n");
  }
  return out;
}

std::string StepWords(absl::string_view obtained) {
  return obtained == "captured" ? "captured on an empty database: review" : "offline SQL";
}

}  // namespace

absl::StatusOr<DriverProject> ParseRenderAnswer(absl::string_view text) {
  ASSIGN_OR_RETURN(const Json json, ReadAnswer(text));
  DriverProject project;
  ASSIGN_OR_RETURN(project.alembic, String(json, "alembic", ""));
  ASSIGN_OR_RETURN(project.sqlalchemy, String(json, "sqlalchemy", ""));
  ASSIGN_OR_RETURN(project.python, String(json, "python", ""));
  ASSIGN_OR_RETURN(project.script_location, String(json, "script_location", ""));
  ASSIGN_OR_RETURN(project.version_table, String(json, "version_table", ""));
  const auto per_migration = json.find("transaction_per_migration");
  if (per_migration == json.end() || !per_migration->is_boolean()) {
    return Protocol("\"transaction_per_migration\" is not true or false");
  }
  project.transaction_per_migration = per_migration->get<bool>();
  ASSIGN_OR_RETURN(project.heads, Strings(json, "heads", ""));
  std::sort(project.heads.begin(), project.heads.end());
  const auto revisions = json.find("revisions");
  if (revisions == json.end() || !revisions->is_array()) {
    return Protocol("\"revisions\" is not a list");
  }
  std::set<std::string> seen;
  for (const Json& item : *revisions) {
    ASSIGN_OR_RETURN(DriverRevision revision, ReadRevision(item, seen));
    seen.insert(revision.id);
    project.revisions.push_back(std::move(revision));
  }
  if (project.revisions.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the Alembic project (", project.script_location, ") has no revisions"));
  }
  for (const std::string& head : project.heads) {
    if (seen.count(head) == 0) {
      return Protocol(absl::StrCat("its head ", head, " is not one of its revisions"));
    }
  }
  return project;
}

absl::Status MergeCaptureAnswer(absl::string_view text, const std::vector<std::string>& directions,
                                DriverRevision& revision) {
  ASSIGN_OR_RETURN(const Json json, ReadAnswer(text));
  for (const std::string& direction : directions) {
    std::set<std::string> allowed = {"captured"};
    if (direction == "downgrade") allowed.insert("irreversible");
    ASSIGN_OR_RETURN(DriverStep step, ReadStep(json, direction.c_str(), revision.id, allowed));
    DriverStep& old = direction == "upgrade" ? revision.upgrade : revision.downgrade;
    if (step.obtained == "captured") step.detail = old.detail;  // why it was not offline
    old = std::move(step);
  }
  return absl::OkStatus();
}

absl::StatusOr<ImportedRevision> ConvertRevision(const DriverRevision& revision) {
  ImportedRevision out;
  out.source = revision.path;
  const std::string name = fs::path(revision.path).filename().string();
  const absl::string_view stem = absl::StripSuffix(name, ".py");
  out.file_name = (stem.empty() || stem[0] == '.') ? absl::StrCat(revision.id, ".sql")
                                                   : absl::StrCat(stem, ".sql");
  engine::NewRevisionSpec& spec = out.spec;
  spec.id = revision.id;
  spec.revises = revision.down_revisions;
  spec.branch_labels = revision.branch_labels;
  spec.depends_on = revision.depends_on;
  spec.message = std::string(absl::StripAsciiWhitespace(revision.message));
  spec.created = revision.create_date;

  const auto convert = [&](const DriverStep& step, absl::string_view direction,
                           std::string& sql) -> absl::Status {
    if (!step.sql.has_value()) {
      return absl::InternalError(absl::StrCat("revision ", revision.id, ": its ", direction,
                                              " has no SQL (", step.obtained, ")"));
    }
    absl::StatusOr<CleanSql> clean = Clean(*step.sql);
    if (!clean.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("revision ", revision.id, " (", revision.path, "): the ", direction,
                       " SQL Alembic ", step.obtained == "captured" ? "ran" : "rendered",
                       " does not parse: ", clean.status().message()));
    }
    out.commits = out.commits || clean->commits;
    std::string body;
    if (step.obtained == "captured") {
      for (const std::string& line :
           Wrap(absl::StrCat("captured on an empty database: review. ", direction,
                             "() could not be rendered offline (", step.detail,
                             "), so it ran on a scratch database built up to this revision's ",
                             direction == "upgrade" ? "parents" : "own schema",
                             ", holding only the rows earlier revisions insert; these are the "
                             "statements it executed. On a database with rows it may do more."))) {
        absl::StrAppend(&body, "-- ", line, "\n");
      }
    }
    if (clean->statements == 0) {
      absl::StrAppend(&body, "-- Alembic's ", direction, "() runs no SQL\n");
    } else {
      absl::StrAppend(&body, clean->text);
    }
    sql = std::move(body);
    return absl::OkStatus();
  };

  RETURN_IF_ERROR(convert(revision.upgrade, "upgrade", spec.upgrade_sql));
  out.upgrade = revision.upgrade.obtained;
  if (revision.downgrade.obtained == "irreversible") {
    spec.reversible = false;
    out.downgrade = "none";
    out.reason = revision.downgrade.detail;
  } else {
    RETURN_IF_ERROR(convert(revision.downgrade, "downgrade", spec.downgrade_sql));
    out.downgrade = revision.downgrade.obtained;
  }
  spec.transactional = !out.commits;

  std::string summary = absl::StrCat(
      "Imported from Alembic (", revision.path, ") by schemactl import-alembic. Upgrade - ",
      StepWords(out.upgrade), ". Downgrade - ",
      out.downgrade == "none" ? absl::StrCat("none, irreversible: ", out.reason)
                              : StepWords(out.downgrade),
      ".");
  if (out.commits) {
    absl::StrAppend(&summary,
                    " Alembic's step commits (op.execute(\"COMMIT\") or an autocommit_block, as "
                    "before CREATE INDEX CONCURRENTLY), so the revision is non-transactional "
                    "and its BEGIN/COMMIT statements are left out.");
  }
  for (const std::string& warning : revision.warnings) {
    absl::StrAppend(&summary, " Note - ", warning);
  }
  spec.notes = Wrap(summary);
  return out;
}

std::vector<std::string> RevisionFilesIn(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!name.empty() && name[0] != '.' && absl::EndsWith(name, ".sql")) {
      names.push_back(name);
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

namespace {

// A directory made for staging, removed (with what is left in it) when the
// object dies.
class StagingDir {
 public:
  explicit StagingDir(std::string path) : path_(std::move(path)) {}
  ~StagingDir() {
    if (!path_.empty()) {
      std::error_code ec;
      fs::remove_all(path_, ec);
    }
  }
  StagingDir(const StagingDir&) = delete;
  StagingDir& operator=(const StagingDir&) = delete;
  const std::string& path() const { return path_; }
  void Release() { path_.clear(); }

 private:
  std::string path_;
};

absl::StatusOr<std::string> MakeStagingDir(const fs::path& parent, const std::string& base) {
  std::string pattern = (parent / absl::StrCat(".", base, ".import-XXXXXX")).string();
  if (mkdtemp(pattern.data()) == nullptr) {
    const int error = errno;
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create a directory in ", parent.string(), ": ", std::strerror(error)));
  }
  // mkdtemp makes it 0700: give it the usual mode of a new directory.
  const mode_t mask = umask(0);
  umask(mask);
  chmod(pattern.c_str(), 0777 & ~mask);
  return pattern;
}

// The loaded graph must be Alembic's.
absl::Status CompareGraph(const engine::RevisionGraph& graph, const DriverProject& project,
                          const std::map<std::string, std::string>& files) {
  if (graph.size() != static_cast<int>(project.revisions.size())) {
    return absl::InternalError(absl::StrCat("the written files hold ", graph.size(),
                                            " revisions, Alembic's project ",
                                            project.revisions.size()));
  }
  for (const DriverRevision& r : project.revisions) {
    const int index = graph.IndexOf(r.id);
    const std::string file = files.at(r.id);
    if (index < 0) {
      return absl::InternalError(absl::StrCat(file, ": revision ", r.id, " did not load"));
    }
    const engine::Revision& loaded = graph.revision(index);
    const auto same_set = [](std::vector<std::string> a, std::vector<std::string> b) {
      std::sort(a.begin(), a.end());
      std::sort(b.begin(), b.end());
      return a == b;
    };
    const auto differ = [&](absl::string_view what, const std::vector<std::string>& got,
                            const std::vector<std::string>& want) {
      return absl::InternalError(absl::StrCat(file, ": revision ", r.id, " loads with ", what, " [",
                                              absl::StrJoin(got, ", "), "], Alembic has [",
                                              absl::StrJoin(want, ", "), "]"));
    };
    if (loaded.revises != r.down_revisions) {
      return differ("revises", loaded.revises, r.down_revisions);
    }
    if (!same_set(loaded.branch_labels, r.branch_labels)) {
      return differ("branch_labels", loaded.branch_labels, r.branch_labels);
    }
    if (loaded.depends_on != r.depends_on) {
      return differ("depends_on", loaded.depends_on, r.depends_on);
    }
  }
  std::vector<std::string> heads = graph.Ids(graph.heads());
  std::sort(heads.begin(), heads.end());
  if (heads != project.heads) {
    return absl::InternalError(absl::StrCat("the written files' heads are [",
                                            absl::StrJoin(heads, ", "), "], Alembic's [",
                                            absl::StrJoin(project.heads, ", "), "]"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteImport(const std::vector<ImportedRevision>& revisions,
                         const DriverProject& project, const std::string& dir, bool force) {
  std::error_code ec;
  const fs::path target = fs::path(dir).lexically_normal();
  const bool exists = fs::exists(target, ec);
  if (exists && !fs::is_directory(target, ec)) {
    return UsageError(absl::StrCat("--out ", dir, " is not a directory"));
  }
  std::vector<std::string> existing = exists ? RevisionFilesIn(dir) : std::vector<std::string>{};
  const std::string config_name(engine::kMigrationSetConfigFileName);
  if (exists && fs::exists(target / config_name, ec)) {
    existing.push_back(config_name);
  }
  if (!existing.empty() && !force) {
    return UsageError(
        absl::StrCat("--out ", dir, " already holds revision files (",
                     absl::StrJoin(existing.begin(),
                                   existing.begin() + std::min<size_t>(3, existing.size()), ", "),
                     existing.size() > 3 ? ", ..." : "", "); pass --force to replace them"));
  }
  fs::path parent = exists ? target : target.parent_path();
  if (parent.empty()) parent = ".";
  if (!exists) {
    fs::create_directories(parent, ec);
    if (ec) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot create ", parent.string(), ": ", ec.message()));
    }
  }
  const std::string base = target.filename().empty() ? "out" : target.filename().string();
  ASSIGN_OR_RETURN(const std::string staging_path, MakeStagingDir(parent, base));
  StagingDir staging(staging_path);

  // Unique file names: a second revision of the same name gets its id.
  std::map<std::string, std::string> files;  // id -> final path, for messages
  std::set<std::string> names;
  std::vector<std::pair<std::string, const ImportedRevision*>> to_write;
  for (const ImportedRevision& revision : revisions) {
    std::string name = revision.file_name;
    if (!names.insert(name).second) {
      name = absl::StrCat(absl::StripSuffix(name, ".sql"), "_", revision.spec.id, ".sql");
      if (!names.insert(name).second) {
        return absl::FailedPreconditionError(
            absl::StrCat("two revisions would be written to ", name));
      }
    }
    files[revision.spec.id] = (target / name).string();
    to_write.emplace_back(name, &revision);
  }
  for (const auto& [name, revision] : to_write) {
    RETURN_IF_ERROR(internal::WriteNewFile((fs::path(staging.path()) / name).string(),
                                           engine::RenderRevisionFile(revision->spec)));
  }
  // The migration set's transaction scope is env.py's.
  const engine::TransactionScope scope = project.transaction_per_migration
                                             ? engine::TransactionScope::kPerRevision
                                             : engine::TransactionScope::kPerCommand;
  RETURN_IF_ERROR(internal::WriteNewFile(
      (fs::path(staging.path()) / config_name).string(),
      absl::StrCat("# Settings of this migration set (docs/user-guide.md §5), from the Alembic\n"
                   "# project's env.py by schemactl import-alembic.\n",
                   "transaction = ", engine::TransactionScopeName(scope), "\n")));
  absl::StatusOr<engine::MigrationSetConfig> declared =
      engine::LoadMigrationSetConfig(staging.path());
  if (!declared.ok() || declared->transaction != scope) {
    return absl::InternalError(absl::StrCat("the written ", config_name, " does not read back"));
  }
  // Loaded back as every verb loads a directory, and compared with Alembic.
  absl::StatusOr<std::vector<engine::Revision>> loaded =
      engine::LoadRevisionDirectory(staging.path());
  if (!loaded.ok()) {
    return Annotate(loaded.status(), "the converted revisions do not load");
  }
  absl::StatusOr<engine::RevisionGraph> graph = engine::RevisionGraph::Build(*std::move(loaded));
  if (!graph.ok()) {
    return Annotate(graph.status(), "the converted revisions do not form a graph");
  }
  RETURN_IF_ERROR(CompareGraph(*graph, project, files));

  // Everything checked: move the files in.
  if (!exists) {
    if (std::rename(staging.path().c_str(), target.c_str()) != 0) {
      const int error = errno;
      return absl::FailedPreconditionError(
          absl::StrCat("cannot rename ", staging.path(), " to ", dir, ": ", std::strerror(error)));
    }
    staging.Release();
    return absl::OkStatus();
  }
  for (const std::string& name : existing) {
    fs::remove(target / name, ec);
    if (ec) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot remove ", (target / name).string(), ": ", ec.message()));
    }
  }
  to_write.emplace_back(config_name, nullptr);
  for (const auto& [name, revision] : to_write) {
    const fs::path from = fs::path(staging.path()) / name;
    if (std::rename(from.c_str(), (target / name).c_str()) != 0) {
      const int error = errno;
      return absl::FailedPreconditionError(
          absl::StrCat("cannot move ", name, " into ", dir, ": ", std::strerror(error)));
    }
  }
  return absl::OkStatus();
}

}  // namespace schemad::cli::import_alembic
