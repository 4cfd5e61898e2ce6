#include "service/engine/offline_sql.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace schemad::engine {
namespace {

bool IsPlainIdentifier(absl::string_view part) {
  if (part.empty() || !(absl::ascii_islower(part[0]) || part[0] == '_')) {
    return false;
  }
  for (char c : part) {
    if (!(absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '_')) {
      return false;
    }
  }
  return true;
}

std::string QuoteIdentifierPart(absl::string_view part) {
  if (IsPlainIdentifier(part)) {
    return std::string(part);
  }
  std::string out = "\"";
  for (char c : part) {
    out += c;
    if (c == '"') {
      out += '"';
    }
  }
  out += '"';
  return out;
}

std::string VersionChangeSql(const VersionRowChange& change, const std::string& table) {
  switch (change.kind) {
    case VersionRowChange::Kind::kInsert:
      return absl::StrCat("INSERT INTO ", table, " (version_num) VALUES (", QuoteLiteral(change.to),
                          ");\n");
    case VersionRowChange::Kind::kDelete:
      return absl::StrCat("DELETE FROM ", table, " WHERE ", table,
                          ".version_num = ", QuoteLiteral(change.from), ";\n");
    case VersionRowChange::Kind::kUpdate:
      return absl::StrCat("UPDATE ", table, " SET version_num=", QuoteLiteral(change.to), " WHERE ",
                          table, ".version_num = ", QuoteLiteral(change.from), ";\n");
  }
  return "";
}

}  // namespace

std::string QuoteLiteral(absl::string_view value) {
  std::string out = "'";
  for (char c : value) {
    out += c;
    if (c == '\'') {
      out += '\'';
    }
  }
  out += '\'';
  return out;
}

std::string QuoteQualifiedIdentifier(absl::string_view name) {
  std::vector<std::string> parts;
  for (absl::string_view part : absl::StrSplit(name, '.')) {
    parts.push_back(QuoteIdentifierPart(part));
  }
  return absl::StrJoin(parts, ".");
}

std::string RenderOfflineSql(const RevisionGraph& graph, const Plan& plan,
                             const OfflineSqlOptions& options) {
  const std::string table = QuoteQualifiedIdentifier(options.version_table);
  const std::string pkc = absl::StrCat(QuoteIdentifierPart(absl::StrCat(
      std::vector<std::string>(absl::StrSplit(options.version_table, '.')).back(), "_pkc")));
  std::string out;
  absl::StrAppend(&out, "-- schemad offline script: ",
                  plan.kind == Plan::Kind::kUpgrade     ? "upgrade"
                  : plan.kind == Plan::Kind::kDowngrade ? "downgrade"
                                                        : "stamp",
                  " ", plan.rows_before.empty() ? "base" : absl::StrJoin(plan.rows_before, ","),
                  " -> ", plan.target, "\n\n");
  bool in_plan_tx = false;
  auto begin = [&]() {
    if (!in_plan_tx) {
      out += "BEGIN;\n\n";
    }
  };
  auto commit = [&]() {
    if (!in_plan_tx) {
      out += "COMMIT;\n\n";
    }
  };
  if (options.transaction_per_plan) {
    out += "BEGIN;\n\n";
    in_plan_tx = true;
  }
  if (plan.rows_before.empty()) {
    begin();
    absl::StrAppend(&out, "CREATE TABLE IF NOT EXISTS ", table,
                    " (\n    version_num VARCHAR(32) NOT NULL, \n    CONSTRAINT ", pkc,
                    " PRIMARY KEY (version_num)\n);\n\n");
    commit();
  }
  if (plan.kind == Plan::Kind::kStamp) {
    begin();
    for (const VersionRowChange& change : plan.stamp_changes) {
      out += VersionChangeSql(change, table);
    }
    out += "\n";
    commit();
  }
  for (const PlanStep& step : plan.steps) {
    const Revision& rev = graph.revision(step.revision);
    const bool up = step.direction == Direction::kUp;
    const std::optional<SqlSection>& section = up ? rev.upgrade : rev.downgrade;
    absl::StrAppend(&out, "-- Running ", up ? "upgrade " : "downgrade ", rev.id,
                    rev.message.empty() ? "" : absl::StrCat(": ", rev.message),
                    rev.path.empty() ? "" : absl::StrCat(" (", rev.path, ")"), "\n\n");
    const bool transactional = rev.transactional;
    if (transactional) {
      begin();
    } else {
      if (in_plan_tx) {
        // PostgreSQL refuses these inside a transaction block: close the
        // plan's transaction around them.
        out += "COMMIT;\n\n";
      }
      out += "-- non-transactional: these statements run outside a transaction\n\n";
    }
    if (transactional && (rev.lock_timeout || rev.statement_timeout)) {
      if (rev.lock_timeout) {
        absl::StrAppend(&out, "SET LOCAL lock_timeout = '",
                        absl::ToInt64Milliseconds(*rev.lock_timeout), "ms';\n");
      }
      if (rev.statement_timeout) {
        absl::StrAppend(&out, "SET LOCAL statement_timeout = '",
                        absl::ToInt64Milliseconds(*rev.statement_timeout), "ms';\n");
      }
      out += "\n";
    }
    if (section) {
      for (const SqlStatement& statement : section->statements) {
        // A statement whose last line ends in a `--` comment gets its ';' on
        // a line of its own, or the comment would swallow it.
        absl::string_view last_line = statement.text;
        if (size_t nl = last_line.rfind('\n'); nl != absl::string_view::npos) {
          last_line.remove_prefix(nl + 1);
        }
        const bool ends_in_comment = last_line.find("--") != absl::string_view::npos;
        absl::StrAppend(&out, statement.text, ends_in_comment ? "\n;\n\n" : ";\n\n");
      }
    }
    if (!transactional) {
      out += "BEGIN;\n\n";
    }
    for (const VersionRowChange& change : step.version_changes) {
      out += VersionChangeSql(change, table);
    }
    out += "\n";
    if (transactional || !in_plan_tx) {
      commit();
    }
  }
  // As Alembic's offline mode: a script that leaves no version rows ends by
  // dropping the version table (a downgrade to base, a stamp to base).
  if (plan.kind != Plan::Kind::kUpgrade && plan.rows_after.empty()) {
    begin();
    absl::StrAppend(&out, "DROP TABLE ", table, ";\n\n");
    commit();
  }
  if (in_plan_tx) {
    out += "COMMIT;\n\n";
  }
  return out;
}

}  // namespace schemad::engine
