// schemactl's verbs as plain functions: each takes the global options, its own
// options struct and the two output streams, prints, and returns the process
// exit code. main.cc only parses flags and dispatches; tests call these
// in-process.
//
//   GlobalOptions global;
//   global.dir = "migrations/modax";
//   std::ostringstream out, err;
//   int code = RunHeads(global, HeadsOptions{}, out, err);   // 0, out: "3f2a... (head)\n"
//
// Offline verbs (no database): heads, branches, history, show, check, lint,
// revision, merge, plan, and upgrade/downgrade with --sql. Direct verbs (on
// --dsn, through engine::Executor and the PostgreSQL store): upgrade,
// downgrade, current, history (applied marks), stamp, ensure-head, validate,
// resolve. Exit codes: ExitCode below and docs/cli.md; JSON shapes: docs/cli.md.
//
// Thread-safety: the functions share no state; each call opens its own
// database connections.
#ifndef SCHEMAD_CLIENT_CLI_COMMANDS_H_
#define SCHEMAD_CLIENT_CLI_COMMANDS_H_

#include <atomic>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "service/engine/revision_file.h"

namespace schemad::cli {

// Process exit codes (also documented in main.cc and docs/cli.md).
enum ExitCode : int {
  kExitOk = 0,              // done
  kExitFailed = 1,          // operation failed: SQL error, refused plan, bad revision files,
                            // validation issues
  kExitUsage = 2,           // bad flags or arguments
  kExitNotAtHead = 3,       // current --check-heads / ensure-head --no-apply behind;
                            // check with several heads
  kExitNeedsAttention = 4,  // a non-transactional revision was interrupted: resolve it
  kExitUnavailable = 5,     // cannot connect (unreachable, refused, authentication failed),
                            // or the migration-lock wait ran out
  kExitLintErrors = 6,      // lint (or check) found an error-level finding
  kExitDrift = 7,           // drift: the live schema differs from what its revisions build
};

// The one mapping from a status to an exit code: an exit code the CLI attached
// (WithExitCode) wins; otherwise UNAVAILABLE, PERMISSION_DENIED (the store's
// authentication failure) and DEADLINE_EXCEEDED (lock wait) give 5, OK gives 0
// and every other code 1.
int ExitCodeFor(const absl::Status& status);
// `status` marked to exit with `code` (a payload; the message is kept).
absl::Status WithExitCode(absl::Status status, ExitCode code);
// Whether WithExitCode set `status`'s exit code.
bool HasExitCode(const absl::Status& status);
// An INVALID_ARGUMENT marked kExitUsage.
absl::Status UsageError(absl::string_view message);

// Options every verb takes.
struct GlobalOptions {
  std::string dir = "migrations";                 // --dir, SCHEMAD_DIR
  std::string dsn;                                // --dsn, SCHEMAD_DSN, DATABASE_URL; empty: none
  std::string dsn_source = "--dsn";               // where `dsn` came from, for messages
  bool json = false;                              // --json
  std::string version_table = "alembic_version";  // --version-table, may be schema.table
  absl::Duration lock_wait = absl::Seconds(60);   // --lock-wait
  absl::Duration lock_timeout = absl::ZeroDuration();       // --lock-timeout; 0: none
  absl::Duration statement_timeout = absl::ZeroDuration();  // --statement-timeout; 0: none
  std::string who;                                          // --who; empty: DefaultWho()
  bool quiet = false;                                       // -q
  bool no_progress = false;                                 // --no-progress
  // Set by main: whether the progress stream is a terminal and how wide.
  bool progress_is_terminal = false;
  int terminal_width = 0;
  // Set by main from --color (auto: a terminal, unless NO_COLOR is set):
  // whether what goes to stdout / stderr may carry colour (never with --json).
  bool color_out = false;
  bool color_err = false;
  // Set by main: turns true on SIGINT/SIGTERM; the running statement is
  // cancelled and the operation stops. May be null.
  const std::atomic<bool>* cancelled = nullptr;
};

// The flag grammar of durations, the same as revision files' lock_timeout:
// a number and a unit (us, ms, s, min or m, h, d), terms may be joined
// ("1h30min"), "0" means none. INVALID_ARGUMENT marked kExitUsage otherwise.
absl::StatusOr<absl::Duration> ParseDurationFlag(absl::string_view flag, absl::string_view text);

// "$USER@hostname".
std::string DefaultWho();

// ------------------------------------------------------------ offline verbs

struct HeadsOptions {
  bool verbose = false;
  // Alembic's --resolve-dependencies: leave out the "effective heads" (no
  // revision revises them, but one depends on them).
  bool resolve_dependencies = false;
};
int RunHeads(const GlobalOptions& global, const HeadsOptions& options, std::ostream& out,
             std::ostream& err);

struct BranchesOptions {
  bool verbose = false;
};
int RunBranches(const GlobalOptions& global, const BranchesOptions& options, std::ostream& out,
                std::ostream& err);

// Newest first. With a DSN: (current) marks and, per revision, whether it is
// applied and when (from schemad_history); `log` prints schemad_history itself.
struct HistoryOptions {
  bool verbose = false;
  std::string range;  // "[START]:[END]", Alembic's -r; START/END symbols, `current` with a DSN
  bool log = false;   // print the schemad_history rows instead (needs a DSN)
  int limit = 0;      // --log: at most this many rows; 0: all
};
int RunHistory(const GlobalOptions& global, const HistoryOptions& options, std::ostream& out,
               std::ostream& err);

struct ShowOptions {
  std::string revision;  // any symbol: id, prefix, label, head, heads, label@head...
};
int RunShow(const GlobalOptions& global, const ShowOptions& options, std::ostream& out,
            std::ostream& err);

struct CheckOptions {
  bool allow_multiple_heads = false;
};
int RunCheck(const GlobalOptions& global, const CheckOptions& options, std::ostream& out,
             std::ostream& err);

// `lint [REV | A:B | --since REV]`: findings of the migration linter
// (service/engine/lint.h, docs/lint.md) on the selected revisions; exit
// kExitLintErrors when one is error-level.
struct LintOptions {
  std::string range;   // "": every revision; REV (any symbol); "[A]:[B]" (A and B included)
  std::string since;   // --since REV: the descendants of REV, REV excluded
  bool sarif = false;  // --sarif: SARIF 2.1.0 instead of text (--json: JSON)
};
int RunLint(const GlobalOptions& global, const LintOptions& options, std::ostream& out,
            std::ostream& err);

struct RevisionOptions {
  std::string message;
  std::string head = "head";  // the revision(s) the new one revises
  std::vector<std::string> branch_labels;
  std::vector<std::string> depends_on;
  bool non_transactional = false;
  bool splice = false;
  std::string id;       // empty: a fresh 12-hex id
  std::string created;  // empty: now, UTC (tests pin it)
  // --autogenerate: the upgrade takes the schema at the revisions the new one
  // revises to the desired state in `schema` (a .sql file or a directory of
  // them, e.g. `pg_dump --schema-only` output); the downgrade takes it back.
  // Both schemas are built in scratch databases on `dev_dsn` (schema_commands.cc).
  bool autogenerate = false;
  std::string schema;
  std::string dev_dsn = "local";
  bool allow_destructive = false;  // write changes that lose data (commented in the file)
  // The new file's name (engine::RevisionFileName): --file-template,
  // SCHEMAD_FILE_TEMPLATE, schemactl.ini's file-template.
  std::string file_template = engine::kDefaultFileTemplate;
};
int RunRevision(const GlobalOptions& global, const RevisionOptions& options, std::ostream& out,
                std::ostream& err);

struct MergeOptions {
  std::string message;
  std::vector<std::string> revisions;  // `heads` expands to every head
  std::vector<std::string> branch_labels;
  std::string id;
  std::string created;
  std::string file_template = engine::kDefaultFileTemplate;  // as RevisionOptions'
};
int RunMerge(const GlobalOptions& global, const MergeOptions& options, std::ostream& out,
             std::ostream& err);

struct PlanOptions {
  std::string direction;  // "upgrade" or "downgrade"
  std::string target;
  // "REV,REV..." or "base". Unset: the database's rows with a DSN; without
  // one, base for upgrade and an error for downgrade.
  std::optional<std::string> from;
  bool sql = false;              // print the offline SQL script
  std::string transaction = {};  // for --sql: per-command | per-revision; "": the set's
};
int RunPlan(const GlobalOptions& global, const PlanOptions& options, std::ostream& out,
            std::ostream& err);

// ------------------------------------------------------------- direct verbs

struct UpgradeOptions {
  std::string target = "heads";  // with --sql: [FROM:]TO, FROM default base
  bool sql = false;
  bool allow_changed = false;
  // per-command (`all`) | per-revision; "": the migration set's (schemad.conf)
  std::string transaction = {};
};
int RunUpgrade(const GlobalOptions& global, const UpgradeOptions& options, std::ostream& out,
               std::ostream& err);

struct DowngradeOptions {
  std::string target;  // with --sql: FROM:TO
  bool sql = false;
  // per-command (`all`) | per-revision; "": the migration set's (schemad.conf)
  std::string transaction = {};
};
int RunDowngrade(const GlobalOptions& global, const DowngradeOptions& options, std::ostream& out,
                 std::ostream& err);

struct CurrentOptions {
  bool check_heads = false;
  bool verbose = false;
};
int RunCurrent(const GlobalOptions& global, const CurrentOptions& options, std::ostream& out,
               std::ostream& err);

struct StampOptions {
  std::vector<std::string> revisions;
  bool purge = false;
};
int RunStamp(const GlobalOptions& global, const StampOptions& options, std::ostream& out,
             std::ostream& err);

struct EnsureHeadOptions {
  bool no_apply = false;
};
int RunEnsureHead(const GlobalOptions& global, const EnsureHeadOptions& options, std::ostream& out,
                  std::ostream& err);

struct ValidateOptions {};
int RunValidate(const GlobalOptions& global, const ValidateOptions& options, std::ostream& out,
                std::ostream& err);

struct ResolveOptions {
  bool applied = false;
  bool rolled_back = false;
};
int RunResolve(const GlobalOptions& global, const ResolveOptions& options, std::ostream& out,
               std::ostream& err);

// Re-records the checksums of applied revisions whose files changed (one
// audit row each in schemad's history); exit 1 when an applied revision has
// no file.
struct RepairOptions {};
int RunRepair(const GlobalOptions& global, const RepairOptions& options, std::ostream& out,
              std::ostream& err);

// ------------------------------------------------- schema verbs (issue 12)
// Schemas are read from a live database (its catalog), or built in scratch
// databases on a dev server (`--dev-dsn DSN` whose role may CREATE DATABASE,
// or `local`: a throwaway cluster from the local PostgreSQL installation,
// the default; SCHEMAD_DEV_DSN) from desired-state SQL or from revisions.

// `diff FROM TO`: the DDL that makes FROM's schema into TO's. Each side is
// `live` (the database of --dsn), a DSN (postgresql://...), DIR@REV or @REV
// (the schema revisions DIR, default --dir, build up to REV: an id, heads,
// a label, base), or a desired-state path (.sql file or directory of them).
// --json: the changes with their safety. Exit 0 whether or not they differ.
struct DiffOptions {
  std::string from;
  std::string to;
  std::string dev_dsn = "local";
};
int RunDiff(const GlobalOptions& global, const DiffOptions& options, std::ostream& out,
            std::ostream& err);

// `drift`: the live schema of --dsn against the schema its alembic_version
// rows should produce from --dir. Exit 0 without drift, kExitDrift with,
// naming each extra, missing and changed object; --sql prints the DDL that
// takes the database back to its revisions' schema instead.
struct DriftOptions {
  std::string dev_dsn = "local";
  bool sql = false;
};
int RunDrift(const GlobalOptions& global, const DriftOptions& options, std::ostream& out,
             std::ostream& err);

// `verify`: the up/down consistency check of every revision (pytest-alembic's),
// on a scratch database of the dev server: in upgrade order, each revision
// is upgraded, downgraded and upgraded again; the schema after the downgrade
// must equal the schema before the upgrade, and the second upgrade's the
// first's. A revision without a downgrade section is reported as declared
// irreversible and not downgraded. With --schema, the head schema must equal
// that desired state. Exit 1 at the first inconsistency, naming the revision
// and the differing objects.
struct VerifyOptions {
  std::string dev_dsn = "local";
  std::string schema;  // "": no head check
};
int RunVerify(const GlobalOptions& global, const VerifyOptions& options, std::ostream& out,
              std::ostream& err);

}  // namespace schemad::cli

#endif  // SCHEMAD_CLIENT_CLI_COMMANDS_H_
