// Waiting for an event in tests without sleeping for a guessed time:
//
//   ASSERT_TRUE(PollUntil([&] { return pool.idle() == 2; }));
//
// Header-only; no database, no gRPC.
#ifndef SCHEMAD_TESTS_TESTING_POLL_H_
#define SCHEMAD_TESTS_TESTING_POLL_H_

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace schemad::testing {

// Calls `done` every `interval` until it returns true (true) or `timeout`
// has passed (false).
template <typename Predicate>
bool PollUntil(Predicate done, absl::Duration timeout = absl::Seconds(30),
               absl::Duration interval = absl::Milliseconds(20)) {
  for (const absl::Time deadline = absl::Now() + timeout; !done();) {
    if (absl::Now() > deadline) {
      return false;
    }
    absl::SleepFor(interval);
  }
  return true;
}

}  // namespace schemad::testing

#endif  // SCHEMAD_TESTS_TESTING_POLL_H_
