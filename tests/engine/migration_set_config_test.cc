#include "service/engine/migration_set_config.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace schemad::engine {
namespace {

using ::schemad::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Optional;

TEST(MigrationSetConfigTest, DeclaresTheTransactionScope) {
  ASSERT_OK_AND_ASSIGN(MigrationSetConfig config,
                       ParseMigrationSetConfig("m/schemad.conf",
                                               "# Alembic's transaction_per_migration=True\n"
                                               "\n  transaction = per-revision  \n"));
  EXPECT_THAT(config.transaction, Optional(TransactionScope::kPerRevision));
  ASSERT_OK_AND_ASSIGN(config, ParseMigrationSetConfig("m/schemad.conf", "transaction=all\n"));
  EXPECT_THAT(config.transaction, Optional(TransactionScope::kPerCommand));
  ASSERT_OK_AND_ASSIGN(config, ParseMigrationSetConfig("m/schemad.conf", "# nothing\n"));
  EXPECT_EQ(config.transaction, std::nullopt);
}

TEST(MigrationSetConfigTest, ErrorsNameFileAndLine) {
  EXPECT_THAT(ParseMigrationSetConfig("m/schemad.conf", "\ntransaction = per-statement\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "m/schemad.conf:2: transaction must be per-command or per-revision, not "
                       "'per-statement'"));
  EXPECT_THAT(ParseMigrationSetConfig("m/schemad.conf", "transactoin = per-command\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m/schemad.conf:1: unknown key 'transactoin'")));
  EXPECT_THAT(ParseMigrationSetConfig("m/schemad.conf",
                                      "transaction = per-command\ntransaction = per-revision\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m/schemad.conf:2: 'transaction' set twice (first at line 1)")));
  EXPECT_THAT(ParseMigrationSetConfig("m/schemad.conf", "[migration_set]\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m/schemad.conf:1: expected `KEY = VALUE`")));
  EXPECT_THAT(ParseMigrationSetConfig("m/schemad.conf", "transaction =\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("m/schemad.conf:1:")));
}

TEST(MigrationSetConfigTest, LoadsTheDirectorysFileOrNothing) {
  namespace fs = std::filesystem;
  const fs::path dir =
      fs::temp_directory_path() / ("schemad-set-config-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  ASSERT_OK_AND_ASSIGN(MigrationSetConfig config, LoadMigrationSetConfig(dir.string()));
  EXPECT_EQ(config.transaction, std::nullopt);
  std::ofstream(dir / "schemad.conf") << "transaction = per-revision\n";
  ASSERT_OK_AND_ASSIGN(config, LoadMigrationSetConfig(dir.string()));
  EXPECT_THAT(config.transaction, Optional(TransactionScope::kPerRevision));
  fs::remove(dir / "schemad.conf");
  fs::create_directory(dir / "schemad.conf");
  EXPECT_THAT(
      LoadMigrationSetConfig(dir.string()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("schemad.conf: not a regular file")));
  fs::remove_all(dir);
}

TEST(MigrationSetConfigTest, TheGivenScopeWinsThenTheFileThenTheDefault) {
  namespace fs = std::filesystem;
  const fs::path dir =
      fs::temp_directory_path() / ("schemad-set-scope-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  ASSERT_OK_AND_ASSIGN(TransactionScope scope, ResolveTransactionScope(dir.string(), std::nullopt));
  EXPECT_EQ(scope, kDefaultTransactionScope);
  std::ofstream(dir / "schemad.conf") << "transaction = per-revision\n";
  ASSERT_OK_AND_ASSIGN(scope, ResolveTransactionScope(dir.string(), std::nullopt));
  EXPECT_EQ(scope, TransactionScope::kPerRevision);
  ASSERT_OK_AND_ASSIGN(scope, ResolveTransactionScope(dir.string(), TransactionScope::kPerCommand));
  EXPECT_EQ(scope, TransactionScope::kPerCommand);
  // A broken file is an error even when the given scope decides.
  std::ofstream(dir / "schemad.conf") << "transaction = sometimes\n";
  EXPECT_THAT(ResolveTransactionScope(dir.string(), TransactionScope::kPerCommand),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("schemad.conf:1:")));
  fs::remove_all(dir);
}

TEST(MigrationSetConfigTest, ScopeNamesRoundTrip) {
  for (TransactionScope scope : {TransactionScope::kPerCommand, TransactionScope::kPerRevision}) {
    EXPECT_THAT(ParseTransactionScope(TransactionScopeName(scope)), Optional(scope));
  }
  EXPECT_EQ(ParseTransactionScope("PER-COMMAND"), std::nullopt);
  EXPECT_EQ(kDefaultTransactionScope, TransactionScope::kPerCommand);
}

}  // namespace
}  // namespace schemad::engine
