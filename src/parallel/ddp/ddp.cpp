// src/parallel/ddp/ddp.cpp — DistributedDataParallel: set-up and the public face
// of the Reducer.
#include <paratorch/ddp.h>
#include <paratorch/errors.h>

#include "parallel/ddp/reducer.h"

namespace paratorch {

void DDPOptions::validate() const {
  if (!(bucket_mb > 0))
    throw UsageError("paratorch: DDPOptions::bucket_mb must be > 0, got " + std::to_string(bucket_mb));
  if (main_grad_dtype && !c10::isFloatingType(*main_grad_dtype))
    throw UsageError(std::string("paratorch: DDPOptions::main_grad_dtype = ") + c10::toString(*main_grad_dtype) +
                     " is not a floating-point dtype; use torch::kFloat (or leave it unset)");
}

DistributedDataParallel::DistributedDataParallel(std::shared_ptr<torch::nn::Module> module,
                                                 std::shared_ptr<Communicator> comm,
                                                 DDPOptions options)
    : module_(std::move(module)), comm_(std::move(comm)), broadcast_buffers_(options.broadcast_buffers) {
  options.validate();
  std::vector<torch::Tensor> params;
  std::vector<std::string> names;
  for (const auto& item : module_->named_parameters(/*recurse=*/true)) {
    names.push_back(item.key());
    params.push_back(item.value());
  }
  // Every replica starts from rank 0's weights.
  {
    torch::NoGradGuard no_grad;
    for (auto& p : params) comm_->broadcast(p.data(), 0);
    if (options.broadcast_buffers)
      for (auto& b : module_->buffers(true)) comm_->broadcast(b, 0);
  }
  reducer_ = std::make_shared<Reducer>(std::move(params), std::move(names), comm_, options);
  reducer_->install_hooks();
}

DistributedDataParallel::~DistributedDataParallel() = default;

void DistributedDataParallel::finish() { reducer_->finalize(); }

void DistributedDataParallel::register_comm_hook(CommHook hook) {
  if (!hook) throw UsageError("paratorch DDP: register_comm_hook() needs a hook; pass comm_hooks::allreduce() for the default");
  reducer_->set_comm_hook(std::move(hook));
}

DistributedDataParallel::Join DistributedDataParallel::join() { return Join(*this); }

DistributedDataParallel::Join::Join(DistributedDataParallel& ddp) : ddp_(&ddp) { ddp_->reducer_->enable_join(); }

DistributedDataParallel::Join::Join(Join&& other) noexcept : ddp_(other.ddp_) { other.ddp_ = nullptr; }

DistributedDataParallel::Join::~Join() {
  if (ddp_ && std::uncaught_exceptions() == 0) finish();
}

int64_t DistributedDataParallel::Join::finish() {
  if (!ddp_) return 0;
  DistributedDataParallel& ddp = *ddp_;
  ddp_ = nullptr;
  const int64_t shadowed = ddp.reducer_->join_until_all_done();
  // Ranks that stopped early hold older weights: every replica takes those
  // of the rank with the most steps (the lowest such rank on ties).
  Communicator& comm = *ddp.comm_;
  auto key = torch::tensor({ddp.reducer_->passes() * comm.size() + (comm.size() - 1 - comm.rank())}, torch::kLong);
  comm.all_reduce(key, ReduceOp::kMax);
  const int source = comm.size() - 1 - static_cast<int>(key.item<int64_t>() % comm.size());
  torch::NoGradGuard no_grad;
  for (auto& p : ddp.module_->parameters(true)) comm.broadcast(p.data(), source);
  if (ddp.broadcast_buffers_)
    for (auto& b : ddp.module_->buffers(true)) comm.broadcast(b, source);
  return shadowed;
}

DistributedDataParallel::NoSync DistributedDataParallel::no_sync() { return NoSync(*reducer_); }

const std::vector<BucketLayout>& DistributedDataParallel::buckets() const { return reducer_->layouts(); }

int64_t DistributedDataParallel::reductions_launched() const { return reducer_->reductions_launched(); }

std::vector<torch::Tensor> DistributedDataParallel::main_grads() const { return reducer_->main_grads(); }

DistributedDataParallel::NoSync::NoSync(Reducer& reducer) : reducer_(&reducer) { reducer_->set_sync(false); }

DistributedDataParallel::NoSync::NoSync(NoSync&& other) noexcept : reducer_(other.reducer_) {
  other.reducer_ = nullptr;
}

DistributedDataParallel::NoSync::~NoSync() {
  if (reducer_) reducer_->set_sync(true);
}

}  // namespace paratorch
