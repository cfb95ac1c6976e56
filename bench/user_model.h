// bench/user_model.h — what the public-API benches share: the model a user
// would write (a torch::nn::Sequential of Linear + Tanh) and the median.
#pragma once
#include <torch/torch.h>

#include <algorithm>
#include <vector>

namespace bench {

/// `layers` x (Linear(width, width), Tanh), the same values every call.
inline torch::nn::Sequential linear_tanh_stack(int64_t width, int64_t layers) {
  torch::manual_seed(0);
  torch::nn::Sequential net;
  for (int64_t i = 0; i < layers; ++i) {
    net->push_back(torch::nn::Linear(width, width));
    net->push_back(torch::nn::Tanh());
  }
  return net;
}

/// The upper median (the middle value of an odd count).
inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace bench
