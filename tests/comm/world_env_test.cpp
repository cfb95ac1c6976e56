// tests/comm/world_env_test.cpp — what linking World does to the process
// before main: OpenMP workers wait passively unless the user chose a policy.
#include <gtest/gtest.h>

#include <paratorch/world.h>

#include <cstdlib>

TEST(WorldEnv, OpenmpWaitPolicyIsSetBeforeMain) {
  if (std::getenv("GOMP_SPINCOUNT")) GTEST_SKIP() << "GOMP_SPINCOUNT set: the user tuned libgomp directly";
  const char* env = std::getenv("OMP_WAIT_POLICY");
  ASSERT_NE(env, nullptr) << "the pre-initializer in world.cpp did not run";
  // "passive" unless the test was started with a policy of its own.
  EXPECT_STREQ(paratorch::openmp_wait_policy(), env);
}

TEST(WorldEnv, AvailableCoresIsPositive) { EXPECT_GE(paratorch::available_cores(), 1); }
