// src/optim/optimizer.cpp — see optimizer.h.
#include "optim/optimizer.h"

#include "optim/fused_adamw.h"

#include <paratorch/errors.h>

#include <cmath>

namespace paratorch::optim {
namespace {

// The default weight-decay rule (optimizer.h); `given` overrides it when not empty.
std::vector<bool> decay_flags(const NamedTensors& params, std::vector<bool> given) {
  if (!given.empty()) {
    TORCH_CHECK(given.size() == params.size(), "decay flags for ", given.size(), " of ", params.size(),
                " parameters");
    return given;
  }
  for (const auto& item : params) given.push_back(item.second.dim() >= 2);
  return given;
}

torch::Tensor find_state(const std::map<std::string, torch::Tensor>& state, const std::string& key,
                         const torch::Tensor& like) {
  auto it = state.find(key);
  if (it == state.end()) throw RuntimeFailure("paratorch: optimizer state has no tensor '" + key + "'");
  if (it->second.sizes() != like.sizes())
    throw RuntimeFailure("paratorch: optimizer state '" + key + "' has shape " + c10::str(it->second.sizes()) +
                         " but the parameter has " + c10::str(like.sizes()));
  return it->second.to(like.device(), like.scalar_type()).clone();
}

// g·s as one fp32 multiply, exactly what an in-place g.mul_(s) would leave.
torch::Tensor scaled(const torch::Tensor& g, double s) { return s == 1.0 ? g : g * s; }

int64_t find_step(const std::map<std::string, torch::Tensor>& state) {
  auto it = state.find("step");
  if (it == state.end() || it->second.numel() != 1)
    throw RuntimeFailure("paratorch: optimizer state has no scalar 'step'");
  return it->second.item<int64_t>();
}

class AdamW final : public Optimizer {
 public:
  AdamW(const OptimizerOptions& o, NamedTensors params, std::vector<bool> decay)
      : options_(o), params_(std::move(params)), decay_(decay_flags(params_, std::move(decay))) {
    for (auto& [name, p] : params_) {
      exp_avg_.push_back(torch::zeros_like(p, torch::MemoryFormat::Contiguous));
      exp_avg_sq_.push_back(torch::zeros_like(p, torch::MemoryFormat::Contiguous));
    }
  }

  void step(double lr, double grad_scale = 1.0) override {
    torch::NoGradGuard no_grad;
    ++steps_;
    const double bias1 = 1 - std::pow(kBeta1, static_cast<double>(steps_));
    const double bias2 = 1 - std::pow(kBeta2, static_cast<double>(steps_));
    for (size_t i = 0; i < params_.size(); ++i) {
      auto& p = params_[i].second;
      if (!p.grad().defined()) continue;
      const double wd = decay_[i] ? options_.weight_decay : 0.0;
      if (fusable(p, p.grad(), i)) {
        fused_adamw_step(p.data_ptr<float>(), p.grad().data_ptr<float>(), exp_avg_[i].data_ptr<float>(),
                         exp_avg_sq_[i].data_ptr<float>(), p.numel(),
                         {static_cast<float>(lr), static_cast<float>(wd), static_cast<float>(kBeta1),
                          static_cast<float>(kBeta2), static_cast<float>(kEps), static_cast<float>(bias1),
                          static_cast<float>(bias2), static_cast<float>(grad_scale)});
        continue;
      }
      const auto g = scaled(p.grad(), grad_scale);
      if (wd != 0) p.mul_(1 - lr * wd);
      exp_avg_[i].mul_(kBeta1).add_(g, 1 - kBeta1);
      exp_avg_sq_[i].mul_(kBeta2).addcmul_(g, g, 1 - kBeta2);
      auto denom = (exp_avg_sq_[i].sqrt() / std::sqrt(bias2)).add_(kEps);
      p.addcdiv_(exp_avg_[i], denom, -lr / bias1);
    }
  }

  std::map<std::string, torch::Tensor> state_tensors() const override {
    std::map<std::string, torch::Tensor> out{{"step", torch::tensor(steps_, torch::kLong)}};
    for (size_t i = 0; i < params_.size(); ++i) {
      out[params_[i].first + ".exp_avg"] = exp_avg_[i];
      out[params_[i].first + ".exp_avg_sq"] = exp_avg_sq_[i];
    }
    return out;
  }

  void load_state_tensors(const std::map<std::string, torch::Tensor>& state) override {
    steps_ = find_step(state);
    for (size_t i = 0; i < params_.size(); ++i) {
      exp_avg_[i] = find_state(state, params_[i].first + ".exp_avg", params_[i].second);
      exp_avg_sq_[i] = find_state(state, params_[i].first + ".exp_avg_sq", params_[i].second);
    }
  }

 private:
  // One fused pass (fused_adamw.h) for fp32 CPU tensors, the common case;
  // the tensor-op formula for anything else (CUDA, other dtypes, views).
  bool fusable(const torch::Tensor& p, const torch::Tensor& g, size_t i) const {
    auto plain = [](const torch::Tensor& t) {
      return t.device().is_cpu() && t.scalar_type() == torch::kFloat && t.is_contiguous();
    };
    return plain(p) && plain(g) && plain(exp_avg_[i]) && plain(exp_avg_sq_[i]);
  }
  // PyTorch's defaults (betas 0.9, 0.999; eps 1e-8).
  static constexpr double kBeta1 = 0.9, kBeta2 = 0.999, kEps = 1e-8;
  OptimizerOptions options_;
  NamedTensors params_;
  std::vector<bool> decay_;
  std::vector<torch::Tensor> exp_avg_, exp_avg_sq_;
};

class MomentumSgd final : public Optimizer {
 public:
  MomentumSgd(const OptimizerOptions& o, NamedTensors params, std::vector<bool> decay)
      : options_(o), params_(std::move(params)), decay_(decay_flags(params_, std::move(decay))) {
    for (auto& [name, p] : params_) buffer_.push_back(torch::zeros_like(p, torch::MemoryFormat::Contiguous));
  }

  void step(double lr, double grad_scale = 1.0) override {
    torch::NoGradGuard no_grad;
    ++steps_;
    for (size_t i = 0; i < params_.size(); ++i) {
      auto& p = params_[i].second;
      if (!p.grad().defined()) continue;
      const auto g = scaled(p.grad(), grad_scale);
      auto d = (decay_[i] && options_.weight_decay != 0) ? g.add(p, options_.weight_decay) : g;
      if (steps_ == 1) buffer_[i].copy_(d);
      else buffer_[i].mul_(kMomentum).add_(d);
      p.add_(buffer_[i], -lr);
    }
  }

  std::map<std::string, torch::Tensor> state_tensors() const override {
    std::map<std::string, torch::Tensor> out{{"step", torch::tensor(steps_, torch::kLong)}};
    for (size_t i = 0; i < params_.size(); ++i) out[params_[i].first + ".momentum_buffer"] = buffer_[i];
    return out;
  }

  void load_state_tensors(const std::map<std::string, torch::Tensor>& state) override {
    steps_ = find_step(state);
    for (size_t i = 0; i < params_.size(); ++i)
      buffer_[i] = find_state(state, params_[i].first + ".momentum_buffer", params_[i].second);
  }

 private:
  static constexpr double kMomentum = 0.9;
  OptimizerOptions options_;
  NamedTensors params_;
  std::vector<bool> decay_;
  std::vector<torch::Tensor> buffer_;
};

}  // namespace

void OptimizerOptions::validate() const {
  if (!std::isfinite(weight_decay) || weight_decay < 0)
    throw UsageError("paratorch: OptimizerOptions::weight_decay must be finite and >= 0, got " +
                     std::to_string(weight_decay));
}

std::vector<LocalState> Optimizer::local_state() const {
  std::vector<LocalState> out;
  for (auto& [key, tensor] : state_tensors()) out.push_back({key, tensor, -1});
  return out;
}

const char* optimizer_kind_name(OptimizerKind kind) { return kind == OptimizerKind::kAdamW ? "adamw" : "sgd"; }

std::unique_ptr<Optimizer> make_optimizer(const OptimizerOptions& options, NamedTensors params,
                                          std::vector<bool> decay) {
  options.validate();
  if (options.kind == OptimizerKind::kAdamW) return std::make_unique<AdamW>(options, std::move(params), std::move(decay));
  return std::make_unique<MomentumSgd>(options, std::move(params), std::move(decay));
}

void zero_gradients(const NamedTensors& params) {
  torch::NoGradGuard no_grad;
  for (const auto& [name, p] : params) {
    const auto& g = p.grad();
    if (g.defined()) const_cast<torch::Tensor&>(g).zero_();
  }
}

}  // namespace paratorch::optim
