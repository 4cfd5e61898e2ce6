// FUZZ_CHECK: the oracle of the fuzz targets. A property that does not hold
// prints what was expected and aborts, which libFuzzer reports as a crash and
// saves the input.
//
//   FUZZ_CHECK(statement.line >= first_line) << "statement " << i;
//
// Thread-safety: libFuzzer calls a target from one thread.
#ifndef SCHEMAD_TESTS_FUZZ_FUZZ_CHECK_H_
#define SCHEMAD_TESTS_FUZZ_FUZZ_CHECK_H_

#include <cstdlib>
#include <iostream>
#include <sstream>

namespace schemad::fuzz {

// Collects the message of a failed check and aborts when it goes away.
class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition) {
    stream_ << file << ":" << line << ": FUZZ_CHECK failed: " << condition << " ";
  }
  ~CheckFailure() {
    std::cerr << stream_.str() << std::endl;
    std::abort();
  }
  CheckFailure(const CheckFailure&) = delete;
  CheckFailure& operator=(const CheckFailure&) = delete;
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

}  // namespace schemad::fuzz

#define FUZZ_CHECK(condition) \
  if (condition) {            \
  } else                      \
    ::schemad::fuzz::CheckFailure(__FILE__, __LINE__, #condition).stream()

#endif  // SCHEMAD_TESTS_FUZZ_FUZZ_CHECK_H_
