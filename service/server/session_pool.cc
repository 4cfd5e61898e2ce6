#include "service/server/session_pool.h"

#include <utility>

#include "absl/strings/str_cat.h"

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
    open_ -= static_cast<int>(to_close.size());
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
