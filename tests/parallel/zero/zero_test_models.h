// tests/parallel/zero/zero_test_models.h — the small models and batches the
// ZeRO / FSDP tests train, identical on every rank and in the reference.
#pragma once
#include <paratorch/init.h>
#include <paratorch/verify.h>

#include <torch/torch.h>

#include <algorithm>

namespace zero_test {

// Parameter counts (6*7+7, 7*5+5, ...) that no dp size divides evenly, so
// shards pad and parameters straddle shard boundaries.
struct MlpImpl : torch::nn::Module {
  MlpImpl() {
    layers = register_module("layers", torch::nn::Sequential(torch::nn::Linear(6, 7), torch::nn::Tanh(),
                                                             torch::nn::Linear(7, 5), torch::nn::Tanh(),
                                                             torch::nn::Linear(5, 3)));
  }
  torch::Tensor forward(const torch::Tensor& x) { return layers->forward(x); }
  torch::nn::Sequential layers{nullptr};
};
TORCH_MODULE(Mlp);

inline Mlp make_mlp() {
  Mlp net;
  paratorch::init_parameters(*net, 11, [](const std::string&, const torch::Tensor&) {
    return paratorch::InitSpec::normal(0.0, 0.5);
  });
  return net;
}

/// Global batch of step s: 8 samples (divisible by 1, 2, 4 ranks).
inline paratorch::Batch batch(int64_t step) {
  auto x = torch::randn({8, 6}, paratorch::generator_for(100 + static_cast<uint64_t>(step), "x"));
  auto y = torch::randn({8, 3}, paratorch::generator_for(100 + static_cast<uint64_t>(step), "y"));
  return {x, y};
}

inline torch::Tensor loss_of(Mlp& net, const paratorch::Batch& b) {
  return torch::mse_loss(net->forward(b.input), b.target);
}

// One weight in two units, as an embedding and the output head: both Tied
// modules hold the same tensor `weight`; each has a bias of its own.
struct TiedImpl : torch::nn::Module {
  explicit TiedImpl(torch::Tensor w)
      : weight(register_parameter("weight", std::move(w))), bias(register_parameter("bias", torch::zeros({4}))) {}
  torch::Tensor forward(const torch::Tensor& x) { return x.matmul(weight.t()) + bias; }
  torch::Tensor weight, bias;
};
TORCH_MODULE(Tied);

inline torch::nn::Sequential make_tied() {
  auto w = torch::randn({4, 4}, paratorch::generator_for(5, "tied"));
  torch::nn::Sequential net{Tied(w), torch::nn::Tanh(), torch::nn::Linear(4, 4), torch::nn::Tanh(), Tied(w)};
  paratorch::init_parameters(
      *net, 7, [](const std::string&, const torch::Tensor&) { return paratorch::InitSpec::normal(0.0, 0.5); });
  return net;
}

inline paratorch::Batch tied_batch(int64_t step) {
  return {torch::randn({8, 4}, paratorch::generator_for(200 + static_cast<uint64_t>(step), "x")),
          torch::randn({8, 4}, paratorch::generator_for(200 + static_cast<uint64_t>(step), "y"))};
}

inline torch::Tensor tied_loss(torch::nn::Sequential& net, const paratorch::Batch& b) {
  return torch::mse_loss(net->forward(b.input), b.target);
}

// libtorch's parameters() lists a tied tensor once per module holding it;
// an optimizer given it twice would step it twice.
inline std::vector<torch::Tensor> unique_parameters(const torch::nn::Module& net) {
  std::vector<torch::Tensor> out;
  for (const auto& p : net.parameters())
    if (std::none_of(out.begin(), out.end(), [&](const torch::Tensor& q) { return q.is_same(p); })) out.push_back(p);
  return out;
}

}  // namespace zero_test
