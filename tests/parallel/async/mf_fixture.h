// tests/parallel/async/mf_fixture.h — a tiny matrix-factorization model and
// its synthetic ratings, shared by the parameter-server and Hogwild tests,
// with the optimizer and batch split the parameter-server tests use.
// The rating matrix is exactly rank 2 plus noise of std 0.05, so a model
// that learned it reaches an RMSE near 0.05; predicting the mean (what an
// untrained model does) leaves an RMSE near the ratings' spread (~0.6).
#pragma once
#include <paratorch/init.h>

#include <torch/torch.h>

#include <cmath>
#include <string>

namespace mf_fixture {

constexpr int64_t kUsers = 24, kItems = 16, kRank = 2, kBatch = 32;

struct MfImpl : torch::nn::Module {
  MfImpl() {
    users = register_module("users", torch::nn::Embedding(kUsers, 4));
    items = register_module("items", torch::nn::Embedding(kItems, 4));
    user_bias = register_parameter("user_bias", torch::zeros({kUsers}));
    item_bias = register_parameter("item_bias", torch::zeros({kItems}));
    paratorch::init_parameters(*this, 3, [](const std::string& name, const torch::Tensor&) {
      return name.find("bias") != std::string::npos ? paratorch::InitSpec::constant(0)
                                                      : paratorch::InitSpec::normal(0, 0.3);
    });
  }
  // ids: [n, 2] (user, item) -> predicted rating [n]
  torch::Tensor forward(const torch::Tensor& ids) {
    auto u = ids.select(1, 0), i = ids.select(1, 1);
    return (users(u) * items(i)).sum(1) + user_bias.index_select(0, u) + item_bias.index_select(0, i);
  }
  torch::nn::Embedding users{nullptr}, items{nullptr};
  torch::Tensor user_bias, item_bias;
};
TORCH_MODULE(Mf);

inline torch::Tensor true_ratings() {
  auto gen = paratorch::generator_for(11, "factors");
  auto u = torch::randn({kUsers, kRank}, gen) * 0.6, v = torch::randn({kItems, kRank}, gen) * 0.6;
  return torch::matmul(u, v.t()) + 0.05 * torch::randn({kUsers, kItems}, gen);
}

/// Global batch of step s: kBatch (user, item) pairs and their ratings.
inline std::pair<torch::Tensor, torch::Tensor> batch(int64_t s, const torch::Tensor& ratings) {
  auto gen = paratorch::generator_for(static_cast<uint64_t>(s), "batch");
  auto ids = torch::stack({torch::randint(kUsers, {kBatch}, gen, torch::kLong),
                           torch::randint(kItems, {kBatch}, gen, torch::kLong)}, 1);
  return {ids, ratings.index({ids.select(1, 0), ids.select(1, 1)})};
}

/// RMSE of the model over every entry of the rating matrix.
inline double rmse(Mf& model, const torch::Tensor& ratings) {
  torch::NoGradGuard no_grad;
  auto all = torch::stack({torch::arange(kUsers).repeat_interleave(kItems), torch::arange(kItems).repeat({kUsers})}, 1);
  return std::sqrt(torch::mse_loss(model->forward(all), ratings.reshape({-1})).item<double>());
}

// Adam with two groups (decay on the tables, none on the biases): a server
// re-points each group at its rows and must keep the groups' options.
inline std::shared_ptr<torch::optim::Adam> make_adam(Mf& model) {
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<torch::Tensor>{model->users->weight, model->items->weight},
                      std::make_unique<torch::optim::AdamOptions>(torch::optim::AdamOptions(0.05).weight_decay(0.01)));
  groups.emplace_back(std::vector<torch::Tensor>{model->user_bias, model->item_bias},
                      std::make_unique<torch::optim::AdamOptions>(torch::optim::AdamOptions(0.05)));
  return std::make_shared<torch::optim::Adam>(std::move(groups));
}

// The worker's contiguous share of the global batch (equal shares: the mean
// of the workers' means is the global mean).
inline std::pair<torch::Tensor, torch::Tensor> share(const std::pair<torch::Tensor, torch::Tensor>& b, int index,
                                                     int workers) {
  const int64_t n = b.first.size(0) / workers;
  return {b.first.narrow(0, index * n, n), b.second.narrow(0, index * n, n)};
}

}  // namespace mf_fixture
