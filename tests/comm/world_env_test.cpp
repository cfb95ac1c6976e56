// tests/comm/world_env_test.cpp — what linking World does to the process
// before main: idle OpenMP and OpenBLAS threads nap soon, unless the user
// chose otherwise (see the pre-initializer in src/comm/world.cpp).
#include <gtest/gtest.h>

#include <paratorch/world.h>

#include <cstdlib>

TEST(WorldEnv, IdleThreadPoliciesAreSetBeforeMain) {
  EXPECT_GE(paratorch::available_cores(), 1);  // also links world.cpp, and with it the pre-initializer
  // Either the user's own value or the default the process re-executed with.
  if (!std::getenv("GOMP_SPINCOUNT")) EXPECT_NE(std::getenv("OMP_WAIT_POLICY"), nullptr);
  EXPECT_NE(std::getenv("OPENBLAS_THREAD_TIMEOUT"), nullptr);
}
