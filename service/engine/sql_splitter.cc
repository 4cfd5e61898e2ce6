#include "service/engine/sql_splitter.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace schemad::engine {
namespace {

// Type URL of the payload carrying the line of a SplitSql error.
constexpr absl::string_view kErrorLineUrl = "type.schemad.dev/schemad.engine.SqlErrorLine";

bool IsAsciiLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsHighBit(char c) { return static_cast<unsigned char>(c) >= 0x80; }

// PostgreSQL's ident_start / ident_cont / dolq_start / dolq_cont (scan.l).
bool IsIdentStart(char c) { return IsAsciiLetter(c) || c == '_' || IsHighBit(c); }
bool IsIdentCont(char c) { return IsIdentStart(c) || IsDigit(c) || c == '$'; }
bool IsTagCont(char c) { return IsIdentStart(c) || IsDigit(c); }

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

absl::Status SyntaxError(absl::string_view what, int line) {
  return SqlErrorAtLine(absl::StrCat(what, " starting at line ", line), line);
}

// The line of `sql` (numbered from `first_line`) that holds offset `at`.
int LineAt(absl::string_view sql, size_t at, int first_line) {
  int line = first_line;
  for (size_t i = 0; i < at && i < sql.size(); ++i) {
    if (sql[i] == '\n' || (sql[i] == '\r' && (i + 1 >= sql.size() || sql[i + 1] != '\n'))) {
      ++line;
    }
  }
  return line;
}

bool IsWordChar(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// Reads SQL words: enough of a lexer to recognise the statements that cannot
// run in a transaction block. The statement has already been split, so its
// quotes and comments are terminated.
class WordReader {
 public:
  explicit WordReader(absl::string_view sql) : sql_(sql) {}

  // The next token: a bare word in upper case; "(" for a whole parenthesised
  // group; "\"", "'" or "$" for a quoted identifier, string constant or
  // dollar-quoted body; any other character as itself; "" at the end.
  std::string Next() {
    SkipSpaceAndComments();
    if (pos_ >= sql_.size()) {
      return "";
    }
    const char c = sql_[pos_];
    if (absl::ascii_isalpha(static_cast<unsigned char>(c)) || c == '_') {
      const size_t start = pos_;
      while (pos_ < sql_.size() && (IsWordChar(sql_[pos_]) || sql_[pos_] == '$')) {
        ++pos_;
      }
      return absl::AsciiStrToUpper(sql_.substr(start, pos_ - start));
    }
    if (c == '\'' || c == '"') {
      SkipQuoted(c);
      return std::string(1, c);
    }
    if (c == '(') {
      int depth = 0;
      do {
        SkipSpaceAndComments();
        if (pos_ >= sql_.size()) {
          break;
        }
        const char d = sql_[pos_];
        if (d == '\'' || d == '"') {
          SkipQuoted(d);
          continue;
        }
        if (d == '(') {
          ++depth;
        } else if (d == ')') {
          --depth;
        }
        ++pos_;
      } while (depth > 0);
      return "(";
    }
    if (c == '$' && pos_ + 1 < sql_.size() &&
        absl::ascii_isdigit(static_cast<unsigned char>(sql_[pos_ + 1]))) {
      ++pos_;
      while (pos_ < sql_.size() && absl::ascii_isdigit(static_cast<unsigned char>(sql_[pos_]))) {
        ++pos_;
      }
      return "$";
    }
    if (c == '$') {
      const size_t close = sql_.find('$', pos_ + 1);
      if (close != absl::string_view::npos) {
        const absl::string_view tag = sql_.substr(pos_, close - pos_ + 1);
        const size_t end = sql_.find(tag, close + 1);
        pos_ = end == absl::string_view::npos ? sql_.size() : end + tag.size();
      } else {
        ++pos_;
      }
      return "$";
    }
    ++pos_;
    return std::string(1, c);
  }

 private:
  void SkipSpaceAndComments() {
    while (pos_ < sql_.size()) {
      if (absl::ascii_isspace(static_cast<unsigned char>(sql_[pos_]))) {
        ++pos_;
      } else if (absl::StartsWith(sql_.substr(pos_), "--")) {
        const size_t end = sql_.find_first_of("\r\n", pos_);
        pos_ = end == absl::string_view::npos ? sql_.size() : end;
      } else if (absl::StartsWith(sql_.substr(pos_), "/*")) {
        int depth = 0;
        while (pos_ < sql_.size()) {
          if (absl::StartsWith(sql_.substr(pos_), "/*")) {
            ++depth;
            pos_ += 2;
          } else if (absl::StartsWith(sql_.substr(pos_), "*/")) {
            pos_ += 2;
            if (--depth == 0) {
              break;
            }
          } else {
            ++pos_;
          }
        }
      } else {
        return;
      }
    }
  }

  void SkipQuoted(char quote) {
    ++pos_;
    while (pos_ < sql_.size()) {
      if (sql_[pos_++] == quote) {
        if (pos_ >= sql_.size() || sql_[pos_] != quote) {
          return;
        }
        ++pos_;
      }
    }
  }

  absl::string_view sql_;
  size_t pos_ = 0;
};

}  // namespace

std::optional<std::string> KeywordTransactionProblem(absl::string_view statement) {
  WordReader reader(statement);
  std::vector<std::string> w;
  // The first words decide, except for ALTER TABLE ... DETACH PARTITION ...
  // CONCURRENTLY and CLUSTER, which need the whole statement.
  for (int i = 0; i < 6; ++i) {
    w.push_back(reader.Next());
  }
  const std::string& first = w[0];
  const auto no_transaction = [](absl::string_view what) {
    return absl::StrCat(what, " cannot run inside a transaction; set `-- transactional: false`");
  };
  const auto control = [](absl::string_view what) {
    return absl::StrCat(what,
                        " would end the transaction schemad runs this revision in; remove it, or "
                        "set `-- transactional: false`");
  };

  if (first == "CREATE" || first == "DROP") {
    const size_t index = first == "CREATE" && w[1] == "UNIQUE" ? 2 : 1;
    if (w[index] == "INDEX" && w[index + 1] == "CONCURRENTLY") {
      return no_transaction(
          absl::StrCat(first, index == 2 ? " UNIQUE" : "", " INDEX CONCURRENTLY"));
    }
    if (w[1] == "DATABASE" || w[1] == "TABLESPACE") {
      return no_transaction(absl::StrCat(first, " ", w[1]));
    }
  } else if (first == "REINDEX") {
    const size_t kind = w[1] == "(" ? 2 : 1;
    if (w[kind + 1] == "CONCURRENTLY") {
      return no_transaction(absl::StrCat("REINDEX ", w[kind], " CONCURRENTLY"));
    }
    if (w[kind] == "SCHEMA" || w[kind] == "DATABASE" || w[kind] == "SYSTEM") {
      return no_transaction(absl::StrCat("REINDEX ", w[kind]));
    }
  } else if (first == "VACUUM") {
    return no_transaction("VACUUM");
  } else if (first == "ALTER") {
    if (w[1] == "SYSTEM") {
      return no_transaction("ALTER SYSTEM");
    }
    if (w[1] == "DATABASE" && w[3] == "SET" && w[4] == "TABLESPACE") {
      return no_transaction("ALTER DATABASE ... SET TABLESPACE");
    }
    if (w[1] == "TABLE") {
      for (std::string word = reader.Next(); !word.empty(); word = reader.Next()) {
        w.push_back(std::move(word));
      }
      w.erase(std::remove(w.begin(), w.end(), std::string()), w.end());
      const auto detach = std::adjacent_find(w.begin(), w.end(), [](const auto& a, const auto& b) {
        return a == "DETACH" && b == "PARTITION";
      });
      if (detach != w.end() && w.back() == "CONCURRENTLY") {
        return no_transaction("ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY");
      }
    }
  } else if (first == "CLUSTER") {
    // CLUSTER [VERBOSE | (options)] [table [USING index]]: no table means
    // every previously clustered table, which cannot run in a transaction.
    size_t next = 1;
    while (next + 1 < w.size() && (w[next] == "VERBOSE" || w[next] == "(")) {
      ++next;
    }
    if (w[next].empty()) {
      return no_transaction("CLUSTER without a table");
    }
  } else if (first == "DISCARD" && w[1] == "ALL") {
    return no_transaction("DISCARD ALL");
  } else if (first == "COMMIT" || first == "ROLLBACK") {
    if (w[1] == "PREPARED") {
      return no_transaction(absl::StrCat(first, " PREPARED"));
    }
    if (first == "COMMIT" || (w[1] != "TO" && w[2] != "TO")) {
      return control(first);
    }
  } else if (first == "BEGIN" || first == "END" || first == "ABORT") {
    return control(first);
  } else if ((first == "START" || first == "PREPARE") && w[1] == "TRANSACTION") {
    return control(absl::StrCat(first, " TRANSACTION"));
  }
  return std::nullopt;
}

namespace {

// One left-to-right pass over the SQL; every character is looked at a bounded
// number of times.
class Splitter {
 public:
  Splitter(absl::string_view sql, int first_line) : sql_(sql), line_(first_line) {}

  absl::StatusOr<std::vector<SqlStatement>> Run() {
    while (pos_ < sql_.size()) {
      const char c = sql_[pos_];
      if (IsSpace(c)) {
        Step();
      } else if (c == '-' && Peek(1) == '-') {
        while (pos_ < sql_.size() && sql_[pos_] != '\n' && sql_[pos_] != '\r') {
          ++pos_;
        }
      } else if (c == '/' && Peek(1) == '*') {
        if (absl::Status status = SkipBlockComment(); !status.ok()) {
          return status;
        }
      } else if (c == ';' && paren_depth_ == 0 && begin_depth_ == 0) {
        EndStatement(pos_);
        ++pos_;
        statement_start_ = pos_;
        SkipSameLineComment();
      } else {
        if (statement_line_ == 0) {
          statement_line_ = line_;
        }
        if (absl::Status status = ScanToken(c); !status.ok()) {
          return status;
        }
      }
    }
    if (paren_depth_ > 0) {
      return SyntaxError("unclosed parenthesis", paren_line_);
    }
    if (begin_depth_ > 0) {
      return SyntaxError("BEGIN ... END function body without END", begin_line_);
    }
    EndStatement(sql_.size());
    return std::move(statements_);
  }

 private:
  char Peek(size_t ahead) const { return pos_ + ahead < sql_.size() ? sql_[pos_ + ahead] : '\0'; }

  // Counts the line break that the character at `at` ends, if any.
  void CountLineBreak(size_t at) {
    const char c = sql_[at];
    if (c == '\n' || (c == '\r' && (at + 1 >= sql_.size() || sql_[at + 1] != '\n'))) {
      ++line_;
    }
  }

  void Step() {
    CountLineBreak(pos_);
    ++pos_;
  }

  // After a statement's ';': a `--` comment on the rest of the line comments
  // on that statement, so it is left out of the next statement's text.
  void SkipSameLineComment() {
    size_t end = pos_;
    while (end < sql_.size() && (sql_[end] == ' ' || sql_[end] == '\t')) {
      ++end;
    }
    if (end + 1 < sql_.size() && sql_[end] == '-' && sql_[end + 1] == '-') {
      end = sql_.find_first_of("\r\n", end);
      pos_ = end == absl::string_view::npos ? sql_.size() : end;
      statement_start_ = pos_;
    }
  }

  // Scans one significant token starting with `c` at pos_.
  absl::Status ScanToken(char c) {
    if (c == '\'') {
      return SkipQuoted('\'', /*backslash_escapes=*/false);
    }
    if (c == '"') {
      return SkipQuoted('"', /*backslash_escapes=*/false);
    }
    if (c == '$') {
      return ScanDollar();
    }
    if (IsIdentStart(c)) {
      return ScanWord();
    }
    if (IsDigit(c)) {
      // A number, including 1e5, 0x1F and 1_000; never an identifier or tag.
      while (pos_ < sql_.size() && IsIdentCont(sql_[pos_])) {
        ++pos_;
      }
      return absl::OkStatus();
    }
    if (c == '(') {
      if (paren_depth_++ == 0) {
        paren_line_ = line_;
      }
    } else if (c == ')' && paren_depth_ > 0) {
      --paren_depth_;
    }
    Step();
    return absl::OkStatus();
  }

  // pos_ is at the opening quote ('\'' or '"'); a doubled quote stands for
  // itself; with `backslash_escapes` a backslash escapes the next character.
  absl::Status SkipQuoted(char quote, bool backslash_escapes) {
    const int start_line = line_;
    ++pos_;
    while (pos_ < sql_.size()) {
      const char c = sql_[pos_];
      if (backslash_escapes && c == '\\' && pos_ + 1 < sql_.size()) {
        Step();
        Step();
      } else if (c == quote) {
        ++pos_;
        if (pos_ >= sql_.size() || sql_[pos_] != quote) {
          return absl::OkStatus();
        }
        ++pos_;
      } else {
        Step();
      }
    }
    return SyntaxError(
        quote == '\'' ? "unterminated quoted string" : "unterminated quoted identifier",
        start_line);
  }

  // pos_ is at '$': a dollar-quoted body, a parameter ($1) or a lone '$'.
  absl::Status ScanDollar() {
    size_t end = pos_ + 1;
    if (end < sql_.size() && IsIdentStart(sql_[end])) {
      while (end < sql_.size() && IsTagCont(sql_[end])) {
        ++end;
      }
    }
    if (end >= sql_.size() || sql_[end] != '$') {
      // `$1` or a stray '$': not a quote. Digits are skipped by the caller's loop.
      ++pos_;
      return absl::OkStatus();
    }
    const absl::string_view delimiter = sql_.substr(pos_, end - pos_ + 1);
    const int start_line = line_;
    const size_t close = sql_.find(delimiter, end + 1);
    if (close == absl::string_view::npos) {
      return SyntaxError(absl::StrCat("unterminated dollar-quoted string ", delimiter), start_line);
    }
    const size_t after = close + delimiter.size();
    for (; pos_ < after; ++pos_) {
      CountLineBreak(pos_);
    }
    return absl::OkStatus();
  }

  absl::Status SkipBlockComment() {
    const int start_line = line_;
    int depth = 0;
    while (pos_ < sql_.size()) {
      if (sql_[pos_] == '/' && Peek(1) == '*') {
        ++depth;
        pos_ += 2;
      } else if (sql_[pos_] == '*' && Peek(1) == '/') {
        pos_ += 2;
        if (--depth == 0) {
          return absl::OkStatus();
        }
      } else {
        Step();
      }
    }
    return SyntaxError("unterminated /* comment", start_line);
  }

  // pos_ is at an identifier start: a keyword or identifier, or the prefix of
  // E'...', U&'...', U&"...", B'...', X'...', N'...'.
  absl::Status ScanWord() {
    const size_t start = pos_;
    while (pos_ < sql_.size() && IsIdentCont(sql_[pos_])) {
      ++pos_;
    }
    const absl::string_view word = sql_.substr(start, pos_ - start);
    const char next = Peek(0);
    if (word.size() == 1) {
      const char prefix = absl::ascii_tolower(word[0]);
      if (prefix == 'e' && next == '\'') {
        return SkipQuoted('\'', /*backslash_escapes=*/true);
      }
      if (prefix == 'u' && next == '&' && (Peek(1) == '\'' || Peek(1) == '"')) {
        ++pos_;
        return SkipQuoted(sql_[pos_], /*backslash_escapes=*/false);
      }
      if ((prefix == 'b' || prefix == 'x' || prefix == 'n') && next == '\'') {
        return absl::OkStatus();  // the string itself is scanned next
      }
    }
    TrackBeginEnd(word);
    return absl::OkStatus();
  }

  // psql's heuristic (psqlscan.l) for the SQL-standard body of
  // CREATE [OR REPLACE] FUNCTION|PROCEDURE ... BEGIN ATOMIC ...; ...; END,
  // whose semicolons do not end the statement.
  void TrackBeginEnd(absl::string_view word) {
    if (word_count_ == 0) {
      first_words_.fill('\0');
    }
    if (word_count_ < first_words_.size() &&
        (absl::EqualsIgnoreCase(word, "create") || absl::EqualsIgnoreCase(word, "function") ||
         absl::EqualsIgnoreCase(word, "procedure") || absl::EqualsIgnoreCase(word, "or") ||
         absl::EqualsIgnoreCase(word, "replace"))) {
      first_words_[word_count_] = absl::ascii_tolower(word[0]);
    }
    ++word_count_;
    const auto& w = first_words_;
    const bool creates_routine =
        w[0] == 'c' && (w[1] == 'f' || w[1] == 'p' ||
                        (w[1] == 'o' && w[2] == 'r' && (w[3] == 'f' || w[3] == 'p')));
    if (!creates_routine || paren_depth_ != 0) {
      return;
    }
    if (absl::EqualsIgnoreCase(word, "begin")) {
      if (begin_depth_++ == 0) {
        begin_line_ = line_;
      }
    } else if (absl::EqualsIgnoreCase(word, "case")) {
      if (begin_depth_ > 0) {
        ++begin_depth_;  // CASE also ends with END
      }
    } else if (absl::EqualsIgnoreCase(word, "end")) {
      if (begin_depth_ > 0) {
        --begin_depth_;
      }
    }
  }

  // Ends the statement that runs from statement_start_ to `end` (exclusive).
  void EndStatement(size_t end) {
    if (statement_line_ != 0) {
      statements_.push_back(SqlStatement{std::string(absl::StripAsciiWhitespace(sql_.substr(
                                             statement_start_, end - statement_start_))),
                                         statement_line_});
    }
    statement_line_ = 0;
    word_count_ = 0;
  }

  const absl::string_view sql_;
  size_t pos_ = 0;
  int line_;

  size_t statement_start_ = 0;
  int statement_line_ = 0;  // 0 until the statement's first significant character
  int paren_depth_ = 0;
  int paren_line_ = 0;  // where paren_depth_ last left 0
  int begin_depth_ = 0;
  int begin_line_ = 0;  // where begin_depth_ last left 0
  size_t word_count_ = 0;
  std::array<char, 4> first_words_{};  // psql's `identifiers`
  std::vector<SqlStatement> statements_;
};

}  // namespace

absl::StatusOr<std::vector<SqlStatement>> SplitSql(absl::string_view sql, int first_line) {
  if (const size_t nul = sql.find('\0'); nul != absl::string_view::npos) {
    const int line = LineAt(sql, nul, first_line);
    return SqlErrorAtLine(
        absl::StrCat("NUL byte at line ", line, ": PostgreSQL would never see what follows it"),
        line);
  }
  return Splitter(sql, first_line).Run();
}

absl::Status SqlErrorAtLine(absl::string_view message, int line) {
  absl::Status status = absl::InvalidArgumentError(message);
  status.SetPayload(kErrorLineUrl, absl::Cord(absl::StrCat(line)));
  return status;
}

std::optional<int> SqlErrorLine(const absl::Status& status) {
  const absl::optional<absl::Cord> payload = status.GetPayload(kErrorLineUrl);
  int line = 0;
  if (!payload.has_value() || !absl::SimpleAtoi(std::string(*payload), &line)) {
    return std::nullopt;
  }
  return line;
}

}  // namespace schemad::engine
