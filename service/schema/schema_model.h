// The canonical model of a PostgreSQL schema: what the inspector reads from a
// database's catalog (store/pq/pq_schema_inspector.h), what the differ
// compares (schema_diff.h) and what the renderer turns into DDL.
//
//   ASSIGN_OR_RETURN(DatabaseSchema live, session->InspectSchema());
//   ASSIGN_OR_RETURN(DatabaseSchema wanted, dev.SchemaOf(desired_sql));
//   std::vector<SchemaChange> changes = DiffSchemas(live, wanted);
//
// Canonical means: two databases with the same schema give equal models,
// whatever order their objects were created in and whatever their search_path.
//  - Every name is as PostgreSQL stores it (unquoted, case kept); the
//    renderer quotes.
//  - Every text that PostgreSQL deparses (types, defaults, constraint, index,
//    view, function and trigger definitions) is its own deparser's output with
//    an empty search_path, so every name in it is schema-qualified:
//    `format_type`, `pg_get_expr`, `pg_get_constraintdef`, `pg_get_indexdef`,
//    `pg_get_viewdef`, `pg_get_functiondef`, `pg_get_triggerdef`.
//  - Every vector is sorted by the object's key (Key()), except ordered lists
//    (columns by position, enum labels by sort order).
//  - Left out: system schemas (pg_catalog, information_schema, pg_toast,
//    pg_temp_*), objects that belong to an extension, schemad's and Alembic's
//    own tables (the version, history, state and run tables), owners,
//    privileges, statistics and storage parameters. Inherited columns and
//    constraints of partitions and inheritance children are left out of the
//    child (they follow the parent); so are the per-partition indexes that a
//    partitioned index creates.
//
// Thread-safety: plain values.
#ifndef SCHEMAD_SERVICE_SCHEMA_SCHEMA_MODEL_H_
#define SCHEMAD_SERVICE_SCHEMA_SCHEMA_MODEL_H_

#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace schemad::schema {

// A schema (namespace). `public` counts like any other.
struct Namespace {
  std::string name;
  std::string comment;  // "" = none
  std::string Key() const { return name; }
  auto Tie() const { return std::tie(name, comment); }
};

struct Extension {
  std::string name;
  std::string schema;   // where its objects live
  std::string version;  // extversion
  std::string comment;
  std::string Key() const { return name; }
  auto Tie() const { return std::tie(name, schema, version, comment); }
};

struct EnumType {
  std::string schema;
  std::string name;
  std::vector<std::string> labels;  // in enumsortorder
  std::string comment;
  std::string Key() const { return schema + "." + name; }
  auto Tie() const { return std::tie(schema, name, labels, comment); }
};

struct DomainConstraint {
  std::string name;
  std::string definition;  // pg_get_constraintdef: "CHECK ((VALUE > 0))" [NOT VALID]
  auto Tie() const { return std::tie(name, definition); }
};

struct DomainType {
  std::string schema;
  std::string name;
  std::string base_type;  // format_type: "numeric(10,2)", "public.other_domain"
  std::string default_expr;
  bool not_null = false;
  std::string collation;                      // "" = the base type's default
  std::vector<DomainConstraint> constraints;  // CHECK constraints, sorted by name
  std::string comment;
  std::string Key() const { return schema + "." + name; }
  auto Tie() const {
    return std::tie(schema, name, base_type, default_expr, not_null, collation, constraints,
                    comment);
  }
};

struct CompositeAttribute {
  std::string name;
  std::string type;       // format_type
  std::string collation;  // "" = the type's default
  auto Tie() const { return std::tie(name, type, collation); }
};

struct CompositeType {
  std::string schema;
  std::string name;
  std::vector<CompositeAttribute> attributes;  // by position
  std::string comment;
  std::string Key() const { return schema + "." + name; }
  auto Tie() const { return std::tie(schema, name, attributes, comment); }
};

// A sequence that is not an identity column's (those belong to the column).
struct Sequence {
  std::string schema;
  std::string name;
  std::string data_type;  // "bigint", "integer", "smallint"
  long long start = 1;
  long long increment = 1;
  long long min_value = 1;
  long long max_value = 0;
  long long cache = 1;
  bool cycle = false;
  std::string owned_by_table;   // "schema.table" of OWNED BY (serial columns); "" = none
  std::string owned_by_column;  // the column of OWNED BY
  std::string comment;
  std::string Key() const { return schema + "." + name; }
  auto Tie() const {
    return std::tie(schema, name, data_type, start, increment, min_value, max_value, cache, cycle,
                    owned_by_table, owned_by_column, comment);
  }
};

struct Column {
  std::string name;
  std::string type;          // format_type: "character varying(64)", "public.status"
  std::string default_expr;  // pg_get_expr of the default; "" = none (also for identity)
  bool not_null = false;
  // Identity: 'a' GENERATED ALWAYS, 'd' BY DEFAULT, '\0' none.
  char identity = '\0';
  std::string generated_expr;  // a STORED generated column's expression; "" = none
  std::string collation;       // "" = the type's default; else the qualified name
  std::string comment;
  auto Tie() const {
    return std::tie(name, type, default_expr, not_null, identity, generated_expr, collation,
                    comment);
  }
};

struct Table {
  std::string schema;
  std::string name;
  bool unlogged = false;
  std::string partition_key;  // pg_get_partkeydef ("RANGE (ts)"); "" = not partitioned
  // A partition: its parent ("schema.table") and bound (pg_get_expr of
  // relpartbound: "FOR VALUES FROM (...) TO (...)", "DEFAULT").
  std::string partition_of;
  std::string partition_bound;
  std::vector<Column> columns;  // by position; inherited columns left out
  std::string comment;
  std::string Key() const { return schema + "." + name; }
  auto Tie() const {
    return std::tie(schema, name, unlogged, partition_key, partition_of, partition_bound, columns,
                    comment);
  }
};

// PRIMARY KEY, UNIQUE, FOREIGN KEY, CHECK or EXCLUDE on a table (NOT NULL is
// a column property).
struct Constraint {
  std::string schema;
  std::string table;
  std::string name;
  // 'p' primary key, 'u' unique, 'f' foreign key, 'c' check, 'x' exclusion.
  char kind = 'c';
  // pg_get_constraintdef: "FOREIGN KEY (a) REFERENCES public.t(id) ON DELETE
  // CASCADE DEFERRABLE", with " NOT VALID" when not validated.
  std::string definition;
  std::string comment;
  std::string Key() const { return schema + "." + table + "." + name; }
  auto Tie() const { return std::tie(schema, table, name, kind, definition, comment); }
};

// An index that no constraint owns (a constraint's index comes with it).
struct Index {
  std::string schema;
  std::string table;
  std::string name;
  std::string
      definition;  // pg_get_indexdef: "CREATE UNIQUE INDEX i ON public.t USING btree (a) ..."
  std::string comment;
  std::string Key() const { return schema + "." + name; }
  auto Tie() const { return std::tie(schema, table, name, definition, comment); }
};

struct View {
  std::string schema;
  std::string name;
  bool materialized = false;
  std::string definition;  // pg_get_viewdef: the SELECT, ending with ";"
  // The tables, views and materialized views this view reads, by Key()
  // ("schema.name"), sorted: the differ creates the views among them first,
  // drops them last, and re-creates this view around a change of a column
  // type or a dropped column of those tables.
  std::vector<std::string> depends_on;
  std::string comment;
  std::string Key() const { return schema + "." + name; }
  auto Tie() const { return std::tie(schema, name, materialized, definition, depends_on, comment); }
};

// A function or procedure (aggregates and window functions are not modelled).
struct Function {
  std::string schema;
  std::string name;
  std::string identity_arguments;  // pg_get_function_identity_arguments: "a integer, b text"
  bool procedure = false;
  std::string definition;  // pg_get_functiondef: "CREATE OR REPLACE FUNCTION ...", no ";"
  std::string comment;
  std::string Key() const { return schema + "." + name + "(" + identity_arguments + ")"; }
  auto Tie() const {
    return std::tie(schema, name, identity_arguments, procedure, definition, comment);
  }
};

struct Trigger {
  std::string schema;  // the table's
  std::string table;
  std::string name;
  std::string definition;  // pg_get_triggerdef: "CREATE TRIGGER ... EXECUTE FUNCTION ..."
  std::string comment;
  std::string Key() const { return schema + "." + table + "." + name; }
  auto Tie() const { return std::tie(schema, table, name, definition, comment); }
};

struct DatabaseSchema {
  std::vector<Namespace> schemas;
  std::vector<Extension> extensions;
  std::vector<EnumType> enums;
  std::vector<DomainType> domains;
  std::vector<CompositeType> composite_types;
  std::vector<Sequence> sequences;
  std::vector<Table> tables;
  std::vector<Constraint> constraints;
  std::vector<Index> indexes;
  std::vector<View> views;
  std::vector<Function> functions;
  std::vector<Trigger> triggers;
  auto Tie() const {
    return std::tie(schemas, extensions, enums, domains, composite_types, sequences, tables,
                    constraints, indexes, views, functions, triggers);
  }
};

// Sorts every vector by Key() (see the contract above); the inspector calls it.
void Canonicalize(DatabaseSchema* schema);

// Field-by-field equality of any model type (each has Tie()).
template <typename T, typename = decltype(std::declval<const T&>().Tie())>
bool operator==(const T& a, const T& b) {
  return a.Tie() == b.Tie();
}
template <typename T, typename = decltype(std::declval<const T&>().Tie())>
bool operator!=(const T& a, const T& b) {
  return !(a == b);
}

// Number of objects of every kind (columns not counted): "12 tables, 30
// indexes, ..." reports and benchmarks.
int ObjectCount(const DatabaseSchema& schema);

}  // namespace schemad::schema

#endif  // SCHEMAD_SERVICE_SCHEMA_SCHEMA_MODEL_H_
