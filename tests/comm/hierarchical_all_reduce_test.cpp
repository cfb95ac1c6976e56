// tests/comm/hierarchical_all_reduce_test.cpp — the host-by-host all-reduce
// (comm/hierarchical_all_reduce.h) against the elementwise reference, on 3
// and 4 ranks grouped into "hosts" of 2 (PARATORCH_NODE_SIZE): {0,1},{2} and
// {0,1},{2,3}.
#include <gtest/gtest.h>

#include "mpi_test_env.h"
#include "comm/hierarchical_all_reduce.h"
#include "comm/reduce_reference.h"

#include <cstdlib>

using paratorch::ReduceOp;

namespace {

std::unique_ptr<paratorch::comm::HierarchicalAllReduce> hosts_of_two() {
  setenv("PARATORCH_NODE_SIZE", "2", 1);
  auto h = paratorch::comm::HierarchicalAllReduce::create(MPI_COMM_WORLD);
  unsetenv("PARATORCH_NODE_SIZE");
  return h;
}

}  // namespace

TEST(HierarchicalAllReduce, MatchesTheElementwiseReferenceOnEveryRank) {
  auto h = hosts_of_two();
  ASSERT_TRUE(h) << "3 or 4 ranks in hosts of 2 span two hosts";
  EXPECT_EQ(h->hosts(), 2);
  expect_all_reduce_matches_reference(100003, [&](torch::Tensor& t, ReduceOp op) { h->run(t, op); });
}

// The hierarchical-or-flat choice is measured once per size class and must
// be the same on every rank, or the ranks would run different collectives.
TEST(HierarchicalAllReduce, ChoiceIsTheSameOnEveryRankAndKept) {
  auto h = hosts_of_two();
  ASSERT_TRUE(h);
  auto comm = test_world().comm();
  for (int64_t bytes : {int64_t{256} << 10, int64_t{2} << 20}) {
    const bool first = h->beats_flat(bytes);
    auto verdicts = torch::zeros({test_world().size()}, torch::kInt);
    comm->all_gather(verdicts, torch::tensor({first ? 1 : 0}, torch::kInt));
    EXPECT_TRUE(torch::equal(verdicts, torch::full_like(verdicts, first ? 1 : 0))) << bytes << " bytes";
    EXPECT_EQ(h->beats_flat(bytes + bytes / 2), first) << "the same size class keeps its verdict";
  }
}

// One host (every rank on this machine), or one rank per host: nothing to gain.
TEST(HierarchicalAllReduce, NotBuiltWithinOneHostOrWithOneRankPerHost) {
  EXPECT_FALSE(paratorch::comm::HierarchicalAllReduce::create(MPI_COMM_WORLD));
  setenv("PARATORCH_NODE_SIZE", "1", 1);
  EXPECT_FALSE(paratorch::comm::HierarchicalAllReduce::create(MPI_COMM_WORLD));
  unsetenv("PARATORCH_NODE_SIZE");
}

// Small sizes, so a 100003-element buffer crosses every boundary: two rails
// where every host has two ranks, several ring segments per chunk, and
// several window chunks in the host steps' reduce-scatter and all-gather.
TEST(HierarchicalAllReduce, RailsSegmentsAndWindowChunksMatchTheReference) {
  setenv("PARATORCH_NODE_SIZE", "2", 1);
  paratorch::comm::HierarchicalTuning small;
  small.min_rail_bytes = 64 << 10;
  small.ring_segment_bytes = 16 << 10;
  small.window_chunk_bytes = 96 << 10;
  auto h = paratorch::comm::HierarchicalAllReduce::create(MPI_COMM_WORLD, small);
  unsetenv("PARATORCH_NODE_SIZE");
  ASSERT_TRUE(h);
  expect_all_reduce_matches_reference(100003, [&](torch::Tensor& t, ReduceOp op) { h->run(t, op); });
  // Fewer elements than rails x hosts: some slices and chunks are empty.
  expect_all_reduce_matches_reference(3, [&](torch::Tensor& t, ReduceOp op) { h->run(t, op); });
}
