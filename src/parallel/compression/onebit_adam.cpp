// src/parallel/compression/onebit_adam.cpp — 1-bit Adam (paratorch/compression.h;
// Tang et al., 2021, Algorithm 1).
//
// Warm-up (t <= T, gradients averaged by DDP), AdamW as src/optim does it:
//   p -= lr·wd·p;  m = β1·m + (1-β1)·g;  v = β2·v + (1-β2)·g²;
//   p -= lr/(1-β1^t) · m / (sqrt(v)/sqrt(1-β2^t) + ε)
// Compression (t > T, each rank's own g): v and its bias correction stay as
// they were at step T, so the denominator is a constant computed once;
//   m_i = β1·m + (1-β1)·g_i;  m = SignAllReduce(m_i) (the same on every rank);
//   p -= lr·wd·p;  p -= lr/(1-β1^t) · m / denom
#include <paratorch/compression.h>
#include <paratorch/errors.h>

#include "parallel/compression/onebit_kernels.h"
#include "parallel/compression/sign_allreduce.h"

#include <cmath>

namespace paratorch {

void OneBitAdamOptions::validate() const {
  auto beta_ok = [](double b) { return b >= 0 && b < 1; };
  if (!beta_ok(beta1) || !beta_ok(beta2))
    throw UsageError("paratorch: OneBitAdamOptions::beta1 and ::beta2 must lie in [0, 1)");
  if (!(eps > 0)) throw UsageError("paratorch: OneBitAdamOptions::eps must be > 0");
  if (!(weight_decay >= 0)) throw UsageError("paratorch: OneBitAdamOptions::weight_decay must be >= 0");
  if (freeze_step < 1)
    throw UsageError("paratorch: OneBitAdamOptions::freeze_step must be >= 1 (Adam's variance needs warm-up steps), got " +
                     std::to_string(freeze_step));
}

class OneBitAdam::Impl {
 public:
  Impl(std::vector<std::pair<std::string, torch::Tensor>> params, std::shared_ptr<Communicator> comm,
       OneBitAdamOptions options)
      : params_(std::move(params)), comm_(std::move(comm)), options_(options) {
    options_.validate();
    int64_t n = 0;
    for (auto& [name, p] : params_) {
      if (p.scalar_type() != torch::kFloat || !p.device().is_cpu() || !p.is_contiguous())
        throw UsageError("paratorch: OneBitAdam needs contiguous fp32 CPU parameters; '" + name + "' is " +
                         c10::toString(p.scalar_type()) + " on " + p.device().str());
      offsets_.push_back(n);
      n += p.numel();
    }
    allreduce_ = std::make_unique<compression::SignAllReduce>(n, comm_->size());
    exp_avg_ = torch::zeros({allreduce_->padded()}, torch::kFloat);  // padded: the all-reduce writes it in place
    exp_avg_sq_ = torch::zeros({n}, torch::kFloat);
  }

  bool compressing() const { return steps_ >= options_.freeze_step; }

  void step(double lr, double grad_scale) {
    torch::NoGradGuard no_grad;
    ++steps_;
    if (steps_ <= options_.freeze_step) return warm_up_step(lr, grad_scale);
    // Each rank's gradient into the momentum, then the compressed average.
    for (size_t i = 0; i < params_.size(); ++i) {
      const auto& g = params_[i].second.grad();
      auto m = slice(exp_avg_, i);
      if (!g.defined()) {
        m.mul_(options_.beta1);
        continue;
      }
      const auto flat = g.contiguous();
      compression::momentum_update(m.data_ptr<float>(), flat.data_ptr<float>(), m.numel(),
                                   static_cast<float>(options_.beta1),
                                   static_cast<float>((1 - options_.beta1) * grad_scale));
    }
    allreduce_->run(*comm_, exp_avg_);
    if (!denom_.defined()) freeze_variance();
    const double bias1 = 1 - std::pow(options_.beta1, static_cast<double>(steps_));
    for (size_t i = 0; i < params_.size(); ++i) {
      auto& p = params_[i].second;
      const bool decays = p.dim() >= 2 && options_.weight_decay != 0;
      compression::frozen_adam_update(p.data_ptr<float>(), slice(exp_avg_, i).data_ptr<float>(),
                                      slice(denom_, i).data_ptr<float>(), p.numel(),
                                      static_cast<float>(decays ? 1 - lr * options_.weight_decay : 1.0),
                                      static_cast<float>(lr / bias1));
    }
  }

  std::map<std::string, torch::Tensor> state_tensors() const {
    std::map<std::string, torch::Tensor> out{{"step", torch::tensor(steps_, torch::kLong)},
                                             {"onebit.worker_error", allreduce_->worker_error},
                                             {"onebit.server_error", allreduce_->server_error}};
    for (size_t i = 0; i < params_.size(); ++i) {
      const auto& p = params_[i].second;
      out[params_[i].first + ".exp_avg"] = slice(exp_avg_, i).view(p.sizes());
      out[params_[i].first + ".exp_avg_sq"] = slice(exp_avg_sq_, i).view(p.sizes());
    }
    return out;
  }

  void load_state_tensors(const std::map<std::string, torch::Tensor>& state) {
    torch::NoGradGuard no_grad;
    auto find = [&state](const std::string& key) -> const torch::Tensor& {
      auto it = state.find(key);
      if (it == state.end()) throw RuntimeFailure("paratorch: 1-bit Adam state has no '" + key + "'");
      return it->second;
    };
    steps_ = find("step").item<int64_t>();
    for (size_t i = 0; i < params_.size(); ++i) {
      const auto& name = params_[i].first;
      for (auto [suffix, flat] : {std::pair<const char*, torch::Tensor*>{".exp_avg", &exp_avg_}, {".exp_avg_sq", &exp_avg_sq_}}) {
        const auto& t = find(name + suffix);
        if (t.numel() != params_[i].second.numel())
          throw RuntimeFailure("paratorch: 1-bit Adam state '" + name + suffix + "' has " + std::to_string(t.numel()) +
                               " values, the parameter " + std::to_string(params_[i].second.numel()));
        slice(*flat, i).copy_(t.reshape(-1));
      }
    }
    // This rank's error compensation, when the state carries it (a
    // checkpoint of a plain AdamW run does not: it starts from zero).
    for (auto [key, target] : {std::pair<const char*, torch::Tensor*>{"onebit.worker_error", &allreduce_->worker_error},
                               {"onebit.server_error", &allreduce_->server_error}}) {
      auto it = state.find(key);
      if (it == state.end()) continue;
      if (it->second.numel() != target->numel())
        throw RuntimeFailure(std::string("paratorch: 1-bit Adam state '") + key + "' has " +
                             std::to_string(it->second.numel()) + " values, expected " + std::to_string(target->numel()) +
                             " (written with another number of data-parallel ranks)");
      target->copy_(it->second.reshape(-1));
    }
    denom_ = torch::Tensor();  // recomputed from the loaded variance at the next compressed step
  }

  int64_t steps() const { return steps_; }

 private:
  torch::Tensor slice(const torch::Tensor& flat, size_t i) const {
    return flat.narrow(0, offsets_[i], params_[i].second.numel());
  }

  void decay(torch::Tensor& p, double lr) const {
    if (p.dim() >= 2 && options_.weight_decay != 0) p.mul_(1 - lr * options_.weight_decay);
  }

  void warm_up_step(double lr, double grad_scale) {
    const double bias1 = 1 - std::pow(options_.beta1, static_cast<double>(steps_));
    const double bias2 = 1 - std::pow(options_.beta2, static_cast<double>(steps_));
    for (size_t i = 0; i < params_.size(); ++i) {
      auto& p = params_[i].second;
      if (!p.grad().defined()) continue;
      auto g = p.grad().reshape(-1);
      if (grad_scale != 1.0) g = g * grad_scale;
      decay(p, lr);
      auto m = slice(exp_avg_, i), v = slice(exp_avg_sq_, i);
      m.mul_(options_.beta1).add_(g, 1 - options_.beta1);
      v.mul_(options_.beta2).addcmul_(g, g, 1 - options_.beta2);
      auto denom = (v.sqrt() / std::sqrt(bias2)).add_(options_.eps);
      p.view({-1}).addcdiv_(m, denom, -lr / bias1);
    }
  }

  void freeze_variance() {
    const double bias2 = 1 - std::pow(options_.beta2, static_cast<double>(options_.freeze_step));
    denom_ = (exp_avg_sq_.sqrt() / std::sqrt(bias2)).add_(options_.eps);
  }

  std::vector<std::pair<std::string, torch::Tensor>> params_;
  std::shared_ptr<Communicator> comm_;
  OneBitAdamOptions options_;
  std::vector<int64_t> offsets_;
  torch::Tensor exp_avg_, exp_avg_sq_, denom_;
  std::unique_ptr<compression::SignAllReduce> allreduce_;
  int64_t steps_ = 0;
};

OneBitAdam::OneBitAdam(std::vector<std::pair<std::string, torch::Tensor>> params, DistributedDataParallel& ddp,
                       OneBitAdamOptions options)
    : impl_(std::make_shared<Impl>(std::move(params), ddp.comm(), options)) {
  // Warm-up: DDP averages as usual. Compression stage: each rank keeps its
  // own gradient (the momentum is what gets exchanged, in step()).
  std::weak_ptr<Impl> weak = impl_;
  auto average = comm_hooks::allreduce();
  ddp.register_comm_hook([weak, average](Communicator& comm, GradBucket& bucket) -> WorkHandle {
    auto impl = weak.lock();
    if (impl && impl->compressing()) return completed_work();
    return average(comm, bucket);
  });
}

OneBitAdam::~OneBitAdam() = default;
void OneBitAdam::step(double lr, double grad_scale) { impl_->step(lr, grad_scale); }
bool OneBitAdam::compressing() const { return impl_->compressing(); }
int64_t OneBitAdam::steps() const { return impl_->steps(); }
std::map<std::string, torch::Tensor> OneBitAdam::state_tensors() const { return impl_->state_tensors(); }
void OneBitAdam::load_state_tensors(const std::map<std::string, torch::Tensor>& state) {
  impl_->load_state_tensors(state);
}

}  // namespace paratorch
