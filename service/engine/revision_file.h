// Revision files: parsing one (ParseRevisionFile), loading a migration
// directory (LoadRevisionDirectory) and writing a new one (RenderRevisionFile,
// RevisionFileName, NewRevisionId). The format is DESIGN.md's:
//
//   -- revision: 3f2a9c1b7d4e
//   -- revises: 1c9e8b7a6f5d
//   -- message: Add sensor_data table
//   -- lock_timeout: 5s
//
//   -- +upgrade
//   CREATE TABLE sensor_data (id bigint);
//
//   -- +downgrade
//   DROP TABLE sensor_data;
//
//   ASSIGN_OR_RETURN(std::vector<Revision> revisions,
//                    LoadRevisionDirectory("migrations/modax"));
//
// The header is every line before `-- +upgrade`. It may hold only:
//   - header lines `-- key: value`. Keys: revision (required), revises,
//     branch_labels, depends_on (comma-separated lists), message, created,
//     transactional (true|false, default true), lock_timeout and
//     statement_timeout (durations, see below), parse (true|false, default
//     true: see "SQL" below). Every header needs a value.
//     Ids and labels are made of [A-Za-z0-9_] and are not `head`, `heads` or
//     `base` (target keywords); a revision id is at most 32 characters
//     (Alembic's alembic_version.version_num is varchar(32)). A list must not
//     have empty entries or name the same entry twice.
//   - blank lines and other `--` comments. A comment that reads like a header
//     line, `-- word: text` (word of letters, digits, '_', '-'), is taken as
//     one, so a misspelt key (`-- revison: ...`, `-- Revises: ...`) is an error
//     rather than silently ignored; write such notes another way
//     (`-- Note - ...`). `-- word:text` with no space after the colon is a
//     comment (`-- https://...`) unless word is a known key.
//   - nothing else: SQL, or a /* comment, before `-- +upgrade` is an error.
// A UTF-8 byte order mark at the start of the file is ignored. The whole file
// (header, SQL, comments) must be UTF-8 without NUL bytes: libpq would end a
// statement at a NUL and silently drop what follows, and invalid UTF-8 can
// travel neither in the service's messages nor in JSON (and PostgreSQL with
// UTF8 encoding rejects it).
//
// Section markers are lines whose text, trimmed, is exactly `-- +upgrade` or
// `-- +downgrade`; the markers are not SQL-aware (a marker line inside a
// dollar-quoted body still ends the section). A `--` line that looks like a
// mistyped marker (`--+downgrade`, `-- +Downgrade`, `-- downgrade`) or another
// tool's marker (goose's `-- +goose Down`, sql-migrate's `-- +migrate Up`,
// dbmate's `-- migrate:down`) is an error, since as a comment it would run
// the downgrade SQL as part of the upgrade.
//
// SQL: each section is split into statements and checked by PostgreSQL 15's
// own parser (sql_parser.h); SQL it does not accept is an error naming the
// line and the parser's message. A revision written in syntax PostgreSQL 15
// does not know (a newer server's) sets `-- parse: false`: its sections are
// split the way psql splits a script (sql_splitter.h), without checking.
//
// Durations: a non-negative decimal number followed by a unit, `us`, `ms`,
// `s`, `min` (PostgreSQL's) or `m` (abseil's), `h` or `d`, optionally with
// spaces between number and unit; several terms may be joined (`1h30min`).
// Plain `0` means no limit. A bare non-zero number is an error (PostgreSQL
// would read it as milliseconds, a reader as seconds).
//
// Thread-safety: all functions are safe to call concurrently.
#ifndef SCHEMAD_SERVICE_ENGINE_REVISION_FILE_H_
#define SCHEMAD_SERVICE_ENGINE_REVISION_FILE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "service/engine/revision.h"

namespace schemad::engine {

// Parses a duration in the grammar described above (`5s`, `500ms`, `2min`,
// `1h30min`, `0`). INVALID_ARGUMENT saying what is wrong and what is allowed.
absl::StatusOr<absl::Duration> ParseDuration(absl::string_view text);

// Parses `content`, the text of the revision file at `path` (used only for
// messages and Revision::path). Fills every field of Revision, including
// id_line, the sections with their statements (see sql_splitter.h) and the
// checksum (see checksum.h). No `-- +downgrade` section: downgrade is nullopt
// (irreversible); an empty one: present with no statements (a no-op).
//
// When the revision is transactional, statements PostgreSQL refuses inside a
// transaction block are errors: CREATE [UNIQUE] INDEX CONCURRENTLY, DROP
// INDEX CONCURRENTLY, REINDEX ... CONCURRENTLY, REINDEX SCHEMA|DATABASE|
// SYSTEM, VACUUM, CREATE|DROP DATABASE, ALTER DATABASE ... SET TABLESPACE,
// CREATE|DROP TABLESPACE, ALTER SYSTEM, ALTER TABLE ... DETACH PARTITION ...
// CONCURRENTLY, CLUSTER without a table, DISCARD ALL. So are transaction
// control statements (BEGIN, START TRANSACTION, COMMIT, END, ROLLBACK, ABORT,
// PREPARE TRANSACTION, COMMIT|ROLLBACK PREPARED), which would end the
// transaction schemad runs the revision in.
//
// Errors: InvalidArgument "path:line: what is wrong", for every violation of
// the format described at the top of this file, for a NUL byte or invalid
// UTF-8 (with the column), for SQL PostgreSQL's parser rejects (its message,
// e.g. `syntax error at or near "SELEC"`, and the line; or, with
// `-- parse: false`, what the splitter rejects: unterminated string,
// dollar-quoted body, comment, ...).
absl::StatusOr<Revision> ParseRevisionFile(absl::string_view path, absl::string_view content);

// Reads and parses every entry named `*.sql` directly in `dir`, in byte order
// of file name; each must be a regular file (or a symlink to one) of at most
// 64 MiB. Other names, subdirectories' contents and hidden files (name
// starting with '.', e.g. macOS's `._x.sql`) are ignored. Revision::path is
// `dir` joined with the file name. Duplicate ids and graph problems are left
// to the revision graph.
//
// Errors: NotFound when `dir` does not exist; InvalidArgument when it is not a
// directory or cannot be read; otherwise, in file-name order, the first
// `*.sql` entry that is a dangling symlink, a directory or another
// non-regular file, is larger than the limit or cannot be read (naming its
// path), or the first parse error as ParseRevisionFile returns it.
absl::StatusOr<std::vector<Revision>> LoadRevisionDirectory(const std::string& dir);

// What `schemactl revision` writes.
struct NewRevisionSpec {
  std::string id;
  std::vector<std::string> revises, branch_labels, depends_on;
  std::string message;
  std::string created;
  bool transactional = true;
  std::string upgrade_sql, downgrade_sql;
  // false: no `-- +downgrade` section at all (an irreversible revision);
  // downgrade_sql is then ignored.
  bool reversible = true;
  // Comment lines written after the header keys, each as `-- LINE`, after a
  // `--` line: what a reader of the file should know (`schemactl
  // import-alembic` says where the revision came from). A line must not read
  // as a header key (`word: text`) and holds no line break.
  std::vector<std::string> notes;
};

// Writes a revision file for `spec`: the header (empty lists, message and
// created are omitted; `transactional: false` only when false), the notes,
// then `-- +upgrade` and `-- +downgrade` sections holding the given SQL or,
// when it is empty, a placeholder comment (an empty downgrade section is a
// no-op; the placeholder says how to make the revision irreversible
// instead); no downgrade section when the spec is not reversible.
// ParseRevisionFile reads the result back to the same fields, provided the
// spec is valid (ids as ParseRevisionFile requires them, message and created
// without surrounding whitespace, notes as above) and the SQL has no line
// that is a section marker. Line breaks in message and created are written
// as spaces.
std::string RenderRevisionFile(const NewRevisionSpec& spec);

// `<id>_<slug>.sql`, the slug being `message` lower-cased with each run of
// characters other than ASCII letters and digits made one '_', without
// leading or trailing '_', cut to at most 40 characters; `<id>.sql` when the
// slug is empty. Example: ("3f2a9c1b7d4e", "Add sensor_data table!") ->
// "3f2a9c1b7d4e_add_sensor_data_table.sql".
std::string RevisionFileName(const std::string& id, const std::string& message);

// The default template of new revisions' file names (Alembic's
// file_template, spelled with braces): date and time first, so that a
// directory listing shows revisions in the order they were written, e.g.
// "20251209_1430_3f2a9c1b7d4e_add_sensor_data_table.sql".
inline constexpr char kDefaultFileTemplate[] = "{year}{month}{day}_{hour}{minute}_{id}_{slug}";

// The file name `file_template` gives a new revision, ".sql" appended.
// Tokens: {id}, {slug} (as above), {year}, {month}, {day}, {hour}, {minute},
// {second} (of `created`, UTC, zero-padded); other characters must be ASCII
// letters, digits, '_', '-' or '.'. Runs of '_' are made one and '_' at
// either end dropped, so an empty slug leaves no stray '_'.
// INVALID_ARGUMENT naming the problem: an unknown token, an unclosed '{',
// another character (a '/' would leave the directory), an empty name.
absl::StatusOr<std::string> RevisionFileName(absl::string_view file_template, const std::string& id,
                                             const std::string& message, absl::Time created);

// A new random revision id: 12 lower-case hex digits (Alembic's
// uuid4().hex[-12:]), from std::random_device.
std::string NewRevisionId();

}  // namespace schemad::engine

#endif  // SCHEMAD_SERVICE_ENGINE_REVISION_FILE_H_
