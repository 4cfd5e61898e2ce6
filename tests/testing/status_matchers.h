// GoogleTest matchers for absl::Status and absl::StatusOr.
//
//   EXPECT_THAT(graph.status(), StatusIs(absl::StatusCode::kNotFound, HasSubstr("abc123")));
//   EXPECT_THAT(Plan(...), IsOk());
//   ASSERT_OK_AND_ASSIGN(RevisionGraph graph, RevisionGraph::Build(revisions));
#ifndef SCHEMAD_TESTS_TESTING_STATUS_MATCHERS_H_
#define SCHEMAD_TESTS_TESTING_STATUS_MATCHERS_H_

#include <ostream>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/common/status_macros.h"

namespace schemad::testing {

MATCHER(IsOk, "is OK") {
  const absl::Status& status = ::schemad::status_internal::GetStatus(arg);
  if (!status.ok()) {
    *result_listener << "status is " << status;
    return false;
  }
  return true;
}

MATCHER_P2(StatusIs, code, message_matcher,
           std::string("has code ") + absl::StatusCodeToString(code)) {
  const absl::Status& status = ::schemad::status_internal::GetStatus(arg);
  if (status.code() != code) {
    *result_listener << "status is " << status;
    return false;
  }
  if (!::testing::Value(std::string(status.message()), message_matcher)) {
    *result_listener << "status is " << status;
    return false;
  }
  return true;
}

}  // namespace schemad::testing

#define SCHEMAD_TEST_CONCAT_INNER_(x, y) x##y
#define SCHEMAD_TEST_CONCAT_(x, y) SCHEMAD_TEST_CONCAT_INNER_(x, y)

#define ASSERT_OK(expr) ASSERT_THAT((expr), ::schemad::testing::IsOk())
#define EXPECT_OK(expr) EXPECT_THAT((expr), ::schemad::testing::IsOk())

#define ASSERT_OK_AND_ASSIGN(lhs, rexpr) \
  SCHEMAD_ASSERT_OK_AND_ASSIGN_IMPL_(SCHEMAD_TEST_CONCAT_(schemad_statusor_, __LINE__), lhs, rexpr)
#define SCHEMAD_ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                       \
  ASSERT_TRUE(statusor.ok()) << statusor.status();               \
  lhs = std::move(statusor).value()

#endif  // SCHEMAD_TESTS_TESTING_STATUS_MATCHERS_H_
