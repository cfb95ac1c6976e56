// src/train/generate.cpp — see generate.h.
#include "train/generate.h"

#include <paratorch/init.h>

namespace paratorch::train {

std::string generate_text(models::BundledModel& model, const std::string& prompt, int n, double temperature,
                          uint64_t seed, int context) {
  torch::NoGradGuard no_grad;
  model.eval();
  auto gen = generator_for(seed, "generate");
  auto device = model.parameters().front().device();
  std::string text = prompt;
  for (int k = 0; k < n; ++k) {
    size_t from = text.size() > static_cast<size_t>(context) ? text.size() - static_cast<size_t>(context) : 0;
    auto ids = torch::empty({1, static_cast<int64_t>(text.size() - from)}, torch::kLong);
    for (size_t i = from; i < text.size(); ++i) ids[0][static_cast<int64_t>(i - from)] = static_cast<unsigned char>(text[i]);
    auto logits = model.forward(ids.to(device)).select(1, -1).squeeze(0).to(torch::kCPU, torch::kFloat);
    int64_t next = temperature <= 0 ? logits.argmax().item<int64_t>()
                                    : torch::multinomial(torch::softmax(logits / temperature, 0), 1, false, gen)
                                          .item<int64_t>();
    text.push_back(static_cast<char>(next));
  }
  model.train();
  return text;
}

}  // namespace paratorch::train
