// DirectoryWatcher on real directories and real inotify: what counts as a
// change, the settle time (a burst gives one callback, after its last
// event), the watch set following Watch, a directory deleted and made
// again, and Stop leaving no thread and no descriptor behind.
#include "service/server/directory_watcher.h"

#include <stdio.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spdlog/logger.h"
#include "tests/testing/poll.h"
#include "tests/testing/temp_dir.h"

namespace schemad::server {
namespace {

using ::testing::ElementsAre;
using testing::PollUntil;
using testing::TempDir;

// The callbacks a watcher made: when, and with which directories.
class Recorder {
 public:
  struct Call {
    absl::Time at;
    std::vector<std::string> changed;
  };
  DirectoryWatcher::OnChange Callback() {
    return [this](const std::vector<std::string>& changed) {
      absl::MutexLock lock(&mu_);
      calls_.push_back({absl::Now(), changed});
    };
  }
  std::vector<Call> calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  size_t count() const {
    absl::MutexLock lock(&mu_);
    return calls_.size();
  }
  // Waits (30 s at most) until there have been `n` calls.
  bool WaitFor(size_t n) const {
    return PollUntil([&] { return count() >= n; });
  }
  // Waits (30 s at most) for a call made after `marker`.
  bool WaitForCallAfter(absl::Time marker) const {
    return PollUntil([&] {
      absl::MutexLock lock(&mu_);
      return !calls_.empty() && calls_.back().at >= marker;
    });
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<Call> calls_ ABSL_GUARDED_BY(mu_);
};

std::shared_ptr<spdlog::logger> NullLog() { return std::make_shared<spdlog::logger>("watch"); }

std::unique_ptr<DirectoryWatcher> MakeWatcher(DirectoryWatcher::Options options = {}) {
  absl::StatusOr<std::unique_ptr<DirectoryWatcher>> watcher =
      DirectoryWatcher::Create(options, NullLog());
  EXPECT_TRUE(watcher.ok()) << watcher.status();
  return watcher.ok() ? *std::move(watcher) : nullptr;
}

size_t CountEntries(const std::string& directory) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(directory)) {
    ++n;
  }
  return n;
}

// Each test ends with a change that is a marker: once its callback came,
// and came after the marker was made, no earlier change is still pending.
class DirectoryWatcherTest : public ::testing::Test {
 protected:
  void SetUp() override { std::filesystem::create_directories(set()); }
  std::string set() const { return dir_.path() + "/modax"; }

  TempDir dir_;
  Recorder recorder_;
};

TEST_F(DirectoryWatcherTest, AWriteIsReportedOnceTheDirectoryHasBeenQuietForTheSettleTime) {
  DirectoryWatcher::Options options;
  options.settle = absl::Milliseconds(300);
  std::unique_ptr<DirectoryWatcher> watcher = MakeWatcher(options);
  ASSERT_NE(watcher, nullptr);
  watcher->Watch({set()});
  EXPECT_THAT(watcher->watched(), ElementsAre(set()));
  watcher->Start(recorder_.Callback());

  const absl::Time written = absl::Now();
  dir_.Write("modax/a1.sql", "-- revision: a1\n");
  ASSERT_TRUE(recorder_.WaitFor(1));
  const std::vector<Recorder::Call> calls = recorder_.calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_THAT(calls[0].changed, ElementsAre(set()));
  EXPECT_GE(calls[0].at - written, options.settle);
}

TEST_F(DirectoryWatcherTest, ABurstLongerThanTheSettleTimeGivesOneCallbackAfterItsLastWrite) {
  DirectoryWatcher::Options options;
  options.settle = absl::Milliseconds(500);
  std::unique_ptr<DirectoryWatcher> watcher = MakeWatcher(options);
  ASSERT_NE(watcher, nullptr);
  watcher->Watch({set()});
  watcher->Start(recorder_.Callback());

  // A writer pacing itself (not a wait for the watcher): 12 files 50 ms
  // apart, 600 ms in all, each gap well within the settle time.
  absl::Time last_write;
  for (int i = 0; i < 12; ++i) {
    dir_.Write("modax/r" + std::to_string(i) + ".sql", "-- revision: r\n");
    last_write = absl::Now();
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_TRUE(recorder_.WaitFor(1));
  EXPECT_GE(recorder_.calls()[0].at - last_write, options.settle);

  // The marker: the next callback is its own, so the burst gave only one.
  const absl::Time marker = absl::Now();
  dir_.Write("modax/marker.sql", "-- revision: m\n");
  ASSERT_TRUE(recorder_.WaitFor(2));
  const std::vector<Recorder::Call> calls = recorder_.calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_GE(calls[1].at, marker);
}

TEST_F(DirectoryWatcherTest, RenameIntoPlaceRenameAwayAndDeleteAreChanges) {
  DirectoryWatcher::Options options;
  options.settle = absl::Milliseconds(100);
  std::unique_ptr<DirectoryWatcher> watcher = MakeWatcher(options);
  ASSERT_NE(watcher, nullptr);
  watcher->Watch({set()});
  watcher->Start(recorder_.Callback());

  // Written elsewhere, then renamed into the directory: only IN_MOVED_TO
  // happens in it.
  dir_.Write("staging/b2.sql", "-- revision: b2\n");
  ASSERT_EQ(rename((dir_.path() + "/staging/b2.sql").c_str(), (set() + "/b2.sql").c_str()), 0);
  ASSERT_TRUE(recorder_.WaitFor(1));
  EXPECT_THAT(recorder_.calls()[0].changed, ElementsAre(set()));

  ASSERT_EQ(rename((set() + "/b2.sql").c_str(), (dir_.path() + "/staging/b2.sql").c_str()), 0);
  ASSERT_TRUE(recorder_.WaitFor(2));

  dir_.Write("staging/c3.sql", "-- revision: c3\n");
  ASSERT_EQ(rename((dir_.path() + "/staging/c3.sql").c_str(), (set() + "/c3.sql").c_str()), 0);
  ASSERT_TRUE(recorder_.WaitFor(3));
  ASSERT_TRUE(std::filesystem::remove(set() + "/c3.sql"));
  ASSERT_TRUE(recorder_.WaitFor(4));
  EXPECT_EQ(recorder_.count(), 4u);
}

TEST_F(DirectoryWatcherTest, TheWatchSetFollowsWatchEvenFromTheCallback) {
  const std::string other = dir_.path() + "/other";
  std::filesystem::create_directories(other);
  DirectoryWatcher::Options options;
  options.settle = absl::Milliseconds(100);
  std::unique_ptr<DirectoryWatcher> watcher = MakeWatcher(options);
  ASSERT_NE(watcher, nullptr);
  watcher->Watch({set()});
  // As schemad does: the callback reloads and watches what the reloaded
  // configuration says.
  watcher->Start([&](const std::vector<std::string>& changed) {
    watcher->Watch({other});
    recorder_.Callback()(changed);
  });

  dir_.Write("modax/a1.sql", "-- revision: a1\n");
  ASSERT_TRUE(recorder_.WaitFor(1));
  EXPECT_THAT(watcher->watched(), ElementsAre(other));
  // modax is not watched any more: the marker in `other` comes alone.
  dir_.Write("modax/b2.sql", "-- revision: b2\n");
  dir_.Write("other/x.sql", "-- revision: x\n");
  ASSERT_TRUE(recorder_.WaitFor(2));
  EXPECT_THAT(recorder_.calls()[1].changed, ElementsAre(other));
}

TEST_F(DirectoryWatcherTest, ADirectoryDeletedAndMadeAgainIsWatchedAgainAndReported) {
  DirectoryWatcher::Options options;
  options.settle = absl::Milliseconds(100);
  options.retry = absl::Milliseconds(50);
  std::unique_ptr<DirectoryWatcher> watcher = MakeWatcher(options);
  ASSERT_NE(watcher, nullptr);
  const std::string later = dir_.path() + "/later";
  watcher->Watch({set(), later});  // `later` does not exist yet
  EXPECT_THAT(watcher->watched(), ElementsAre(set()));
  watcher->Start(recorder_.Callback());

  std::filesystem::create_directories(later);
  ASSERT_TRUE(recorder_.WaitFor(1));
  EXPECT_THAT(recorder_.calls()[0].changed, ElementsAre(later));
  EXPECT_THAT(watcher->watched(), ElementsAre(later, set()));

  std::filesystem::remove_all(set());
  ASSERT_TRUE(recorder_.WaitFor(2));
  EXPECT_THAT(recorder_.calls()[1].changed, ElementsAre(set()));
  EXPECT_THAT(watcher->watched(), ElementsAre(later));
  dir_.Write("modax/a1.sql", "-- revision: a1\n");
  ASSERT_TRUE(recorder_.WaitFor(3));
  EXPECT_THAT(recorder_.calls()[2].changed, ElementsAre(set()));
  ASSERT_TRUE(PollUntil([&] { return watcher->watched().size() == 2; }));
  // Watched for real again: a later write is reported.
  const absl::Time marker = absl::Now();
  dir_.Write("modax/b2.sql", "-- revision: b2\n");
  ASSERT_TRUE(recorder_.WaitForCallAfter(marker));
  EXPECT_THAT(recorder_.calls().back().changed, ElementsAre(set()));
}

TEST_F(DirectoryWatcherTest, StopEndsTheThreadAndClosesTheDescriptors) {
  const size_t threads_before = CountEntries("/proc/self/task");
  const size_t fds_before = CountEntries("/proc/self/fd");
  std::unique_ptr<DirectoryWatcher> watcher = MakeWatcher();
  ASSERT_NE(watcher, nullptr);
  watcher->Watch({set()});
  watcher->Start(recorder_.Callback());
  // At least the watcher's thread (ThreadSanitizer starts a background
  // thread of its own with a process's first pthread_create).
  const size_t threads_running = CountEntries("/proc/self/task");
  EXPECT_GE(threads_running, threads_before + 1);
  EXPECT_EQ(CountEntries("/proc/self/fd"), fds_before + 2);  // inotify, eventfd

  // A change pending (within the settle time) when Stop comes is dropped.
  dir_.Write("modax/a1.sql", "-- revision: a1\n");
  const absl::Time stop = absl::Now();
  watcher->Stop();
  EXPECT_LT(absl::Now() - stop, absl::Seconds(1));  // woken, not timed out
  EXPECT_EQ(CountEntries("/proc/self/task"), threads_running - 1);
  EXPECT_EQ(CountEntries("/proc/self/fd"), fds_before);
  EXPECT_EQ(recorder_.count(), 0u);
  EXPECT_TRUE(watcher->watched().empty());
  watcher->Stop();                // idempotent
  watcher->Watch({dir_.path()});  // ignored once stopped
  EXPECT_TRUE(watcher->watched().empty());
  watcher.reset();
  EXPECT_EQ(CountEntries("/proc/self/fd"), fds_before);
}

}  // namespace
}  // namespace schemad::server
