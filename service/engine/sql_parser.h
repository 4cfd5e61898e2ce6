// ParseSql: schemad's SQL front end. PostgreSQL 15's own scanner and parser
// (libpg_query) split a revision section into statements, reject SQL that
// does not parse, and classify each statement from its parse tree: whether it
// can run inside the transaction schemad runs a revision in.
//
//   ASSIGN_OR_RETURN(std::vector<ParsedStatement> statements,
//                    ParseSql("CREATE TABLE t (x int);\nVACUUM t;", 10));
//   // statements[0].statement = {"CREATE TABLE t (x int)", 10}, node "CreateStmt"
//   // statements[1].transaction_problem = "VACUUM cannot run inside a transaction; ..."
//
// Thread-safety: stateless; safe to call from any thread (libpg_query keeps
// its memory per thread).
#ifndef SCHEMAD_SERVICE_ENGINE_SQL_PARSER_H_
#define SCHEMAD_SERVICE_ENGINE_SQL_PARSER_H_

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "service/engine/revision.h"

namespace schemad::engine {

// Statements larger than this (bytes of text) are split and checked by the
// parser but their parse tree is not exported: libpg_query writes the tree
// recursively, and a statement such as `SELECT 1+1+...+1` nests one level per
// one or two bytes, so the size bounds the stack the export and its JSON
// reading need. 16 KiB (8,000 levels) overflowed an 8 MiB stack under
// AddressSanitizer, whose frames are several times larger; 4 KiB keeps every
// build well inside it. Such a statement is classified by its keywords
// (KeywordTransactionProblem) and has no tree for lint.
inline constexpr size_t kMaxAnalysedStatementBytes = 4 << 10;

struct ParsedStatement {
  // Text and line exactly as SplitSql (sql_splitter.h) defines them: the text
  // runs from after the previous statement's ';' to before its own, trimmed,
  // leading comments kept, except a `--` comment on the line of the previous
  // ';'; the line is that of the first character that is neither whitespace
  // nor comment.
  SqlStatement statement;
  size_t offset = 0;  // byte offset of the text in the input
  // The statement's parse-tree node as libpg_query's JSON, e.g.
  // {"IndexStmt": {"idxname": "i", ..., "concurrent": true}}; node_type is its
  // key ("IndexStmt"). Both empty when the statement is larger than
  // kMaxAnalysedStatementBytes.
  std::string tree_json;
  std::string node_type;
  // Why the statement cannot run inside a transaction block, naming it and
  // what to do, e.g. "CREATE INDEX CONCURRENTLY cannot run inside a
  // transaction; set `-- transactional: false`", or that it is transaction
  // control (BEGIN, COMMIT, ...) that would end schemad's transaction;
  // nullopt when it can.
  std::optional<std::string> transaction_problem;
};

// How much ParseSql keeps of each statement's parse tree.
enum class ParseDepth {
  // tree_json and node_type for every statement up to
  // kMaxAnalysedStatementBytes: what lint reads.
  kTrees,
  // Only the split and transaction_problem, as kTrees would classify it;
  // tree_json and node_type stay empty. A statement is parsed on its own only
  // when it holds a word that any statement which cannot run in a transaction
  // must hold (CONCURRENTLY, VACUUM, COMMIT, ...): what loading a revision
  // needs, at a fraction of the cost.
  kClassify,
};

// Splits and parses `sql` with PostgreSQL 15's parser. `first_line` is the
// 1-based file line of sql's first character. Statements made only of
// whitespace and comments are dropped.
//
// Errors: InvalidArgument carrying the line (SqlErrorLine, sql_splitter.h) of
// the parser's error position, for a NUL byte ("NUL byte at line N: ...") and
// for SQL PostgreSQL 15 does not accept, with the parser's own message cut to
// 200 bytes, e.g. `syntax error at or near "SELEC"`.
absl::StatusOr<std::vector<ParsedStatement>> ParseSql(absl::string_view sql, int first_line,
                                                      ParseDepth depth = ParseDepth::kTrees);

}  // namespace schemad::engine

#endif  // SCHEMAD_SERVICE_ENGINE_SQL_PARSER_H_
