// src/data/synthetic.cpp — see synthetic.h.
#include "data/synthetic.h"

#include "models/registry.h"
#include <paratorch/init.h>

namespace paratorch::data {
namespace {

models::Batch classification_batch(const models::ModelConfig& c, const std::vector<int64_t>& ids,
                                   uint64_t seed) {
  const int64_t n = static_cast<int64_t>(ids.size());
  auto x = torch::empty({n, c.d_in});
  for (int64_t j = 0; j < n; ++j) {
    auto gen = generator_for(seed, "synthetic/sample/" + std::to_string(ids[static_cast<size_t>(j)]));
    x[j].normal_(0.0, 1.0, gen);
  }
  auto teacher_gen = generator_for(seed, "synthetic/teacher");
  auto teacher = torch::empty({c.d_in, c.n_classes}).normal_(0.0, 1.0, teacher_gen);
  auto y = torch::matmul(x, teacher).argmax(1);
  return {x, y};
}

models::Batch token_batch(const models::ModelConfig& c, const std::vector<int64_t>& ids, uint64_t seed) {
  const int64_t n = static_cast<int64_t>(ids.size()), T = c.seq_len;
  const int64_t half = (T + 2) / 2;
  auto tokens = torch::empty({n, T + 1}, torch::kLong);
  for (int64_t j = 0; j < n; ++j) {
    auto gen = generator_for(seed, "synthetic/tokens/" + std::to_string(ids[static_cast<size_t>(j)]));
    auto first = torch::randint(c.vocab_size, {half}, gen, torch::kLong);
    tokens[j].narrow(0, 0, half).copy_(first);
    tokens[j].narrow(0, half, T + 1 - half).copy_(first.narrow(0, 0, T + 1 - half));
  }
  return {tokens.narrow(1, 0, T).contiguous(), tokens.narrow(1, 1, T).contiguous()};
}

}  // namespace

models::Batch synthetic_batch(const models::ModelConfig& config, const std::vector<int64_t>& ids,
                              uint64_t seed) {
  torch::NoGradGuard no_grad;
  if (models::model_family(config.name).input == models::ModelInput::kTokens) return token_batch(config, ids, seed);
  return classification_batch(config, ids, seed);
}

}  // namespace paratorch::data
