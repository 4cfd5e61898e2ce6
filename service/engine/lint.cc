#include "service/engine/lint.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"
#include "service/common/status_macros.h"
#include "service/engine/pg_query_json.h"
#include "service/engine/planner.h"
#include "service/engine/settings_file.h"
#include "service/engine/sql_parser.h"

namespace schemad::engine {
namespace {

using pg_query_json::BoolField;
using pg_query_json::Field;
using pg_query_json::Items;
using pg_query_json::Json;
using pg_query_json::StringField;

constexpr size_t kMaxStatementBytes = 200;
constexpr absl::string_view kIgnoreMarker = "-- schemad:lint-ignore";

// Rule codes (docs/lint.md).
constexpr char kCreateIndex[] = "create-index-not-concurrently";
constexpr char kDropIndex[] = "drop-index-not-concurrently";
constexpr char kVolatileDefault[] = "add-column-volatile-default";
constexpr char kAlterType[] = "alter-column-type";
constexpr char kSetNotNull[] = "set-not-null";
constexpr char kNotValid[] = "constraint-without-not-valid";
constexpr char kValidateSame[] = "validate-in-same-transaction";
constexpr char kUniqueWithoutIndex[] = "unique-without-index";
constexpr char kDropTable[] = "drop-table";
constexpr char kDropColumn[] = "drop-column";
constexpr char kTruncate[] = "truncate";
constexpr char kRenameTable[] = "rename-table";
constexpr char kRenameColumn[] = "rename-column";
constexpr char kEnumAddValue[] = "enum-add-value-in-transaction";
constexpr char kLockTimeout[] = "missing-lock-timeout";
constexpr char kNoWhere[] = "update-delete-without-where";
constexpr char kNoDowngrade[] = "no-downgrade";
constexpr char kNoopDowngrade[] = "data-migration-noop-downgrade";
constexpr char kEmptyUpgrade[] = "empty-upgrade";
constexpr char kUnknownRule[] = "lint-ignore-unknown-rule";
constexpr char kNotAnalysed[] = "not-analysed";

// --- parse-tree helpers (pg_query_json.h reads the JSON) ---------------------

// A RangeVar's table name ("schema.table" when qualified).
std::string TableName(const Json* range_var) {
  if (range_var == nullptr) {
    return "";
  }
  const std::string schema = StringField(*range_var, "schemaname");
  const std::string table = StringField(*range_var, "relname");
  return schema.empty() ? table : absl::StrCat(schema, ".", table);
}

// The last String of a name list ([{"String":{"sval":"pg_catalog"}}, ...]).
std::string LastName(const Json& node, const char* key) {
  const std::vector<Json>& names = Items(node, key);
  if (names.empty()) {
    return "";
  }
  const Json* string = Field(names.back(), "String");
  return string == nullptr ? "" : StringField(*string, "sval");
}

// Whether any FuncCall under `node` calls one of PostgreSQL's volatile
// functions a default typically uses (each row gets its own value, so adding
// the column rewrites the table).
bool CallsVolatileFunction(const Json& node, int depth = 0) {
  static const auto* const kVolatile = new std::set<std::string>{
      "random",           "gen_random_uuid",    "uuid_generate_v1", "uuid_generate_v1mc",
      "uuid_generate_v4", "clock_timestamp",    "timeofday",        "nextval",
      "txid_current",     "statement_timestamp"};
  if (depth > 64) {
    return false;
  }
  if (const Json* call = Field(node, "FuncCall")) {
    if (kVolatile->count(LastName(*call, "funcname")) > 0) {
      return true;
    }
  }
  if (node.is_object() || node.is_array()) {
    for (const Json& child : node) {
      if (CallsVolatileFunction(child, depth + 1)) {
        return true;
      }
    }
  }
  return false;
}

std::string Cut(absl::string_view text) {
  if (text.size() <= kMaxStatementBytes) {
    return std::string(text);
  }
  size_t end = kMaxStatementBytes;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) {
    --end;
  }
  return absl::StrCat(text.substr(0, end), "...");
}

// What rules learn from earlier revisions.
struct History {
  std::set<std::string> validated_checks;              // "table.column": validated NOT NULL check
  std::map<std::string, std::string> not_null_checks;  // "table.constraint" -> "table.column"
};

// One revision's lint.
class RevisionLinter {
 public:
  RevisionLinter(const Revision& revision, History& history, std::vector<LintFinding>& findings)
      : revision_(revision),
        validated_checks_(history.validated_checks),
        not_null_checks_(history.not_null_checks),
        findings_(findings) {}

  void Run() {
    if (!revision_.downgrade.has_value()) {
      Add(kNoDowngrade, 0, "",
          "the revision has no `-- +downgrade` section, so it cannot be rolled back; write the "
          "reverse SQL, or keep it irreversible on purpose (an empty section is a no-op instead)");
    }
    if (!revision_.upgrade.has_value()) {
      return;
    }
    if (revision_.upgrade->statements.empty() && revision_.revises.size() < 2) {
      Add(kEmptyUpgrade, revision_.upgrade->line, "",
          "the `-- +upgrade` section has no statement, so applying the revision changes nothing "
          "but the version row; write its SQL (a merge revision, with several `revises`, is "
          "empty on purpose and not reported)");
    }
    if (!revision_.parse) {
      Add(kNotAnalysed, 0, "",
          "`-- parse: false`: PostgreSQL's parser does not read this revision, so lint cannot "
          "check its statements");
      return;
    }
    absl::StatusOr<std::vector<ParsedStatement>> parsed =
        ParseSql(revision_.upgrade->body, revision_.upgrade->line + 1);
    if (!parsed.ok()) {
      return;  // the revision loaded, so this does not happen
    }
    std::vector<Json> trees;  // each statement's tree, read once
    trees.reserve(parsed->size());
    for (const ParsedStatement& s : *parsed) {
      trees.push_back(s.tree_json.empty()
                          ? Json()
                          : Json::parse(s.tree_json, nullptr, /*allow_exceptions=*/false));
    }
    // Tables the revision creates: what it does to them locks nobody.
    for (const Json& tree : trees) {
      if (const Json* create = Field(tree, "CreateStmt")) {
        created_.insert(TableName(Field(*create, "relation")));
      } else if (const Json* as = Field(tree, "CreateTableAsStmt")) {
        const Json* into = Field(*as, "into");
        created_.insert(TableName(into == nullptr ? nullptr : Field(*into, "rel")));
      }
    }
    bool modifies_data = false;
    for (size_t i = 0; i < parsed->size(); ++i) {
      const ParsedStatement& s = (*parsed)[i];
      statement_ = &s;
      if (s.tree_json.empty()) {
        Add(kNotAnalysed, s.statement.line, s.statement.text,
            absl::StrCat("the statement is larger than ", kMaxAnalysedStatementBytes,
                         " bytes, so lint does not analyse it"));
        continue;
      }
      const Json& tree = trees[i];
      if (!tree.is_object() || tree.size() != 1) {
        continue;
      }
      const std::string& type = s.node_type;
      const Json& node = tree.begin().value();
      if (type == "UpdateStmt" || type == "DeleteStmt" || type == "InsertStmt") {
        modifies_data = true;
      }
      if (type == "VariableSetStmt" && StringField(node, "name") == "lock_timeout") {
        lock_timeout_set_ = true;
      }
      LintStatement(type, node);
    }
    statement_ = nullptr;
    if (modifies_data && revision_.downgrade.has_value() &&
        revision_.downgrade->statements.empty()) {
      Add(kNoopDowngrade, revision_.downgrade->line, "",
          "the upgrade changes data but the downgrade is a no-op, so downgrading leaves the "
          "changed rows behind; write the reverse change, or say in a comment why none is "
          "needed");
    }
  }

 private:
  bool Created(const std::string& table) const { return created_.count(table) > 0; }

  void Add(const char* rule, int line, absl::string_view statement, std::string message) {
    findings_.push_back(LintFinding{rule, LintSeverity::kWarning, revision_.id, revision_.path,
                                    line, Cut(statement), std::move(message)});
  }

  void AddHere(const char* rule, std::string message) {
    Add(rule, statement_->statement.line, statement_->statement.text, std::move(message));
  }

  // A statement that takes a lock on an existing table: without a
  // lock_timeout it waits behind any long query and blocks every query
  // behind it.
  void TakesLock(const std::string& table) {
    if (Created(table) || lock_timeout_set_ || revision_.lock_timeout.has_value() || lock_warned_) {
      return;
    }
    lock_warned_ = true;
    AddHere(kLockTimeout,
            absl::StrCat("this takes a lock on ", table,
                         " with no lock_timeout: queued behind a long query, it blocks every "
                         "query on the table until it gets the lock; set `-- lock_timeout: 5s` "
                         "in the header (and retry on timeout)"));
  }

  void LintStatement(const std::string& type, const Json& node) {
    if (type == "IndexStmt") {
      const std::string table = TableName(Field(node, "relation"));
      if (!BoolField(node, "concurrent") && !Created(table)) {
        TakesLock(table);
        AddHere(kCreateIndex,
                absl::StrCat("CREATE INDEX without CONCURRENTLY blocks writes to ", table,
                             " while the index builds; use CREATE INDEX CONCURRENTLY in a "
                             "revision of its own with `-- transactional: false`"));
      }
    } else if (type == "DropStmt") {
      LintDrop(node);
    } else if (type == "AlterTableStmt") {
      const std::string table = TableName(Field(node, "relation"));
      if (StringField(node, "objtype") == "OBJECT_TABLE" || Field(node, "objtype") == nullptr) {
        if (!Created(table)) {
          TakesLock(table);
        }
        for (const Json& item : Items(node, "cmds")) {
          if (const Json* cmd = Field(item, "AlterTableCmd")) {
            LintAlterTableCmd(table, *cmd);
          }
        }
      }
    } else if (type == "RenameStmt") {
      const std::string rename = StringField(node, "renameType");
      const std::string table = TableName(Field(node, "relation"));
      if (rename == "OBJECT_TABLE" && !Created(table)) {
        TakesLock(table);
        AddHere(kRenameTable,
                absl::StrCat("renaming ", table,
                             " breaks every running control layer that still uses the old name; "
                             "add the new table (or a view under the new name), move the code "
                             "over, then drop the old name in a later revision"));
      } else if (rename == "OBJECT_COLUMN" && !Created(table)) {
        TakesLock(table);
        AddHere(kRenameColumn,
                absl::StrCat("renaming column ", StringField(node, "subname"), " of ", table,
                             " breaks every running control layer that still uses the old name; "
                             "add the new column, write both, move the reads, then drop the old "
                             "one in a later revision"));
      }
    } else if (type == "TruncateStmt") {
      std::vector<std::string> tables;
      for (const Json& relation : Items(node, "relations")) {
        tables.push_back(TableName(Field(relation, "RangeVar")));
      }
      AddHere(kTruncate, absl::StrCat("TRUNCATE ", absl::StrJoin(tables, ", "),
                                      " throws every row away and takes an ACCESS EXCLUSIVE "
                                      "lock; if this is intended, suppress the finding with "
                                      "`-- schemad:lint-ignore truncate` and say why"));
    } else if (type == "AlterEnumStmt" && revision_.transactional &&
               Field(node, "newVal") != nullptr) {
      AddHere(kEnumAddValue,
              "ALTER TYPE ... ADD VALUE in a transaction fails before PostgreSQL 12, and from 12 "
              "on the new value cannot be used until the transaction commits; put it in a "
              "revision of its own with `-- transactional: false`");
    } else if ((type == "UpdateStmt" || type == "DeleteStmt") &&
               Field(node, "whereClause") == nullptr) {
      const std::string table = TableName(Field(node, "relation"));
      if (!Created(table)) {
        AddHere(kNoWhere,
                absl::StrCat(type == "UpdateStmt" ? "UPDATE" : "DELETE", " without WHERE ",
                             type == "UpdateStmt" ? "rewrites" : "removes", " every row of ", table,
                             " in one transaction, locking them all; add a WHERE clause, or "
                             "batch a large backfill (by key ranges) in a data revision"));
      }
    } else if (type == "CreateTrigStmt" || type == "RuleStmt") {
      TakesLock(TableName(Field(node, "relation")));
    }
  }

  void LintDrop(const Json& node) {
    const std::string remove = StringField(node, "removeType");
    std::vector<std::string> names;
    for (const Json& object : Items(node, "objects")) {
      std::vector<std::string> parts;
      for (const Json& part :
           Items(Field(object, "List") == nullptr ? object : *Field(object, "List"), "items")) {
        if (const Json* string = Field(part, "String")) {
          parts.push_back(StringField(*string, "sval"));
        }
      }
      names.push_back(absl::StrJoin(parts, "."));
    }
    const std::string list = absl::StrJoin(names, ", ");
    if (remove == "OBJECT_INDEX" && !BoolField(node, "concurrent")) {
      AddHere(kDropIndex, absl::StrCat("DROP INDEX without CONCURRENTLY locks the index's table "
                                       "against reads and writes while it runs; use DROP INDEX "
                                       "CONCURRENTLY in a revision with "
                                       "`-- transactional: false`"));
    } else if (remove == "OBJECT_TABLE") {
      bool all_created = true;
      for (const std::string& name : names) {
        all_created = all_created && Created(name);
      }
      if (!all_created) {
        AddHere(kDropTable,
                absl::StrCat("DROP TABLE ", list,
                             " destroys its data, and control layers still running the previous "
                             "release fail on the missing table; stop using the table in a "
                             "release first, drop it in a later revision, keep a backup"));
      }
    }
  }

  void LintAlterTableCmd(const std::string& table, const Json& cmd) {
    const std::string subtype = StringField(cmd, "subtype");
    const bool created = Created(table);
    const std::string column = StringField(cmd, "name");
    if (subtype == "AT_AddColumn" && !created) {
      const Json* def = Field(cmd, "def");
      const Json* column_def = def == nullptr ? nullptr : Field(*def, "ColumnDef");
      if (column_def == nullptr) {
        return;
      }
      const Json* type = Field(*column_def, "typeName");
      const std::string type_name = type == nullptr ? "" : LastName(*type, "names");
      bool volatile_default = type_name == "serial" || type_name == "bigserial" ||
                              type_name == "smallserial" || type_name == "serial4" ||
                              type_name == "serial8" || type_name == "serial2";
      bool stored_generated = false;
      for (const Json& item : Items(*column_def, "constraints")) {
        const Json* constraint = Field(item, "Constraint");
        if (constraint == nullptr) {
          continue;
        }
        const std::string contype = StringField(*constraint, "contype");
        if (contype == "CONSTR_DEFAULT" && CallsVolatileFunction(*constraint)) {
          volatile_default = true;
        } else if (contype == "CONSTR_GENERATED" || contype == "CONSTR_IDENTITY") {
          stored_generated = true;
        }
      }
      if (volatile_default || stored_generated) {
        AddHere(kVolatileDefault,
                absl::StrCat("adding column ", StringField(*column_def, "colname"), " to ", table,
                             " with a ",
                             stored_generated ? "generated or identity value" : "volatile default",
                             " rewrites the whole table under an ACCESS EXCLUSIVE lock; add the "
                             "column without it (or with a constant default), set the default "
                             "for new rows, and backfill existing rows in batches"));
      }
    } else if (subtype == "AT_DropColumn" && !created) {
      AddHere(kDropColumn,
              absl::StrCat("dropping column ", column, " of ", table,
                           " destroys its data, and control layers still running the previous "
                           "release fail on the missing column; stop reading and writing it in a "
                           "release first, then drop it in a later revision"));
    } else if (subtype == "AT_AlterColumnType" && !created) {
      AddHere(kAlterType,
              absl::StrCat("changing the type of ", table, ".", column,
                           " rewrites the table and its indexes under an ACCESS EXCLUSIVE lock "
                           "(unless the change is binary-coercible, such as varchar(n) to text "
                           "or to a longer varchar); add a new column, backfill it in batches, "
                           "and switch over"));
    } else if (subtype == "AT_SetNotNull" && !created &&
               validated_checks_.count(absl::StrCat(table, ".", column)) == 0) {
      AddHere(kSetNotNull,
              absl::StrCat("SET NOT NULL on ", table, ".", column,
                           " scans the whole table under an ACCESS EXCLUSIVE lock; first add "
                           "CHECK (",
                           column,
                           " IS NOT NULL) NOT VALID, VALIDATE it in a later revision, then SET "
                           "NOT NULL (PostgreSQL 12+ uses the validated check and skips the "
                           "scan)"));
    } else if (subtype == "AT_AddConstraint") {
      const Json* def = Field(cmd, "def");
      const Json* constraint = def == nullptr ? nullptr : Field(*def, "Constraint");
      if (constraint != nullptr) {
        LintAddConstraint(table, *constraint);
      }
    } else if (subtype == "AT_ValidateConstraint") {
      if (added_not_valid_.count(absl::StrCat(table, ".", column)) > 0 && revision_.transactional) {
        AddHere(kValidateSame,
                absl::StrCat("VALIDATE CONSTRAINT ", column,
                             " runs in the same transaction as the ADD ... NOT VALID, so the ADD's "
                             "lock on ",
                             table,
                             " is held through the whole validation scan; validate in a later "
                             "revision"));
      }
      if (const auto check = not_null_checks_.find(absl::StrCat(table, ".", column));
          check != not_null_checks_.end()) {
        validated_checks_.insert(check->second);
      }
    }
  }

  void LintAddConstraint(const std::string& table, const Json& constraint) {
    const std::string contype = StringField(constraint, "contype");
    const std::string name = StringField(constraint, "conname");
    const bool not_valid = BoolField(constraint, "skip_validation");
    if (contype == "CONSTR_CHECK") {
      // CHECK (col IS NOT NULL): what makes a later SET NOT NULL cheap.
      const Json* expr = Field(constraint, "raw_expr");
      const Json* test = expr == nullptr ? nullptr : Field(*expr, "NullTest");
      if (test != nullptr && StringField(*test, "nulltesttype") == "IS_NOT_NULL") {
        const Json* arg = Field(*test, "arg");
        const Json* ref = arg == nullptr ? nullptr : Field(*arg, "ColumnRef");
        if (ref != nullptr) {
          const std::string column = LastName(*ref, "fields");
          not_null_checks_[absl::StrCat(table, ".", name)] = absl::StrCat(table, ".", column);
          if (!not_valid) {
            validated_checks_.insert(absl::StrCat(table, ".", column));
          }
        }
      }
    }
    if (Created(table)) {
      return;
    }
    if (not_valid) {
      added_not_valid_.insert(absl::StrCat(table, ".", name));
    }
    if ((contype == "CONSTR_FOREIGN" || contype == "CONSTR_CHECK") && !not_valid) {
      AddHere(kNotValid,
              absl::StrCat("adding ", contype == "CONSTR_FOREIGN" ? "a foreign key" : "a check",
                           " constraint to ", table,
                           " validates every row while holding a lock that blocks writes; add it "
                           "NOT VALID, then VALIDATE CONSTRAINT in a later revision (which takes "
                           "a weaker lock)"));
    } else if ((contype == "CONSTR_UNIQUE" || contype == "CONSTR_PRIMARY") &&
               StringField(constraint, "indexname").empty()) {
      AddHere(kUniqueWithoutIndex,
              absl::StrCat("adding a ", contype == "CONSTR_UNIQUE" ? "unique" : "primary key",
                           " constraint to ", table,
                           " builds its index while blocking reads and writes; CREATE UNIQUE "
                           "INDEX CONCURRENTLY first (non-transactional revision), then ADD "
                           "CONSTRAINT ... ",
                           contype == "CONSTR_UNIQUE" ? "UNIQUE" : "PRIMARY KEY", " USING INDEX"));
    }
  }

  const Revision& revision_;
  std::set<std::string>& validated_checks_;
  std::map<std::string, std::string>& not_null_checks_;
  std::vector<LintFinding>& findings_;
  const ParsedStatement* statement_ = nullptr;
  std::set<std::string> created_;
  std::set<std::string> added_not_valid_;  // "table.constraint"
  bool lock_timeout_set_ = false;
  bool lock_warned_ = false;
};

bool IsRule(absl::string_view code) {
  for (const LintRule& rule : LintRules()) {
    if (rule.code == code) {
      return true;
    }
  }
  return false;
}

LintSeverity DefaultSeverity(absl::string_view code) {
  for (const LintRule& rule : LintRules()) {
    if (rule.code == code) {
      return rule.default_severity;
    }
  }
  return LintSeverity::kWarning;
}

// The rules a `-- schemad:lint-ignore[ RULE,...]` line names (empty: all), or
// nullopt when `line` is no such line.
std::optional<std::vector<std::string>> IgnoreLine(absl::string_view line) {
  line = absl::StripAsciiWhitespace(line);
  if (!absl::ConsumePrefix(&line, kIgnoreMarker)) {
    return std::nullopt;
  }
  if (!line.empty() && !absl::ascii_isspace(static_cast<unsigned char>(line[0]))) {
    return std::nullopt;
  }
  std::vector<std::string> rules;
  for (absl::string_view rule : absl::StrSplit(line, absl::ByAnyChar(", \t"), absl::SkipEmpty())) {
    rules.emplace_back(rule);
  }
  return rules;
}

}  // namespace

absl::string_view LintSeverityName(LintSeverity severity) {
  switch (severity) {
    case LintSeverity::kOff:
      return "off";
    case LintSeverity::kInfo:
      return "info";
    case LintSeverity::kWarning:
      return "warning";
    case LintSeverity::kError:
      return "error";
  }
  return "warning";
}

const std::vector<LintRule>& LintRules() {
  using S = LintSeverity;
  static const auto* const kRules = new std::vector<LintRule>{
      {kCreateIndex, S::kError, "CREATE INDEX without CONCURRENTLY on an existing table"},
      {kDropIndex, S::kWarning, "DROP INDEX without CONCURRENTLY"},
      {kVolatileDefault, S::kError,
       "ADD COLUMN with a volatile default, serial, identity or stored generated value"},
      {kAlterType, S::kWarning, "ALTER COLUMN ... TYPE that rewrites the table"},
      {kSetNotNull, S::kWarning, "SET NOT NULL without a validated CHECK (col IS NOT NULL)"},
      {kNotValid, S::kError, "foreign key or check constraint added without NOT VALID"},
      {kValidateSame, S::kWarning, "VALIDATE CONSTRAINT in the transaction of its ADD"},
      {kUniqueWithoutIndex, S::kError, "UNIQUE / PRIMARY KEY constraint without USING INDEX"},
      {kDropTable, S::kWarning, "DROP TABLE (destructive, breaks running code)"},
      {kDropColumn, S::kWarning, "DROP COLUMN (destructive, breaks running code)"},
      {kTruncate, S::kWarning, "TRUNCATE (destructive)"},
      {kRenameTable, S::kWarning, "renaming a table (breaks running code)"},
      {kRenameColumn, S::kWarning, "renaming a column (breaks running code)"},
      {kEnumAddValue, S::kWarning, "ALTER TYPE ... ADD VALUE in a transactional revision"},
      {kLockTimeout, S::kWarning, "lock-taking DDL on an existing table with no lock_timeout"},
      {kNoWhere, S::kWarning, "UPDATE or DELETE without WHERE"},
      {kNoDowngrade, S::kInfo, "revision without a downgrade section"},
      {kNoopDowngrade, S::kInfo, "data migration whose downgrade is a no-op"},
      {kEmptyUpgrade, S::kWarning, "upgrade section without a statement (not a merge)"},
      {kUnknownRule, S::kError, "lint-ignore names a rule that does not exist"},
      {kNotAnalysed, S::kInfo, "statement or revision lint cannot analyse"},
  };
  return *kRules;
}

absl::StatusOr<LintConfig> ParseLintConfig(absl::string_view path, absl::string_view content) {
  ASSIGN_OR_RETURN(std::vector<SettingLine> settings,
                   ParseSettingLines(path, content, "`RULE = off|info|warning|error`"));
  LintConfig config;
  for (const SettingLine& setting : settings) {
    if (!IsRule(setting.key)) {
      return SettingError(path, setting,
                          absl::StrCat("unknown rule '", Cut(setting.key), "' (see docs/lint.md)"));
    }
    std::optional<LintSeverity> severity;
    for (LintSeverity s :
         {LintSeverity::kOff, LintSeverity::kInfo, LintSeverity::kWarning, LintSeverity::kError}) {
      if (setting.value == LintSeverityName(s)) {
        severity = s;
      }
    }
    if (!severity.has_value()) {
      return SettingError(path, setting,
                          absl::StrCat("severity must be off, info, warning or error, not '",
                                       Cut(setting.value), "'"));
    }
    config.severities[setting.key] = *severity;
  }
  return config;
}

absl::StatusOr<LintConfig> LoadLintConfig(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / std::string(kLintConfigFileName)).string();
  ASSIGN_OR_RETURN(std::optional<std::string> content, ReadSettingsFile(path));
  if (!content.has_value()) {
    return LintConfig{};
  }
  return ParseLintConfig(path, *content);
}

std::vector<LintFinding> LintRevisions(const std::vector<const Revision*>& revisions,
                                       const LintConfig& config) {
  std::vector<LintFinding> out;
  History history;
  for (const Revision* revision : revisions) {
    std::vector<LintFinding> findings;
    RevisionLinter(*revision, history, findings).Run();
    for (const std::string& rule : revision->lint_ignore) {
      if (!IsRule(rule)) {
        findings.push_back(LintFinding{
            kUnknownRule, LintSeverity::kError, revision->id, revision->path, revision->id_line, "",
            absl::StrCat("`lint_ignore` names unknown rule '", Cut(rule), "' (see docs/lint.md)")});
      }
    }
    // Every `-- schemad:lint-ignore` line of the upgrade, by file line.
    std::map<int, std::vector<std::string>> ignore_lines;
    if (revision->upgrade.has_value()) {
      int number = revision->upgrade->line + 1;
      for (absl::string_view line : absl::StrSplit(revision->upgrade->body, '\n')) {
        if (std::optional<std::vector<std::string>> rules = IgnoreLine(line)) {
          for (const std::string& rule : *rules) {
            if (!IsRule(rule)) {
              findings.push_back(LintFinding{kUnknownRule, LintSeverity::kError, revision->id,
                                             revision->path, number, Cut(line),
                                             absl::StrCat("lint-ignore names unknown rule '",
                                                          Cut(rule), "' (see docs/lint.md)")});
            }
          }
          ignore_lines[number] = *std::move(rules);
        }
        ++number;
      }
    }
    for (LintFinding& finding : findings) {
      finding.severity = DefaultSeverity(finding.rule);
      if (const auto it = config.severities.find(finding.rule); it != config.severities.end()) {
        finding.severity = it->second;
      }
      const auto& header = revision->lint_ignore;
      bool suppressed = std::find(header.begin(), header.end(), finding.rule) != header.end();
      // `-- schemad:lint-ignore[ RULE,...]` on the line before the statement.
      if (const auto it = ignore_lines.find(finding.line - 1);
          finding.line > 0 && finding.rule != kUnknownRule && it != ignore_lines.end()) {
        suppressed =
            suppressed || it->second.empty() ||
            std::find(it->second.begin(), it->second.end(), finding.rule) != it->second.end();
      }
      if (suppressed || finding.severity == LintSeverity::kOff) {
        continue;
      }
      out.push_back(std::move(finding));
    }
  }
  return out;
}

std::vector<LintFinding> LintGraph(const RevisionGraph& graph, const LintConfig& config) {
  // Every revision lies between the bases and the heads, so this walk (newest
  // first) holds all of them; reversed, parents come before children.
  absl::StatusOr<std::vector<int>> newest_first = WalkRevisions(graph, "", "", {});
  std::vector<const Revision*> revisions;
  if (newest_first.ok()) {
    for (auto it = newest_first->rbegin(); it != newest_first->rend(); ++it) {
      revisions.push_back(&graph.revision(*it));
    }
  }
  return LintRevisions(revisions, config);
}

bool HasLintErrors(const std::vector<LintFinding>& findings) {
  return std::any_of(findings.begin(), findings.end(), [](const LintFinding& finding) {
    return finding.severity == LintSeverity::kError;
  });
}

}  // namespace schemad::engine
