// SessionPool, ThreadPool and PoolWarmer under real threads, against the
// in-memory store (no database, no gRPC): the contention, bounds and
// shutdown contracts in their headers. The tsan stage runs these.
#include "service/server/session_pool.h"

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/server/pool_warmer.h"
#include "service/server/resource_limits.h"
#include "service/server/thread_pool.h"
#include "spdlog/sinks/ostream_sink.h"
#include "spdlog/spdlog.h"
#include "tests/testing/fake_store.h"
#include "tests/testing/poll.h"

namespace schemad::server {
namespace {

using testing::FakeDatabase;
using ::testing::HasSubstr;
using ::testing::Not;

// Polls `done` every millisecond until it holds or 30 s pass.
template <typename Predicate>
bool Eventually(Predicate done) {
  return testing::PollUntil(done, absl::Seconds(30), absl::Milliseconds(1));
}

// ----------------------------------------------------------------- SessionPool

TEST(SessionPoolTest, ReusesAReturnedSession) {
  FakeDatabase db;
  SessionPool pool(db, 4);
  {
    absl::StatusOr<SessionPool::Lease> lease = pool.Acquire(absl::InfiniteFuture());
    ASSERT_TRUE(lease.ok()) << lease.status();
  }
  absl::StatusOr<SessionPool::Lease> again = pool.Acquire(absl::InfiniteFuture());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(db.connects(), 1);
  EXPECT_EQ(pool.open(), 1);
}

TEST(SessionPoolTest, ABusyPoolWaitsUntilTheDeadlineAndSaysSo) {
  FakeDatabase db;
  SessionPool pool(db, 2);
  absl::StatusOr<SessionPool::Lease> a = pool.Acquire(absl::InfiniteFuture());
  absl::StatusOr<SessionPool::Lease> b = pool.Acquire(absl::InfiniteFuture());
  ASSERT_TRUE(a.ok() && b.ok());
  const absl::Time start = absl::Now();
  absl::StatusOr<SessionPool::Lease> c = pool.Acquire(start + absl::Milliseconds(50));
  EXPECT_EQ(c.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(c.status().message(), HasSubstr("all 2 connections to fake stayed busy"));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(50));
  EXPECT_EQ(db.connects(), 2);
}

TEST(SessionPoolTest, AWaiterGetsTheSessionAnotherThreadReturns) {
  FakeDatabase db;
  SessionPool pool(db, 1);
  absl::StatusOr<SessionPool::Lease> held = pool.Acquire(absl::InfiniteFuture());
  ASSERT_TRUE(held.ok());
  absl::Notification got;
  absl::Status waiter_status;
  std::thread waiter([&] {
    absl::StatusOr<SessionPool::Lease> lease = pool.Acquire(absl::InfiniteFuture());
    waiter_status = lease.status();
    got.Notify();
  });
  // The waiter cannot get the only session while it is held.
  EXPECT_FALSE(got.WaitForNotificationWithTimeout(absl::Milliseconds(20)));
  *held = SessionPool::Lease();  // returned
  waiter.join();
  EXPECT_TRUE(got.HasBeenNotified());
  EXPECT_TRUE(waiter_status.ok()) << waiter_status;
  EXPECT_EQ(db.connects(), 1);
}

TEST(SessionPoolTest, ASuspectSessionIsClosedNotReturned) {
  FakeDatabase db;
  SessionPool pool(db, 2);
  {
    absl::StatusOr<SessionPool::Lease> lease = pool.Acquire(absl::InfiniteFuture());
    ASSERT_TRUE(lease.ok());
    lease->Finish(absl::UnavailableError("server closed the connection unexpectedly"));
  }
  EXPECT_EQ(pool.open(), 0);
  EXPECT_EQ(pool.idle(), 0);
  ASSERT_TRUE(pool.Acquire(absl::InfiniteFuture()).ok());
  EXPECT_EQ(db.connects(), 2);
}

TEST(SessionPoolTest, AFailedConnectGivesItsSlotBack) {
  FakeDatabase db;
  db.FailConnect(1, absl::UnavailableError("cannot connect to fake"));
  SessionPool pool(db, 1);
  absl::StatusOr<SessionPool::Lease> failed = pool.Acquire(absl::InfiniteFuture());
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(pool.open(), 0);
  // Otherwise this would wait for ever for a slot nobody holds.
  EXPECT_TRUE(pool.Acquire(absl::Now() + absl::Seconds(5)).ok());
}

TEST(SessionPoolTest, CloseWakesWaitersAndRefusesNewLeases) {
  FakeDatabase db;
  SessionPool pool(db, 1);
  absl::StatusOr<SessionPool::Lease> held = pool.Acquire(absl::InfiniteFuture());
  ASSERT_TRUE(held.ok());
  absl::Status waiter_status;
  std::thread waiter([&] { waiter_status = pool.Acquire(absl::InfiniteFuture()).status(); });
  pool.Close();
  waiter.join();
  EXPECT_EQ(waiter_status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(waiter_status.message(), HasSubstr("shutting down"));
  *held = SessionPool::Lease();  // a lease out when closing is closed when it comes back
  EXPECT_EQ(pool.open(), 0);
  EXPECT_EQ(pool.Acquire(absl::InfiniteFuture()).status().code(), absl::StatusCode::kUnavailable);
}

TEST(SessionPoolTest, WarmOpensIdleSessionsWithinTheBound) {
  FakeDatabase db;
  SessionPool pool(db, 3);
  ASSERT_TRUE(pool.Warm(2).ok());
  EXPECT_EQ(pool.idle(), 2);
  ASSERT_TRUE(pool.Warm(5).ok());  // never beyond max_size
  EXPECT_EQ(pool.idle(), 3);
  EXPECT_EQ(db.connects(), 3);
}

TEST(SessionPoolTest, WarmReportsTheFirstConnectError) {
  FakeDatabase db;
  db.FailConnect(1, absl::UnavailableError("cannot connect to fake"));
  SessionPool pool(db, 3);
  absl::Status status = pool.Warm(2);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(pool.open(), pool.idle());
}

// Many threads borrowing from a small pool, some leases ending as suspect:
// never more sessions than max_size at once or open, and every slot comes
// back.
TEST(SessionPoolTest, ManyThreadsNeverExceedTheBound) {
  constexpr int kMax = 3;
  constexpr int kThreads = 12;
  constexpr int kRounds = 200;
  FakeDatabase db;
  SessionPool pool(db, kMax);
  std::atomic<int> in_use{0};
  std::atomic<int> peak{0};
  std::atomic<int> waited{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRounds; ++i) {
        const absl::Time start = absl::Now();
        absl::StatusOr<SessionPool::Lease> lease = pool.Acquire(absl::InfiniteFuture());
        ASSERT_TRUE(lease.ok()) << lease.status();
        if (absl::Now() - start > absl::Microseconds(50)) {
          ++waited;
        }
        const int now = ++in_use;
        int seen = peak.load();
        while (now > seen && !peak.compare_exchange_weak(seen, now)) {
        }
        EXPECT_TRUE((*lease)->ReadState().ok());
        std::this_thread::yield();
        --in_use;
        if ((i + t) % 17 == 0) {
          lease->Finish(absl::UnavailableError("lost"));
        }
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  EXPECT_LE(peak.load(), kMax);
  EXPECT_GE(peak.load(), 2);    // the threads did overlap
  EXPECT_GT(waited.load(), 0);  // and some waited for a session
  EXPECT_LE(pool.open(), kMax);
  EXPECT_EQ(pool.open(), pool.idle());
}

TEST(SessionPoolTest, ClosesTheLongestIdleSessionsDownToTheKeptNumber) {
  FakeDatabase db;
  SessionPool pool(db, 4);
  ASSERT_TRUE(pool.Warm(3).ok());
  const absl::Time after_warm = absl::Now();
  while (absl::Now() <= after_warm) {
  }  // what comes back from here on is idle since after `after_warm`
  // Nothing was idle before the warm-up.
  EXPECT_EQ(pool.CloseIdleSince(after_warm - absl::Hours(1), 0), 0);
  EXPECT_EQ(pool.idle(), 3);
  // All three are older than the cutoff; one is kept.
  EXPECT_EQ(pool.CloseIdleSince(after_warm, 1), 2);
  EXPECT_EQ(pool.idle(), 1);
  EXPECT_EQ(pool.open(), 1);
  // A session returned after the cutoff stays, whatever `keep` says.
  {
    absl::StatusOr<SessionPool::Lease> a = pool.Acquire(absl::InfiniteFuture());
    absl::StatusOr<SessionPool::Lease> b = pool.Acquire(absl::InfiniteFuture());
    ASSERT_TRUE(a.ok() && b.ok());
  }
  EXPECT_EQ(pool.CloseIdleSince(after_warm, 0), 0);
  EXPECT_EQ(pool.idle(), 2);
  EXPECT_EQ(pool.CloseIdleSince(absl::InfiniteFuture(), 0), 2);
  EXPECT_EQ(pool.open(), 0);
  // A lease out is never closed by it, and the pool opens anew when asked.
  absl::StatusOr<SessionPool::Lease> out = pool.Acquire(absl::InfiniteFuture());
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(pool.CloseIdleSince(absl::InfiniteFuture(), 0), 0);
  EXPECT_EQ(pool.open(), 1);
  EXPECT_EQ(db.connects(), 5);  // 3 warm, 1 beside the kept one, 1 after all closed
}

TEST(SessionPoolTest, TheReaperClosesWhatStayedIdlePastTheTimeoutInEveryPool) {
  FakeDatabase db_a;
  FakeDatabase db_b;
  SessionPool a(db_a, 4);
  SessionPool b(db_b, 4);
  ASSERT_TRUE(a.Warm(2).ok());
  ASSERT_TRUE(b.Warm(3).ok());
  IdleSessionReaper reaper({&a, &b}, absl::Minutes(10), /*keep_idle=*/1, absl::Hours(1));
  EXPECT_EQ(reaper.ReapOnce(absl::Now()), 0);  // idle for less than 10 minutes
  EXPECT_EQ(reaper.ReapOnce(absl::Now() + absl::Minutes(11)), 3);
  EXPECT_EQ(a.open(), 1);
  EXPECT_EQ(b.open(), 1);
}

TEST(SessionPoolTest, TheReaperRunsOnItsOwnAndStops) {
  FakeDatabase db;
  SessionPool pool(db, 4);
  ASSERT_TRUE(pool.Warm(2).ok());
  IdleSessionReaper reaper({&pool}, absl::Milliseconds(1), /*keep_idle=*/0, absl::Milliseconds(5));
  EXPECT_TRUE(Eventually([&] { return pool.open() == 0; }));
  reaper.Stop();
  reaper.Stop();  // idempotent
}

TEST(ResourceLimitsTest, TheSoftOpenFileLimitIsRaisedToTheHardOne) {
  rlimit limit{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  const rlim_t hard = limit.rlim_max;
  limit.rlim_cur = std::min<rlim_t>(hard, 256);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &limit), 0);
  const OpenFileLimit raised = RaiseOpenFileLimit();
  EXPECT_EQ(raised.before, std::min<rlim_t>(hard, 256));
  EXPECT_EQ(raised.soft, hard);
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  EXPECT_EQ(limit.rlim_cur, hard);
  EXPECT_EQ(RaiseOpenFileLimit().before, hard);  // already there: nothing to do
}

// ------------------------------------------------------------------ ThreadPool

TEST(ThreadPoolTest, RunsEveryTaskOnceFromManySubmitters) {
  constexpr int kSubmitters = 4;
  static constexpr int kTasks = 500;
  std::vector<std::atomic<int>> runs(kSubmitters * kTasks);
  {
    ThreadPool pool("test", 3);
    std::vector<std::thread> submitters;
    for (int s = 0; s < kSubmitters; ++s) {
      submitters.emplace_back([&, s] {
        for (int i = 0; i < kTasks; ++i) {
          EXPECT_TRUE(pool.Submit([&runs, s, i] { ++runs[static_cast<size_t>(s * kTasks + i)]; }));
        }
      });
    }
    for (std::thread& thread : submitters) {
      thread.join();
    }
    pool.Stop();  // runs what is queued
  }
  for (size_t i = 0; i < runs.size(); ++i) {
    ASSERT_EQ(runs[i].load(), 1) << "task " << i;
  }
}

TEST(ThreadPoolTest, ATaskMaySubmitAndStopRefusesNewTasks) {
  ThreadPool pool("test", 2);
  absl::Notification inner_ran;
  ASSERT_TRUE(pool.Submit([&] { EXPECT_TRUE(pool.Submit([&] { inner_ran.Notify(); })); }));
  EXPECT_TRUE(inner_ran.WaitForNotificationWithTimeout(absl::Seconds(30)));
  pool.Stop();
  EXPECT_FALSE(pool.Submit([] {}));
  pool.Stop();  // idempotent
}

// ------------------------------------------------------------------ PoolWarmer

struct CapturedLog {
  CapturedLog() {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
    sink->set_pattern("%l %v");
    logger = std::make_shared<spdlog::logger>("warmer", sink);
    logger->set_level(spdlog::level::debug);
  }
  std::string text() {
    logger->flush();
    return out.str();
  }
  std::ostringstream out;
  std::shared_ptr<spdlog::logger> logger;
};

TEST(PoolWarmerTest, WarmsEveryPool) {
  std::vector<std::unique_ptr<FakeDatabase>> dbs;
  std::vector<std::unique_ptr<SessionPool>> pools;
  std::vector<PoolWarmer::Target> targets;
  for (int i = 0; i < 6; ++i) {
    dbs.push_back(std::make_unique<FakeDatabase>());
    pools.push_back(std::make_unique<SessionPool>(*dbs.back(), 4));
    targets.push_back({"site-" + std::to_string(i), pools.back().get()});
  }
  ThreadPool workers("test", 3);
  CapturedLog log;
  PoolWarmer::Options options;
  options.min_idle = 2;
  options.max_concurrent_attempts = 2;
  PoolWarmer warmer(targets, options, workers, log.logger);
  EXPECT_TRUE(Eventually([&] { return warmer.cold() == 0; }));
  for (const auto& pool : pools) {
    EXPECT_EQ(pool->idle(), 2);
  }
  EXPECT_EQ(warmer.failed_attempts(), 0);
  EXPECT_EQ(log.text(), "");
}

TEST(PoolWarmerTest, RetriesAFailedWarmUpWithGrowingWaits) {
  FakeDatabase down;
  FakeDatabase up;
  down.FailConnect(3, absl::UnavailableError("cannot connect to fake: timeout expired"));
  SessionPool down_pool(down, 2);
  SessionPool up_pool(up, 2);
  ThreadPool workers("test", 2);
  CapturedLog log;
  PoolWarmer::Options options;
  options.first_retry = absl::Milliseconds(10);
  options.max_retry = absl::Milliseconds(40);
  const absl::Time start = absl::Now();
  PoolWarmer warmer({{"site-down", &down_pool}, {"site-up", &up_pool}}, options, workers,
                    log.logger);
  ASSERT_TRUE(Eventually([&] { return warmer.cold() == 0; }));
  // Waits of 10, 20 and 40 ms after the three failures.
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(70));
  EXPECT_EQ(warmer.failed_attempts(), 3);
  EXPECT_EQ(down.connects(), 4);
  EXPECT_EQ(down_pool.idle(), 1);
  EXPECT_EQ(up.connects(), 1);
  const std::string text = log.text();
  // One warning, not one per attempt; the recovery is logged.
  EXPECT_THAT(text, HasSubstr("warning database not reachable yet name=site-down retry_in_ms=10 "
                              "error=\"cannot connect to fake: timeout expired\"\n"));
  EXPECT_THAT(text, HasSubstr("debug database still not reachable name=site-down attempts=3 "
                              "retry_in_ms=40"));
  EXPECT_THAT(text, HasSubstr("info database reachable name=site-down failed_attempts=3\n"));
  EXPECT_THAT(text, Not(HasSubstr("site-up")));
}

TEST(PoolWarmerTest, StopEndsAPendingRetryAtOnce) {
  FakeDatabase down;
  down.FailConnect(1000, absl::UnavailableError("cannot connect to fake"));
  SessionPool pool(down, 1);
  ThreadPool workers("test", 1);
  CapturedLog log;
  PoolWarmer::Options options;
  options.first_retry = absl::Hours(1);
  PoolWarmer warmer({{"site-down", &pool}}, options, workers, log.logger);
  ASSERT_TRUE(Eventually([&] { return warmer.failed_attempts() == 1; }));
  const absl::Time start = absl::Now();
  warmer.Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));  // not the hour
  EXPECT_EQ(warmer.cold(), 1);
  EXPECT_EQ(down.connects(), 1);
  warmer.Stop();  // idempotent
}

// Databases whose Connect blocks until the gate opens; the gate counts how
// many connects run at once, over all of them.
class Gate {
 public:
  void Enter() {
    absl::MutexLock lock(&mu_);
    ++inside_;
    peak_ = std::max(peak_, inside_);
    mu_.Await(absl::Condition(&open_));
    --inside_;
  }
  void Open() {
    absl::MutexLock lock(&mu_);
    open_ = true;
  }
  int inside() const {
    absl::MutexLock lock(&mu_);
    return inside_;
  }
  int peak() const {
    absl::MutexLock lock(&mu_);
    return peak_;
  }

 private:
  mutable absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = false;
  int inside_ ABSL_GUARDED_BY(mu_) = 0;
  int peak_ ABSL_GUARDED_BY(mu_) = 0;
};

class GatedDatabase : public store::Database {
 public:
  explicit GatedDatabase(Gate& gate) : gate_(gate) {}
  absl::StatusOr<std::unique_ptr<store::Session>> Connect() override {
    gate_.Enter();
    return inner_.Connect();
  }
  std::string DisplayName() const override { return "gated"; }
  int connects() const { return inner_.connects(); }

 private:
  Gate& gate_;
  FakeDatabase inner_;
};

TEST(PoolWarmerTest, RunsAtMostMaxConcurrentAttempts) {
  constexpr int kSites = 8;
  Gate gate;
  std::vector<std::unique_ptr<GatedDatabase>> dbs;
  std::vector<std::unique_ptr<SessionPool>> pools;
  std::vector<PoolWarmer::Target> targets;
  for (int i = 0; i < kSites; ++i) {
    dbs.push_back(std::make_unique<GatedDatabase>(gate));
    pools.push_back(std::make_unique<SessionPool>(*dbs.back(), 1));
    targets.push_back({"site-" + std::to_string(i), pools.back().get()});
  }
  ThreadPool workers("test", 6);  // room for 6 at once: the warmer's bound is 2
  CapturedLog log;
  PoolWarmer::Options options;
  options.max_concurrent_attempts = 2;
  PoolWarmer warmer(targets, options, workers, log.logger);
  ASSERT_TRUE(Eventually([&] { return gate.inside() == 2; }));
  // While two connects hang (an unreachable host), no third one starts.
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(gate.inside(), 2);
  gate.Open();
  EXPECT_TRUE(Eventually([&] { return warmer.cold() == 0; }));
  EXPECT_EQ(gate.peak(), 2);
  for (const auto& db : dbs) {
    EXPECT_EQ(db->connects(), 1);
  }
}

}  // namespace
}  // namespace schemad::server
