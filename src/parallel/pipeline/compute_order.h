// src/parallel/pipeline/compute_order.h — a schedule before its transfers: each
// rank's order of compute steps (forward, backward or its I and W halves,
// micro-batch, chunk). schedule.cpp places the sends and receives around
// them; zb_schedule.cpp builds the zero-bubble orders.
#pragma once
#include "parallel/pipeline/schedule.h"

#include <vector>

namespace paratorch::pipeline {

struct ComputeStep {
  ActionType type;  // kForward, kBackward, kBackwardInput or kBackwardWeight
  int microbatch, chunk;
};
using ComputeOrder = std::vector<ComputeStep>;

/// ZB-H1 (Qi et al., 2023, §3.1) on pipeline rank `rank`: 1F1B's warm-up of
/// p-r-1 forwards, then F, I and the W of micro-batch i-r (W deferred by r),
/// then the deferred W's.
ComputeOrder zb_h1_order(const PipelineShape& shape, int rank);

/// ZB-V on the V placement (shape.v_shape, 2 chunks per rank), every rank at
/// once: a list scheduler advances the rank that can start something
/// earliest, with F = I = W = 1/2 of a stage's forward, preferring I (the
/// critical path), then F (the later chunk first), then W (filler), and at
/// most 2p chunk micro-batches between a forward and its W.
std::vector<ComputeOrder> zb_v_orders(const PipelineShape& shape);

}  // namespace paratorch::pipeline
