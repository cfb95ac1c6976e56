// src/parallel/zero/zero_unit.h — ZeroEngine's per-unit state (internal to zero_engine*.cpp).
//
// One unit is one flat buffer (parallel/zero/flat_buffer.h): a gradient bucket for
// stages 1-2, a model block for stage 3. Which tensors exist per stage:
//   flat_params  stages 1-2: the whole unit in compute precision; the model's
//                parameters are views into it (stages 1-2 on one node: one
//                copy shared by every rank). Stage 3: none; the unit's
//                FsdpState twin gathers it while its block runs (fsdp_state.h).
//   master       this rank's fp32 shard (fp32 stages 1-2: a view of flat_params).
//   grad         this rank's fp32 gradient shard (stage 1: a view of full_grad).
//   full_grad    fp32, whole unit: stage 1 the reducer's bucket, kept
//                (reduce-scattered in place); stage 3 transient (until
//                reduce-scattered).
#pragma once
#include "parallel/zero/zero_engine.h"

namespace paratorch::zero {

struct ZeroEngine::Unit {
  std::vector<size_t> members;  // indices into params_, buffer order
  std::shared_ptr<zero::FlatLayout> layout;  // stage 3: shared with the FsdpState unit
  torch::Tensor flat_params, master, grad, full_grad;
};

}  // namespace paratorch::zero
