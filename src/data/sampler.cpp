// src/data/sampler.cpp — see paratorch/sampler.h.
#include <paratorch/errors.h>
#include <paratorch/sampler.h>

#include <string>

namespace paratorch {

DistributedSampler::DistributedSampler(int64_t global_batch, int dp_rank, int dp_size)
    : global_batch_(global_batch), dp_rank_(dp_rank), dp_size_(dp_size) {
  if (dp_size < 1 || dp_rank < 0 || dp_rank >= dp_size)
    throw UsageError("paratorch: data-parallel rank " + std::to_string(dp_rank) + " of " +
                     std::to_string(dp_size) + " is invalid");
  if (global_batch < 1 || global_batch % dp_size != 0) {
    std::string hint = "";
    if (global_batch >= 1) {
      int64_t lower = global_batch / dp_size * dp_size, upper = lower + dp_size;
      hint = " (for example " + (lower > 0 ? std::to_string(lower) + " or " : "") + std::to_string(upper) + ")";
    }
    throw UsageError("paratorch: DistributedSampler::global_batch = " + std::to_string(global_batch) +
                     " must be a positive multiple of DistributedSampler::dp_size = " + std::to_string(dp_size) + hint);
  }
}

std::vector<int64_t> DistributedSampler::global_indices(int64_t step) const {
  std::vector<int64_t> ids(static_cast<size_t>(global_batch_));
  for (int64_t j = 0; j < global_batch_; ++j) ids[static_cast<size_t>(j)] = step * global_batch_ + j;
  return ids;
}

std::vector<int64_t> DistributedSampler::local_indices(int64_t step) const {
  return share_of(global_indices(step), dp_rank_, dp_size_);
}

std::vector<int64_t> DistributedSampler::share_of(const std::vector<int64_t>& ids, int dp_rank, int dp_size) {
  if (dp_size < 1 || dp_rank < 0 || dp_rank >= dp_size || ids.size() % static_cast<size_t>(dp_size) != 0)
    throw UsageError("paratorch: DistributedSampler::share_of: " + std::to_string(ids.size()) +
                     " sample ids do not split into " + std::to_string(dp_size) + " equal shares (rank " +
                     std::to_string(dp_rank) + ")");
  const size_t n = ids.size() / static_cast<size_t>(dp_size), r = static_cast<size_t>(dp_rank);
  return std::vector<int64_t>(ids.begin() + static_cast<std::ptrdiff_t>(r * n),
                              ids.begin() + static_cast<std::ptrdiff_t>((r + 1) * n));
}

}  // namespace paratorch
