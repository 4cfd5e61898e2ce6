// ControlPlane under real threads against an in-memory ControlStore: its
// writer, its maintenance thread (followers, cancel requests, leases) and
// the operation registry's workers at once. The tsan stage runs these (part
// of operations_test); control_pgtest runs the same paths end to end on
// PostgreSQL with `schemad` processes.
#include "service/server/control_plane.h"

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/server/operations.h"
#include "spdlog/sinks/null_sink.h"
#include "tests/testing/poll.h"

namespace schemad::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::shared_ptr<spdlog::logger> NullLogger() {
  return std::make_shared<spdlog::logger>("control",
                                          std::make_shared<spdlog::sinks::null_sink_mt>());
}

// The control store's contract, in memory (no SQL): what the tests need.
class FakeControlStore final : public store::ControlStore {
 public:
  absl::Status EnsureSchema() override { return absl::OkStatus(); }
  absl::StatusOr<std::vector<store::ControlOperation>> RegisterReplica(
      const store::ControlReplica& replica, absl::Duration, const std::string&) override {
    absl::MutexLock lock(&mu_);
    registered_.push_back(replica.name);
    return std::vector<store::ControlOperation>{};
  }
  absl::StatusOr<bool> RenewLease(const store::ControlReplica&, absl::Duration) override {
    absl::MutexLock lock(&mu_);
    ++renewals_;
    return true;
  }
  absl::Status ReleaseReplica(const store::ControlReplica&) override {
    absl::MutexLock lock(&mu_);
    released_ = true;
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<store::ControlOperation>> AbandonExpired() override {
    absl::MutexLock lock(&mu_);
    std::vector<store::ControlOperation> out;
    for (auto& [id, op] : operations_) {
      if (op.replica == dead_replica_ && (op.state == "running" || op.state == "queued")) {
        op.state = "abandoned";
        op.error_code = static_cast<int>(absl::StatusCode::kAborted);
        op.error = absl::StrCat("abandoned: replica ", op.replica, " stopped renewing its lease");
        out.push_back(op);
      }
    }
    return out;
  }
  absl::Status Write(const std::vector<store::ControlOperationWrite>& writes) override {
    absl::MutexLock lock(&mu_);
    if (!available_) return absl::UnavailableError("control database down");
    for (const store::ControlOperationWrite& w : writes) {
      store::ControlOperation& op = operations_[w.operation.id];
      const bool cancel = op.cancel_requested;
      op = w.operation;
      op.cancel_requested = op.cancel_requested || cancel;
      std::map<int64_t, store::ControlEvent>& events = events_[w.operation.id];
      const bool running = op.state == "queued" || op.state == "running";
      for (auto it = events.begin(); it != events.end();) {
        const bool mark = w.drop_marks && it->second.kind == "finished" &&
                          (running || it->first != op.event_count - 1);
        it = mark ? events.erase(it) : std::next(it);
      }
      for (const store::ControlEvent& e : w.events) events[e.sequence] = e;
      for (const store::ControlSiteResult& s : w.sites) sites_[w.operation.id][s.site] = s;
    }
    ++writes_;
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<store::ControlOperation>> ListOperations(
      const store::ControlOperationQuery& query) override {
    absl::MutexLock lock(&mu_);
    std::vector<store::ControlOperation> out;
    for (const auto& [id, op] : operations_) {
      if (!query.database.empty() && op.database != query.database) continue;
      if (query.before && std::make_pair(op.created, op.id) >=
                              std::make_pair(query.before->created, query.before->id)) {
        continue;
      }
      out.push_back(op);
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
      return std::make_pair(a.created, a.id) > std::make_pair(b.created, b.id);
    });
    if (static_cast<int>(out.size()) > query.limit) out.resize(query.limit);
    return out;
  }
  absl::StatusOr<std::optional<store::ControlOperation>> ReadOperation(
      const std::string& id) override {
    absl::MutexLock lock(&mu_);
    auto it = operations_.find(id);
    if (it == operations_.end()) return std::optional<store::ControlOperation>();
    return std::optional<store::ControlOperation>(it->second);
  }
  absl::StatusOr<std::vector<store::ControlEvent>> ReadEvents(const std::string& id,
                                                              int64_t from_sequence,
                                                              int limit) override {
    absl::MutexLock lock(&mu_);
    std::vector<store::ControlEvent> out;
    for (auto it = events_[id].lower_bound(from_sequence);
         it != events_[id].end() && static_cast<int>(out.size()) < limit; ++it) {
      out.push_back(it->second);
    }
    return out;
  }
  absl::StatusOr<std::vector<store::ControlSiteResult>> ReadSites(const std::string& id) override {
    absl::MutexLock lock(&mu_);
    std::vector<store::ControlSiteResult> out;
    for (const auto& [site, result] : sites_[id]) out.push_back(result);
    return out;
  }
  absl::StatusOr<std::optional<store::ControlOperation>> RequestCancel(
      const std::string& id) override {
    absl::MutexLock lock(&mu_);
    auto it = operations_.find(id);
    if (it == operations_.end()) return std::optional<store::ControlOperation>();
    if (it->second.state == "running" || it->second.state == "queued") {
      it->second.cancel_requested = true;
    }
    return std::optional<store::ControlOperation>(it->second);
  }
  absl::StatusOr<std::vector<std::string>> CancelRequested(const std::string& replica) override {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> out;
    for (const auto& [id, op] : operations_) {
      if (op.replica == replica && op.cancel_requested &&
          (op.state == "running" || op.state == "queued")) {
        out.push_back(id);
      }
    }
    return out;
  }
  absl::StatusOr<store::ControlOperation> ClaimResume(const std::string& id,
                                                      const std::string&) override {
    return absl::NotFoundError(id);
  }
  absl::Status Prune(absl::Time, int) override { return absl::OkStatus(); }
  std::string DisplayName() const override { return "fake"; }

  // Test side.
  void Put(const store::ControlOperation& op, const std::vector<v1::OperationEvent>& events) {
    absl::MutexLock lock(&mu_);
    operations_[op.id] = op;
    for (const v1::OperationEvent& e : events) {
      store::ControlEvent& stored = events_[op.id][e.sequence()];
      stored.sequence = e.sequence();
      stored.kind = "event";
      stored.payload = e.SerializeAsString();
    }
  }
  std::optional<store::ControlOperation> Get(const std::string& id) {
    absl::MutexLock lock(&mu_);
    auto it = operations_.find(id);
    if (it == operations_.end()) return std::nullopt;
    return it->second;
  }
  std::vector<v1::OperationEvent> Events(const std::string& id) {
    absl::MutexLock lock(&mu_);
    std::vector<v1::OperationEvent> out;
    for (const auto& [sequence, stored] : events_[id]) {
      out.emplace_back().ParseFromString(stored.payload);
    }
    return out;
  }
  std::map<std::string, store::ControlSiteResult> Sites(const std::string& id) {
    absl::MutexLock lock(&mu_);
    return sites_[id];
  }
  // What another replica's sweep does to operation `id` when its replica's
  // lease has expired: abandoned, with a `finished` event.
  void MarkAbandoned(const std::string& id) {
    absl::MutexLock lock(&mu_);
    store::ControlOperation& op = operations_[id];
    op.state = "abandoned";
    op.error_code = static_cast<int>(absl::StatusCode::kAborted);
    op.error = absl::StrCat("abandoned: replica ", op.replica, " stopped renewing its lease");
    v1::OperationEvent event;
    event.set_operation_id(id);
    event.set_sequence(op.event_count);
    event.mutable_finished()->set_state(v1::OPERATION_STATE_ABANDONED);
    store::ControlEvent& stored = events_[id][op.event_count];
    stored.sequence = op.event_count;
    stored.kind = "finished";
    stored.payload = event.SerializeAsString();
    ++op.event_count;
  }
  void SetAvailable(bool available) {
    absl::MutexLock lock(&mu_);
    available_ = available;
  }
  void SetDeadReplica(const std::string& name) {
    absl::MutexLock lock(&mu_);
    dead_replica_ = name;
  }
  bool released() {
    absl::MutexLock lock(&mu_);
    return released_;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, store::ControlOperation> operations_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::map<int64_t, store::ControlEvent>> events_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::map<std::string, store::ControlSiteResult>> sites_
      ABSL_GUARDED_BY(mu_);
  std::vector<std::string> registered_ ABSL_GUARDED_BY(mu_);
  int renewals_ ABSL_GUARDED_BY(mu_) = 0;
  int writes_ ABSL_GUARDED_BY(mu_) = 0;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  bool available_ ABSL_GUARDED_BY(mu_) = true;
  std::string dead_replica_ ABSL_GUARDED_BY(mu_);
};

// Records events and the end of a (mirrored) operation.
class Recorder : public OperationObserver {
 public:
  void OnEvent(const v1::OperationEvent& event) override {
    absl::MutexLock lock(&mu_);
    events_.push_back(event);
  }
  void OnDone(const absl::Status& status, const v1::OperationResult&) override {
    absl::MutexLock lock(&mu_);
    status_ = status;
    done_ = true;
  }
  bool WaitDone(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&done_), timeout);
  }
  bool WaitEvents(size_t n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() { return events_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }
  std::vector<int64_t> sequences() {
    absl::MutexLock lock(&mu_);
    std::vector<int64_t> out;
    for (const v1::OperationEvent& e : events_) out.push_back(e.sequence());
    return out;
  }
  absl::Status status() {
    absl::MutexLock lock(&mu_);
    return status_;
  }

 private:
  absl::Mutex mu_;
  std::vector<v1::OperationEvent> events_ ABSL_GUARDED_BY(mu_);
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

class ControlPlaneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = std::make_unique<FakeControlStore>();
    store_ = store.get();
    ControlPlaneOptions options;
    options.replica = "replica-a";
    options.lease = absl::Milliseconds(300);
    options.max_kept_detail_events = 2;
    options.poll_interval = absl::Milliseconds(20);
    absl::StatusOr<std::unique_ptr<ControlPlane>> control =
        ControlPlane::Start(std::move(store), options, NullLogger());
    ASSERT_TRUE(control.ok()) << control.status();
    control_ = *std::move(control);
    OperationRegistryOptions registry_options;
    registry_options.workers = 4;
    registry_options.max_kept_detail_events = 2;  // as the control plane keeps
    registry_options.observe_each.push_back(control_->ObserverFactory());
    operations_ = std::make_unique<OperationRegistry>(registry_options, NullLogger());
    control_->Attach(operations_.get());
  }
  void TearDown() override {
    operations_->Shutdown(absl::Seconds(5));
    control_->Shutdown();
    operations_.reset();
  }

  // A fleet-kind operation whose body emits `details` statement events of a
  // site, then the site's result, then waits for `release` (or a cancel).
  std::shared_ptr<Operation> StartFleet(int details, absl::Notification* release) {
    OperationSpec spec;
    spec.kind = v1::OPERATION_KIND_FLEET;
    spec.database = "fleet:env=prod";
    spec.target = "upgrade heads";
    spec.who = "tester";
    spec.request = "request-bytes";
    absl::StatusOr<std::shared_ptr<Operation>> op = operations_->Start(
        spec, [details, release](Operation& running) -> absl::StatusOr<OperationOutcome> {
          for (int i = 0; i < details; ++i) {
            v1::FleetEvent site;
            site.set_kind(v1::FleetEvent::KIND_SITE_EVENT);
            site.set_site("site-1");
            site.mutable_event()->mutable_statement_started()->set_statement_index(i);
            running.EmitFleet(site);
          }
          v1::FleetEvent finished;
          finished.set_kind(v1::FleetEvent::KIND_SITE_FINISHED);
          finished.set_site("site-1");
          finished.mutable_result()->set_site("site-1");
          finished.mutable_result()->set_outcome(v1::FleetSiteResult::OUTCOME_SUCCEEDED);
          finished.mutable_result()->set_revisions_run(3);
          running.EmitFleet(finished);
          while (release != nullptr && !release->HasBeenNotified()) {
            if (running.control().cancelled->load()) return absl::CancelledError("cancelled");
            absl::SleepFor(absl::Milliseconds(5));
          }
          return OperationOutcome{};
        });
    EXPECT_TRUE(op.ok()) << op.status();
    return op.ok() ? *op : nullptr;
  }

  FakeControlStore* store_ = nullptr;
  std::unique_ptr<ControlPlane> control_;
  std::unique_ptr<OperationRegistry> operations_;
};

TEST_F(ControlPlaneTest, WritesOperationsThroughWithinTheKeptBoundAndRetriesWhileDown) {
  store_->SetAvailable(false);
  std::shared_ptr<Operation> op = StartFleet(5, nullptr);
  ASSERT_NE(op, nullptr);
  auto recorder = std::make_shared<Recorder>();
  op->Subscribe(recorder);
  ASSERT_TRUE(recorder->WaitDone(absl::Seconds(10)));
  EXPECT_FALSE(control_->Flush(absl::Now() + absl::Milliseconds(100)));  // still down
  store_->SetAvailable(true);
  ASSERT_TRUE(control_->Flush(absl::Now() + absl::Seconds(10)));

  std::optional<store::ControlOperation> row = store_->Get(op->id());
  ASSERT_TRUE(row.has_value());
  EXPECT_EQ(row->state, "succeeded");
  EXPECT_EQ(row->replica, "replica-a");
  EXPECT_EQ(row->kind, "fleet");
  EXPECT_EQ(row->database, "fleet:env=prod");
  EXPECT_EQ(row->request, "request-bytes");
  EXPECT_EQ(row->event_count, 8);     // accepted, 5 statements, site finished, finished
  EXPECT_EQ(row->events_dropped, 3);  // beyond the 2 detail events kept
  // Kept as in memory: the summary events and the first 2 detail events.
  std::vector<int64_t> sequences;
  for (const v1::OperationEvent& e : store_->Events(op->id())) sequences.push_back(e.sequence());
  EXPECT_THAT(sequences, ElementsAre(0, 1, 2, 6, 7));
  EXPECT_EQ(store_->Sites(op->id()).at("site-1").outcome, "succeeded");
  EXPECT_EQ(store_->Sites(op->id()).at("site-1").revisions_run, 3);
}

TEST_F(ControlPlaneTest, FollowsAnotherReplicasOperationToItsEnd) {
  store::ControlOperation op;
  op.id = "op-00000000000000b1";
  op.kind = "upgrade";
  op.database = "site-a";
  op.replica = "replica-b";
  op.state = "running";
  op.created = absl::Now();
  std::vector<v1::OperationEvent> events(3);
  for (int i = 0; i < 3; ++i) {
    events[i].set_operation_id(op.id);
    events[i].set_sequence(i);
  }
  store_->Put(op, events);
  std::shared_ptr<Operation> mirror = control_->Follow(op.id);
  auto recorder = std::make_shared<Recorder>();
  mirror->Subscribe(recorder);
  ASSERT_TRUE(recorder->WaitEvents(3, absl::Seconds(10)));
  // Replica B goes on: one more event (a detail event's gap before it), then the end.
  v1::OperationEvent last;
  last.set_operation_id(op.id);
  last.set_sequence(5);
  last.mutable_finished()->set_state(v1::OPERATION_STATE_FAILED);
  op.state = "failed";
  op.error_code = static_cast<int>(absl::StatusCode::kFailedPrecondition);
  op.error = "revision b2 failed";
  store_->Put(op, {last});
  ASSERT_TRUE(recorder->WaitDone(absl::Seconds(10)));
  EXPECT_THAT(recorder->sequences(), ElementsAre(0, 1, 2, 5));
  EXPECT_EQ(recorder->status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(recorder->status().message(), HasSubstr("revision b2 failed"));

  // An id no replica wrote ends NOT_FOUND.
  std::shared_ptr<Operation> unknown = control_->Follow("op-00000000000000ff");
  auto nobody = std::make_shared<Recorder>();
  unknown->Subscribe(nobody);
  ASSERT_TRUE(nobody->WaitDone(absl::Seconds(10)));
  EXPECT_EQ(nobody->status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ControlPlaneTest, ACancelRecordedElsewhereCancelsTheLocalOperation) {
  absl::Notification never;
  std::shared_ptr<Operation> op = StartFleet(0, &never);
  ASSERT_NE(op, nullptr);
  auto recorder = std::make_shared<Recorder>();
  op->Subscribe(recorder);
  ASSERT_TRUE(control_->Flush(absl::Now() + absl::Seconds(10)));
  for (const absl::Time deadline = absl::Now() + absl::Seconds(10);
       store_->Get(op->id())->state != "running" && absl::Now() < deadline;) {
    ASSERT_TRUE(control_->Flush(absl::Now() + absl::Seconds(10)));
  }
  // Another replica's CancelOperation: only the control database hears it.
  ASSERT_TRUE(store_->RequestCancel(op->id()).ok());
  ASSERT_TRUE(recorder->WaitDone(absl::Seconds(10)));
  EXPECT_EQ(recorder->status().code(), absl::StatusCode::kCancelled);
  ASSERT_TRUE(control_->Flush(absl::Now() + absl::Seconds(10)));
  EXPECT_EQ(store_->Get(op->id())->state, "cancelled");
  EXPECT_TRUE(store_->Get(op->id())->cancel_requested);
}

TEST_F(ControlPlaneTest, ListsEveryReplicasOperationsNewestFirstInPagesAndEndsTheLease) {
  const absl::Time base = absl::FromUnixSeconds(1700000000);
  for (int i = 0; i < 5; ++i) {
    store::ControlOperation op;
    op.id = absl::StrCat("op-000000000000000", i);
    op.kind = "upgrade";
    op.database = "site-a";
    op.replica = i % 2 == 0 ? "replica-b" : "replica-c";
    op.state = i == 4 ? "abandoned" : "succeeded";
    op.error_code = i == 4 ? static_cast<int>(absl::StatusCode::kAborted) : 0;
    op.error = i == 4 ? "abandoned: replica replica-b stopped renewing its lease" : "";
    op.created = base + absl::Seconds(i / 2);  // pairs share a creation time
    store_->Put(op, {});
  }
  std::vector<std::string> ids;
  std::string token;
  for (int page = 0; page < 5; ++page) {
    std::string next;
    absl::StatusOr<std::vector<v1::OperationInfo>> listed =
        control_->ListPage("", false, 2, token, &next);
    ASSERT_TRUE(listed.ok()) << listed.status();
    for (const v1::OperationInfo& info : *listed) {
      ids.push_back(info.operation_id());
      if (info.operation_id() == "op-0000000000000004") {
        EXPECT_EQ(info.state(), v1::OPERATION_STATE_ABANDONED);
        EXPECT_EQ(info.error().code(), static_cast<int>(absl::StatusCode::kAborted));
        EXPECT_EQ(info.replica(), "replica-b");
      }
    }
    if (next.empty()) break;
    token = next;
  }
  EXPECT_THAT(ids, ElementsAre("op-0000000000000004", "op-0000000000000003", "op-0000000000000002",
                               "op-0000000000000001", "op-0000000000000000"));
  std::string next;
  EXPECT_EQ(control_->ListPage("", false, 2, "p17", &next).status().code(),
            absl::StatusCode::kInvalidArgument);
  control_->Shutdown();
  EXPECT_TRUE(store_->released());
}

TEST_F(ControlPlaneTest, AnExpiredReplicasOperationsGetAFinishedEventForTheirWatchers) {
  store::ControlOperation op;
  op.id = "op-00000000000000d1";
  op.kind = "upgrade";
  op.database = "site-a";
  op.replica = "replica-dead";
  op.state = "running";
  op.event_count = 4;
  op.created = absl::Now();
  v1::OperationEvent accepted;
  accepted.set_operation_id(op.id);
  accepted.set_sequence(0);
  store_->Put(op, {accepted});
  std::shared_ptr<Operation> mirror = control_->Follow(op.id);
  auto recorder = std::make_shared<Recorder>();
  mirror->Subscribe(recorder);
  ASSERT_TRUE(recorder->WaitEvents(1, absl::Seconds(10)));
  store_->SetDeadReplica("replica-dead");  // the next sweep (lease / 3) finds it
  ASSERT_TRUE(recorder->WaitDone(absl::Seconds(10)));
  EXPECT_EQ(recorder->status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(recorder->sequences(), ElementsAre(0, 4));
  const std::vector<v1::OperationEvent> events = store_->Events(op.id);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events.back().finished().state(), v1::OPERATION_STATE_ABANDONED);
  EXPECT_EQ(store_->Get(op.id)->event_count, 5);
}

// Another replica marked this replica's running operation abandoned (this
// replica's lease had run out while it was cut off from the control
// database): the next renewal writes the true state over the mark and
// drops the mark's `finished` event; the operation ends with its own.
TEST_F(ControlPlaneTest, ARunningOperationMarkedAbandonedElsewhereGetsItsTrueStateBack) {
  absl::Notification release;
  std::shared_ptr<Operation> op = StartFleet(1, &release);
  ASSERT_NE(op, nullptr);
  // Written through up to where it waits: running, its site finished.
  ASSERT_TRUE(testing::PollUntil([&] {
    std::optional<store::ControlOperation> row = store_->Get(op->id());
    return row.has_value() && row->state == "running" && store_->Sites(op->id()).size() == 1;
  }));
  const int64_t written = store_->Get(op->id())->event_count;
  store_->MarkAbandoned(op->id());
  ASSERT_EQ(store_->Get(op->id())->state, "abandoned");

  // A renewal every lease / 3 (100 ms).
  EXPECT_TRUE(testing::PollUntil([&] { return store_->Get(op->id())->state == "running"; }));
  EXPECT_EQ(store_->Get(op->id())->event_count, written);
  EXPECT_EQ(store_->Get(op->id())->error, "");
  for (const v1::OperationEvent& event : store_->Events(op->id())) {
    EXPECT_FALSE(event.has_finished()) << event.ShortDebugString();
  }

  release.Notify();
  auto recorder = std::make_shared<Recorder>();
  op->Subscribe(recorder);
  ASSERT_TRUE(recorder->WaitDone(absl::Seconds(10)));
  ASSERT_TRUE(control_->Flush(absl::Now() + absl::Seconds(10)));
  EXPECT_EQ(store_->Get(op->id())->state, "succeeded");
  const std::vector<v1::OperationEvent> events = store_->Events(op->id());
  ASSERT_EQ(static_cast<int64_t>(events.size()), store_->Get(op->id())->event_count);
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].sequence(), static_cast<int64_t>(i));
    EXPECT_EQ(events[i].has_finished(), i + 1 == events.size()) << events[i].ShortDebugString();
  }
  EXPECT_EQ(events.back().finished().state(), v1::OPERATION_STATE_SUCCEEDED);
}

}  // namespace
}  // namespace schemad::server
