// The dev server (store/pq/dev_server.h) and the schema builder
// (schema_build/schema_builder.h) on real PostgreSQL: scratch databases on
// the test cluster named by DSN, a throwaway `local` cluster, desired states
// and revisions built into models, and the schema cache.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/engine/revision_file.h"
#include "service/engine/revision_graph.h"
#include "service/schema/schema_diff.h"
#include "service/schema_build/schema_builder.h"
#include "service/store/pq/dev_server.h"
#include "tests/testing/pg_fixture.h"

namespace schemad::schema_build {
namespace {

using testing::AdminDsn;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::Query;
using testing::Rows;

bool DatabaseExists(const std::string& name) {
  return Query(AdminDsn(), absl::StrCat("SELECT count(*) FROM pg_database WHERE datname = '", name,
                                        "'")) == Rows{{"1"}};
}

// A fresh directory under the system temp directory, removed afterwards.
class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    path_ = std::filesystem::temp_directory_path() /
            absl::StrCat("schemad_", tag, "_", getpid(), "_",
                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string Write(const std::string& name, const std::string& text) const {
    std::ofstream(path_ / name) << text;
    return (path_ / name).string();
  }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

SchemaBuilder::Options NoCache() {
  SchemaBuilder::Options options;
  options.use_cache = false;
  return options;
}

SchemaBuilder::Options CacheIn(const std::string& dir) {
  SchemaBuilder::Options options;
  options.cache_dir = dir;
  return options;
}

std::unique_ptr<store::DevServer> OpenClusterDevServer() {
  absl::StatusOr<std::unique_ptr<store::DevServer>> dev = store::DevServer::Open(AdminDsn());
  EXPECT_TRUE(dev.ok()) << dev.status();
  return dev.ok() ? *std::move(dev) : nullptr;
}

TEST(DevServerTest, ScratchDatabasesAreCreatedAndDropped) {
  std::unique_ptr<store::DevServer> dev = OpenClusterDevServer();
  ASSERT_NE(dev, nullptr);
  EXPECT_GE(dev->server_version(), 150000);
  EXPECT_THAT(dev->display_name(), Not(HasSubstr(testing::TestDatabase().cluster().password)));
  std::string kept, dropped;
  {
    absl::StatusOr<std::unique_ptr<store::ScratchDatabase>> a = dev->CreateScratchDatabase();
    absl::StatusOr<std::unique_ptr<store::ScratchDatabase>> b = dev->CreateScratchDatabase();
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_NE((*a)->name(), (*b)->name());
    EXPECT_THAT((*a)->name(), ::testing::StartsWith("schemad_scratch_"));
    EXPECT_TRUE(DatabaseExists((*a)->name()));
    dropped = (*a)->name();
    EXPECT_TRUE((*a)->Drop().ok());
    EXPECT_FALSE(DatabaseExists(dropped));
    EXPECT_TRUE((*a)->Drop().ok());  // once only
    kept = (*b)->name();
    EXPECT_TRUE(DatabaseExists(kept));
  }  // the destructor drops
  EXPECT_FALSE(DatabaseExists(kept));
  // Close drops what is still alive.
  absl::StatusOr<std::unique_ptr<store::ScratchDatabase>> left = dev->CreateScratchDatabase();
  ASSERT_TRUE(left.ok());
  const std::string left_name = (*left)->name();
  dev->Close();
  EXPECT_FALSE(DatabaseExists(left_name));
  EXPECT_FALSE(dev->CreateScratchDatabase().ok());
}

TEST(DevServerTest, ApplySqlNamesSourceAndLineOfTheFailingStatement) {
  std::unique_ptr<store::DevServer> dev = OpenClusterDevServer();
  ASSERT_NE(dev, nullptr);
  absl::StatusOr<std::unique_ptr<store::ScratchDatabase>> db = dev->CreateScratchDatabase();
  ASSERT_TRUE(db.ok());
  std::vector<engine::SqlStatement> statements = {
      {"CREATE TABLE t (a int)", 1},
      {"CREATE TABLE u (\n  a int,\n  b no_such_type\n)", 4},
  };
  absl::Status applied = dev->ApplySql(**db, statements, "desired/schema.sql");
  ASSERT_FALSE(applied.ok());
  EXPECT_EQ(applied.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(applied.message(), HasSubstr("desired/schema.sql:6: "));
  EXPECT_THAT(applied.message(), HasSubstr("no_such_type"));
  // What ran before the failure stays (autocommit), in the scratch database only.
  EXPECT_EQ(Query((*db)->dsn(), "SELECT count(*) FROM pg_class WHERE relname = 't'"), Rows{{"1"}});
}

TEST(DevServerTest, RoleWithoutCreatedbAndWrongPasswordAreClearErrors) {
  testing::TestDatabase db;
  ASSERT_TRUE(db.ok());
  const std::string role = absl::StrCat("schemad_nocreate_", getpid());
  const std::string password = "pa:ss@w/rd?x";
  testing::Exec(AdminDsn(), absl::StrCat("DROP ROLE IF EXISTS ", role, "; CREATE ROLE ", role,
                                         " LOGIN PASSWORD '", password, "'"));
  const std::string dsn = absl::StrCat("host=127.0.0.1 port=", db.cluster().port, " user=", role,
                                       " dbname=", db.name(), " password='", password, "'");
  absl::StatusOr<std::unique_ptr<store::DevServer>> refused = store::DevServer::Open(dsn);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("CREATEDB"));
  EXPECT_THAT(refused.status().message(), Not(HasSubstr(password)));

  const std::string wrong = absl::StrCat("host=127.0.0.1 port=", db.cluster().port, " user=", role,
                                         " dbname=", db.name(), " password='wrong", password, "'");
  absl::StatusOr<std::unique_ptr<store::DevServer>> unreachable = store::DevServer::Open(wrong);
  ASSERT_FALSE(unreachable.ok());
  EXPECT_EQ(unreachable.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(unreachable.status().message(), Not(HasSubstr(password)));
  testing::Exec(AdminDsn(), absl::StrCat("DROP ROLE ", role));

  EXPECT_EQ(store::DevServer::Open("postgresql://a:b@host:notaport/x").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(DevServerTest, LocalClusterStartsBuildsAndLeavesNothingBehind) {
  TempDir tmp("devlocal");
  const char* old_tmpdir = std::getenv("TMPDIR");
  const std::string saved = old_tmpdir != nullptr ? old_tmpdir : "";
  setenv("TMPDIR", tmp.path().c_str(), 1);
  absl::StatusOr<std::unique_ptr<store::DevServer>> dev = store::DevServer::Open("local");
  if (old_tmpdir != nullptr) {
    setenv("TMPDIR", saved.c_str(), 1);
  } else {
    unsetenv("TMPDIR");
  }
  ASSERT_TRUE(dev.ok()) << dev.status();
  EXPECT_THAT((*dev)->display_name(), HasSubstr("local PostgreSQL 15"));
  EXPECT_FALSE(std::filesystem::is_empty(tmp.path()));
  {
    SchemaBuilder builder(**dev, NoCache());
    const std::string desired = tmp.Write("desired.sql", "CREATE TABLE t (a int PRIMARY KEY);\n");
    absl::StatusOr<schema::DatabaseSchema> model = builder.FromDesiredState(desired);
    ASSERT_TRUE(model.ok()) << model.status();
    ASSERT_EQ(model->tables.size(), 1u);
    EXPECT_EQ(model->tables[0].name, "t");
    std::filesystem::remove(desired);
  }
  (*dev)->Close();
  EXPECT_TRUE(std::filesystem::is_empty(tmp.path()));
}

class SchemaBuilderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dev_ = OpenClusterDevServer();
    ASSERT_NE(dev_, nullptr);
  }
  absl::StatusOr<engine::RevisionGraph> Graph(const TempDir& dir) {
    absl::StatusOr<std::vector<engine::Revision>> revisions =
        engine::LoadRevisionDirectory(dir.path());
    if (!revisions.ok()) return revisions.status();
    return engine::RevisionGraph::Build(*std::move(revisions));
  }
  std::unique_ptr<store::DevServer> dev_;
};

constexpr char kFirst[] =
    "-- revision: a1\n-- message: devices\n\n-- +upgrade\n"
    "CREATE TABLE devices (id bigint PRIMARY KEY, name text NOT NULL);\n"
    "-- +downgrade\nDROP TABLE devices;\n";
constexpr char kSecond[] =
    "-- revision: b2\n-- revises: a1\n-- message: index\n-- transactional: false\n\n-- +upgrade\n"
    "CREATE INDEX CONCURRENTLY devices_name_idx ON devices (name);\n"
    "-- +downgrade\nDROP INDEX devices_name_idx;\n";

TEST_F(SchemaBuilderTest, RevisionsAndTheEquivalentDesiredStateBuildTheSameModel) {
  TempDir revisions("rev"), cache("cache");
  revisions.Write("a1_devices.sql", kFirst);
  revisions.Write("b2_index.sql", kSecond);
  absl::StatusOr<engine::RevisionGraph> graph = Graph(revisions);
  ASSERT_TRUE(graph.ok()) << graph.status();
  SchemaBuilder builder(*dev_, CacheIn(cache.path()));

  absl::StatusOr<schema::DatabaseSchema> at_head = builder.AtRevisions(*graph, {"heads"});
  ASSERT_TRUE(at_head.ok()) << at_head.status();
  TempDir desired("desired");
  const std::string path =
      desired.Write("schema.sql",
                    "CREATE TABLE devices (id bigint PRIMARY KEY, name text NOT NULL);\n"
                    "ALTER TABLE devices OWNER TO postgres;\n"
                    "CREATE INDEX devices_name_idx ON devices (name);\n");
  absl::StatusOr<schema::DatabaseSchema> wanted = builder.FromDesiredState(path);
  ASSERT_TRUE(wanted.ok()) << wanted.status();
  EXPECT_TRUE(schema::DiffSchemas(*at_head, *wanted).empty())
      << schema::RenderSql(schema::DiffSchemas(*at_head, *wanted));
  EXPECT_EQ(at_head->indexes.size(), 1u);

  absl::StatusOr<schema::DatabaseSchema> at_first = builder.AtRevisions(*graph, {"a1"});
  ASSERT_TRUE(at_first.ok());
  EXPECT_TRUE(at_first->indexes.empty());
  absl::StatusOr<schema::DatabaseSchema> empty = builder.AtRevisions(*graph, {});
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->tables.empty());
}

TEST_F(SchemaBuilderTest, CacheAnswersTheSameRevisionsAndMissesChangedOnes) {
  TempDir revisions("rev"), cache("cache");
  revisions.Write("a1_devices.sql", kFirst);
  revisions.Write("b2_index.sql", kSecond);
  absl::StatusOr<engine::RevisionGraph> graph = Graph(revisions);
  ASSERT_TRUE(graph.ok());
  SchemaBuilder builder(*dev_, CacheIn(cache.path()));
  absl::StatusOr<schema::DatabaseSchema> built = builder.AtRevisions(*graph, {"b2"});
  ASSERT_TRUE(built.ok()) << built.status();
  EXPECT_EQ(builder.cache_hits(), 0);
  const std::string key = builder.CacheKey(*graph, {"b2"});
  EXPECT_TRUE(std::filesystem::exists(cache.path() + "/" + key + ".json"));
  // "heads" resolves to the same revisions: the same entry.
  EXPECT_EQ(builder.CacheKey(*graph, {"heads"}), key);
  absl::StatusOr<schema::DatabaseSchema> cached = builder.AtRevisions(*graph, {"heads"});
  ASSERT_TRUE(cached.ok());
  EXPECT_EQ(builder.cache_hits(), 1);
  EXPECT_TRUE(*cached == *built);

  // A changed revision body is another key, built anew.
  std::string changed_text = kSecond;
  changed_text.replace(changed_text.find("(name)"), 6, "(name, id)");
  revisions.Write("b2_index.sql", changed_text);
  absl::StatusOr<engine::RevisionGraph> changed = Graph(revisions);
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_NE(builder.CacheKey(*changed, {"heads"}), key);
  absl::StatusOr<schema::DatabaseSchema> rebuilt = builder.AtRevisions(*changed, {"heads"});
  ASSERT_TRUE(rebuilt.ok());
  EXPECT_EQ(builder.cache_hits(), 1);
  ASSERT_EQ(rebuilt->indexes.size(), 1u);
  EXPECT_THAT(rebuilt->indexes[0].definition, HasSubstr("(name, id)"));

  // Another builder (another process) reads the entry from disk.
  SchemaBuilder second(*dev_, CacheIn(cache.path()));
  absl::StatusOr<schema::DatabaseSchema> from_disk = second.AtRevisions(*graph, {"b2"});
  ASSERT_TRUE(from_disk.ok());
  EXPECT_EQ(second.cache_hits(), 1);
  EXPECT_TRUE(*from_disk == *built);

  // A corrupt entry is rebuilt, not an error.
  std::ofstream(cache.path() + "/" + key + ".json") << "{garbage";
  SchemaBuilder third(*dev_, CacheIn(cache.path()));
  absl::StatusOr<schema::DatabaseSchema> repaired = third.AtRevisions(*graph, {"b2"});
  ASSERT_TRUE(repaired.ok()) << repaired.status();
  EXPECT_EQ(third.cache_hits(), 0);
  EXPECT_TRUE(*repaired == *built);
}

TEST_F(SchemaBuilderTest, ErrorsNameTheFailingRevisionOrFileLine) {
  TempDir revisions("rev"), desired("desired");
  revisions.Write("a1_devices.sql",
                  "-- revision: a1\n-- message: broken\n\n-- +upgrade\n"
                  "CREATE TABLE devices (id bigint REFERENCES nowhere (id));\n"
                  "-- +downgrade\nDROP TABLE devices;\n");
  absl::StatusOr<engine::RevisionGraph> graph = Graph(revisions);
  ASSERT_TRUE(graph.ok());
  SchemaBuilder builder(*dev_, NoCache());
  absl::StatusOr<schema::DatabaseSchema> failed = builder.AtRevisions(*graph, {"heads"});
  ASSERT_FALSE(failed.ok());
  EXPECT_THAT(failed.status().message(), HasSubstr("a1"));
  EXPECT_THAT(failed.status().message(), HasSubstr("nowhere"));

  const std::string path =
      desired.Write("schema.sql", "CREATE TABLE a (x int);\n\nCREATE TABLE b (y no_such_type);\n");
  absl::StatusOr<schema::DatabaseSchema> bad = builder.FromDesiredState(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("schema.sql:3: "));
  EXPECT_THAT(bad.status().message(), HasSubstr("no_such_type"));
}

}  // namespace
}  // namespace schemad::schema_build
