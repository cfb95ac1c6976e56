// src/parallel/zero/gathered_flat.cpp — see gathered_flat.h.
#include "parallel/zero/gathered_flat.h"

#include "report/trace.h"

namespace paratorch::zero {

void GatheredFlat::start(Communicator& group, torch::Tensor src, bool src_from_pool, BufferPool& pool) {
  if (started()) return;
  torch::NoGradGuard no_grad;
  src_ = std::move(src);
  src_from_pool_ = src_from_pool;
  flat_ = pool.take(layout_->padded_numel(), src_.scalar_type(), src_.device());
  if (group.size() > 1 && flat_.numel() > 0)
    work_ = group.all_gather_async(flat_, src_);
  else
    flat_.copy_(src_);
}

void GatheredFlat::finish(BufferPool& pool) {
  if (gathered_) return;
  if (work_) {
    report::Tracer::Span span("all_gather wait", "comm");
    work_->wait();
  }
  work_.reset();
  if (src_from_pool_) pool.give(std::move(src_));
  src_ = torch::Tensor();
  const auto views = layout_->views(flat_);
  for (size_t k = 0; k < params_.size(); ++k) params_[k].set_data(views[k]);
  gathered_ = true;
}

void GatheredFlat::release(BufferPool& pool) {
  if (!gathered_) return;
  for (auto& p : params_) p.set_data(torch::empty({0}, flat_.options()));
  pool.give(std::move(flat_));
  gathered_ = false;
}

ShardReduction ShardReduction::start(size_t unit, torch::Tensor full, const FlatLayout& layout, Communicator& group,
                                     const CommHook& hook, BufferPool& pool) {
  ShardReduction r;
  r.unit = unit;
  r.full = std::move(full);
  r.reduced = pool.take(layout.shard_numel(), torch::kFloat, r.full.device());
  if (group.size() > 1 && r.full.numel() > 0) {
    GradBucket bucket{unit, r.full, group.size(), r.reduced};
    r.work = hook(group, bucket);
  } else {
    r.reduced.copy_(r.full.narrow(0, 0, r.reduced.numel()));
  }
  return r;
}

void ShardReduction::finish(torch::Tensor* grad, BufferPool& pool) {
  torch::NoGradGuard no_grad;
  if (work) work->wait();
  work.reset();
  if (grad->defined())
    grad->add_(reduced);
  else
    *grad = reduced;  // it becomes the gradient
  reduced = torch::Tensor();
  pool.give(std::move(full));
}

}  // namespace paratorch::zero
