// src/data/mf_synthetic.cpp — see mf_synthetic.h.
#include "data/mf_synthetic.h"

#include <paratorch/init.h>

#include <cmath>

namespace paratorch::data {

MfSynthetic::MfSynthetic(const models::ModelConfig& m, uint64_t seed)
    : n_users_(m.n_users), n_items_(m.n_items), seed_(seed) {
  const double factor_std = 1.0 / std::sqrt(static_cast<double>(m.n_factors));
  users_ = full_init(InitSpec::normal(0, factor_std), {m.n_users, m.n_factors}, seed, "mf_truth/users");
  items_ = full_init(InitSpec::normal(0, factor_std), {m.n_items, m.n_factors}, seed, "mf_truth/items");
  user_bias_ = full_init(InitSpec::normal(0, 0.3), {m.n_users}, seed, "mf_truth/user_bias");
  item_bias_ = full_init(InitSpec::normal(0, 0.3), {m.n_items}, seed, "mf_truth/item_bias");
}

double MfSynthetic::true_rating(int64_t u, int64_t i) const {
  return (users_[u] * items_[i]).sum().item<double>() + user_bias_[u].item<double>() +
         item_bias_[i].item<double>() + 3.5;
}

models::Batch MfSynthetic::ratings(const std::vector<int64_t>& ids, int64_t offset) const {
  const int64_t n = static_cast<int64_t>(ids.size());
  auto pairs = torch::empty({n, 2}, torch::kLong);
  auto noise = torch::empty({n});
  for (int64_t j = 0; j < n; ++j) {
    int64_t id = ids[static_cast<size_t>(j)] + offset;
    pairs[j][0] = static_cast<int64_t>(sample_hash(seed_ ^ 0x75u, id) % static_cast<uint64_t>(n_users_));
    pairs[j][1] = static_cast<int64_t>(sample_hash(seed_ ^ 0x17u, id) % static_cast<uint64_t>(n_items_));
    // Box-Muller from two hashed uniforms in (0, 1].
    double u1 = (static_cast<double>(sample_hash(seed_ ^ 0xa1u, id) >> 11) + 1.0) / 9007199254740992.0;
    double u2 = static_cast<double>(sample_hash(seed_ ^ 0xa2u, id) >> 11) / 9007199254740992.0;
    noise[j] = kNoiseStd * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
  }
  auto u = pairs.select(1, 0), i = pairs.select(1, 1);
  auto target = (users_.index_select(0, u) * items_.index_select(0, i)).sum(1) +
                user_bias_.index_select(0, u) + item_bias_.index_select(0, i) + 3.5 + noise;
  return {pairs, target};
}

models::Batch MfSynthetic::train_batch(const std::vector<int64_t>& ids) const { return ratings(ids, 0); }

models::Batch MfSynthetic::validation_batch(const std::vector<int64_t>& ids) const {
  return ratings(ids, int64_t{1} << 40);
}

std::string MfSynthetic::describe() const {
  return "mf_synthetic: " + std::to_string(n_users_) + " users x " + std::to_string(n_items_) +
         " items, rank-" + std::to_string(users_.size(1)) + " truth + biases, rating noise sd 0.1";
}

}  // namespace paratorch::data
