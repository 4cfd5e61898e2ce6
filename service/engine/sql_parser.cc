#include "service/engine/sql_parser.h"

#include <pg_query.h>

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"
#include "service/engine/pg_query_json.h"
#include "service/engine/sql_splitter.h"

namespace schemad::engine {
namespace {

using pg_query_json::BoolField;
using pg_query_json::Field;
using pg_query_json::Json;
using pg_query_json::StringField;

constexpr size_t kMaxParserMessageBytes = 200;

bool IsLineBreakAt(absl::string_view sql, size_t i) {
  return sql[i] == '\n' || (sql[i] == '\r' && (i + 1 >= sql.size() || sql[i + 1] != '\n'));
}

// Counts lines incrementally over increasing offsets, so that numbering every
// statement of a section is linear in its size.
class LineCounter {
 public:
  LineCounter(absl::string_view sql, int first_line) : sql_(sql), line_(first_line) {}

  // The line holding offset `at`; `at` must not decrease between calls.
  int LineAt(size_t at) {
    for (; pos_ < at && pos_ < sql_.size(); ++pos_) {
      if (IsLineBreakAt(sql_, pos_)) {
        ++line_;
      }
    }
    return line_;
  }

 private:
  absl::string_view sql_;
  size_t pos_ = 0;
  int line_;
};

// The offset of the first character at or after `from` that is neither
// whitespace nor inside a comment (the text has parsed, so comments end).
size_t SkipSpaceAndComments(absl::string_view sql, size_t from) {
  size_t pos = from;
  while (pos < sql.size()) {
    if (absl::ascii_isspace(static_cast<unsigned char>(sql[pos]))) {
      ++pos;
    } else if (sql.substr(pos, 2) == "--") {
      const size_t end = sql.find_first_of("\r\n", pos);
      pos = end == absl::string_view::npos ? sql.size() : end;
    } else if (sql.substr(pos, 2) == "/*") {
      int depth = 0;
      while (pos < sql.size()) {
        if (sql.substr(pos, 2) == "/*") {
          ++depth;
          pos += 2;
        } else if (sql.substr(pos, 2) == "*/") {
          pos += 2;
          if (--depth == 0) {
            break;
          }
        } else {
          ++pos;
        }
      }
    } else {
      break;
    }
  }
  return pos;
}

// The byte offset in `sql` of the 1-based character position `cursor`
// PostgreSQL reports (it counts characters, not bytes; the input is UTF-8).
size_t CursorOffset(absl::string_view sql, int cursor) {
  size_t offset = 0;
  for (int characters = 1; characters < cursor && offset < sql.size(); ++characters) {
    ++offset;
    while (offset < sql.size() && (static_cast<unsigned char>(sql[offset]) & 0xC0) == 0x80) {
      ++offset;
    }
  }
  return offset;
}

// `message` on one line (control characters become spaces), cut to at most
// kMaxParserMessageBytes on a UTF-8 boundary. The parser quotes the text "at
// or near" the error, which may be the rest of an unterminated string.
std::string BoundedMessage(absl::string_view message) {
  size_t end = message.size();
  if (end > kMaxParserMessageBytes) {
    end = kMaxParserMessageBytes;
    while (end > 0 && (static_cast<unsigned char>(message[end]) & 0xC0) == 0x80) {
      --end;
    }
  }
  std::string out(message.substr(0, end));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) {
      c = ' ';
    }
  }
  return end < message.size() ? absl::StrCat(out, "...") : out;
}

// --- parse-tree helpers (pg_query_json.h reads the JSON) ---------------------

// The DefElem names in the list `key` of `node` (e.g. REINDEX's options).
bool HasDefElem(const Json& node, const char* key, absl::string_view name) {
  const Json* list = Field(node, key);
  if (list == nullptr || !list->is_array()) {
    return false;
  }
  for (const Json& item : *list) {
    const Json* def = Field(item, "DefElem");
    if (def != nullptr && StringField(*def, "defname") == name) {
      return true;
    }
  }
  return false;
}

// The first keyword of `text`, upper-cased (names BEGIN vs START, END vs
// COMMIT, ABORT vs ROLLBACK, which parse to the same node).
std::string FirstKeyword(absl::string_view text) {
  const size_t start = SkipSpaceAndComments(text, 0);
  size_t end = start;
  while (end < text.size() && absl::ascii_isalpha(static_cast<unsigned char>(text[end]))) {
    ++end;
  }
  return absl::AsciiStrToUpper(text.substr(start, end - start));
}

std::string NoTransaction(absl::string_view what) {
  return absl::StrCat(what, " cannot run inside a transaction; set `-- transactional: false`");
}

std::string TransactionControl(absl::string_view what) {
  return absl::StrCat(what,
                      " would end the transaction schemad runs this revision in; remove it, or "
                      "set `-- transactional: false`");
}

// Why the statement `type`/`node` (its parse tree) cannot run inside a
// transaction block, or nullopt. `text` is the statement, for the keyword.
std::optional<std::string> TreeTransactionProblem(absl::string_view type, const Json& node,
                                                  absl::string_view text) {
  if (type == "IndexStmt" && BoolField(node, "concurrent")) {
    return NoTransaction(BoolField(node, "unique") ? "CREATE UNIQUE INDEX CONCURRENTLY"
                                                   : "CREATE INDEX CONCURRENTLY");
  }
  if (type == "DropStmt" && BoolField(node, "concurrent")) {
    return NoTransaction("DROP INDEX CONCURRENTLY");
  }
  if (type == "ReindexStmt") {
    const std::string object = StringField(node, "kind");
    absl::string_view kind = object;
    absl::ConsumePrefix(&kind, "REINDEX_OBJECT_");
    if (HasDefElem(node, "params", "concurrently")) {
      return NoTransaction(absl::StrCat("REINDEX ", kind, " CONCURRENTLY"));
    }
    if (kind == "SCHEMA" || kind == "DATABASE" || kind == "SYSTEM") {
      return NoTransaction(absl::StrCat("REINDEX ", kind));
    }
    return std::nullopt;
  }
  if (type == "VacuumStmt" && BoolField(node, "is_vacuumcmd")) {
    return NoTransaction("VACUUM");
  }
  if (type == "CreatedbStmt") {
    return NoTransaction("CREATE DATABASE");
  }
  if (type == "DropdbStmt") {
    return NoTransaction("DROP DATABASE");
  }
  if (type == "CreateTableSpaceStmt") {
    return NoTransaction("CREATE TABLESPACE");
  }
  if (type == "DropTableSpaceStmt") {
    return NoTransaction("DROP TABLESPACE");
  }
  if (type == "AlterSystemStmt") {
    return NoTransaction("ALTER SYSTEM");
  }
  if (type == "AlterDatabaseStmt" && HasDefElem(node, "options", "tablespace")) {
    return NoTransaction("ALTER DATABASE ... SET TABLESPACE");
  }
  if (type == "AlterTableStmt") {
    const Json* cmds = Field(node, "cmds");
    if (cmds != nullptr && cmds->is_array()) {
      for (const Json& item : *cmds) {
        const Json* cmd = Field(item, "AlterTableCmd");
        const Json* def = cmd == nullptr ? nullptr : Field(*cmd, "def");
        const Json* partition = def == nullptr ? nullptr : Field(*def, "PartitionCmd");
        if (partition != nullptr && StringField(*cmd, "subtype") == "AT_DetachPartition" &&
            BoolField(*partition, "concurrent")) {
          return NoTransaction("ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY");
        }
      }
    }
    return std::nullopt;
  }
  if (type == "ClusterStmt" && Field(node, "relation") == nullptr) {
    return NoTransaction("CLUSTER without a table");
  }
  if (type == "DiscardStmt" && StringField(node, "target") == "DISCARD_ALL") {
    return NoTransaction("DISCARD ALL");
  }
  if (type == "TransactionStmt") {
    const std::string kind = StringField(node, "kind");
    const std::string keyword = FirstKeyword(text);
    if (kind == "TRANS_STMT_COMMIT_PREPARED" || kind == "TRANS_STMT_ROLLBACK_PREPARED") {
      return NoTransaction(absl::StrCat(keyword, " PREPARED"));
    }
    if (kind == "TRANS_STMT_START" || kind == "TRANS_STMT_PREPARE") {
      return TransactionControl(keyword == "BEGIN" ? keyword
                                                   : absl::StrCat(keyword, " TRANSACTION"));
    }
    if (kind == "TRANS_STMT_BEGIN" || kind == "TRANS_STMT_COMMIT" ||
        kind == "TRANS_STMT_ROLLBACK") {
      return TransactionControl(keyword);
    }
  }
  return std::nullopt;  // SAVEPOINT, RELEASE, ROLLBACK TO and everything else
}

// Whether `text` holds, as a word in any case, one of the keywords that
// every statement TreeTransactionProblem objects to must contain. False
// positives (the word in a string or an identifier) only cost a parse.
bool MayNeedTransactionCheck(absl::string_view text) {
  static constexpr absl::string_view kWords[] = {
      "ABORT",   "BEGIN",   "CLUSTER",  "COMMIT", "CONCURRENTLY", "DATABASE",   "DISCARD", "END",
      "PREPARE", "REINDEX", "ROLLBACK", "START",  "SYSTEM",       "TABLESPACE", "VACUUM"};
  constexpr size_t kLongestWord = 12;  // CONCURRENTLY
  size_t i = 0;
  while (i < text.size()) {
    if (!absl::ascii_isalpha(static_cast<unsigned char>(text[i]))) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < text.size() && (absl::ascii_isalnum(static_cast<unsigned char>(text[end])) ||
                                 text[end] == '_' || text[end] == '$')) {
      ++end;
    }
    if (end - i <= kLongestWord) {
      char word[kLongestWord];
      for (size_t k = i; k < end; ++k) {
        word[k - i] = absl::ascii_toupper(static_cast<unsigned char>(text[k]));
      }
      const absl::string_view upper(word, end - i);
      for (absl::string_view keyword : kWords) {
        if (upper == keyword) {
          return true;
        }
      }
    }
    i = end;
  }
  return false;
}

// Parses one statement's text alone for its classification and, at
// ParseDepth::kTrees, its tree.
absl::Status Analyse(ParsedStatement& parsed, ParseDepth depth) {
  const std::string& text = parsed.statement.text;
  if (text.size() > kMaxAnalysedStatementBytes) {
    parsed.transaction_problem = KeywordTransactionProblem(text);
    return absl::OkStatus();
  }
  if (depth == ParseDepth::kClassify && !MayNeedTransactionCheck(text)) {
    return absl::OkStatus();
  }
  PgQueryParseResult result = pg_query_parse(text.c_str());
  const std::unique_ptr<PgQueryParseResult, void (*)(PgQueryParseResult*)> free_result(
      &result, [](PgQueryParseResult* r) { pg_query_free_parse_result(*r); });
  if (result.error != nullptr) {  // the statement parsed as part of its section
    return absl::InternalError(
        absl::StrCat("PostgreSQL's parser rejected a statement it had accepted: ",
                     BoundedMessage(result.error->message)));
  }
  const Json tree = Json::parse(result.parse_tree, nullptr, /*allow_exceptions=*/false);
  const Json* stmts = Field(tree, "stmts");
  if (stmts == nullptr || !stmts->is_array() || stmts->size() != 1) {
    return absl::InternalError("PostgreSQL's parser did not return one statement");
  }
  const Json* stmt = Field((*stmts)[0], "stmt");
  if (stmt == nullptr || !stmt->is_object() || stmt->size() != 1) {
    return absl::InternalError("PostgreSQL's parser returned a statement without a node");
  }
  parsed.transaction_problem =
      TreeTransactionProblem(stmt->begin().key(), stmt->begin().value(), text);
  if (depth == ParseDepth::kTrees) {
    parsed.node_type = stmt->begin().key();
    parsed.tree_json = stmt->dump();
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<ParsedStatement>> ParseSql(absl::string_view sql, int first_line,
                                                      ParseDepth depth) {
  LineCounter lines(sql, first_line);
  if (const size_t nul = sql.find('\0'); nul != absl::string_view::npos) {
    const int line = lines.LineAt(nul);
    return SqlErrorAtLine(
        absl::StrCat("NUL byte at line ", line, ": PostgreSQL would never see what follows it"),
        line);
  }
  const std::string input(sql);  // libpg_query reads a C string
  PgQuerySplitResult split = pg_query_split_with_parser(input.c_str());
  const std::unique_ptr<PgQuerySplitResult, void (*)(PgQuerySplitResult*)> free_split(
      &split, [](PgQuerySplitResult* r) { pg_query_free_split_result(*r); });
  if (split.error != nullptr) {
    const int cursor = split.error->cursorpos;
    size_t at = cursor > 0 ? CursorOffset(sql, cursor) : sql.size();
    if (at >= sql.size()) {  // "at end of input": the line of the last character
      at = sql.find_last_not_of(" \t\r\n\f\v");
      at = at == absl::string_view::npos ? 0 : at;
    }
    const int line = lines.LineAt(at);
    return SqlErrorAtLine(BoundedMessage(split.error->message), line);
  }

  std::vector<ParsedStatement> statements;
  statements.reserve(split.n_stmts);
  for (int i = 0; i < split.n_stmts; ++i) {
    const size_t location = static_cast<size_t>(split.stmts[i]->stmt_location);
    const size_t length = split.stmts[i]->stmt_len;
    if (location > sql.size()) {
      return absl::InternalError("PostgreSQL's parser reported a statement outside the input");
    }
    const size_t end = length == 0 ? sql.size() : std::min(sql.size(), location + length);
    size_t begin = location;
    // After a ';', a `--` comment on the rest of its line remarks on the
    // statement before (SplitSql's rule), so it is not part of this text.
    if (begin > 0 && sql[begin - 1] == ';') {
      size_t after = begin;
      while (after < end && (sql[after] == ' ' || sql[after] == '\t')) {
        ++after;
      }
      if (sql.substr(after, 2) == "--") {
        const size_t eol = sql.find_first_of("\r\n", after);
        begin = eol == absl::string_view::npos ? end : std::min(eol, end);
      }
    }
    const size_t code = SkipSpaceAndComments(sql.substr(0, end), begin);
    if (code >= end) {
      continue;  // only whitespace and comments
    }
    while (begin < end && absl::ascii_isspace(static_cast<unsigned char>(sql[begin]))) {
      ++begin;
    }
    ParsedStatement parsed;
    parsed.offset = begin;
    parsed.statement.text =
        std::string(absl::StripTrailingAsciiWhitespace(sql.substr(begin, end - begin)));
    parsed.statement.line = lines.LineAt(code);
    if (absl::Status status = Analyse(parsed, depth); !status.ok()) {
      return SqlErrorAtLine(status.message(), parsed.statement.line);
    }
    statements.push_back(std::move(parsed));
  }
  return statements;
}

}  // namespace schemad::engine
