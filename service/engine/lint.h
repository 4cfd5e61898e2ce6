// Migration linting: before a revision runs, which statement will lock a busy
// table for minutes, rewrite it, or throw data away, and what to write
// instead. Rules read PostgreSQL's parse tree (sql_parser.h); docs/lint.md
// documents each with a firing example and its safe alternative.
//
//   ASSIGN_OR_RETURN(LintConfig config, LoadLintConfig("migrations/modax"));
//   std::vector<LintFinding> findings = LintRevisions(revisions, config);
//   // {rule "create-index-not-concurrently", severity kError, revision
//   //  "3f2a...", file ".../3f2a_x.sql", line 12, statement "CREATE INDEX ...",
//   //  message "CREATE INDEX without CONCURRENTLY blocks writes ..."}
//
// Suppression: a line `-- schemad:lint-ignore` directly before a statement's
// first line silences every rule for that statement;
// `-- schemad:lint-ignore RULE[,RULE...]` only those rules (an unknown rule
// name is itself an error finding, rule "lint-ignore-unknown-rule").
//
// Thread-safety: stateless; safe to call from any thread.
#ifndef SCHEMAD_SERVICE_ENGINE_LINT_H_
#define SCHEMAD_SERVICE_ENGINE_LINT_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "service/engine/revision.h"
#include "service/engine/revision_graph.h"

namespace schemad::engine {

enum class LintSeverity { kOff, kInfo, kWarning, kError };

// "off", "info", "warning", "error".
absl::string_view LintSeverityName(LintSeverity severity);

struct LintRule {
  std::string code;  // e.g. "create-index-not-concurrently"
  LintSeverity default_severity;
  std::string summary;  // one line
};

// Every rule, in docs/lint.md's order.
const std::vector<LintRule>& LintRules();

struct LintFinding {
  std::string rule;
  LintSeverity severity = LintSeverity::kWarning;
  std::string revision;   // revision id
  std::string file;       // Revision::path
  int line = 0;           // 1-based line of the statement in the file (0: the revision)
  std::string statement;  // the statement's text cut to 200 bytes ("" for the revision)
  std::string message;    // why it is dangerous and what to do instead
};

// Severities per rule for one migration directory; rules not named keep
// their default.
struct LintConfig {
  std::map<std::string, LintSeverity> severities;
};

// The name of the per-directory configuration file.
inline constexpr absl::string_view kLintConfigFileName = "schemad-lint.conf";

// Parses a configuration file: one `RULE = SEVERITY` a line (SEVERITY one of
// off, info, warning, error), `#` comments and blank lines; at most 64 KiB.
// INVALID_ARGUMENT "path:line: ..." for an unknown rule or severity, a
// duplicate rule or a malformed line.
absl::StatusOr<LintConfig> ParseLintConfig(absl::string_view path, absl::string_view content);

// DIR/schemad-lint.conf parsed, or the defaults when there is none.
absl::StatusOr<LintConfig> LoadLintConfig(const std::string& dir);

// Lints `revisions`, given base first (parents before children): rules that
// look across revisions (a validated CHECK before SET NOT NULL) read the
// earlier ones. Findings come in the order of the revisions and, within one,
// of the statements; rules configured "off" and suppressed findings are
// dropped.
std::vector<LintFinding> LintRevisions(const std::vector<const Revision*>& revisions,
                                       const LintConfig& config);

// Lints every revision of `graph`, base first (the order LintRevisions
// needs): what the service does when it loads a migration set.
std::vector<LintFinding> LintGraph(const RevisionGraph& graph, const LintConfig& config);

// Whether any finding is error-level.
bool HasLintErrors(const std::vector<LintFinding>& findings);

}  // namespace schemad::engine

#endif  // SCHEMAD_SERVICE_ENGINE_LINT_H_
