// paratorch/sampler.h — which samples each rank computes at each step.
//
// The global batch of step s is samples [s*B, (s+1)*B) of one seeded sample
// stream, in every layout. A layout only decides who computes which part:
// data-parallel rank r takes the r-th contiguous slice of B/dp samples.
//
// Example:
///   paratorch::DistributedSampler sampler(/*global_batch=*/64, groups.coords().dp, groups.layout().dp);
///   std::vector<int64_t> mine = sampler.local_indices(step);   // 64/dp sample ids
#pragma once
#include <cstdint>
#include <vector>

namespace paratorch {

class DistributedSampler {
 public:
  /// Throws UsageError when global_batch is not divisible by dp_size.
  DistributedSampler(int64_t global_batch, int dp_rank, int dp_size);

  int64_t global_batch() const { return global_batch_; }
  int64_t local_batch() const { return global_batch_ / dp_size_; }
  /// Every sample id of step `step`, in order.
  std::vector<int64_t> global_indices(int64_t step) const;
  /// This rank's slice of global_indices(step): share_of(global_indices(step), dp_rank, dp_size).
  std::vector<int64_t> local_indices(int64_t step) const;
  /// Rank `dp_rank`'s contiguous share of any list of `ids` over `dp_size`
  /// ranks (the rule above, for a validation batch too). UsageError unless
  /// ids.size() is a multiple of dp_size.
  static std::vector<int64_t> share_of(const std::vector<int64_t>& ids, int dp_rank, int dp_size);

 private:
  int64_t global_batch_;
  int dp_rank_, dp_size_;
};

}  // namespace paratorch
