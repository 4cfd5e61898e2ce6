#include "service/store/pq/pq_schema_inspector.h"

#include <exception>
#include <map>
#include <pqxx/pqxx>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace schemad::store {
namespace {

using schema::DatabaseSchema;

// Settings that make the deparsers' output independent of the session: with
// an empty search_path every name they print is schema-qualified; the others
// fix how literals (timestamps in partition bounds and defaults, intervals,
// floats) print. SET LOCAL: they end with the transaction.
constexpr absl::string_view kPinSettings =
    "SET LOCAL search_path = ''; SET LOCAL DateStyle = 'ISO, MDY'; "
    "SET LOCAL IntervalStyle = 'postgres'; SET LOCAL TimeZone = 'UTC'; "
    "SET LOCAL extra_float_digits = 1";

// A namespace `n` that is not a system one.
constexpr absl::string_view kUserNamespace =
    "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' "
    "AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

// The SQL that is true when the object `oid` of `catalog` does not belong to
// an extension.
std::string NotExtensionMember(absl::string_view catalog, absl::string_view oid) {
  return absl::StrCat(
      "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e WHERE e.classid = 'pg_catalog.", catalog,
      "'::pg_catalog.regclass AND e.objid = ", oid, " AND e.deptype = 'e')");
}

// LEFT JOIN of the comment `ds` on the object `oid` (sub-object `subid`) of `catalog`.
std::string CommentJoin(absl::string_view catalog, absl::string_view oid,
                        absl::string_view subid = "0") {
  return absl::StrCat(" LEFT JOIN pg_catalog.pg_description ds ON ds.objoid = ", oid,
                      " AND ds.classoid = 'pg_catalog.", catalog,
                      "'::pg_catalog.regclass AND ds.objsubid = ", subid, " ");
}

// The collation `oid` as it is pasted after COLLATE (pg_catalog."C"), or ""
// when it is 0 or `type_default`, the type's own.
std::string CollationText(absl::string_view oid, absl::string_view type_default) {
  return absl::StrCat("COALESCE(CASE WHEN ", oid, " <> 0 AND ", oid, " <> ", type_default,
                      " THEN (SELECT pg_catalog.quote_ident(cn.nspname) || '.' || "
                      "pg_catalog.quote_ident(co.collname) FROM pg_catalog.pg_collation co JOIN "
                      "pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = ",
                      oid, ") END, '')");
}

// A text[] of `names` as SQL.
std::string NameArray(pqxx::transaction_base& tx, const std::vector<std::string>& names) {
  std::vector<std::string> quoted;
  quoted.reserve(names.size());
  for (const std::string& name : names) quoted.push_back(tx.quote(name));
  return absl::StrCat("ARRAY[", absl::StrJoin(quoted, ", "), "]::pg_catalog.text[]");
}

std::string Text(const pqxx::field& field) {
  return field.is_null() ? std::string() : std::string(field.c_str(), field.size());
}

bool Bool(const pqxx::field& field) { return !field.is_null() && field.as<bool>(); }

long long Int(const pqxx::field& field) { return field.as<long long>(); }

char Char(const pqxx::field& field) {
  const std::string text = Text(field);
  return text.empty() ? '\0' : text[0];
}

// Whether `row`'s first two fields (schema, name) differ from `key`; updates it.
bool NextObject(const pqxx::row& row, std::pair<std::string, std::string>* key) {
  std::pair<std::string, std::string> current(Text(row[0]), Text(row[1]));
  if (current == *key) return false;
  *key = std::move(current);
  return true;
}

class Inspector {
 public:
  Inspector(pqxx::transaction_base& tx, const InspectOptions& options)
      : tx_(tx),
        excluded_(NameArray(tx, options.excluded_tables)),
        table_filter_(absl::StrCat("c.relkind IN ('r', 'p') AND ", kUserNamespace, " AND ",
                                   NotExtensionMember("pg_class", "c.oid"),
                                   " AND c.relname <> ALL (", excluded_, ")")) {}

  void Read(DatabaseSchema* out) {
    ReadSchemas(out);
    ReadExtensions(out);
    ReadEnums(out);
    ReadDomains(out);
    ReadCompositeTypes(out);
    ReadSequences(out);
    ReadTables(out);
    ReadConstraints(out);
    ReadIndexes(out);
    ReadViews(out);
    ReadFunctions(out);
    ReadTriggers(out);
  }

 private:
  void ReadSchemas(DatabaseSchema* out) {
    const pqxx::result result =
        tx_.exec(absl::StrCat("SELECT n.nspname, ds.description FROM pg_catalog.pg_namespace n",
                              CommentJoin("pg_namespace", "n.oid"), "WHERE ", kUserNamespace,
                              " AND ", NotExtensionMember("pg_namespace", "n.oid")));
    for (const pqxx::row& row : result) {
      schema::Namespace ns;
      ns.name = Text(row[0]);
      ns.comment = Text(row[1]);
      out->schemas.push_back(std::move(ns));
    }
  }

  void ReadExtensions(DatabaseSchema* out) {
    const pqxx::result result = tx_.exec(absl::StrCat(
        "SELECT x.extname, n.nspname, x.extversion, ds.description FROM pg_catalog.pg_extension x "
        "JOIN pg_catalog.pg_namespace n ON n.oid = x.extnamespace",
        CommentJoin("pg_extension", "x.oid")));
    for (const pqxx::row& row : result) {
      schema::Extension extension;
      extension.name = Text(row[0]);
      extension.schema = Text(row[1]);
      extension.version = Text(row[2]);
      extension.comment = Text(row[3]);
      out->extensions.push_back(std::move(extension));
    }
  }

  void ReadEnums(DatabaseSchema* out) {
    const pqxx::result result = tx_.exec(absl::StrCat(
        "SELECT n.nspname, t.typname, ds.description, l.enumlabel FROM pg_catalog.pg_type t "
        "JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace "
        "LEFT JOIN pg_catalog.pg_enum l ON l.enumtypid = t.oid",
        CommentJoin("pg_type", "t.oid"), "WHERE t.typtype = 'e' AND ", kUserNamespace, " AND ",
        NotExtensionMember("pg_type", "t.oid"), " ORDER BY n.nspname, t.typname, l.enumsortorder"));
    std::pair<std::string, std::string> key;
    for (const pqxx::row& row : result) {
      if (NextObject(row, &key)) {
        schema::EnumType type;
        type.schema = key.first;
        type.name = key.second;
        type.comment = Text(row[2]);
        out->enums.push_back(std::move(type));
      }
      if (!row[3].is_null()) out->enums.back().labels.push_back(Text(row[3]));
    }
  }

  void ReadDomains(DatabaseSchema* out) {
    const pqxx::result result = tx_.exec(absl::StrCat(
        "SELECT n.nspname, t.typname, pg_catalog.format_type(t.typbasetype, t.typtypmod), "
        "pg_catalog.pg_get_expr(t.typdefaultbin, 0), t.typnotnull, ",
        CollationText("t.typcollation", "b.typcollation"),
        ", ds.description, k.conname, pg_catalog.pg_get_constraintdef(k.oid) "
        "FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace "
        "JOIN pg_catalog.pg_type b ON b.oid = t.typbasetype "
        "LEFT JOIN pg_catalog.pg_constraint k ON k.contypid = t.oid AND k.contype = 'c'",
        CommentJoin("pg_type", "t.oid"), "WHERE t.typtype = 'd' AND ", kUserNamespace, " AND ",
        NotExtensionMember("pg_type", "t.oid"), " ORDER BY n.nspname, t.typname, k.conname"));
    std::pair<std::string, std::string> key;
    for (const pqxx::row& row : result) {
      if (NextObject(row, &key)) {
        schema::DomainType domain;
        domain.schema = key.first;
        domain.name = key.second;
        domain.base_type = Text(row[2]);
        domain.default_expr = Text(row[3]);
        domain.not_null = Bool(row[4]);
        domain.collation = Text(row[5]);
        domain.comment = Text(row[6]);
        out->domains.push_back(std::move(domain));
      }
      if (!row[7].is_null()) {
        out->domains.back().constraints.push_back({Text(row[7]), Text(row[8])});
      }
    }
  }

  void ReadCompositeTypes(DatabaseSchema* out) {
    const pqxx::result result = tx_.exec(absl::StrCat(
        "SELECT n.nspname, t.typname, ds.description, a.attname, "
        "pg_catalog.format_type(a.atttypid, a.atttypmod), ",
        CollationText("a.attcollation", "at.typcollation"),
        " FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace "
        "JOIN pg_catalog.pg_class c ON c.oid = t.typrelid AND c.relkind = 'c' "
        "LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT "
        "a.attisdropped LEFT JOIN pg_catalog.pg_type at ON at.oid = a.atttypid",
        CommentJoin("pg_type", "t.oid"), "WHERE t.typtype = 'c' AND ", kUserNamespace, " AND ",
        NotExtensionMember("pg_type", "t.oid"), " ORDER BY n.nspname, t.typname, a.attnum"));
    std::pair<std::string, std::string> key;
    for (const pqxx::row& row : result) {
      if (NextObject(row, &key)) {
        schema::CompositeType type;
        type.schema = key.first;
        type.name = key.second;
        type.comment = Text(row[2]);
        out->composite_types.push_back(std::move(type));
      }
      if (!row[3].is_null()) {
        out->composite_types.back().attributes.push_back(
            {Text(row[3]), Text(row[4]), Text(row[5])});
      }
    }
  }

  void ReadSequences(DatabaseSchema* out) {
    const pqxx::result result = tx_.exec(absl::StrCat(
        "SELECT n.nspname, c.relname, pg_catalog.format_type(s.seqtypid, NULL), s.seqstart, "
        "s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle, own.table_key, "
        "own.attname, ds.description FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid "
        "LEFT JOIN LATERAL (SELECT tn.nspname || '.' || t.relname AS table_key, t.relname, "
        "a.attname FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class t ON t.oid = d.refobjid "
        "JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace "
        "JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid "
        "WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid AND "
        "d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype = 'a' "
        "LIMIT 1) own ON true",
        CommentJoin("pg_class", "c.oid"), "WHERE c.relkind = 'S' AND ", kUserNamespace, " AND ",
        NotExtensionMember("pg_class", "c.oid"),
        // An identity column's sequence belongs to the column.
        " AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend i WHERE i.classid = "
        "'pg_catalog.pg_class'::pg_catalog.regclass AND i.objid = c.oid AND i.deptype = 'i') "
        "AND (own.relname IS NULL OR own.relname <> ALL (",
        excluded_, "))"));
    for (const pqxx::row& row : result) {
      schema::Sequence sequence;
      sequence.schema = Text(row[0]);
      sequence.name = Text(row[1]);
      sequence.data_type = Text(row[2]);
      sequence.start = Int(row[3]);
      sequence.increment = Int(row[4]);
      sequence.min_value = Int(row[5]);
      sequence.max_value = Int(row[6]);
      sequence.cache = Int(row[7]);
      sequence.cycle = Bool(row[8]);
      sequence.owned_by_table = Text(row[9]);
      sequence.owned_by_column = Text(row[10]);
      sequence.comment = Text(row[11]);
      out->sequences.push_back(std::move(sequence));
    }
  }

  void ReadTables(DatabaseSchema* out) {
    const pqxx::result tables = tx_.exec(absl::StrCat(
        "SELECT n.nspname, c.relname, c.relpersistence = 'u', pg_catalog.pg_get_partkeydef(c.oid), "
        "pn.nspname || '.' || p.relname, CASE WHEN c.relispartition THEN "
        "pg_catalog.pg_get_expr(c.relpartbound, c.oid) END, ds.description "
        "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_catalog.pg_inherits i ON c.relispartition AND i.inhrelid = c.oid "
        "LEFT JOIN pg_catalog.pg_class p ON p.oid = i.inhparent "
        "LEFT JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace",
        CommentJoin("pg_class", "c.oid"), "WHERE ", table_filter_));
    std::map<std::pair<std::string, std::string>, size_t> index;
    for (const pqxx::row& row : tables) {
      schema::Table table;
      table.schema = Text(row[0]);
      table.name = Text(row[1]);
      table.unlogged = Bool(row[2]);
      table.partition_key = Text(row[3]);
      table.partition_of = Text(row[4]);
      table.partition_bound = Text(row[5]);
      table.comment = Text(row[6]);
      index[{table.schema, table.name}] = out->tables.size();
      out->tables.push_back(std::move(table));
    }
    // A column that a partition has from its parent is left out, also when
    // the partition was a table of its own before it was attached (its
    // columns are then local too).
    const pqxx::result columns = tx_.exec(absl::StrCat(
        "SELECT n.nspname, c.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), "
        "CASE WHEN a.attgenerated = '' THEN pg_catalog.pg_get_expr(d.adbin, d.adrelid) END, "
        "a.attnotnull, a.attidentity, CASE WHEN a.attgenerated = 's' THEN "
        "pg_catalog.pg_get_expr(d.adbin, d.adrelid) END, ",
        CollationText("a.attcollation", "ty.typcollation"),
        ", ds.description FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT "
        "a.attisdropped AND a.attislocal AND NOT (c.relispartition AND a.attinhcount > 0) "
        "JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid "
        "LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum",
        CommentJoin("pg_class", "c.oid", "a.attnum"), "WHERE ", table_filter_,
        " ORDER BY c.oid, a.attnum"));
    for (const pqxx::row& row : columns) {
      auto it = index.find({Text(row[0]), Text(row[1])});
      if (it == index.end()) continue;  // cannot happen: same filter, same snapshot
      schema::Column column;
      column.name = Text(row[2]);
      column.type = Text(row[3]);
      column.default_expr = Text(row[4]);
      column.not_null = Bool(row[5]);
      column.identity = Char(row[6]);
      column.generated_expr = Text(row[7]);
      column.collation = Text(row[8]);
      column.comment = Text(row[9]);
      out->tables[it->second].columns.push_back(std::move(column));
    }
  }

  void ReadConstraints(DatabaseSchema* out) {
    // Left out: conparentid <> 0, a partition's copy of its parent's
    // constraint or the per-partition rows of a foreign key to a partitioned
    // table; and a partition's constraint that it has from its parent, also
    // when the partition had it of its own before it was attached.
    const pqxx::result result = tx_.exec(absl::StrCat(
        "SELECT n.nspname, c.relname, k.conname, k.contype, "
        "pg_catalog.pg_get_constraintdef(k.oid), "
        "ds.description FROM pg_catalog.pg_constraint k "
        "JOIN pg_catalog.pg_class c ON c.oid = k.conrelid "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace",
        CommentJoin("pg_constraint", "k.oid"),
        "WHERE k.contype IN ('p', 'u', 'f', 'c', 'x') AND k.conislocal AND k.conparentid = 0 AND "
        "NOT (c.relispartition AND k.coninhcount > 0) AND ",
        table_filter_));
    for (const pqxx::row& row : result) {
      schema::Constraint constraint;
      constraint.schema = Text(row[0]);
      constraint.table = Text(row[1]);
      constraint.name = Text(row[2]);
      constraint.kind = Char(row[3]);
      constraint.definition = Text(row[4]);
      constraint.comment = Text(row[5]);
      out->constraints.push_back(std::move(constraint));
    }
  }

  void ReadIndexes(DatabaseSchema* out) {
    // Left out: a constraint's index (it depends on the constraint, deptype
    // 'i') and a partition's index attached to its parent's (pg_inherits).
    const pqxx::result result = tx_.exec(absl::StrCat(
        "SELECT n.nspname, c.relname, ic.relname, pg_catalog.pg_get_indexdef(ic.oid), "
        "ds.description FROM pg_catalog.pg_index x "
        "JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid "
        "JOIN pg_catalog.pg_class c ON c.oid = x.indrelid "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace",
        CommentJoin("pg_class", "ic.oid"), "WHERE ", table_filter_,
        " AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = "
        "'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = ic.oid AND d.refclassid = "
        "'pg_catalog.pg_constraint'::pg_catalog.regclass AND d.deptype = 'i') "
        "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits ih WHERE ih.inhrelid = ic.oid)"));
    for (const pqxx::row& row : result) {
      schema::Index index;
      index.schema = Text(row[0]);
      index.table = Text(row[1]);
      index.name = Text(row[2]);
      index.definition = Text(row[3]);
      index.comment = Text(row[4]);
      out->indexes.push_back(std::move(index));
    }
  }

  void ReadViews(DatabaseSchema* out) {
    const std::string view_filter = absl::StrCat("c.relkind IN ('v', 'm') AND ", kUserNamespace,
                                                 " AND ", NotExtensionMember("pg_class", "c.oid"));
    const pqxx::result views = tx_.exec(absl::StrCat(
        "SELECT n.nspname, c.relname, c.relkind = 'm', pg_catalog.pg_get_viewdef(c.oid), "
        "ds.description FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace",
        CommentJoin("pg_class", "c.oid"), "WHERE ", view_filter));
    std::map<std::pair<std::string, std::string>, size_t> index;
    for (const pqxx::row& row : views) {
      schema::View view;
      view.schema = Text(row[0]);
      view.name = Text(row[1]);
      view.materialized = Bool(row[2]);
      view.definition = Text(row[3]);
      view.comment = Text(row[4]);
      index[{view.schema, view.name}] = out->views.size();
      out->views.push_back(std::move(view));
    }
    // What each view's rewrite rule reads.
    const pqxx::result depends = tx_.exec(absl::StrCat(
        "SELECT DISTINCT n.nspname, c.relname, rn.nspname || '.' || r.relname "
        "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_catalog.pg_rewrite w ON w.ev_class = c.oid "
        "JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass "
        "AND d.objid = w.oid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass "
        "AND d.deptype = 'n' "
        "JOIN pg_catalog.pg_class r ON r.oid = d.refobjid AND r.oid <> c.oid "
        "AND r.relkind IN ('r', 'p', 'v', 'm') "
        "JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace WHERE ",
        view_filter));
    for (const pqxx::row& row : depends) {
      auto it = index.find({Text(row[0]), Text(row[1])});
      if (it == index.end()) continue;
      out->views[it->second].depends_on.push_back(Text(row[2]));
    }
  }

  void ReadFunctions(DatabaseSchema* out) {
    const pqxx::result result = tx_.exec(absl::StrCat(
        "SELECT n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid), "
        "p.prokind = 'p', pg_catalog.pg_get_functiondef(p.oid), ds.description "
        "FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace",
        CommentJoin("pg_proc", "p.oid"), "WHERE p.prokind IN ('f', 'p') AND ", kUserNamespace,
        " AND ", NotExtensionMember("pg_proc", "p.oid")));
    for (const pqxx::row& row : result) {
      schema::Function function;
      function.schema = Text(row[0]);
      function.name = Text(row[1]);
      function.identity_arguments = Text(row[2]);
      function.procedure = Bool(row[3]);
      function.definition = Text(row[4]);
      function.comment = Text(row[5]);
      out->functions.push_back(std::move(function));
    }
  }

  void ReadTriggers(DatabaseSchema* out) {
    // tgparentid <> 0: a partition's clone of its parent's trigger.
    const pqxx::result result = tx_.exec(
        absl::StrCat("SELECT n.nspname, c.relname, g.tgname, pg_catalog.pg_get_triggerdef(g.oid), "
                     "ds.description FROM pg_catalog.pg_trigger g "
                     "JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid "
                     "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace",
                     CommentJoin("pg_trigger", "g.oid"),
                     "WHERE NOT g.tgisinternal AND g.tgparentid = 0 AND ", table_filter_));
    for (const pqxx::row& row : result) {
      schema::Trigger trigger;
      trigger.schema = Text(row[0]);
      trigger.table = Text(row[1]);
      trigger.name = Text(row[2]);
      trigger.definition = Text(row[3]);
      trigger.comment = Text(row[4]);
      out->triggers.push_back(std::move(trigger));
    }
  }

  pqxx::transaction_base& tx_;
  const std::string excluded_;      // text[] of the excluded table names
  const std::string table_filter_;  // the tables (alias c, namespace n) that are modelled
};

// The first line of a libpq message, without "ERROR:  ".
std::string Message(const char* what) {
  absl::string_view text(what);
  text = text.substr(0, text.find('\n'));
  absl::ConsumePrefix(&text, "ERROR:  ");
  return std::string(absl::StripAsciiWhitespace(text));
}

}  // namespace

absl::StatusOr<schema::DatabaseSchema> InspectPqSchema(pqxx::connection_base& connection,
                                                       const InspectOptions& options) {
  DatabaseSchema out;
  try {
    if (!connection.is_open()) {
      return absl::UnavailableError("connection lost: the connection is closed");
    }
    pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx(connection, "inspect");
    tx.exec(std::string(kPinSettings));
    Inspector(tx, options).Read(&out);
    tx.commit();
  } catch (const pqxx::broken_connection& e) {
    return absl::UnavailableError(absl::StrCat("connection lost: ", Message(e.what())));
  } catch (const pqxx::sql_error& e) {
    const std::string& state = e.sqlstate();
    const absl::StatusCode code = absl::string_view(state).substr(0, 2) == "08" ||
                                          absl::string_view(state).substr(0, 3) == "57P"
                                      ? absl::StatusCode::kUnavailable
                                  : state == "57014" ? absl::StatusCode::kAborted
                                                     : absl::StatusCode::kFailedPrecondition;
    return absl::Status(code, absl::StrCat("SQLSTATE ", state, ": ", Message(e.what())));
  } catch (const std::exception& e) {
    return absl::InternalError(Message(e.what()));
  }
  schema::Canonicalize(&out);
  return out;
}

}  // namespace schemad::store
