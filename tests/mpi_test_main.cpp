// tests/mpi_test_main.cpp — GoogleTest main for tests run under mpirun:
// one World for the whole process. Rank 0 prints GoogleTest's usual
// results; every other rank prints its failures only, prefixed "[rank R]".
#include <gtest/gtest.h>

#include <cstdio>

#include "gtest_checks.h"
#include "mpi_test_env.h"

paratorch::World* g_world = nullptr;

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  paratorch::WorldOptions options;
  options.comm.timeout_s = 60;
  paratorch::World world(argc, argv, options);
  g_world = &world;
  if (world.rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new paratorch_test::RankFailurePrinter(world.rank()));
  }
  int failed = RUN_ALL_TESTS() != 0 || paratorch_test::fail_if_no_test_ran() != 0;
  // A test that failed on any rank fails the job.
  auto flag = torch::tensor({failed ? 1 : 0}, torch::kInt);
  world.comm()->all_reduce(flag, paratorch::ReduceOp::kMax);
  if (flag.item<int>() != 0 && !failed && world.rank() == 0)
    std::fprintf(stderr, "FAIL: a test failed on another rank (its lines start with [rank R])\n");
  return flag.item<int>();
}
