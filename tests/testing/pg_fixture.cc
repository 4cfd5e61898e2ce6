#include "tests/testing/pg_fixture.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <pqxx/pqxx>
#include <random>
#include <sstream>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace schemad::testing {
namespace {

constexpr char kHowToStart[] =
    "start a throwaway cluster with `tests/testing/pg_cluster.sh start DIR` and set "
    "SCHEMAD_TEST_PG_DIR=DIR (ctest does both: `ctest -L pg`)";

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path);
  if (!in) {
    return false;
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  *out = std::string(absl::StripAsciiWhitespace(buffer.str()));
  return !out->empty();
}

}  // namespace

bool ReadPgCluster(PgCluster* cluster) {
  const char* dir = std::getenv("SCHEMAD_TEST_PG_DIR");
  if (dir == nullptr || *dir == '\0') {
    ADD_FAILURE() << "SCHEMAD_TEST_PG_DIR is not set: " << kHowToStart;
    return false;
  }
  if (!ReadFile(absl::StrCat(dir, "/port"), &cluster->port) ||
      !ReadFile(absl::StrCat(dir, "/password"), &cluster->password)) {
    ADD_FAILURE() << "no PostgreSQL cluster in " << dir
                  << " (files `port` and `password`): " << kHowToStart;
    return false;
  }
  return true;
}

std::string ClusterDsn(const PgCluster& cluster, const std::string& dbname,
                       const std::string& password) {
  return absl::StrCat("postgresql://postgres:", password, "@", cluster.host, ":", cluster.port, "/",
                      dbname);
}

std::string AdminDsn() {
  PgCluster cluster;
  if (!ReadPgCluster(&cluster)) {
    return "";
  }
  return ClusterDsn(cluster, "postgres", cluster.password);
}

TestDatabase::TestDatabase() {
  if (!ReadPgCluster(&cluster_)) {
    return;
  }
  static std::atomic<int> counter{0};
  std::random_device random;
  name_ = absl::StrCat("schemad_t_", getpid(), "_", counter.fetch_add(1), "_", random() % 1000000);
  try {
    pqxx::connection conn(ClusterDsn(cluster_, "postgres", cluster_.password));
    pqxx::nontransaction tx(conn);
    tx.exec(absl::StrCat("CREATE DATABASE ", tx.quote_name(name_)));
  } catch (const std::exception& e) {
    ADD_FAILURE() << "cannot create test database " << name_ << ": " << e.what() << "; "
                  << kHowToStart;
    return;
  }
  dsn_ = ClusterDsn(cluster_, name_, cluster_.password);
}

TestDatabase::~TestDatabase() {
  if (dsn_.empty()) {
    return;
  }
  try {
    pqxx::connection conn(ClusterDsn(cluster_, "postgres", cluster_.password));
    pqxx::nontransaction tx(conn);
    tx.exec(absl::StrCat("DROP DATABASE IF EXISTS ", tx.quote_name(name_), " WITH (FORCE)"));
  } catch (const std::exception& e) {
    ADD_FAILURE() << "cannot drop test database " << name_ << ": " << e.what();
  }
}

Rows Query(const std::string& dsn, const std::string& sql) {
  Rows rows;
  try {
    pqxx::connection conn(dsn);
    pqxx::nontransaction tx(conn);
    const pqxx::result result = tx.exec(sql);
    for (const pqxx::row& row : result) {
      std::vector<std::string> values;
      for (const pqxx::field& field : row) {
        values.push_back(field.is_null() ? std::string("<null>") : std::string(field.c_str()));
      }
      rows.push_back(std::move(values));
    }
  } catch (const std::exception& e) {
    ADD_FAILURE() << "query failed: " << sql << ": " << e.what();
    rows.clear();
  }
  return rows;
}

void Exec(const std::string& dsn, const std::string& sql) {
  try {
    pqxx::connection conn(dsn);
    pqxx::nontransaction tx(conn);
    tx.exec(sql);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "statement failed: " << sql << ": " << e.what();
  }
}

}  // namespace schemad::testing
