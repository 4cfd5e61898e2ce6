#include "service/schema/schema_diff.h"

#include <algorithm>
#include <array>
#include <functional>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace schemad::schema {

absl::string_view ChangeActionName(ChangeAction action) {
  switch (action) {
    case ChangeAction::kCreate:
      return "create";
    case ChangeAction::kDrop:
      return "drop";
    case ChangeAction::kAlter:
      return "alter";
  }
  return "alter";
}

absl::string_view ChangeSafetyName(ChangeSafety safety) {
  switch (safety) {
    case ChangeSafety::kSafe:
      return "safe";
    case ChangeSafety::kRewrite:
      return "rewrite";
    case ChangeSafety::kDestructive:
      return "destructive";
  }
  return "destructive";
}

namespace {

// Keywords that PostgreSQL 15's quote_ident quotes (every keyword category
// but the unreserved one: src/include/parser/kwlist.h).
const std::set<std::string>& QuotedKeywords() {
  static const auto* const kKeywords = new std::set<std::string>{
      // reserved
      "all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric", "both", "case",
      "cast", "check", "collate", "column", "constraint", "create", "current_catalog",
      "current_date", "current_role", "current_time", "current_timestamp", "current_user",
      "default", "deferrable", "desc", "distinct", "do", "else", "end", "except", "false", "fetch",
      "for", "foreign", "from", "grant", "group", "having", "in", "initially", "intersect", "into",
      "lateral", "leading", "limit", "localtime", "localtimestamp", "not", "null", "offset", "on",
      "only", "or", "order", "placing", "primary", "references", "returning", "select",
      "session_user", "some", "symmetric", "table", "then", "to", "trailing", "true", "union",
      "unique", "user", "using", "variadic", "when", "where", "window", "with",
      // type or function names
      "authorization", "binary", "collation", "concurrently", "cross", "current_schema", "freeze",
      "full", "ilike", "inner", "is", "isnull", "join", "left", "like", "natural", "notnull",
      "outer", "overlaps", "right", "similar", "tablesample", "verbose",
      // column names
      "between", "bigint", "bit", "boolean", "char", "character", "coalesce", "dec", "decimal",
      "exists", "extract", "float", "greatest", "grouping", "inout", "int", "integer", "interval",
      "least", "national", "nchar", "none", "normalize", "nullif", "numeric", "out", "overlay",
      "position", "precision", "real", "row", "setof", "smallint", "substring", "time", "timestamp",
      "treat", "trim", "values", "varchar", "xmlattributes", "xmlconcat", "xmlelement", "xmlexists",
      "xmlforest", "xmlnamespaces", "xmlparse", "xmlpi", "xmlroot", "xmlserialize", "xmltable"};
  return *kKeywords;
}

}  // namespace

std::string QuoteIdent(absl::string_view name) {
  bool plain = !name.empty() && (absl::ascii_islower(name[0]) || name[0] == '_');
  for (char c : name) {
    if (!(absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '_' || c == '$')) plain = false;
  }
  if (plain && QuotedKeywords().count(std::string(name)) == 0) return std::string(name);
  return absl::StrCat("\"", absl::StrReplaceAll(name, {{"\"", "\"\""}}), "\"");
}

std::string QualifiedName(absl::string_view schema, absl::string_view name) {
  return absl::StrCat(QuoteIdent(schema), ".", QuoteIdent(name));
}

std::string QuoteLiteral(absl::string_view text) {
  return absl::StrCat("'", absl::StrReplaceAll(text, {{"'", "''"}}), "'");
}

bool HasDestructive(const std::vector<SchemaChange>& changes) {
  return std::any_of(changes.begin(), changes.end(), [](const SchemaChange& change) {
    return change.safety == ChangeSafety::kDestructive;
  });
}

std::string RenderSql(const std::vector<SchemaChange>& changes) {
  std::string sql;
  for (const SchemaChange& change : changes) {
    if (change.safety == ChangeSafety::kDestructive) {
      absl::StrAppend(&sql, "-- DESTRUCTIVE: ", change.description, "\n");
    } else if (change.safety == ChangeSafety::kRewrite) {
      absl::StrAppend(&sql, "-- REWRITE: ", change.description, "\n");
    }
    if (!change.hint.empty()) absl::StrAppend(&sql, "-- hint: ", change.hint, "\n");
    for (const std::string& statement : change.statements) absl::StrAppend(&sql, statement, ";\n");
  }
  return sql;
}

namespace {

// The order changes run in (the header's list).
enum Phase {
  kDropTrigger,
  kDropView,
  kDropForeignKey,
  kDropConstraint,
  kDropIndex,
  kDropColumn,
  kDropPartition,
  kDropTable,
  kCreateSchema,
  kExtension,
  kEnum,
  kDomain,
  kComposite,
  kSequence,
  kFunction,
  kTable,
  kPartition,
  kColumn,
  kSequenceOwner,
  kConstraint,
  kForeignKey,
  kIndex,
  kView,
  kSqlFunction,
  kTrigger,
  kComment,
  // What columns, defaults and triggers may still use until the phases above
  // changed them: dropped last.
  kDropSequence,
  kDropFunction,
  kDropComposite,
  kDropDomain,
  kDropEnum,
  kDropExtension,
  kDropSchema,
  kPhaseCount
};

template <typename T>
std::map<std::string, const T*> ByKey(const std::vector<T>& objects) {
  std::map<std::string, const T*> by_key;
  for (const T& object : objects) by_key.emplace(object.Key(), &object);
  return by_key;
}

ChangeSafety Worst(ChangeSafety a, ChangeSafety b) { return std::max(a, b); }

std::string WithoutFinalSemicolon(absl::string_view text) {
  text = absl::StripTrailingAsciiWhitespace(text);
  absl::ConsumeSuffix(&text, ";");
  return std::string(absl::StripTrailingAsciiWhitespace(text));
}

std::string ColumnSql(const Column& column) {
  std::string sql = absl::StrCat(QuoteIdent(column.name), " ", column.type);
  if (!column.collation.empty()) absl::StrAppend(&sql, " COLLATE ", column.collation);
  if (!column.generated_expr.empty()) {
    absl::StrAppend(&sql, " GENERATED ALWAYS AS (", column.generated_expr, ") STORED");
  }
  if (column.identity == 'a') absl::StrAppend(&sql, " GENERATED ALWAYS AS IDENTITY");
  if (column.identity == 'd') absl::StrAppend(&sql, " GENERATED BY DEFAULT AS IDENTITY");
  if (!column.default_expr.empty()) absl::StrAppend(&sql, " DEFAULT ", column.default_expr);
  if (column.not_null) absl::StrAppend(&sql, " NOT NULL");
  return sql;
}

std::string CommentSql(absl::string_view target, absl::string_view comment) {
  return absl::StrCat("COMMENT ON ", target, " IS ",
                      comment.empty() ? std::string("NULL") : QuoteLiteral(comment));
}

// A column type's family and size, for telling a widening from a rewrite:
// "character varying(64)" -> {"character varying", 64}; -1 = unbounded.
struct SizedType {
  std::string base;
  long long size = -1;
  long long scale = -1;
};
SizedType ParseSizedType(absl::string_view type) {
  SizedType parsed;
  size_t open = type.find('(');
  if (open == absl::string_view::npos || type.back() != ')') {
    parsed.base = std::string(type);
    return parsed;
  }
  parsed.base = std::string(type.substr(0, open));
  absl::string_view args = type.substr(open + 1, type.size() - open - 2);
  size_t comma = args.find(',');
  if (!absl::SimpleAtoi(args.substr(0, comma), &parsed.size)) parsed.base = std::string(type);
  if (comma != absl::string_view::npos) {
    if (!absl::SimpleAtoi(args.substr(comma + 1), &parsed.scale)) parsed.base = std::string(type);
  }
  return parsed;
}

// The cost of ALTER COLUMN ... TYPE from `from` to `to`: the widenings
// PostgreSQL does without a rewrite are safe, narrowings destructive (USING
// casts truncate), everything else a rewrite.
ChangeSafety TypeChangeSafety(const std::string& from, const std::string& to) {
  SizedType a = ParseSizedType(from);
  SizedType b = ParseSizedType(to);
  const bool a_text = a.base == "character varying" || a.base == "text";
  const bool b_text = b.base == "character varying" || b.base == "text";
  if (a_text && b_text) {
    if (b.size < 0) return ChangeSafety::kSafe;
    if (a.size >= 0 && b.size >= a.size) return ChangeSafety::kSafe;
    return ChangeSafety::kDestructive;
  }
  if (a.base == "numeric" && b.base == "numeric") {
    if (b.size < 0) return ChangeSafety::kSafe;
    if (a.size >= 0 && b.scale == a.scale && b.size >= a.size) return ChangeSafety::kSafe;
    return ChangeSafety::kDestructive;
  }
  return ChangeSafety::kRewrite;
}

class Differ {
 public:
  Differ(const DatabaseSchema& from, const DatabaseSchema& to)
      : from_(from), to_(to), from_tables_(ByKey(from.tables)), to_tables_(ByKey(to.tables)) {}

  std::vector<SchemaChange> Run() {
    DiffSchemasAndExtensions();
    DiffEnums();
    DiffDomains();
    DiffCompositeTypes();
    DiffSequences();
    DiffFunctions();
    DiffTables();
    DiffConstraints();
    DiffIndexes();
    DiffViews();
    DiffTriggers();
    std::vector<SchemaChange> changes;
    for (auto& phase : phases_) {
      for (SchemaChange& change : phase) changes.push_back(std::move(change));
    }
    return changes;
  }

 private:
  void Add(Phase phase, SchemaChange change) { phases_[phase].push_back(std::move(change)); }

  SchemaChange Change(ChangeAction action, std::string kind, std::string object,
                      ChangeSafety safety, std::string description,
                      std::vector<std::string> statements) {
    SchemaChange change;
    change.action = action;
    change.object_kind = std::move(kind);
    change.object = std::move(object);
    change.safety = safety;
    change.description = std::move(description);
    change.statements = std::move(statements);
    return change;
  }

  // COMMENT ON for a created object (when it has one) or a changed comment.
  void Comment(const std::string& kind, const std::string& object, const std::string& target,
               const std::string* before, const std::string& after) {
    if (before == nullptr ? after.empty() : *before == after) return;
    Add(kComment,
        Change(before == nullptr ? ChangeAction::kCreate : ChangeAction::kAlter, "comment", object,
               ChangeSafety::kSafe, absl::StrCat("comment on ", kind, " ", object),
               {CommentSql(target, after)}));
  }

  bool TableExistsBefore(const std::string& schema, const std::string& table) const {
    return from_tables_.count(absl::StrCat(schema, ".", table)) > 0;
  }
  bool TableDropped(const std::string& schema, const std::string& table) const {
    std::string key = absl::StrCat(schema, ".", table);
    return from_tables_.count(key) > 0 && to_tables_.count(key) == 0;
  }
  // The table's quoted name, looked up by key in either model.
  std::string TableName(const std::string& key) const {
    auto it = to_tables_.find(key);
    if (it == to_tables_.end()) it = from_tables_.find(key);
    if (it == from_tables_.end()) return key;
    return QualifiedName(it->second->schema, it->second->name);
  }

  void DiffSchemasAndExtensions() {
    auto before = ByKey(from_.schemas);
    auto after = ByKey(to_.schemas);
    for (const auto& [key, schema] : after) {
      auto it = before.find(key);
      if (it == before.end()) {
        Add(kCreateSchema, Change(ChangeAction::kCreate, "schema", key, ChangeSafety::kSafe,
                                  absl::StrCat("create schema ", key),
                                  {absl::StrCat("CREATE SCHEMA ", QuoteIdent(schema->name))}));
      }
      Comment("schema", key, absl::StrCat("SCHEMA ", QuoteIdent(schema->name)),
              it == before.end() ? nullptr : &it->second->comment, schema->comment);
    }
    for (const auto& [key, schema] : before) {
      if (after.count(key) == 0) {
        Add(kDropSchema, Change(ChangeAction::kDrop, "schema", key, ChangeSafety::kSafe,
                                absl::StrCat("drop schema ", key),
                                {absl::StrCat("DROP SCHEMA ", QuoteIdent(schema->name))}));
      }
    }
    auto ext_before = ByKey(from_.extensions);
    auto ext_after = ByKey(to_.extensions);
    for (const auto& [key, extension] : ext_after) {
      const std::string name = QuoteIdent(extension->name);
      auto it = ext_before.find(key);
      if (it == ext_before.end()) {
        Add(kExtension, Change(ChangeAction::kCreate, "extension", key, ChangeSafety::kSafe,
                               absl::StrCat("create extension ", key),
                               {absl::StrCat("CREATE EXTENSION IF NOT EXISTS ", name,
                                             " WITH SCHEMA ", QuoteIdent(extension->schema))}));
      } else {
        std::vector<std::string> statements;
        if (it->second->schema != extension->schema) {
          statements.push_back(absl::StrCat("ALTER EXTENSION ", name, " SET SCHEMA ",
                                            QuoteIdent(extension->schema)));
        }
        if (it->second->version != extension->version) {
          statements.push_back(absl::StrCat("ALTER EXTENSION ", name, " UPDATE TO ",
                                            QuoteLiteral(extension->version)));
        }
        if (!statements.empty()) {
          Add(kExtension, Change(ChangeAction::kAlter, "extension", key, ChangeSafety::kSafe,
                                 absl::StrCat("alter extension ", key, " (version ",
                                              it->second->version, " -> ", extension->version, ")"),
                                 std::move(statements)));
        }
      }
      Comment("extension", key, absl::StrCat("EXTENSION ", name),
              it == ext_before.end() ? nullptr : &it->second->comment, extension->comment);
    }
    for (const auto& [key, extension] : ext_before) {
      if (ext_after.count(key) == 0) {
        Add(kDropExtension,
            Change(ChangeAction::kDrop, "extension", key, ChangeSafety::kDestructive,
                   absl::StrCat("drop extension ", key, " (and what it defines)"),
                   {absl::StrCat("DROP EXTENSION ", QuoteIdent(extension->name))}));
      }
    }
  }

  void DiffEnums() {
    auto before = ByKey(from_.enums);
    auto after = ByKey(to_.enums);
    for (const auto& [key, type] : after) {
      const std::string name = QualifiedName(type->schema, type->name);
      auto it = before.find(key);
      std::vector<std::string> labels;
      for (const std::string& label : type->labels) labels.push_back(QuoteLiteral(label));
      const std::string create =
          absl::StrCat("CREATE TYPE ", name, " AS ENUM (", absl::StrJoin(labels, ", "), ")");
      if (it == before.end()) {
        Add(kEnum, Change(ChangeAction::kCreate, "enum", key, ChangeSafety::kSafe,
                          absl::StrCat("create enum ", key), {create}));
      } else if (it->second->labels != type->labels) {
        Add(kEnum, EnumChange(*it->second, *type, create));
      }
      Comment("type", key, absl::StrCat("TYPE ", name),
              it == before.end() ? nullptr : &it->second->comment, type->comment);
    }
    for (const auto& [key, type] : before) {
      if (after.count(key) == 0) {
        Add(kDropEnum,
            Change(ChangeAction::kDrop, "enum", key, ChangeSafety::kSafe,
                   absl::StrCat("drop enum ", key),
                   {absl::StrCat("DROP TYPE ", QualifiedName(type->schema, type->name))}));
      }
    }
  }

  // Labels only added (order kept): ALTER TYPE ... ADD VALUE. Otherwise the
  // type is re-created and every column of it converted through text, which
  // fails on rows holding a removed label.
  SchemaChange EnumChange(const EnumType& before, const EnumType& after,
                          const std::string& create) {
    const std::string name = QualifiedName(after.schema, after.name);
    const std::string key = after.Key();
    std::vector<std::string> statements;
    size_t next = 0;  // labels of `before` matched so far
    for (size_t i = 0; i < after.labels.size(); ++i) {
      if (next < before.labels.size() && before.labels[next] == after.labels[i]) {
        ++next;
        continue;
      }
      if (std::find(before.labels.begin(), before.labels.end(), after.labels[i]) !=
          before.labels.end()) {
        break;  // reordered
      }
      statements.push_back(
          absl::StrCat("ALTER TYPE ", name, " ADD VALUE ", QuoteLiteral(after.labels[i]),
                       next < before.labels.size()
                           ? absl::StrCat(" BEFORE ", QuoteLiteral(before.labels[next]))
                           : absl::StrCat(" AFTER ", QuoteLiteral(after.labels[i - 1]))));
    }
    if (next == before.labels.size() &&
        statements.size() + before.labels.size() == after.labels.size()) {
      return Change(ChangeAction::kAlter, "enum", key, ChangeSafety::kSafe,
                    absl::StrCat("add values to enum ", key), std::move(statements));
    }
    const std::string old_name = absl::StrCat(after.name, "__schemad_old");
    statements = {absl::StrCat("ALTER TYPE ", name, " RENAME TO ", QuoteIdent(old_name)), create};
    // The columns of the type that exist when this runs: those of `from`
    // that `to` keeps (dropped columns and tables are gone by then, added
    // ones come later). A default is set again only when the column keeps
    // the type (a default of a removed label would fail; the column's own
    // change sets any other).
    std::vector<std::string> defaults;
    for (const Table& table : from_.tables) {
      auto kept = to_tables_.find(table.Key());
      if (kept == to_tables_.end()) continue;
      const std::string table_name = QualifiedName(table.schema, table.name);
      for (const Column& column : table.columns) {
        if (column.type != name) continue;
        const Column* after_column = nullptr;
        for (const Column& candidate : kept->second->columns) {
          if (candidate.name == column.name) after_column = &candidate;
        }
        if (after_column == nullptr) continue;
        const std::string alter =
            absl::StrCat("ALTER TABLE ", table_name, " ALTER COLUMN ", QuoteIdent(column.name));
        if (!column.default_expr.empty())
          statements.push_back(absl::StrCat(alter, " DROP DEFAULT"));
        statements.push_back(absl::StrCat(alter, " TYPE ", name, " USING ", QuoteIdent(column.name),
                                          "::text::", name));
        if (after_column->type == name && !after_column->default_expr.empty()) {
          defaults.push_back(absl::StrCat(alter, " SET DEFAULT ", after_column->default_expr));
        }
      }
    }
    statements.insert(statements.end(), defaults.begin(), defaults.end());
    statements.push_back(absl::StrCat("DROP TYPE ", QualifiedName(after.schema, old_name)));
    return Change(ChangeAction::kAlter, "enum", key, ChangeSafety::kDestructive,
                  absl::StrCat("re-create enum ", key, " (labels removed or reordered: rows ",
                               "holding a removed label make the conversion fail)"),
                  std::move(statements));
  }

  static std::string CreateDomainSql(const DomainType& domain) {
    std::string sql = absl::StrCat("CREATE DOMAIN ", QualifiedName(domain.schema, domain.name),
                                   " AS ", domain.base_type);
    if (!domain.collation.empty()) absl::StrAppend(&sql, " COLLATE ", domain.collation);
    if (!domain.default_expr.empty()) absl::StrAppend(&sql, " DEFAULT ", domain.default_expr);
    if (domain.not_null) absl::StrAppend(&sql, " NOT NULL");
    for (const DomainConstraint& constraint : domain.constraints) {
      absl::StrAppend(&sql, " CONSTRAINT ", QuoteIdent(constraint.name), " ",
                      constraint.definition);
    }
    return sql;
  }

  void DiffDomains() {
    auto before = ByKey(from_.domains);
    auto after = ByKey(to_.domains);
    for (const auto& [key, domain] : after) {
      const std::string name = QualifiedName(domain->schema, domain->name);
      auto it = before.find(key);
      if (it == before.end()) {
        Add(kDomain, Change(ChangeAction::kCreate, "domain", key, ChangeSafety::kSafe,
                            absl::StrCat("create domain ", key), {CreateDomainSql(*domain)}));
      } else if (it->second->base_type != domain->base_type ||
                 it->second->collation != domain->collation) {
        Add(kDomain, Change(ChangeAction::kAlter, "domain", key, ChangeSafety::kDestructive,
                            absl::StrCat("re-create domain ", key, " (base type ",
                                         it->second->base_type, " -> ", domain->base_type, ")"),
                            {absl::StrCat("DROP DOMAIN ", name), CreateDomainSql(*domain)}));
      } else {
        std::vector<std::string> statements;
        const std::string alter = absl::StrCat("ALTER DOMAIN ", name);
        if (it->second->default_expr != domain->default_expr) {
          statements.push_back(domain->default_expr.empty()
                                   ? absl::StrCat(alter, " DROP DEFAULT")
                                   : absl::StrCat(alter, " SET DEFAULT ", domain->default_expr));
        }
        if (it->second->not_null != domain->not_null) {
          statements.push_back(
              absl::StrCat(alter, domain->not_null ? " SET" : " DROP", " NOT NULL"));
        }
        std::map<std::string, std::string> old_checks;
        for (const DomainConstraint& c : it->second->constraints) old_checks[c.name] = c.definition;
        std::map<std::string, std::string> new_checks;
        for (const DomainConstraint& c : domain->constraints) new_checks[c.name] = c.definition;
        for (const auto& [constraint, definition] : old_checks) {
          auto found = new_checks.find(constraint);
          if (found == new_checks.end() || found->second != definition) {
            statements.push_back(absl::StrCat(alter, " DROP CONSTRAINT ", QuoteIdent(constraint)));
          }
        }
        for (const auto& [constraint, definition] : new_checks) {
          auto found = old_checks.find(constraint);
          if (found == old_checks.end() || found->second != definition) {
            statements.push_back(
                absl::StrCat(alter, " ADD CONSTRAINT ", QuoteIdent(constraint), " ", definition));
          }
        }
        if (!statements.empty()) {
          Add(kDomain, Change(ChangeAction::kAlter, "domain", key,
                              it->second->not_null != domain->not_null || new_checks != old_checks
                                  ? ChangeSafety::kRewrite
                                  : ChangeSafety::kSafe,
                              absl::StrCat("alter domain ", key), std::move(statements)));
        }
      }
      Comment("domain", key, absl::StrCat("DOMAIN ", name),
              it == before.end() ? nullptr : &it->second->comment, domain->comment);
    }
    for (const auto& [key, domain] : before) {
      if (after.count(key) == 0) {
        Add(kDropDomain,
            Change(ChangeAction::kDrop, "domain", key, ChangeSafety::kSafe,
                   absl::StrCat("drop domain ", key),
                   {absl::StrCat("DROP DOMAIN ", QualifiedName(domain->schema, domain->name))}));
      }
    }
  }

  void DiffCompositeTypes() {
    auto before = ByKey(from_.composite_types);
    auto after = ByKey(to_.composite_types);
    auto attribute_sql = [](const CompositeAttribute& attribute) {
      std::string sql = absl::StrCat(QuoteIdent(attribute.name), " ", attribute.type);
      if (!attribute.collation.empty()) absl::StrAppend(&sql, " COLLATE ", attribute.collation);
      return sql;
    };
    for (const auto& [key, type] : after) {
      const std::string name = QualifiedName(type->schema, type->name);
      auto it = before.find(key);
      if (it == before.end()) {
        std::vector<std::string> attributes;
        for (const CompositeAttribute& a : type->attributes) attributes.push_back(attribute_sql(a));
        Add(kComposite, Change(ChangeAction::kCreate, "type", key, ChangeSafety::kSafe,
                               absl::StrCat("create type ", key),
                               {absl::StrCat("CREATE TYPE ", name, " AS (",
                                             absl::StrJoin(attributes, ", "), ")")}));
      } else if (it->second->attributes != type->attributes) {
        std::map<std::string, const CompositeAttribute*> old_attributes;
        for (const auto& a : it->second->attributes) old_attributes[a.name] = &a;
        std::map<std::string, const CompositeAttribute*> new_attributes;
        for (const auto& a : type->attributes) new_attributes[a.name] = &a;
        std::vector<std::string> statements;
        ChangeSafety safety = ChangeSafety::kSafe;
        const std::string alter = absl::StrCat("ALTER TYPE ", name);
        for (const auto& [attribute, old] : old_attributes) {
          if (new_attributes.count(attribute) == 0) {
            statements.push_back(absl::StrCat(alter, " DROP ATTRIBUTE ", QuoteIdent(attribute)));
            safety = ChangeSafety::kDestructive;
          }
        }
        for (const CompositeAttribute& attribute : type->attributes) {
          auto found = old_attributes.find(attribute.name);
          if (found == old_attributes.end()) {
            statements.push_back(absl::StrCat(alter, " ADD ATTRIBUTE ", attribute_sql(attribute)));
          } else if (!(*found->second == attribute)) {
            statements.push_back(absl::StrCat(
                alter, " ALTER ATTRIBUTE ", QuoteIdent(attribute.name), " TYPE ", attribute.type,
                attribute.collation.empty() ? "" : " COLLATE ", attribute.collation));
            safety = Worst(safety, ChangeSafety::kRewrite);
          }
        }
        bool only_added = true;
        for (const CompositeAttribute& attribute : it->second->attributes) {
          auto found = new_attributes.find(attribute.name);
          if (found == new_attributes.end() || !(*found->second == attribute)) only_added = false;
        }
        std::vector<std::string> converted = ColumnsOfType(name);
        if (!only_added && !converted.empty()) {
          // PostgreSQL refuses to drop or alter an attribute of a type that a
          // column stores: re-create the type and convert those columns.
          Add(kComposite, CompositeChange(*it->second, *type, attribute_sql, safety));
        } else if (!statements.empty()) {
          Add(kComposite, Change(ChangeAction::kAlter, "type", key, safety,
                                 absl::StrCat("alter type ", key), std::move(statements)));
        }
      }
      Comment("type", key, absl::StrCat("TYPE ", name),
              it == before.end() ? nullptr : &it->second->comment, type->comment);
    }
    for (const auto& [key, type] : before) {
      if (after.count(key) == 0) {
        Add(kDropComposite,
            Change(ChangeAction::kDrop, "type", key, ChangeSafety::kSafe,
                   absl::StrCat("drop type ", key),
                   {absl::StrCat("DROP TYPE ", QualifiedName(type->schema, type->name))}));
      }
    }
  }

  // "table\tcolumn" (quoted) of the columns of type `type_name` that exist
  // while the types change: those of `from` that `to` keeps.
  std::vector<std::string> ColumnsOfType(const std::string& type_name) const {
    std::vector<std::string> columns;
    for (const Table& table : from_.tables) {
      auto kept = to_tables_.find(table.Key());
      if (kept == to_tables_.end()) continue;
      for (const Column& column : table.columns) {
        if (column.type != type_name || !HasColumn(*kept->second, column.name)) continue;
        columns.push_back(
            absl::StrCat(QualifiedName(table.schema, table.name), "\t", QuoteIdent(column.name)));
      }
    }
    return columns;
  }

  // A composite type re-created: the old one renamed, the new one created,
  // each column of it converted attribute by attribute (a dropped attribute
  // is lost, an added one NULL), the old one dropped.
  template <typename AttributeSql>
  SchemaChange CompositeChange(const CompositeType& before, const CompositeType& after,
                               const AttributeSql& attribute_sql, ChangeSafety safety) {
    const std::string name = QualifiedName(after.schema, after.name);
    const std::string old_name = absl::StrCat(after.name, "__schemad_old");
    std::vector<std::string> attributes;
    for (const CompositeAttribute& a : after.attributes) attributes.push_back(attribute_sql(a));
    std::vector<std::string> statements = {
        absl::StrCat("ALTER TYPE ", name, " RENAME TO ", QuoteIdent(old_name)),
        absl::StrCat("CREATE TYPE ", name, " AS (", absl::StrJoin(attributes, ", "), ")")};
    for (const std::string& column : ColumnsOfType(name)) {
      const std::vector<std::string> parts = absl::StrSplit(column, '\t');
      std::vector<std::string> fields;
      for (const CompositeAttribute& a : after.attributes) {
        bool existed = false;
        for (const CompositeAttribute& b : before.attributes) existed = existed || b.name == a.name;
        fields.push_back(existed
                             ? absl::StrCat("(", parts[1], ").", QuoteIdent(a.name), "::", a.type)
                             : absl::StrCat("NULL::", a.type));
      }
      statements.push_back(absl::StrCat("ALTER TABLE ", parts[0], " ALTER COLUMN ", parts[1],
                                        " TYPE ", name, " USING CASE WHEN ", parts[1],
                                        " IS NULL THEN NULL ELSE ROW(", absl::StrJoin(fields, ", "),
                                        ")::", name, " END"));
    }
    statements.push_back(absl::StrCat("DROP TYPE ", QualifiedName(after.schema, old_name)));
    return Change(ChangeAction::kAlter, "type", after.Key(), Worst(safety, ChangeSafety::kRewrite),
                  absl::StrCat("re-create type ", after.Key(),
                               " (attributes dropped or changed; its columns are converted)"),
                  std::move(statements));
  }

  static std::string SequenceOptions(const Sequence& sequence) {
    return absl::StrCat(" AS ", sequence.data_type, " INCREMENT BY ", sequence.increment,
                        " MINVALUE ", sequence.min_value, " MAXVALUE ", sequence.max_value,
                        " START WITH ", sequence.start, " CACHE ", sequence.cache,
                        sequence.cycle ? " CYCLE" : " NO CYCLE");
  }

  std::string OwnedBySql(const Sequence& sequence) const {
    if (sequence.owned_by_table.empty()) return "NONE";
    return absl::StrCat(TableName(sequence.owned_by_table), ".",
                        QuoteIdent(sequence.owned_by_column));
  }

  void DiffSequences() {
    auto before = ByKey(from_.sequences);
    auto after = ByKey(to_.sequences);
    for (const auto& [key, sequence] : after) {
      const std::string name = QualifiedName(sequence->schema, sequence->name);
      auto it = before.find(key);
      const bool owner_changed = it == before.end()
                                     ? !sequence->owned_by_table.empty()
                                     : it->second->owned_by_table != sequence->owned_by_table ||
                                           it->second->owned_by_column != sequence->owned_by_column;
      if (it == before.end()) {
        Add(kSequence,
            Change(ChangeAction::kCreate, "sequence", key, ChangeSafety::kSafe,
                   absl::StrCat("create sequence ", key),
                   {absl::StrCat("CREATE SEQUENCE ", name, SequenceOptions(*sequence))}));
      } else if (SequenceOptions(*it->second) != SequenceOptions(*sequence)) {
        Add(kSequence, Change(ChangeAction::kAlter, "sequence", key, ChangeSafety::kSafe,
                              absl::StrCat("alter sequence ", key),
                              {absl::StrCat("ALTER SEQUENCE ", name, SequenceOptions(*sequence))}));
      }
      if (owner_changed) {
        Add(kSequenceOwner,
            Change(it == before.end() ? ChangeAction::kCreate : ChangeAction::kAlter,
                   "sequence owner", key, ChangeSafety::kSafe,
                   absl::StrCat("sequence ", key, " owned by ", OwnedBySql(*sequence)),
                   {absl::StrCat("ALTER SEQUENCE ", name, " OWNED BY ", OwnedBySql(*sequence))}));
      }
      Comment("sequence", key, absl::StrCat("SEQUENCE ", name),
              it == before.end() ? nullptr : &it->second->comment, sequence->comment);
    }
    for (const auto& [key, sequence] : before) {
      if (after.count(key) != 0) continue;
      // A sequence owned by a dropped table or column goes with it.
      const bool goes_with_owner =
          !sequence->owned_by_table.empty() &&
          (to_tables_.count(sequence->owned_by_table) == 0 ||
           !HasColumn(*to_tables_.at(sequence->owned_by_table), sequence->owned_by_column));
      Add(kDropSequence, Change(ChangeAction::kDrop, "sequence", key, ChangeSafety::kDestructive,
                                absl::StrCat("drop sequence ", key, " (its current value is lost)"),
                                {absl::StrCat("DROP SEQUENCE ", goes_with_owner ? "IF EXISTS " : "",
                                              QualifiedName(sequence->schema, sequence->name))}));
    }
  }

  static bool HasColumn(const Table& table, const std::string& column) {
    return std::any_of(table.columns.begin(), table.columns.end(),
                       [&](const Column& c) { return c.name == column; });
  }

  static bool IsSqlLanguage(const Function& function) {
    return absl::StrContains(function.definition, " LANGUAGE sql\n");
  }

  void DiffFunctions() {
    auto before = ByKey(from_.functions);
    auto after = ByKey(to_.functions);
    auto signature = [](const Function& function) {
      return absl::StrCat(function.procedure ? "PROCEDURE " : "FUNCTION ",
                          QualifiedName(function.schema, function.name), "(",
                          function.identity_arguments, ")");
    };
    for (const auto& [key, function] : after) {
      auto it = before.find(key);
      const Phase phase = IsSqlLanguage(*function) ? kSqlFunction : kFunction;
      const std::string create = WithoutFinalSemicolon(function->definition);
      if (it == before.end()) {
        Add(phase, Change(ChangeAction::kCreate, "function", key, ChangeSafety::kSafe,
                          absl::StrCat("create ", signature(*function)), {create}));
      } else if (it->second->definition != function->definition) {
        std::vector<std::string> statements;
        // CREATE OR REPLACE cannot change a function into a procedure.
        if (it->second->procedure != function->procedure) {
          statements.push_back(absl::StrCat("DROP ", signature(*it->second)));
        }
        statements.push_back(create);
        Add(phase, Change(ChangeAction::kAlter, "function", key, ChangeSafety::kSafe,
                          absl::StrCat("replace ", signature(*function)), std::move(statements)));
      }
      Comment("function", key, signature(*function),
              it == before.end() ? nullptr : &it->second->comment, function->comment);
    }
    for (const auto& [key, function] : before) {
      if (after.count(key) == 0) {
        Add(kDropFunction, Change(ChangeAction::kDrop, "function", key, ChangeSafety::kSafe,
                                  absl::StrCat("drop ", signature(*function)),
                                  {absl::StrCat("DROP ", signature(*function))}));
      }
    }
  }

  std::string CreateTableSql(const Table& table) const {
    const std::string name = QualifiedName(table.schema, table.name);
    if (!table.partition_of.empty()) {
      return absl::StrCat("CREATE ", table.unlogged ? "UNLOGGED " : "", "TABLE ", name,
                          " PARTITION OF ", TableName(table.partition_of), " ",
                          table.partition_bound);
    }
    std::vector<std::string> columns;
    for (const Column& column : table.columns) columns.push_back(ColumnSql(column));
    std::string sql =
        absl::StrCat("CREATE ", table.unlogged ? "UNLOGGED " : "", "TABLE ", name, " (",
                     columns.empty() ? "" : "\n    ", absl::StrJoin(columns, ",\n    "),
                     columns.empty() ? "" : "\n", ")");
    if (!table.partition_key.empty()) absl::StrAppend(&sql, " PARTITION BY ", table.partition_key);
    return sql;
  }

  void DiffTables() {
    std::vector<std::pair<std::string, std::string>> dropped_tables;  // key, column signature
    for (const auto& [key, table] : from_tables_) {
      if (to_tables_.count(key) != 0) continue;
      Add(table->partition_of.empty() ? kDropTable : kDropPartition,
          Change(ChangeAction::kDrop, "table", key, ChangeSafety::kDestructive,
                 absl::StrCat("drop table ", key, " (its rows are lost)"),
                 {absl::StrCat("DROP TABLE ", QualifiedName(table->schema, table->name))}));
    }
    for (const auto& [key, table] : to_tables_) {
      const std::string name = QualifiedName(table->schema, table->name);
      auto it = from_tables_.find(key);
      if (it == from_tables_.end()) {
        SchemaChange create = Change(ChangeAction::kCreate, "table", key, ChangeSafety::kSafe,
                                     absl::StrCat("create table ", key), {CreateTableSql(*table)});
        create.hint = RenameHint(*table);
        Add(table->partition_of.empty() ? kTable : kPartition, std::move(create));
        for (const Column& column : table->columns) {
          Comment("column", absl::StrCat(key, ".", column.name),
                  absl::StrCat("COLUMN ", name, ".", QuoteIdent(column.name)), nullptr,
                  column.comment);
        }
      } else {
        DiffTable(*it->second, *table);
      }
      Comment("table", key, absl::StrCat("TABLE ", name),
              it == from_tables_.end() ? nullptr : &it->second->comment, table->comment);
    }
  }

  // A table created while one of the same columns (names and types) is
  // dropped: perhaps a rename.
  std::string RenameHint(const Table& created) const {
    for (const auto& [key, table] : from_tables_) {
      if (to_tables_.count(key) != 0 || table->columns.size() != created.columns.size()) continue;
      bool same = true;
      for (size_t i = 0; i < table->columns.size() && same; ++i) {
        same = table->columns[i].name == created.columns[i].name &&
               table->columns[i].type == created.columns[i].type;
      }
      if (same) {
        return absl::StrCat("table ", key, " is dropped and ", created.Key(),
                            " created with the same columns: if it is a rename, write ALTER ",
                            "TABLE ", QualifiedName(table->schema, table->name), " RENAME TO ",
                            QuoteIdent(created.name), " instead (and keep the rows)");
      }
    }
    return "";
  }

  void DiffTable(const Table& before, const Table& after) {
    const std::string key = after.Key();
    const std::string name = QualifiedName(after.schema, after.name);
    if (before.partition_key != after.partition_key) {
      Add(kDropTable,
          Change(ChangeAction::kDrop, "table", key, ChangeSafety::kDestructive,
                 absl::StrCat("re-create table ", key, " (partition key ",
                              before.partition_key.empty() ? "none" : before.partition_key, " -> ",
                              after.partition_key.empty() ? "none" : after.partition_key,
                              "): its rows are lost"),
                 {absl::StrCat("DROP TABLE ", name)}));
      Add(kTable, Change(ChangeAction::kCreate, "table", key, ChangeSafety::kSafe,
                         absl::StrCat("create table ", key), {CreateTableSql(after)}));
      recreated_tables_.insert(key);
      reshaped_tables_.insert(key);
      return;
    }
    if (before.unlogged != after.unlogged) {
      Add(kColumn,
          Change(ChangeAction::kAlter, "table", key, ChangeSafety::kRewrite,
                 absl::StrCat("make table ", key, after.unlogged ? " unlogged" : " logged"),
                 {absl::StrCat("ALTER TABLE ", name,
                               after.unlogged ? " SET UNLOGGED" : " SET LOGGED")}));
    }
    if (before.partition_of != after.partition_of ||
        before.partition_bound != after.partition_bound) {
      std::vector<std::string> statements;
      if (!before.partition_of.empty()) {
        statements.push_back(absl::StrCat("ALTER TABLE ", TableName(before.partition_of),
                                          " DETACH PARTITION ", name));
      }
      if (!after.partition_of.empty()) {
        statements.push_back(absl::StrCat("ALTER TABLE ", TableName(after.partition_of),
                                          " ATTACH PARTITION ", name, " ", after.partition_bound));
      }
      Add(kPartition, Change(ChangeAction::kAlter, "table", key, ChangeSafety::kRewrite,
                             absl::StrCat("re-attach partition ", key), std::move(statements)));
    }
    std::map<std::string, const Column*> old_columns;
    for (const Column& column : before.columns) old_columns[column.name] = &column;
    std::map<std::string, const Column*> new_columns;
    for (const Column& column : after.columns) new_columns[column.name] = &column;
    for (const Column& column : before.columns) {
      if (new_columns.count(column.name) != 0) continue;
      SchemaChange drop =
          Change(ChangeAction::kDrop, "column", absl::StrCat(key, ".", column.name),
                 ChangeSafety::kDestructive,
                 absl::StrCat("drop column ", key, ".", column.name, " (its values are lost)"),
                 {absl::StrCat("ALTER TABLE ", name, " DROP COLUMN ", QuoteIdent(column.name))});
      for (const Column& added : after.columns) {
        if (old_columns.count(added.name) == 0 && added.type == column.type) {
          drop.hint = absl::StrCat("column ", column.name, " is dropped and ", added.name,
                                   " added with the same type: if it is a rename, write ALTER ",
                                   "TABLE ", name, " RENAME COLUMN ", QuoteIdent(column.name),
                                   " TO ", QuoteIdent(added.name), " instead");
          break;
        }
      }
      Add(kDropColumn, std::move(drop));
      reshaped_tables_.insert(key);
    }
    for (const Column& column : after.columns) {
      const std::string column_key = absl::StrCat(key, ".", column.name);
      const std::string target = absl::StrCat("COLUMN ", name, ".", QuoteIdent(column.name));
      auto it = old_columns.find(column.name);
      if (it == old_columns.end()) {
        const bool rewrites = !column.generated_expr.empty() || column.identity != '\0';
        Add(kColumn,
            Change(ChangeAction::kCreate, "column", column_key,
                   rewrites ? ChangeSafety::kRewrite : ChangeSafety::kSafe,
                   absl::StrCat("add column ", column_key, " ", column.type,
                                column.not_null && column.default_expr.empty() &&
                                        column.identity == '\0' && column.generated_expr.empty()
                                    ? " (NOT NULL without a default: fails on a table with rows)"
                                    : ""),
                   {absl::StrCat("ALTER TABLE ", name, " ADD COLUMN ", ColumnSql(column))}));
        Comment("column", column_key, target, nullptr, column.comment);
        continue;
      }
      if (DiffColumn(name, column_key, *it->second, column)) reshaped_tables_.insert(key);
      Comment("column", column_key, target, &it->second->comment, column.comment);
    }
  }

  // Returns whether the column is re-created or changes type.
  bool DiffColumn(const std::string& table_name, const std::string& key, const Column& before,
                  const Column& after) {
    const std::string alter =
        absl::StrCat("ALTER TABLE ", table_name, " ALTER COLUMN ", QuoteIdent(after.name));
    if (before.generated_expr != after.generated_expr && !after.generated_expr.empty()) {
      // PostgreSQL 15 cannot change or add a generation expression in place.
      Add(kColumn,
          Change(ChangeAction::kAlter, "column", key, ChangeSafety::kDestructive,
                 absl::StrCat("re-create generated column ", key),
                 {absl::StrCat("ALTER TABLE ", table_name, " DROP COLUMN ", QuoteIdent(after.name)),
                  absl::StrCat("ALTER TABLE ", table_name, " ADD COLUMN ", ColumnSql(after))}));
      return true;
    }
    std::vector<std::string> statements;
    std::vector<std::string> what;
    ChangeSafety safety = ChangeSafety::kSafe;
    if (!before.generated_expr.empty() && after.generated_expr.empty()) {
      statements.push_back(absl::StrCat(alter, " DROP EXPRESSION"));
      what.push_back("no longer generated");
    }
    if (before.identity != '\0' && after.identity == '\0') {
      // With the drops: the identity's sequence goes with it, and a sequence
      // created before the columns change may take its name (identity ->
      // serial gives the same "<table>_<column>_seq").
      Add(kDropColumn, Change(ChangeAction::kAlter, "column", key, ChangeSafety::kSafe,
                              absl::StrCat("drop identity of column ", key),
                              {absl::StrCat(alter, " DROP IDENTITY")}));
    }
    const bool type_changed = before.type != after.type || before.collation != after.collation;
    const bool default_changed = before.default_expr != after.default_expr;
    if ((type_changed || default_changed) && !before.default_expr.empty()) {
      statements.push_back(absl::StrCat(alter, " DROP DEFAULT"));
    }
    if (type_changed) {
      std::string statement = absl::StrCat(alter, " TYPE ", after.type);
      if (!after.collation.empty()) absl::StrAppend(&statement, " COLLATE ", after.collation);
      if (before.type != after.type) {
        absl::StrAppend(&statement, " USING ", QuoteIdent(after.name), "::", after.type);
      }
      statements.push_back(std::move(statement));
      what.push_back(absl::StrCat("type ", before.type, " -> ", after.type));
      safety = Worst(safety, before.type != after.type ? TypeChangeSafety(before.type, after.type)
                                                       : ChangeSafety::kRewrite);
    }
    if ((type_changed || default_changed) && !after.default_expr.empty()) {
      statements.push_back(absl::StrCat(alter, " SET DEFAULT ", after.default_expr));
    }
    if (default_changed) {
      what.push_back(
          absl::StrCat("default ", before.default_expr.empty() ? "none" : before.default_expr,
                       " -> ", after.default_expr.empty() ? "none" : after.default_expr));
    }
    if (before.not_null != after.not_null) {
      statements.push_back(absl::StrCat(alter, after.not_null ? " SET" : " DROP", " NOT NULL"));
      what.push_back(after.not_null ? "NOT NULL" : "nullable");
      // SET NOT NULL scans the table under an exclusive lock.
      if (after.not_null) safety = Worst(safety, ChangeSafety::kRewrite);
    }
    if (after.identity != '\0' && before.identity != after.identity) {
      const char* generated = after.identity == 'a' ? "ALWAYS" : "BY DEFAULT";
      statements.push_back(before.identity == '\0'
                               ? absl::StrCat(alter, " ADD GENERATED ", generated, " AS IDENTITY")
                               : absl::StrCat(alter, " SET GENERATED ", generated));
      what.push_back(absl::StrCat("identity ", generated));
    }
    if (!statements.empty()) {
      Add(kColumn, Change(ChangeAction::kAlter, "column", key, safety,
                          absl::StrCat("alter column ", key, ": ", absl::StrJoin(what, ", ")),
                          std::move(statements)));
    }
    return type_changed;
  }

  // The tables whose primary key or unique constraints are re-created or
  // dropped: a foreign key referencing them must be dropped first and added
  // again after.
  std::set<std::string> TablesLosingKeys(const std::map<std::string, const Constraint*>& before,
                                         const std::map<std::string, const Constraint*>& after) {
    std::set<std::string> tables;
    for (const auto& [key, constraint] : before) {
      if (constraint->kind != 'p' && constraint->kind != 'u') continue;
      auto it = after.find(key);
      if (it == after.end() || it->second->definition != constraint->definition) {
        tables.insert(QualifiedName(constraint->schema, constraint->table));
      }
    }
    return tables;
  }

  static bool References(const Constraint& foreign_key, const std::set<std::string>& tables) {
    for (const std::string& table : tables) {
      if (absl::StrContains(foreign_key.definition, absl::StrCat("REFERENCES ", table, "("))) {
        return true;
      }
    }
    return false;
  }

  void DiffConstraints() {
    auto before = ByKey(from_.constraints);
    auto after = ByKey(to_.constraints);
    const std::set<std::string> losing_keys = TablesLosingKeys(before, after);
    for (const auto& [key, constraint] : before) {
      auto it = after.find(key);
      const bool refresh_fk =
          constraint->kind == 'f' && it != after.end() && References(*constraint, losing_keys);
      if (it != after.end() && it->second->definition == constraint->definition && !refresh_fk) {
        continue;
      }
      if (TableDropped(constraint->schema, constraint->table) ||
          recreated_tables_.count(absl::StrCat(constraint->schema, ".", constraint->table))) {
        // Goes with its table, except a foreign key to another table that
        // loses its keys (a dropped table among them): that table's drop
        // would fail while the key still references it.
        std::set<std::string> others = losing_keys;
        others.erase(QualifiedName(constraint->schema, constraint->table));
        if (constraint->kind != 'f' || !References(*constraint, others)) continue;
      }
      Add(constraint->kind == 'f' ? kDropForeignKey : kDropConstraint,
          Change(ChangeAction::kDrop, "constraint", key, ChangeSafety::kSafe,
                 absl::StrCat(it == after.end() ? "drop" : "re-create (drop)", " constraint ", key),
                 {absl::StrCat("ALTER TABLE ", QualifiedName(constraint->schema, constraint->table),
                               " DROP CONSTRAINT ", QuoteIdent(constraint->name))}));
    }
    for (const auto& [key, constraint] : after) {
      const std::string table = QualifiedName(constraint->schema, constraint->table);
      auto it = before.find(key);
      const bool refresh_fk =
          constraint->kind == 'f' && it != before.end() && References(*constraint, losing_keys);
      const bool created =
          it == before.end() || it->second->definition != constraint->definition || refresh_fk ||
          recreated_tables_.count(absl::StrCat(constraint->schema, ".", constraint->table));
      if (created) {
        const bool existing_table =
            TableExistsBefore(constraint->schema, constraint->table) &&
            !recreated_tables_.count(absl::StrCat(constraint->schema, ".", constraint->table));
        const bool not_valid = absl::EndsWith(constraint->definition, "NOT VALID");
        Add(constraint->kind == 'f' ? kForeignKey : kConstraint,
            Change(it == before.end() ? ChangeAction::kCreate : ChangeAction::kAlter, "constraint",
                   key, existing_table && !not_valid ? ChangeSafety::kRewrite : ChangeSafety::kSafe,
                   absl::StrCat(it == before.end() ? "add" : "re-create", " constraint ", key, " ",
                                constraint->definition),
                   {absl::StrCat("ALTER TABLE ", table, " ADD CONSTRAINT ",
                                 QuoteIdent(constraint->name), " ", constraint->definition)}));
      }
      Comment("constraint", key,
              absl::StrCat("CONSTRAINT ", QuoteIdent(constraint->name), " ON ", table),
              it == before.end() || created ? nullptr : &it->second->comment, constraint->comment);
    }
  }

  // pg_get_indexdef of a partitioned table's index says ON ONLY (pg_dump
  // attaches each partition's index afterwards); created without ONLY,
  // PostgreSQL creates and attaches the partitions' indexes itself.
  static std::string CreateIndexSql(const Index& index) {
    return absl::StrReplaceAll(index.definition, {{" ON ONLY ", " ON "}});
  }

  void DiffIndexes() {
    auto before = ByKey(from_.indexes);
    auto after = ByKey(to_.indexes);
    for (const auto& [key, index] : before) {
      auto it = after.find(key);
      if (it != after.end() && it->second->definition == index->definition) continue;
      if (TableDropped(index->schema, index->table) ||
          recreated_tables_.count(absl::StrCat(index->schema, ".", index->table))) {
        continue;
      }
      Add(kDropIndex,
          Change(ChangeAction::kDrop, "index", key, ChangeSafety::kSafe,
                 absl::StrCat(it == after.end() ? "drop" : "re-create (drop)", " index ", key),
                 {absl::StrCat("DROP INDEX ", QualifiedName(index->schema, index->name))}));
    }
    for (const auto& [key, index] : after) {
      auto it = before.find(key);
      const bool recreated_table =
          recreated_tables_.count(absl::StrCat(index->schema, ".", index->table)) > 0;
      const bool created =
          it == before.end() || it->second->definition != index->definition || recreated_table;
      if (created) {
        const bool existing_table =
            TableExistsBefore(index->schema, index->table) && !recreated_table;
        Add(kIndex,
            Change(it == before.end() ? ChangeAction::kCreate : ChangeAction::kAlter, "index", key,
                   existing_table ? ChangeSafety::kRewrite : ChangeSafety::kSafe,
                   absl::StrCat(it == before.end() ? "create" : "re-create", " index ", key,
                                existing_table ? " (blocks writes to the table while it builds; "
                                                 "CREATE INDEX CONCURRENTLY in a revision of its "
                                                 "own, `-- transactional: false`, does not)"
                                               : ""),
                   {CreateIndexSql(*index)}));
      }
      Comment("index", key, absl::StrCat("INDEX ", QualifiedName(index->schema, index->name)),
              created ? nullptr : &it->second->comment, index->comment);
    }
  }

  // Views in an order where each comes after the views it reads (among
  // `keys`); a cycle (impossible in PostgreSQL) falls back to key order.
  static std::vector<const View*> DependencyOrder(const std::map<std::string, const View*>& views,
                                                  const std::set<std::string>& keys) {
    std::vector<const View*> ordered;
    std::set<std::string> placed;
    std::function<void(const std::string&, int)> place = [&](const std::string& key, int depth) {
      if (placed.count(key) || !keys.count(key) || depth > static_cast<int>(keys.size())) return;
      const View* view = views.at(key);
      for (const std::string& dependency : view->depends_on) place(dependency, depth + 1);
      if (placed.insert(key).second) ordered.push_back(view);
    };
    for (const std::string& key : keys) place(key, 0);
    return ordered;
  }

  void DiffViews() {
    auto before = ByKey(from_.views);
    auto after = ByKey(to_.views);
    // Changed views, and (transitively) the views reading them, are re-created.
    std::set<std::string> recreate;
    for (const auto& [key, view] : after) {
      auto it = before.find(key);
      if (it != before.end() && (it->second->definition != view->definition ||
                                 it->second->materialized != view->materialized)) {
        recreate.insert(key);
      }
    }
    // A view also blocks changing the type of, or dropping, a column it
    // reads: it is re-created around such a change of its table.
    for (bool grew = true; grew;) {
      grew = false;
      for (const auto& [key, view] : before) {
        if (recreate.count(key) || !after.count(key)) continue;
        for (const std::string& dependency : view->depends_on) {
          const bool gone = !after.count(dependency) && !to_tables_.count(dependency);
          if (recreate.count(dependency) || gone || reshaped_tables_.count(dependency)) {
            recreate.insert(key);
            grew = true;
            break;
          }
        }
      }
    }
    std::set<std::string> drops;
    for (const auto& [key, view] : before) {
      if (!after.count(key) || recreate.count(key)) drops.insert(key);
    }
    std::vector<const View*> drop_order = DependencyOrder(before, drops);
    std::reverse(drop_order.begin(), drop_order.end());
    for (const View* view : drop_order) {
      const std::string key = view->Key();
      Add(kDropView,
          Change(ChangeAction::kDrop, view->materialized ? "materialized view" : "view", key,
                 ChangeSafety::kSafe,
                 absl::StrCat(after.count(key) ? "re-create (drop) " : "drop ",
                              view->materialized ? "materialized view " : "view ", key),
                 {absl::StrCat("DROP ", view->materialized ? "MATERIALIZED VIEW " : "VIEW ",
                               QualifiedName(view->schema, view->name))}));
    }
    std::set<std::string> creates;
    for (const auto& [key, view] : after) {
      if (!before.count(key) || recreate.count(key)) creates.insert(key);
    }
    for (const View* view : DependencyOrder(after, creates)) {
      const std::string key = view->Key();
      Add(kView,
          Change(before.count(key) ? ChangeAction::kAlter : ChangeAction::kCreate,
                 view->materialized ? "materialized view" : "view", key,
                 view->materialized ? ChangeSafety::kRewrite : ChangeSafety::kSafe,
                 absl::StrCat(before.count(key) ? "re-create " : "create ",
                              view->materialized ? "materialized view " : "view ", key),
                 {absl::StrCat("CREATE ", view->materialized ? "MATERIALIZED VIEW " : "VIEW ",
                               QualifiedName(view->schema, view->name), " AS\n",
                               WithoutFinalSemicolon(view->definition))}));
    }
    for (const auto& [key, view] : after) {
      auto it = before.find(key);
      Comment(view->materialized ? "materialized view" : "view", key,
              absl::StrCat(view->materialized ? "MATERIALIZED VIEW " : "VIEW ",
                           QualifiedName(view->schema, view->name)),
              it == before.end() || creates.count(key) ? nullptr : &it->second->comment,
              view->comment);
    }
  }

  void DiffTriggers() {
    auto before = ByKey(from_.triggers);
    auto after = ByKey(to_.triggers);
    for (const auto& [key, trigger] : before) {
      auto it = after.find(key);
      if (it != after.end() && it->second->definition == trigger->definition) continue;
      if (TableDropped(trigger->schema, trigger->table) ||
          recreated_tables_.count(absl::StrCat(trigger->schema, ".", trigger->table))) {
        continue;
      }
      Add(kDropTrigger,
          Change(ChangeAction::kDrop, "trigger", key, ChangeSafety::kSafe,
                 absl::StrCat(it == after.end() ? "drop" : "re-create (drop)", " trigger ", key),
                 {absl::StrCat("DROP TRIGGER ", QuoteIdent(trigger->name), " ON ",
                               QualifiedName(trigger->schema, trigger->table))}));
    }
    for (const auto& [key, trigger] : after) {
      auto it = before.find(key);
      const bool created =
          it == before.end() || it->second->definition != trigger->definition ||
          recreated_tables_.count(absl::StrCat(trigger->schema, ".", trigger->table)) > 0;
      if (created) {
        Add(kTrigger,
            Change(it == before.end() ? ChangeAction::kCreate : ChangeAction::kAlter, "trigger",
                   key, ChangeSafety::kSafe,
                   absl::StrCat(it == before.end() ? "create" : "re-create", " trigger ", key),
                   {WithoutFinalSemicolon(trigger->definition)}));
      }
      Comment("trigger", key,
              absl::StrCat("TRIGGER ", QuoteIdent(trigger->name), " ON ",
                           QualifiedName(trigger->schema, trigger->table)),
              created ? nullptr : &it->second->comment, trigger->comment);
    }
  }

  const DatabaseSchema& from_;
  const DatabaseSchema& to_;
  const std::map<std::string, const Table*> from_tables_;
  const std::map<std::string, const Table*> to_tables_;
  std::set<std::string> recreated_tables_;  // keys of tables dropped and created again
  // Keys of tables with a column dropped or changing type (or re-created).
  std::set<std::string> reshaped_tables_;
  std::array<std::vector<SchemaChange>, kPhaseCount> phases_;
};

}  // namespace

std::vector<SchemaChange> DiffSchemas(const DatabaseSchema& from, const DatabaseSchema& to) {
  return Differ(from, to).Run();
}

}  // namespace schemad::schema
