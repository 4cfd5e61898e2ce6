// The tokens file format (service/server/auth.h). Authorisation of real
// calls is covered end to end in server_pgtest.cc.
#include "service/server/auth.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace schemad::server {
namespace {

using ::schemad::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(TokensFileTest, Parses) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Authenticator> auth, Authenticator::Parse(R"(
# token                          role      name
reader-token-0123456789          reader    grafana
	migrator-token-0123456789	migrator	site-a-control-layer

admin-token-0123456789abcdef     admin     oncall
)"));
  EXPECT_TRUE(auth->enabled());
  EXPECT_EQ(auth->token_count(), 3);
}

TEST(TokensFileTest, ErrorsNameTheLineNeverTheToken) {
  EXPECT_THAT(Authenticator::Parse("secret-token-0123456789 reader\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("line 1"), Not(HasSubstr("secret-token")))));
  EXPECT_THAT(Authenticator::Parse("\nsecret-token-0123456789 root alice\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("line 2"), HasSubstr("unknown role"),
                             Not(HasSubstr("secret-token")))));
  EXPECT_THAT(Authenticator::Parse("short reader alice\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at least 16")));
  EXPECT_THAT(Authenticator::Parse("secret-token-0123456789 reader a\n"
                                   "secret-token-0123456789 admin b\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("line 2"), HasSubstr("already listed"),
                             Not(HasSubstr("secret-token")))));
}

TEST(TokensFileTest, MissingFile) {
  EXPECT_THAT(Authenticator::FromFile("/nonexistent/tokens"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/tokens")));
}

TEST(RoleTest, Names) {
  EXPECT_EQ(RoleName(Role::kReader), "reader");
  EXPECT_EQ(RoleName(Role::kMigrator), "migrator");
  EXPECT_EQ(RoleName(Role::kAdmin), "admin");
}

}  // namespace
}  // namespace schemad::server
