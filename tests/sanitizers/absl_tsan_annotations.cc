// Teaches ThreadSanitizer the happens-before edges of absl::Mutex and
// absl::CondVar (tsan preset only; see tests/sanitizers/CMakeLists.txt).
//
// Debian's abseil is not built with -fsanitize=thread, so TSan does not see
// absl::Mutex lock and unlock: its fast path is an atomic in uninstrumented
// code and its slow path a futex. Every access that an absl::Mutex orders
// would be reported as a race, in schemad's frames and in gRPC's (whose
// grpc_core::Mutex is an absl::Mutex). This library, linked ahead of
// libabsl_synchronization.so, interposes the public locking functions:
// each calls the real one (dlsym RTLD_NEXT) and tells TSan what it did
// (__tsan_acquire after taking the mutex, __tsan_release before giving it
// up, also around a CondVar wait and inside a Condition's evaluation, which
// absl runs with the mutex held). What it does not model: lock order
// (TSan's deadlock detector does not see these mutexes) and reader/writer
// distinction (a reader lock is treated as a lock).
//
// Thread-safety: the functions are called concurrently, like the real ones;
// the real-function pointers are resolved once (function-local statics).
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace {

// Debian 12's libabsl (20220623, inline namespace debian3): the mangled names
// of the functions interposed below.
#define SCHEMAD_ABSL_NS "N4absl7debian3"

template <typename Fn>
Fn Real(const char* symbol) {
  void* fn = dlsym(RTLD_NEXT, symbol);
  if (fn == nullptr) {
    std::fprintf(stderr, "absl_tsan_annotations: %s not found (not Debian 12's abseil?)\n", symbol);
    std::abort();
  }
  return reinterpret_cast<Fn>(fn);
}

#define SCHEMAD_REAL(type, symbol)             \
  static const auto real = Real<type>(symbol); \
  (void)0

void Acquired(const void* mu) { __tsan_acquire(const_cast<void*>(mu)); }
void Releasing(const void* mu) { __tsan_release(const_cast<void*>(mu)); }

// Wraps a Condition for absl, which evaluates it with the mutex held, in the
// waiting thread or in the one unlocking on its behalf, and may then release
// the mutex internally (not through Unlock). So: `inner` and this wrapper
// were published by the waiter (Publish, before handing them to absl); the
// evaluation acquires the mutex and releases it after.
struct HeldCondition {
  const absl::Condition* inner;
  const absl::Mutex* mu;
  void Publish() { Releasing(this); }
  static bool Eval(HeldCondition* self) {
    Acquired(self);
    Acquired(self->mu);
    const bool met = self->inner->Eval();
    Releasing(self->mu);
    return met;
  }
};

using LockFn = void (*)(absl::Mutex*);
using TryLockFn = bool (*)(absl::Mutex*);
using WhenFn = void (*)(absl::Mutex*, const absl::Condition&);
using WhenTimeoutFn = bool (*)(absl::Mutex*, const absl::Condition&, absl::Duration);
using WhenDeadlineFn = bool (*)(absl::Mutex*, const absl::Condition&, absl::Time);
using WaitFn = void (*)(absl::CondVar*, absl::Mutex*);
using WaitTimeoutFn = bool (*)(absl::CondVar*, absl::Mutex*, absl::Duration);
using WaitDeadlineFn = bool (*)(absl::CondVar*, absl::Mutex*, absl::Time);

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  SCHEMAD_REAL(LockFn, "_Z" SCHEMAD_ABSL_NS "5Mutex4LockEv");
  real(this);
  Acquired(this);
}

void Mutex::ReaderLock() {
  SCHEMAD_REAL(LockFn, "_Z" SCHEMAD_ABSL_NS "5Mutex10ReaderLockEv");
  real(this);
  Acquired(this);
}

bool Mutex::TryLock() {
  SCHEMAD_REAL(TryLockFn, "_Z" SCHEMAD_ABSL_NS "5Mutex7TryLockEv");
  const bool locked = real(this);
  if (locked) {
    Acquired(this);
  }
  return locked;
}

bool Mutex::ReaderTryLock() {
  SCHEMAD_REAL(TryLockFn, "_Z" SCHEMAD_ABSL_NS "5Mutex13ReaderTryLockEv");
  const bool locked = real(this);
  if (locked) {
    Acquired(this);
  }
  return locked;
}

void Mutex::Unlock() {
  SCHEMAD_REAL(LockFn, "_Z" SCHEMAD_ABSL_NS "5Mutex6UnlockEv");
  Releasing(this);
  real(this);
}

void Mutex::ReaderUnlock() {
  SCHEMAD_REAL(LockFn, "_Z" SCHEMAD_ABSL_NS "5Mutex12ReaderUnlockEv");
  Releasing(this);
  real(this);
}

#define SCHEMAD_WHEN(name, mangled)                                          \
  void Mutex::name(const Condition& cond) {                                  \
    SCHEMAD_REAL(WhenFn, "_Z" SCHEMAD_ABSL_NS mangled "ERKNS0_9ConditionE"); \
    HeldCondition held{&cond, this};                                         \
    held.Publish();                                                          \
    real(this, Condition(&HeldCondition::Eval, &held));                      \
    Acquired(this);                                                          \
  }
SCHEMAD_WHEN(LockWhen, "5Mutex8LockWhen")
SCHEMAD_WHEN(ReaderLockWhen, "5Mutex14ReaderLockWhen")
#undef SCHEMAD_WHEN

#define SCHEMAD_WHEN_LIMITED(name, mangled, fn_type, limit_type, limit_mangled)             \
  bool Mutex::name(const Condition& cond, limit_type limit) {                               \
    SCHEMAD_REAL(fn_type, "_Z" SCHEMAD_ABSL_NS mangled "ERKNS0_9ConditionE" limit_mangled); \
    HeldCondition held{&cond, this};                                                        \
    held.Publish();                                                                         \
    const bool met = real(this, Condition(&HeldCondition::Eval, &held), limit);             \
    Acquired(this);                                                                         \
    return met;                                                                             \
  }
SCHEMAD_WHEN_LIMITED(LockWhenWithTimeout, "5Mutex19LockWhenWithTimeout", WhenTimeoutFn, Duration,
                     "NS0_8DurationE")
SCHEMAD_WHEN_LIMITED(LockWhenWithDeadline, "5Mutex20LockWhenWithDeadline", WhenDeadlineFn, Time,
                     "NS0_4TimeE")
SCHEMAD_WHEN_LIMITED(ReaderLockWhenWithTimeout, "5Mutex25ReaderLockWhenWithTimeout", WhenTimeoutFn,
                     Duration, "NS0_8DurationE")
SCHEMAD_WHEN_LIMITED(ReaderLockWhenWithDeadline, "5Mutex26ReaderLockWhenWithDeadline",
                     WhenDeadlineFn, Time, "NS0_4TimeE")
#undef SCHEMAD_WHEN_LIMITED

void Mutex::Await(const Condition& cond) {
  SCHEMAD_REAL(WhenFn, "_Z" SCHEMAD_ABSL_NS "5Mutex5AwaitERKNS0_9ConditionE");
  HeldCondition held{&cond, this};
  held.Publish();
  Releasing(this);
  real(this, Condition(&HeldCondition::Eval, &held));
  Acquired(this);
}

#define SCHEMAD_AWAIT_LIMITED(name, mangled, fn_type, limit_type, limit_mangled)            \
  bool Mutex::name(const Condition& cond, limit_type limit) {                               \
    SCHEMAD_REAL(fn_type, "_Z" SCHEMAD_ABSL_NS mangled "ERKNS0_9ConditionE" limit_mangled); \
    HeldCondition held{&cond, this};                                                        \
    held.Publish();                                                                         \
    Releasing(this);                                                                        \
    const bool met = real(this, Condition(&HeldCondition::Eval, &held), limit);             \
    Acquired(this);                                                                         \
    return met;                                                                             \
  }
SCHEMAD_AWAIT_LIMITED(AwaitWithTimeout, "5Mutex16AwaitWithTimeout", WhenTimeoutFn, Duration,
                      "NS0_8DurationE")
SCHEMAD_AWAIT_LIMITED(AwaitWithDeadline, "5Mutex17AwaitWithDeadline", WhenDeadlineFn, Time,
                      "NS0_4TimeE")
#undef SCHEMAD_AWAIT_LIMITED

void CondVar::Wait(Mutex* mu) {
  SCHEMAD_REAL(WaitFn, "_Z" SCHEMAD_ABSL_NS "7CondVar4WaitEPNS0_5MutexE");
  Releasing(mu);
  real(this, mu);
  Acquired(mu);
}

bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  SCHEMAD_REAL(WaitTimeoutFn,
               "_Z" SCHEMAD_ABSL_NS "7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  Releasing(mu);
  const bool timed_out = real(this, mu, timeout);
  Acquired(mu);
  return timed_out;
}

bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  SCHEMAD_REAL(WaitDeadlineFn,
               "_Z" SCHEMAD_ABSL_NS "7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  Releasing(mu);
  const bool timed_out = real(this, mu, deadline);
  Acquired(mu);
  return timed_out;
}

ABSL_NAMESPACE_END
}  // namespace absl
