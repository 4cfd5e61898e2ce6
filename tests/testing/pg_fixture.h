// PostgreSQL test fixture: a fresh database per test in the throwaway cluster
// that tests/testing/pg_cluster.sh starts (ctest starts it once, as the
// `pg_cluster` fixture, and passes its directory in SCHEMAD_TEST_PG_DIR).
//
//   TestDatabase db;                       // CREATE DATABASE schemad_t_...
//   ASSERT_TRUE(db.ok());
//   auto database = OpenPqDatabase(db.dsn(), {});
//   Exec(db.dsn(), "CREATE TABLE t (a int)");
//   EXPECT_EQ(Query(db.dsn(), "SELECT count(*) FROM t"), Rows{{"0"}});
//                                          // ~TestDatabase: DROP DATABASE ... WITH (FORCE)
//
// A missing cluster makes the test fail (never skip), with a message saying
// how to start one. Test-only code: uses libpqxx directly.
//
// Thread-safety: the free functions may be called from any thread; a
// TestDatabase is owned by one test.
#ifndef SCHEMAD_TESTS_TESTING_PG_FIXTURE_H_
#define SCHEMAD_TESTS_TESTING_PG_FIXTURE_H_

#include <string>
#include <vector>

namespace schemad::testing {

using Rows = std::vector<std::vector<std::string>>;

// The cluster's port and superuser password, read from $SCHEMAD_TEST_PG_DIR.
// On failure records a test failure (ADD_FAILURE) and returns false.
struct PgCluster {
  std::string host = "127.0.0.1";
  std::string port;
  std::string password;
};
bool ReadPgCluster(PgCluster* cluster);

// URI for `dbname` as the superuser `postgres` with `password`.
std::string ClusterDsn(const PgCluster& cluster, const std::string& dbname,
                       const std::string& password);

// Superuser DSN for the `postgres` database; "" (and a test failure) when the
// cluster is missing.
std::string AdminDsn();

// A uniquely named database, created on construction and dropped WITH (FORCE)
// on destruction. ok() is false (and a failure was recorded) when it could
// not be created.
class TestDatabase {
 public:
  TestDatabase();
  ~TestDatabase();
  TestDatabase(const TestDatabase&) = delete;
  TestDatabase& operator=(const TestDatabase&) = delete;

  bool ok() const { return !dsn_.empty(); }
  const std::string& name() const { return name_; }
  const std::string& dsn() const { return dsn_; }  // postgresql://postgres:pw@127.0.0.1:port/name
  const PgCluster& cluster() const { return cluster_; }

 private:
  PgCluster cluster_;
  std::string name_;
  std::string dsn_;
};

// Runs `sql` in its own autocommit connection; rows as text, NULL as "<null>".
// An error records a test failure and returns no rows.
Rows Query(const std::string& dsn, const std::string& sql);

// Runs `sql` (may hold several statements) in its own autocommit connection;
// an error records a test failure.
void Exec(const std::string& dsn, const std::string& sql);

}  // namespace schemad::testing

#endif  // SCHEMAD_TESTS_TESTING_PG_FIXTURE_H_
