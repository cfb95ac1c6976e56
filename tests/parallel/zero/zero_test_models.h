// tests/parallel/zero/zero_test_models.h — the small models and batches the
// ZeRO / FSDP tests train, identical on every rank and in the reference.
#pragma once
#include <paratorch/init.h>
#include <paratorch/verify.h>

#include <torch/torch.h>

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

}  // namespace zero_test
