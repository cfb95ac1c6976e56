// tests/mpi_test_main.cpp — GoogleTest main for tests run under mpirun:
// one World for the whole process; only rank 0 prints results.
#include <gtest/gtest.h>

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
  }
  int failed = RUN_ALL_TESTS();
  // A test that failed on any rank fails the job.
  auto flag = torch::tensor({failed ? 1 : 0}, torch::kInt);
  world.comm()->all_reduce(flag, paratorch::ReduceOp::kMax);
  return flag.item<int>();
}
