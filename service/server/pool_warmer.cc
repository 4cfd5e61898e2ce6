#include "service/server/pool_warmer.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "service/server/log_format.h"

namespace schemad::server {

PoolWarmer::PoolWarmer(std::vector<Target> targets, Options options, ThreadPool& workers,
                       std::shared_ptr<spdlog::logger> log)
    : options_(options), workers_(workers), log_(std::move(log)) {
  const absl::Time now = absl::Now();
  entries_.reserve(targets.size());
  for (Target& target : targets) {
    Entry entry;
    entry.target = std::move(target);
    entry.due = now;
    entry.backoff = options_.first_retry;
    entries_.push_back(std::move(entry));
  }
  scheduler_ = std::thread([this] { ScheduleLoop(); });
}

PoolWarmer::~PoolWarmer() { Stop(); }

void PoolWarmer::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    wake_ = true;
  }
  {
    absl::MutexLock join_lock(&join_mu_);
    if (scheduler_.joinable()) {
      scheduler_.join();
    }
  }
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(this, &PoolWarmer::NoneRunning));
}

int PoolWarmer::cold() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(
      std::count_if(entries_.begin(), entries_.end(), [](const Entry& e) { return !e.warm; }));
}

int PoolWarmer::failed_attempts() const {
  absl::MutexLock lock(&mu_);
  int failed = 0;
  for (const Entry& entry : entries_) {
    failed += entry.failures;  // a warm entry is tried no more
  }
  return failed;
}

void PoolWarmer::ScheduleLoop() {
  const int max_running = std::max(1, options_.max_concurrent_attempts);
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    const absl::Time now = absl::Now();
    absl::Time next = absl::InfiniteFuture();
    for (size_t i = 0; i < entries_.size(); ++i) {
      Entry& entry = entries_[i];
      if (entry.warm || entry.running) {
        continue;
      }
      if (entry.due > now) {
        next = std::min(next, entry.due);
        continue;
      }
      if (running_ >= max_running) {
        break;  // woken when one finishes
      }
      entry.running = true;
      ++running_;
      if (!workers_.Submit([this, i] { Attempt(i); })) {
        entry.running = false;  // the workers are stopping: so is schemad
        --running_;
        return;
      }
    }
    wake_ = false;
    mu_.AwaitWithDeadline(absl::Condition(this, &PoolWarmer::WakeOrStopping), next);
  }
}

void PoolWarmer::Attempt(size_t index) {
  SessionPool* pool = nullptr;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {  // queued behind busy workers until after Stop
      entries_[index].running = false;
      --running_;
      return;
    }
    pool = entries_[index].target.pool;
  }
  const absl::Status status = pool->Warm(options_.min_idle);

  absl::MutexLock lock(&mu_);
  Entry& entry = entries_[index];
  entry.running = false;
  --running_;
  wake_ = true;
  if (status.ok()) {
    entry.warm = true;
    if (entry.failures > 0) {
      log_->info("database reachable name={} failed_attempts={}", LogValue(entry.target.name),
                 entry.failures);
    }
    return;
  }
  ++entry.failures;
  const absl::Duration wait = entry.backoff;
  entry.due = absl::Now() + wait;
  entry.backoff = std::min(entry.backoff * 2, options_.max_retry);
  if (entry.failures == 1) {
    log_->warn("database not reachable yet name={} retry_in_ms={} error={}",
               LogValue(entry.target.name), absl::ToInt64Milliseconds(wait),
               LogValue(status.message()));
  } else {
    log_->debug("database still not reachable name={} attempts={} retry_in_ms={} error={}",
                LogValue(entry.target.name), entry.failures, absl::ToInt64Milliseconds(wait),
                LogValue(status.message()));
  }
}

}  // namespace schemad::server
