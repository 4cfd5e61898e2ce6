#include "service/engine/events.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace schemad::engine {

absl::string_view EventKindName(Event::Kind kind) {
  switch (kind) {
    case Event::Kind::kOperationStarted:
      return "operation_started";
    case Event::Kind::kWaitingForLock:
      return "waiting_for_lock";
    case Event::Kind::kLockAcquired:
      return "lock_acquired";
    case Event::Kind::kRevisionStarted:
      return "revision_started";
    case Event::Kind::kStatementStarted:
      return "statement_started";
    case Event::Kind::kRevisionFinished:
      return "revision_finished";
    case Event::Kind::kOperationFinished:
      return "operation_finished";
  }
  return "unknown";
}

namespace {
std::string Rows(const std::vector<std::string>& rows) {
  return rows.empty() ? "<base>" : absl::StrJoin(rows, ", ");
}
}  // namespace

std::string HumanDuration(absl::Duration duration) {
  if (duration <= absl::ZeroDuration()) {
    return "0 ms";
  }
  const double ms = absl::ToDoubleMilliseconds(duration);
  if (duration < absl::Milliseconds(10)) {
    return absl::StrFormat("%.1f ms", ms);
  }
  if (duration < absl::Seconds(1)) {
    return absl::StrFormat("%d ms", absl::ToInt64Milliseconds(duration));
  }
  if (duration < absl::Seconds(10)) {
    return absl::StrFormat("%.2f s", absl::ToDoubleSeconds(duration));
  }
  if (duration < absl::Minutes(1)) {
    return absl::StrFormat("%.1f s", absl::ToDoubleSeconds(duration));
  }
  if (duration < absl::Hours(1)) {
    const int64_t seconds = absl::ToInt64Seconds(duration);
    return absl::StrFormat("%d min %02d s", seconds / 60, seconds % 60);
  }
  const int64_t minutes = absl::ToInt64Minutes(duration);
  return absl::StrFormat("%d h %02d min", minutes / 60, minutes % 60);
}

std::string DescribeEvent(const Event& e) {
  switch (e.kind) {
    case Event::Kind::kOperationStarted:
      return absl::StrCat(e.operation, " ", e.target, ": ", e.plan.size(), " revision(s) from ",
                          Rows(e.rows_before));
    case Event::Kind::kWaitingForLock:
      return absl::StrCat("waiting for the migration lock (", HumanDuration(e.waited),
                          "), held by ", e.lock_holder.empty() ? "another session" : e.lock_holder);
    case Event::Kind::kLockAcquired:
      return absl::StrCat("migration lock acquired after ", HumanDuration(e.waited));
    case Event::Kind::kRevisionStarted:
      return absl::StrCat("[", e.step_index + 1, "/", e.step_count, "] ",
                          DirectionName(e.direction) == "up" ? "upgrading to " : "downgrading ",
                          e.revision, " (", e.statement_count, " statement(s))");
    case Event::Kind::kStatementStarted:
      return absl::StrCat("  ", e.revision, " statement ", e.statement_index + 1, "/",
                          e.statement_count, " (line ", e.line, ")");
    case Event::Kind::kRevisionFinished:
      if (!e.status.ok()) {
        return absl::StrCat("[", e.step_index + 1, "/", e.step_count, "] ", e.revision,
                            " failed after ", HumanDuration(e.duration), ": ", e.status.message());
      }
      return absl::StrCat("[", e.step_index + 1, "/", e.step_count, "] ", e.revision, " ",
                          DirectionName(e.direction) == "up" ? "applied" : "reverted", " in ",
                          HumanDuration(e.duration));
    case Event::Kind::kOperationFinished:
      if (!e.status.ok()) {
        return absl::StrCat(e.operation, " failed: ", e.status.message());
      }
      return absl::StrCat(e.operation, " done in ", HumanDuration(e.duration),
                          "; version rows: ", Rows(e.rows_after));
  }
  return "";
}

}  // namespace schemad::engine
