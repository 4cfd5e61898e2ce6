// SplitSql: splits the SQL of a revision section into the statements that
// PostgreSQL would receive one at a time, the way psql splits a script.
// schemad's front end is PostgreSQL's own parser (sql_parser.h); this
// hand-written splitter serves revisions that opt out of it (`-- parse:
// false`, for syntax PostgreSQL 15 does not know) and is its differential
// reference in tests.
//
//   ASSIGN_OR_RETURN(std::vector<SqlStatement> statements,
//                    SplitSql("CREATE TABLE t (x int);\nINSERT INTO t VALUES (1);", 10));
//   // statements[0] = {"CREATE TABLE t (x int)", 10}
//   // statements[1] = {"INSERT INTO t VALUES (1)", 11}
//
// Thread-safety: stateless; safe to call from any thread.
#ifndef SCHEMAD_SERVICE_ENGINE_SQL_SPLITTER_H_
#define SCHEMAD_SERVICE_ENGINE_SQL_SPLITTER_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "service/engine/revision.h"

namespace schemad::engine {

// Splits `sql` on the semicolons that end statements, in linear time.
//
// `first_line` is the 1-based file line of sql's first character; statement
// lines are reported in the same numbering. Line breaks are "\n", "\r\n" or a
// lone "\r".
//
// A semicolon ends a statement unless it is inside:
//   - a string: '...' (with '' for a quote; backslashes are literal, as with
//     PostgreSQL's default standard_conforming_strings=on), E'...' (backslash
//     escapes, so E'it\'s' is one string), U&'...', B'...', X'...';
//   - a quoted identifier "..." (with "" for a quote), including U&"...";
//   - a dollar-quoted body $$...$$ or $tag$...$tag$ (a tag is a letter or '_'
//     followed by letters, digits and '_'; `$1` is a parameter, not a tag, and
//     a '$' inside an identifier such as `a$b` starts nothing);
//   - a `--` comment (to the end of the line) or a /* ... */ comment, which
//     nests as in PostgreSQL;
//   - parentheses (CREATE RULE ... DO (INSERT ...; INSERT ...));
//   - the BEGIN ... END body of CREATE [OR REPLACE] FUNCTION|PROCEDURE written
//     in SQL-standard form (BEGIN ATOMIC), detected with psql's own heuristic.
//
// Each statement's text runs from just after the previous statement's ';'
// (or the start of `sql`) to just before its own ';' (or the end of `sql`),
// with surrounding whitespace trimmed: comments before or inside a statement
// stay in its text (query hints such as pg_hint_plan's /*+ ... */ keep
// working), and a text can end in a `--` comment. The exception is a `--`
// comment on the same line after a ';' ("SELECT 1;  -- why"), which remarks on
// the statement it follows and is in no statement's text. The statement's `line` is
// the line of its first character that is neither whitespace nor comment.
// Statements made only of whitespace and comments (including empty ones such
// as ";;") are dropped. A last statement without ';' counts.
//
// Errors: InvalidArgument for a NUL byte anywhere in `sql` (libpq would end
// the statement there and silently drop the rest), naming its line; and
// naming the construct and the line where it started,
// e.g. "unterminated dollar-quoted string $fn$ starting at line 12", for an
// unterminated string, quoted identifier, dollar-quoted body or /* comment, a
// '(' never closed, or a BEGIN ATOMIC body never ended. SqlErrorLine() returns
// that line from the status.
absl::StatusOr<std::vector<SqlStatement>> SplitSql(absl::string_view sql, int first_line);

// The line SplitSql (or ParseSql, sql_parser.h) reported in an error status
// (as a payload), or nullopt for any other status.
std::optional<int> SqlErrorLine(const absl::Status& status);

// InvalidArgument with `message`, carrying `line` for SqlErrorLine.
absl::Status SqlErrorAtLine(absl::string_view message, int line);

// Why `statement` (one statement as SplitSql returns it) cannot be part of a
// transactional revision, guessed from its first keywords, or nullopt: the
// statements listed at ParseRevisionFile (revision_file.h). This is the
// classification for revisions that opt out of PostgreSQL's parser
// (`-- parse: false`) and for statements too large to analyse; otherwise
// sql_parser.h classifies from the parse tree.
std::optional<std::string> KeywordTransactionProblem(absl::string_view statement);

}  // namespace schemad::engine

#endif  // SCHEMAD_SERVICE_ENGINE_SQL_SPLITTER_H_
