// FleetRunner and LabelSelector: selection, bounded parallelism, canary
// stage, failure policy, per-site timeout, cancel, and events tagged by site.
// Sites here are fake work functions; tests/fleet/ runs real databases.
#include "service/engine/fleet.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace schemad::engine {
namespace {

using ::schemad::testing::StatusIs;
using ::testing::HasSubstr;

std::vector<FleetSite> Sites(int n) {
  std::vector<FleetSite> sites;
  for (int i = 0; i < n; ++i) {
    sites.push_back({absl::StrCat("site-", i),
                     {{"region", i % 2 == 0 ? "eu" : "us"}, {"env", i == 0 ? "test" : "prod"}}});
  }
  return sites;
}

class Recorder : public FleetEventSink {
 public:
  void OnFleetEvent(const FleetEvent& event) override {
    std::lock_guard<std::mutex> lock(mu);
    events.push_back(event);
  }
  int Count(FleetEvent::Kind kind) {
    std::lock_guard<std::mutex> lock(mu);
    int n = 0;
    for (const FleetEvent& e : events) {
      n += e.kind == kind ? 1 : 0;
    }
    return n;
  }
  std::mutex mu;
  std::vector<FleetEvent> events;
};

TEST(LabelSelectorTest, Terms) {
  std::vector<FleetSite> sites = Sites(4);
  ASSERT_OK_AND_ASSIGN(LabelSelector eu_prod, LabelSelector::Parse("region=eu,env!=test"));
  std::vector<FleetSite> picked = eu_prod.Filter(sites);
  ASSERT_EQ(picked.size(), 1u);
  EXPECT_EQ(picked[0].name, "site-2");
  ASSERT_OK_AND_ASSIGN(LabelSelector names, LabelSelector::Parse("name=site-1|site-3"));
  EXPECT_EQ(names.Filter(sites).size(), 2u);
  ASSERT_OK_AND_ASSIGN(LabelSelector all, LabelSelector::Parse(""));
  EXPECT_EQ(all.Filter(sites).size(), 4u);
  ASSERT_OK_AND_ASSIGN(LabelSelector has, LabelSelector::Parse("region,!owner"));
  EXPECT_EQ(has.Filter(sites).size(), 4u);
  EXPECT_THAT(LabelSelector::Parse("region=eu,=x"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'=x'")));
  EXPECT_THAT(LabelSelector::Parse("region="),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty value")));
}

TEST(FleetRunnerTest, RunsEverySiteWithBoundedParallelism) {
  constexpr int kSites = 12;
  constexpr int kParallel = 3;
  FleetOptions options;
  options.max_parallel = kParallel;
  FleetRunner runner(options);
  // A barrier instead of sleeps: a site holds its slot until max_parallel
  // sites run at once (or every site has started), so a runner that runs
  // fewer at once shows as a timed-out wait and one that runs more as a peak
  // above max_parallel, whatever the scheduling.
  std::mutex mu;
  std::condition_variable changed;
  int running = 0;
  int started = 0;
  int peak = 0;
  int timed_out_waits = 0;
  Recorder sink;
  FleetSummary summary = runner.Run(
      Sites(kSites),
      [&](const FleetSite& site, SiteContext& ctx) -> absl::StatusOr<SiteResult> {
        {
          std::unique_lock<std::mutex> lock(mu);
          ++started;
          peak = std::max(peak, ++running);
          changed.notify_all();
          if (!changed.wait_for(lock, std::chrono::seconds(10),
                                [&] { return running >= kParallel || started == kSites; })) {
            ++timed_out_waits;
          }
        }
        Event e;
        e.kind = Event::Kind::kRevisionStarted;
        e.revision = site.name;
        ctx.control().sink->OnEvent(e);
        {
          std::lock_guard<std::mutex> lock(mu);
          --running;
        }
        SiteResult r;
        r.revisions_run = 2;
        return r;
      },
      &sink, nullptr);
  EXPECT_EQ(summary.succeeded, kSites);
  EXPECT_TRUE(summary.ok());
  EXPECT_EQ(peak, kParallel);
  EXPECT_EQ(timed_out_waits, 0);
  EXPECT_EQ(sink.Count(FleetEvent::Kind::kSiteQueued), 12);
  EXPECT_EQ(sink.Count(FleetEvent::Kind::kSiteFinished), 12);
  EXPECT_EQ(sink.Count(FleetEvent::Kind::kFinished), 1);
  // Site events carry their site.
  for (const FleetEvent& e : sink.events) {
    if (e.kind == FleetEvent::Kind::kSiteEvent) {
      EXPECT_EQ(e.site, e.event.revision);
    }
  }
}

TEST(FleetRunnerTest, FailedCanaryStopsTheRolloutBeforeOtherSitesStart) {
  FleetOptions options;
  options.max_parallel = 4;
  options.canary_count = 2;
  FleetRunner runner(options);
  std::set<std::string> started;
  std::mutex mu;
  FleetSummary summary = runner.Run(
      Sites(10),
      [&](const FleetSite& site, SiteContext&) -> absl::StatusOr<SiteResult> {
        std::lock_guard<std::mutex> lock(mu);
        started.insert(site.name);
        if (site.name == "site-1") {
          return absl::FailedPreconditionError("revision x failed");
        }
        return SiteResult{};
      },
      nullptr, nullptr);
  EXPECT_EQ(started, (std::set<std::string>{"site-0", "site-1"}));
  EXPECT_EQ(summary.failed, 1);
  EXPECT_EQ(summary.succeeded, 1);
  EXPECT_EQ(summary.skipped, 8);
  EXPECT_THAT(summary.sites[5].status.message(), HasSubstr("canary site site-1 failed"));
  EXPECT_FALSE(summary.ok());
}

TEST(FleetRunnerTest, CanaryBySelector) {
  FleetOptions options;
  options.canary_selector = "env=test";
  FleetRunner runner(options);
  ASSERT_OK(runner.Validate(Sites(3)));
  std::vector<std::string> order;
  std::mutex mu;
  options.max_parallel = 1;
  FleetRunner serial(options);
  serial.Run(
      Sites(3),
      [&](const FleetSite& site, SiteContext&) -> absl::StatusOr<SiteResult> {
        std::lock_guard<std::mutex> lock(mu);
        order.push_back(site.name);
        return SiteResult{};
      },
      nullptr, nullptr);
  ASSERT_EQ(order.size(), 3u);
  EXPECT_EQ(order[0], "site-0");
  FleetOptions bad;
  bad.canary_selector = "env=nowhere";
  EXPECT_THAT(FleetRunner(bad).Validate(Sites(3)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("selects none")));
}

TEST(FleetRunnerTest, StopOnErrorVersusContinue) {
  auto work = [](const FleetSite& site, SiteContext&) -> absl::StatusOr<SiteResult> {
    if (site.name == "site-2") {
      return absl::UnavailableError("connection refused");
    }
    return SiteResult{};
  };
  FleetOptions stop;
  stop.max_parallel = 1;
  FleetSummary stopped = FleetRunner(stop).Run(Sites(6), work, nullptr, nullptr);
  EXPECT_EQ(stopped.succeeded, 2);
  EXPECT_EQ(stopped.failed, 1);
  EXPECT_EQ(stopped.skipped, 3);

  FleetOptions go_on = stop;
  go_on.continue_on_error = true;
  FleetSummary continued = FleetRunner(go_on).Run(Sites(6), work, nullptr, nullptr);
  EXPECT_EQ(continued.succeeded, 5);
  EXPECT_EQ(continued.failed, 1);
  EXPECT_THAT(continued.sites[2].status,
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("connection refused")));
}

// A site's work may fail and still say where the site stands: a SiteResult
// with a failed status counts as a failure (stopping the run without
// continue_on_error) and keeps its rows; a plain error leaves them unknown.
TEST(FleetRunnerTest, AFailureMayCarryTheRowsItLeft) {
  auto work = [](const FleetSite& site, SiteContext&) -> absl::StatusOr<SiteResult> {
    if (site.name == "site-1") {
      SiteResult failed;
      failed.status = absl::FailedPreconditionError("revision c3 failed");
      failed.rows_after = {"b2"};
      failed.rows_after_read = true;
      return failed;
    }
    if (site.name == "site-2") return absl::UnavailableError("connection refused");
    SiteResult ok;
    ok.rows_after = {"c3"};
    return ok;
  };
  FleetOptions options;
  options.max_parallel = 1;
  options.continue_on_error = true;
  FleetSummary summary = FleetRunner(options).Run(Sites(3), work, nullptr, nullptr);
  ASSERT_EQ(summary.sites.size(), 3u);
  EXPECT_EQ(summary.sites[0].outcome, SiteResult::Outcome::kSucceeded);
  EXPECT_TRUE(summary.sites[0].rows_after_read);
  EXPECT_EQ(summary.sites[1].outcome, SiteResult::Outcome::kFailed);
  EXPECT_THAT(summary.sites[1].status,
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("revision c3 failed")));
  EXPECT_TRUE(summary.sites[1].rows_after_read);
  EXPECT_EQ(summary.sites[1].rows_after, std::vector<std::string>{"b2"});
  EXPECT_EQ(summary.sites[2].outcome, SiteResult::Outcome::kFailed);
  EXPECT_FALSE(summary.sites[2].rows_after_read);
  EXPECT_EQ(summary.succeeded, 1);
  EXPECT_EQ(summary.failed, 2);

  options.continue_on_error = false;
  summary = FleetRunner(options).Run(Sites(3), work, nullptr, nullptr);
  EXPECT_EQ(summary.failed, 1);
  EXPECT_EQ(summary.skipped, 1);  // the failure with rows stops the run as any failure does
}

TEST(FleetRunnerTest, SiteTimeoutCancelsThatSite) {
  FleetOptions options;
  options.site_timeout = absl::Milliseconds(100);
  options.continue_on_error = true;
  std::atomic<bool> canceller_called{false};
  FleetSummary summary = FleetRunner(options).Run(
      Sites(2),
      [&](const FleetSite& site, SiteContext& ctx) -> absl::StatusOr<SiteResult> {
        if (site.name == "site-1") {
          ctx.SetCanceller([&] { canceller_called = true; });
          while (!ctx.control().cancelled->load()) {
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
          }
          return absl::CancelledError("statement cancelled");
        }
        return SiteResult{};
      },
      nullptr, nullptr);
  EXPECT_TRUE(canceller_called);
  EXPECT_EQ(summary.succeeded, 1);
  EXPECT_THAT(summary.sites[1].status,
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("timed out")));
}

TEST(FleetRunnerTest, CancelSkipsQueuedAndCancelsRunning) {
  FleetOptions options;
  options.max_parallel = 2;
  std::atomic<bool> cancelled{false};
  std::atomic<int> started{0};
  FleetSummary summary = FleetRunner(options).Run(
      Sites(8),
      [&](const FleetSite&, SiteContext& ctx) -> absl::StatusOr<SiteResult> {
        if (++started == 2) {
          cancelled = true;
        }
        while (!ctx.cancelled()) {
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        return absl::CancelledError("rolled back");
      },
      nullptr, &cancelled);
  EXPECT_EQ(summary.cancelled, 2);
  EXPECT_EQ(summary.skipped, 6);
  EXPECT_EQ(summary.succeeded, 0);
}

}  // namespace
}  // namespace schemad::engine
