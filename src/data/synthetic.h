// src/data/synthetic.h — seeded synthetic samples, addressable by sample id.
//
// Sample i is a pure function of (seed, i): any rank can produce any sample,
// which is what makes "the global batch of step s is the same samples in
// every layout" hold for synthetic data.
//   mlp: features ~ N(0, 1); label = argmax of a fixed random linear teacher,
//        so the task is learnable.
//   gpt: seq_len+1 tokens whose second half repeats the first (learnable by
//        attention); input = tokens[0:T], target = tokens[1:T+1].
#pragma once
#include "models/model.h"

#include <cstdint>
#include <vector>

namespace paratorch::data {

models::Batch synthetic_batch(const models::ModelConfig& config, const std::vector<int64_t>& ids,
                              uint64_t seed);

}  // namespace paratorch::data
