// schemactl: the command-line front end of schemad. This file only parses
// flags (CLI11) and dispatches to the verb functions in commands.h; see
// docs/cli.md for the verbs, their output and their JSON shapes.
//
// Exit codes (ExitCode in commands.h; one mapping, ExitCodeFor):
//   0  ok
//   1  operation failed: SQL error in a revision, refused plan, unknown or
//      ambiguous revision, bad revision files, validation issues, cancelled
//   2  usage error: bad flags or arguments (unknown flag, bad duration, no
//      DSN for a database verb, malformed DSN, --sql FROM:TO missing, ...)
//   3  not at head: `current --check-heads` or `ensure-head --no-apply` on a
//      database that is behind; `check` with several heads
//   4  needs attention: a non-transactional revision was interrupted; the
//      database is blocked until `schemactl resolve`
//   5  cannot use the database (unreachable, connection refused or lost,
//      authentication failed) or the wait for the migration lock ran out
//      (--lock-wait)
//   6  lint findings: `lint` (or `check`) found an error-level finding
//   7  drift: the live schema differs from what its applied revisions build
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/cli/commands.h"
#include "client/cli/help_formats.h"
#include "client/cli/import_alembic.h"
#include "client/cli/output.h"
#include "client/cli/project_config.h"
#include "client/cli/remote_commands.h"
#include "service/common/edit_distance.h"
#include "service/common/version_table.h"

namespace {

using namespace schemad::cli;  // NOLINT: a main file dispatching to this namespace

std::atomic<bool> g_cancelled{false};

extern "C" void OnSignal(int signal_number) {
  if (g_cancelled.exchange(true)) {
    // Second Ctrl-C: stop waiting for a clean cancel.
    std::signal(signal_number, SIG_DFL);
    std::raise(signal_number);
  }
}

// Whether `flag` is on the command line itself (`--flag V` or `--flag=V`),
// as opposed to set from its environment variable.
bool FlagGiven(int argc, char** argv, absl::string_view flag) {
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == flag || absl::StartsWith(arg, absl::StrCat(flag, "="))) return true;
  }
  return false;
}

// Shown by --help and in the man page.
const std::vector<std::pair<std::string, std::string>> kExamples = {
    {"Bring a database to head (a service's start-up, a CI step)",
     "schemactl --dsn postgresql://app@db/site_a --dir migrations ensure-head"},
    {"Write a revision, then check and lint the directory",
     "schemactl revision -m 'add sensor_data table' && schemactl check"},
    {"See the plan, apply it, step back one revision",
     "schemactl plan upgrade heads && schemactl upgrade && schemactl downgrade -1"},
    {"The SQL for a review, without connecting",
     "schemactl upgrade --sql base:heads > upgrade.sql"},
    {"Has the database been changed by hand?", "schemactl drift"},
    {"Move in from Alembic: its revisions as SQL files with the same ids",
     "schemactl import-alembic --config alembic.ini --out migrations --scratch-dsn local"},
    {"Every site of a fleet through schemad, four at a time",
     "schemactl --server schemad:50051 --token-file ops.token fleet upgrade heads --parallel 4"},
};
const std::vector<std::pair<std::string, std::string>> kExitCodes = {
    {"0", "ok"},
    {"1", "failed"},
    {"2", "usage"},
    {"3", "not at head"},
    {"4", "needs attention"},
    {"5", "cannot connect, or the lock wait ran out"},
    {"6", "lint errors"},
    {"7", "drift"},
};

// --file-template of revision and merge (also SCHEMAD_FILE_TEMPLATE).
void AddFileTemplateOption(CLI::App* command, std::string* file_template) {
  command
      ->add_option("--file-template", *file_template,
                   "New file's name: {year}{month}{day}_{hour}{minute}_{id}_{slug} (default), "
                   "tokens {id} {slug} {year} {month} {day} {hour} {minute} {second}")
      ->envname("SCHEMAD_FILE_TEMPLATE");
}

// The value of `flag` on the command line (`--flag V` or `--flag=V`), or
// nullopt.
std::optional<std::string> FlagValue(int argc, char** argv, absl::string_view flag) {
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == flag && i + 1 < argc) return std::string(argv[i + 1]);
    if (absl::StartsWith(arg, absl::StrCat(flag, "="))) {
      return std::string(arg.substr(flag.size() + 1));
    }
  }
  return std::nullopt;
}

bool EnvSet(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0';
}

// The environment variable of the long flag `--NAME`, global or a verb's
// (the first verb that has it: every verb spells it the same); "" if none.
std::string EnvNameOf(const CLI::App& app, const std::string& name) {
  const std::string flag = "--" + name;
  if (const CLI::Option* option = app.get_option_no_throw(flag)) return option->get_envname();
  for (const CLI::App* verb : app.get_subcommands([](const CLI::App*) { return true; })) {
    if (const CLI::Option* option = verb->get_option_no_throw(flag)) return option->get_envname();
  }
  return "";
}

// --dev-dsn of the schema verbs (also SCHEMAD_DEV_DSN).
void AddDevDsnOption(CLI::App* command, std::string* dev_dsn) {
  command
      ->add_option("--dev-dsn", *dev_dsn,
                   "Where schemas are built: a DSN with CREATEDB, or local (default)")
      ->envname("SCHEMAD_DEV_DSN");
}

void InstallSignalHandlers() {
  struct sigaction action = {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

int TerminalWidth() {
  struct winsize size = {};
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) {
    return size.ws_col;
  }
  return 80;
}

// Set once the flags are parsed (or guessed from argv when they do not
// parse): usage errors are then JSON on stdout too.
bool g_json = false;

int Usage(const std::string& message) {
  std::cerr << "schemactl: error: " << message << "\nRun with --help for more information.\n";
  if (g_json) {
    Json json;
    json["ok"] = false;
    json["error"] = StatusJson(absl::InvalidArgumentError(message), kExitUsage);
    std::cout << JsonText(json) << "\n";
  }
  return kExitUsage;
}

// The verb of the command line: the first argument that is neither a global
// option nor a global option's value; nullopt when there is none.
std::optional<std::string> VerbOf(const CLI::App& app, int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--") {
      return std::nullopt;
    }
    if (absl::StartsWith(arg, "-")) {
      const CLI::Option* option = app.get_option_no_throw(std::string(arg));
      if (option != nullptr && option->get_items_expected_max() != 0 &&
          !absl::StrContains(arg, '=')) {
        ++i;  // its value
      }
      continue;
    }
    return std::string(arg);
  }
  return std::nullopt;
}

// When the command line names a verb schemactl does not have: "unknown
// command 'upgrad'; did you mean 'upgrade'?". nullopt otherwise.
std::optional<std::string> UnknownCommand(const CLI::App& app, int argc, char** argv) {
  const std::optional<std::string> verb = VerbOf(app, argc, argv);
  if (!verb.has_value()) {
    return std::nullopt;
  }
  const std::string& arg = *verb;
  const std::vector<const CLI::App*> commands =
      app.get_subcommands([](const CLI::App*) { return true; });
  if (std::any_of(commands.begin(), commands.end(),
                  [&](const CLI::App* command) { return command->get_name() == arg; })) {
    return std::nullopt;
  }
  std::string best;
  size_t best_distance = std::max<size_t>(2, arg.size() / 3) + 1;
  for (const CLI::App* command : commands) {
    const std::string& name = command->get_name();
    const size_t distance = absl::StartsWith(name, arg) ? 0 : schemad::EditDistance(arg, name);
    if (distance < best_distance) {
      best = name;
      best_distance = distance;
    }
  }
  return absl::StrCat("unknown command '", arg, "'",
                      best.empty() ? "" : absl::StrCat("; did you mean '", best, "'?"));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"schemactl: versioned schema migrations for PostgreSQL, with Alembic's semantics",
               "schemactl"};
  app.set_version_flag("--version", std::string("schemactl ") + SCHEMAD_VERSION);
  app.require_subcommand(1);
  app.fallthrough();  // global options may follow the verb
  std::string footer = "Examples:\n";
  for (const auto& [what, command] : kExamples) {
    absl::StrAppend(&footer, "  # ", what, "\n  ", command, "\n");
  }
  absl::StrAppend(&footer, "\nExit codes:");
  for (const auto& [code, meaning] : kExitCodes)
    absl::StrAppend(&footer, " ", code, " ", meaning, ";");
  footer.back() = '.';
  absl::StrAppend(&footer, " See docs/cli.md, or `schemactl man | man -l -`.");
  app.footer(footer);

  GlobalOptions global;
  std::string lock_wait = "60s";
  std::string lock_timeout = "0";
  std::string statement_timeout = "0";
  app.add_option("--dir", global.dir, "Migration directory (env SCHEMAD_DIR; default migrations)")
      ->envname("SCHEMAD_DIR");
  app.add_option("--dsn", global.dsn,
                 "PostgreSQL DSN, URI or key=value (env SCHEMAD_DSN, then DATABASE_URL)")
      ->envname("SCHEMAD_DSN");
  app.add_flag("--json", global.json,
               "Print one JSON object as the result (progress: JSON lines "
               "on stderr)");
  app.add_option("--version-table", global.version_table,
                 "Version table, optionally schema-qualified (default alembic_version)")
      ->envname("SCHEMAD_VERSION_TABLE");
  CLI::Option* lock_wait_opt =
      app.add_option("--lock-wait", lock_wait,
                     "How long to wait for another migrator's lock (default 60s)")
          ->envname("SCHEMAD_LOCK_WAIT");
  app.add_option("--lock-timeout", lock_timeout,
                 "PostgreSQL lock_timeout for revision statements (default 0: none)")
      ->envname("SCHEMAD_LOCK_TIMEOUT");
  app.add_option("--statement-timeout", statement_timeout,
                 "PostgreSQL statement_timeout for revision statements (default 0: none)")
      ->envname("SCHEMAD_STATEMENT_TIMEOUT");
  app.add_option("--who", global.who,
                 "Identity recorded in schemad_history (env SCHEMAD_WHO; default user@host)")
      ->envname("SCHEMAD_WHO");
  app.add_flag("-q,--quiet", global.quiet, "Only results and errors; no progress")
      ->envname("SCHEMAD_QUIET");
  app.add_flag("--no-progress", global.no_progress, "Plain progress lines even on a terminal")
      ->envname("SCHEMAD_NO_PROGRESS");
  std::string color = "auto";
  app.add_option("--color", color,
                 "Colour on a terminal: auto (default; off when NO_COLOR is set), always, never "
                 "(env SCHEMAD_COLOR)")
      ->envname("SCHEMAD_COLOR")
      ->check(CLI::IsMember({"auto", "always", "never"}));
  std::string config_named;  // read before parsing (below); declared for --help and parsing
  app.add_option("--config", config_named,
                 "Project settings (env SCHEMACTL_CONFIG; default: the nearest schemactl.ini "
                 "here or above; none: no file)")
      ->envname("SCHEMACTL_CONFIG");

  // Remote mode (docs/cli.md, "Remote mode"): the database verbs through a
  // schemad server instead of on a DSN.
  RemoteOptions remote;
  std::string remote_timeout = "30s";
  app.add_option("--server", remote.server,
                 "schemad server HOST:PORT: database verbs go through it (env SCHEMAD_SERVER)")
      ->envname("SCHEMAD_SERVER");
  app.add_option("--database", remote.database,
                 "With --server: the database's configured name (env SCHEMAD_DATABASE)")
      ->envname("SCHEMAD_DATABASE");
  app.add_option("--token", remote.token, "With --server: bearer token (env SCHEMAD_TOKEN)")
      ->envname("SCHEMAD_TOKEN");
  app.add_option("--token-file", remote.token_file,
                 "With --server: file holding the bearer token (env SCHEMAD_TOKEN_FILE)")
      ->envname("SCHEMAD_TOKEN_FILE");
  app.add_flag("--tls", remote.tls, "With --server: TLS, verified with the system's CAs")
      ->envname("SCHEMAD_TLS");
  app.add_option("--tls-ca", remote.tls_ca, "With --server: CA file for TLS (env SCHEMAD_TLS_CA)")
      ->envname("SCHEMAD_TLS_CA");
  app.add_option("--tls-cert", remote.tls_cert,
                 "With --server: client certificate for mutual TLS (env SCHEMAD_TLS_CERT)")
      ->envname("SCHEMAD_TLS_CERT");
  app.add_option("--tls-key", remote.tls_key,
                 "With --server: client key for mutual TLS (env SCHEMAD_TLS_KEY)")
      ->envname("SCHEMAD_TLS_KEY");
  app.add_option("--tls-server-name", remote.tls_server_name,
                 "With --server: name to verify in the server's certificate")
      ->envname("SCHEMAD_TLS_SERVER_NAME");
  app.add_option("--timeout", remote_timeout,
                 "With --server: deadline of calls other than streamed operations (default 30s)")
      ->envname("SCHEMAD_TIMEOUT");

  // Offline verbs.
  HeadsOptions heads;
  CLI::App* heads_cmd = app.add_subcommand("heads", "Show the heads of the revision graph");
  heads_cmd->add_flag("-v,--verbose", heads.verbose, "Full entries");
  heads_cmd->add_flag("--resolve-dependencies", heads.resolve_dependencies,
                      "Only the real heads: leave out a revision that another one depends on");

  BranchesOptions branches;
  CLI::App* branches_cmd = app.add_subcommand("branches", "Show branch points");
  branches_cmd->add_flag("-v,--verbose", branches.verbose, "Full entries");

  HistoryOptions history;
  CLI::App* history_cmd = app.add_subcommand(
      "history", "List revisions, newest first (with --dsn: applied marks and dates)");
  history_cmd->add_flag("-v,--verbose", history.verbose, "Full entries");
  history_cmd->add_option("-r,--rev-range", history.range,
                          "[START]:[END], e.g. 3f2a:, base:timeseries@head, current: (--dsn)");
  history_cmd->add_flag("--log", history.log,
                        "Print the schemad_history table of the database instead (--dsn)");
  history_cmd->add_option("--limit", history.limit, "With --log: at most N rows");

  ShowOptions show;
  CLI::App* show_cmd = app.add_subcommand("show", "Show one revision (or several: heads, ...)");
  show_cmd->add_option("revision", show.revision, "Revision: id, prefix, label, head...")
      ->required();

  CheckOptions check;
  CLI::App* check_cmd =
      app.add_subcommand("check", "Check that the directory loads and has a single head");
  check_cmd->add_flag("--allow-multiple-heads", check.allow_multiple_heads,
                      "Several heads are fine");

  LintOptions lint;
  CLI::App* lint_cmd = app.add_subcommand(
      "lint", "Lint revisions: locks, rewrites and data loss before they run (docs/lint.md)");
  lint_cmd->add_option("revisions", lint.range,
                       "REV (id, prefix, label, heads...) or [A]:[B], both included; default all");
  lint_cmd->add_option("--since", lint.since, "The revisions after REV (REV excluded)");
  lint_cmd->add_flag("--sarif", lint.sarif, "SARIF 2.1.0 output for code-review tools");

  RevisionOptions revision;
  CLI::App* revision_cmd = app.add_subcommand("revision", "Write a new revision file");
  revision_cmd->add_option("-m,--message", revision.message, "What the revision does")->required();
  revision_cmd->add_option("--head", revision.head,
                           "Revision(s) the new one revises (default head; base: a new root)");
  revision_cmd->add_option("--branch-label", revision.branch_labels, "Branch label(s)");
  revision_cmd->add_option("--depends-on", revision.depends_on, "Dependencies (ids or labels)");
  revision_cmd->add_flag("--non-transactional", revision.non_transactional,
                         "Statements run one by one outside a transaction");
  revision_cmd->add_flag("--splice", revision.splice,
                         "Allow --head to name a revision that is not a head");
  revision_cmd->add_option("--id", revision.id, "Revision id (default: 12 random hex digits)");
  AddFileTemplateOption(revision_cmd, &revision.file_template);
  revision_cmd->add_flag("--autogenerate", revision.autogenerate,
                         "Write the SQL that takes the schema at --head to --schema's");
  revision_cmd->add_option("--schema", revision.schema,
                           "With --autogenerate: the desired state (.sql file or directory)");
  AddDevDsnOption(revision_cmd, &revision.dev_dsn);
  revision_cmd->add_flag("--allow-destructive", revision.allow_destructive,
                         "With --autogenerate: also write changes that lose data");

  MergeOptions merge;
  CLI::App* merge_cmd = app.add_subcommand("merge", "Write a revision that merges heads");
  merge_cmd->add_option("-m,--message", merge.message, "What the merge is")->required();
  merge_cmd->add_option("revisions", merge.revisions, "Heads to merge (`heads`: all)")->required();
  merge_cmd->add_option("--branch-label", merge.branch_labels, "Branch label(s)");
  merge_cmd->add_option("--id", merge.id, "Revision id (default: 12 random hex digits)");
  AddFileTemplateOption(merge_cmd, &merge.file_template);

  PlanOptions plan;
  std::string plan_from;
  CLI::App* plan_cmd = app.add_subcommand("plan", "Show what an upgrade or downgrade would do");
  plan_cmd->add_option("direction", plan.direction, "upgrade or downgrade")
      ->required()
      ->check(CLI::IsMember({"upgrade", "downgrade"}));
  plan_cmd->add_option("target", plan.target, "Target: heads, head, base, +1, -1, REV, label@head")
      ->required();
  CLI::Option* plan_from_opt = plan_cmd->add_option(
      "--from", plan_from, "Version rows to plan from: REV,REV... or base (default: the database)");
  plan_cmd->add_flag("--sql", plan.sql, "Print the SQL script instead");
  plan_cmd
      ->add_option("--transaction", plan.transaction,
                   "With --sql: per-command (one transaction; `all`) or per-revision "
                   "(default: the directory's schemad.conf, else per-command)")
      ->check(CLI::IsMember({"per-revision", "per-command", "all"}))
      ->envname("SCHEMAD_TRANSACTION");

  // Remote-only verbs.
  DbsOptions dbs;
  std::vector<std::string> dbs_labels;
  CLI::App* dbs_cmd = app.add_subcommand("dbs", "With --server: every database and its state");
  dbs_cmd->add_option("--label", dbs_labels, "Only databases with this label: key=value");

  HealthOptions health;
  CLI::App* health_cmd = app.add_subcommand(
      "health", "With --server: SERVING (exit 0) or NOT_SERVING (exit 1); needs no token");
  health_cmd->add_option("--set", health.migration_set, "One migration set's health");
  health_cmd->add_flag("--ready", health.ready,
                       "Readiness: can the server take operations (not stopping; with a control "
                       "database, that database answers)");

  CLI::App* reload_cmd = app.add_subcommand(
      "reload", "With --server: the server re-reads its configuration (admin; as SIGHUP)");

  OpsOptions ops;
  CLI::App* ops_cmd =
      app.add_subcommand("ops", "With --server: operations (list, watch ID, cancel ID)");
  ops_cmd->add_option("action", ops.action, "list, watch or cancel")
      ->required()
      ->check(CLI::IsMember({"list", "watch", "cancel"}));
  ops_cmd->add_option("operation", ops.operation_id, "Operation id (watch, cancel)");
  ops_cmd->add_flag("--running", ops.running_only, "list: only queued and running ones");
  ops_cmd->add_option("--limit", ops.limit, "list: at most N");

  FleetCliOptions fleet;
  std::string fleet_site_timeout = "0";
  CLI::App* fleet_cmd = app.add_subcommand(
      "fleet",
      "With --server: upgrade, downgrade, ensure-head, stamp or validate many databases at once, "
      "their status, or resume an abandoned fleet run");
  fleet_cmd
      ->add_option("action", fleet.action,
                   "upgrade, downgrade, ensure-head, stamp, validate, status or resume")
      ->required()
      ->check(CLI::IsMember({"upgrade", "downgrade", "ensure-head", "stamp", "validate", "drift",
                             "status", "resume"}));
  fleet_cmd->add_option("target", fleet.targets,
                        "upgrade/downgrade: the target; stamp: the revisions; resume: the "
                        "abandoned fleet run's operation id");
  fleet_cmd->add_option("--selector", fleet.selector,
                        "Databases: key=value, key!=value, key, !key, name=a|b (comma: and)");
  fleet_cmd->add_option("--parallel", fleet.parallel, "Sites at once (default 4)");
  fleet_cmd->add_option("--canary", fleet.canary, "The first K sites must succeed first");
  fleet_cmd->add_option("--canary-selector", fleet.canary_selector,
                        "Or: the sites this selects must succeed first");
  fleet_cmd->add_flag("--continue-on-error", fleet.continue_on_error,
                      "Go on starting sites after one failed");
  fleet_cmd->add_flag("--allow-lint-errors", fleet.allow_lint_errors,
                      "Upgrade even though the migration set has error-level lint findings "
                      "(they are shown first)");
  fleet_cmd->add_option("--site-timeout", fleet_site_timeout, "Per-site time limit (0: none)");

  // Database verbs.
  UpgradeOptions upgrade;
  CLI::App* upgrade_cmd = app.add_subcommand("upgrade", "Apply revisions up to TARGET");
  upgrade_cmd->add_option("target", upgrade.target,
                          "Target (default heads); with --sql also FROM:TO");
  upgrade_cmd->add_flag("--sql", upgrade.sql, "Print the SQL script; do not connect");
  upgrade_cmd->add_flag("--allow-changed", upgrade.allow_changed,
                        "Upgrade although applied revision files changed");
  upgrade_cmd
      ->add_option("--transaction", upgrade.transaction,
                   "per-command (Alembic's default; `all`): one transaction, split only "
                   "around non-transactional revisions; per-revision: each revision commits "
                   "on its own (default: the directory's schemad.conf, else per-command)")
      ->check(CLI::IsMember({"per-revision", "per-command", "all"}))
      ->envname("SCHEMAD_TRANSACTION");

  DowngradeOptions downgrade;
  CLI::App* downgrade_cmd = app.add_subcommand("downgrade", "Revert revisions down to TARGET");
  downgrade_cmd->add_option("target", downgrade.target, "Target: -1, base, REV; --sql: FROM:TO")
      ->required();
  downgrade_cmd->add_flag("--sql", downgrade.sql, "Print the SQL script; do not connect");
  downgrade_cmd
      ->add_option("--transaction", downgrade.transaction,
                   "per-command (Alembic's default; `all`) or per-revision, as for upgrade")
      ->check(CLI::IsMember({"per-revision", "per-command", "all"}))
      ->envname("SCHEMAD_TRANSACTION");

  CurrentOptions current;
  CLI::App* current_cmd = app.add_subcommand("current", "Show the database's version rows");
  current_cmd->add_flag("--check-heads", current.check_heads, "Exit 3 unless at head");
  current_cmd->add_flag("-v,--verbose", current.verbose, "Full entries");

  StampOptions stamp;
  CLI::App* stamp_cmd = app.add_subcommand("stamp", "Set the version rows without running any SQL");
  stamp_cmd->add_option("revisions", stamp.revisions, "Revision(s), heads or base")->required();
  stamp_cmd->add_flag("--purge", stamp.purge, "Replace every row, not only related ones");

  EnsureHeadOptions ensure_head;
  CLI::App* ensure_head_cmd =
      app.add_subcommand("ensure-head", "Upgrade to heads if behind (cheap when already at head)");
  ensure_head_cmd->add_flag("--no-apply", ensure_head.no_apply, "Only check: exit 3 when behind");

  ValidateOptions validate;
  CLI::App* validate_cmd =
      app.add_subcommand("validate", "Check applied revisions against their files (checksums)");

  ResolveOptions resolve;
  CLI::App* resolve_cmd = app.add_subcommand("resolve",
                                             "Clear a needs-attention state left by a failed "
                                             "non-transactional revision");
  resolve_cmd->add_flag("--applied", resolve.applied, "The interrupted revision is complete");
  resolve_cmd->add_flag("--rolled-back", resolve.rolled_back,
                        "The interrupted revision's effects were undone");

  RepairOptions repair;
  CLI::App* repair_cmd = app.add_subcommand(
      "repair",
      "Re-record the checksums of applied revisions whose files changed (an audit row each)");

  DiffOptions diff;
  CLI::App* diff_cmd = app.add_subcommand(
      "diff", "The DDL that makes FROM's schema into TO's (live, a DSN, DIR@REV, a .sql path)");
  diff_cmd->add_option("from", diff.from, "live | DSN | DIR@REV | @REV | PATH")->required();
  diff_cmd->add_option("to", diff.to, "live | DSN | DIR@REV | @REV | PATH")->required();
  AddDevDsnOption(diff_cmd, &diff.dev_dsn);

  DriftOptions drift;
  CLI::App* drift_cmd = app.add_subcommand(
      "drift", "Compare the live schema with what its applied revisions build (exit 7: drift)");
  AddDevDsnOption(drift_cmd, &drift.dev_dsn);
  drift_cmd->add_flag("--sql", drift.sql, "Print the DDL that takes the database back instead");

  VerifyOptions verify;
  CLI::App* verify_cmd = app.add_subcommand(
      "verify",
      "Upgrade, downgrade and upgrade each revision on a scratch database; check the "
      "schema after each step");
  AddDevDsnOption(verify_cmd, &verify.dev_dsn);
  verify_cmd->add_option("--schema", verify.schema,
                         "The head schema must equal this desired state (.sql file or directory)");

  // Moving in from Alembic (import_alembic.h). Its -c/--config is Alembic's
  // (`alembic -c`), not the global one: main() does not read it as
  // schemactl.ini.
  ImportAlembicOptions import_alembic;
  CLI::App* import_cmd = app.add_subcommand(
      "import-alembic",
      "Convert an Alembic project into revision files: same ids and graph, SQL from Alembic");
  CLI::Option* import_config_opt =
      import_cmd
          ->add_option("-c,--config", import_alembic.config,
                       "The project's alembic.ini (default alembic.ini; env ALEMBIC_CONFIG)")
          ->envname("ALEMBIC_CONFIG");
  import_cmd->add_option("-n,--name", import_alembic.name,
                         "Its section, as Alembic's -n (default alembic)");
  import_cmd->add_option("-x", import_alembic.x,
                         "KEY=VALUE for env.py's context.get_x_argument(), as Alembic's -x");
  import_cmd->add_option("--out", import_alembic.out, "Directory to write the revision files to")
      ->required();
  import_cmd
      ->add_option("--scratch-dsn", import_alembic.scratch_dsn,
                   "Where steps that cannot render offline run: local (a throwaway cluster), or "
                   "a DSN whose role may create databases")
      ->envname("SCHEMAD_SCRATCH_DSN");
  import_cmd
      ->add_option("--python", import_alembic.python,
                   "The project's Python, with Alembic and what env.py imports (default python3)")
      ->envname("SCHEMAD_PYTHON");
  import_cmd->add_flag("--force", import_alembic.force,
                       "Replace the revision files already in --out");

  // Completion scripts and the man page, from these definitions (help_formats.h).
  std::string completion_shell;
  CLI::App* completion_cmd =
      app.add_subcommand("completion", "Print the shell completion script: bash, zsh or fish");
  completion_cmd->add_option("shell", completion_shell, "bash, zsh or fish")
      ->required()
      ->check(CLI::IsMember({"bash", "zsh", "fish"}));
  CLI::App* man_cmd =
      app.add_subcommand("man", "Print the man page (roff): schemactl man | man -l -");

  // Project settings (schemactl.ini, project_config.h), applied before
  // parsing as defaults: CLI11 then overwrites a variable only for a flag
  // given or an environment variable set (the flag's own, EnvNameOf). Each setting names the
  // variables of its flag (one per verb that has it) and checks its value; a relative path is taken
  // from the file's directory.
  enum class Kind { kText, kPath, kDuration, kFlag, kTransaction, kColor };
  struct Setting {
    Kind kind;
    std::vector<std::string*> texts;
    bool* flag = nullptr;
  };
  const std::map<std::string, Setting> settings = {
      {"dir", {Kind::kPath, {&global.dir}}},
      {"dsn", {Kind::kText, {&global.dsn}}},
      {"version-table", {Kind::kText, {&global.version_table}}},
      {"lock-wait", {Kind::kDuration, {&lock_wait}}},
      {"lock-timeout", {Kind::kDuration, {&lock_timeout}}},
      {"statement-timeout", {Kind::kDuration, {&statement_timeout}}},
      {"who", {Kind::kText, {&global.who}}},
      {"no-progress", {Kind::kFlag, {}, &global.no_progress}},
      {"color", {Kind::kColor, {&color}}},
      {"transaction",
       {Kind::kTransaction, {&upgrade.transaction, &downgrade.transaction, &plan.transaction}}},
      {"file-template", {Kind::kText, {&revision.file_template, &merge.file_template}}},
      {"dev-dsn",
       {Kind::kText, {&revision.dev_dsn, &diff.dev_dsn, &drift.dev_dsn, &verify.dev_dsn}}},
      {"server", {Kind::kText, {&remote.server}}},
      {"database", {Kind::kText, {&remote.database}}},
      {"token-file", {Kind::kPath, {&remote.token_file}}},
      {"tls", {Kind::kFlag, {}, &remote.tls}},
      {"tls-ca", {Kind::kPath, {&remote.tls_ca}}},
      {"tls-cert", {Kind::kPath, {&remote.tls_cert}}},
      {"tls-key", {Kind::kPath, {&remote.tls_key}}},
      {"tls-server-name", {Kind::kText, {&remote.tls_server_name}}},
      {"timeout", {Kind::kDuration, {&remote_timeout}}},
  };
  // Where each setting the file applied came from ("PATH:LINE"), for messages.
  std::map<std::string, std::string> from_file;
  {
    // import-alembic's --config names an alembic.ini, never schemactl.ini.
    const bool importing = VerbOf(app, argc, argv) == std::optional<std::string>("import-alembic");
    std::string named = importing ? "" : FlagValue(argc, argv, "--config").value_or("");
    if (named.empty() && EnvSet("SCHEMACTL_CONFIG")) named = std::getenv("SCHEMACTL_CONFIG");
    for (int i = 1; i < argc; ++i) g_json = g_json || absl::string_view(argv[i]) == "--json";
    std::error_code cwd_error;
    const std::filesystem::path cwd = std::filesystem::current_path(cwd_error);
    absl::StatusOr<std::optional<ProjectConfig>> config = LoadProjectConfig(named, cwd);
    if (!config.ok()) {
      return Usage(std::string(config.status().message()));
    }
    if (config->has_value()) {
      const ProjectConfig& file = **config;
      const std::filesystem::path base =
          std::filesystem::absolute(file.path, cwd_error).parent_path();
      for (const ProjectSetting& entry : file.settings) {
        const std::string where = file.Where(entry);
        const auto found = settings.find(entry.key);
        if (found == settings.end()) {
          std::string best;
          size_t best_distance = 3;
          for (const auto& [key, unused] : settings) {
            const size_t distance = schemad::EditDistance(entry.key, key);
            if (distance < best_distance) {
              best = key;
              best_distance = distance;
            }
          }
          return Usage(
              absl::StrCat(where, ": unknown setting '", entry.key, "'",
                           best.empty() ? "" : absl::StrCat("; did you mean '", best, "'?"),
                           " (settings are long flag names: dir, dsn, version-table, ...)"));
        }
        const Setting& setting = found->second;
        std::string value = entry.value;
        switch (setting.kind) {
          case Kind::kPath:
            if (std::filesystem::path(value).is_relative()) {
              value = (base / value).lexically_normal().string();
            }
            break;
          case Kind::kDuration:
            if (absl::StatusOr<absl::Duration> parsed = ParseDurationFlag(entry.key, value);
                !parsed.ok()) {
              return Usage(absl::StrCat(where, ": ", parsed.status().message()));
            }
            break;
          case Kind::kTransaction:
            if (value != "per-revision" && value != "per-command" && value != "all") {
              return Usage(absl::StrCat(where, ": transaction: '", value,
                                        "' is not per-revision, per-command or all"));
            }
            break;
          case Kind::kColor:
            if (value != "auto" && value != "always" && value != "never") {
              return Usage(
                  absl::StrCat(where, ": color: '", value, "' is not auto, always or never"));
            }
            break;
          case Kind::kFlag:
            if (value != "true" && value != "false") {
              return Usage(
                  absl::StrCat(where, ": ", entry.key, ": '", value, "' is not true or false"));
            }
            break;
          case Kind::kText:
            break;
        }
        if (EnvSet(EnvNameOf(app, entry.key).c_str()) ||
            (entry.key == "dsn" && EnvSet("DATABASE_URL"))) {
          continue;  // the environment beats the file
        }
        for (std::string* text : setting.texts) *text = value;
        if (setting.flag != nullptr) *setting.flag = value == "true";
        from_file[entry.key] = where;
      }
    }
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    for (int i = 1; i < argc; ++i) {
      g_json = g_json || absl::string_view(argv[i]) == "--json";
    }
    if (std::optional<std::string> unknown = UnknownCommand(app, argc, argv)) {
      return Usage(*unknown);
    }
    if (g_json && e.get_exit_code() != 0) {
      return Usage(e.what());
    }
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  g_json = global.json;

  // Values that need more than CLI11's checks.
  absl::StatusOr<absl::Duration> duration = ParseDurationFlag("--lock-wait", lock_wait);
  if (!duration.ok()) {
    return Usage(std::string(duration.status().message()));
  }
  global.lock_wait = *duration;
  duration = ParseDurationFlag("--lock-timeout", lock_timeout);
  if (!duration.ok()) {
    return Usage(std::string(duration.status().message()));
  }
  global.lock_timeout = *duration;
  duration = ParseDurationFlag("--statement-timeout", statement_timeout);
  if (!duration.ok()) {
    return Usage(std::string(duration.status().message()));
  }
  global.statement_timeout = *duration;
  if (global.dsn.empty()) {
    const char* url = std::getenv("DATABASE_URL");
    if (url != nullptr) {
      global.dsn = url;
      global.dsn_source = "DATABASE_URL";
    }
  } else if (!FlagGiven(argc, argv, "--dsn")) {
    global.dsn_source = from_file.count("dsn") > 0 && !EnvSet("SCHEMAD_DSN")
                            ? absl::StrCat(from_file["dsn"], ": dsn")
                            : "SCHEMAD_DSN";
  }
  if (global.who.empty()) {
    global.who = DefaultWho();
  }
  // The server's configuration validates version_table the same way.
  if (absl::StatusOr<schemad::VersionTableName> table =
          schemad::ParseVersionTableName(global.version_table);
      !table.ok()) {
    return Usage(absl::StrCat("--version-table: ", table.status().message()));
  }
  if (*plan_from_opt) {
    plan.from = plan_from;
  }
  duration = ParseDurationFlag("--timeout", remote_timeout);
  if (!duration.ok()) {
    return Usage(std::string(duration.status().message()));
  }
  remote.timeout = *duration;
  duration = ParseDurationFlag("--site-timeout", fleet_site_timeout);
  if (!duration.ok()) {
    return Usage(std::string(duration.status().message()));
  }
  fleet.site_timeout = *duration;
  remote.lock_wait_set = lock_wait_opt->count() > 0 ||
                         std::getenv("SCHEMAD_LOCK_WAIT") != nullptr ||
                         from_file.count("lock-wait") > 0;
  for (const std::string& label : dbs_labels) {
    const size_t equals = label.find('=');
    if (equals == std::string::npos || equals == 0) {
      return Usage("--label: expected key=value, got '" + label + "'");
    }
    dbs.labels[label.substr(0, equals)] = label.substr(equals + 1);
  }
  // Colour: asked for, or on a terminal that is not "dumb" unless NO_COLOR
  // (no-color.org) is set; never in --json output.
  const auto colour_for = [&](int fd) {
    if (color == "never") return false;
    if (color == "always") return true;
    const char* term = std::getenv("TERM");
    return isatty(fd) == 1 && !EnvSet("NO_COLOR") &&
           (term == nullptr || absl::string_view(term) != "dumb");
  };
  global.color_out = !global.json && colour_for(STDOUT_FILENO);
  global.color_err = colour_for(STDERR_FILENO);
  global.progress_is_terminal = isatty(STDERR_FILENO) == 1;
  global.terminal_width = global.progress_is_terminal ? TerminalWidth() : 0;
  InstallSignalHandlers();
  global.cancelled = &g_cancelled;

  std::ostream& out = std::cout;
  std::ostream& err = std::cerr;
  if (*completion_cmd || *man_cmd) {
    ValueHints hints;
    hints.directories = {"--dir", "--out"};
    hints.files = {"--config",  "--token-file", "--tls-ca", "--tls-cert",
                   "--tls-key", "--schema",     "--python"};
    hints.choices = {
        {"--transaction", {"per-revision", "per-command"}},
        {"--dev-dsn", {"local"}},
        {"--scratch-dsn", {"local"}},
        {"--color", {"auto", "always", "never"}},
        {"plan direction", {"upgrade", "downgrade"}},
        {"ops action", {"list", "watch", "cancel"}},
        {"fleet action",
         {"upgrade", "downgrade", "ensure-head", "stamp", "validate", "drift", "status"}},
        {"completion shell", {"bash", "zsh", "fish"}},
        {"upgrade target", {"heads", "head", "+1"}},
        {"downgrade target", {"-1", "base"}},
    };
    if (*man_cmd) {
      ManPageText text;
      text.version = SCHEMAD_VERSION;
      text.examples = kExamples;
      text.exit_codes = kExitCodes;
      text.files = {{"schemactl.ini",
                     "Project settings, found in the working directory or a directory above "
                     "it (docs/cli.md, \"Project settings\")."},
                    {"DIR/*.sql", "Revision files (docs/user-guide.md)."}};
      WriteManPage(app, text, out);
    } else if (completion_shell == "bash") {
      WriteBashCompletion(app, hints, out);
    } else if (completion_shell == "zsh") {
      WriteZshCompletion(app, hints, out);
    } else {
      WriteFishCompletion(app, hints, out);
    }
    return out.good() ? kExitOk : kExitFailed;
  }
  if (*dbs_cmd) {
    return RunRemoteDbs(global, remote, dbs, out, err);
  }
  if (*fleet_cmd) {
    return RunRemoteFleet(global, remote, fleet, out, err);
  }
  if (*ops_cmd) {
    return RunRemoteOps(global, remote, ops, out, err);
  }
  if (*health_cmd) {
    return RunRemoteHealth(global, remote, health, out, err);
  }
  if (*reload_cmd) {
    return RunRemoteReload(global, remote, out, err);
  }
  const bool server_verb = *upgrade_cmd || *downgrade_cmd || *current_cmd || *stamp_cmd ||
                           *ensure_head_cmd || *validate_cmd || *resolve_cmd || *repair_cmd ||
                           *history_cmd || *plan_cmd || *drift_cmd;
  if (server_verb && !remote.server.empty() && !global.dsn.empty()) {
    // A server and a DSN: the more specific one says where the verb runs (a
    // flag beats the environment, which beats schemactl.ini); given the same
    // way, neither is guessed.
    const auto level = [&](const char* flag, std::initializer_list<const char*> envs,
                           const char* key) {
      if (FlagGiven(argc, argv, flag)) return 3;
      for (const char* env : envs) {
        if (EnvSet(env)) return 2;
      }
      return from_file.count(key) > 0 ? 1 : 0;
    };
    const int server_level = level("--server", {"SCHEMAD_SERVER"}, "server");
    const int dsn_level = level("--dsn", {"SCHEMAD_DSN", "DATABASE_URL"}, "dsn");
    if (server_level == dsn_level) {
      static const char* const kHow[] = {"", "in schemactl.ini", "in the environment", "as flags"};
      return Usage(absl::StrCat(
          "both a server and a DSN are given ", kHow[server_level],
          " (--server/SCHEMAD_SERVER and ", global.dsn_source,
          "): the verb would run on either; drop one, or give the one to use as a flag"));
    }
    if (dsn_level > server_level) {
      remote.server.clear();  // the DSN is the more specific: run directly
    }
  }
  if (!remote.server.empty()) {
    // The database verbs go to the server; the verbs that read --dir stay local.
    if (server_verb && FlagGiven(argc, argv, "--dir")) {
      return Usage(
          "--dir names a local migration directory, but with --server the server's migration "
          "set is used: drop --dir, or drop --server to run on a DSN");
    }
    if (*upgrade_cmd) {
      return RunRemoteUpgrade(global, remote, upgrade, out, err);
    }
    if (*downgrade_cmd) {
      return RunRemoteDowngrade(global, remote, downgrade, out, err);
    }
    if (*current_cmd) {
      return RunRemoteCurrent(global, remote, current, out, err);
    }
    if (*stamp_cmd) {
      return RunRemoteStamp(global, remote, stamp, out, err);
    }
    if (*ensure_head_cmd) {
      return RunRemoteEnsureHead(global, remote, ensure_head, out, err);
    }
    if (*validate_cmd) {
      return RunRemoteValidate(global, remote, validate, out, err);
    }
    if (*resolve_cmd) {
      return RunRemoteResolve(global, remote, resolve, out, err);
    }
    if (*repair_cmd) {
      return RunRemoteRepair(global, remote, repair, out, err);
    }
    if (*drift_cmd) {
      if (FlagGiven(argc, argv, "--dev-dsn")) {
        return Usage(
            "--dev-dsn: with --server the server builds schemas on its own dev_server; drop "
            "--dev-dsn, or drop --server to run on a DSN");
      }
      return RunRemoteDrift(global, remote, drift, out, err);
    }
    if (*history_cmd) {
      // The server owns the migration set: its history is the database's log.
      return RunRemoteHistory(global, remote, history, out, err);
    }
    if (*plan_cmd) {
      return RunRemotePlan(global, remote, plan, out, err);
    }
  }
  if (*import_cmd) {
    // `schemactl --config alembic.ini import-alembic`: the global option took it.
    if (import_config_opt->count() == 0) {
      if (std::optional<std::string> given = FlagValue(argc, argv, "--config")) {
        import_alembic.config = *given;
      }
    }
    return RunImportAlembic(global, import_alembic, out, err);
  }
  if (*heads_cmd) {
    return RunHeads(global, heads, out, err);
  }
  if (*branches_cmd) {
    return RunBranches(global, branches, out, err);
  }
  if (*history_cmd) {
    return RunHistory(global, history, out, err);
  }
  if (*show_cmd) {
    return RunShow(global, show, out, err);
  }
  if (*check_cmd) {
    return RunCheck(global, check, out, err);
  }
  if (*lint_cmd) {
    return RunLint(global, lint, out, err);
  }
  if (*revision_cmd) {
    return RunRevision(global, revision, out, err);
  }
  if (*merge_cmd) {
    return RunMerge(global, merge, out, err);
  }
  if (*plan_cmd) {
    return RunPlan(global, plan, out, err);
  }
  if (*upgrade_cmd) {
    return RunUpgrade(global, upgrade, out, err);
  }
  if (*downgrade_cmd) {
    return RunDowngrade(global, downgrade, out, err);
  }
  if (*current_cmd) {
    return RunCurrent(global, current, out, err);
  }
  if (*stamp_cmd) {
    return RunStamp(global, stamp, out, err);
  }
  if (*ensure_head_cmd) {
    return RunEnsureHead(global, ensure_head, out, err);
  }
  if (*validate_cmd) {
    return RunValidate(global, validate, out, err);
  }
  if (*resolve_cmd) {
    return RunResolve(global, resolve, out, err);
  }
  if (*repair_cmd) {
    return RunRepair(global, repair, out, err);
  }
  if (*diff_cmd) {
    return RunDiff(global, diff, out, err);
  }
  if (*drift_cmd) {
    return RunDrift(global, drift, out, err);
  }
  if (*verify_cmd) {
    return RunVerify(global, verify, out, err);
  }
  return Usage("no verb given");
}
