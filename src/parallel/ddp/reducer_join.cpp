// src/parallel/ddp/reducer_join.cpp — the Reducer's join protocol for uneven
// inputs (reducer.h; PyTorch's Join): every synchronized pass starts with a
// one-integer all-reduce of "still training" flags, whose sum divides that
// pass; a rank out of data shadows the others' bucket reductions with zeros,
// in the same order, until the sum is 0.
#include "parallel/ddp/reducer.h"

#include <paratorch/errors.h>

namespace paratorch {

void Reducer::enable_join() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (caller_buckets_)
    throw UsageError("paratorch: join (uneven inputs) needs the all-reduce mode of the gradient reducer");
  join_enabled_ = true;
}

int Reducer::active_ranks(bool me_active) {
  auto flag = torch::tensor({me_active ? 1 : 0}, torch::kInt);
  comm_->all_reduce(flag, ReduceOp::kSum);
  return flag.item<int>();
}

int64_t Reducer::join_until_all_done() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!join_enabled_) return 0;
  int64_t shadowed = 0;
  torch::NoGradGuard no_grad;
  for (int active = active_ranks(false); active > 0; active = active_ranks(false)) {
    for (size_t b = 0; b < buckets_.size(); ++b) {
      // Zeros, so this rank adds nothing; the hook may compress them like any bucket.
      buckets_[b].flat.zero_();
      GradBucket bucket = bucket_view(b);
      bucket.divisor = active;
      hook_(*comm_, bucket)->wait();
      ++shadowed;
    }
  }
  join_enabled_ = false;
  divisor_ = comm_->size();
  return shadowed;
}

}  // namespace paratorch
