// Small absl::Status helpers that abseil 20220623 does not ship.
//
//   RETURN_IF_ERROR(store.Lock());
//   ASSIGN_OR_RETURN(RevisionGraph graph, RevisionGraph::Build(revisions));
//   return Annotate(status, "while loading migrations/modax");
//
// Thread-safety: stateless.
#ifndef SCHEMAD_COMMON_STATUS_MACROS_H_
#define SCHEMAD_COMMON_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace schemad {

// Returns `status` with `context` prepended to its message ("context: message"),
// keeping the code. An OK status is returned unchanged.
inline absl::Status Annotate(const absl::Status& status, absl::string_view context) {
  if (status.ok() || context.empty()) {
    return status;
  }
  return absl::Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

namespace status_internal {
inline const absl::Status& GetStatus(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}
}  // namespace status_internal

}  // namespace schemad

#define SCHEMAD_STATUS_CONCAT_INNER_(x, y) x##y
#define SCHEMAD_STATUS_CONCAT_(x, y) SCHEMAD_STATUS_CONCAT_INNER_(x, y)

// Evaluates `expr` (an absl::Status or absl::StatusOr) and returns its status
// from the enclosing function when it is not OK.
#define RETURN_IF_ERROR(expr)                                                       \
  do {                                                                              \
    /* A copy: `expr` may be a temporary that dies with this statement. */          \
    ::absl::Status schemad_status_ = ::schemad::status_internal::GetStatus((expr)); \
    if (!schemad_status_.ok()) {                                                    \
      return schemad_status_;                                                       \
    }                                                                               \
  } while (false)

// Evaluates `rexpr` (an absl::StatusOr<T>); returns its status when not OK,
// otherwise moves the value into `lhs` (which may be a declaration).
#define ASSIGN_OR_RETURN(lhs, rexpr) \
  SCHEMAD_ASSIGN_OR_RETURN_IMPL_(SCHEMAD_STATUS_CONCAT_(schemad_statusor_, __LINE__), lhs, rexpr)

#define SCHEMAD_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                   \
  if (!statusor.ok()) {                                      \
    return std::move(statusor).status();                     \
  }                                                          \
  lhs = std::move(statusor).value()

#endif  // SCHEMAD_COMMON_STATUS_MACROS_H_
