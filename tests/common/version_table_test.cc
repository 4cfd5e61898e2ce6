#include "service/common/version_table.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace schemad {
namespace {

using ::schemad::testing::StatusIs;
using ::testing::HasSubstr;

TEST(VersionTableNameTest, TableOrSchemaDotTable) {
  ASSERT_OK_AND_ASSIGN(VersionTableName name, ParseVersionTableName("alembic_version"));
  EXPECT_EQ(name.schema, "");
  EXPECT_EQ(name.table, "alembic_version");
  ASSERT_OK_AND_ASSIGN(name, ParseVersionTableName("ops.Alembic_Version$2"));
  EXPECT_EQ(name.schema, "ops");
  EXPECT_EQ(name.table, "Alembic_Version$2");
  ASSERT_OK(ParseVersionTableName(std::string(63, 'a')));
}

TEST(VersionTableNameTest, RefusesWhatIsNotAnUnquotedIdentifier) {
  for (const std::string& bad :
       std::vector<std::string>{"", ".", "a.", ".a", "a.b.c", "1abc", "my table", "a\"b", "a;drop",
                                "x-y", "\xff", std::string(64, 'a'), std::string("a\0b", 3)}) {
    SCOPED_TRACE(bad);
    EXPECT_THAT(ParseVersionTableName(bad),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is not a table name")));
  }
  EXPECT_THAT(ParseVersionTableName("\xff\x01"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"\\xff\\x01\"")));
}

}  // namespace
}  // namespace schemad
