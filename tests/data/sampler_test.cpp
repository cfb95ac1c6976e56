// tests/data/sampler_test.cpp — dp slices partition the same global batch.
#include <gtest/gtest.h>

#include <paratorch/errors.h>
#include <paratorch/sampler.h>

using paratorch::DistributedSampler;

TEST(Sampler, SlicesPartitionTheGlobalBatchInEveryLayout) {
  for (int dp : {1, 2, 4, 8}) {
    std::vector<int64_t> joined;
    for (int r = 0; r < dp; ++r) {
      auto ids = DistributedSampler(16, r, dp).local_indices(3);
      EXPECT_EQ(ids.size(), 16u / dp);
      joined.insert(joined.end(), ids.begin(), ids.end());
    }
    EXPECT_EQ(joined, DistributedSampler(16, 0, 1).global_indices(3));
  }
}

TEST(Sampler, BatchNotDivisibleByDpIsAUsageError) {
  try {
    DistributedSampler(15, 0, 2);
    FAIL();
  } catch (const paratorch::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("DistributedSampler::global_batch = 15 must be a positive multiple of DistributedSampler::dp_size = 2"),
              std::string::npos) << e.what();
  }
}

// share_of cuts any id list as local_indices cuts a step's batch (the
// engines slice validation batches with it): contiguous, in rank order.
TEST(Sampler, ShareOfAnyListFollowsTheSameRule) {
  const std::vector<int64_t> ids = {40, 41, 7, 9, 100, 3};
  EXPECT_EQ(DistributedSampler::share_of(ids, 1, 3), (std::vector<int64_t>{7, 9}));
  EXPECT_EQ(DistributedSampler::share_of(ids, 0, 2), (std::vector<int64_t>{40, 41, 7}));
  DistributedSampler s(12, 2, 4);
  EXPECT_EQ(s.local_indices(5), DistributedSampler::share_of(s.global_indices(5), 2, 4));
  EXPECT_EQ(s.local_indices(5), (std::vector<int64_t>{66, 67, 68}));
  EXPECT_THROW(DistributedSampler::share_of(ids, 0, 4), paratorch::UsageError);
  EXPECT_THROW(DistributedSampler::share_of(ids, 3, 3), paratorch::UsageError);
}
