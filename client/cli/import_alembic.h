// `schemactl import-alembic`: converts an Alembic project into schemad
// revision files (docs/user-guide.md §15, docs/cli.md).
//
//   ImportAlembicOptions options;
//   options.config = "alembic.ini";
//   options.out = "migrations/modax";
//   options.scratch_dsn = "local";   // for the steps that cannot render offline
//   int code = RunImportAlembic(global, options, std::cout, std::cerr);
//
// Two halves. A Python driver (client/cli/import_alembic.py, embedded in
// the binary and run with the project's interpreter, `--python`) drives
// Alembic itself: it renders each revision's upgrade and downgrade offline,
// one step at a time through the project's env.py, and runs a step that
// cannot render offline on a scratch database, recording the SQL it
// executes; it answers one JSON document. This side checks that answer
// (ParseRenderAnswer, MergeCaptureAnswer), builds the scratch databases
// (store::DevServer: `--scratch-dsn local` or a DSN whose role may create
// databases), turns each step into a revision file with the engine's writer
// (ConvertRevision: Alembic's transaction control stripped by PostgreSQL's
// parser, a COMMIT making the revision non-transactional), writes the files
// through a staging directory that is loaded back and compared with
// Alembic's graph before anything appears in the output directory
// (WriteImport), and reports how each revision was obtained.
//
// Thread-safety: the functions share no state.
#ifndef SCHEMAD_CLIENT_CLI_IMPORT_ALEMBIC_H_
#define SCHEMAD_CLIENT_CLI_IMPORT_ALEMBIC_H_

#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/cli/commands.h"
#include "service/engine/revision_file.h"

namespace schemad::cli {

struct ImportAlembicOptions {
  std::string config = "alembic.ini";  // -c/--config, ALEMBIC_CONFIG: the project's alembic.ini
  std::string name = "alembic";        // -n/--name: the section of it (Alembic's -n)
  std::vector<std::string> x;          // -x KEY=VALUE: for env.py (Alembic's -x)
  std::string out;                     // --out: the directory the revision files go to
  // --scratch-dsn (SCHEMAD_SCRATCH_DSN): where steps that cannot render
  // offline run: "local" (a throwaway cluster) or a DSN whose role may
  // create databases; "": none (such a step is then an error).
  std::string scratch_dsn;
  std::string python = "python3";  // --python (SCHEMAD_PYTHON): the project's interpreter
  bool force = false;              // --force: replace the revision files already in `out`
};

// Exit codes as docs/cli.md: 2 for a missing config file, an `out` that is
// not a directory or already holds revision files (without --force), a
// --python that cannot be run, a project that needs --scratch-dsn; 5 when
// the scratch server cannot be reached; 1 for everything else (no Alembic
// in that interpreter, env.py failing, a step failing, a driver answer that
// does not check out, files that would not load). Nothing is written to
// `out` unless everything succeeded.
int RunImportAlembic(const GlobalOptions& global, const ImportAlembicOptions& options,
                     std::ostream& out, std::ostream& err);

namespace import_alembic {

// One direction of a revision as the driver answered it.
struct DriverStep {
  std::optional<std::string> sql;  // nullopt: no SQL (irreversible, or not rendered yet)
  // "offline", "captured", "needs_online" (could not render offline; sql
  // nullopt) or, for a downgrade, "irreversible" (sql nullopt).
  std::string obtained;
  std::string detail;  // needs_online: the offline error; irreversible: the reason
};

// One Alembic revision as the driver answered it.
struct DriverRevision {
  std::string id;
  std::vector<std::string> down_revisions;  // Alembic's down_revision, in order
  std::vector<std::string> branch_labels;
  std::vector<std::string> depends_on;  // ids written out in full; labels as labels
  std::string message;
  std::string create_date;  // ISO 8601, or "" when the file has none
  std::string path;         // the Alembic file, for messages and the notes
  DriverStep upgrade;
  DriverStep downgrade;
  std::vector<std::string> warnings;
};

// The driver's answer to "render": the project and its revisions, each after
// its down revisions and dependencies.
struct DriverProject {
  std::string alembic;  // versions, for the report
  std::string sqlalchemy;
  std::string python;
  std::string script_location;
  std::string version_table;  // as env.py configures it
  bool transaction_per_migration = false;
  std::vector<std::string> heads;  // Alembic's heads, sorted
  std::vector<DriverRevision> revisions;
};

// Checks and reads the driver's answer to "render". An answer with "error"
// becomes that error (FAILED_PRECONDITION for the project's problems:
// kinds no_alembic, config, env, step, capture; INTERNAL for the driver's
// own), naming the revision and file it gives. Anything else that is not
// what the protocol (import_alembic.py) says — not JSON, another protocol
// version, a missing or mistyped field, an id schemad cannot take, a
// revision twice, a parent that is not listed before its child — is
// INTERNAL "the import-alembic driver's answer ...: WHAT", naming the
// revision when there is one.
absl::StatusOr<DriverProject> ParseRenderAnswer(absl::string_view text);

// Checks the driver's answer to "capture" for `directions` ("upgrade",
// "downgrade") and stores each into `revision`: a captured step, or an
// irreversible downgrade; a captured step keeps, as its detail, why it could
// not render offline. Errors as ParseRenderAnswer's.
absl::Status MergeCaptureAnswer(absl::string_view text, const std::vector<std::string>& directions,
                                DriverRevision& revision);

// A revision file to write, and what the report says about it.
struct ImportedRevision {
  std::string file_name;  // in the output directory
  std::string source;     // the Alembic file
  engine::NewRevisionSpec spec;
  std::string upgrade;    // "offline" or "captured"
  std::string downgrade;  // "offline", "captured" or "none"
  std::string reason;     // downgrade "none": why
  bool commits = false;   // Alembic's step commits: made non-transactional
  bool review() const { return upgrade == "captured" || downgrade == "captured"; }
};

// The revision file for `revision`, whose steps must all have SQL or, for the
// downgrade, be irreversible. The SQL is split by PostgreSQL's parser;
// BEGIN, START TRANSACTION, COMMIT and END are dropped, and when any was
// there the revision is non-transactional (Alembic's op.execute("COMMIT")
// before CREATE INDEX CONCURRENTLY, or an autocommit_block). A captured step
// starts with a comment saying "captured on an empty database: review"; the
// header's notes name the Alembic file and how each step was obtained.
// The file is named after the Alembic file (`<its name>.sql`).
// INVALID_ARGUMENT naming the revision, its file and the step for SQL that
// does not parse.
absl::StatusOr<ImportedRevision> ConvertRevision(const DriverRevision& revision);

// Writes `revisions` into `dir` (created when missing) all or nothing: into
// a staging directory first, which must load (LoadRevisionDirectory) into a
// graph whose ids, revises, branch_labels, depends_on and heads are
// `project`'s; then the files are moved into `dir`. With `force` the `*.sql`
// files already in `dir` are removed first; without it, there must be none
// (kExitUsage). Errors name the file, or the revision whose graph differs.
absl::Status WriteImport(const std::vector<ImportedRevision>& revisions,
                         const DriverProject& project, const std::string& dir, bool force);

// The `*.sql` entries directly in `dir` (none when it does not exist).
std::vector<std::string> RevisionFilesIn(const std::string& dir);

}  // namespace import_alembic
}  // namespace schemad::cli

#endif  // SCHEMAD_CLIENT_CLI_IMPORT_ALEMBIC_H_
