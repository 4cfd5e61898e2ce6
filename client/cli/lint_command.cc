// `schemactl lint`: the migration linter (service/engine/lint.h) on the
// directory of --dir, for people, as JSON (--json) or as SARIF 2.1.0 (--sarif)
// for code-review tools. Also LintForCheck and the warning `revision` prints.
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/cli/command_util.h"
#include "client/cli/commands.h"
#include "client/cli/output.h"
#include "service/common/status_macros.h"
#include "service/engine/lint.h"
#include "service/engine/revision_graph.h"

namespace schemad::cli {
namespace {

using engine::LintFinding;
using engine::LintSeverity;
using engine::RevisionGraph;
using internal::Io;

// The indices of the revisions `options` selects, and every revision base
// first (the order rules that look back need).
struct Selection {
  std::vector<int> base_first;
  std::vector<bool> selected;
};

absl::StatusOr<Selection> Select(const RevisionGraph& graph, const LintOptions& options) {
  Selection selection;
  std::vector<int> newest_first = internal::NewestFirst(graph);
  selection.base_first.assign(newest_first.rbegin(), newest_first.rend());
  selection.selected.assign(graph.size(), options.range.empty() && options.since.empty());
  if (!options.range.empty() && !options.since.empty()) {
    return UsageError("give a revision or range, or --since, not both");
  }
  if (!options.since.empty()) {
    ASSIGN_OR_RETURN(const std::vector<int> since, graph.ResolveSymbol(options.since));
    selection.selected = since.empty() ? std::vector<bool>(graph.size(), true)
                                       : graph.DescendantMask(since, /*include_dependencies=*/true);
    for (int index : since) {
      selection.selected[index] = false;
    }
    return selection;
  }
  if (options.range.empty()) {
    return selection;
  }
  const size_t colon = options.range.find(':');
  if (colon == std::string::npos) {
    ASSIGN_OR_RETURN(const std::vector<int> revisions, graph.ResolveSymbol(options.range));
    for (int index : revisions) {
      selection.selected[index] = true;
    }
    return selection;
  }
  const std::string start = options.range.substr(0, colon);
  const std::string end = options.range.substr(colon + 1);
  std::vector<bool> after(graph.size(), true);
  if (!start.empty() && start != "base") {
    ASSIGN_OR_RETURN(const std::vector<int> from, graph.ResolveSymbol(start));
    after = graph.DescendantMask(from, /*include_dependencies=*/true);
  }
  std::vector<bool> before(graph.size(), true);
  if (!end.empty() && end != "heads") {
    ASSIGN_OR_RETURN(const std::vector<int> to, graph.ResolveSymbol(end));
    before = graph.AncestorMask(to, /*include_dependencies=*/true);
  }
  for (int i = 0; i < graph.size(); ++i) {
    selection.selected[i] = after[i] && before[i];
  }
  return selection;
}

std::string SarifLevel(LintSeverity severity) {
  switch (severity) {
    case LintSeverity::kError:
      return "error";
    case LintSeverity::kWarning:
      return "warning";
    default:
      return "note";
  }
}

// SARIF 2.1.0 (https://docs.oasis-open.org/sarif/sarif/v2.1.0/): one run,
// the rules as the driver's, one result per finding.
Json Sarif(const std::vector<LintFinding>& findings) {
  Json rules = Json::array();
  for (const engine::LintRule& rule : engine::LintRules()) {
    Json item;
    item["id"] = rule.code;
    item["shortDescription"]["text"] = rule.summary;
    item["helpUri"] = absl::StrCat("docs/lint.md#", rule.code);
    item["defaultConfiguration"]["level"] = SarifLevel(rule.default_severity);
    rules.push_back(std::move(item));
  }
  Json results = Json::array();
  for (const LintFinding& finding : findings) {
    Json result;
    result["ruleId"] = finding.rule;
    result["level"] = SarifLevel(finding.severity);
    result["message"]["text"] = finding.message;
    Json location;
    location["physicalLocation"]["artifactLocation"]["uri"] = finding.file;
    location["physicalLocation"]["region"]["startLine"] = std::max(1, finding.line);
    result["locations"] = Json::array({std::move(location)});
    result["properties"]["revision"] = finding.revision;
    results.push_back(std::move(result));
  }
  Json run;
  run["tool"]["driver"]["name"] = "schemactl lint";
  run["tool"]["driver"]["rules"] = std::move(rules);
  run["results"] = std::move(results);
  Json sarif;
  sarif["$schema"] = "https://json.schemastore.org/sarif-2.1.0.json";
  sarif["version"] = "2.1.0";
  sarif["runs"] = Json::array({std::move(run)});
  return sarif;
}

}  // namespace

namespace internal {

absl::StatusOr<std::vector<LintFinding>> LintDirectory(const GlobalOptions& global,
                                                       const RevisionGraph& graph,
                                                       const LintOptions& options) {
  ASSIGN_OR_RETURN(const engine::LintConfig config, engine::LoadLintConfig(global.dir));
  ASSIGN_OR_RETURN(const Selection selection, Select(graph, options));
  std::vector<const engine::Revision*> revisions;
  for (int index : selection.base_first) {
    revisions.push_back(&graph.revision(index));
  }
  std::vector<LintFinding> findings;
  for (LintFinding& finding : engine::LintRevisions(revisions, config)) {
    const int index = graph.IndexOf(finding.revision);
    if (index >= 0 && selection.selected[index]) {
      findings.push_back(std::move(finding));
    }
  }
  return findings;
}

void PrintFindings(const std::vector<LintFinding>& findings, std::ostream& out) {
  for (const LintFinding& f : findings) {
    out << f.file << ":" << std::max(1, f.line) << ": " << engine::LintSeverityName(f.severity)
        << ": [" << f.rule << "] " << f.message << "\n";
    if (!f.statement.empty()) {
      const std::vector<absl::string_view> lines = absl::StrSplit(f.statement, '\n');
      out << "    " << lines[0] << (lines.size() > 1 ? " ..." : "") << "\n";
    }
  }
}

std::string FindingsSummary(const std::vector<LintFinding>& findings) {
  int counts[4] = {0, 0, 0, 0};
  for (const LintFinding& f : findings) {
    ++counts[static_cast<int>(f.severity)];
  }
  const auto count = [&](LintSeverity s, absl::string_view name) {
    const int n = counts[static_cast<int>(s)];
    return absl::StrCat(n, " ", name, n == 1 ? "" : "s");
  };
  return absl::StrCat(count(LintSeverity::kError, "error"), ", ",
                      count(LintSeverity::kWarning, "warning"), ", ",
                      count(LintSeverity::kInfo, "info"));
}

}  // namespace internal

int RunLint(const GlobalOptions& global, const LintOptions& options, std::ostream& out,
            std::ostream& err) {
  const Io io{global, out, err};
  if (options.sarif && global.json) {
    return internal::Fail(io, UsageError("--json and --sarif exclude each other"));
  }
  absl::StatusOr<RevisionGraph> graph = internal::LoadGraph(global);
  if (!graph.ok()) {
    return internal::Fail(io, graph.status());
  }
  absl::StatusOr<std::vector<LintFinding>> findings =
      internal::LintDirectory(global, *graph, options);
  if (!findings.ok()) {
    return internal::Fail(io, findings.status());
  }
  const bool errors = engine::HasLintErrors(*findings);
  if (options.sarif) {
    out << JsonText(Sarif(*findings)) << "\n";
  } else if (global.json) {
    Json list = Json::array();
    for (const LintFinding& f : *findings) {
      Json item;
      item["rule"] = f.rule;
      item["severity"] = std::string(engine::LintSeverityName(f.severity));
      item["revision"] = f.revision;
      item["file"] = f.file;
      item["line"] = f.line;
      item["statement"] = f.statement;
      item["message"] = f.message;
      list.push_back(std::move(item));
    }
    Json json;
    json["findings"] = std::move(list);
    out << JsonText(json) << "\n";
  } else {
    internal::PrintFindings(*findings, out);
    if (!global.quiet) {
      out << (findings->empty() ? "OK: no findings" : internal::FindingsSummary(*findings)) << "\n";
    }
  }
  return errors ? kExitLintErrors : kExitOk;
}

}  // namespace schemad::cli
