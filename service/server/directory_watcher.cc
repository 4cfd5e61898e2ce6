#include "service/server/directory_watcher.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "service/server/log_format.h"

namespace schemad::server {
namespace {

// Events in a watched directory, and of the directory itself.
constexpr uint32_t kChangeMask = IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM |
                                 IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;
// The watch has ended: the directory is not at its path any more (deleted,
// renamed away, its file system unmounted).
constexpr uint32_t kGoneMask = IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT | IN_IGNORED;

absl::Status ErrnoError(absl::string_view what, int error) {
  const std::string message = absl::StrCat(what, ": ", std::strerror(error));
  if (error == EMFILE || error == ENFILE || error == ENOMEM || error == ENOSPC) {
    return absl::ResourceExhaustedError(message);
  }
  return absl::InternalError(message);
}

// Milliseconds for poll(2) until `deadline`, rounded up; -1 (forever) for
// an infinite one.
int PollTimeout(absl::Time deadline, absl::Time now) {
  if (deadline == absl::InfiniteFuture()) {
    return -1;
  }
  const absl::Duration left = std::max(absl::ZeroDuration(), deadline - now);
  return static_cast<int>(std::min<int64_t>(
      absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))), INT_MAX));
}

}  // namespace

absl::StatusOr<std::unique_ptr<DirectoryWatcher>> DirectoryWatcher::Create(
    Options options, std::shared_ptr<spdlog::logger> log) {
  const int inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_fd < 0) {
    return ErrnoError("cannot create an inotify instance (fs.inotify.max_user_instances?)", errno);
  }
  const int wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd < 0) {
    const int error = errno;
    close(inotify_fd);
    return ErrnoError("cannot create an eventfd", error);
  }
  return std::unique_ptr<DirectoryWatcher>(
      new DirectoryWatcher(inotify_fd, wake_fd, options, std::move(log)));
}

DirectoryWatcher::DirectoryWatcher(int inotify_fd, int wake_fd, Options options,
                                   std::shared_ptr<spdlog::logger> log)
    : inotify_fd_(inotify_fd), wake_fd_(wake_fd), options_(options), log_(std::move(log)) {}

DirectoryWatcher::~DirectoryWatcher() { Stop(); }

void DirectoryWatcher::Watch(const std::vector<std::string>& directories) {
  absl::MutexLock lock(&mu_);
  if (stopping_) {
    return;
  }
  const std::set<std::string> wanted(directories.begin(), directories.end());
  for (auto it = descriptors_.begin(); it != descriptors_.end();) {
    if (wanted.count(it->first) == 0) {
      DropWatch(it->first, /*remove_from_kernel=*/true);
      failure_logged_.erase(it->first);
      it = descriptors_.erase(it);
    } else {
      ++it;
    }
  }
  std::vector<std::string> added;
  for (const std::string& directory : wanted) {
    if (descriptors_.emplace(directory, -1).second) {
      if (AddWatch(directory)) {
        added.push_back(directory);
      }
    }
  }
  if (!added.empty()) {
    log_->info("watching directories={}", LogValue(absl::StrJoin(added, ",")));
  }
  // The thread recomputes its retry deadline.
  const uint64_t one = 1;
  (void)write(wake_fd_, &one, sizeof(one));
}

void DirectoryWatcher::Start(OnChange on_change) {
  absl::MutexLock lock(&stop_mu_);
  if (closed_ || thread_.joinable()) {
    return;
  }
  on_change_ = std::move(on_change);
  thread_ = std::thread([this] { Loop(); });
  pthread_setname_np(thread_.native_handle(), "schemad-watch");
}

void DirectoryWatcher::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  absl::MutexLock lock(&stop_mu_);
  if (closed_) {
    return;
  }
  const uint64_t one = 1;
  (void)write(wake_fd_, &one, sizeof(one));
  if (thread_.joinable()) {
    thread_.join();
  }
  close(inotify_fd_);  // ends every watch
  close(wake_fd_);
  closed_ = true;
  absl::MutexLock state_lock(&mu_);
  descriptors_.clear();
  directories_.clear();
}

std::vector<std::string> DirectoryWatcher::watched() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  for (const auto& [directory, descriptor] : descriptors_) {
    if (descriptor >= 0) {
      out.push_back(directory);
    }
  }
  return out;
}

bool DirectoryWatcher::AddWatch(const std::string& directory) {
  const int descriptor = inotify_add_watch(inotify_fd_, directory.c_str(), kChangeMask);
  if (descriptor < 0) {
    const int error = errno;
    if (failure_logged_.insert(directory).second) {
      log_->warn("cannot watch directory={} error={} retry_ms={}", LogValue(directory),
                 LogValue(std::strerror(error)), absl::ToInt64Milliseconds(options_.retry));
    }
    return false;
  }
  descriptors_[directory] = descriptor;
  directories_[descriptor].insert(directory);
  if (failure_logged_.erase(directory) > 0) {
    log_->info("watching directory={} again", LogValue(directory));
  }
  return true;
}

void DirectoryWatcher::DropWatch(const std::string& directory, bool remove_from_kernel) {
  auto it = descriptors_.find(directory);
  if (it == descriptors_.end() || it->second < 0) {
    return;
  }
  const int descriptor = it->second;
  it->second = -1;
  std::set<std::string>& sharing = directories_[descriptor];
  sharing.erase(directory);
  if (sharing.empty()) {
    directories_.erase(descriptor);
    if (remove_from_kernel) {
      (void)inotify_rm_watch(inotify_fd_, descriptor);
    }
  }
}

bool DirectoryWatcher::HasUnwatched() const {
  return std::any_of(descriptors_.begin(), descriptors_.end(),
                     [](const auto& entry) { return entry.second < 0; });
}

void DirectoryWatcher::RetryUnwatched(std::set<std::string>& changed) {
  absl::MutexLock lock(&mu_);
  for (auto& [directory, descriptor] : descriptors_) {
    if (descriptor < 0 && AddWatch(directory)) {
      changed.insert(directory);  // it is back: what is in it now is new
    }
  }
}

bool DirectoryWatcher::ReadEvents(std::set<std::string>& changed) {
  alignas(inotify_event) char buffer[16 * 1024];
  bool any = false;
  for (;;) {
    const ssize_t length = read(inotify_fd_, buffer, sizeof(buffer));
    if (length < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno != EAGAIN) {
        log_->error("reading inotify events failed error={}", LogValue(std::strerror(errno)));
      }
      return any;
    }
    if (length == 0) {
      return any;
    }
    absl::MutexLock lock(&mu_);
    for (ssize_t offset = 0; offset < length;) {
      const auto* event = reinterpret_cast<const inotify_event*>(buffer + offset);
      offset += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
      if ((event->mask & IN_Q_OVERFLOW) != 0) {
        // Events were lost: any directory may have changed.
        log_->warn("inotify event queue overflowed: reloading every watched directory");
        for (const auto& [directory, descriptor] : descriptors_) {
          changed.insert(directory);
        }
        any = true;
        continue;
      }
      auto it = directories_.find(event->wd);
      if (it == directories_.end()) {
        continue;  // a watch dropped meanwhile
      }
      const std::set<std::string> directories = it->second;
      changed.insert(directories.begin(), directories.end());
      any = true;
      if ((event->mask & kGoneMask) != 0) {
        // Watched again (and reported) once something is at the path again.
        for (const std::string& directory : directories) {
          log_->warn("watched directory={} is gone, retry_ms={}", LogValue(directory),
                     absl::ToInt64Milliseconds(options_.retry));
          failure_logged_.insert(directory);
          DropWatch(directory, /*remove_from_kernel=*/(event->mask & IN_IGNORED) == 0);
        }
      }
    }
  }
}

void DirectoryWatcher::Loop() {
  std::set<std::string> changed;
  absl::Time quiet_at = absl::InfiniteFuture();  // when `changed` is reported
  absl::Time retry_at = absl::InfiniteFuture();  // when unwatched directories are tried again
  for (;;) {
    bool unwatched = false;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) {
        return;
      }
      unwatched = HasUnwatched();
    }
    absl::Time now = absl::Now();
    if (!unwatched) {
      retry_at = absl::InfiniteFuture();
    } else if (retry_at == absl::InfiniteFuture()) {
      retry_at = now + options_.retry;
    } else if (now >= retry_at) {
      const size_t before = changed.size();
      RetryUnwatched(changed);
      if (changed.size() != before) {
        quiet_at = now + options_.settle;
      }
      retry_at = now + options_.retry;
    }
    if (!changed.empty() && now >= quiet_at) {
      std::vector<std::string> report;
      {
        absl::MutexLock lock(&mu_);
        for (const std::string& directory : changed) {
          if (descriptors_.count(directory) > 0) {  // still asked for
            report.push_back(directory);
          }
        }
      }
      changed.clear();
      quiet_at = absl::InfiniteFuture();
      if (!report.empty()) {
        log_->debug("directories changed directories={}", LogValue(absl::StrJoin(report, ",")));
        on_change_(report);
      }
      continue;
    }

    pollfd fds[2] = {{inotify_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    const int ready = poll(fds, 2, PollTimeout(std::min(quiet_at, retry_at), now));
    if (ready < 0) {
      if (errno != EINTR) {
        log_->error("waiting for inotify events failed error={}", LogValue(std::strerror(errno)));
        absl::SleepFor(options_.retry);  // not a busy loop
      }
      continue;
    }
    if ((fds[1].revents & POLLIN) != 0) {
      uint64_t count = 0;
      (void)read(wake_fd_, &count, sizeof(count));  // Watch or Stop: look again
    }
    if ((fds[0].revents & POLLIN) != 0 && ReadEvents(changed)) {
      quiet_at = absl::Now() + options_.settle;
    }
  }
}

}  // namespace schemad::server
