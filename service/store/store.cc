#include "service/store/store.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "service/common/status_macros.h"

namespace schemad::store {

std::string LockHolder::Describe() const {
  std::string out = absl::StrCat("pid ", pid);
  if (!application_name.empty()) {
    absl::StrAppend(&out, " (", application_name, ")");
  }
  // Empty for a Unix-socket client, and when we may not see the holder's address.
  if (!client_address.empty()) {
    absl::StrAppend(&out, " from ", client_address);
  }
  if (since != absl::InfinitePast() && since != absl::InfiniteFuture()) {
    absl::StrAppend(&out, " since ",
                    absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", since, absl::UTCTimeZone()));
  }
  return out;
}

std::string BackendActivity::Describe() const {
  std::string out = backend.Describe();
  if (!state.empty()) {
    absl::StrAppend(&out, ", ", state);
  }
  if (!query.empty()) {
    absl::StrAppend(&out, ": ", query);
  }
  return out;
}

absl::Status Transaction::ExecuteAndCommit(absl::Span<const SqlStatement> statements,
                                           absl::Span<const VersionRowChange> changes,
                                           const HistoryRecord& history,
                                           const std::function<void(int)>& on_started,
                                           const std::function<bool()>& cancelled,
                                           int* failed_index, StatementError* error) {
  *failed_index = -1;
  RETURN_IF_ERROR(
      ExecuteRevision(statements, changes, history, on_started, cancelled, failed_index, error));
  if (cancelled && cancelled()) {
    return absl::CancelledError("cancelled; the revision was rolled back");
  }
  return Commit();
}

absl::Status Transaction::ExecuteRevision(absl::Span<const SqlStatement> statements,
                                          absl::Span<const VersionRowChange> changes,
                                          const HistoryRecord& history,
                                          const std::function<void(int)>& on_started,
                                          const std::function<bool()>& cancelled, int* failed_index,
                                          StatementError* error) {
  *failed_index = -1;
  const absl::Time start = absl::Now();
  for (size_t i = 0; i < statements.size(); ++i) {
    if (cancelled && cancelled()) {
      return absl::CancelledError("cancelled; the revision was rolled back");
    }
    if (on_started) {
      on_started(static_cast<int>(i));
    }
    absl::Status status = Execute(statements[i], error);
    if (!status.ok()) {
      *failed_index = static_cast<int>(i);
      return status;
    }
  }
  RETURN_IF_ERROR(ApplyVersionChanges(changes));
  HistoryRecord record = history;
  record.duration += absl::Now() - start;
  return AppendHistory(record);
}

}  // namespace schemad::store
