// tests/gtest_main.cpp — GoogleTest main for single-process test
// executables: GoogleTest's own, and a filter that selects no test fails
// (gtest_checks.h).
#include <gtest/gtest.h>

#include "gtest_checks.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const int failed = RUN_ALL_TESTS();
  return failed != 0 || paratorch_test::fail_if_no_test_ran() != 0 ? 1 : 0;
}
