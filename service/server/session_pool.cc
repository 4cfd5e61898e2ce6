#include "service/server/session_pool.h"

#include <cstddef>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace schemad::server {

SessionPool::Lease::Lease(Lease&& other) noexcept
    : pool_(other.pool_), session_(std::move(other.session_)), keep_(other.keep_) {
  other.pool_ = nullptr;
}

SessionPool::Lease& SessionPool::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    Release();
    pool_ = other.pool_;
    session_ = std::move(other.session_);
    keep_ = other.keep_;
    other.pool_ = nullptr;
  }
  return *this;
}

SessionPool::Lease::~Lease() { Release(); }

void SessionPool::Lease::Finish(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kDataLoss:
      keep_ = false;
      break;
    default:
      break;
  }
}

void SessionPool::Lease::Release() {
  if (pool_ != nullptr && session_ != nullptr) {
    pool_->Return(std::move(session_), keep_);
  }
  pool_ = nullptr;
  session_.reset();
}

SessionPool::SessionPool(store::Database& database, int max_size)
    : database_(database), max_size_(max_size > 0 ? max_size : 1) {}

SessionPool::~SessionPool() { Close(); }

bool SessionPool::CanProceed() const { return closed_ || !idle_.empty() || open_ < max_size_; }

absl::StatusOr<SessionPool::Lease> SessionPool::Acquire(absl::Time deadline) {
  {
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithDeadline(absl::Condition(this, &SessionPool::CanProceed), deadline)) {
      return absl::DeadlineExceededError(absl::StrCat("all ", max_size_, " connections to ",
                                                      database_.DisplayName(),
                                                      " stayed busy until the call's deadline"));
    }
    if (closed_) {
      return absl::UnavailableError("schemad is shutting down");
    }
    if (!idle_.empty()) {
      std::unique_ptr<store::Session> session = std::move(idle_.back());
      idle_.pop_back();
      idle_since_.pop_back();
      return Lease(this, std::move(session));
    }
    ++open_;  // a slot for the connection opened below
  }
  absl::StatusOr<std::unique_ptr<store::Session>> session = database_.Connect();
  if (!session.ok()) {
    absl::MutexLock lock(&mu_);
    --open_;
    return session.status();
  }
  return Lease(this, std::move(session).value());
}

void SessionPool::Return(std::unique_ptr<store::Session> session, bool keep) {
  // Whatever a revision changed in the session (search_path, settings, temp
  // tables...) must not reach the next lease; a session that cannot be
  // reset is closed. No round trip when no revision ran on it.
  if (keep && !session->ResetState().ok()) {
    keep = false;
  }
  std::unique_ptr<store::Session> to_close;
  {
    absl::MutexLock lock(&mu_);
    if (keep && !closed_) {
      idle_.push_back(std::move(session));
      idle_since_.push_back(absl::Now());
      return;
    }
    --open_;
    to_close = std::move(session);
  }
  // Closing a connection talks to the server: outside the lock.
  to_close.reset();
}

absl::Status SessionPool::Warm(int count) {
  std::vector<Lease> leases;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (closed_ || static_cast<int>(idle_.size()) + static_cast<int>(leases.size()) >= count ||
          open_ >= max_size_) {
        break;
      }
      ++open_;
    }
    absl::StatusOr<std::unique_ptr<store::Session>> session = database_.Connect();
    if (!session.ok()) {
      absl::MutexLock lock(&mu_);
      --open_;
      return session.status();
    }
    leases.push_back(Lease(this, std::move(session).value()));
  }
  return absl::OkStatus();  // the leases go back to the pool as idle sessions
}

void SessionPool::DropIdle() {
  std::vector<std::unique_ptr<store::Session>> to_close;
  {
    absl::MutexLock lock(&mu_);
    to_close.swap(idle_);
    idle_since_.clear();
    open_ -= static_cast<int>(to_close.size());
  }
}

int SessionPool::CloseIdleSince(absl::Time cutoff, int keep) {
  std::vector<std::unique_ptr<store::Session>> to_close;
  {
    absl::MutexLock lock(&mu_);
    size_t stale = 0;  // idle_ is oldest first
    while (stale < idle_since_.size() &&
           idle_since_[stale]<cutoff&& static_cast<int>(idle_.size() - stale)> keep) {
      ++stale;
    }
    for (size_t i = 0; i < stale; ++i) {
      to_close.push_back(std::move(idle_[i]));
    }
    idle_.erase(idle_.begin(), idle_.begin() + static_cast<std::ptrdiff_t>(stale));
    idle_since_.erase(idle_since_.begin(),
                      idle_since_.begin() + static_cast<std::ptrdiff_t>(stale));
    open_ -= static_cast<int>(stale);
  }
  return static_cast<int>(to_close.size());  // closed outside the lock, here
}

IdleSessionReaper::IdleSessionReaper(std::vector<SessionPool*> pools, absl::Duration idle_timeout,
                                     int keep_idle, absl::Duration period)
    : pools_(std::move(pools)), idle_timeout_(idle_timeout), keep_idle_(keep_idle) {
  thread_ = std::thread([this, period] {
    absl::MutexLock lock(&mu_);
    while (!mu_.AwaitWithTimeout(absl::Condition(&stopping_), period)) {
      mu_.Unlock();
      ReapOnce(absl::Now());
      mu_.Lock();
    }
  });
}

IdleSessionReaper::~IdleSessionReaper() { Stop(); }

void IdleSessionReaper::SetPools(std::vector<SessionPool*> pools) {
  absl::MutexLock lock(&pools_mu_);
  pools_ = std::move(pools);
}

int IdleSessionReaper::ReapOnce(absl::Time now) {
  absl::MutexLock lock(&pools_mu_);
  int closed = 0;
  for (SessionPool* pool : pools_) {
    closed += pool->CloseIdleSince(now - idle_timeout_, keep_idle_);
  }
  return closed;
}

void IdleSessionReaper::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) {
    thread_.join();
  }
}

void SessionPool::Close() {
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }
  DropIdle();
}

int SessionPool::idle() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(idle_.size());
}

int SessionPool::open() const {
  absl::MutexLock lock(&mu_);
  return open_;
}

}  // namespace schemad::server
