// The schema inspector and the differ on a large schema, beside pg_dump
// measured in the same run.
//
//   inspect_bench --admin-dsn postgresql://postgres:pw@127.0.0.1:5432/postgres
//       [--pg-dump /usr/lib/postgresql/15/bin/pg_dump] [--tables 1000] [--runs 7]
//
// Creates the database `inspect_bench` (dropped first if it exists) with
// --tables tables of 10 columns, a primary key, a foreign key to the next
// table and 2 indexes each. Then --runs rounds, each running in turn (the
// order alternating):
//  - InspectSchema on a connected session (PqSession::InspectSchema);
//  - connect + InspectSchema (a new Database and Session each time);
//  - `pg_dump --schema-only -f /dev/null` of the same database, the whole
//    process (the floor: it reads the same catalog and prints DDL).
// And DiffSchemas of the inspected model with itself and with a copy with
// small changes (a column added to 10 tables, an index changed, a foreign
// key dropped, a table added), --runs times each. Prints median (min-max)
// in milliseconds and the ratio to pg_dump taken round by round. Goal:
// inspect < 1 s, diff < 100 ms at 1,000 tables. A failure exits non-zero.
// tests/bench/inspect_bench.sh runs it on a throwaway cluster.
#include <libpq-fe.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "service/schema/schema_diff.h"
#include "service/schema/schema_model.h"
#include "service/store/pq/pq_database.h"
#include "service/store/store.h"

namespace {

using schemad::schema::DatabaseSchema;

struct Args {
  std::string admin_dsn;
  std::string pg_dump = "/usr/lib/postgresql/15/bin/pg_dump";
  int tables = 1000;
  int runs = 7;
};

[[noreturn]] void Fail(const std::string& what) {
  std::cerr << "inspect_bench: FAILED: " << what << "\n";
  std::exit(1);
}

void Exec(const std::string& dsn, const std::string& sql) {
  PGconn* conn = PQconnectdb(dsn.c_str());
  if (PQstatus(conn) != CONNECTION_OK) Fail(PQerrorMessage(conn));
  PQsetNoticeProcessor(
      conn, [](void*, const char*) {}, nullptr);
  PGresult* r = PQexec(conn, sql.c_str());
  const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
  const std::string error = ok ? "" : PQerrorMessage(conn);
  PQclear(r);
  PQfinish(conn);
  if (!ok) Fail(error);
}

// The DSN of `dbname` on the admin DSN's server (URI form: the path is the database).
std::string DatabaseDsn(const std::string& admin_dsn, const std::string& dbname) {
  const size_t slash = admin_dsn.rfind('/');
  if (slash == std::string::npos || admin_dsn.compare(0, 13, "postgresql://") != 0) {
    Fail("--admin-dsn must be a postgresql:// URI ending in /DBNAME");
  }
  return absl::StrCat(admin_dsn.substr(0, slash + 1), dbname);
}

std::string SchemaSql(int tables) {
  std::string sql;
  for (int i = 0; i < tables; ++i) {
    absl::StrAppendFormat(&sql,
                          "CREATE TABLE public.t%d (id bigint PRIMARY KEY, next_id bigint, "
                          "name text NOT NULL, code varchar(32), amount numeric(12,2) DEFAULT 0, "
                          "ratio double precision, active boolean DEFAULT true, "
                          "created timestamptz DEFAULT now(), payload jsonb, note text);\n"
                          "CREATE INDEX t%d_name_idx ON public.t%d (name);\n"
                          "CREATE INDEX t%d_created_idx ON public.t%d (created DESC, code);\n",
                          i, i, i, i, i);
  }
  for (int i = 0; i < tables; ++i) {
    absl::StrAppendFormat(&sql,
                          "ALTER TABLE public.t%d ADD CONSTRAINT t%d_next_fkey FOREIGN KEY "
                          "(next_id) REFERENCES public.t%d (id);\n",
                          i, i, (i + 1) % tables);
  }
  return sql;
}

absl::StatusOr<std::unique_ptr<schemad::store::Session>> Connect(const std::string& dsn) {
  absl::StatusOr<std::unique_ptr<schemad::store::Database>> database =
      schemad::store::OpenPqDatabase(dsn, {});
  if (!database.ok()) return database.status();
  return (*database)->Connect();
}

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string Spread(const std::vector<double>& v) {
  return absl::StrFormat("%9.1f ms (%.1f-%.1f)", Median(v), *std::min_element(v.begin(), v.end()),
                         *std::max_element(v.begin(), v.end()));
}

std::string RatioTo(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> r;
  for (size_t i = 0; i < a.size(); ++i) r.push_back(a[i] / b[i]);
  return absl::StrFormat("%.2fx (%.2f-%.2f)", Median(r), *std::min_element(r.begin(), r.end()),
                         *std::max_element(r.begin(), r.end()));
}

// The inspected model with small changes.
DatabaseSchema Changed(DatabaseSchema schema) {
  for (size_t i = 0; i < schema.tables.size() && i < 10; ++i) {
    schemad::schema::Column column;
    column.name = "added";
    column.type = "integer";
    schema.tables[i * schema.tables.size() / 10].columns.push_back(column);
  }
  if (!schema.indexes.empty()) schema.indexes[0].definition += " WHERE (note IS NOT NULL)";
  for (size_t i = 0; i < schema.constraints.size(); ++i) {
    if (schema.constraints[i].kind == 'f') {
      schema.constraints.erase(schema.constraints.begin() + static_cast<long>(i));
      break;
    }
  }
  schemad::schema::Table table;
  table.schema = "public";
  table.name = "zz_new";
  table.columns.resize(1);
  table.columns[0].name = "id";
  table.columns[0].type = "bigint";
  schema.tables.push_back(table);
  schemad::schema::Canonicalize(&schema);
  return schema;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const std::string value = argv[i + 1];
    if (flag == "--admin-dsn") {
      args.admin_dsn = value;
    } else if (flag == "--pg-dump") {
      args.pg_dump = value;
    } else if (flag == "--tables") {
      args.tables = std::atoi(value.c_str());
    } else if (flag == "--runs") {
      args.runs = std::atoi(value.c_str());
    } else {
      Fail(absl::StrCat("unknown flag ", flag));
    }
  }
  if (args.admin_dsn.empty() || args.tables < 2 || args.runs < 1) {
    Fail("usage: inspect_bench --admin-dsn URI [--pg-dump PATH] [--tables N>=2] [--runs N]");
  }
  const std::string dsn = DatabaseDsn(args.admin_dsn, "inspect_bench");
  Exec(args.admin_dsn, "DROP DATABASE IF EXISTS inspect_bench WITH (FORCE)");
  Exec(args.admin_dsn, "CREATE DATABASE inspect_bench");
  const absl::Time created = absl::Now();
  Exec(dsn, SchemaSql(args.tables));
  Exec(dsn, "VACUUM ANALYZE");
  std::cout << absl::StrFormat(
      "# %d tables (10 columns, 2 indexes, 1 foreign key each) in %.1f s\n", args.tables,
      absl::ToDoubleSeconds(absl::Now() - created));

  absl::StatusOr<std::unique_ptr<schemad::store::Session>> session = Connect(dsn);
  if (!session.ok()) Fail(session.status().ToString());
  const std::string dump = absl::StrCat(args.pg_dump, " --schema-only -f /dev/null '", dsn, "'");
  std::vector<double> warm, cold, pg_dump;
  DatabaseSchema model;
  for (int round = 0; round < args.runs; ++round) {
    for (int k = 0; k < 3; ++k) {
      switch ((round + k) % 3) {
        case 0: {
          const absl::Time start = absl::Now();
          absl::StatusOr<DatabaseSchema> schema = (*session)->InspectSchema();
          warm.push_back(Ms(absl::Now() - start));
          if (!schema.ok()) Fail(schema.status().ToString());
          model = *std::move(schema);
          break;
        }
        case 1: {
          const absl::Time start = absl::Now();
          absl::StatusOr<std::unique_ptr<schemad::store::Session>> fresh = Connect(dsn);
          if (!fresh.ok()) Fail(fresh.status().ToString());
          absl::StatusOr<DatabaseSchema> schema = (*fresh)->InspectSchema();
          cold.push_back(Ms(absl::Now() - start));
          if (!schema.ok()) Fail(schema.status().ToString());
          break;
        }
        default: {
          const absl::Time start = absl::Now();
          const int rc = std::system(dump.c_str());
          pg_dump.push_back(Ms(absl::Now() - start));
          if (rc != 0) Fail(absl::StrCat("pg_dump exited with ", rc));
        }
      }
    }
  }
  if (static_cast<int>(model.tables.size()) != args.tables ||
      static_cast<int>(model.indexes.size()) != 2 * args.tables ||
      static_cast<int>(model.constraints.size()) != 2 * args.tables) {
    Fail(absl::StrCat("unexpected model: ", model.tables.size(), " tables, ", model.indexes.size(),
                      " indexes, ", model.constraints.size(), " constraints"));
  }

  const DatabaseSchema changed = Changed(model);
  std::vector<double> same, small;
  size_t changes = 0;
  for (int round = 0; round < args.runs; ++round) {
    absl::Time start = absl::Now();
    const std::vector<schemad::schema::SchemaChange> none =
        schemad::schema::DiffSchemas(model, model);
    same.push_back(Ms(absl::Now() - start));
    if (!none.empty()) Fail("a model differs from itself");
    start = absl::Now();
    const std::vector<schemad::schema::SchemaChange> some =
        schemad::schema::DiffSchemas(model, changed);
    const std::string sql = schemad::schema::RenderSql(some);
    small.push_back(Ms(absl::Now() - start));
    changes = some.size();
    if (some.empty() || sql.empty()) Fail("the changed model has no changes");
  }

  std::cout << absl::StrFormat("# %d objects in the model; %d rounds, order alternating\n",
                               schemad::schema::ObjectCount(model), args.runs);
  std::cout << absl::StrFormat("%-44s %s\n", "pg_dump --schema-only (process, floor)",
                               Spread(pg_dump));
  std::cout << absl::StrFormat("%-44s %s   %s pg_dump\n", "InspectSchema (connected session)",
                               Spread(warm), RatioTo(warm, pg_dump));
  std::cout << absl::StrFormat("%-44s %s   %s pg_dump\n", "connect + InspectSchema", Spread(cold),
                               RatioTo(cold, pg_dump));
  std::cout << absl::StrFormat("%-44s %s\n", "DiffSchemas(A, A)", Spread(same));
  std::cout << absl::StrFormat("%-44s %s   (%d changes)\n", "DiffSchemas(A, B) + RenderSql",
                               Spread(small), changes);
  const bool met = Median(warm) < 1000 && Median(small) < 100;
  std::cout << "# goal (inspect < 1 s, diff < 100 ms): " << (met ? "met" : "NOT met") << "\n";
  Exec(args.admin_dsn, "DROP DATABASE inspect_bench WITH (FORCE)");
  return 0;
}
