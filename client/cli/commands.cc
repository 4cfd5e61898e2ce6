// Offline verbs and the helpers every verb shares. The database verbs are in
// direct_commands.cc.
#include "client/cli/commands.h"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/cli/command_util.h"
#include "client/cli/output.h"
#include "service/common/dsn.h"
#include "service/common/status_macros.h"
#include "service/engine/offline_sql.h"
#include "service/engine/planner.h"
#include "service/engine/revision_file.h"
#include "service/engine/revision_graph.h"

namespace schemad::cli {

using engine::Plan;
using engine::RevisionGraph;
using internal::Io;

namespace {

constexpr char kExitCodePayload[] = "type.googleapis.com/schemad.cli.ExitCode";

}  // namespace

// ------------------------------------------------------------- exit codes

int ExitCodeFor(const absl::Status& status) {
  if (status.ok()) {
    return kExitOk;
  }
  if (auto payload = status.GetPayload(kExitCodePayload)) {
    int code = 0;
    if (absl::SimpleAtoi(std::string(*payload), &code)) {
      return code;
    }
  }
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:       // unreachable, refused, connection lost
    case absl::StatusCode::kPermissionDenied:  // authentication failed: cannot get in
    case absl::StatusCode::kDeadlineExceeded:  // the migration-lock wait ran out
      return kExitUnavailable;
    default:
      return kExitFailed;
  }
}

absl::Status WithExitCode(absl::Status status, ExitCode code) {
  if (!status.ok()) {
    status.SetPayload(kExitCodePayload, absl::Cord(absl::StrCat(static_cast<int>(code))));
  }
  return status;
}

bool HasExitCode(const absl::Status& status) {
  return status.GetPayload(kExitCodePayload).has_value();
}

absl::Status UsageError(absl::string_view message) {
  return WithExitCode(absl::InvalidArgumentError(message), kExitUsage);
}

// ------------------------------------------------------------ flag values

absl::StatusOr<absl::Duration> ParseDurationFlag(absl::string_view flag, absl::string_view text) {
  absl::StatusOr<absl::Duration> duration = engine::ParseDuration(absl::StripAsciiWhitespace(text));
  if (!duration.ok()) {
    return UsageError(absl::StrCat(flag, ": ", duration.status().message(), "; 0 for no limit"));
  }
  return duration;
}

std::string DefaultWho() {
  std::string user;
  for (const char* name : {"USER", "LOGNAME"}) {
    const char* value = std::getenv(name);
    if (value != nullptr && *value != '\0') {
      user = value;
      break;
    }
  }
  if (user.empty()) {
    const struct passwd* entry = getpwuid(getuid());
    user = entry != nullptr && entry->pw_name != nullptr ? entry->pw_name : "unknown";
  }
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') {
    return user;
  }
  return absl::StrCat(user, "@", host);
}

// ---------------------------------------------------------------- helpers

namespace internal {

std::string ScrubSecrets(absl::string_view text, const std::string& dsn) {
  return ::schemad::dsn::ScrubDsnSecrets(text, dsn);
}

int Fail(const Io& io, const absl::Status& status) {
  const int code = ExitCodeFor(status);
  const std::string message = ScrubSecrets(status.message(), io.global.dsn);
  io.err << Paint("schemactl: error:", Color::kRed, io.global.color_err) << " " << message << "\n";
  if (io.global.json) {
    Json json;
    json["ok"] = false;
    json["error"] = StatusJson(absl::Status(status.code(), message), code);
    io.out << JsonText(json) << "\n";
  }
  io.out.flush();
  io.err.flush();
  return code;
}

int Finish(const Io& io, const absl::StatusOr<int>& result) {
  if (!result.ok()) {
    return Fail(io, result.status());
  }
  io.out.flush();
  return *result;
}

absl::StatusOr<RevisionGraph> LoadGraph(const GlobalOptions& global) {
  absl::StatusOr<std::vector<engine::Revision>> revisions =
      engine::LoadRevisionDirectory(global.dir);
  if (!revisions.ok()) {
    if (revisions.status().code() == absl::StatusCode::kNotFound) {
      return absl::NotFoundError(
          absl::StrCat(revisions.status().message(), " (pass --dir DIR or set SCHEMAD_DIR)"));
    }
    return revisions.status();
  }
  return RevisionGraph::Build(std::move(*revisions));
}

absl::StatusOr<std::vector<std::string>> ResolveRows(const RevisionGraph& graph,
                                                     absl::string_view text,
                                                     absl::string_view what) {
  std::vector<std::string> rows;
  text = absl::StripAsciiWhitespace(text);
  if (text.empty() || text == "base") {
    return rows;
  }
  absl::flat_hash_set<std::string> seen;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (part.empty()) {
      return UsageError(absl::StrCat(what, ": empty entry in '", text, "'"));
    }
    if (part == "base") {
      return UsageError(absl::StrCat(what, ": 'base' stands alone (no rows), not in a list"));
    }
    absl::StatusOr<std::vector<int>> indices = graph.ResolveSymbol(part);
    if (!indices.ok()) {
      return Annotate(indices.status(), what);
    }
    for (int index : *indices) {
      if (seen.insert(graph.id(index)).second) {
        rows.push_back(graph.id(index));
      }
    }
  }
  return rows;
}

std::vector<int> NewestFirst(const RevisionGraph& graph) {
  // Post-order depth-first walk down from each head (then from anything not
  // reached, for completeness): every revision comes after its ancestors.
  // Reversed, children come first.
  const int n = graph.size();
  std::vector<int> order;
  order.reserve(n);
  std::vector<bool> visited(n, false);
  std::vector<std::pair<int, size_t>> stack;
  const auto walk = [&](int start) {
    if (visited[start]) {
      return;
    }
    visited[start] = true;
    stack.emplace_back(start, 0);
    while (!stack.empty()) {
      auto& [node, next] = stack.back();
      const std::vector<int>& down = graph.node(node).all_down;
      if (next < down.size()) {
        const int child = down[next++];
        if (!visited[child]) {
          visited[child] = true;
          stack.emplace_back(child, 0);
        }
      } else {
        order.push_back(node);
        stack.pop_back();
      }
    }
  };
  for (int head : graph.heads()) {
    walk(head);
  }
  for (int i = 0; i < n; ++i) {
    walk(i);
  }
  std::reverse(order.begin(), order.end());
  return order;
}

Json StringListJson(const std::vector<std::string>& values) {
  Json list = Json::array();
  for (const std::string& value : values) {
    list.push_back(value);
  }
  return list;
}

std::string RowsText(const std::vector<std::string>& rows) {
  return rows.empty() ? "<base>" : absl::StrJoin(rows, ", ");
}

Json PlanJson(const RevisionGraph& graph, const Plan& plan) {
  Json json;
  Json steps = Json::array();
  for (const engine::PlanStep& step : plan.steps) {
    Json item;
    item["revision"] = graph.id(step.revision);
    item["direction"] = std::string(engine::DirectionName(step.direction));
    steps.push_back(std::move(item));
  }
  json["steps"] = std::move(steps);
  json["heads_after"] = StringListJson(plan.rows_after);
  json["kind"] = plan.kind == Plan::Kind::kUpgrade     ? "upgrade"
                 : plan.kind == Plan::Kind::kDowngrade ? "downgrade"
                                                       : "stamp";
  json["target"] = plan.target;
  json["heads_before"] = StringListJson(plan.rows_before);
  return json;
}

void PrintPlan(const RevisionGraph& graph, const Plan& plan, absl::string_view verb,
               std::ostream& out) {
  if (plan.steps.empty()) {
    out << "Nothing to do: " << verb << " " << plan.target << " from " << RowsText(plan.rows_before)
        << " changes nothing.\n";
    return;
  }
  out << "Plan: " << verb << " " << plan.target << " from " << RowsText(plan.rows_before) << ", "
      << plan.steps.size() << (plan.steps.size() == 1 ? " revision" : " revisions") << "\n";
  for (const engine::PlanStep& step : plan.steps) {
    const engine::Revision& revision = graph.revision(step.revision);
    out << "  " << (step.direction == engine::Direction::kUp ? "up  " : "down") << "  "
        << revision.id << "  " << revision.message;
    if (!revision.transactional) {
      out << "  (non-transactional)";
    }
    out << "\n";
  }
  out << "Heads after: " << RowsText(plan.rows_after) << "\n";
}

absl::StatusOr<std::optional<engine::TransactionScope>> GivenTransactionScope(
    absl::string_view value) {
  if (value.empty()) {
    return std::nullopt;
  }
  if (std::optional<engine::TransactionScope> scope = engine::ParseTransactionScope(value)) {
    return scope;
  }
  return UsageError(
      absl::StrCat("--transaction: expected 'per-command' or 'per-revision', got '", value, "'"));
}

absl::StatusOr<engine::TransactionScope> TransactionScopeFor(const GlobalOptions& global,
                                                             absl::string_view value) {
  ASSIGN_OR_RETURN(std::optional<engine::TransactionScope> given, GivenTransactionScope(value));
  return engine::ResolveTransactionScope(global.dir, given);
}

absl::StatusOr<int> RunOfflineSql(const Io& io, absl::string_view verb, absl::string_view spec,
                                  bool from_required, absl::string_view transaction) {
  ASSIGN_OR_RETURN(const engine::TransactionScope scope,
                   TransactionScopeFor(io.global, transaction));
  absl::string_view from = "base";
  absl::string_view to = spec;
  const size_t colon = spec.find(':');
  if (colon != absl::string_view::npos) {
    from = spec.substr(0, colon);
    to = spec.substr(colon + 1);
    if (from.empty()) {
      from = "base";
    }
  } else if (from_required) {
    return UsageError(absl::StrCat(verb,
                                   " --sql needs FROM:TO (offline mode does not read the "
                                   "database), e.g. ",
                                   verb, " --sql 3f2a9c1b7d4e:base"));
  }
  if (to.empty()) {
    return UsageError(absl::StrCat(verb, " --sql: no target after ':'"));
  }
  ASSIGN_OR_RETURN(RevisionGraph graph, LoadGraph(io.global));
  ASSIGN_OR_RETURN(std::vector<std::string> rows, ResolveRows(graph, from, "FROM"));
  absl::StatusOr<Plan> plan = verb == "upgrade" ? engine::PlanUpgrade(graph, rows, to)
                                                : engine::PlanDowngrade(graph, rows, to);
  if (!plan.ok()) {
    return plan.status();
  }
  engine::OfflineSqlOptions sql_options;
  sql_options.version_table = io.global.version_table;
  sql_options.transaction_per_plan = scope == engine::TransactionScope::kPerCommand;
  const std::string sql = engine::RenderOfflineSql(graph, *plan, sql_options);
  if (io.global.json) {
    Json json = PlanJson(graph, *plan);
    json["sql"] = sql;
    io.out << JsonText(json) << "\n";
  } else {
    io.out << sql;
  }
  return kExitOk;
}

absl::Status WriteNewFile(const std::string& path, const std::string& text) {
  std::FILE* file = std::fopen(path.c_str(), "wx");
  if (file == nullptr) {
    const int error = errno;
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create ", path, ": ", std::strerror(error)));
  }
  const bool written = std::fwrite(text.data(), 1, text.size(), file) == text.size();
  const bool closed = std::fclose(file) == 0;
  if (!written || !closed) {
    std::remove(path.c_str());
    return absl::InternalError(absl::StrCat("cannot write ", path));
  }
  return absl::OkStatus();
}

}  // namespace internal

namespace {

using engine::LintSeverity;
using internal::Finish;
using internal::LoadGraph;
using internal::NewestFirst;
using internal::StringListJson;

// ---------------------------------------------------------------- heads

absl::StatusOr<int> Heads(const Io& io, const HeadsOptions& options) {
  ASSIGN_OR_RETURN(RevisionGraph graph, LoadGraph(io.global));
  const std::vector<int>& heads_to_show =
      options.resolve_dependencies ? graph.real_heads() : graph.heads();
  if (io.global.json) {
    Json heads = Json::array();
    for (int head : heads_to_show) {
      heads.push_back(RevisionJson(graph, head));
    }
    Json json;
    json["heads"] = std::move(heads);
    io.out << JsonText(json) << "\n";
    return kExitOk;
  }
  for (int head : heads_to_show) {
    io.out << (options.verbose ? FormatLogEntry(graph, head)
                               : FormatRevisionLine(graph, head, LineFormat::Heads()) + "\n");
  }
  return kExitOk;
}

// -------------------------------------------------------------- branches

absl::StatusOr<int> Branches(const Io& io, const BranchesOptions& options) {
  ASSIGN_OR_RETURN(RevisionGraph graph, LoadGraph(io.global));
  Json branches = Json::array();
  for (int index : NewestFirst(graph)) {
    if (!graph.IsBranchPoint(index)) {
      continue;
    }
    const std::vector<int>& next = graph.node(index).next;
    if (io.global.json) {
      Json item;
      item["revision"] = graph.id(index);
      item["branch_labels"] = StringListJson(graph.node(index).branch_labels);
      item["message"] = graph.revision(index).message;
      item["next"] = StringListJson(graph.Ids(next));
      branches.push_back(std::move(item));
      continue;
    }
    LineFormat format;
    format.labels = true;
    io.out << (options.verbose ? FormatLogEntry(graph, index)
                               : FormatRevisionLine(graph, index, format) + "\n");
    LineFormat child_format;
    child_format.labels = true;
    child_format.message = options.verbose;
    const std::string indent(graph.id(index).size(), ' ');
    for (int child : next) {
      io.out << indent << " -> " << FormatRevisionLine(graph, child, child_format) << "\n";
    }
    io.out << "\n";
  }
  if (io.global.json) {
    Json json;
    json["branches"] = std::move(branches);
    io.out << JsonText(json) << "\n";
  }
  return kExitOk;
}

// ------------------------------------------------------------------ show

absl::StatusOr<int> Show(const Io& io, const ShowOptions& options) {
  ASSIGN_OR_RETURN(RevisionGraph graph, LoadGraph(io.global));
  ASSIGN_OR_RETURN(std::vector<int> indices, graph.ResolveSymbol(options.revision));
  if (indices.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", options.revision, "' is base: there is no revision to show"));
  }
  if (io.global.json) {
    Json revisions = Json::array();
    for (int index : indices) {
      revisions.push_back(RevisionJson(graph, index));
    }
    Json json;
    json["revisions"] = std::move(revisions);
    io.out << JsonText(json) << "\n";
    return kExitOk;
  }
  for (int index : indices) {
    io.out << FormatLogEntry(graph, index);
  }
  return kExitOk;
}

// ----------------------------------------------------------------- check

absl::StatusOr<int> Check(const Io& io, const CheckOptions& options) {
  ASSIGN_OR_RETURN(RevisionGraph graph, LoadGraph(io.global));
  const std::vector<std::string> heads = graph.HeadIds();
  const bool several = heads.size() > 1 && !options.allow_multiple_heads;
  absl::Status problem;
  if (several) {
    problem = WithExitCode(
        absl::FailedPreconditionError(absl::StrCat(
            "multiple heads: ", absl::StrJoin(heads, ", "),
            "; join them with `schemactl merge -m MESSAGE heads`, or pass --allow-multiple-heads")),
        kExitNotAtHead);
  }
  // Lint (docs/lint.md): error-level findings fail the check.
  ASSIGN_OR_RETURN(const std::vector<engine::LintFinding> findings,
                   internal::LintDirectory(io.global, graph, LintOptions{}));
  if (problem.ok() && engine::HasLintErrors(findings)) {
    std::vector<engine::LintFinding> errors;
    std::copy_if(findings.begin(), findings.end(), std::back_inserter(errors),
                 [](const engine::LintFinding& f) { return f.severity == LintSeverity::kError; });
    if (!io.global.json) {
      internal::PrintFindings(errors, io.err);
    }
    problem = WithExitCode(
        absl::FailedPreconditionError(absl::StrCat(
            "lint: ", internal::FindingsSummary(findings),
            "; fix the error-level findings or suppress them (`schemactl lint`, docs/lint.md)")),
        kExitLintErrors);
  }
  const int code = ExitCodeFor(problem);
  if (io.global.json) {
    Json json;
    json["ok"] = problem.ok();
    Json lint;
    for (const LintSeverity severity :
         {LintSeverity::kError, LintSeverity::kWarning, LintSeverity::kInfo}) {
      lint[std::string(engine::LintSeverityName(severity))] = std::count_if(
          findings.begin(), findings.end(),
          [severity](const engine::LintFinding& f) { return f.severity == severity; });
    }
    if (!problem.ok()) {
      json["error"] = StatusJson(problem, code);
    }
    json["directory"] = io.global.dir;
    json["revisions"] = graph.size();
    json["heads"] = StringListJson(heads);
    json["bases"] = StringListJson(graph.Ids(graph.bases()));
    json["lint"] = std::move(lint);
    io.out << JsonText(json) << "\n";
  }
  if (!problem.ok()) {
    io.err << "schemactl: error: " << problem.message() << "\n";
    return code;
  }
  if (!io.global.json && !io.global.quiet) {
    if (graph.empty()) {
      io.out << "OK: " << io.global.dir << " holds no revisions\n";
    } else {
      io.out << "OK: " << graph.size() << (graph.size() == 1 ? " revision" : " revisions")
             << (heads.size() == 1 ? ", head " : ", heads ") << absl::StrJoin(heads, ", ") << "\n";
    }
  }
  return kExitOk;
}

// ------------------------------------------------- revision and merge

std::vector<std::string> SplitList(const std::vector<std::string>& values) {
  std::vector<std::string> out;
  for (const std::string& value : values) {
    for (absl::string_view part : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
      out.emplace_back(absl::StripAsciiWhitespace(part));
    }
  }
  return out;
}

// Writes the revision `spec` into the directory after checking that the
// directory still loads with it; returns its path.
absl::StatusOr<std::string> WriteRevision(const Io& io, const RevisionGraph& graph,
                                          engine::NewRevisionSpec spec,
                                          const std::string& file_template, absl::Time now) {
  absl::StatusOr<std::string> name =
      engine::RevisionFileName(file_template, spec.id, spec.message, now);
  if (!name.ok()) {
    return WithExitCode(Annotate(name.status(), "--file-template"), kExitUsage);
  }
  const std::string path = (std::filesystem::path(io.global.dir) / *name).string();
  const std::string text = engine::RenderRevisionFile(spec);
  // What we write must read back and fit the graph (labels, ids, depends_on).
  absl::StatusOr<engine::Revision> parsed = engine::ParseRevisionFile(path, text);
  if (!parsed.ok()) {
    return WithExitCode(Annotate(parsed.status(), "the new revision would not parse"), kExitUsage);
  }
  std::vector<engine::Revision> revisions = graph.revisions();
  revisions.push_back(*std::move(parsed));
  absl::StatusOr<RevisionGraph> with_new = RevisionGraph::Build(std::move(revisions));
  if (!with_new.ok()) {
    return WithExitCode(Annotate(with_new.status(), "the new revision would not fit"), kExitUsage);
  }
  RETURN_IF_ERROR(internal::WriteNewFile(path, text));
  return path;
}

absl::StatusOr<std::string> NewId(const RevisionGraph& graph, const std::string& requested) {
  if (!requested.empty()) {
    if (graph.IndexOf(requested) >= 0) {
      return UsageError(absl::StrCat("--id: revision ", requested, " already exists"));
    }
    return requested;
  }
  for (;;) {
    std::string id = engine::NewRevisionId();
    if (graph.IndexOf(id) < 0) {
      return id;
    }
  }
}

absl::StatusOr<RevisionGraph> LoadGraphForWriting(const GlobalOptions& global) {
  std::error_code error;
  if (!std::filesystem::is_directory(global.dir, error)) {
    return absl::NotFoundError(absl::StrCat("migration directory '", global.dir,
                                            "' does not exist; create it first (or pass --dir "
                                            "DIR / set SCHEMAD_DIR)"));
  }
  return LoadGraph(global);
}

void PrintWritten(const Io& io, const engine::NewRevisionSpec& spec, const std::string& path) {
  if (io.global.json) {
    Json json;
    json["revision"] = spec.id;
    json["path"] = path;
    json["revises"] = StringListJson(spec.revises);
    json["branch_labels"] = StringListJson(spec.branch_labels);
    json["depends_on"] = StringListJson(spec.depends_on);
    json["message"] = spec.message;
    json["transactional"] = spec.transactional;
    io.out << JsonText(json) << "\n";
    return;
  }
  io.out << path << "\n";
}

// After `revision` wrote a file: the error- and warning-level lint findings
// of the revisions it builds on (usually the ones just written, about to be
// deployed with it), as warnings on stderr. The new file itself holds only
// placeholders. Never fails the verb.
void WarnAboutLint(const Io& io, const RevisionGraph& graph, const std::vector<std::string>& ids) {
  std::vector<engine::LintFinding> shown;
  for (const std::string& id : ids) {
    LintOptions options;
    options.range = id;
    absl::StatusOr<std::vector<engine::LintFinding>> findings =
        internal::LintDirectory(io.global, graph, options);
    if (!findings.ok()) {
      io.err << "schemactl: warning: lint: " << findings.status().message() << "\n";
      return;
    }
    for (engine::LintFinding& f : *findings) {
      if (f.severity == LintSeverity::kError || f.severity == LintSeverity::kWarning) {
        shown.push_back(std::move(f));
      }
    }
  }
  if (shown.empty() || io.global.quiet) {
    return;
  }
  io.err << "schemactl: warning: lint findings in the revision(s) the new one revises "
            "(`schemactl lint`, docs/lint.md):\n";
  internal::PrintFindings(shown, io.err);
}

absl::StatusOr<int> NewRevision(const Io& io, const RevisionOptions& options) {
  const std::string message(absl::StripAsciiWhitespace(options.message));
  if (message.empty()) {
    return UsageError("revision: -m MESSAGE is required");
  }
  // Before any work (--autogenerate builds schemas): a bad template is a usage error.
  if (absl::Status bad =
          engine::RevisionFileName(options.file_template, "id", "", absl::Now()).status();
      !bad.ok()) {
    return UsageError(absl::StrCat("--file-template: ", bad.message()));
  }
  ASSIGN_OR_RETURN(RevisionGraph graph, LoadGraphForWriting(io.global));
  engine::NewRevisionSpec spec;
  ASSIGN_OR_RETURN(spec.id, NewId(graph, options.id));
  spec.message = message;
  const absl::Time now = absl::Now();
  spec.created = options.created.empty() ? TimeText(now) : options.created;
  spec.transactional = !options.non_transactional;
  spec.branch_labels = SplitList(options.branch_labels);

  // What the new revision revises: Alembic's `--head`.
  if (!graph.empty()) {
    absl::StatusOr<std::vector<int>> heads = graph.ResolveSymbol(options.head);
    if (!heads.ok()) {
      if (heads.status().code() == absl::StatusCode::kFailedPrecondition &&
          options.head == "head") {
        return absl::FailedPreconditionError(absl::StrCat(
            "multiple heads are present (", absl::StrJoin(graph.HeadIds(), ", "),
            "); pass --head REV for the one the new revision should be based on, or merge them "
            "first with `schemactl merge -m MESSAGE heads`"));
      }
      return Annotate(heads.status(), "--head");
    }
    for (int index : *heads) {
      if (!options.splice && !graph.node(index).next.empty()) {
        return absl::FailedPreconditionError(
            absl::StrCat("revision ", graph.id(index),
                         " is not a head revision; pass --splice to create a new branch from it"));
      }
      if (std::find(spec.revises.begin(), spec.revises.end(), graph.id(index)) ==
          spec.revises.end()) {
        spec.revises.push_back(graph.id(index));
      }
    }
  } else if (options.head != "head" && options.head != "heads" && options.head != "base") {
    return absl::NotFoundError(absl::StrCat("--head: no revision '", options.head, "' in ",
                                            io.global.dir, " (it holds no revisions)"));
  }

  // depends_on: a branch label stays a label; anything else becomes the full id.
  for (const std::string& dependency : SplitList(options.depends_on)) {
    if (graph.IndexOfLabel(dependency) >= 0) {
      spec.depends_on.push_back(dependency);
      continue;
    }
    absl::StatusOr<int> index = graph.ResolveIdent(dependency);
    if (!index.ok()) {
      return Annotate(index.status(), "--depends-on");
    }
    spec.depends_on.push_back(graph.id(*index));
  }

  if (options.autogenerate) {
    ASSIGN_OR_RETURN(internal::AutogeneratedBodies bodies,
                     internal::AutogenerateBodies(graph, spec.revises, options));
    if (bodies.changes == 0) {
      if (!io.global.quiet) {
        io.out << "no changes: the schema at " << internal::RowsText(spec.revises) << " already is "
               << options.schema << "; nothing written\n";
      }
      return kExitOk;
    }
    spec.upgrade_sql = std::move(bodies.upgrade_sql);
    spec.downgrade_sql = std::move(bodies.downgrade_sql);
  }
  ASSIGN_OR_RETURN(std::string path, WriteRevision(io, graph, spec, options.file_template, now));
  PrintWritten(io, spec, path);
  WarnAboutLint(io, graph, spec.revises);
  return kExitOk;
}

absl::StatusOr<int> Merge(const Io& io, const MergeOptions& options) {
  const std::string message(absl::StripAsciiWhitespace(options.message));
  if (message.empty()) {
    return UsageError("merge: -m MESSAGE is required");
  }
  if (options.revisions.empty()) {
    return UsageError("merge: name the revisions to merge (REV REV..., or `heads`)");
  }
  ASSIGN_OR_RETURN(RevisionGraph graph, LoadGraphForWriting(io.global));
  engine::NewRevisionSpec spec;
  for (const std::string& symbol : SplitList(options.revisions)) {
    absl::StatusOr<std::vector<int>> indices = graph.ResolveSymbol(symbol);
    if (!indices.ok()) {
      return indices.status();
    }
    for (int index : *indices) {
      if (!graph.node(index).next.empty()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "revision ", graph.id(index), " is not a head revision; only heads can be merged"));
      }
      if (std::find(spec.revises.begin(), spec.revises.end(), graph.id(index)) ==
          spec.revises.end()) {
        spec.revises.push_back(graph.id(index));
      }
    }
  }
  if (spec.revises.size() < 2) {
    return absl::FailedPreconditionError(absl::StrCat(
        "nothing to merge: ", spec.revises.empty() ? "no revisions" : spec.revises[0],
        " (a merge joins two or more heads; heads now: ", absl::StrJoin(graph.HeadIds(), ", "),
        ")"));
  }
  ASSIGN_OR_RETURN(spec.id, NewId(graph, options.id));
  spec.message = message;
  const absl::Time now = absl::Now();
  spec.created = options.created.empty() ? TimeText(now) : options.created;
  spec.branch_labels = SplitList(options.branch_labels);
  ASSIGN_OR_RETURN(std::string path, WriteRevision(io, graph, spec, options.file_template, now));
  PrintWritten(io, spec, path);
  WarnAboutLint(io, graph, spec.revises);
  return kExitOk;
}

// ------------------------------------------------------------------ plan

absl::StatusOr<int> PlanVerb(const Io& io, const PlanOptions& options) {
  if (options.direction != "upgrade" && options.direction != "downgrade") {
    return UsageError(
        absl::StrCat("plan: expected `upgrade` or `downgrade`, got '", options.direction, "'"));
  }
  if (options.target.empty()) {
    return UsageError("plan: a TARGET is required (e.g. heads, base, +1, 3f2a)");
  }
  ASSIGN_OR_RETURN(const engine::TransactionScope scope,
                   internal::TransactionScopeFor(io.global, options.transaction));
  ASSIGN_OR_RETURN(RevisionGraph graph, LoadGraph(io.global));
  std::vector<std::string> rows;
  if (options.from.has_value()) {
    ASSIGN_OR_RETURN(rows, internal::ResolveRows(graph, *options.from, "--from"));
  } else if (!io.global.dsn.empty()) {
    ASSIGN_OR_RETURN(rows, internal::ReadRowsFromDatabase(io.global));
  } else if (options.direction == "downgrade") {
    return UsageError("plan downgrade: pass --from REV[,REV...] or --dsn to say where from");
  }
  absl::StatusOr<Plan> plan = options.direction == "upgrade"
                                  ? engine::PlanUpgrade(graph, rows, options.target)
                                  : engine::PlanDowngrade(graph, rows, options.target);
  if (!plan.ok()) {
    return Annotate(plan.status(), "plan refused");
  }
  std::string sql;
  if (options.sql) {
    engine::OfflineSqlOptions sql_options;
    sql_options.version_table = io.global.version_table;
    sql_options.transaction_per_plan = scope == engine::TransactionScope::kPerCommand;
    sql = engine::RenderOfflineSql(graph, *plan, sql_options);
  }
  if (io.global.json) {
    Json json = internal::PlanJson(graph, *plan);
    if (options.sql) {
      json["sql"] = sql;
    }
    io.out << JsonText(json) << "\n";
  } else if (options.sql) {
    io.out << sql;
  } else {
    internal::PrintPlan(graph, *plan, options.direction, io.out);
  }
  return kExitOk;
}

}  // namespace

// ------------------------------------------------------------ entry points

int RunHeads(const GlobalOptions& global, const HeadsOptions& options, std::ostream& out,
             std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, Heads(io, options));
}

int RunBranches(const GlobalOptions& global, const BranchesOptions& options, std::ostream& out,
                std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, Branches(io, options));
}

int RunShow(const GlobalOptions& global, const ShowOptions& options, std::ostream& out,
            std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, Show(io, options));
}

int RunCheck(const GlobalOptions& global, const CheckOptions& options, std::ostream& out,
             std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, Check(io, options));
}

int RunRevision(const GlobalOptions& global, const RevisionOptions& options, std::ostream& out,
                std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, NewRevision(io, options));
}

int RunMerge(const GlobalOptions& global, const MergeOptions& options, std::ostream& out,
             std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, Merge(io, options));
}

int RunPlan(const GlobalOptions& global, const PlanOptions& options, std::ostream& out,
            std::ostream& err) {
  const Io io{global, out, err};
  return Finish(io, PlanVerb(io, options));
}

}  // namespace schemad::cli
