// src/train/generate.h — text from a byte-level language model (the sample
// printed at the end of a gpt run).
#pragma once
#include "models/model.h"

#include <string>

namespace paratorch::train {

/// Continues `prompt` by `n` bytes. temperature 0 = greedy; otherwise sample
/// from softmax(logits / temperature) with a generator seeded by `seed`.
/// The context is the last `context` bytes.
std::string generate_text(models::BundledModel& model, const std::string& prompt, int n, double temperature,
                          uint64_t seed, int context);

}  // namespace paratorch::train
