// src/parallel/zero/zero_unit.h — ZeroEngine's per-unit state (internal to zero_engine*.cpp).
//
// One unit is one flat buffer (parallel/zero/flat_buffer.h): a gradient
// bucket of zero::FlatShards for stages 1-2 (whose buffers hold the
// parameters), a model block for stage 3 (whose FsdpState twin gathers the
// parameters while the block runs, fsdp_state.h). What the optimizer, the
// loss scaler, tp's partial sums and checkpoints see is the same at every stage:
//   master  this rank's fp32 shard (fp32 stages 1-2: a view of the parameters).
//   grad    this rank's averaged fp32 gradient shard.
#pragma once
#include "parallel/zero/zero_engine.h"

namespace paratorch::zero {

struct ZeroEngine::Unit {
  std::vector<size_t> members;  // indices into params_, buffer order
  std::shared_ptr<zero::FlatLayout> layout;  // shared with FlatShards' buffer or the FsdpState unit
  torch::Tensor master, grad;
};

}  // namespace paratorch::zero
