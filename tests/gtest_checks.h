// tests/gtest_checks.h — what every paratorch GoogleTest main adds to
// GoogleTest's own: a run that selects no test fails (a mistyped
// --gtest_filter must not pass as "0 tests, OK"), and a multi-rank run
// prints the failures of every rank, not only rank 0's.
#pragma once
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

namespace paratorch_test {

/// Non-zero (with a message) when the filter selected no test. Listing
/// tests (--gtest_list_tests, used by CTest's test discovery) runs none and
/// is not a failure.
inline int fail_if_no_test_ran() {
  if (::testing::GTEST_FLAG(list_tests)) return 0;
  const auto* unit = ::testing::UnitTest::GetInstance();
  if (unit->test_to_run_count() > 0) return 0;
  std::fprintf(stderr, "FAIL: --gtest_filter=%s selects no test (of %d)\n",
               ::testing::GTEST_FLAG(filter).c_str(), unit->total_test_count());
  return 1;
}

/// Prints each failed assertion and failed test of this process, every
/// line prefixed "[rank R]", for ranks whose default printer is removed.
class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : prefix_("[rank " + std::to_string(rank) + "] ") {}

  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::string text = std::string(result.file_name() ? result.file_name() : "?") + ":" +
                       std::to_string(result.line_number()) + ": Failure\n" + result.message();
    print(text);
  }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    if (info.result()->Failed())
      print(std::string("FAILED ") + info.test_suite_name() + "." + info.name());
  }

 private:
  void print(const std::string& text) const {
    std::string out = prefix_;
    for (char c : text) {
      out += c;
      if (c == '\n') out += prefix_;
    }
    std::fprintf(stderr, "%s\n", out.c_str());
    std::fflush(stderr);
  }
  std::string prefix_;
};

}  // namespace paratorch_test
