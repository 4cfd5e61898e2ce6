// OperationRegistry under real threads, without gRPC: many callers starting,
// joining, watching, listing and cancelling operations while workers run
// them and the maintenance thread expires finished ones. The tsan stage runs
// these (the same paths run through gRPC in server_pgtest, where TSan cannot
// judge Debian's uninstrumented gRPC).
#include "service/server/operations.h"

#include <atomic>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spdlog/sinks/null_sink.h"
#include "spdlog/spdlog.h"

namespace schemad::server {
namespace {

std::shared_ptr<spdlog::logger> NullLogger() {
  return std::make_shared<spdlog::logger>("ops", std::make_shared<spdlog::sinks::null_sink_mt>());
}

// Records what an observer is promised: events in order without repeats,
// then one OnDone.
class RecordingObserver : public OperationObserver {
 public:
  void OnEvent(const v1::OperationEvent& event) override {
    absl::MutexLock lock(&mu_);
    if (done_) {
      ++events_after_done_;
    }
    if (event.sequence() <= last_sequence_) {
      ++out_of_order_;
    }
    last_sequence_ = event.sequence();
    ++events_;
  }
  void OnDone(const absl::Status& status, const v1::OperationResult& result) override {
    absl::MutexLock lock(&mu_);
    ++done_calls_;
    done_ = true;
    status_ = status;
    operation_id_ = result.operation_id();
  }
  bool WaitDone(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&done_), timeout);
  }
  int events() const {
    absl::MutexLock lock(&mu_);
    return events_;
  }
  int done_calls() const {
    absl::MutexLock lock(&mu_);
    return done_calls_;
  }
  int out_of_order() const {
    absl::MutexLock lock(&mu_);
    return out_of_order_;
  }
  int events_after_done() const {
    absl::MutexLock lock(&mu_);
    return events_after_done_;
  }
  absl::Status status() const {
    absl::MutexLock lock(&mu_);
    return status_;
  }

 private:
  mutable absl::Mutex mu_;
  bool done_ = false;
  int done_calls_ = 0;
  int events_ = 0;
  int out_of_order_ = 0;
  int events_after_done_ = 0;
  int64_t last_sequence_ = -1;
  absl::Status status_;
  std::string operation_id_;
};

OperationSpec Spec(v1::OperationKind kind, const std::string& database) {
  OperationSpec spec;
  spec.kind = kind;
  spec.database = database;
  spec.target = "heads";
  spec.who = "test";
  return spec;
}

// A body that emits `steps` fleet events, stopping early (CANCELLED) once a
// cancel was requested.
OperationRegistry::Body SteppingBody(int steps) {
  return [steps](Operation& op) -> absl::StatusOr<OperationOutcome> {
    for (int i = 0; i < steps; ++i) {
      if (op.cancel_requested()) {
        return absl::CancelledError("cancelled by the test");
      }
      v1::FleetEvent event;
      event.set_site(absl::StrCat("step-", i));
      op.EmitFleet(std::move(event));
      std::this_thread::yield();
    }
    return OperationOutcome{};
  };
}

TEST(OperationRegistryTest, ManyCallersStartWatchListAndCancelConcurrently) {
  OperationRegistryOptions options;
  options.workers = 3;
  options.retention = absl::Milliseconds(20);  // the maintenance thread expires as we go
  options.max_retained = 40;
  options.cancel_repeat = absl::Milliseconds(5);
  OperationRegistry registry(options, NullLogger());

  constexpr int kCallers = 6;
  constexpr int kOpsPerCaller = 25;
  std::vector<std::shared_ptr<RecordingObserver>> observers(kCallers * kOpsPerCaller);
  std::atomic<int> cancels_accepted{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < kCallers; ++c) {
    callers.emplace_back([&, c] {
      for (int i = 0; i < kOpsPerCaller; ++i) {
        const std::string database = absl::StrCat("db-", (c + i) % 4);
        absl::StatusOr<std::shared_ptr<Operation>> op =
            registry.Start(Spec(v1::OPERATION_KIND_UPGRADE, database), SteppingBody(20));
        ASSERT_TRUE(op.ok()) << op.status();
        auto observer = std::make_shared<RecordingObserver>();
        observers[static_cast<size_t>(c * kOpsPerCaller + i)] = observer;
        (*op)->Subscribe(observer);
        // Readers race the workers and the expiry.
        (void)registry.List(database, /*running_only=*/false, 0);
        (void)registry.ListPage("", /*running_only=*/true, 5, "");
        (void)registry.Find((*op)->id());
        (void)(*op)->Info();
        if (i % 3 == 0) {
          if (registry.Cancel((*op)->id(), "test").ok()) {
            ++cancels_accepted;
          }
        }
      }
    });
  }
  for (std::thread& caller : callers) {
    caller.join();
  }
  for (size_t i = 0; i < observers.size(); ++i) {
    const std::shared_ptr<RecordingObserver>& observer = observers[i];
    ASSERT_NE(observer, nullptr);
    ASSERT_TRUE(observer->WaitDone(absl::Seconds(60))) << "operation " << i;
    EXPECT_EQ(observer->done_calls(), 1) << i;
    EXPECT_EQ(observer->out_of_order(), 0) << i;
    EXPECT_EQ(observer->events_after_done(), 0) << i;
    EXPECT_GE(observer->events(), 2) << i;  // at least accepted and finished
    const absl::StatusCode code = observer->status().code();
    EXPECT_TRUE(code == absl::StatusCode::kOk || code == absl::StatusCode::kCancelled)
        << i << ": " << observer->status();
  }
  EXPECT_GT(cancels_accepted.load(), 0);
  // Once past their retention, finished operations are dropped (at the next
  // Start): only the new one is left.
  absl::SleepFor(options.retention * 2);
  ASSERT_TRUE(registry.Start(Spec(v1::OPERATION_KIND_UPGRADE, "last"), SteppingBody(1)).ok());
  EXPECT_EQ(registry.List("", /*running_only=*/false, 0).size(), 1u);
  EXPECT_TRUE(registry.Shutdown(absl::Seconds(5), absl::Seconds(30)));
  EXPECT_EQ(registry.running(), 0);
}

TEST(OperationRegistryTest, ConcurrentJoinersShareOneRunningOperation) {
  OperationRegistryOptions options;
  options.workers = 2;
  OperationRegistry registry(options, NullLogger());
  absl::Notification release;
  std::atomic<int> bodies{0};
  auto body = [&](Operation&) -> absl::StatusOr<OperationOutcome> {
    ++bodies;
    release.WaitForNotification();
    return OperationOutcome{};
  };
  constexpr int kCallers = 10;
  std::vector<std::string> ids(kCallers);
  std::vector<std::thread> callers;
  for (int c = 0; c < kCallers; ++c) {
    callers.emplace_back([&, c] {
      absl::StatusOr<std::shared_ptr<Operation>> op =
          registry.StartOrJoin(Spec(v1::OPERATION_KIND_ENSURE_HEAD, "site-a"), body);
      ASSERT_TRUE(op.ok()) << op.status();
      ids[static_cast<size_t>(c)] = (*op)->id();
    });
  }
  for (std::thread& caller : callers) {
    caller.join();
  }
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 1u);
  // Let the one operation (queued or running while the callers joined it)
  // finish before shutting down, which would cancel it while still queued.
  absl::StatusOr<std::shared_ptr<Operation>> op = registry.Find(ids[0]);
  ASSERT_TRUE(op.ok()) << op.status();
  auto observer = std::make_shared<RecordingObserver>();
  (*op)->Subscribe(observer);
  release.Notify();
  ASSERT_TRUE(observer->WaitDone(absl::Seconds(30)));
  EXPECT_TRUE(observer->status().ok()) << observer->status();
  EXPECT_TRUE(registry.Shutdown(absl::Seconds(5), absl::Seconds(30)));
  EXPECT_EQ(bodies.load(), 1);
}

TEST(OperationRegistryTest, ShutdownCancelsWhatIsStillRunningAndRefusesNewOperations) {
  OperationRegistryOptions options;
  options.workers = 2;
  options.cancel_repeat = absl::Milliseconds(5);
  OperationRegistry registry(options, NullLogger());
  std::vector<std::shared_ptr<RecordingObserver>> observers;
  for (int i = 0; i < 6; ++i) {
    absl::StatusOr<std::shared_ptr<Operation>> op =
        registry.Start(Spec(v1::OPERATION_KIND_UPGRADE, absl::StrCat("db-", i)),
                       [](Operation& running) -> absl::StatusOr<OperationOutcome> {
                         while (!running.cancel_requested()) {
                           absl::SleepFor(absl::Milliseconds(1));
                         }
                         return absl::CancelledError("stopped");
                       });
    ASSERT_TRUE(op.ok());
    observers.push_back(std::make_shared<RecordingObserver>());
    (*op)->Subscribe(observers.back());
  }
  std::thread late([&] {
    // Racing the shutdown: either accepted (then cancelled) or refused.
    absl::StatusOr<std::shared_ptr<Operation>> op =
        registry.Start(Spec(v1::OPERATION_KIND_UPGRADE, "late"), SteppingBody(1));
    if (!op.ok()) {
      EXPECT_EQ(op.status().code(), absl::StatusCode::kUnavailable);
    }
  });
  EXPECT_TRUE(registry.Shutdown(absl::Milliseconds(50), absl::Seconds(30)));
  late.join();
  for (const auto& observer : observers) {
    ASSERT_TRUE(observer->WaitDone(absl::Seconds(30)));
    EXPECT_EQ(observer->status().code(), absl::StatusCode::kCancelled) << observer->status();
  }
  EXPECT_EQ(
      registry.Start(Spec(v1::OPERATION_KIND_UPGRADE, "after"), SteppingBody(1)).status().code(),
      absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace schemad::server
