// Typed progress events of an operation, and the sink that receives them.
// The executor emits; the gRPC stream, the CLI progress display and the log
// are all sinks (Atlas's LogFile/LogStmt/LogDone model).
//
//   class PrintingSink : public EventSink {
//     void OnEvent(const Event& e) override { std::cout << Describe(e) << "\n"; }
//   };
//
// Thread-safety: an Event is a value. A sink is called from the executor's
// thread only, one event at a time, and must not block for long.
#ifndef SCHEMAD_SERVICE_ENGINE_EVENTS_H_
#define SCHEMAD_SERVICE_ENGINE_EVENTS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "service/engine/planner.h"

namespace schemad::engine {

struct PlannedStep {
  std::string revision;
  Direction direction = Direction::kUp;
  std::string path;  // revision file
  int statement_count = 0;
  bool transactional = true;
  std::string message;  // the revision's `message` header
};

struct Event {
  enum class Kind {
    kOperationStarted,   // plan, rows_before
    kWaitingForLock,     // lock_holder, waited
    kLockAcquired,       // waited
    kRevisionStarted,    // revision, direction, step_index/step_count, statement_count
    kStatementStarted,   // statement_index/statement_count, line
    kRevisionFinished,   // duration (status set on failure)
    kOperationFinished,  // rows_after, status, duration
  };
  Kind kind = Kind::kOperationStarted;
  absl::Time time = absl::InfinitePast();
  std::string operation_id;

  // kOperationStarted
  std::string operation;  // "upgrade", "downgrade", "stamp", "ensure-head", "resolve"
  std::string target;
  std::vector<PlannedStep> plan;
  std::vector<std::string> rows_before;

  // kWaitingForLock / kLockAcquired
  std::string lock_holder;  // LockHolder::Describe()
  absl::Duration waited = absl::ZeroDuration();

  // kRevisionStarted .. kRevisionFinished
  std::string revision;
  Direction direction = Direction::kUp;
  int step_index = 0;  // 0-based
  int step_count = 0;
  int statement_index = 0;  // 0-based
  int statement_count = 0;
  int line = 0;

  // kRevisionFinished / kOperationFinished
  absl::Duration duration = absl::ZeroDuration();
  std::vector<std::string> rows_after;
  absl::Status status;
};

absl::string_view EventKindName(Event::Kind kind);

// One line for logs and plain (non-terminal) CLI output.
std::string DescribeEvent(const Event& event);

// A duration as people read it: "0.4 ms", "7.5 ms", "54 ms", "6.05 s",
// "12.3 s", "2 min 03 s", "1 h 02 min" (negative: "0 ms"). Every duration
// schemactl and the event texts show.
std::string HumanDuration(absl::Duration duration);

class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void OnEvent(const Event& event) = 0;
};

// Discards everything.
class NullEventSink final : public EventSink {
 public:
  void OnEvent(const Event&) override {}
};

}  // namespace schemad::engine

#endif  // SCHEMAD_SERVICE_ENGINE_EVENTS_H_
